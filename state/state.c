/* state.c — the generic session store: parameter handling, the staged-batch overlay, committed
 * offsets and watermark, TTL on read, and dispatch to a backend table (memory.c, rocksdb.c).
 * Invariants: staged batches have strictly increasing ids and are committed oldest first; a
 * read returns the newest staged write of a key, else the backend's committed value; offsets
 * and watermark here mirror exactly what the backend has committed. Batches are recycled
 * through a free list with their arenas, so the steady state allocates nothing per batch.
 * One thread at a time (the caller serialises). */
#include "state_int.h"

#include <stdlib.h>
#include <string.h>

struct sr_state {
    const struct sr__state_iface *iface;
    void *ctx;
    struct sr_state_params p;
    char *dir;                       /* owned copy of p.dir */
    int64_t ttl;                     /* <= 0: off */
    int64_t horizon;                 /* ttl + grace, for removal */
    /* pending batches, oldest first */
    sr_state_batch_t **staged;
    size_t nstaged, staged_cap;
    uint64_t next_id;
    sr_state_batch_t *free_batches;
    /* committed offsets, sorted by partition */
    struct sr__state_offset *offs;
    size_t noffs, offs_cap;
    int64_t watermark;
};

/* ---- params ----------------------------------------------------------------------------- */

void sr_state_params_init(struct sr_state_params *p)
{
    *p = (struct sr_state_params){
        .backend = "rocksdb",
        .dir = "./streamrec-state",
        .max_len = 50,
        .ttl_ms = 1800000,
        .ttl_grace_ms = -1,
        .cache_sessions = 100000,
        .sync = false,
    };
}

sr_err_t sr_state_params_from_config(struct sr_state_params *p, const sr_config_t *cfg,
                                     struct sr_error *err)
{
    if (!p || !cfg)
        return sr_error_set(err, SR_EINVAL, "state params: null argument");
    int64_t v;
    sr_err_t rc;
    const char *s = sr_config_get(cfg, "state.backend");
    if (s)
        p->backend = s;
    s = sr_config_get(cfg, "state.dir");
    if (s)
        p->dir = s;
    if ((rc = sr_config_get_int(cfg, "state.cache.sessions", &v, err)))
        return rc;
    if (v < 0)
        return sr_error_set(err, SR_ECONFIG, "state.cache.sessions=%lld: must be >= 0",
                            (long long)v);
    p->cache_sessions = (size_t)v;
    if ((rc = sr_config_get_int(cfg, "session.ttl.ms", &v, err)))
        return rc;
    p->ttl_ms = v;
    if (sr_config_is_set(cfg, "session.max_len")) {
        if ((rc = sr_config_get_int(cfg, "session.max_len", &v, err)))
            return rc;
        if (v < 1 || v > 1000000)
            return sr_error_set(err, SR_ECONFIG, "session.max_len=%lld: must be 1..1000000",
                                (long long)v);
        p->max_len = (uint32_t)v;
    }
    return SR_OK;
}

/* ---- open / close ----------------------------------------------------------------------- */

static sr_err_t offset_set(void *opaque, char kind, int32_t partition, int64_t off);

sr_err_t sr_state_open(const struct sr_state_params *p, sr_state_t **out, struct sr_error *err)
{
    if (!p || !out || !p->backend)
        return sr_error_set(err, SR_EINVAL, "state open: null argument");
    if (p->max_len < 1 || p->max_len > 1000000)
        return sr_error_set(err, SR_EINVAL, "state open: max_len %u not in 1..1000000",
                            p->max_len);
    bool rdb = strcmp(p->backend, "rocksdb") == 0;
    if (!rdb && strcmp(p->backend, "memory") != 0)
        return sr_error_set(err, SR_EINVAL,
                            "state open: backend \"%s\" is neither \"rocksdb\" nor \"memory\"",
                            p->backend);
    if (rdb && (!p->dir || !*p->dir))
        return sr_error_set(err, SR_EINVAL, "state open: rocksdb backend needs a directory");

    sr_state_t *st = calloc(1, sizeof *st);
    if (!st || (p->dir && !(st->dir = strdup(p->dir)))) {
        free(st);
        return sr_error_set(err, SR_ENOMEM, "state open");
    }
    st->p = *p;
    st->p.dir = st->dir;
    st->ttl = p->ttl_ms > 0 ? p->ttl_ms : 0;
    int64_t grace = p->ttl_grace_ms < 0 ? st->ttl : p->ttl_grace_ms;
    if (!st->ttl || __builtin_add_overflow(st->ttl, grace, &st->horizon))
        st->horizon = 0;
    st->next_id = 1;
    st->watermark = INT64_MIN;

    sr_err_t rc = rdb ? sr__state_rocksdb_open(&st->p, &st->ctx, &st->iface, err)
                      : sr__state_memory_open(&st->p, &st->ctx, &st->iface, err);
    if (rc == SR_OK)
        rc = st->iface->load_meta(st->ctx, offset_set, st, &st->watermark, err);
    if (rc == SR_OK && p->identity && st->iface->identity)
        rc = st->iface->identity(st->ctx, p->identity, err);
    size_t applied = 0;
    for (size_t i = 0; i < st->noffs; i++)
        applied += st->offs[i].kind == 'o';
    if (rc == SR_OK && p->must_be_new && applied > 0)
        rc = sr_error_set(err, SR_ESTATE, "state.dir %s already holds applied offsets of an earlier "
                          "run (%zu partitions): resume it, or name a new state.dir to start fresh",
                          p->dir ? p->dir : "(memory)", applied);
    if (rc) {
        sr_state_close(st);
        return rc;
    }
    *out = st;
    return SR_OK;
}

static void batch_free(sr_state_batch_t *b)
{
    sr_arena_destroy(b->arena);
    free(b->ents);
    free(b->index);
    free(b->offs);
    free(b);
}

void sr_state_close(sr_state_t *st)
{
    if (!st)
        return;
    if (st->iface)
        st->iface->close(st->ctx);
    for (size_t i = 0; i < st->nstaged; i++)
        batch_free(st->staged[i]);
    while (st->free_batches) {
        sr_state_batch_t *b = st->free_batches;
        st->free_batches = b->next_free;
        batch_free(b);
    }
    free(st->staged);
    free(st->offs);
    free(st->dir);
    free(st);
}

const char *sr_state_backend_name(const sr_state_t *st)
{
    return st && st->iface ? st->iface->name : "none";
}

/* ---- offsets ---------------------------------------------------------------------------- */

/* Sorted by (kind, partition). */
static size_t offset_find(const sr_state_t *st, char kind, int32_t partition)
{
    size_t lo = 0, hi = st->noffs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct sr__state_offset *o = &st->offs[mid];
        if (o->kind < kind || (o->kind == kind && o->partition < partition))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool offset_at(const sr_state_t *st, size_t i, char kind, int32_t partition)
{
    return i < st->noffs && st->offs[i].kind == kind && st->offs[i].partition == partition;
}

static void offset_remove(sr_state_t *st, char kind, int32_t partition)
{
    size_t i = offset_find(st, kind, partition);
    if (offset_at(st, i, kind, partition)) {
        memmove(&st->offs[i], &st->offs[i + 1], (st->noffs - i - 1) * sizeof *st->offs);
        st->noffs--;
    }
}

/* Records a committed offset; SR_ENOMEM when the table cannot grow, which happens only at open
 * (load_meta fails the open): commit pre-grows the table (offsets_reserve) before its write,
 * since after the write an in-memory mirror missing an offset would lie. */
static sr_err_t offset_set(void *opaque, char kind, int32_t partition, int64_t off)
{
    sr_state_t *st = opaque;
    size_t i = offset_find(st, kind, partition);
    if (offset_at(st, i, kind, partition)) {
        st->offs[i].offset = off;
        return SR_OK;
    }
    if (st->noffs == st->offs_cap) {
        size_t cap = st->offs_cap ? st->offs_cap * 2 : 16;
        struct sr__state_offset *o = realloc(st->offs, cap * sizeof *o);
        if (!o)
            return SR_ENOMEM;
        st->offs = o;
        st->offs_cap = cap;
    }
    memmove(&st->offs[i + 1], &st->offs[i], (st->noffs - i) * sizeof *st->offs);
    st->offs[i] = (struct sr__state_offset){ kind, partition, off };
    st->noffs++;
    return SR_OK;
}

static sr_err_t offsets_reserve(sr_state_t *st, size_t extra)
{
    if (st->noffs + extra <= st->offs_cap)
        return SR_OK;
    size_t cap = st->offs_cap ? st->offs_cap : 16;
    while (cap < st->noffs + extra)
        cap *= 2;
    struct sr__state_offset *o = realloc(st->offs, cap * sizeof *o);
    if (!o)
        return SR_ENOMEM;
    st->offs = o;
    st->offs_cap = cap;
    return SR_OK;
}

int64_t sr_state_applied_offset(const sr_state_t *st, int32_t partition)
{
    if (!st)
        return -1;
    size_t i = offset_find(st, 'o', partition);
    return offset_at(st, i, 'o', partition) ? st->offs[i].offset : -1;
}

int64_t sr_state_checkpoint(const sr_state_t *st, int32_t partition)
{
    if (!st)
        return -1;
    size_t i = offset_find(st, 'c', partition);
    return offset_at(st, i, 'c', partition) ? st->offs[i].offset : -1;
}

int64_t sr_state_watermark(const sr_state_t *st)
{
    return st ? st->watermark : INT64_MIN;
}

uint32_t sr_state_max_len(const sr_state_t *st)
{
    return st->p.max_len;
}

/* ---- batches ---------------------------------------------------------------------------- */

sr_state_batch_t *sr_state_batch_new(sr_state_t *st)
{
    if (!st)
        return NULL;
    sr_state_batch_t *b = st->free_batches;
    if (b) {
        st->free_batches = b->next_free;
    } else {
        b = calloc(1, sizeof *b);
        if (!b || !(b->arena = sr_arena_new(64 << 10))) {
            free(b);
            return NULL;
        }
    }
    b->store = st;
    b->id = 0;
    b->n = 0;
    b->noffs = 0;
    b->watermark = INT64_MIN;
    b->next_free = NULL;
    if (b->index)
        memset(b->index, 0, b->index_cap * sizeof *b->index);
    sr_arena_reset(b->arena);
    return b;
}

/* Returns a batch to its store's pool. */
static void batch_recycle(sr_state_batch_t *b)
{
    sr_state_t *st = b->store;
    b->next_free = st->free_batches;
    st->free_batches = b;
}

void sr_state_batch_destroy(sr_state_batch_t *b)
{
    if (b && !b->id) /* a staged batch belongs to its store */
        batch_recycle(b);
}

const struct sr__state_entry *sr__state_batch_find(const sr_state_batch_t *b, uint64_t hash,
                                                   int32_t partition, const char *id,
                                                   uint32_t len)
{
    if (!b->index_cap)
        return NULL;
    size_t mask = b->index_cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        uint32_t x = b->index[i];
        if (!x)
            return NULL;
        const struct sr__state_entry *e = &b->ents[x - 1];
        if (e->hash == hash && sr__state_key_eq(e->partition, e->id, e->idlen, partition, id, len))
            return e;
    }
}

static sr_err_t batch_grow(sr_state_batch_t *b)
{
    /* the index grows first: `cap` only rises once the index can hold 2 * cap entries, so a
     * failed grow leaves a consistent batch (the probe loops need free index slots) */
    size_t cap = b->cap ? b->cap * 2 : 64;
    size_t icap = b->index_cap ? b->index_cap : 128;
    while (icap < cap * 2)
        icap *= 2;
    uint32_t *ix = NULL;
    if (icap != b->index_cap && !(ix = calloc(icap, sizeof *ix)))
        return SR_ENOMEM;
    struct sr__state_entry *e = realloc(b->ents, cap * sizeof *e);
    if (!e) {
        free(ix);
        return SR_ENOMEM;
    }
    b->ents = e;
    b->cap = cap;
    if (ix) {
        free(b->index);
        b->index = ix;
        b->index_cap = icap;
        for (size_t i = 0; i < b->n; i++) {
            size_t j = b->ents[i].hash & (icap - 1);
            while (ix[j])
                j = (j + 1) & (icap - 1);
            ix[j] = (uint32_t)i + 1;
        }
    }
    return SR_OK;
}

static sr_err_t check_key(const struct sr_state_key *k, const char *what, struct sr_error *err)
{
    if (!k || (k->len && !k->id))
        return sr_error_set(err, SR_EINVAL, "state %s: null key", what);
    if (k->partition < 0)
        return sr_error_set(err, SR_EINVAL, "state %s: partition %d < 0", what, k->partition);
    if (k->len > SR_STATE_ID_MAX)
        return sr_error_set(err, SR_EINVAL, "state %s: session id of %u bytes (max %u)", what,
                            k->len, SR_STATE_ID_MAX);
    return SR_OK;
}

/* Finds or adds the entry for key; returns it with id copied, contents to be set. */
static sr_err_t batch_slot(sr_state_batch_t *b, const struct sr_state_key *k,
                           struct sr__state_entry **out, struct sr_error *err)
{
    uint64_t h = sr__state_key_hash(k->partition, k->id, k->len);
    struct sr__state_entry *e =
        (struct sr__state_entry *)sr__state_batch_find(b, h, k->partition, k->id, k->len);
    if (e) {
        *out = e;
        return SR_OK;
    }
    if (b->n == b->cap && batch_grow(b))
        return sr_error_set(err, SR_ENOMEM, "state batch: %zu entries", b->n + 1);
    char *id = k->len ? sr_arena_alloc(b->arena, k->len, 1) : NULL;
    if (k->len && !id)
        return sr_error_set(err, SR_ENOMEM, "state batch: session id");
    if (k->len)
        memcpy(id, k->id, k->len);
    e = &b->ents[b->n];
    *e = (struct sr__state_entry){ .hash = h, .partition = k->partition, .idlen = k->len,
                                   .id = id };
    size_t j = h & (b->index_cap - 1);
    while (b->index[j])
        j = (j + 1) & (b->index_cap - 1);
    b->index[j] = (uint32_t)++b->n;
    *out = e;
    return SR_OK;
}

sr_err_t sr_state_batch_put(sr_state_batch_t *b, const struct sr_state_key *key,
                            const struct sr_session *s, struct sr_error *err)
{
    sr_err_t rc;
    if (!b || !s)
        return sr_error_set(err, SR_EINVAL, "state batch put: null batch or session");
    if ((rc = check_key(key, "batch put", err)))
        return rc;
    if (s->len && !s->items)
        return sr_error_set(err, SR_EINVAL, "state batch put: %u items but no item array",
                            s->len);
    if ((s->aux_len && !s->aux) || s->aux_len > SR_SESSION_AUX_MAX)
        return sr_error_set(err, s->aux_len > SR_SESSION_AUX_MAX ? SR_ERANGE : SR_EINVAL,
                            "state batch put: encoder state of %u bytes (max %u, non-null)",
                            s->aux_len, SR_SESSION_AUX_MAX);
    uint32_t m = s->len > b->store->p.max_len ? b->store->p.max_len : s->len;
    uint64_t *items = NULL;
    uint32_t *types = NULL;
    if (m) {
        items = sr_arena_alloc(b->arena, (size_t)m * 8, 8);
        types = sr_arena_alloc(b->arena, (size_t)m * 4, 4);
        if (!items || !types)
            return sr_error_set(err, SR_ENOMEM, "state batch put: %u items", m);
        memcpy(items, s->items + (s->len - m), (size_t)m * 8);
        sr__types_copy(types, s->types ? s->types + (s->len - m) : NULL, m);
    }
    const uint8_t *aux = sr__aux_read(b->arena, s->aux, s->aux_len);
    if (s->aux_len && !aux)
        return sr_error_set(err, SR_ENOMEM, "state batch put: encoder state of %u bytes",
                            s->aux_len);
    struct sr__state_entry *e;
    if ((rc = batch_slot(b, key, &e, err)))
        return rc;
    e->del = false;
    e->s = (struct sr_session){ .items = items, .types = types, .len = m, .last_ts = s->last_ts,
                                .found = true, .aux = aux, .aux_len = s->aux_len };
    if (s->last_ts > b->watermark && s->last_ts != SR_STATE_TS_PERMANENT)
        b->watermark = s->last_ts;
    return SR_OK;
}

sr_err_t sr_state_batch_delete(sr_state_batch_t *b, const struct sr_state_key *key,
                               struct sr_error *err)
{
    sr_err_t rc;
    if (!b)
        return sr_error_set(err, SR_EINVAL, "state batch delete: null batch");
    if ((rc = check_key(key, "batch delete", err)))
        return rc;
    struct sr__state_entry *e;
    if ((rc = batch_slot(b, key, &e, err)))
        return rc;
    e->del = true;
    e->s = (struct sr_session){ .last_ts = INT64_MIN };
    return SR_OK;
}

static sr_err_t batch_set_value(sr_state_batch_t *b, char kind, int32_t partition,
                                int64_t offset, struct sr_error *err)
{
    if (!b || partition < 0 || offset < 0)
        return sr_error_set(err, SR_EINVAL, "state batch offset: partition %d offset %lld",
                            partition, (long long)offset);
    for (size_t i = 0; i < b->noffs; i++)
        if (b->offs[i].kind == kind && b->offs[i].partition == partition) {
            b->offs[i].offset = offset;
            return SR_OK;
        }
    if (b->noffs == b->offs_cap) {
        size_t cap = b->offs_cap ? b->offs_cap * 2 : 8;
        struct sr__state_offset *o = realloc(b->offs, cap * sizeof *o);
        if (!o)
            return sr_error_set(err, SR_ENOMEM, "state batch offset");
        b->offs = o;
        b->offs_cap = cap;
    }
    b->offs[b->noffs++] = (struct sr__state_offset){ kind, partition, offset };
    return SR_OK;
}

sr_err_t sr_state_batch_set_offset(sr_state_batch_t *b, int32_t partition, int64_t offset,
                                   struct sr_error *err)
{
    return batch_set_value(b, 'o', partition, offset, err);
}

sr_err_t sr_state_batch_set_checkpoint(sr_state_batch_t *b, int32_t partition, int64_t offset,
                                       struct sr_error *err)
{
    return batch_set_value(b, 'c', partition, offset, err);
}

static sr_state_batch_t *staged_find(sr_state_t *st, uint64_t id)
{
    for (size_t i = 0; st && i < st->nstaged; i++)
        if (st->staged[i]->id == id)
            return st->staged[i];
    return NULL;
}

sr_err_t sr_state_stage_checkpoint(sr_state_t *st, uint64_t id, int32_t partition, int64_t offset,
                                   struct sr_error *err)
{
    sr_state_batch_t *b = staged_find(st, id);
    if (!b)
        return sr_error_set(err, SR_EINVAL, "state checkpoint: batch %llu is not pending",
                            (unsigned long long)id);
    return batch_set_value(b, 'c', partition, offset, err);
}

sr_err_t sr_state_staged_foreach(sr_state_t *st, uint64_t id, sr_state_change_fn fn, void *opaque,
                                 struct sr_error *err)
{
    sr_state_batch_t *b = staged_find(st, id);
    if (!b || !fn)
        return sr_error_set(err, SR_EINVAL, "state staged foreach: batch %llu is not pending",
                            (unsigned long long)id);
    for (size_t i = 0; i < b->n; i++) {
        const struct sr__state_entry *e = &b->ents[i];
        struct sr_state_key k = { e->partition, e->idlen, e->id };
        int r = fn(opaque, &k, e->del ? NULL : &e->s, -1);
        if (r)
            return sr_error_set(err, SR_EIO, "state staged foreach: stopped (%d)", r);
    }
    for (size_t i = 0; i < b->noffs; i++) {
        if (b->offs[i].kind != 'o')
            continue;
        struct sr_state_key k = { b->offs[i].partition, 0, NULL };
        int r = fn(opaque, &k, NULL, b->offs[i].offset);
        if (r)
            return sr_error_set(err, SR_EIO, "state staged foreach: stopped (%d)", r);
    }
    return SR_OK;
}

sr_err_t sr_state_stage_set_aux(sr_state_t *st, uint64_t id, const struct sr_state_key *key,
                                const void *aux, uint32_t aux_len, struct sr_error *err)
{
    sr_err_t rc;
    if ((rc = check_key(key, "stage set aux", err)))
        return rc;
    if (aux_len > SR_SESSION_AUX_MAX || (aux_len && !aux))
        return sr_error_set(err, aux_len > SR_SESSION_AUX_MAX ? SR_ERANGE : SR_EINVAL,
                            "state stage set aux: encoder state of %u bytes (max %u, non-null)",
                            aux_len, SR_SESSION_AUX_MAX);
    sr_state_batch_t *b = st ? staged_find(st, id) : NULL;
    if (!b)
        return sr_error_set(err, SR_EINVAL, "state stage set aux: batch %llu is not pending",
                            (unsigned long long)id);
    uint64_t h = sr__state_key_hash(key->partition, key->id, key->len);
    struct sr__state_entry *e =
        (struct sr__state_entry *)sr__state_batch_find(b, h, key->partition, key->id, key->len);
    if (!e || e->del)
        return sr_error_set(err, SR_EINVAL, "state stage set aux: batch %llu has no put of "
                            "partition %d session \"%.*s\"", (unsigned long long)id,
                            key->partition, (int)(key->len > 128 ? 128 : key->len), key->id);
    const uint8_t *a = sr__aux_read(b->arena, aux, aux_len);
    if (aux_len && !a)
        return sr_error_set(err, SR_ENOMEM, "state stage set aux: %u bytes", aux_len);
    e->s.aux = a;
    e->s.aux_len = aux_len;
    return SR_OK;
}

sr_err_t sr_state_stage_put(sr_state_t *st, uint64_t id, const struct sr_state_key *key,
                            const struct sr_session *s, struct sr_error *err)
{
    sr_state_batch_t *b = st ? staged_find(st, id) : NULL;
    if (!b)
        return sr_error_set(err, SR_EINVAL, "state stage put: batch %llu is not pending",
                            (unsigned long long)id);
    return sr_state_batch_put(b, key, s, err);
}

void sr_state_batch_set_watermark(sr_state_batch_t *b, int64_t ts)
{
    if (b && ts > b->watermark)
        b->watermark = ts;
}

size_t sr_state_batch_size(const sr_state_batch_t *b)
{
    return b ? b->n : 0;
}

/* ---- stage / commit / discard ------------------------------------------------------------ */

sr_err_t sr_state_stage(sr_state_t *st, sr_state_batch_t *b, uint64_t *id, struct sr_error *err)
{
    if (!st || !b || b->store != st || b->id)
        return sr_error_set(err, SR_EINVAL, "state stage: null, foreign or already staged batch");
    if (st->nstaged == st->staged_cap) {
        size_t cap = st->staged_cap ? st->staged_cap * 2 : 8;
        sr_state_batch_t **s = realloc(st->staged, cap * sizeof *s);
        if (!s)
            return sr_error_set(err, SR_ENOMEM, "state stage");
        st->staged = s;
        st->staged_cap = cap;
    }
    b->id = st->next_id++;
    st->staged[st->nstaged++] = b;
    if (id)
        *id = b->id;
    return SR_OK;
}

/* Writes batches[0..nb) oldest first in one atomic backend write with the new watermark, then
 * mirrors their per-partition values and recycles them. On failure nothing changes and the
 * batches are still the caller's. */
static sr_err_t write_batches(sr_state_t *st, sr_state_batch_t *const *batches, size_t nb,
                              struct sr_error *err)
{
    size_t noffs = 0;
    int64_t wm = st->watermark;
    for (size_t b = 0; b < nb; b++) {
        noffs += batches[b]->noffs;
        if (batches[b]->watermark > wm)
            wm = batches[b]->watermark;
    }
    if (offsets_reserve(st, noffs))
        return sr_error_set(err, SR_ENOMEM, "state commit: offsets");
    sr_err_t rc = st->iface->write(st->ctx, batches, nb, wm, err);
    if (rc)
        return rc;
    for (size_t b = 0; b < nb; b++) {
        sr_state_batch_t *bt = batches[b];
        for (size_t i = 0; i < bt->noffs; i++)
            (void)offset_set(st, bt->offs[i].kind, bt->offs[i].partition, bt->offs[i].offset);
        batch_recycle(bt);
    }
    st->watermark = wm;
    return SR_OK;
}

sr_err_t sr_state_commit(sr_state_t *st, uint64_t id, struct sr_error *err)
{
    if (!st)
        return sr_error_set(err, SR_EINVAL, "state commit: null store");
    if (id == 0 || id >= st->next_id)
        return sr_error_set(err, SR_EINVAL, "state commit: batch id %llu was never staged",
                            (unsigned long long)id);
    size_t nb = 0;
    while (nb < st->nstaged && st->staged[nb]->id <= id)
        nb++;
    if (!nb)
        return SR_OK; /* already committed (or discarded) */
    sr_err_t rc = write_batches(st, st->staged, nb, err);
    if (rc)
        return rc;
    st->nstaged -= nb;
    memmove(st->staged, st->staged + nb, st->nstaged * sizeof *st->staged);
    return SR_OK;
}

sr_err_t sr_state_batch_apply(sr_state_t *st, sr_state_batch_t *b, struct sr_error *err)
{
    if (!st || !b || b->store != st || b->id)
        return sr_error_set(err, SR_EINVAL, "state apply: null, foreign or staged batch");
    sr_err_t rc = write_batches(st, &b, 1, err);
    if (rc)
        batch_recycle(b);
    return rc;
}

void sr_state_discard(sr_state_t *st, uint64_t id)
{
    if (!st)
        return;
    while (st->nstaged && st->staged[st->nstaged - 1]->id >= id)
        batch_recycle(st->staged[--st->nstaged]);
}

sr_err_t sr_state_batch_commit(sr_state_t *st, sr_state_batch_t *b, struct sr_error *err)
{
    uint64_t id;
    sr_err_t rc = sr_state_stage(st, b, &id, err);
    if (rc)
        return rc;
    rc = sr_state_commit(st, id, err);
    if (rc)
        sr_state_discard(st, id);
    return rc;
}

size_t sr_state_pending(const sr_state_t *st)
{
    return st ? st->nstaged : 0;
}

/* ---- reads ------------------------------------------------------------------------------ */

sr_err_t sr_state_multi_get(sr_state_t *st, size_t n, const struct sr_state_key *keys,
                            const int64_t *event_ts, struct sr_session *out, sr_arena_t *arena,
                            struct sr_error *err)
{
    if (!st || !arena || (n && (!keys || !out)))
        return sr_error_set(err, SR_EINVAL, "state multi_get: null argument");
    if (!n)
        return SR_OK;
    for (size_t i = 0; i < n; i++) {
        sr_err_t rc = check_key(&keys[i], "multi_get", err);
        if (rc)
            return rc;
    }
    uint64_t *hashes = sr_arena_alloc(arena, n * sizeof *hashes, 8);
    struct sr_state_key *mk = sr_arena_alloc(arena, n * sizeof *mk, 8);
    uint64_t *mh = sr_arena_alloc(arena, n * sizeof *mh, 8);
    size_t *mi = sr_arena_alloc(arena, n * sizeof *mi, 8);
    struct sr_session *ms = sr_arena_alloc(arena, n * sizeof *ms, 8);
    if (!hashes || !mk || !mh || !mi || !ms)
        return sr_error_set(err, SR_ENOMEM, "state multi_get: %zu keys", n);

    size_t nm = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sr_state_key *k = &keys[i];
        uint64_t h = sr__state_key_hash(k->partition, k->id, k->len);
        const struct sr__state_entry *e = NULL;
        for (size_t b = st->nstaged; b-- > 0 && !e;)
            e = sr__state_batch_find(st->staged[b], h, k->partition, k->id, k->len);
        if (!e) {
            mk[nm] = *k;
            mh[nm] = h;
            mi[nm++] = i;
            continue;
        }
        out[i] = e->s; /* copy the items out: the batch is recycled at commit */
        if (e->s.len) {
            uint64_t *items = sr_arena_alloc(arena, (size_t)e->s.len * 8, 8);
            uint32_t *types = sr_arena_alloc(arena, (size_t)e->s.len * 4, 4);
            if (!items || !types)
                return sr_error_set(err, SR_ENOMEM, "state multi_get: items");
            memcpy(items, e->s.items, (size_t)e->s.len * 8);
            memcpy(types, e->s.types, (size_t)e->s.len * 4); /* batch puts always hold types */
            out[i].items = items;
            out[i].types = types;
        }
        out[i].aux = sr__aux_read(arena, e->s.aux, e->s.aux_len);
        if (e->s.aux_len && !out[i].aux)
            return sr_error_set(err, SR_ENOMEM, "state multi_get: encoder state");
    }
    if (nm) {
        sr_err_t rc = st->iface->get(st->ctx, nm, mk, mh, ms, arena, err);
        if (rc)
            return rc;
        for (size_t j = 0; j < nm; j++)
            out[mi[j]] = ms[j];
    }
    if (event_ts && st->ttl > 0) {
        for (size_t i = 0; i < n; i++) {
            int64_t gap;
            if (out[i].found && !__builtin_sub_overflow(event_ts[i], out[i].last_ts, &gap) &&
                gap > st->ttl) {
                out[i].found = false;
                out[i].expired = true;
                out[i].len = 0;
                out[i].items = NULL;
                out[i].aux = NULL;
                out[i].aux_len = 0;
            }
        }
    }
    return SR_OK;
}

/* ---- partitions, TTL, metrics ------------------------------------------------------------ */

void sr_state_partition_evict(sr_state_t *st, int32_t partition)
{
    if (st && st->iface->evict)
        st->iface->evict(st->ctx, partition);
}

sr_err_t sr_state_partition_foreach(sr_state_t *st, int32_t partition, sr_state_visit_fn fn,
                                    void *opaque, struct sr_error *err)
{
    if (!st || !fn || partition < 0)
        return sr_error_set(err, SR_EINVAL, "state partition foreach: bad argument");
    return st->iface->foreach(st->ctx, partition, fn, opaque, err);
}

sr_err_t sr_state_partition_drop(sr_state_t *st, int32_t partition, struct sr_error *err)
{
    if (!st || partition < 0)
        return sr_error_set(err, SR_EINVAL, "state partition drop: bad argument");
    sr_err_t rc = st->iface->drop(st->ctx, partition, err);
    if (rc)
        return rc;
    offset_remove(st, 'o', partition);
    offset_remove(st, 'c', partition);
    return SR_OK;
}

sr_err_t sr_state_expire(sr_state_t *st, int64_t watermark_ms, struct sr_error *err)
{
    if (!st)
        return sr_error_set(err, SR_EINVAL, "state expire: null store");
    int64_t cutoff;
    if (st->horizon <= 0 || __builtin_sub_overflow(watermark_ms, st->horizon, &cutoff))
        return SR_OK;
    return st->iface->expire(st->ctx, cutoff, watermark_ms, err);
}

sr_err_t sr_state_compact(sr_state_t *st, struct sr_error *err)
{
    if (!st)
        return sr_error_set(err, SR_EINVAL, "state compact: null store");
    return st->iface->compact ? st->iface->compact(st->ctx, err) : SR_OK;
}

uint64_t sr_state_count(sr_state_t *st)
{
    return st ? st->iface->count(st->ctx) : 0;
}
