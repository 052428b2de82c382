/* op_model.c — the model ops:
 *   `categorify`  session item keys (hashes of raw ids, as state stores them) → bundle indices,
 *                 unknown → items.oov_index;
 *   `encode`      the sequence model over every trigger row's session, one batched call;
 *                 with encode.incremental and a model that keeps encoder states (gru4rec on
 *                 cpu), each session resumes from the state stored with it and the new states
 *                 go into the batch session_update staged (DESIGN §3.1);
 *   `retrieve`    top-k over the catalogue for those rows (B×k), honouring the per-row
 *                 `exclude` lists and the static item rules (env->item_allowed): exact, or
 *                 through the bundle's FAISS index as the model's retrieval mode says
 *                 (retrieval.mode, set at graph load; kernels/retrieval.c keeps the contract);
 *                 with candidate rules (boosts, recs.min_score, recs.max_per_category) it
 *                 takes enough candidates that the rules' answer is the whole catalogue's.
 * The model is the graph's (env->model); these ops own only their contexts. */
#include "ops_int.h"
#include "sr_kernels.h"
#include "sr_state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- categorify ----------------------------------------------------------------------- */

static sr_err_t categorify_init(struct sr_op_env *env, const char *prefix, void **ctx,
                                struct sr_op_ports *ports, struct sr_error *err)
{
    (void)env, (void)prefix, (void)err;
    *ctx = NULL;
    sr__port_in(ports, SR_C_SESSION_KEYS, SR_COL_LIST_U64, false);
    sr__port_out(ports, SR_C_SESSION_ITEMS, SR_COL_LIST_I32);
    return SR_OK;
}

static sr_err_t categorify_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                               struct sr_error *err)
{
    (void)ctx;
    struct sr_col *keys = sr_batch_col(b, SR_C_SESSION_KEYS), *items;
    int32_t total = keys->offsets[b->n];
    sr_err_t rc = sr_batch_add(b, SR_C_SESSION_ITEMS, SR_COL_LIST_I32, total, &items, err);
    if (rc != SR_OK)
        return rc;
    memcpy(items->offsets, keys->offsets, sizeof(int32_t) * (size_t)(b->n + 1));
    const uint64_t *k = keys->data;
    int32_t *out = items->data;
    for (int32_t i = 0; i < total; i++)
        out[i] = sr_bundle_item_index_by_key(env->bundle, k[i]);
    return SR_OK;
}

const struct sr_op_desc sr__op_categorify = {
    .name = "categorify",
    .help = "map session item keys to bundle indices (unknown -> items.oov_index)",
    .init = categorify_init,
    .run = categorify_run,
};

/* ---- encode --------------------------------------------------------------------------- */

struct encode_ctx {
    bool incremental;        /* encode.incremental */
    int64_t cache_bytes;     /* encode.cache.bytes (gpt2) */
    const sr_model_t *armed; /* the model whose encode cache was set (a reload brings another;
                              * a reused address only means that one runs without a cache) */
};

static sr_err_t encode_init(struct sr_op_env *env, const char *prefix, void **ctx,
                            struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct encode_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    sr_err_t rc = sr_config_get_bool(env->cfg, "encode.incremental", &c->incremental, err);
    if (rc == SR_OK)
        rc = sr_config_get_int(env->cfg, "encode.cache.bytes", &c->cache_bytes, err);
    if (rc == SR_OK && c->cache_bytes < 0)
        rc = sr_error_set(err, SR_ECONFIG, "encode.cache.bytes: %lld is negative",
                          (long long)c->cache_bytes);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    *ctx = c;
    sr__port_in(ports, SR_C_TRIGGER, SR_COL_I32, false);
    sr__port_in(ports, SR_C_SESSION_ITEMS, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_SESSION, SR_COL_STR, true);
    sr__port_out(ports, SR_C_VEC, SR_COL_LIST_F32);
    return SR_OK;
}

/* The incremental path: the trigger rows' sessions as session_update staged them (the
 * encoder state they carry is the one read at the start of the batch), one resumed encode,
 * and each session's new state — from its last trigger row — back into the staged batch. A
 * state that cannot be kept (the session outgrew max_len) is removed. */
static sr_err_t encode_resume(struct sr_op_env *env, struct sr_batch *b, const int32_t *rows,
                              int32_t n, const struct sr_session_batch *sb, float *vecs,
                              struct sr_error *err)
{
    sr_arena_t *A = b->arena;
    struct sr_col *sess = sr_batch_col(b, SR_C_SESSION);
    const char **ids = sess->data;
    const int32_t *part = sr_batch_col(b, SR_C_SRC_PARTITION)->data;
    size_t ssz = sr_model_state_size(env->model);
    struct sr_state_key *keys = sr_arena_alloc(A, sizeof *keys * (size_t)n, 16);
    struct sr_session *cur = sr_arena_alloc(A, sizeof *cur * (size_t)n, 16);
    const uint8_t **in = sr_arena_alloc(A, sizeof *in * (size_t)n, 16);
    uint32_t *in_len = sr_arena_alloc(A, sizeof *in_len * (size_t)n, 16);
    uint8_t *out = sr_arena_alloc(A, ssz * (size_t)n, 16), *ok = sr_arena_alloc(A, (size_t)n, 16);
    if (!keys || !cur || !in || !in_len || !out || !ok)
        return sr_error_set(err, SR_ENOMEM, "encode: out of memory");
    for (int32_t i = 0; i < n; i++)
        keys[i] = (struct sr_state_key){.partition = part[rows[i]], .len = sess->lens[rows[i]],
                                        .id = ids[rows[i]]};
    sr_err_t rc = sr_state_multi_get(env->state, (size_t)n, keys, NULL, cur, A, err);
    if (rc != SR_OK)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        in[i] = cur[i].found ? cur[i].aux : NULL;
        in_len[i] = cur[i].found ? cur[i].aux_len : 0;
    }
    struct sr_encode_states st = {.in = in, .in_len = in_len, .out = out, .out_ok = ok};
    if ((rc = sr_model_encode_resume(env->model, sb, &st, vecs, err)) != SR_OK)
        return rc;
    /* rows are in stream order: the last trigger row of a session writes last and wins */
    for (int32_t i = 0; i < n && rc == SR_OK; i++) {
        if (ok[i])
            rc = sr_state_stage_set_aux(env->state, env->staged_id, &keys[i],
                                        out + (size_t)i * ssz, (uint32_t)ssz, err);
        else if (in_len[i])
            rc = sr_state_stage_set_aux(env->state, env->staged_id, &keys[i], NULL, 0, err);
    }
    return rc;
}

static sr_err_t encode_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                           struct sr_error *err)
{
    struct encode_ctx *c = ctx;
    const int d = sr_bundle_info(env->bundle)->d_model;
    struct sr_col *items = sr_batch_col(b, SR_C_SESSION_ITEMS), *vec;
    const int32_t *trig = sr_batch_col(b, SR_C_TRIGGER)->data;
    /* Pack the trigger rows with a non-empty session into one model batch. */
    int32_t n = 0, tokens = 0;
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        int32_t len = items->offsets[r + 1] - items->offsets[r];
        if (trig[r] && len > 0) {
            n++;
            tokens += len;
        }
    }
    sr_err_t rc = sr_batch_add(b, SR_C_VEC, SR_COL_LIST_F32, (int64_t)n * d, &vec, err);
    if (rc != SR_OK || n == 0)
        return rc;
    int32_t *offsets = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)(n + 1), 16);
    int32_t *packed = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)(tokens > 0 ? tokens : 1), 16);
    int32_t *rows = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)n, 16);
    if (!offsets || !packed || !rows)
        return sr_error_set(err, SR_ENOMEM, "encode: out of memory");
    const int32_t *src = items->data;
    int32_t j = 0, t = 0;
    offsets[0] = 0;
    for (int32_t r = 0, s = 0; r < b->n; r++) {
        /* vec offsets are per row (empty for rows not encoded), rows in order */
        vec->offsets[r + 1] = vec->offsets[r];
        if (s < b->n_sel && b->sel[s] == r) {
            s++;
            int32_t lo = items->offsets[r], hi = items->offsets[r + 1];
            if (trig[r] && hi > lo) {
                memcpy(packed + t, src + lo, sizeof(int32_t) * (size_t)(hi - lo));
                t += hi - lo;
                rows[j] = r;
                offsets[++j] = t;
                vec->offsets[r + 1] += d;
            }
        }
    }
    struct sr_session_batch sb = {.n = n, .offsets = offsets, .items = packed};
    if (c->incremental && c->cache_bytes > 0 && c->armed != env->model) {
        /* gpt2 on cpu keeps an encode cache (DESIGN §3.1); other models go without one */
        struct sr_error e2 = {0};
        rc = sr_model_set_encode_cache(env->model, (size_t)c->cache_bytes, &e2);
        if (rc != SR_OK && rc != SR_EUNSUPPORTED)
            return sr_error_set(err, rc, "encode: %s", e2.msg);
        c->armed = env->model;
    }
    /* resumable only where session_update staged this batch's sessions (the states live with
     * them) and the model keeps states */
    if (c->incremental && env->state && env->has_staged && sr_batch_col(b, SR_C_SESSION) &&
        sr_batch_col(b, SR_C_SRC_PARTITION) && sr_model_state_size(env->model))
        return encode_resume(env, b, rows, n, &sb, vec->data, err);
    return sr_model_encode(env->model, &sb, vec->data, err);
}

static void encode_fini(void *ctx) { free(ctx); }

const struct sr_op_desc sr__op_encode = {
    .name = "encode",
    .help = "session vectors from the sequence model (gpt2 or gru4rec) for trigger rows",
    .init = encode_init,
    .run = encode_run,
    .fini = encode_fini,
};

/* ---- retrieve ------------------------------------------------------------------------- */

/* Candidate rules (DESIGN §4.7): boosts (env->item_boost), recs.min_score and
 * recs.max_per_category act on candidates before the final top-k. Retrieval then asks for C
 * candidates (4k + 16 first) and a row is final once no item beyond them could change its
 * answer: its k-th pick scores above the C-th candidate's score plus the largest boost, or the
 * candidates hold every eligible item, or nothing beyond them reaches recs.min_score. A row
 * not final asks again alone with 4C. The answer is therefore the one over the whole
 * catalogue, whatever C, batch or path (exact or FAISS, whose candidates are exact-scored). */
struct retrieve_ctx {
    bool filter_set;
    bool rules;            /* any candidate rule set: the path below, else plain top-k */
    int32_t max_per_cat;   /* 0: no cap */
    int32_t *cat;          /* [V] category id of each item (with a cap) */
    bool has_min;
    double min_score;
    double max_boost;      /* largest positive boost, 0 without */
    int32_t eligible;      /* items the static filter allows (set at the first run) */
};

struct cand {
    double a;              /* score after boosts */
    int32_t idx;
};

static int cand_cmp(const void *x, const void *y)
{
    const struct cand *p = x, *q = y;
    if (p->a != q->a)
        return p->a > q->a ? -1 : 1;
    return p->idx < q->idx ? -1 : p->idx > q->idx;
}

/* Interns the `category` column into ids. */
static sr_err_t category_ids(struct sr_op_env *env, struct retrieve_ctx *c, struct sr_error *err)
{
    const struct sr_bundle_info *bi = sr_bundle_info(env->bundle);
    int col = sr_bundle_attr_column(env->bundle, "category");
    if (col < 0)
        return sr_error_set(err, SR_ECONFIG, "recs.max_per_category: items.tsv of bundle %s has "
                            "no column 'category'", bi->dir);
    uint32_t tcap = 16;
    while (tcap < 2u * (uint32_t)bi->n_items)
        tcap <<= 1;
    int32_t *tab = malloc(sizeof(int32_t) * tcap); /* item index of each category's first item */
    c->cat = calloc((size_t)bi->n_items, sizeof(int32_t));
    if (!tab || !c->cat) {
        free(tab);
        return sr_error_set(err, SR_ENOMEM, "out of memory for the category table");
    }
    memset(tab, 0xff, sizeof(int32_t) * tcap);
    for (int32_t j = bi->first_index; j < bi->n_items; j++) {
        const char *v = sr_bundle_attr(env->bundle, col, j);
        uint32_t h = (uint32_t)sr_hash64(v, strlen(v)) & (tcap - 1);
        while (tab[h] >= 0 && strcmp(sr_bundle_attr(env->bundle, col, tab[h]), v))
            h = (h + 1) & (tcap - 1);
        if (tab[h] < 0)
            tab[h] = j;
        c->cat[j] = tab[h];
    }
    free(tab);
    return SR_OK;
}

static sr_err_t retrieve_init(struct sr_op_env *env, const char *prefix, void **ctx,
                              struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct retrieve_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    int64_t cap = 0;
    sr_err_t rc = sr_config_get_int(env->cfg, "recs.max_per_category", &cap, err);
    const char *ms = sr_config_get(env->cfg, "recs.min_score");
    if (rc == SR_OK && ms && *ms) {
        c->has_min = true;
        rc = sr__cfg_number(env->cfg, "recs.min_score", -HUGE_VAL, HUGE_VAL, false,
                            &c->min_score, err);
    }
    c->max_per_cat = (int32_t)cap;
    if (rc == SR_OK && c->max_per_cat > 0)
        rc = category_ids(env, c, err);
    if (rc != SR_OK) {
        free(c->cat);
        free(c);
        return rc;
    }
    if (env->item_boost) /* declared boost ops ran their init before this one */
        for (int32_t j = 0; j < sr_bundle_info(env->bundle)->n_items; j++)
            if (env->item_boost[j] > c->max_boost)
                c->max_boost = env->item_boost[j];
    c->rules = c->max_per_cat > 0 || c->has_min || env->item_boost;
    *ctx = c;
    sr__port_in(ports, SR_C_VEC, SR_COL_LIST_F32, false);
    sr__port_in(ports, SR_C_EXCLUDE, SR_COL_LIST_I32, true);
    sr__port_out(ports, SR_C_REC_ITEMS, SR_COL_LIST_I32);
    sr__port_out(ports, SR_C_REC_SCORES, SR_COL_LIST_F32);
    return SR_OK;
}

/* Applies the candidate rules to one row's C candidates (descending, -1 = none); writes up to
 * k picks (rest -1) and returns whether the row is final (see above). */
static bool rules_row(const struct retrieve_ctx *c, const struct sr_op_env *env,
                      const int32_t *ci, const float *cs, int32_t C, int32_t k, struct cand *tmp,
                      int32_t *cnt_cat, int32_t *cnt_n, int32_t *oi, float *os)
{
    int32_t m = 0, valid = 0;
    for (int32_t j = 0; j < C && ci[j] >= 0; j++) {
        valid++;
        double a = (double)cs[j] + (env->item_boost ? (double)env->item_boost[ci[j]] : 0.0);
        if (c->has_min && a < c->min_score)
            continue;
        tmp[m++] = (struct cand){.a = a, .idx = ci[j]};
    }
    qsort(tmp, (size_t)m, sizeof *tmp, cand_cmp);
    int32_t got = 0, ncat = 0;
    double last = 0;
    for (int32_t j = 0; j < m && got < k; j++) {
        if (c->max_per_cat > 0) {
            int32_t cat = c->cat[tmp[j].idx], q = 0;
            while (q < ncat && cnt_cat[q] != cat)
                q++;
            if (q == ncat) {
                cnt_cat[ncat] = cat;
                cnt_n[ncat++] = 0;
            }
            if (cnt_n[q] >= c->max_per_cat)
                continue;
            cnt_n[q]++;
        }
        oi[got] = tmp[j].idx;
        os[got++] = (float)tmp[j].a;
        last = tmp[j].a;
    }
    for (int32_t j = got; j < k; j++) {
        oi[j] = -1;
        os[j] = 0;
    }
    if (valid < C || valid >= c->eligible)
        return true; /* every eligible item was a candidate */
    double beyond = (double)cs[valid - 1] + c->max_boost; /* bound of any item not a candidate */
    if (c->has_min && beyond < c->min_score)
        return true;
    return got == k && (last > beyond || (c->max_boost == 0 && last >= beyond));
}

static sr_err_t retrieve_rules(struct retrieve_ctx *c, struct sr_op_env *env, struct sr_batch *b,
                               int32_t n, const float *vec, const int32_t *eo, const int32_t *ei,
                               int32_t *oi, float *os, struct sr_error *err)
{
    const int d = sr_bundle_info(env->bundle)->d_model, k = env->k_retrieve;
    int32_t C = 4 * k + 16;
    if (C > c->eligible)
        C = c->eligible > k ? c->eligible : k;
    int32_t *ci = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)n * (size_t)C, 16);
    float *cs = sr_arena_alloc(b->arena, sizeof(float) * (size_t)n * (size_t)C, 16);
    struct cand *tmp = malloc(sizeof *tmp * (size_t)C);
    int32_t *cc = malloc(sizeof(int32_t) * 2 * (size_t)k);
    sr_err_t rc = !ci || !cs || !tmp || !cc ? sr_error_set(err, SR_ENOMEM, "retrieve: out of memory")
                                            : SR_OK;
    if (rc == SR_OK)
        rc = sr_model_topk(env->model, n, vec, eo, ei, C, ci, cs, err);
    for (int32_t r = 0; r < n && rc == SR_OK; r++) {
        int32_t *o = oi + (size_t)r * k;
        float *s = os + (size_t)r * k;
        if (rules_row(c, env, ci + (size_t)r * C, cs + (size_t)r * C, C, k, tmp, cc, cc + k, o, s))
            continue;
        /* Not final: this row alone with a growing candidate list. */
        int32_t e1[2] = {0, eo ? eo[r + 1] - eo[r] : 0};
        bool done = false;
        for (int64_t C2 = (int64_t)C * 4; !done && rc == SR_OK; C2 *= 4) {
            if (C2 > c->eligible)
                C2 = c->eligible;
            int32_t *ci2 = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)C2, 16);
            float *cs2 = sr_arena_alloc(b->arena, sizeof(float) * (size_t)C2, 16);
            struct cand *t2 = realloc(tmp, sizeof *tmp * (size_t)C2);
            if (!ci2 || !cs2 || !t2) {
                rc = sr_error_set(err, SR_ENOMEM, "retrieve: out of memory");
                break;
            }
            tmp = t2;
            rc = sr_model_topk(env->model, 1, vec + (size_t)r * d, eo ? e1 : NULL,
                               eo ? ei + eo[r] : NULL, (int)C2, ci2, cs2, err);
            if (rc == SR_OK)
                done = rules_row(c, env, ci2, cs2, (int32_t)C2, k, tmp, cc, cc + k, o, s) ||
                       C2 >= c->eligible;
        }
    }
    free(tmp);
    free(cc);
    return rc;
}

static sr_err_t retrieve_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                             struct sr_error *err)
{
    struct retrieve_ctx *c = ctx;
    const int d = sr_bundle_info(env->bundle)->d_model;
    const int k = env->k_retrieve; /* k, or the sampling pool */
    if (!c->filter_set) {
        /* Static rules are final once every op's init ran: hand them to the model once. */
        sr_err_t rc = sr_model_set_item_filter(env->model, env->item_allowed, err);
        if (rc != SR_OK)
            return rc;
        c->filter_set = true;
        const struct sr_bundle_info *bi = sr_bundle_info(env->bundle);
        c->eligible = 0;
        for (int32_t j = bi->first_index; j < bi->n_items; j++)
            c->eligible += !env->item_allowed || env->item_allowed[j];
    }
    struct sr_col *vec = sr_batch_col(b, SR_C_VEC), *ex = sr_batch_col(b, SR_C_EXCLUDE);
    int32_t n = vec->offsets[b->n] / d;
    struct sr_col *ri, *rs;
    sr_err_t rc = sr_batch_add(b, SR_C_REC_ITEMS, SR_COL_LIST_I32, (int64_t)n * k, &ri, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, SR_C_REC_SCORES, SR_COL_LIST_F32, (int64_t)n * k, &rs, err);
    if (rc != SR_OK || n == 0)
        return rc;
    /* Exclusion lists for the encoded rows only, in the same order. */
    int32_t *eo = NULL, *ei = NULL;
    if (ex) {
        eo = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)(n + 1), 16);
        ei = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)(ex->offsets[b->n] + 1), 16);
        if (!eo || !ei)
            return sr_error_set(err, SR_ENOMEM, "retrieve: out of memory");
        const int32_t *src = ex->data;
        int32_t j = 0, t = 0;
        eo[0] = 0;
        for (int32_t r = 0; r < b->n; r++) {
            if (vec->offsets[r + 1] == vec->offsets[r])
                continue;
            int32_t lo = ex->offsets[r], hi = ex->offsets[r + 1];
            memcpy(ei + t, src + lo, sizeof(int32_t) * (size_t)(hi - lo));
            t += hi - lo;
            eo[++j] = t;
        }
    }
    rc = c->rules ? retrieve_rules(c, env, b, n, vec->data, eo, ei, ri->data, rs->data, err)
                  : sr_model_topk(env->model, n, vec->data, eo, ei, k, ri->data, rs->data, err);
    if (rc != SR_OK)
        return rc;
    for (int32_t r = 0; r < b->n; r++) {
        int32_t has = vec->offsets[r + 1] > vec->offsets[r];
        ri->offsets[r + 1] = ri->offsets[r] + (has ? k : 0);
        rs->offsets[r + 1] = ri->offsets[r + 1];
    }
    return SR_OK;
}

static void retrieve_fini(void *ctx)
{
    struct retrieve_ctx *c = ctx;
    if (c)
        free(c->cat);
    free(c);
}

const struct sr_op_desc sr__op_retrieve = {
    .name = "retrieve",
    .help = "top-k over the catalogue (B x k; exact or FAISS per retrieval.mode), honouring "
            "exclusions and item rules",
    .init = retrieve_init,
    .run = retrieve_run,
    .fini = retrieve_fini,
};
