/* replay.c — the offline runtime (`streamrec replay`, DESIGN §1): feeds a source (a file or a
 * topic range) through the same operator graph the online runtime runs, in micro-batches of
 * batch.max.events, into an output (a file or a topic), optionally scoring next-item metrics.
 * A replay is reproducible: it starts from empty state (a temporary RocksDB directory, removed
 * at the end, unless state.dir or state.backend=memory is named), and a named state.dir that
 * already holds applied offsets is refused unless resuming. State is committed after each
 * batch's output settled, so a replay killed half-way and resumed on its state.dir continues
 * after the last committed record: a re-emitted recommendation is byte-identical to the first.
 * Owns the source, the output, the session store, the graph and the batch arena. One thread:
 * the caller's. */
#include "sr_kernels.h"
#include "sr_state.h"
#include "sr_stream.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sr_replay {
    struct sr_replay_params p;
    struct sr_source src;
    struct sr_output out;
    sr_state_t *state;
    sr_graph_t *g;
    sr_arena_t *arena;
    struct sr_stats stats;
    int32_t max_events;
    char tmp_state[PATH_MAX];   /* a temporary state.dir, removed at the end */
    sr_config_t *cfg;           /* a copy of p.cfg when state.dir had to be set */
    double seconds;
};

/* Fresh state unless resuming: a temporary RocksDB directory when none is named. */
static sr_err_t state_dir(sr_replay_t *r, struct sr_error *err)
{
    const sr_config_t *cfg = r->p.cfg;
    bool rocksdb = !strcmp(sr_config_get(cfg, "state.backend"), "rocksdb");
    if (r->p.resume && (!rocksdb || !sr_config_is_set(cfg, "state.dir")))
        return sr_error_set(err, SR_ECONFIG, "--resume needs state.backend=rocksdb and the "
                            "state.dir of the replay to continue");
    if (!rocksdb || sr_config_is_set(cfg, "state.dir"))
        return SR_OK;
    const char *t = getenv("TMPDIR");
    snprintf(r->tmp_state, sizeof r->tmp_state, "%s/streamrec-replay-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(r->tmp_state)) {
        sr_err_t rc = sr_error_set(err, SR_EIO, "cannot create a temporary state directory %s",
                                   r->tmp_state);
        r->tmp_state[0] = 0;
        return rc;
    }
    if (!(r->cfg = sr_config_dup(cfg)))
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    r->p.cfg = r->cfg;
    return sr_config_set(r->cfg, "state.dir", r->tmp_state, err);
}

sr_err_t sr_replay_new(const struct sr_replay_params *p, sr_replay_t **out, struct sr_error *err)
{
    *out = NULL;
    if (!p || !p->cfg || !p->input || !p->output)
        return sr_error_set(err, SR_EINVAL, "replay: cfg, input and output are required");
    sr_replay_t *r = calloc(1, sizeof *r);
    if (!r)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    r->p = *p;
    int64_t max_events = 256;
    sr_err_t rc = sr_config_get_int(p->cfg, "batch.max.events", &max_events, err);
    if (rc == SR_OK && (max_events < 1 || max_events > 1000000))
        rc = sr_error_set(err, SR_ECONFIG, "batch.max.events: %lld is out of range (1..1000000)",
                          (long long)max_events);
    r->max_events = (int32_t)max_events;
    if (rc == SR_OK)
        rc = state_dir(r, err);
    if (rc == SR_OK && !(r->arena = sr_arena_new(4 << 20)))
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
    if (rc == SR_OK)
        rc = sr_source_open(r->p.cfg, p->input, &r->src, err);
    if (rc == SR_OK)
        rc = sr_output_open(r->p.cfg, p->output, &r->out, err);
    sr_bundle_t *bundle = NULL;
    if (rc == SR_OK) {
        const char *dir = sr_config_get(r->p.cfg, "model.bundle");
        if (!dir || !*dir)
            rc = sr_error_set(err, SR_ECONFIG, "model.bundle is required (the bundle directory)");
        else
            rc = sr_bundle_load(dir, &bundle, err);
    }
    if (rc == SR_OK) {
        char identity[600];
        snprintf(identity, sizeof identity, "replay input=%s", p->input);
        rc = sr_session_store_open(r->p.cfg, bundle, identity, !p->resume, &r->state, err);
    }
    if (rc == SR_OK) {
        struct sr_graph_params gp = {
            .cfg = r->p.cfg,
            .runtime = "offline",
            .stats = &r->stats,
            .sink = &r->out.sink,
            .source_topic = r->src.name,
            .eval = p->eval,
            .input_format = r->src.format,
            .input_writer_schema_json = r->src.format ? r->src.writer_schema : NULL,
            .state = r->state,
            .bundle = bundle,
        };
        rc = sr_graph_new(&gp, &r->g, err);
    }
    sr_bundle_unref(bundle);
    if (rc != SR_OK) {
        sr_replay_destroy(r, NULL);
        return rc;
    }
    *out = r;
    return SR_OK;
}

sr_err_t sr_replay_run(sr_replay_t *r, struct sr_error *err)
{
    uint64_t t0 = sr_now_ns();
    sr_err_t rc = SR_OK;
    for (;;) {
        struct sr_batch b;
        sr_arena_reset(r->arena);
        if ((rc = r->src.read(r->src.ctx, r->max_events, r->arena, &b, &r->stats, err)) != SR_OK)
            break;
        if (b.n == 0)
            break;
        if ((rc = sr_graph_run(r->g, &b, err)) != SR_OK)
            break;
        /* Every output of the batch durable first; only then may its state become durable. */
        if ((rc = r->out.settle(r->out.ctx, err)) != SR_OK)
            break;
        if (b.has_state && (rc = sr_state_commit(r->state, b.state_id, err)) != SR_OK)
            break;
        if (r->p.on_batch) {
            uint64_t done = 0, total = 0;
            if (r->src.progress)
                r->src.progress(r->src.ctx, &done, &total);
            r->p.on_batch(r->p.ctx, &r->stats, done, total);
        }
    }
    r->seconds = (double)(sr_now_ns() - t0) / 1e9;
    return rc;
}

void sr_replay_result(const sr_replay_t *r, struct sr_replay_result *out)
{
    memset(out, 0, sizeof *out);
    out->stats = &r->stats;
    sr_graph_eval_report(r->g, &out->eval);
    out->has_eval = r->p.eval;
    out->seconds = r->seconds;
    out->sessions = sr_state_count(r->state);
    out->model_version = sr_graph_model_version(r->g);
}

void sr_replay_write_report(const struct sr_replay_result *res, FILE *f)
{
    const struct sr_stats *st = res->stats;
    double secs = res->seconds;
    fprintf(f, "{\"model_version\": \"%s\", \"events\": %" PRIu64 ", \"invalid\": %" PRIu64
               ", \"invalid_by_reason\": {", res->model_version, st->events, st->invalid);
    for (int i = 0; i < st->n_reasons; i++)
        fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", st->reason[i], st->reason_count[i]);
    fprintf(f, "}, \"filtered\": %" PRIu64 ", \"unknown_items\": %" PRIu64
               ", \"recommendations\": %" PRIu64
               ", \"sessions\": %" PRIu64 ", \"seconds\": %.6f, \"events_per_s\": %.1f"
               ", \"recommendations_per_s\": %.1f, \"stage_seconds\": {",
            st->filtered, st->unknown_items, st->recommendations, res->sessions, secs,
            secs > 0 ? (double)st->events / secs : 0.0,
            secs > 0 ? (double)st->recommendations / secs : 0.0);
    for (int i = 0; i < st->n_stages; i++)
        fprintf(f, "%s\"%s\": %.6f", i ? ", " : "", st->stage[i], (double)st->stage_ns[i] / 1e9);
    fprintf(f, "}");
    if (res->has_eval) {
        const struct sr_eval_report *ev = &res->eval;
        double n = ev->evaluated ? (double)ev->evaluated : 1.0;
        fprintf(f, ", \"eval\": {\"k\": %d, \"evaluated\": %" PRIu64 ", \"hits\": %" PRIu64
                   ", \"hit_rate\": %.6f, \"recall\": %.6f, \"mrr\": %.6f, \"ndcg\": %.6f"
                   ", \"coverage\": %.6f, \"distinct_items\": %" PRIu64 ", \"catalogue\": %" PRIu64
                   ", \"unresolved\": %" PRIu64 ", \"pending\": %" PRIu64
                   ", \"unknown_targets\": %" PRIu64,
                ev->k, ev->evaluated, ev->hits, (double)ev->hits / n, (double)ev->hits / n,
                ev->mrr_sum / n, ev->ndcg_sum / n,
                ev->catalogue ? (double)ev->distinct_items / (double)ev->catalogue : 0.0,
                ev->distinct_items, ev->catalogue, ev->unresolved, ev->pending,
                ev->unknown_targets);
        /* with item sources (DESIGN §4.9): each source's share of the hits, and the
         * trending-only baseline */
        static const char *const src_name[3] = {"model", "trending", "random"};
        for (int i = 0; ev->by_source && i < 3; i++)
            fprintf(f, "%s\"%s\": {\"items\": %" PRIu64 ", \"hits\": %" PRIu64
                       ", \"hit_rate\": %.6f, \"mrr\": %.6f, \"ndcg\": %.6f}%s",
                    i ? ", " : ", \"by_source\": {", src_name[i], ev->items_by_source[i],
                    ev->hits_by_source[i], (double)ev->hits_by_source[i] / n,
                    ev->mrr_by_source[i] / n, ev->ndcg_by_source[i] / n, i == 2 ? "}" : "");
        if (ev->has_baseline)
            fprintf(f, ", \"trending_baseline\": {\"hits\": %" PRIu64 ", \"hit_rate\": %.6f"
                       ", \"mrr\": %.6f, \"ndcg\": %.6f}",
                    ev->baseline_hits, (double)ev->baseline_hits / n, ev->baseline_mrr_sum / n,
                    ev->baseline_ndcg_sum / n);
        fprintf(f, "}");
    }
    fprintf(f, "}\n");
}

sr_err_t sr_replay_destroy(sr_replay_t *r, struct sr_error *err)
{
    if (!r)
        return SR_OK;
    struct sr_error local = {0};
    sr_err_t rc = sr_output_close(&r->out, err ? err : &local);
    sr_graph_destroy(r->g);
    sr_state_close(r->state);
    if (r->tmp_state[0]) {
        struct sr_error e2 = {0};
        if (sr_state_destroy_db(r->tmp_state, &e2) != SR_OK || rmdir(r->tmp_state) != 0)
            sr_log(SR_LOG_WARN, "replay", "temporary state directory not removed", "dir=%s",
                   r->tmp_state);
    }
    sr_source_close(&r->src);
    sr_arena_destroy(r->arena);
    sr_config_destroy(r->cfg);
    free(r);
    return rc;
}
