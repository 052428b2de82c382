/* cmd_replay.c — `streamrec replay`: argument parsing and the printed summary around the
 * offline runtime (sr_replay_*, stream/runtime/replay.c). Runs on the main thread. */
#include "cli.h"
#include "sr_stream.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    printf("usage: streamrec replay -c FILE --input FILE --output FILE [--set key=value]...\n"
           "                        [--eval] [--report FILE] [--resume]\n"
           "  -c FILE        properties file (model.bundle, session.*, recs.*, state.*, ...)\n"
           "  --set k=v      override a key (after the file and STREAMREC_* variables)\n"
           "  --input FILE   events: JSON Lines or an Avro object container file (detected);\n"
           "                 '-' reads JSON Lines from stdin\n"
           "  --output FILE  recommendations: .avro writes an Avro container, else JSON Lines;\n"
           "                 '-' writes to stdout\n"
           "  --eval         next-item evaluation: HitRate@K (= Recall@K), MRR@K, NDCG@K, coverage\n"
           "  --report FILE  also write the summary (and evaluation) as JSON\n"
           "  --resume       continue the replay whose state is in state.dir (after a crash or\n"
           "                 an interrupt): events it applied are skipped. Without it a replay\n"
           "                 starts from empty state: a temporary directory, removed at the end,\n"
           "                 unless state.dir is set (then it must hold no earlier replay)\n"
           "  --input topic:NAME[@START[..END]]   a topic range (needs kafka.bootstrap.servers):\n"
           "                 every partition, assign() and no group; START/END are offsets, epoch\n"
           "                 ms or ISO-8601 times (START <= x < END; END defaults to the high\n"
           "                 watermark at start). Times use offsets_for_times, or scan from the\n"
           "                 beginning filtering by message timestamp where the broker cannot.\n"
           "  --output topic:NAME   produce recommendations (key = session_id, provenance\n"
           "                 headers); state is committed after each batch is acknowledged\n");
}

struct progress {
    bool tty;
    uint64_t t0, last;
};

static void on_batch(void *ctx, const struct sr_stats *st, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    uint64_t now = sr_now_ns();
    if (!p->tty || now - p->last < 200000000ULL)
        return;
    p->last = now;
    double secs = (double)(now - p->t0) / 1e9;
    if (total)
        fprintf(stderr, "\rreplay: %5.1f%%  events %" PRIu64 "  recs %" PRIu64 "  %.0f events/s   ",
                100.0 * (double)done / (double)total, st->events, st->recommendations,
                secs > 0 ? (double)st->events / secs : 0.0);
    else
        fprintf(stderr, "\rreplay: events %" PRIu64 "  recs %" PRIu64 "  %.0f events/s   ",
                st->events, st->recommendations, secs > 0 ? (double)st->events / secs : 0.0);
}

static void print_summary(const struct sr_replay_result *res)
{
    FILE *f = stdout;
    const struct sr_stats *st = res->stats;
    const struct sr_eval_report *ev = &res->eval;
    double secs = res->seconds;
    fprintf(f, "%-28s %12" PRIu64 "\n", "events", st->events);
    fprintf(f, "%-28s %12" PRIu64 "\n", "invalid", st->invalid);
    for (int i = 0; i < st->n_reasons; i++)
        fprintf(f, "  %-26s %12" PRIu64 "\n", st->reason[i], st->reason_count[i]);
    fprintf(f, "%-28s %12" PRIu64 "\n", "filtered (other types)", st->filtered);
    fprintf(f, "%-28s %12" PRIu64 "\n", "unknown items", st->unknown_items);
    fprintf(f, "%-28s %12" PRIu64 "\n", "recommendations", st->recommendations);
    fprintf(f, "%-28s %12" PRIu64 "\n", "sessions", res->sessions);
    if (res->has_eval) {
        double n = ev->evaluated ? (double)ev->evaluated : 1.0;
        fprintf(f, "\n%-28s %12" PRIu64 "\n", "evaluated recommendations", ev->evaluated);
        fprintf(f, "%-28s %12.4f\n", "HitRate@K (= Recall@K)", (double)ev->hits / n);
        fprintf(f, "%-28s %12.4f\n", "MRR@K", ev->mrr_sum / n);
        fprintf(f, "%-28s %12.4f\n", "NDCG@K", ev->ndcg_sum / n);
        fprintf(f, "%-28s %12.4f   (%" PRIu64 " of %" PRIu64 " items)\n", "catalogue coverage",
                ev->catalogue ? (double)ev->distinct_items / (double)ev->catalogue : 0.0,
                ev->distinct_items, ev->catalogue);
        fprintf(f, "%-28s %12d\n", "K", ev->k);
        fprintf(f, "%-28s %12" PRIu64 "\n", "without target", ev->unresolved + ev->pending);
        fprintf(f, "%-28s %12" PRIu64 "   (counted as misses)\n", "target not in bundle",
                ev->unknown_targets);
        static const char *const src_name[3] = {"model", "trending", "random"};
        for (int i = 0; ev->by_source && i < 3; i++)
            fprintf(f, "  %-26s %12.4f   HitRate@K from %" PRIu64 " items; MRR@K %.4f\n",
                    src_name[i], (double)ev->hits_by_source[i] / n, ev->items_by_source[i],
                    ev->mrr_by_source[i] / n);
        if (ev->has_baseline)
            fprintf(f, "%-28s %12.4f   (MRR@K %.4f, NDCG@K %.4f)\n", "trending-only HitRate@K",
                    (double)ev->baseline_hits / n, ev->baseline_mrr_sum / n,
                    ev->baseline_ndcg_sum / n);
    }
    fprintf(f, "\n%-28s %12.1f\n", "events/s", secs > 0 ? (double)st->events / secs : 0.0);
    fprintf(f, "%-28s %12.1f\n", "recommendations/s",
            secs > 0 ? (double)st->recommendations / secs : 0.0);
    fprintf(f, "time per stage (s):\n");
    for (int i = 0; i < st->n_stages; i++)
        fprintf(f, "  %-26s %12.4f\n", st->stage[i], (double)st->stage_ns[i] / 1e9);
}

int sr__cmd_replay(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *input = NULL, *output = NULL, *report = NULL;
    bool eval = false, resume = false;
    struct sr_error err = {0};
    sr_config_t *cfg = sr_config_new();
    int rc = 0;
    const char *cfg_file = NULL;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "-c") && more)
            cfg_file = argv[++i];
        else if (!strcmp(a, "--set") && more)
            ++i; /* applied after the file and the environment, below */
        else if (!strcmp(a, "--input") && more)
            input = argv[++i];
        else if (!strcmp(a, "--output") && more)
            output = argv[++i];
        else if (!strcmp(a, "--report") && more)
            report = argv[++i];
        else if (!strcmp(a, "--eval"))
            eval = true;
        else if (!strcmp(a, "--resume"))
            resume = true;
        else
            rc = sr__cli_fail("replay", "unexpected argument '%s' (see --help)", a);
    }
    if (!rc && (!input || !output))
        rc = sr__cli_fail("replay", "--input and --output are required (see --help)");
    /* The topic range is checked with the configuration, before anything is opened. */
    if (!rc && !strncmp(input, "topic:", 6)) {
        char topic[256];
        struct sr_topic_range range;
        if (sr_topic_spec_parse(input + 6, topic, sizeof topic, &range, &err) != SR_OK)
            rc = sr__cli_fail("replay", "--input %s", err.msg);
    }
    if (!rc)
        rc = sr__cli_config_load("replay", cfg, cfg_file, true, argc, argv, false);
    struct progress prog = {.tty = sr__cli_tty(), .t0 = sr_now_ns()};
    struct sr_replay_params rp = {.cfg = cfg, .input = input, .output = output, .eval = eval,
                                  .resume = resume, .on_batch = on_batch, .ctx = &prog};
    sr_replay_t *r = NULL;
    if (!rc && sr_replay_new(&rp, &r, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc && sr_replay_run(r, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (prog.tty)
        fprintf(stderr, "\r%*s\r", 78, "");
    struct sr_replay_result res;
    if (!rc) {
        sr_replay_result(r, &res);
        print_summary(&res);
    }
    if (!rc && report) {
        FILE *f = fopen(report, "w");
        if (!f) {
            rc = sr__cli_fail("replay", "%s: cannot create report", report);
        } else {
            sr_replay_write_report(&res, f);
            fclose(f);
        }
    }
    if (sr_replay_destroy(r, &err) != SR_OK && !rc)
        rc = sr__cli_fail("replay", "%s", err.msg);
    sr_config_destroy(cfg);
    return rc;
}
