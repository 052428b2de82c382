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
    uint32_t evaluated, hits; /* this session's share of the report (paired comparisons) */
    double mrr, ndcg;
    int32_t *rec;        /* k slots */
    char id[];           /* session id */
};

struct eval_ctx {
    struct sr_eval_report report;
    struct pending **buckets;
    size_t n_buckets, n_entries;
    uint8_t *seen_item;  /* [V] coverage */
    int32_t k;
};

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
    int32_t *rec = p ? malloc(sizeof(int32_t) * (size_t)c->k) : NULL;
    if (!rec) {
        free(p);
        return NULL;
    }
    p->hash = h;
    p->id_len = len;
    p->rec = rec;
    memcpy(p->id, id, len);
    p->next = c->buckets[h & (c->n_buckets - 1)];
    c->buckets[h & (c->n_buckets - 1)] = p;
    c->n_entries++;
    return p;
}

static sr_err_t eval_run(void *ctx, struct sr_op_env *env, struct sr_batch *b, struct sr_error *err)
{
    struct eval_ctx *c = ctx;
    struct sr_col *sess = sr_batch_col(b, SR_C_SESSION), *key = sr_batch_col(b, SR_C_ITEM_KEY);
    struct sr_col *app = sr_batch_col(b, SR_C_APPEND), *rec = sr_batch_col(b, SR_C_REC_ITEMS);
    const char **ids = sess->data;
    const uint64_t *keys = key->data;
    const int32_t *ap = app->data, *ri = rec->data;
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        int32_t lo = rec->offsets[r], hi = rec->offsets[r + 1];
        struct pending *p = lookup(c, ids[r], sess->lens[r], hi > lo);
        if (!p && hi > lo)
            return sr_error_set(err, SR_ENOMEM, "eval: out of memory");
        if (p && ap[r] && p->n > 0) {
            int32_t target = sr_bundle_item_index_by_key(env->bundle, keys[r]);
            c->report.evaluated++;
            p->evaluated++;
            c->report.unknown_targets += target < sr_bundle_info(env->bundle)->first_index;
            for (int32_t j = 0; j < p->n; j++) {
                if (p->rec[j] == target) {
                    c->report.hits++;
                    c->report.mrr_sum += 1.0 / (j + 1);
                    c->report.ndcg_sum += 1.0 / log2(j + 2.0);
                    p->hits++;
                    p->mrr += 1.0 / (j + 1);
                    p->ndcg += 1.0 / log2(j + 2.0);
                    break;
                }
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
                if (ri[j] < 0)
                    continue;
                p->rec[p->n++] = ri[j];
                if (!c->seen_item[ri[j]]) {
                    c->seen_item[ri[j]] = 1;
                    c->report.distinct_items++;
                }
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
            free(p->rec);
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
