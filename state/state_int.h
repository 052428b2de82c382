/* state_int.h — private to state/: the backend interface (a table of functions + ctx), the
 * staged batch body, the value codec helpers and the CLOCK cache of committed sessions. */
#ifndef SR_STATE_INT_H
#define SR_STATE_INT_H

#include "sr_state.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys ------------------------------------------------------------------------------ */

/* Hash of (partition, id) used by the overlay, the cache and the memory map. */
static inline uint64_t sr__state_key_hash(int32_t partition, const char *id, uint32_t len)
{
    return sr_hash64(id, len) ^ ((uint64_t)(uint32_t)partition * 0x9E3779B97F4A7C15ULL);
}

static inline bool sr__state_key_eq(int32_t pa, const char *ida, uint32_t la, int32_t pb,
                                    const char *idb, uint32_t lb)
{
    return pa == pb && la == lb && (la == 0 || memcmp(ida, idb, la) == 0);
}

/* ---- codec ----------------------------------------------------------------------------- */

/* Validates a value (version 1, 2 or 3) and returns its fields; *raw points at the LE item
 * bytes inside buf, *traw (when not NULL) at the LE type codes, or NULL for a version-1 value,
 * *aux at the encoder state (NULL, *aux_len 0 when none; aux may be NULL when the caller does
 * not want it). */
sr_err_t sr__session_peek(const uint8_t *buf, size_t n, uint32_t *count, int64_t *last_ts,
                          const uint8_t **raw, const uint8_t **traw, const uint8_t **aux,
                          uint32_t *aux_len, struct sr_error *err);
/* Holds a copy of an encoder state (struct sr_session.aux) in a malloc'd buffer *buf of *cap
 * bytes, grown as needed; n == 0 empties it. False on OOM (the old contents are kept). */
static inline bool sr__aux_keep(uint8_t **buf, uint32_t *cap, uint32_t *len, const uint8_t *src,
                                uint32_t n)
{
    if (n > *cap) {
        uint8_t *p = realloc(*buf, n);
        if (!p)
            return false;
        *buf = p;
        *cap = n;
    }
    if (n)
        memcpy(*buf, src, n);
    *len = n;
    return true;
}

/* An arena copy of n bytes of encoder state for a read (NULL when n == 0 or on OOM: check
 * n && !result). */
static inline const uint8_t *sr__aux_read(sr_arena_t *arena, const uint8_t *src, uint32_t n)
{
    if (!n)
        return NULL;
    uint8_t *p = sr_arena_alloc(arena, n, 16);
    if (p)
        memcpy(p, src, n);
    return p;
}

/* Copies `count` LE item keys from raw into dst, keeping the last `keep` when count > keep. */
uint32_t sr__session_items_load(uint64_t *dst, const uint8_t *raw, uint32_t count, uint32_t keep);
/* The same for the type codes; traw NULL (version 1) gives zeros. */
void sr__session_types_load(uint32_t *dst, const uint8_t *traw, uint32_t count, uint32_t keep);
/* Copies n type codes (src NULL: zeros). */
static inline void sr__types_copy(uint32_t *dst, const uint32_t *src, size_t n)
{
    if (src)
        memcpy(dst, src, n * 4);
    else
        memset(dst, 0, n * 4);
}

/* ---- staged batches -------------------------------------------------------------------- */

struct sr__state_entry {
    uint64_t hash;
    int32_t partition;
    uint32_t idlen;
    const char *id;      /* in the batch arena */
    bool del;
    struct sr_session s; /* items in the batch arena; found = !del */
};

/* A per-partition value committed with the sessions: kind 'o' = the applied input offset,
 * 'c' = the changelog checkpoint (the next changelog offset the state does not reflect). */
struct sr__state_offset {
    char kind;
    int32_t partition;
    int64_t offset;
};

struct sr_state_batch {
    sr_state_t *store;
    uint64_t id;                  /* 0 until staged */
    sr_arena_t *arena;
    struct sr__state_entry *ents;
    size_t n, cap;
    uint32_t *index;              /* open addressing: entry index + 1, 0 = empty */
    size_t index_cap;             /* power of two, >= 2 * cap */
    struct sr__state_offset *offs;
    size_t noffs, offs_cap;
    int64_t watermark;            /* INT64_MIN when none */
    struct sr_state_batch *next_free;
};

/* Finds a key in a batch; NULL when absent. */
const struct sr__state_entry *sr__state_batch_find(const sr_state_batch_t *b, uint64_t hash,
                                                   int32_t partition, const char *id,
                                                   uint32_t len);

/* ---- backend interface ----------------------------------------------------------------- */

#define SR__STATE_IFACE_VERSION 1

struct sr__state_iface {
    int api_version;
    const char *name;
    /* Reads committed sessions of n keys (hashes precomputed); items into arena. */
    sr_err_t (*get)(void *ctx, size_t n, const struct sr_state_key *keys, const uint64_t *hashes,
                    struct sr_session *out, sr_arena_t *arena, struct sr_error *err);
    /* Writes batches oldest first plus their offsets and the new watermark, atomically. */
    sr_err_t (*write)(void *ctx, sr_state_batch_t *const *batches, size_t nb, int64_t watermark,
                      struct sr_error *err);
    /* Loads committed per-partition values (fn per kind + partition; an error from fn, i.e.
     * SR_ENOMEM, stops the load and is returned) and the watermark. */
    sr_err_t (*load_meta)(void *ctx,
                          sr_err_t (*fn)(void *opaque, char kind, int32_t partition, int64_t off),
                          void *opaque, int64_t *watermark, struct sr_error *err);
    void (*evict)(void *ctx, int32_t partition);                   /* optional */
    sr_err_t (*foreach)(void *ctx, int32_t partition, sr_state_visit_fn fn, void *opaque,
                        struct sr_error *err);
    sr_err_t (*drop)(void *ctx, int32_t partition, struct sr_error *err);
    sr_err_t (*expire)(void *ctx, int64_t cutoff, int64_t watermark, struct sr_error *err);
    sr_err_t (*compact)(void *ctx, struct sr_error *err);          /* optional */
    /* Stamps `identity` on a store that has none, or checks it against the stamped one
     * (SR_ESTATE naming both). Optional: a memory store outlives no process. */
    sr_err_t (*identity)(void *ctx, const char *identity, struct sr_error *err);
    uint64_t (*count)(void *ctx);
    void (*close)(void *ctx);
};

/* Backend constructors: on success *ctx is owned by the returned table's close. */
sr_err_t sr__state_memory_open(const struct sr_state_params *p, void **ctx,
                               const struct sr__state_iface **iface, struct sr_error *err);
sr_err_t sr__state_rocksdb_open(const struct sr_state_params *p, void **ctx,
                                const struct sr__state_iface **iface, struct sr_error *err);

/* ---- CLOCK cache of committed sessions (rocksdb backend) ------------------------------- */

struct sr__cache_ent {
    struct sr__cache_ent *next; /* bucket chain */
    uint64_t hash;
    int32_t partition;
    uint32_t idlen, idcap;
    uint32_t slot;              /* index in slots */
    uint32_t len;
    uint8_t ref;                /* CLOCK reference bit */
    int64_t last_ts;
    uint64_t *items;            /* max_len capacity, after the header */
    uint32_t *types;            /* max_len capacity, after the items */
    char *id;                   /* idcap bytes, after the types */
    uint8_t *aux;               /* encoder state (malloc'd, aux_cap bytes), aux_len used */
    uint32_t aux_len, aux_cap;
};

struct sr__cache {
    size_t cap;                 /* max entries; 0 = disabled */
    uint32_t max_len;
    struct sr__cache_ent **buckets;
    size_t nbuckets;            /* power of two */
    struct sr__cache_ent **slots;
    size_t count, hand;
    uint64_t hits, misses;
};

sr_err_t sr__cache_init(struct sr__cache *c, size_t cap, uint32_t max_len);
void sr__cache_fini(struct sr__cache *c);
/* Returns the entry (and marks it referenced) or NULL. */
struct sr__cache_ent *sr__cache_get(struct sr__cache *c, uint64_t hash, int32_t partition,
                                    const char *id, uint32_t len);
/* Inserts or replaces; evicts by CLOCK when full. Best effort: on OOM nothing is cached. */
void sr__cache_put(struct sr__cache *c, uint64_t hash, int32_t partition, const char *id,
                   uint32_t len, const struct sr_session *s);
void sr__cache_remove(struct sr__cache *c, uint64_t hash, int32_t partition, const char *id,
                      uint32_t len);
void sr__cache_evict_partition(struct sr__cache *c, int32_t partition);
/* Removes entries with last_ts < cutoff. */
void sr__cache_expire(struct sr__cache *c, int64_t cutoff);

#endif /* SR_STATE_INT_H */
