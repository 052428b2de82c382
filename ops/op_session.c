/* op_session.c — `session_update`: applies each event to its session in stream order and, for
 * trigger rows, snapshots the session (item keys and each item's event type code, for
 * recs.exclude_seen by type) as it stands after that event.
 * Per batch: one MultiGet of the distinct sessions, working copies in arena memory, one staged
 * write batch holding every changed session and the highest offset applied per partition
 * (DESIGN §8). Events at or below a partition's committed applied offset
 * were applied before a crash: they are skipped, neither applied nor re-emitted.
 * TTL is decided per event in event time, so the result does not depend on batch boundaries:
 * an event more than session.ttl.ms after its session's last event finds the session empty.
 * The session store is the runtime's, borrowed by the graph (env->state; opened by
 * sr_session_store_open below: state.backend chooses memory or rocksdb). */
#include "ops_int.h"
#include "sr_kernels.h"
#include "sr_state.h"

#include <stdlib.h>
#include <string.h>

struct session_ctx {
    uint32_t max_len;
    int64_t ttl_ms;
};

struct work {
    int32_t partition;
    uint32_t id_len;
    const char *id;
    uint64_t *items;   /* max_len slots: a ring would save a memmove; sessions are short */
    uint32_t *types;   /* max_len slots: each item's event type code */
    uint32_t len;
    int64_t last_ts;
    const uint8_t *aux; /* encoder state as read, carried over (DESIGN §3.1); the encode op
                         * replaces it in the staged batch */
    uint32_t aux_len;
    bool dirty;
};

sr_err_t sr_session_store_open(const sr_config_t *cfg, const struct sr_bundle *bundle,
                               const char *identity, bool must_be_new, struct sr_state **out,
                               struct sr_error *err)
{
    *out = NULL;
    struct sr_state_params sp;
    sr_state_params_init(&sp);
    sr_err_t rc = sr_state_params_from_config(&sp, cfg, err);
    if (rc != SR_OK)
        return rc;
    sp.identity = identity;
    sp.must_be_new = must_be_new;
    if (bundle && !sr_config_get(cfg, "session.max_len"))
        sp.max_len = (uint32_t)sr_bundle_info(bundle)->max_len;
    return sr_state_open(&sp, out, err);
}

static sr_err_t session_init(struct sr_op_env *env, const char *prefix, void **ctx,
                             struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct sr_state_params sp;
    sr_state_params_init(&sp);
    sr_err_t rc = sr_state_params_from_config(&sp, env->cfg, err);
    if (rc != SR_OK)
        return rc;
    /* The bundle's max_len, but never more than the store keeps: a bundle reloaded with a longer
     * one (DESIGN §3.3) would otherwise see longer sessions inside a batch than across batches,
     * and its output would depend on the batching (§8.1). */
    if (!sr_config_get(env->cfg, "session.max_len")) {
        sp.max_len = (uint32_t)sr_bundle_info(env->bundle)->max_len;
        if (env->state && sr_state_max_len(env->state) < sp.max_len)
            sp.max_len = sr_state_max_len(env->state);
    }
    struct session_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    c->max_len = sp.max_len;
    c->ttl_ms = sp.ttl_ms;
    sr__port_in(ports, SR_C_SESSION, SR_COL_STR, false);
    sr__port_in(ports, SR_C_ITEM_KEY, SR_COL_U64, false);
    sr__port_in(ports, SR_C_TS, SR_COL_I64, false);
    sr__port_in(ports, SR_C_TYPE, SR_COL_STR, false);
    sr__port_in(ports, SR_C_APPEND, SR_COL_I32, false);
    sr__port_in(ports, SR_C_TRIGGER, SR_COL_I32, false);
    sr__port_out(ports, SR_C_SESSION_KEYS, SR_COL_LIST_U64);
    sr__port_out(ports, SR_C_SESSION_TYPES, SR_COL_LIST_I32);
    *ctx = c;
    return SR_OK;
}

static uint64_t key_hash(int32_t partition, const char *id, uint32_t len)
{
    return sr_hash64(id, len) ^ ((uint64_t)(uint32_t)partition * 0x9E3779B97F4A7C15ULL);
}

static sr_err_t session_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                            struct sr_error *err)
{
    struct session_ctx *c = ctx;
    sr_arena_t *A = b->arena;
    struct sr_col *sess = sr_batch_col(b, SR_C_SESSION);
    const char **ids = sess->data;
    const uint64_t *ikey = sr_batch_col(b, SR_C_ITEM_KEY)->data;
    const int64_t *ts = sr_batch_col(b, SR_C_TS)->data;
    struct sr_col *tcol = sr_batch_col(b, SR_C_TYPE);
    const char **etype = tcol->data;
    const int32_t *app = sr_batch_col(b, SR_C_APPEND)->data;
    const int32_t *trig = sr_batch_col(b, SR_C_TRIGGER)->data;
    const int32_t *part = sr_batch_col(b, SR_C_SRC_PARTITION)->data;
    const int64_t *off = sr_batch_col(b, SR_C_SRC_OFFSET)->data;

    /* 1. Skip what a previous run already applied. */
    uint8_t *keep = sr_arena_calloc(A, (size_t)(b->n > 0 ? b->n : 1), 1);
    if (!keep)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        keep[r] = off[r] > sr_state_applied_offset(env->state, part[r]);
    }
    sr_batch_filter(b, keep);

    /* 2. Distinct sessions of the batch (open addressing in arena memory). */
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)b->n_sel)
        cap <<= 1;
    int32_t *slot = sr_arena_alloc(A, sizeof(int32_t) * cap, 16);
    int32_t *row_work = sr_arena_alloc(A, sizeof(int32_t) * (size_t)(b->n > 0 ? b->n : 1), 16);
    struct work *w = sr_arena_alloc(A, sizeof(struct work) * (size_t)(b->n_sel > 0 ? b->n_sel : 1), 16);
    struct sr_state_key *keys = sr_arena_alloc(A, sizeof(struct sr_state_key) * (size_t)(b->n_sel > 0 ? b->n_sel : 1), 16);
    if (!slot || !row_work || !w || !keys)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    memset(slot, 0xff, sizeof(int32_t) * cap);
    int32_t n_work = 0;
    int64_t total_triggered_len = 0;
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        uint32_t h = (uint32_t)key_hash(part[r], ids[r], sess->lens[r]) & (cap - 1);
        while (slot[h] >= 0) {
            struct work *x = &w[slot[h]];
            if (x->partition == part[r] && x->id_len == sess->lens[r] &&
                memcmp(x->id, ids[r], x->id_len) == 0)
                break;
            h = (h + 1) & (cap - 1);
        }
        if (slot[h] < 0) {
            slot[h] = n_work;
            w[n_work] = (struct work){.partition = part[r], .id_len = sess->lens[r], .id = ids[r]};
            keys[n_work] = (struct sr_state_key){.partition = part[r], .len = sess->lens[r], .id = ids[r]};
            n_work++;
        }
        row_work[r] = slot[h];
        if (trig[r])
            total_triggered_len += c->max_len;
    }

    /* 3. One read of every distinct session. */
    struct sr_session *cur = sr_arena_alloc(A, sizeof(struct sr_session) * (size_t)(n_work > 0 ? n_work : 1), 16);
    if (!cur)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    sr_err_t rc = n_work ? sr_state_multi_get(env->state, (size_t)n_work, keys, NULL, cur, A, err) : SR_OK;
    if (rc != SR_OK)
        return rc;
    for (int32_t i = 0; i < n_work; i++) {
        w[i].items = sr_arena_alloc(A, sizeof(uint64_t) * c->max_len, 16);
        w[i].types = sr_arena_alloc(A, sizeof(uint32_t) * c->max_len, 16);
        if (!w[i].items || !w[i].types)
            return sr_error_set(err, SR_ENOMEM, "out of memory");
        uint32_t len = cur[i].found ? cur[i].len : 0, skip = len > c->max_len ? len - c->max_len : 0;
        w[i].len = len - skip;
        if (w[i].len) {
            memcpy(w[i].items, cur[i].items + skip, sizeof(uint64_t) * w[i].len);
            if (cur[i].types)
                memcpy(w[i].types, cur[i].types + skip, sizeof(uint32_t) * w[i].len);
            else /* a version-1 value: types not recorded */
                memset(w[i].types, 0, sizeof(uint32_t) * w[i].len);
        }
        w[i].last_ts = cur[i].found ? cur[i].last_ts : INT64_MIN;
        w[i].aux = cur[i].found ? cur[i].aux : NULL;
        w[i].aux_len = cur[i].found ? cur[i].aux_len : 0;
    }

    /* 4. Apply events in stream order; snapshot at triggers. */
    struct sr_col *out, *tout;
    rc = sr_batch_add(b, SR_C_SESSION_KEYS, SR_COL_LIST_U64, total_triggered_len, &out, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, SR_C_SESSION_TYPES, SR_COL_LIST_I32, total_triggered_len, &tout, err);
    if (rc != SR_OK)
        return rc;
    uint64_t *vals = out->data;
    int32_t *tvals = tout->data;
    tout->offsets[0] = out->offsets[0];
    int32_t pos = 0;
    for (int32_t r = 0, s = 0; r < b->n; r++) {
        out->offsets[r + 1] = out->offsets[r];
        tout->offsets[r + 1] = out->offsets[r];
        if (s >= b->n_sel || b->sel[s] != r)
            continue;
        s++;
        struct work *x = &w[row_work[r]];
        if (c->ttl_ms > 0 && x->len > 0 && x->last_ts != INT64_MIN && ts[r] - x->last_ts > c->ttl_ms) {
            x->len = 0; /* idle longer than the TTL: the session starts again */
            x->aux_len = 0;
        }
        if (app[r]) {
            if (x->len == c->max_len) {
                memmove(x->items, x->items + 1, sizeof(uint64_t) * (c->max_len - 1));
                memmove(x->types, x->types + 1, sizeof(uint32_t) * (c->max_len - 1));
                x->len--;
            }
            x->types[x->len] = sr_session_type_code(etype[r], tcol->lens[r]);
            x->items[x->len++] = ikey[r];
        }
        x->last_ts = ts[r];
        x->dirty = true;
        if (trig[r] && x->len > 0) {
            memcpy(vals + pos, x->items, sizeof(uint64_t) * x->len);
            memcpy(tvals + pos, x->types, sizeof(uint32_t) * x->len);
            pos += (int32_t)x->len;
            out->offsets[r + 1] = pos;
            tout->offsets[r + 1] = pos;
        }
    }

    /* 5. Stage the batch: sessions, applied offsets (every record of the batch, valid or not,
     * is covered) and the watermark. */
    sr_state_batch_t *bt = sr_state_batch_new(env->state);
    if (!bt)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    for (int32_t i = 0; i < n_work && rc == SR_OK; i++) {
        if (!w[i].dirty)
            continue;
        struct sr_session v = {.items = w[i].items, .types = w[i].types, .len = w[i].len,
                               .last_ts = w[i].last_ts, .found = true, .aux = w[i].aux,
                               .aux_len = w[i].aux_len};
        rc = sr_state_batch_put(bt, &keys[i], &v, err);
    }
    /* Highest offset per partition of the batch (a batch spans few partitions). */
    int32_t *pp = sr_arena_alloc(A, sizeof(int32_t) * (size_t)(b->n > 0 ? b->n : 1), 16);
    int64_t *po = sr_arena_alloc(A, sizeof(int64_t) * (size_t)(b->n > 0 ? b->n : 1), 16);
    int32_t np = 0;
    if (!pp || !po)
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
    for (int32_t r = 0; r < b->n && rc == SR_OK; r++) {
        int32_t i = 0;
        while (i < np && pp[i] != part[r])
            i++;
        if (i == np) {
            pp[np] = part[r];
            po[np++] = off[r];
        } else if (off[r] > po[i]) {
            po[i] = off[r];
        }
    }
    for (int32_t i = 0; i < np && rc == SR_OK; i++)
        if (po[i] > sr_state_applied_offset(env->state, pp[i]))
            rc = sr_state_batch_set_offset(bt, pp[i], po[i], err);
    if (rc == SR_OK)
        rc = sr_state_stage(env->state, bt, &env->staged_id, err);
    if (rc != SR_OK) {
        sr_state_batch_destroy(bt);
        return rc;
    }
    env->has_staged = true;
    return SR_OK;
}

static void session_fini(void *ctx) { free(ctx); }

const struct sr_op_desc sr__op_session_update = {
    .name = "session_update",
    .help = "apply events to their sessions (state.backend) and snapshot them at triggers",
    .init = session_init,
    .run = session_run,
    .fini = session_fini,
};
