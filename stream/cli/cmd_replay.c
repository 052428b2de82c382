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
           "                        [--bundle NAME=DIR --bundle NAME=DIR ... [--resamples N]]\n"
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
           "                 headers); state is committed after each batch is acknowledged\n"
           "  --bundle NAME=DIR   replay the same events through several bundles in one pass\n"
           "                 (instead of model.bundle; up to 8), each with its own state; the\n"
           "                 summary is a table side by side and, with --eval, each bundle's\n"
           "                 HitRate/MRR/NDCG@K minus the first one's with a 95%% interval from\n"
           "                 a bootstrap over sessions (paired: the same events). --output is\n"
           "                 optional then; FILE.ext becomes FILE.NAME.ext per bundle\n"
           "  --resamples N  bootstrap resamples of the comparison (default 1000)\n");
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
    }
    fprintf(f, "\n%-28s %12.1f\n", "events/s", secs > 0 ? (double)st->events / secs : 0.0);
    fprintf(f, "%-28s %12.1f\n", "recommendations/s",
            secs > 0 ? (double)st->recommendations / secs : 0.0);
    fprintf(f, "time per stage (s):\n");
    for (int i = 0; i < st->n_stages; i++)
        fprintf(f, "  %-26s %12.4f\n", st->stage[i], (double)st->stage_ns[i] / 1e9);
}

static int col_w = 12; /* the comparison table's column width: its longest name or version */

static void row_u64(FILE *f, const char *label, const struct sr_replay_result *res, int n,
                    uint64_t (*get)(const struct sr_replay_result *))
{
    fprintf(f, "%-28s", label);
    for (int i = 0; i < n; i++)
        fprintf(f, " %*" PRIu64, col_w, get(&res[i]));
    fprintf(f, "\n");
}

static uint64_t get_events(const struct sr_replay_result *r) { return r->stats->events; }
static uint64_t get_invalid(const struct sr_replay_result *r) { return r->stats->invalid; }
static uint64_t get_unknown(const struct sr_replay_result *r) { return r->stats->unknown_items; }
static uint64_t get_recs(const struct sr_replay_result *r) { return r->stats->recommendations; }
static uint64_t get_sessions(const struct sr_replay_result *r) { return r->sessions; }
static uint64_t get_evaluated(const struct sr_replay_result *r) { return r->eval.evaluated; }
static uint64_t get_unknown_targets(const struct sr_replay_result *r) { return r->eval.unknown_targets; }

static double eval_rate(const struct sr_replay_result *r, int m)
{
    const struct sr_eval_report *ev = &r->eval;
    double n = ev->evaluated ? (double)ev->evaluated : 1.0;
    switch (m) {
    case 0: return (double)ev->hits / n;
    case 1: return ev->mrr_sum / n;
    case 2: return ev->ndcg_sum / n;
    default: return ev->catalogue ? (double)ev->distinct_items / (double)ev->catalogue : 0.0;
    }
}

/* The summary of a comparison: one column per bundle, then each against the first. */
static int print_comparison(const sr_replay_t *r, int resamples)
{
    FILE *f = stdout;
    int n = sr_replay_n_bundles(r);
    struct sr_replay_result res[SR_REPLAY_MAX_BUNDLES];
    for (int i = 0; i < n; i++) {
        sr_replay_result_of(r, i, &res[i]);
        int w = (int)strlen(res[i].model_version);
        col_w = w > col_w ? (w < 40 ? w : 40) : col_w;
    }
    fprintf(f, "%-28s", "bundle");
    for (int i = 0; i < n; i++)
        fprintf(f, " %*.*s", col_w, col_w, res[i].name);
    fprintf(f, "\n%-28s", "model_version");
    for (int i = 0; i < n; i++)
        fprintf(f, " %*.*s", col_w, col_w, res[i].model_version);
    fprintf(f, "\n");
    row_u64(f, "events", res, n, get_events);
    row_u64(f, "invalid", res, n, get_invalid);
    row_u64(f, "unknown items", res, n, get_unknown);
    row_u64(f, "recommendations", res, n, get_recs);
    row_u64(f, "sessions", res, n, get_sessions);
    if (!res[0].has_eval)
        return 0;
    static const char *const label[4] = {"HitRate@K (= Recall@K)", "MRR@K", "NDCG@K",
                                         "catalogue coverage"};
    row_u64(f, "evaluated recommendations", res, n, get_evaluated);
    for (int m = 0; m < 4; m++) {
        fprintf(f, "%-28s", label[m]);
        for (int i = 0; i < n; i++)
            fprintf(f, " %*.4f", col_w, eval_rate(&res[i], m));
        fprintf(f, "\n");
    }
    row_u64(f, "target not in bundle", res, n, get_unknown_targets);
    fprintf(f, "%-28s %*d\n", "K", col_w, res[0].eval.k);
    for (int i = 1; i < n; i++) {
        struct sr_replay_diff d;
        struct sr_error err = {0};
        if (sr_replay_compare(r, i, resamples, 42, &d, &err) != SR_OK)
            return sr__cli_fail("replay", "%s", err.msg);
        fprintf(f, "\n%s - %s over %" PRIu64 " sessions (95%% interval, %d bootstrap resamples):\n",
                res[i].name, res[0].name, d.sessions, d.resamples);
        for (int m = 0; m < 3; m++)
            fprintf(f, "  %-26s %+12.4f   [%+.4f, %+.4f]%s\n", label[m], d.diff[m], d.lo[m],
                    d.hi[m], d.lo[m] > 0 || d.hi[m] < 0 ? "   *" : "");
    }
    return 0;
}

int sr__cmd_replay(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *input = NULL, *output = NULL, *report = NULL;
    bool eval = false, resume = false;
    struct sr_replay_bundle bundles[SR_REPLAY_MAX_BUNDLES];
    int n_bundles = 0;
    int64_t resamples = 1000;
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
        else if (!strcmp(a, "--resamples") && more) {
            if (!sr__cli_parse_i64(argv[++i], 1, 1000000, &resamples))
                rc = sr__cli_fail("replay", "--resamples: '%s' is not an integer in 1..1000000",
                                  argv[i]);
        } else if (!strcmp(a, "--bundle") && more) {
            const char *v = argv[++i], *eq = strchr(v, '=');
            if (n_bundles == SR_REPLAY_MAX_BUNDLES)
                rc = sr__cli_fail("replay", "--bundle: at most %d bundles", SR_REPLAY_MAX_BUNDLES);
            else if (!eq || eq == v || !eq[1] || eq - v > 32)
                rc = sr__cli_fail("replay", "--bundle '%s': expected NAME=DIR (NAME up to 32 "
                                  "characters)", v);
            else
                bundles[n_bundles++] = (struct sr_replay_bundle){.name = strndup(v, (size_t)(eq - v)),
                                                                 .dir = eq + 1};
        }
        else
            rc = sr__cli_fail("replay", "unexpected argument '%s' (see --help)", a);
    }
    if (!rc && n_bundles == 1)
        rc = sr__cli_fail("replay", "--bundle: give two or more to compare (one bundle is "
                          "model.bundle)");
    if (!rc && (!input || (!output && n_bundles < 2)))
        rc = sr__cli_fail("replay", "--input and --output are required (see --help)");
    /* The topic range is checked with the configuration, before anything is opened. */
    if (!rc && !strncmp(input, "topic:", 6)) {
        char topic[256];
        struct sr_topic_range range;
        if (sr_topic_spec_parse(input + 6, topic, sizeof topic, &range, &err) != SR_OK)
            rc = sr__cli_fail("replay", "--input %s", err.msg);
    }
    /* With --bundle, model.bundle is the first of them (the baseline) unless the file sets it. */
    if (!rc && n_bundles > 1 && sr_config_set(cfg, "model.bundle", bundles[0].dir, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc)
        rc = sr__cli_config_load("replay", cfg, cfg_file, true, argc, argv, false);
    struct progress prog = {.tty = sr__cli_tty(), .t0 = sr_now_ns()};
    struct sr_replay_params rp = {.cfg = cfg, .input = input, .output = output, .eval = eval,
                                  .resume = resume, .on_batch = on_batch, .ctx = &prog,
                                  .bundles = bundles, .n_bundles = n_bundles};
    sr_replay_t *r = NULL;
    if (!rc && sr_replay_new(&rp, &r, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc && sr_replay_run(r, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (prog.tty)
        fprintf(stderr, "\r%*s\r", 78, "");
    struct sr_replay_result res;
    if (!rc && n_bundles > 1) {
        rc = print_comparison(r, (int)resamples);
    } else if (!rc) {
        sr_replay_result(r, &res);
        print_summary(&res);
    }
    if (!rc && report) {
        FILE *f = fopen(report, "w");
        if (!f) {
            rc = sr__cli_fail("replay", "%s: cannot create report", report);
        } else {
            if (n_bundles > 1) {
                if (sr_replay_write_comparison(r, (int)resamples, 42, f, &err) != SR_OK)
                    rc = sr__cli_fail("replay", "%s", err.msg);
            } else {
                sr_replay_write_report(&res, f);
            }
            fclose(f);
        }
    }
    if (sr_replay_destroy(r, &err) != SR_OK && !rc)
        rc = sr__cli_fail("replay", "%s", err.msg);
    sr_config_destroy(cfg);
    for (int i = 0; i < n_bundles; i++)
        free((char *)bundles[i].name);
    return rc;
}
