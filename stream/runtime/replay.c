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

/* One bundle's pass over the events: its own session store, graph, output and counters.
 * A replay has one arm (model.bundle), or several to compare bundles on the same events. */
struct arm {
    const char *name;           /* borrowed from the params; "" for the single arm */
    sr_config_t *cfg;           /* a copy of the replay's cfg when model.bundle or state.dir
                                 * had to be set for this arm; NULL: the replay's */
    struct sr_output out;
    sr_state_t *state;
    sr_graph_t *g;
    struct sr_stats stats;
    char tmp_state[PATH_MAX];   /* a temporary state.dir, removed at the end */
};

struct sr_replay {
    struct sr_replay_params p;
    struct sr_source src;
    sr_arena_t *arena;
    int32_t max_events;
    int n_arms;
    struct arm *arms;
    double seconds;
};

static const sr_config_t *arm_cfg(const sr_replay_t *r, const struct arm *a)
{
    return a->cfg ? a->cfg : r->p.cfg;
}

static sr_err_t arm_set(sr_replay_t *r, struct arm *a, const char *key, const char *value,
                        struct sr_error *err)
{
    if (!a->cfg && !(a->cfg = sr_config_dup(r->p.cfg)))
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    return sr_config_set(a->cfg, key, value, err);
}

/* Fresh state unless resuming: a temporary RocksDB directory when none is named. */
static sr_err_t state_dir(sr_replay_t *r, struct arm *a, struct sr_error *err)
{
    const sr_config_t *cfg = r->p.cfg;
    bool rocksdb = !strcmp(sr_config_get(cfg, "state.backend"), "rocksdb");
    if (r->p.resume && (!rocksdb || !sr_config_is_set(cfg, "state.dir")))
        return sr_error_set(err, SR_ECONFIG, "--resume needs state.backend=rocksdb and the "
                            "state.dir of the replay to continue");
    if (r->n_arms > 1 && (r->p.resume || sr_config_is_set(cfg, "state.dir")))
        return sr_error_set(err, SR_ECONFIG, "a replay of several bundles keeps each one's state "
                            "in a temporary directory: leave state.dir unset, without --resume");
    if (!rocksdb || sr_config_is_set(cfg, "state.dir"))
        return SR_OK;
    const char *t = getenv("TMPDIR");
    snprintf(a->tmp_state, sizeof a->tmp_state, "%s/streamrec-replay-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(a->tmp_state)) {
        sr_err_t rc = sr_error_set(err, SR_EIO, "cannot create a temporary state directory %s",
                                   a->tmp_state);
        a->tmp_state[0] = 0;
        return rc;
    }
    return arm_set(r, a, "state.dir", a->tmp_state, err);
}

/* The output of arm i: the spec itself with one arm; with several, FILE gets ".NAME" before its
 * extension (recs.jsonl -> recs.a.jsonl) and a topic is refused (one topic, one model). */
static sr_err_t arm_output(const sr_replay_t *r, int i, char *buf, size_t cap, struct sr_error *err)
{
    const char *spec = r->p.output;
    if (r->n_arms == 1) {
        snprintf(buf, cap, "%s", spec);
        return SR_OK;
    }
    if (!spec) {
        snprintf(buf, cap, "/dev/null");
        return SR_OK;
    }
    if (!strncmp(spec, "topic:", 6) || !strcmp(spec, "-"))
        return sr_error_set(err, SR_ECONFIG, "--output %s: with several bundles the output must "
                            "be a file (each bundle writes FILE.NAME.ext) or left out", spec);
    const char *slash = strrchr(spec, '/'), *dot = strrchr(spec, '.');
    if (!dot || (slash && dot < slash))
        dot = spec + strlen(spec);
    if ((size_t)snprintf(buf, cap, "%.*s.%s%s", (int)(dot - spec), spec, r->arms[i].name, dot) >= cap)
        return sr_error_set(err, SR_EINVAL, "--output %s: path too long", spec);
    return SR_OK;
}

static sr_err_t arm_open(sr_replay_t *r, int i, struct sr_error *err)
{
    struct arm *a = &r->arms[i];
    const struct sr_replay_params *p = &r->p;
    char spec[PATH_MAX + 64];
    sr_err_t rc = state_dir(r, a, err);
    if (rc == SR_OK && p->n_bundles > 0)
        rc = arm_set(r, a, "model.bundle", p->bundles[i].dir, err);
    if (rc == SR_OK)
        rc = arm_output(r, i, spec, sizeof spec, err);
    if (rc == SR_OK)
        rc = sr_output_open(arm_cfg(r, a), spec, &a->out, err);
    sr_bundle_t *bundle = NULL;
    if (rc == SR_OK) {
        const char *dir = sr_config_get(arm_cfg(r, a), "model.bundle");
        if (!dir || !*dir)
            rc = sr_error_set(err, SR_ECONFIG, "model.bundle is required (the bundle directory)");
        else
            rc = sr_bundle_load(dir, &bundle, err);
    }
    if (rc == SR_OK) {
        char identity[600];
        snprintf(identity, sizeof identity, "replay input=%s", p->input);
        rc = sr_session_store_open(arm_cfg(r, a), bundle, identity, !p->resume, &a->state, err);
    }
    if (rc == SR_OK) {
        struct sr_graph_params gp = {
            .cfg = arm_cfg(r, a),
            .runtime = "offline",
            .stats = &a->stats,
            .sink = &a->out.sink,
            .source_topic = r->src.name,
            .eval = p->eval,
            .input_format = r->src.format,
            .input_writer_schema_json = r->src.format ? r->src.writer_schema : NULL,
            .state = a->state,
            .bundle = bundle,
        };
        rc = sr_graph_new(&gp, &a->g, err);
    }
    sr_bundle_unref(bundle);
    if (rc != SR_OK && p->n_bundles > 0)
        sr_error_prefix(err, "bundle %s", a->name);
    return rc;
}

sr_err_t sr_replay_new(const struct sr_replay_params *p, sr_replay_t **out, struct sr_error *err)
{
    *out = NULL;
    if (!p || !p->cfg || !p->input || (!p->output && p->n_bundles < 2))
        return sr_error_set(err, SR_EINVAL, "replay: cfg, input and output are required");
    if (p->n_bundles < 0 || p->n_bundles > SR_REPLAY_MAX_BUNDLES)
        return sr_error_set(err, SR_EINVAL, "replay: 1..%d bundles", SR_REPLAY_MAX_BUNDLES);
    for (int i = 0; i < p->n_bundles; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(p->bundles[i].name, p->bundles[j].name))
                return sr_error_set(err, SR_EINVAL, "replay: bundle name '%s' given twice",
                                    p->bundles[i].name);
    sr_replay_t *r = calloc(1, sizeof *r);
    if (!r)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    r->p = *p;
    r->n_arms = p->n_bundles > 0 ? p->n_bundles : 1;
    if (!(r->arms = calloc((size_t)r->n_arms, sizeof *r->arms))) {
        free(r);
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    }
    for (int i = 0; i < r->n_arms; i++)
        r->arms[i].name = p->n_bundles > 0 ? p->bundles[i].name : "";
    int64_t max_events = 256;
    sr_err_t rc = sr_config_get_int(p->cfg, "batch.max.events", &max_events, err);
    if (rc == SR_OK && (max_events < 1 || max_events > 1000000))
        rc = sr_error_set(err, SR_ECONFIG, "batch.max.events: %lld is out of range (1..1000000)",
                          (long long)max_events);
    r->max_events = (int32_t)max_events;
    if (rc == SR_OK && !(r->arena = sr_arena_new(4 << 20)))
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
    if (rc == SR_OK)
        rc = sr_source_open(r->p.cfg, p->input, &r->src, err);
    for (int i = 0; rc == SR_OK && i < r->n_arms; i++)
        rc = arm_open(r, i, err);
    if (rc != SR_OK) {
        sr_replay_destroy(r, NULL);
        return rc;
    }
    *out = r;
    return SR_OK;
}

/* What the source itself counted (records it could not even frame) goes to every arm. */
static void stats_add_source(struct sr_stats *dst, const struct sr_stats *src)
{
    dst->events += src->events;
    for (int i = 0; i < src->n_reasons; i++)
        for (uint64_t c = 0; c < src->reason_count[i]; c++)
            sr_stats_invalid(dst, src->reason[i]);
}

sr_err_t sr_replay_run(sr_replay_t *r, struct sr_error *err)
{
    uint64_t t0 = sr_now_ns();
    sr_err_t rc = SR_OK;
    const bool several = r->n_arms > 1;
    for (;;) {
        struct sr_batch b;
        struct sr_stats src_stats = {0};
        sr_arena_reset(r->arena);
        if ((rc = r->src.read(r->src.ctx, r->max_events, r->arena, &b,
                              several ? &src_stats : &r->arms[0].stats, err)) != SR_OK)
            break;
        if (b.n == 0)
            break;
        for (int i = 0; i < r->n_arms && rc == SR_OK; i++) {
            struct arm *a = &r->arms[i];
            /* Each arm runs on the source columns as read: ops add columns and shrink the
             * selection, so an arm gets its own copy of the selection (columns are shared). */
            struct sr_batch ab = b;
            if (several) {
                stats_add_source(&a->stats, &src_stats);
                if (!(ab.sel = sr_arena_alloc(r->arena, sizeof(int32_t) * (size_t)(b.n + 1), 8))) {
                    rc = sr_error_set(err, SR_ENOMEM, "out of memory");
                    break;
                }
                memcpy(ab.sel, b.sel, sizeof(int32_t) * (size_t)b.n_sel);
            }
            if ((rc = sr_graph_run(a->g, &ab, err)) != SR_OK)
                break;
            /* Every output of the batch durable first; only then may its state become durable. */
            if ((rc = a->out.settle(a->out.ctx, err)) != SR_OK)
                break;
            if (ab.has_state && (rc = sr_state_commit(a->state, ab.state_id, err)) != SR_OK)
                break;
        }
        if (rc != SR_OK)
            break;
        if (r->p.on_batch) {
            uint64_t done = 0, total = 0;
            if (r->src.progress)
                r->src.progress(r->src.ctx, &done, &total);
            r->p.on_batch(r->p.ctx, &r->arms[0].stats, done, total);
        }
    }
    r->seconds = (double)(sr_now_ns() - t0) / 1e9;
    return rc;
}

int sr_replay_n_bundles(const sr_replay_t *r)
{
    return r->n_arms;
}

void sr_replay_result(const sr_replay_t *r, struct sr_replay_result *out)
{
    sr_replay_result_of(r, 0, out);
}

void sr_replay_result_of(const sr_replay_t *r, int i, struct sr_replay_result *out)
{
    const struct arm *a = &r->arms[i];
    memset(out, 0, sizeof *out);
    out->name = a->name;
    out->stats = &a->stats;
    sr_graph_eval_report(a->g, &out->eval);
    out->has_eval = r->p.eval;
    out->seconds = r->seconds;
    out->sessions = sr_state_count(a->state);
    out->model_version = sr_graph_model_version(a->g);
}

/* ---- paired comparison: bootstrap over sessions ------------------------------------------- */

/* One session's sums in the two arms compared (0: the baseline, 1: the candidate). */
struct pair {
    uint64_t hash;
    const char *id;
    uint32_t id_len;
    uint64_t ev[2], hits[2];
    double mrr[2], ndcg[2];
};

struct pairing {
    struct pair *slots;      /* open addressing, cap a power of two */
    size_t cap, n;
    int side;
    char **ids;              /* copies of the session ids, freed at the end */
    size_t n_ids;
    bool oom;
};

static void count_cb(void *opaque, const struct sr_eval_session *s)
{
    (void)s;
    (*(size_t *)opaque)++;
}

static void pair_cb(void *opaque, const struct sr_eval_session *s)
{
    struct pairing *pt = opaque;
    if (pt->oom)
        return;
    uint64_t h = sr_hash64(s->id, s->id_len);
    size_t i = h & (pt->cap - 1);
    while (pt->slots[i].id && !(pt->slots[i].hash == h && pt->slots[i].id_len == s->id_len &&
                                !memcmp(pt->slots[i].id, s->id, s->id_len)))
        i = (i + 1) & (pt->cap - 1);
    struct pair *q = &pt->slots[i];
    if (!q->id) {
        char *copy = malloc(s->id_len + 1u);
        if (!copy) {
            pt->oom = true;
            return;
        }
        memcpy(copy, s->id, s->id_len);
        pt->ids[pt->n_ids++] = copy;
        q->hash = h;
        q->id = copy;
        q->id_len = s->id_len;
        pt->n++;
    }
    q->ev[pt->side] = s->evaluated;
    q->hits[pt->side] = s->hits;
    q->mrr[pt->side] = s->mrr;
    q->ndcg[pt->side] = s->ndcg;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int pair_cmp(const void *a, const void *b)
{
    const struct pair *x = *(const struct pair *const *)a, *y = *(const struct pair *const *)b;
    uint32_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
    int c = memcmp(x->id, y->id, n);
    return c ? c : (x->id_len > y->id_len) - (x->id_len < y->id_len);
}

/* Metric m (0 HitRate, 1 MRR, 2 NDCG) of side s over the sums. */
static double metric(const double sum[2][4], int s, int m)
{
    return sum[s][0] > 0 ? sum[s][1 + m] / sum[s][0] : 0.0;
}

sr_err_t sr_replay_compare(const sr_replay_t *r, int i, int resamples, uint64_t seed,
                           struct sr_replay_diff *out, struct sr_error *err)
{
    memset(out, 0, sizeof *out);
    if (!r->p.eval || i <= 0 || i >= r->n_arms || resamples < 1)
        return sr_error_set(err, SR_EINVAL, "compare: needs --eval, a candidate 1..%d and "
                            "resamples >= 1", r->n_arms - 1);
    size_t n0 = 0, n1 = 0;
    sr_graph_eval_sessions(r->arms[0].g, count_cb, &n0);
    sr_graph_eval_sessions(r->arms[i].g, count_cb, &n1);
    struct pairing pt = {.cap = 16};
    while (pt.cap < 2 * (n0 + n1))
        pt.cap <<= 1;
    pt.slots = calloc(pt.cap, sizeof *pt.slots);
    pt.ids = malloc(sizeof(char *) * (n0 + n1 + 1));
    struct pair **ps = NULL;
    double *diffs = NULL;
    sr_err_t rc = SR_OK;
    if (!pt.slots || !pt.ids) {
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
        goto done;
    }
    pt.side = 0;
    sr_graph_eval_sessions(r->arms[0].g, pair_cb, &pt);
    pt.side = 1;
    sr_graph_eval_sessions(r->arms[i].g, pair_cb, &pt);
    ps = malloc(sizeof *ps * (pt.n + 1));
    diffs = malloc(sizeof(double) * 3 * (size_t)resamples);
    if (pt.oom || !ps || !diffs) {
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
        goto done;
    }
    /* Sessions in a fixed order (by id), so the resamples do not depend on hash-table layout. */
    size_t n = 0;
    for (size_t k = 0; k < pt.cap; k++)
        if (pt.slots[k].id)
            ps[n++] = &pt.slots[k];
    qsort(ps, n, sizeof *ps, pair_cmp);
    double full[2][4] = {{0}};
    for (size_t k = 0; k < n; k++)
        for (int s = 0; s < 2; s++) {
            full[s][0] += ps[k]->ev[s];
            full[s][1] += ps[k]->hits[s];
            full[s][2] += ps[k]->mrr[s];
            full[s][3] += ps[k]->ndcg[s];
        }
    out->sessions = n;
    out->resamples = resamples;
    for (int m = 0; m < 3; m++)
        out->diff[m] = metric(full, 1, m) - metric(full, 0, m);
    uint64_t x = seed;
    for (int b = 0; b < resamples && n > 0; b++) {
        double sum[2][4] = {{0}};
        for (size_t k = 0; k < n; k++) {
            const struct pair *q = ps[(size_t)(((unsigned __int128)splitmix64(&x) * n) >> 64)];
            for (int s = 0; s < 2; s++) {
                sum[s][0] += q->ev[s];
                sum[s][1] += q->hits[s];
                sum[s][2] += q->mrr[s];
                sum[s][3] += q->ndcg[s];
            }
        }
        for (int m = 0; m < 3; m++)
            diffs[(size_t)m * (size_t)resamples + (size_t)b] = metric(sum, 1, m) - metric(sum, 0, m);
    }
    for (int m = 0; m < 3 && n > 0; m++) {
        double *d = diffs + (size_t)m * (size_t)resamples;
        qsort(d, (size_t)resamples, sizeof *d, cmp_double);
        out->lo[m] = d[(size_t)(0.025 * (resamples - 1) + 0.5)];
        out->hi[m] = d[(size_t)(0.975 * (resamples - 1) + 0.5)];
    }
done:
    for (size_t k = 0; k < pt.n_ids; k++)
        free(pt.ids[k]);
    free(pt.ids);
    free(pt.slots);
    free(ps);
    free(diffs);
    return rc;
}

static void write_result(const struct sr_replay_result *res, FILE *f)
{
    const struct sr_stats *st = res->stats;
    double secs = res->seconds;
    fprintf(f, "{");
    if (res->name && *res->name)
        fprintf(f, "\"name\": \"%s\", ", res->name);
    fprintf(f, "\"model_version\": \"%s\", \"events\": %" PRIu64 ", \"invalid\": %" PRIu64
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
    fprintf(f, "}");
}

void sr_replay_write_report(const struct sr_replay_result *res, FILE *f)
{
    write_result(res, f);
    fprintf(f, "\n");
}

sr_err_t sr_replay_write_comparison(const sr_replay_t *r, int resamples, uint64_t seed, FILE *f,
                                    struct sr_error *err)
{
    static const char *const names[3] = {"hit_rate", "mrr", "ndcg"};
    fprintf(f, "{\"bundles\": [");
    for (int i = 0; i < r->n_arms; i++) {
        struct sr_replay_result res;
        sr_replay_result_of(r, i, &res);
        fprintf(f, "%s", i ? ", " : "");
        write_result(&res, f);
    }
    fprintf(f, "], \"comparison\": [");
    for (int i = 1; i < r->n_arms && r->p.eval; i++) {
        struct sr_replay_diff d;
        sr_err_t rc = sr_replay_compare(r, i, resamples, seed, &d, err);
        if (rc != SR_OK)
            return rc;
        fprintf(f, "%s{\"baseline\": \"%s\", \"candidate\": \"%s\", \"sessions\": %" PRIu64
                   ", \"resamples\": %d, \"confidence\": 0.95",
                i > 1 ? ", " : "", r->arms[0].name, r->arms[i].name, d.sessions, d.resamples);
        for (int m = 0; m < 3; m++)
            fprintf(f, ", \"%s\": {\"diff\": %.6f, \"lo\": %.6f, \"hi\": %.6f}", names[m],
                    d.diff[m], d.lo[m], d.hi[m]);
        fprintf(f, "}");
    }
    fprintf(f, "]}\n");
    return SR_OK;
}

sr_err_t sr_replay_destroy(sr_replay_t *r, struct sr_error *err)
{
    if (!r)
        return SR_OK;
    struct sr_error local = {0};
    sr_err_t rc = SR_OK;
    for (int i = 0; r->arms && i < r->n_arms; i++) {
        struct arm *a = &r->arms[i];
        sr_err_t c = sr_output_close(&a->out, rc == SR_OK ? (err ? err : &local) : &local);
        if (rc == SR_OK)
            rc = c;
        sr_graph_destroy(a->g);
        sr_state_close(a->state);
        if (a->tmp_state[0]) {
            struct sr_error e2 = {0};
            /* RocksDB's destroy removes the directory itself when it has emptied it */
            if (sr_state_destroy_db(a->tmp_state, &e2) == SR_OK && rmdir(a->tmp_state) != 0 &&
                errno != ENOENT)
                sr_error_set(&e2, SR_EIO, "%s", strerror(errno));
            if (e2.msg[0])
                sr_log(SR_LOG_WARN, "replay", "temporary state directory not removed",
                       "dir=%s error=\"%s\"", a->tmp_state, e2.msg);
        }
        sr_config_destroy(a->cfg);
    }
    free(r->arms);
    sr_source_close(&r->src);
    sr_arena_destroy(r->arena);
    free(r);
    return rc;
}
