/* memory.c — the in-memory backend: a chained hash map from (partition, session id) to a node
 * holding the session with max_len items inline. It is the store itself (no cache, nothing
 * persisted): the offline runtime and tests use it; offsets and the watermark are kept by the
 * generic layer (state.c). Expired sessions leave only through sr_state_expire's sweep.
 * Owned by one thread (the store's). */
#include "state_int.h"

#include <stdlib.h>
#include <string.h>

struct mem_node {
    struct mem_node *next;
    uint64_t hash;
    int32_t partition;
    uint32_t idlen;
    uint32_t len;
    int64_t last_ts;
    uint64_t *items; /* max_len capacity, after the header */
    uint32_t *types; /* max_len capacity, after the items */
    char *id;        /* after the types */
    uint8_t *aux;    /* encoder state (malloc'd) */
    uint32_t aux_len, aux_cap;
};

struct mem_ctx {
    uint32_t max_len;
    struct mem_node **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
};

static struct mem_node **mem_link(struct mem_ctx *m, uint64_t hash, int32_t partition,
                                  const char *id, uint32_t len)
{
    struct mem_node **link = &m->buckets[hash & (m->nbuckets - 1)];
    for (; *link; link = &(*link)->next) {
        struct mem_node *e = *link;
        if (e->hash == hash && sr__state_key_eq(e->partition, e->id, e->idlen, partition, id, len))
            return link;
    }
    return link;
}

static sr_err_t mem_grow(struct mem_ctx *m)
{
    size_t nb = m->nbuckets * 2;
    struct mem_node **b = calloc(nb, sizeof *b);
    if (!b)
        return SR_ENOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_node *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
    return SR_OK;
}

static sr_err_t mem_get(void *ctx, size_t n, const struct sr_state_key *keys,
                        const uint64_t *hashes, struct sr_session *out, sr_arena_t *arena,
                        struct sr_error *err)
{
    struct mem_ctx *m = ctx;
    for (size_t i = 0; i < n; i++) {
        struct mem_node *e = *mem_link(m, hashes[i], keys[i].partition, keys[i].id, keys[i].len);
        if (!e) {
            out[i] = (struct sr_session){ .last_ts = INT64_MIN };
            continue;
        }
        uint64_t *items = NULL;
        uint32_t *types = NULL;
        if (e->len) {
            items = sr_arena_alloc(arena, (size_t)e->len * 8, 8);
            types = sr_arena_alloc(arena, (size_t)e->len * 4, 4);
            if (!items || !types)
                return sr_error_set(err, SR_ENOMEM, "state memory: read of %u items", e->len);
            memcpy(items, e->items, (size_t)e->len * 8);
            memcpy(types, e->types, (size_t)e->len * 4);
        }
        const uint8_t *a = sr__aux_read(arena, e->aux, e->aux_len);
        if (e->aux_len && !a)
            return sr_error_set(err, SR_ENOMEM, "state memory: read of %u bytes of encoder "
                                "state", e->aux_len);
        out[i] = (struct sr_session){ .items = items, .types = types, .len = e->len,
                                      .last_ts = e->last_ts, .found = true, .aux = a,
                                      .aux_len = e->aux_len };
    }
    return SR_OK;
}

static void mem_unlink_free(struct mem_ctx *m, struct mem_node **link)
{
    struct mem_node *e = *link;
    *link = e->next;
    free(e->aux);
    free(e);
    m->count--;
}

/* Applies one entry; on OOM returns an error with the map unchanged for that entry. */
static sr_err_t mem_apply(struct mem_ctx *m, const struct sr__state_entry *en,
                          struct sr_error *err)
{
    struct mem_node **link = mem_link(m, en->hash, en->partition, en->id, en->idlen);
    if (en->del) {
        if (*link)
            mem_unlink_free(m, link);
        return SR_OK;
    }
    struct mem_node *e = *link;
    if (e && !sr__aux_keep(&e->aux, &e->aux_cap, &e->aux_len, en->s.aux, en->s.aux_len))
        return sr_error_set(err, SR_ENOMEM, "state memory: encoder state of %u bytes",
                            en->s.aux_len);
    if (!e) {
        e = malloc(sizeof *e + (size_t)m->max_len * 12 + en->idlen);
        if (!e)
            return sr_error_set(err, SR_ENOMEM, "state memory: new session");
        e->items = (uint64_t *)(e + 1);
        e->types = (uint32_t *)(e->items + m->max_len);
        e->id = (char *)(e->types + m->max_len);
        e->aux = NULL;
        e->aux_len = e->aux_cap = 0;
        if (!sr__aux_keep(&e->aux, &e->aux_cap, &e->aux_len, en->s.aux, en->s.aux_len)) {
            free(e);
            return sr_error_set(err, SR_ENOMEM, "state memory: encoder state of %u bytes",
                                en->s.aux_len);
        }
        e->hash = en->hash;
        e->partition = en->partition;
        e->idlen = en->idlen;
        if (en->idlen)
            memcpy(e->id, en->id, en->idlen);
        e->next = NULL;
        *link = e;
        m->count++;
    }
    /* batch puts hold at most max_len items (sr_state_batch_put truncates) */
    e->len = en->s.len;
    if (e->len) {
        memcpy(e->items, en->s.items, (size_t)e->len * 8);
        sr__types_copy(e->types, en->s.types, e->len);
    }
    e->last_ts = en->s.last_ts;
    return SR_OK;
}

static sr_err_t mem_write(void *ctx, sr_state_batch_t *const *batches, size_t nb,
                          int64_t watermark, struct sr_error *err)
{
    struct mem_ctx *m = ctx;
    (void)watermark;
    /* Reserve first so that the apply loop cannot fail half-way on a resize. Node allocation
     * can still fail; the memory backend makes no durability promise, and the caller treats
     * any commit error as fatal for the pending batches. */
    size_t adds = 0;
    for (size_t b = 0; b < nb; b++)
        adds += batches[b]->n;
    while (m->count + adds > m->nbuckets)
        if (mem_grow(m))
            return sr_error_set(err, SR_ENOMEM, "state memory: grow map");
    for (size_t b = 0; b < nb; b++)
        for (size_t i = 0; i < batches[b]->n; i++) {
            sr_err_t rc = mem_apply(m, &batches[b]->ents[i], err);
            if (rc)
                return rc;
        }
    return SR_OK;
}

static sr_err_t mem_load_meta(void *ctx, sr_err_t (*fn)(void *, char, int32_t, int64_t),
                              void *opaque, int64_t *watermark, struct sr_error *err)
{
    (void)ctx, (void)fn, (void)opaque, (void)err;
    *watermark = INT64_MIN;
    return SR_OK;
}

static sr_err_t mem_foreach(void *ctx, int32_t partition, sr_state_visit_fn fn, void *opaque,
                            struct sr_error *err)
{
    struct mem_ctx *m = ctx;
    (void)err;
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct mem_node *e = m->buckets[i]; e; e = e->next) {
            if (e->partition != partition)
                continue;
            struct sr_state_key k = { e->partition, e->idlen, e->id };
            struct sr_session s = { .items = e->len ? e->items : NULL,
                                    .types = e->len ? e->types : NULL, .len = e->len,
                                    .last_ts = e->last_ts, .found = true, .aux = e->aux,
                                    .aux_len = e->aux_len };
            if (fn(opaque, &k, &s))
                return SR_OK;
        }
    return SR_OK;
}

static void mem_remove_if(struct mem_ctx *m, bool by_part, int32_t partition, int64_t cutoff)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_node **link = &m->buckets[i];
        while (*link) {
            struct mem_node *e = *link;
            bool hit = by_part ? e->partition == partition : e->last_ts < cutoff;
            if (hit)
                mem_unlink_free(m, link);
            else
                link = &e->next;
        }
    }
}

static sr_err_t mem_drop(void *ctx, int32_t partition, struct sr_error *err)
{
    (void)err;
    mem_remove_if(ctx, true, partition, 0);
    return SR_OK;
}

static sr_err_t mem_expire(void *ctx, int64_t cutoff, int64_t watermark, struct sr_error *err)
{
    (void)watermark, (void)err;
    mem_remove_if(ctx, false, 0, cutoff);
    return SR_OK;
}

static uint64_t mem_count(void *ctx)
{
    return ((struct mem_ctx *)ctx)->count;
}

static void mem_close(void *ctx)
{
    struct mem_ctx *m = ctx;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_node *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e->aux);
            free(e);
        }
    }
    free(m->buckets);
    free(m);
}

static const struct sr__state_iface mem_iface = {
    .api_version = SR__STATE_IFACE_VERSION,
    .name = "memory",
    .get = mem_get,
    .write = mem_write,
    .load_meta = mem_load_meta,
    .evict = NULL, /* the map is the store: nothing to evict */
    .foreach = mem_foreach,
    .drop = mem_drop,
    .expire = mem_expire,
    .compact = NULL,
    .count = mem_count,
    .close = mem_close,
};

sr_err_t sr__state_memory_open(const struct sr_state_params *p, void **ctx,
                               const struct sr__state_iface **iface, struct sr_error *err)
{
    struct mem_ctx *m = calloc(1, sizeof *m);
    if (m) {
        m->nbuckets = 1024;
        m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    }
    if (!m || !m->buckets) {
        free(m);
        return sr_error_set(err, SR_ENOMEM, "state memory: open");
    }
    m->max_len = p->max_len;
    *ctx = m;
    *iface = &mem_iface;
    return SR_OK;
}
