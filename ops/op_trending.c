/* op_trending.c — `trending` (DESIGN §4.6): learns what trends in each input partition from the
 * stream itself and mixes it into the recommendations. Per event, in stream order, it adds the
 * event type's weight (trending.event_weights) to the item's decayed count in its partition's
 * sketch (trending.c: Space-Saving over raw item ids, so items the bundle does not know yet can
 * trend). At each recommendation it then
 *   - answers a session with no known item from the sketch (the model only saw the OOV row),
 *   - gives the last recs.trending.slots slots to trending items the model did not pick,
 *   - fills a recommendation the rules left short of recs.k,
 * with the sketch as it stands after that event, so the answer does not depend on batching.
 * Trending items honour the same rules as the model's: recs.exclude_seen (by item key, so
 * also for items outside the bundle) and the static rules (items of the bundle only: an item
 * outside it has no attributes). Each item says where it came from (rec_sources).
 * State: one sketch per input partition, stored in the session store under a reserved key
 * (0xFF "streamrec.trending": not valid UTF-8, so no session id equals it) as a permanent value
 * (SR_STATE_TS_PERMANENT): it is read at the start of each batch, staged with the batch
 * session_update staged, and so commits, discards, goes to the changelog, restores and moves
 * with its partition exactly like the sessions. Owns its parsed configuration only; runs on
 * the graph's thread. */
#include "ops_int.h"
#include "sr_kernels.h"
#include "sr_state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TREND_KEY "\xffstreamrec.trending"
#define MAX_WEIGHTS 32

struct trending_ctx {
    uint32_t cap;
    int64_t half_life;
    int32_t slots;
    int n_w;
    const char *wname[MAX_WEIGHTS];
    uint32_t wlen[MAX_WEIGHTS];
    double w[MAX_WEIGHTS];
    char wbuf[1024];
    struct sr__exclude_spec ex;
};

/* One partition's sketch during a batch. */
struct part_sketch {
    int32_t partition;
    sr__trend_t *t;
    bool dirty;
};

static sr_err_t parse_weights(struct trending_ctx *c, const sr_config_t *cfg,
                              struct sr_error *err)
{
    const char *key = "trending.event_weights";
    c->n_w = sr_split_csv(sr_config_get(cfg, key), c->wbuf, sizeof c->wbuf, c->wname,
                          MAX_WEIGHTS);
    if (c->n_w <= 0)
        return sr_error_set(err, SR_ECONFIG, "%s: expected type:weight, ... (1 to %d types)",
                            key, MAX_WEIGHTS);
    for (int i = 0; i < c->n_w; i++) {
        char *colon = strrchr(c->wname[i], ':'), *end = NULL;
        double w = colon ? strtod(colon + 1, &end) : NAN;
        if (!colon || colon == c->wname[i] || !end || end == colon + 1 || *end || !isfinite(w) ||
            w < 0)
            return sr_error_set(err, SR_ECONFIG, "%s: '%s' is not type:weight with a weight >= 0",
                                key, c->wname[i]);
        *colon = 0;
        c->wlen[i] = (uint32_t)strlen(c->wname[i]);
        c->w[i] = w;
    }
    return SR_OK;
}

sr_err_t sr__trending_check_weights(const sr_config_t *cfg, struct sr_error *err)
{
    struct trending_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    sr_err_t rc = parse_weights(c, cfg, err);
    free(c);
    return rc;
}

static sr_err_t trending_init(struct sr_op_env *env, const char *prefix, void **ctx,
                              struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct trending_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    int64_t cap = 0, slots = 0;
    sr_err_t rc = sr_config_get_int(env->cfg, "trending.capacity", &cap, err);
    if (rc == SR_OK)
        rc = sr_config_get_int(env->cfg, "trending.half_life.ms", &c->half_life, err);
    if (rc == SR_OK)
        rc = sr_config_get_int(env->cfg, "recs.trending.slots", &slots, err);
    if (rc == SR_OK && (cap < SR__TREND_CAP_MIN || cap > SR__TREND_CAP_MAX))
        rc = sr_error_set(err, SR_ECONFIG, "trending.capacity: %lld is out of range (%d..%d)",
                          (long long)cap, SR__TREND_CAP_MIN, SR__TREND_CAP_MAX);
    if (rc == SR_OK && c->half_life < 1)
        rc = sr_error_set(err, SR_ECONFIG, "trending.half_life.ms: %lld is not positive",
                          (long long)c->half_life);
    if (rc == SR_OK && (slots < 0 || slots > env->k))
        rc = sr_error_set(err, SR_ECONFIG, "recs.trending.slots: %lld is out of range (0..recs.k "
                          "= %d)", (long long)slots, (int)env->k);
    if (rc == SR_OK)
        rc = parse_weights(c, env->cfg, err);
    if (rc == SR_OK)
        rc = sr__exclude_seen_parse(env->cfg, &c->ex, err);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    c->cap = (uint32_t)cap;
    c->slots = (int32_t)slots;
    *ctx = c;
    sr__port_in(ports, SR_C_ITEM, SR_COL_STR, false);
    sr__port_in(ports, SR_C_ITEM_KEY, SR_COL_U64, false);
    sr__port_in(ports, SR_C_TYPE, SR_COL_STR, false);
    sr__port_in(ports, SR_C_TS, SR_COL_I64, false);
    sr__port_in(ports, SR_C_SESSION_KEYS, SR_COL_LIST_U64, false);
    sr__port_in(ports, SR_C_SESSION_TYPES, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_SESSION_ITEMS, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_REC_ITEMS, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_REC_SCORES, SR_COL_LIST_F32, false);
    sr__port_in(ports, SR_C_REC_SOURCES, SR_COL_LIST_I32, true); /* from sample (epsilon) */
    sr__port_out(ports, SR_C_REC_ITEMS, SR_COL_LIST_I32);
    sr__port_out(ports, SR_C_REC_SCORES, SR_COL_LIST_F32);
    sr__port_out(ports, SR_C_REC_IDS, SR_COL_LIST_STR);
    sr__port_out(ports, SR_C_REC_SOURCES, SR_COL_LIST_I32);
    if (env->evaluating)
        sr__port_out(ports, SR_C_TREND_BASELINE, SR_COL_LIST_U64);
    return SR_OK;
}

static double weight_of(const struct trending_ctx *c, const char *type, uint32_t len)
{
    for (int i = 0; i < c->n_w; i++)
        if (c->wlen[i] == len && memcmp(c->wname[i], type, len) == 0)
            return c->w[i];
    return 0;
}

/* What a trending pick must not be, for one recommendation. */
struct pick_rules {
    const struct trending_ctx *c;
    const struct sr_op_env *env;
    const uint64_t *skeys;   /* the session's item keys */
    const int32_t *stypes;   /* their type codes */
    int32_t slen;
    const int32_t *taken;    /* bundle indices already in the recommendation */
    int32_t n_taken;
};

static bool pick_ok(void *opaque, uint64_t key)
{
    const struct pick_rules *p = opaque;
    const struct sr_bundle_info *bi = sr_bundle_info(p->env->bundle);
    int32_t idx = sr_bundle_item_index_by_key(p->env->bundle, key);
    if (idx >= bi->first_index) {
        if (p->env->item_allowed && !p->env->item_allowed[idx])
            return false;
        for (int32_t i = 0; i < p->n_taken; i++)
            if (p->taken[i] == idx)
                return false;
    }
    if (p->c->ex.on)
        for (int32_t j = 0; j < p->slen; j++) {
            if (p->skeys[j] != key)
                continue;
            if (!p->c->ex.n)
                return false;
            for (int t = 0; t < p->c->ex.n; t++)
                if ((uint32_t)p->stypes[j] == p->c->ex.code[t])
                    return false;
        }
    return true;
}

static sr_err_t load_sketches(struct trending_ctx *c, struct sr_op_env *env, struct sr_batch *b,
                              struct part_sketch **out, int32_t *n_out, struct sr_error *err)
{
    sr_arena_t *A = b->arena;
    const int32_t *part = sr_batch_col(b, SR_C_SRC_PARTITION)->data;
    int32_t np = 0;
    struct part_sketch *ps = sr_arena_alloc(A, sizeof *ps * (size_t)(b->n_sel ? b->n_sel : 1), 16);
    struct sr_state_key *keys = sr_arena_alloc(A, sizeof *keys * (size_t)(b->n_sel ? b->n_sel : 1), 16);
    if (!ps || !keys)
        return sr_error_set(err, SR_ENOMEM, "trending: out of memory");
    for (int32_t s = 0; s < b->n_sel; s++) { /* a batch spans few partitions */
        int32_t p = part[b->sel[s]], i = 0;
        while (i < np && ps[i].partition != p)
            i++;
        if (i == np) {
            ps[np] = (struct part_sketch){.partition = p};
            keys[np++] = (struct sr_state_key){.partition = p, .len = sizeof TREND_KEY - 1,
                                               .id = TREND_KEY};
        }
    }
    struct sr_session *cur = sr_arena_alloc(A, sizeof *cur * (size_t)(np ? np : 1), 16);
    if (!cur)
        return sr_error_set(err, SR_ENOMEM, "trending: out of memory");
    sr_err_t rc = np ? sr_state_multi_get(env->state, (size_t)np, keys, NULL, cur, A, err) : SR_OK;
    for (int32_t i = 0; i < np && rc == SR_OK; i++) {
        if (cur[i].found && cur[i].aux_len) {
            char what[64];
            snprintf(what, sizeof what, "partition %d", ps[i].partition);
            rc = sr__trend_decode(cur[i].aux, cur[i].aux_len, A, c->cap, c->half_life, what,
                                  &ps[i].t, err);
        } else if (!(ps[i].t = sr__trend_new(A, c->cap, c->half_life))) {
            rc = sr_error_set(err, SR_ENOMEM, "trending: out of memory for a sketch");
        }
    }
    *out = ps;
    *n_out = np;
    return rc;
}

/* A recommendation's output columns (trending_run). */
struct rec_out {
    int32_t *i, *src;
    float *s;
    const char **id;
    uint32_t *len;
};

/* Writes the model's pick j (index mi[j], score ms[j], source in_src[j] or the model's) at pos;
 * returns the next position. */
static int32_t put_model(const struct rec_out *o, int32_t pos, const struct sr_op_env *env,
                         const int32_t *mi, const float *ms, const int32_t *in_src, int32_t j)
{
    size_t len;
    o->i[pos] = mi[j];
    o->s[pos] = ms[j];
    o->id[pos] = sr_bundle_item_id(env->bundle, mi[j], &len);
    o->len[pos] = (uint32_t)len;
    o->src[pos] = in_src ? in_src[j] : SR__REC_MODEL;
    return pos + 1;
}

static sr_err_t trending_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                             struct sr_error *err)
{
    struct trending_ctx *c = ctx;
    sr_arena_t *A = b->arena;
    const int32_t k = env->k;
    const struct sr_bundle_info *bi = sr_bundle_info(env->bundle);
    struct sr_col *icol = sr_batch_col(b, SR_C_ITEM), *tcol = sr_batch_col(b, SR_C_TYPE);
    struct sr_col *sk = sr_batch_col(b, SR_C_SESSION_KEYS), *sty = sr_batch_col(b, SR_C_SESSION_TYPES);
    struct sr_col *sit = sr_batch_col(b, SR_C_SESSION_ITEMS);
    struct sr_col *ri = sr_batch_col(b, SR_C_REC_ITEMS), *rs = sr_batch_col(b, SR_C_REC_SCORES);
    struct sr_col *rsrc = sr_batch_col(b, SR_C_REC_SOURCES);
    const int32_t *in_src = rsrc ? rsrc->data : NULL; /* NULL: every incoming item is the model's */
    if (rsrc) /* renamed before this op adds its own rec_sources, which would replace it */
        rsrc->name = "model.rec_sources";
    const int32_t *part = sr_batch_col(b, SR_C_SRC_PARTITION)->data;
    const uint64_t *ikey = sr_batch_col(b, SR_C_ITEM_KEY)->data;
    const int64_t *ts = sr_batch_col(b, SR_C_TS)->data;
    const char **item = icol->data, **type = tcol->data;
    if (!env->has_staged)
        return sr_error_set(err, SR_EINVAL, "trending: no staged state batch (session_update "
                            "must run first)");

    struct part_sketch *ps = NULL;
    int32_t np = 0;
    sr_err_t rc = load_sketches(c, env, b, &ps, &np, err);
    if (rc != SR_OK)
        return rc;

    int32_t n_rec = 0;
    for (int32_t r = 0; r < b->n; r++)
        n_rec += ri->offsets[r + 1] > ri->offsets[r];
    struct sr_col *oi, *os, *oid, *osrc, *obase = NULL;
    int64_t cap = (int64_t)n_rec * k;
    if ((env->evaluating &&
         (rc = sr_batch_add(b, SR_C_TREND_BASELINE, SR_COL_LIST_U64, cap, &obase, err))) ||
        (rc = sr_batch_add(b, "trending.items", SR_COL_LIST_I32, cap, &oi, err)) ||
        (rc = sr_batch_add(b, "trending.scores", SR_COL_LIST_F32, cap, &os, err)) ||
        (rc = sr_batch_add(b, SR_C_REC_IDS, SR_COL_LIST_STR, cap, &oid, err)) ||
        (rc = sr_batch_add(b, SR_C_REC_SOURCES, SR_COL_LIST_I32, cap, &osrc, err)))
        return rc;
    uint32_t *scratch = sr_arena_alloc(A, 4u * (c->cap > (uint32_t)k ? c->cap : (uint32_t)k) * 2, 16);
    uint64_t *tkeys = sr_arena_alloc(A, 8u * (size_t)k, 16);
    const char **tids = sr_arena_alloc(A, sizeof(char *) * (size_t)k, 16);
    uint32_t *tlens = sr_arena_alloc(A, 4u * (size_t)k, 16);
    float *tscores = sr_arena_alloc(A, 4u * (size_t)k, 16);
    if (!scratch || !tkeys || !tids || !tlens || !tscores)
        return sr_error_set(err, SR_ENOMEM, "trending: out of memory");
    int32_t *out_i = oi->data, *out_src = osrc->data;
    float *out_s = os->data;
    const char **out_id = oid->data;
    uint32_t *out_len = oid->lens;
    const struct rec_out out = {.i = out_i, .src = out_src, .s = out_s, .id = out_id, .len = out_len};
    const int32_t *mi = ri->data;
    const float *ms = rs->data;
    int32_t pos = 0, bpos = 0, cur_part = -1;
    struct part_sketch *cur = NULL;

    for (int32_t r = 0, s = 0; r < b->n; r++) {
        oi->offsets[r + 1] = os->offsets[r + 1] = oid->offsets[r + 1] = osrc->offsets[r + 1] = pos;
        if (obase)
            obase->offsets[r + 1] = bpos;
        if (s >= b->n_sel || b->sel[s] != r)
            continue;
        s++;
        if (part[r] != cur_part) {
            cur = ps;
            while (cur->partition != part[r])
                cur++;
            cur_part = part[r];
        }
        double w = weight_of(c, type[r], tcol->lens[r]);
        if (w > 0 && sr__trend_add(cur->t, ikey[r], item[r], icol->lens[r], w, ts[r]))
            cur->dirty = true;
        int32_t lo = ri->offsets[r], hi = ri->offsets[r + 1];
        if (hi <= lo)
            continue;
        /* The model's picks (valid indices, in rank order). */
        int32_t slo = sit->offsets[r], shi = sit->offsets[r + 1];
        bool known = false;
        for (int32_t j = slo; j < shi && !known; j++)
            known = ((const int32_t *)sit->data)[j] >= bi->first_index;
        int32_t first = 0, n_model = 0;
        for (int32_t j = lo; j < hi; j++)
            n_model += mi[j] >= 0;
        if (known)
            first = n_model < k - c->slots ? n_model : k - c->slots;
        int32_t base = pos, taken = 0;
        for (int32_t j = lo; j < hi && taken < first; j++) {
            if (mi[j] < 0)
                continue;
            pos = put_model(&out, pos, env, mi, ms, in_src, j);
            taken++;
        }
        struct pick_rules pr = {.c = c, .env = env, .skeys = (const uint64_t *)sk->data + sk->offsets[r],
                                .stypes = (const int32_t *)sty->data + sty->offsets[r],
                                .slen = sk->offsets[r + 1] - sk->offsets[r],
                                .taken = out_i + base, .n_taken = taken};
        if (obase) { /* the trending-only answer, for replay --eval's baseline */
            struct pick_rules none = pr;
            none.n_taken = 0;
            bpos += (int32_t)sr__trend_top(cur->t, ts[r], (uint32_t)k, pick_ok, &none, scratch,
                                           (uint64_t *)obase->data + bpos, tids, tlens, tscores);
            obase->offsets[r + 1] = bpos;
        }
        uint32_t nt = sr__trend_top(cur->t, ts[r], (uint32_t)(k - taken), pick_ok, &pr, scratch,
                                    tkeys, tids, tlens, tscores);
        for (uint32_t j = 0; j < nt; j++) {
            int32_t idx = sr_bundle_item_index_by_key(env->bundle, tkeys[j]);
            char *id = sr_arena_alloc(A, tlens[j] ? tlens[j] : 1, 1);
            if (!id)
                return sr_error_set(err, SR_ENOMEM, "trending: out of memory");
            memcpy(id, tids[j], tlens[j]); /* the sketch may overwrite its copy */
            out_i[pos] = idx >= bi->first_index ? idx : -1;
            out_s[pos] = tscores[j];
            out_id[pos] = id;
            out_len[pos] = tlens[j];
            out_src[pos++] = SR__REC_TRENDING;
        }
        /* Short of k: the model's remaining picks that trending did not bring. */
        for (int32_t j = lo, seen = 0; j < hi && pos - base < k; j++) {
            if (mi[j] < 0 || seen++ < first)
                continue;
            bool dup = false;
            for (int32_t q = base; q < pos && !dup; q++)
                dup = out_i[q] == mi[j];
            if (dup)
                continue;
            pos = put_model(&out, pos, env, mi, ms, in_src, j);
        }
        oi->offsets[r + 1] = os->offsets[r + 1] = oid->offsets[r + 1] = osrc->offsets[r + 1] = pos;
    }

    /* Stage every changed sketch with the batch's sessions (DESIGN §4.6). */
    for (int32_t i = 0; i < np && rc == SR_OK; i++) {
        if (!ps[i].dirty)
            continue;
        size_t n = sr__trend_encoded_size(ps[i].t);
        uint8_t *buf = sr_arena_alloc(A, n, 16);
        if (!buf)
            return sr_error_set(err, SR_ENOMEM, "trending: out of memory for %zu bytes", n);
        sr__trend_encode(ps[i].t, buf);
        struct sr_state_key key = {.partition = ps[i].partition, .len = sizeof TREND_KEY - 1,
                                   .id = TREND_KEY};
        struct sr_session v = {.last_ts = SR_STATE_TS_PERMANENT, .found = true, .aux = buf,
                               .aux_len = (uint32_t)n};
        rc = sr_state_stage_put(env->state, env->staged_id, &key, &v, err);
    }
    if (rc != SR_OK)
        return rc;
    /* The blended lists replace the model's. */
    oi->name = SR_C_REC_ITEMS;
    os->name = SR_C_REC_SCORES;
    ri->name = "model.rec_items";
    rs->name = "model.rec_scores";
    return SR_OK;
}

static void trending_fini(void *ctx) { free(ctx); }

const struct sr_op_desc sr__op_trending = {
    .name = "trending",
    .help = "per-partition trending items (decayed counts, Space-Saving sketch in the state "
            "store) for sessions with no known item, recs.trending.slots and short lists",
    .init = trending_init,
    .run = trending_run,
    .fini = trending_fini,
};
