/* rocksdb.c — the RocksDB backend (C API). Two column families:
 *   default  sessions: key = partition (4 bytes big-endian) + session id bytes, so a
 *            partition's sessions are one contiguous key range (iterate, delete_range);
 *            value = the codec.c session value;
 *   meta     "v" = store format (1 byte), "o" + partition (4 bytes BE) = applied offset
 *            (8 bytes LE), "c" + partition = changelog checkpoint (8 bytes LE), "w" = watermark (8 bytes LE), "i" = identity (what the state
 *            belongs to: run group + input topic, or a replay source), stamped at the first
 *            open and checked at every later one.
 * A commit is one WriteBatch over both families with the WAL on, so the offsets always describe
 * exactly the sessions written with them (DESIGN §8). Reads go cache first (cache.c), then one
 * rocksdb_multi_get for all misses. Every RocksDB error string is translated to SR_ESTATE with
 * what was being done, and freed with rocksdb_free.
 *
 * TTL removal: a compaction filter on the sessions family drops a value whose last_ts is older
 * than watermark - ttl - grace, where watermark is the max event time committed (persisted in
 * meta with the offsets, so the filter resumes after a restart) or raised by sr_state_expire.
 * Event time rather than wall time keeps replays deterministic; compaction rewrites every value
 * anyway, so removal costs nothing on the write path (no delete tombstones, no sweeps). A value
 * the filter cannot decode is kept, so the reader reports it instead of it vanishing.
 * Threads: the store's thread for everything but the filter, which runs on RocksDB's
 * compaction threads and reads only the atomic watermark. */
#include "state_int.h"

#include <rocksdb/c.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define META_FORMAT 1

struct rdb_filter_state {
    _Atomic int64_t watermark; /* INT64_MIN: nothing expires */
    int64_t horizon;           /* ttl + grace; <= 0: TTL off */
};

struct rdb_ctx {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_options_t *cf_opts[2];
    rocksdb_column_family_handle_t *cf[2]; /* 0 sessions, 1 meta */
    rocksdb_block_based_table_options_t *table;
    rocksdb_filterpolicy_t *bloom; /* owned by table options */
    rocksdb_compactionfilter_t *filter;
    struct rdb_filter_state fstate;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_writebatch_t *wb;       /* reused across commits */
    uint8_t *buf;                   /* encode scratch, reused */
    size_t bufcap;
    char *dir;
    uint32_t max_len;
    struct sr__cache cache;
};

enum { CF_SESSIONS = 0, CF_META = 1 };

/* Translates and frees a RocksDB error string. */
static sr_err_t rdb_err(struct sr_error *err, char *e, const char *what, const char *dir)
{
    sr_error_set(err, SR_ESTATE, "state rocksdb %s: %s: %s", dir, what, e ? e : "unknown error");
    rocksdb_free(e);
    return SR_ESTATE;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

static uint32_t rd_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void le64(uint8_t *p, int64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

static int64_t rd_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

/* ---- compaction filter ---------------------------------------------------------------- */

static unsigned char ttl_filter(void *state, int level, const char *key, size_t klen,
                                const char *val, size_t vlen, char **nv, size_t *nvlen,
                                unsigned char *changed)
{
    struct rdb_filter_state *fs = state;
    (void)level, (void)key, (void)klen, (void)nv, (void)nvlen;
    *changed = 0;
    int64_t wm = atomic_load_explicit(&fs->watermark, memory_order_relaxed);
    if (fs->horizon <= 0 || wm == INT64_MIN)
        return 0;
    uint32_t count;
    int64_t last_ts;
    const uint8_t *raw;
    if (sr__session_peek((const uint8_t *)val, vlen, &count, &last_ts, &raw, NULL, NULL, NULL,
                         NULL))
        return 0; /* undecodable: keep, the reader names it */
    int64_t cutoff;
    if (__builtin_sub_overflow(wm, fs->horizon, &cutoff))
        return 0;
    return last_ts < cutoff;
}

static const char *ttl_filter_name(void *state)
{
    (void)state;
    return "streamrec.session_ttl";
}

static void no_destroy(void *state) { (void)state; }

/* ---- reads ---------------------------------------------------------------------------- */

static sr_err_t session_from_value(struct rdb_ctx *r, const struct sr_state_key *k,
                                   const uint8_t *val, size_t vlen, sr_arena_t *arena,
                                   struct sr_session *out, struct sr_error *err)
{
    uint32_t count;
    int64_t ts;
    const uint8_t *raw, *traw, *aux;
    uint32_t aux_len;
    if (sr__session_peek(val, vlen, &count, &ts, &raw, &traw, &aux, &aux_len, err))
        return sr_error_prefix(err, "state rocksdb %s: partition %d session \"%.*s\"", r->dir,
                               k->partition, (int)(k->len > 128 ? 128 : k->len), k->id);
    uint32_t m = count > r->max_len ? r->max_len : count; /* max_len may have shrunk */
    uint64_t *items = NULL;
    uint32_t *types = NULL;
    if (m) {
        items = sr_arena_alloc(arena, (size_t)m * 8, 8);
        types = sr_arena_alloc(arena, (size_t)m * 4, 4);
        if (!items || !types)
            return sr_error_set(err, SR_ENOMEM, "state rocksdb: read of %u items", m);
        sr__session_items_load(items, raw, count, m);
        sr__session_types_load(types, traw, count, m);
    }
    const uint8_t *a = sr__aux_read(arena, aux, aux_len);
    if (aux_len && !a)
        return sr_error_set(err, SR_ENOMEM, "state rocksdb: read of %u bytes of encoder state",
                            aux_len);
    *out = (struct sr_session){ .items = items, .types = types, .len = m, .last_ts = ts,
                                .found = true, .aux = a, .aux_len = aux_len };
    return SR_OK;
}

static sr_err_t rdb_get(void *ctx, size_t n, const struct sr_state_key *keys,
                        const uint64_t *hashes, struct sr_session *out, sr_arena_t *arena,
                        struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    size_t nmiss = 0;
    size_t *miss = sr_arena_alloc(arena, n * sizeof *miss, 8);
    if (n && !miss)
        return sr_error_set(err, SR_ENOMEM, "state rocksdb: read of %zu keys", n);
    for (size_t i = 0; i < n; i++) {
        struct sr__cache_ent *e =
            sr__cache_get(&r->cache, hashes[i], keys[i].partition, keys[i].id, keys[i].len);
        if (!e) {
            miss[nmiss++] = i;
            continue;
        }
        uint64_t *items = NULL;
        uint32_t *types = NULL;
        if (e->len) {
            items = sr_arena_alloc(arena, (size_t)e->len * 8, 8);
            types = sr_arena_alloc(arena, (size_t)e->len * 4, 4);
            if (!items || !types)
                return sr_error_set(err, SR_ENOMEM, "state rocksdb: read of %u items", e->len);
            memcpy(items, e->items, (size_t)e->len * 8);
            memcpy(types, e->types, (size_t)e->len * 4);
        }
        const uint8_t *a = sr__aux_read(arena, e->aux, e->aux_len);
        if (e->aux_len && !a)
            return sr_error_set(err, SR_ENOMEM, "state rocksdb: read of %u bytes of encoder "
                                "state", e->aux_len);
        out[i] = (struct sr_session){ .items = items, .types = types, .len = e->len,
                                      .last_ts = e->last_ts, .found = true, .aux = a,
                                      .aux_len = e->aux_len };
    }
    if (!nmiss)
        return SR_OK;

    const char **kp = sr_arena_alloc(arena, nmiss * sizeof *kp, 8);
    size_t *ks = sr_arena_alloc(arena, nmiss * sizeof *ks, 8);
    char **vals = sr_arena_calloc(arena, nmiss, sizeof *vals);
    size_t *vs = sr_arena_alloc(arena, nmiss * sizeof *vs, 8);
    char **errs = sr_arena_calloc(arena, nmiss, sizeof *errs);
    const rocksdb_column_family_handle_t **cfs = sr_arena_alloc(arena, nmiss * sizeof *cfs, 8);
    if (!kp || !ks || !vals || !vs || !errs || !cfs)
        return sr_error_set(err, SR_ENOMEM, "state rocksdb: read of %zu keys", nmiss);
    for (size_t j = 0; j < nmiss; j++) {
        const struct sr_state_key *k = &keys[miss[j]];
        uint8_t *kb = sr_arena_alloc(arena, 4 + (size_t)k->len, 1);
        if (!kb)
            return sr_error_set(err, SR_ENOMEM, "state rocksdb: read keys");
        be32(kb, (uint32_t)k->partition);
        if (k->len)
            memcpy(kb + 4, k->id, k->len);
        kp[j] = (const char *)kb;
        ks[j] = 4 + (size_t)k->len;
        cfs[j] = r->cf[CF_SESSIONS];
    }
    rocksdb_multi_get_cf(r->db, r->ropts, cfs, nmiss, kp, ks, vals, vs, errs);

    sr_err_t rc = SR_OK;
    for (size_t j = 0; j < nmiss; j++) {
        size_t i = miss[j];
        if (rc == SR_OK && errs[j]) {
            rc = rdb_err(err, errs[j], "multi_get", r->dir);
            errs[j] = NULL;
        } else if (rc == SR_OK && vals[j]) {
            rc = session_from_value(r, &keys[i], (const uint8_t *)vals[j], vs[j], arena, &out[i],
                                    err);
            if (rc == SR_OK)
                sr__cache_put(&r->cache, hashes[i], keys[i].partition, keys[i].id, keys[i].len,
                              &out[i]);
        } else if (rc == SR_OK) {
            out[i] = (struct sr_session){ .last_ts = INT64_MIN };
        }
        rocksdb_free(vals[j]);
        rocksdb_free(errs[j]);
    }
    return rc;
}

/* ---- writes --------------------------------------------------------------------------- */

static uint8_t *scratch(struct rdb_ctx *r, size_t need)
{
    if (need > r->bufcap) {
        size_t cap = r->bufcap ? r->bufcap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(r->buf, cap);
        if (!b)
            return NULL;
        r->buf = b;
        r->bufcap = cap;
    }
    return r->buf;
}

static sr_err_t rdb_write(void *ctx, sr_state_batch_t *const *batches, size_t nb,
                          int64_t watermark, struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    rocksdb_writebatch_clear(r->wb);
    for (size_t b = 0; b < nb; b++) {
        const sr_state_batch_t *bt = batches[b];
        for (size_t i = 0; i < bt->n; i++) {
            const struct sr__state_entry *en = &bt->ents[i];
            size_t klen = 4 + (size_t)en->idlen;
            size_t vlen = en->del ? 0 : sr_session_value_size(&en->s);
            uint8_t *kb = scratch(r, klen + vlen);
            if (!kb)
                return sr_error_set(err, SR_ENOMEM, "state rocksdb: commit scratch");
            be32(kb, (uint32_t)en->partition);
            if (en->idlen)
                memcpy(kb + 4, en->id, en->idlen);
            if (en->del) {
                rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_SESSIONS], (char *)kb, klen);
            } else {
                sr_session_encode(&en->s, kb + klen, vlen, NULL, NULL);
                rocksdb_writebatch_put_cf(r->wb, r->cf[CF_SESSIONS], (char *)kb, klen,
                                          (char *)kb + klen, vlen);
            }
        }
        for (size_t i = 0; i < bt->noffs; i++) {
            uint8_t k[5], v[8];
            k[0] = (uint8_t)bt->offs[i].kind;
            be32(k + 1, (uint32_t)bt->offs[i].partition);
            le64(v, bt->offs[i].offset);
            rocksdb_writebatch_put_cf(r->wb, r->cf[CF_META], (char *)k, 5, (char *)v, 8);
        }
    }
    if (watermark != INT64_MIN) {
        uint8_t v[8];
        le64(v, watermark);
        rocksdb_writebatch_put_cf(r->wb, r->cf[CF_META], "w", 1, (char *)v, 8);
    }
    char *e = NULL;
    rocksdb_write(r->db, r->wopts, r->wb, &e);
    rocksdb_writebatch_clear(r->wb);
    if (e)
        return rdb_err(err, e, "commit", r->dir);

    /* durable: now the cache may show it, oldest batch first so the newest wins */
    for (size_t b = 0; b < nb; b++) {
        const sr_state_batch_t *bt = batches[b];
        for (size_t i = 0; i < bt->n; i++) {
            const struct sr__state_entry *en = &bt->ents[i];
            if (en->del)
                sr__cache_remove(&r->cache, en->hash, en->partition, en->id, en->idlen);
            else
                sr__cache_put(&r->cache, en->hash, en->partition, en->id, en->idlen, &en->s);
        }
    }
    if (watermark != INT64_MIN &&
        watermark > atomic_load_explicit(&r->fstate.watermark, memory_order_relaxed))
        atomic_store_explicit(&r->fstate.watermark, watermark, memory_order_relaxed);
    return SR_OK;
}

/* ---- meta, partitions, TTL ------------------------------------------------------------ */

static sr_err_t rdb_load_meta(void *ctx, sr_err_t (*fn)(void *, char, int32_t, int64_t),
                              void *opaque, int64_t *watermark, struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    *watermark = INT64_MIN;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[CF_META]);
    sr_err_t rc = SR_OK;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl == 5 && (k[0] == 'o' || k[0] == 'c') && vl == 8) {
            if (fn(opaque, (char)k[0], (int32_t)rd_be32(k + 1), rd_le64(v)) != SR_OK) {
                rc = sr_error_set(err, SR_ENOMEM, "state rocksdb %s: out of memory loading offsets",
                                  r->dir);
                break;
            }
        } else if (kl == 1 && k[0] == 'i') {
            /* identity: checked by rdb_identity */
        } else if (kl == 1 && k[0] == 'w' && vl == 8) {
            *watermark = rd_le64(v);
        } else if (kl == 1 && k[0] == 'v' && vl == 1) {
            if (v[0] != META_FORMAT) {
                rc = sr_error_set(err, SR_EUNSUPPORTED,
                                  "state rocksdb %s: store format %u, this build reads %u",
                                  r->dir, v[0], META_FORMAT);
                break;
            }
        } else {
            rc = sr_error_set(err, SR_EFORMAT, "state rocksdb %s: unknown meta record (%zu-byte "
                              "key, %zu-byte value)", r->dir, kl, vl);
            break;
        }
    }
    if (rc == SR_OK) {
        char *e = NULL;
        rocksdb_iter_get_error(it, &e);
        if (e)
            rc = rdb_err(err, e, "read meta", r->dir);
    }
    rocksdb_iter_destroy(it);
    if (rc == SR_OK && *watermark != INT64_MIN)
        atomic_store(&r->fstate.watermark, *watermark);
    return rc;
}

static sr_err_t rdb_identity(void *ctx, const char *identity, struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    char *e = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(r->db, r->ropts, r->cf[CF_META], "i", 1, &vl, &e);
    if (e)
        return rdb_err(err, e, "read identity", r->dir);
    sr_err_t rc = SR_OK;
    if (!v) {
        rocksdb_put_cf(r->db, r->wopts, r->cf[CF_META], "i", 1, identity, strlen(identity), &e);
        if (e)
            rc = rdb_err(err, e, "write identity", r->dir);
    } else if (vl != strlen(identity) || memcmp(v, identity, vl) != 0) {
        rc = sr_error_set(err, SR_ESTATE, "state.dir %s holds the state of \"%.*s\", not of \"%s\": "
                          "name another state.dir (or remove this one to start over)", r->dir,
                          (int)(vl > 200 ? 200 : vl), v, identity);
    }
    rocksdb_free(v);
    return rc;
}

static void rdb_evict(void *ctx, int32_t partition)
{
    struct rdb_ctx *r = ctx;
    sr__cache_evict_partition(&r->cache, partition);
}

static sr_err_t rdb_foreach(void *ctx, int32_t partition, sr_state_visit_fn fn, void *opaque,
                            struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    uint8_t lo[4], hi[4];
    be32(lo, (uint32_t)partition);
    be32(hi, (uint32_t)partition + 1); /* partition >= 0, so +1 <= 0x80000000 */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, 4);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, r->cf[CF_SESSIONS]);
    sr_arena_t *arena = sr_arena_new(64 << 10);
    sr_err_t rc = arena ? SR_OK : sr_error_set(err, SR_ENOMEM, "state rocksdb: iterate");
    for (rocksdb_iter_seek(it, (char *)lo, 4); rc == SR_OK && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        struct sr_state_key key = { partition, (uint32_t)(kl - 4), k + 4 };
        struct sr_session s;
        sr_arena_reset(arena);
        rc = session_from_value(r, &key, (const uint8_t *)v, vl, arena, &s, err);
        if (rc == SR_OK && fn(opaque, &key, &s))
            break;
    }
    if (rc == SR_OK) {
        char *e = NULL;
        rocksdb_iter_get_error(it, &e);
        if (e)
            rc = rdb_err(err, e, "iterate partition", r->dir);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    sr_arena_destroy(arena);
    return rc;
}

static sr_err_t rdb_drop(void *ctx, int32_t partition, struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    uint8_t lo[4], hi[4], ok[5], ck[5];
    be32(lo, (uint32_t)partition);
    be32(hi, (uint32_t)partition + 1);
    ok[0] = 'o';
    ck[0] = 'c';
    be32(ok + 1, (uint32_t)partition);
    be32(ck + 1, (uint32_t)partition);
    rocksdb_writebatch_clear(r->wb);
    rocksdb_writebatch_delete_range_cf(r->wb, r->cf[CF_SESSIONS], (char *)lo, 4, (char *)hi, 4);
    rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_META], (char *)ok, 5);
    rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_META], (char *)ck, 5);
    char *e = NULL;
    rocksdb_write(r->db, r->wopts, r->wb, &e);
    rocksdb_writebatch_clear(r->wb);
    if (e)
        return rdb_err(err, e, "drop partition", r->dir);
    sr__cache_evict_partition(&r->cache, partition);
    return SR_OK;
}

static sr_err_t rdb_expire(void *ctx, int64_t cutoff, int64_t watermark, struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    (void)err;
    if (watermark > atomic_load(&r->fstate.watermark))
        atomic_store(&r->fstate.watermark, watermark);
    sr__cache_expire(&r->cache, cutoff);
    return SR_OK;
}

static sr_err_t rdb_compact(void *ctx, struct sr_error *err)
{
    struct rdb_ctx *r = ctx;
    (void)err; /* rocksdb_compact_range_cf reports no error through the C API */
    rocksdb_compact_range_cf(r->db, r->cf[CF_SESSIONS], NULL, 0, NULL, 0);
    return SR_OK;
}

static uint64_t rdb_count(void *ctx)
{
    struct rdb_ctx *r = ctx;
    uint64_t v = 0;
    if (rocksdb_property_int_cf(r->db, r->cf[CF_SESSIONS], "rocksdb.estimate-num-keys", &v))
        return 0;
    return v;
}

static void rdb_close(void *ctx)
{
    struct rdb_ctx *r = ctx;
    if (!r)
        return;
    for (int i = 0; i < 2; i++)
        if (r->cf[i])
            rocksdb_column_family_handle_destroy(r->cf[i]);
    if (r->db)
        rocksdb_close(r->db);
    if (r->wb)
        rocksdb_writebatch_destroy(r->wb);
    if (r->ropts)
        rocksdb_readoptions_destroy(r->ropts);
    if (r->wopts)
        rocksdb_writeoptions_destroy(r->wopts);
    for (int i = 0; i < 2; i++)
        if (r->cf_opts[i])
            rocksdb_options_destroy(r->cf_opts[i]);
    if (r->opts)
        rocksdb_options_destroy(r->opts);
    if (r->table)
        rocksdb_block_based_options_destroy(r->table); /* also frees the bloom policy */
    if (r->filter)
        rocksdb_compactionfilter_destroy(r->filter); /* after the db: compactions are done */
    sr__cache_fini(&r->cache);
    free(r->buf);
    free(r->dir);
    free(r);
}

static const struct sr__state_iface rdb_iface = {
    .api_version = SR__STATE_IFACE_VERSION,
    .name = "rocksdb",
    .get = rdb_get,
    .write = rdb_write,
    .load_meta = rdb_load_meta,
    .identity = rdb_identity,
    .evict = rdb_evict,
    .foreach = rdb_foreach,
    .drop = rdb_drop,
    .expire = rdb_expire,
    .compact = rdb_compact,
    .count = rdb_count,
    .close = rdb_close,
};

sr_err_t sr__state_rocksdb_open(const struct sr_state_params *p, void **ctx,
                                const struct sr__state_iface **iface, struct sr_error *err)
{
    struct rdb_ctx *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(p->dir))) {
        free(r);
        return sr_error_set(err, SR_ENOMEM, "state rocksdb: open");
    }
    r->max_len = p->max_len;
    atomic_init(&r->fstate.watermark, INT64_MIN);
    int64_t grace = p->ttl_grace_ms < 0 ? p->ttl_ms : p->ttl_grace_ms;
    if (p->ttl_ms <= 0 || __builtin_add_overflow(p->ttl_ms, grace, &r->fstate.horizon))
        r->fstate.horizon = 0;
    if (sr__cache_init(&r->cache, p->cache_sessions, p->max_len)) {
        rdb_close(r);
        return sr_error_set(err, SR_ENOMEM, "state rocksdb: cache of %zu sessions",
                            p->cache_sessions);
    }

    /* Sessions are user data: a directory we create is the owner's alone (RocksDB would make
     * it 0755 under the usual umask). An existing directory keeps its mode. */
    if (mkdir(p->dir, 0700) != 0 && errno != EEXIST) {
        sr_err_t rc = sr_error_set(err, SR_ESTATE, "state rocksdb %s: cannot create the "
                                   "directory: %s", p->dir, strerror(errno));
        rdb_close(r);
        return rc;
    }
    r->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->opts, 1);
    rocksdb_options_set_create_missing_column_families(r->opts, 1);
    rocksdb_options_increase_parallelism(r->opts, 2);

    r->table = rocksdb_block_based_options_create();
    r->bloom = rocksdb_filterpolicy_create_bloom_full(10); /* cheap misses for new sessions */
    rocksdb_block_based_options_set_filter_policy(r->table, r->bloom);
    r->filter = rocksdb_compactionfilter_create(&r->fstate, no_destroy, ttl_filter,
                                                ttl_filter_name);
    r->cf_opts[CF_SESSIONS] = rocksdb_options_create_copy(r->opts);
    rocksdb_options_set_block_based_table_factory(r->cf_opts[CF_SESSIONS], r->table);
    rocksdb_options_set_compaction_filter(r->cf_opts[CF_SESSIONS], r->filter);
    r->cf_opts[CF_META] = rocksdb_options_create_copy(r->opts);

    const char *names[2] = { "default", "meta" };
    char *e = NULL;
    r->db = rocksdb_open_column_families(r->opts, p->dir, 2, names,
                                         (const rocksdb_options_t *const *)r->cf_opts, r->cf, &e);
    if (e) {
        r->db = NULL;
        r->cf[0] = r->cf[1] = NULL;
        sr_err_t rc = rdb_err(err, e, "open", p->dir);
        rdb_close(r);
        return rc;
    }
    r->ropts = rocksdb_readoptions_create();
    r->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wopts, p->sync);
    rocksdb_writeoptions_disable_WAL(r->wopts, 0);
    r->wb = rocksdb_writebatch_create();

    /* stamp the format on a new store; an existing one is checked by load_meta */
    size_t vl = 0;
    char *v = rocksdb_get_cf(r->db, r->ropts, r->cf[CF_META], "v", 1, &vl, &e);
    if (!e && !v) {
        char f = META_FORMAT;
        rocksdb_put_cf(r->db, r->wopts, r->cf[CF_META], "v", 1, &f, 1, &e);
    }
    rocksdb_free(v);
    if (e) {
        sr_err_t rc = rdb_err(err, e, "format stamp", p->dir);
        rdb_close(r);
        return rc;
    }
    *ctx = r;
    *iface = &rdb_iface;
    return SR_OK;
}

sr_err_t sr_state_destroy_db(const char *dir, struct sr_error *err)
{
    if (!dir)
        return sr_error_set(err, SR_EINVAL, "state destroy: no directory");
    rocksdb_options_t *o = rocksdb_options_create();
    char *e = NULL;
    rocksdb_destroy_db(o, dir, &e);
    rocksdb_options_destroy(o);
    if (e)
        return rdb_err(err, e, "destroy", dir);
    return SR_OK;
}
