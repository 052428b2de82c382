/* op_eval.c — `eval`: next-item evaluation for replay --eval. A recommendation's target is the
 * item of the same session's next event whose type is in session.event_types; this op keeps,
 * per session, the last recommendation still waiting for its target and scores it when the
 * target arrives (HitRate@K = Recall@K, MRR@K, NDCG@K with one relevant item), plus the
 * catalogue coverage. Owns the pending table and the report. Offline runtime; one thread. */
#include "ops_int.h"
#include "sr_kernels.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct pending {
    struct pending *next;
    uint64_t hash;
    int32_t n;           /* items in rec; 0 = nothing waiting */
    uint32_t id_len;
    uint64_t evaluated, hits; /* this session's share of the report (paired comparisons) */
    double mrr, ndcg;
    int32_t *rec;        /* k slots */
    uint64_t *keys;      /* with sources: k item keys (also items outside the bundle) ... */
    uint8_t *src;        /* ... and their sources */
    uint64_t *base;      /* with the baseline: k trending-only item keys */
    int32_t nb;
    char id[];           /* session id */
};

struct eval_ctx {
    struct sr_eval_report report;
    struct pending **buckets;
    size_t n_buckets, n_entries;
    uint8_t *seen_item;  /* [V] coverage */
    int32_t k;
};

double sr_eval_rr(int32_t rank) { return rank > 0 ? 1.0 / rank : 0.0; }

double sr_eval_dcg(int32_t rank) { return rank > 0 ? 1.0 / log2(rank + 1.0) : 0.0; }

int32_t sr_eval_score(struct sr_eval_report *r, const int32_t *rec, int32_t n, int32_t target)
{
    r->evaluated++;
    for (int32_t j = 0; j < n; j++) {
        if (rec[j] == target) {
            r->hits++;
            r->mrr_sum += sr_eval_rr(j + 1);
            r->ndcg_sum += sr_eval_dcg(j + 1);
            return j + 1;
        }
    }
    return 0;
}

void sr_eval_rates(const struct sr_eval_report *r, double *hit_rate, double *mrr, double *ndcg)
{
    double n = (double)r->evaluated;
    *hit_rate = r->evaluated ? (double)r->hits / n : 0.0;
    *mrr = r->evaluated ? r->mrr_sum / n : 0.0;
    *ndcg = r->evaluated ? r->ndcg_sum / n : 0.0;
}

static sr_err_t eval_init(struct sr_op_env *env, const char *prefix, void **ctx,
                          struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct eval_ctx *c = calloc(1, sizeof *c);
    const struct sr_bundle_info *bi = sr_bundle_info(env->bundle);
    if (c) {
        c->n_buckets = 1 << 16;
        c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
        c->seen_item = calloc((size_t)bi->n_items, 1);
    }
    if (!c || !c->buckets || !c->seen_item) {
        if (c) {
            free(c->buckets);
            free(c->seen_item);
        }
        free(c);
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    }
    c->k = env->k;
    c->report.k = env->k;
    c->report.catalogue = (uint64_t)(bi->n_items - bi->first_index);
    env->eval = &c->report;
    sr__port_in(ports, SR_C_SESSION, SR_COL_STR, false);
    sr__port_in(ports, SR_C_ITEM_KEY, SR_COL_U64, false);
    sr__port_in(ports, SR_C_APPEND, SR_COL_I32, false);
    sr__port_in(ports, SR_C_REC_ITEMS, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_REC_SOURCES, SR_COL_LIST_I32, true);
    sr__port_in(ports, SR_C_REC_IDS, SR_COL_LIST_STR, true);
    sr__port_in(ports, SR_C_TREND_BASELINE, SR_COL_LIST_U64, true);
    *ctx = c;
    return SR_OK;
}

static sr_err_t grow(struct eval_ctx *c)
{
    size_t nb = c->n_buckets * 2;
    struct pending **b = calloc(nb, sizeof *b);
    if (!b)
        return SR_ENOMEM;
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (struct pending *p = c->buckets[i], *n; p; p = n) {
            n = p->next;
            p->next = b[p->hash & (nb - 1)];
            b[p->hash & (nb - 1)] = p;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = nb;
    return SR_OK;
}

static struct pending *lookup(struct eval_ctx *c, const char *id, uint32_t len, bool create)
{
    uint64_t h = sr_hash64(id, len);
    for (struct pending *p = c->buckets[h & (c->n_buckets - 1)]; p; p = p->next)
        if (p->hash == h && p->id_len == len && memcmp(p->id, id, len) == 0)
            return p;
    if (!create)
        return NULL;
    if (c->n_entries >= c->n_buckets && grow(c) != SR_OK)
        return NULL;
    struct pending *p = calloc(1, sizeof *p + len + 1);
    /* one block: rec (int32), keys and base (uint64), src (uint8), k each */
    size_t k = (size_t)c->k;
    uint8_t *blk = p ? malloc(k * (4 + 8 + 8 + 1)) : NULL;
    if (!blk) {
        free(p);
        return NULL;
    }
    p->hash = h;
    p->id_len = len;
    p->keys = (uint64_t *)blk;
    p->base = p->keys + k;
    p->rec = (int32_t *)(p->base + k);
    p->src = (uint8_t *)(p->rec + k);
    memcpy(p->id, id, len);
    p->next = c->buckets[h & (c->n_buckets - 1)];
    c->buckets[h & (c->n_buckets - 1)] = p;
    c->n_entries++;
    return p;
}

/* Scores a hit at 0-based rank j into the given sums. */
/* A hit at position j (0-based): the same terms as sr_eval_score. */
static void score_hit(uint64_t *hits, double *mrr, double *ndcg, int32_t j)
{
    (*hits)++;
    *mrr += sr_eval_rr(j + 1);
    *ndcg += sr_eval_dcg(j + 1);
}

static sr_err_t eval_run(void *ctx, struct sr_op_env *env, struct sr_batch *b, struct sr_error *err)
{
    struct eval_ctx *c = ctx;
    struct sr_col *sess = sr_batch_col(b, SR_C_SESSION), *key = sr_batch_col(b, SR_C_ITEM_KEY);
    struct sr_col *app = sr_batch_col(b, SR_C_APPEND), *rec = sr_batch_col(b, SR_C_REC_ITEMS);
    struct sr_col *rsrc = sr_batch_col(b, SR_C_REC_SOURCES), *rid = sr_batch_col(b, SR_C_REC_IDS);
    struct sr_col *rbase = sr_batch_col(b, SR_C_TREND_BASELINE);
    const char **ids = sess->data;
    const uint64_t *keys = key->data;
    const int32_t *ap = app->data, *ri = rec->data;
    /* with item sources, hits are matched by item key (DESIGN §4.9) */
    bool by_src = rsrc != NULL;
    c->report.by_source |= by_src;
    c->report.has_baseline |= rbase != NULL;
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        int32_t lo = rec->offsets[r], hi = rec->offsets[r + 1];
        struct pending *p = lookup(c, ids[r], sess->lens[r], hi > lo);
        if (!p && hi > lo)
            return sr_error_set(err, SR_ENOMEM, "eval: out of memory");
        if (p && ap[r] && p->n > 0) {
            int32_t target = sr_bundle_item_index_by_key(env->bundle, keys[r]);
            c->report.unknown_targets += target < sr_bundle_info(env->bundle)->first_index;
            c->report.evaluated++;
            p->evaluated++;
            for (int32_t j = 0; j < p->n; j++) {
                if (by_src ? p->keys[j] == keys[r] : p->rec[j] == target) {
                    score_hit(&c->report.hits, &c->report.mrr_sum, &c->report.ndcg_sum, j);
                    score_hit(&p->hits, &p->mrr, &p->ndcg, j);
                    if (by_src)
                        score_hit(&c->report.hits_by_source[p->src[j]],
                                  &c->report.mrr_by_source[p->src[j]],
                                  &c->report.ndcg_by_source[p->src[j]], j);
                    break;
                }
            }
            for (int32_t j = 0; j < p->nb; j++)
                if (p->base[j] == keys[r]) {
                    score_hit(&c->report.baseline_hits, &c->report.baseline_mrr_sum,
                              &c->report.baseline_ndcg_sum, j);
                    break;
                }
            p->n = 0;
            c->report.pending--;
        }
        if (hi > lo) {
            if (p->n > 0)
                c->report.unresolved++; /* replaced before a stored event arrived */
            else
                c->report.pending++;
            p->n = 0;
            for (int32_t j = lo; j < hi && p->n < c->k; j++) {
                if (ri[j] < 0 && !(rid && ((const char **)rid->data)[j]))
                    continue;
                if (by_src) {
                    const int32_t src = ((const int32_t *)rsrc->data)[j];
                    p->src[p->n] = (uint8_t)(src >= 0 && src < 3 ? src : 0);
                    if (rid)
                        p->keys[p->n] = sr_hash64(((const char **)rid->data)[j], rid->lens[j]);
                    else {
                        size_t len;
                        const char *id = sr_bundle_item_id(env->bundle, ri[j], &len);
                        p->keys[p->n] = sr_hash64(id, len);
                    }
                    c->report.items_by_source[p->src[p->n]]++;
                }
                p->rec[p->n++] = ri[j];
                if (ri[j] >= 0 && !c->seen_item[ri[j]]) {
                    c->seen_item[ri[j]] = 1;
                    c->report.distinct_items++;
                }
            }
            p->nb = 0;
            if (rbase) {
                const uint64_t *bk = rbase->data;
                for (int32_t j = rbase->offsets[r]; j < rbase->offsets[r + 1] && p->nb < c->k; j++)
                    p->base[p->nb++] = bk[j];
            }
        }
    }
    return SR_OK;
}

void sr__eval_sessions(const struct sr_eval_report *r, sr_eval_session_fn fn, void *opaque)
{
    const struct eval_ctx *c =
        (const struct eval_ctx *)((const char *)r - offsetof(struct eval_ctx, report));
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (const struct pending *p = c->buckets[i]; p; p = p->next) {
            if (!p->evaluated)
                continue;
            struct sr_eval_session s = {.id = p->id, .id_len = p->id_len,
                                        .evaluated = p->evaluated, .hits = p->hits,
                                        .mrr = p->mrr, .ndcg = p->ndcg};
            fn(opaque, &s);
        }
    }
}

static void eval_fini(void *ctx)
{
    struct eval_ctx *c = ctx;
    if (!c)
        return;
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (struct pending *p = c->buckets[i], *n; p; p = n) {
            n = p->next;
            free(p->keys); /* the block */
            free(p);
        }
    }
    free(c->buckets);
    free(c->seen_item);
    free(c);
}

const struct sr_op_desc sr__op_eval = {
    .name = "eval",
    .help = "next-item evaluation: HitRate/MRR/NDCG@K and coverage (replay --eval)",
    .init = eval_init,
    .run = eval_run,
    .fini = eval_fini,
};
