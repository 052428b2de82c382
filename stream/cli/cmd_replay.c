/* cmd_replay.c — `streamrec replay`: the offline runtime. Feeds a file (JSON Lines or Avro
 * container) or a topic range (topic_io.c) through the same operator graph the online runtime
 * runs, in micro-batches of batch.max.events, writes recommendations to a file or a topic, and with --eval scores them against each
 * session's next stored item. A replay is reproducible: it starts from empty state (a
 * temporary RocksDB directory, removed at the end, unless state.dir or state.backend=memory is
 * named), and a named state.dir that already holds applied offsets is refused unless --resume.
 * State is committed after each batch's output is flushed, so a replay killed half-way and
 * restarted with --resume on its state.dir resumes after the last committed record: a
 * re-emitted recommendation is byte-identical to the first. */
#include "cli.h"
#include "sr_state.h"
#include "sr_stream.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void print_progress(sr_file_source_t *src, const struct sr_stats *st, uint64_t t0)
{
    uint64_t done, total;
    sr_file_source_progress(src, &done, &total);
    double secs = (double)(sr_now_ns() - t0) / 1e9;
    if (total)
        fprintf(stderr, "\rreplay: %5.1f%%  events %" PRIu64 "  recs %" PRIu64 "  %.0f events/s   ",
                100.0 * (double)done / (double)total, st->events, st->recommendations,
                secs > 0 ? (double)st->events / secs : 0.0);
    else
        fprintf(stderr, "\rreplay: events %" PRIu64 "  recs %" PRIu64 "  %.0f events/s   ",
                st->events, st->recommendations, secs > 0 ? (double)st->events / secs : 0.0);
}

static void write_report(FILE *f, const struct sr_stats *st, const struct sr_eval_report *ev,
                         bool eval, double secs, uint64_t sessions, const char *version)
{
    fprintf(f, "{\"model_version\": \"%s\", \"events\": %" PRIu64 ", \"invalid\": %" PRIu64
               ", \"invalid_by_reason\": {", version, st->events, st->invalid);
    for (int i = 0; i < st->n_reasons; i++)
        fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", st->reason[i], st->reason_count[i]);
    fprintf(f, "}, \"filtered\": %" PRIu64 ", \"unknown_items\": %" PRIu64
               ", \"recommendations\": %" PRIu64
               ", \"sessions\": %" PRIu64 ", \"seconds\": %.6f, \"events_per_s\": %.1f"
               ", \"recommendations_per_s\": %.1f, \"stage_seconds\": {",
            st->filtered, st->unknown_items, st->recommendations, sessions, secs,
            secs > 0 ? (double)st->events / secs : 0.0,
            secs > 0 ? (double)st->recommendations / secs : 0.0);
    for (int i = 0; i < st->n_stages; i++)
        fprintf(f, "%s\"%s\": %.6f", i ? ", " : "", st->stage[i], (double)st->stage_ns[i] / 1e9);
    fprintf(f, "}");
    if (eval) {
        double n = ev->evaluated ? (double)ev->evaluated : 1.0;
        fprintf(f, ", \"eval\": {\"k\": %d, \"evaluated\": %" PRIu64 ", \"hits\": %" PRIu64
                   ", \"hit_rate\": %.6f, \"recall\": %.6f, \"mrr\": %.6f, \"ndcg\": %.6f"
                   ", \"coverage\": %.6f, \"distinct_items\": %" PRIu64 ", \"catalogue\": %" PRIu64
                   ", \"unresolved\": %" PRIu64 ", \"pending\": %" PRIu64
                   ", \"unknown_targets\": %" PRIu64 "}",
                ev->k, ev->evaluated, ev->hits, (double)ev->hits / n, (double)ev->hits / n,
                ev->mrr_sum / n, ev->ndcg_sum / n,
                ev->catalogue ? (double)ev->distinct_items / (double)ev->catalogue : 0.0,
                ev->distinct_items, ev->catalogue, ev->unresolved, ev->pending,
                ev->unknown_targets);
    }
    fprintf(f, "}\n");
}

static void print_summary(const struct sr_stats *st, const struct sr_eval_report *ev, bool eval,
                          double secs, uint64_t sessions)
{
    FILE *f = stdout;
    fprintf(f, "%-28s %12" PRIu64 "\n", "events", st->events);
    fprintf(f, "%-28s %12" PRIu64 "\n", "invalid", st->invalid);
    for (int i = 0; i < st->n_reasons; i++)
        fprintf(f, "  %-26s %12" PRIu64 "\n", st->reason[i], st->reason_count[i]);
    fprintf(f, "%-28s %12" PRIu64 "\n", "filtered (other types)", st->filtered);
    fprintf(f, "%-28s %12" PRIu64 "\n", "unknown items", st->unknown_items);
    fprintf(f, "%-28s %12" PRIu64 "\n", "recommendations", st->recommendations);
    fprintf(f, "%-28s %12" PRIu64 "\n", "sessions", sessions);
    if (eval) {
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

/* --output topic:NAME — a producer (idempotent) and the topic sink; delivery reports are served
 * on this thread (the replay waits for each batch's acknowledgements). */
struct replay_topic_out {
    rd_kafka_t *rk;
    sr_topic_sink_t *sink;
    uint64_t failed;
    char first_error[256];
    char name[256];
};

static void replay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct replay_topic_out *t = opaque;
    if (m->err && !t->failed++)
        snprintf(t->first_error, sizeof t->first_error, "%s", rd_kafka_err2str(m->err));
}

static sr_err_t topic_out_open(struct replay_topic_out *t, const sr_config_t *cfg,
                               const char *name, struct sr_error *err)
{
    if (!sr_kafka_configured(cfg))
        return sr_error_set(err, SR_ECONFIG, "topic:%s needs kafka.bootstrap.servers", name);
    snprintf(t->name, sizeof t->name, "%s", name);
    enum sr_format fmt;
    int64_t sid = 1;
    sr_err_t rc = sr_format_parse(sr_config_get(cfg, "output.format"), &fmt, err);
    if (rc == SR_OK)
        rc = sr_config_get_int(cfg, "output.avro.schema_id", &sid, err);
    rd_kafka_conf_t *conf = NULL;
    if (rc == SR_OK)
        rc = sr_kafka_conf_new(cfg, SR_KAFKA_PRODUCER, &conf, err);
    if (rc != SR_OK)
        return rc;
    rd_kafka_conf_set_opaque(conf, t);
    rd_kafka_conf_set_dr_msg_cb(conf, replay_dr_cb);
    char errstr[512];
    if (!(t->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        return sr_error_set(err, SR_EKAFKA, "kafka producer: %s", errstr);
    }
    struct sr_topic_sink_params sp = {.producer = t->rk, .topic = t->name, .format = fmt,
                                      .schema_id = (int32_t)sid, .serve_when_full = true};
    return sr_topic_sink_new(&sp, &t->sink, err);
}

static sr_err_t topic_out_wait(struct replay_topic_out *t, struct sr_error *err)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(t->rk, 60000);
    if (e)
        return sr_error_set(err, SR_EKAFKA, "topic %s: not acknowledged within 60 s: %s", t->name,
                            rd_kafka_err2str(e));
    if (t->failed)
        return sr_error_set(err, SR_EKAFKA, "topic %s: %llu recommendations not delivered: %s "
                            "(state of the batch not committed)", t->name,
                            (unsigned long long)t->failed, t->first_error);
    return SR_OK;
}

static void topic_out_close(struct replay_topic_out *t)
{
    sr_topic_sink_destroy(t->sink);
    if (t->rk) {
        rd_kafka_flush(t->rk, 10000);
        rd_kafka_destroy(t->rk);
    }
}

int sr__cmd_replay(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *input = NULL, *output = NULL, *report = NULL;
    bool eval = false, resume = false;
    char tmp_state[PATH_MAX] = "";
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
    if (!rc && cfg_file && sr_config_load_file(cfg, cfg_file, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc && sr_config_apply_env(cfg, NULL, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    for (int i = 1; i < argc && !rc; i++)
        if (!strcmp(argv[i], "--set") && i + 1 < argc && sr_config_set_kv(cfg, argv[++i], &err) != SR_OK)
            rc = sr__cli_fail("replay", "%s", err.msg);
    int64_t max_events = 256;
    if (!rc && sr_config_get_int(cfg, "batch.max.events", &max_events, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc && (max_events < 1 || max_events > 1000000))
        rc = sr__cli_fail("replay", "batch.max.events: %lld is out of range (1..1000000)",
                          (long long)max_events);
    /* Fresh state unless resuming: a temporary RocksDB directory when none is named. */
    bool rocksdb_state = !strcmp(sr_config_get(cfg, "state.backend"), "rocksdb");
    if (!rc && resume && (!rocksdb_state || !sr_config_is_set(cfg, "state.dir")))
        rc = sr__cli_fail("replay", "--resume needs state.backend=rocksdb and the state.dir of "
                          "the replay to continue");
    if (!rc && rocksdb_state && !sr_config_is_set(cfg, "state.dir")) {
        const char *t = getenv("TMPDIR");
        snprintf(tmp_state, sizeof tmp_state, "%s/streamrec-replay-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(tmp_state) || sr_config_set(cfg, "state.dir", tmp_state, &err) != SR_OK) {
            rc = sr__cli_fail("replay", "cannot create a temporary state directory %s", tmp_state);
            tmp_state[0] = 0;
        }
    }
    const char *lvl = sr_config_get(cfg, "log.level");
    sr_log_level_t level;
    if (!rc && sr_log_level_parse(lvl, &level) == SR_OK && !getenv("STREAMREC_LOG_LEVEL"))
        sr_log_set_level(level);
    if (rc) {
        sr_config_destroy(cfg);
        return rc;
    }

    sr_file_source_t *src = NULL;
    sr_topic_source_t *tsrc = NULL;
    sr_file_sink_t *sink = NULL;
    struct replay_topic_out tout = {0};
    char topic[256] = "";
    bool topic_in = !strncmp(input, "topic:", 6), topic_out = !strncmp(output, "topic:", 6);
    sr_graph_t *g = NULL;
    sr_arena_t *arena = sr_arena_new(4 << 20);
    struct sr_stats stats = {0};
    if (topic_in) {
        struct sr_topic_range range;
        if (sr_topic_spec_parse(input + 6, topic, sizeof topic, &range, &err) != SR_OK ||
            sr_topic_source_open(cfg, topic, &range, &tsrc, &err) != SR_OK)
            rc = sr__cli_fail("replay", "%s", err.msg);
    } else if (sr_file_source_open(input, &src, &err) != SR_OK) {
        rc = sr__cli_fail("replay", "%s", err.msg);
    }
    if (!rc && topic_out && topic_out_open(&tout, cfg, output + 6, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc && !topic_out && sr_file_sink_open(output, &sink, &err) != SR_OK)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc) {
        char identity[600];
        snprintf(identity, sizeof identity, "replay input=%s", input);
        struct sr_graph_params gp = {
            .cfg = cfg,
            .runtime = "offline",
            .stats = &stats,
            .sink = topic_out ? sr_topic_sink_iface(tout.sink) : sr_file_sink_iface(sink),
            .source_topic = src ? sr_file_source_name(src) : topic,
            .eval = eval,
            .input_format = src && strcmp(sr_file_source_format(src), "json") ? sr_file_source_format(src) : NULL,
            .input_writer_schema_json = src ? sr_file_source_writer_schema(src) : NULL,
            .state_identity = identity,
            .state_must_be_new = !resume,
        };
        if (sr_graph_new(&gp, &g, &err) != SR_OK)
            rc = sr__cli_fail("replay", "%s", err.msg);
    }
    uint64_t t0 = sr_now_ns(), last_progress = t0;
    bool tty = sr__cli_tty();
    while (!rc) {
        struct sr_batch b;
        sr_arena_reset(arena);
        sr_err_t rr = src ? sr_file_source_read(src, (int32_t)max_events, arena, &b, &stats, &err)
                          : sr_topic_source_read(tsrc, (int32_t)max_events, arena, &b, &err);
        if (rr != SR_OK) {
            rc = sr__cli_fail("replay", "%s", err.msg);
            break;
        }
        if (b.n == 0)
            break;
        if (sr_graph_run(g, &b, &err) != SR_OK) {
            rc = sr__cli_fail("replay", "%s", err.msg);
            break;
        }
        /* A topic sink: every recommendation of the batch must be acknowledged first. */
        if (topic_out && topic_out_wait(&tout, &err) != SR_OK) {
            rc = sr__cli_fail("replay", "%s", err.msg);
            break;
        }
        /* The sink flushed this batch's output: its state may now become durable. */
        if (b.has_state && sr_graph_commit(g, b.state_id, &err) != SR_OK) {
            rc = sr__cli_fail("replay", "%s", err.msg);
            break;
        }
        uint64_t now = sr_now_ns();
        if (tty && src && now - last_progress > 200000000ULL) {
            print_progress(src, &stats, t0);
            last_progress = now;
        }
    }
    double secs = (double)(sr_now_ns() - t0) / 1e9;
    if (tty)
        fprintf(stderr, "\r%*s\r", 78, "");
    if (tty && !src)
        fprintf(stderr, "\r");
    if (sink && sr_file_sink_close(sink, &err) != SR_OK && !rc)
        rc = sr__cli_fail("replay", "%s", err.msg);
    if (!rc) {
        struct sr_eval_report ev;
        sr_graph_eval_report(g, &ev);
        uint64_t sessions = sr_graph_sessions(g);
        print_summary(&stats, &ev, eval, secs, sessions);
        if (report) {
            FILE *f = fopen(report, "w");
            if (!f) {
                rc = sr__cli_fail("replay", "%s: cannot create report", report);
            } else {
                write_report(f, &stats, &ev, eval, secs, sessions, sr_graph_model_version(g));
                fclose(f);
            }
        }
    }
    sr_graph_destroy(g);
    if (tmp_state[0]) {
        struct sr_error e2 = {0};
        if (sr_state_destroy_db(tmp_state, &e2) != SR_OK || rmdir(tmp_state) != 0)
            sr_log(SR_LOG_WARN, "replay", "temporary state directory not removed", "dir=%s", tmp_state);
    }
    topic_out_close(&tout);
    sr_file_source_close(src);
    sr_topic_source_close(tsrc);
    sr_arena_destroy(arena);
    sr_config_destroy(cfg);
    return rc;
}
