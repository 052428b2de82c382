/* sr_state.h — the session store: per-session item history and event time, keyed by input
 * partition + session id, with per-partition applied offsets committed atomically alongside
 * (DESIGN §8). Two backends behind one interface: `memory` (offline runtime, tests) and
 * `rocksdb` (online runtime; WAL on, MultiGet reads, one WriteBatch per commit, a bounded
 * CLOCK cache of committed sessions, TTL removal by a compaction filter).
 *
 * A session is its last `max_len` item keys — sr_hash64 of raw item ids, so stored state does
 * not depend on any bundle vocabulary — oldest first, plus the event time of its last event.
 *
 * Staging contract (DESIGN §8, at_least_once). A micro-batch's updates are collected in an
 * sr_state_batch_t, then
 *   1. sr_state_stage(store, batch, &id): the batch becomes pending; ids increase by one per
 *      stage. From now on sr_state_multi_get sees it: a read returns the newest pending write of
 *      the key (newest stage wins), else the committed value. Batch n+1 therefore reads batch
 *      n's state before n is durable.
 *   2. sr_state_commit(store, id): writes every pending batch with id' <= id, oldest first, in
 *      ONE atomic write (RocksDB WriteBatch with the WAL) that also carries their applied
 *      offsets and the event-time watermark. Call it once the batch's recommendations are
 *      acknowledged. Committing an id already committed is a no-op; on failure nothing is
 *      written and the batches stay pending (retry, or discard).
 *   3. sr_state_discard(store, id): drops pending batches with id' >= id (their reads were
 *      derived from one another, so a failed batch takes the later ones with it); the caller
 *      reprocesses their events from the committed state.
 * sr_state_batch_commit() is stage + commit in one call (the offline runtime).
 * Closing a store drops pending batches: after a crash the applied offsets say where to resume.
 *
 * TTL is in event time, decided by the reader: sr_state_multi_get with event times returns a
 * session whose last event is more than ttl_ms before the reading event as empty (found =
 * false, expired = true). Expired sessions are removed later, never on the write path: the
 * RocksDB backend drops them in compaction (a compaction filter comparing last_ts with the
 * committed watermark = max event time committed), the memory backend in sr_state_expire().
 * Event time, not wall time, so a replay of the same events gives the same sessions whenever
 * and however fast it runs. A session is removed only when last_ts < watermark - ttl - grace;
 * only an event arriving more than `grace` behind the watermark can tell the difference.
 *
 * Threads: a store is used by one thread at a time (the caller serialises calls); the RocksDB
 * compaction filter runs on RocksDB's threads and reads only an atomic watermark. */
#ifndef SR_STATE_H
#define SR_STATE_H

#include "sr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sr_state sr_state_t;
typedef struct sr_state_batch sr_state_batch_t;

/* Longest session id accepted (bytes); the event schema caps fields at 64 KiB too. */
#define SR_STATE_ID_MAX 65535u
/* Version byte of the stored session value: 1 = items and last_ts; 2 adds each item's event
 * type code (DESIGN §8.9); 3 = version 2 followed by the encoder state, an opaque blob (DESIGN
 * §3.1). A session without encoder state is written as version 2, so outputs and changelog
 * bytes do not change when incremental encoding is off or unused; all three are read. */
#define SR_SESSION_VALUE_VERSION 3
#define SR_SESSION_VALUE_VERSION_V2 2
#define SR_SESSION_VALUE_VERSION_V1 1
/* Largest encoder state accepted (bytes). */
#define SR_SESSION_AUX_MAX (1u << 20)
/* last_ts of a value that never expires and is not session activity: a per-partition value an
 * op keeps under a reserved key (the trending sketch, DESIGN §4.6). Its put does not raise the
 * watermark, the TTL never removes it, and it commits, logs to the changelog, restores and
 * moves with its partition like a session. */
#define SR_STATE_TS_PERMANENT INT64_MAX

/* A key: input partition (>= 0) and the session id bytes (not NUL-terminated; borrowed). */
struct sr_state_key {
    int32_t partition;
    uint32_t len;
    const char *id;
};

/* A session value. When filled by the store, `items` points into the arena given to that call.
 * When passed to sr_state_batch_put, items are copied (only the last max_len are kept). */
struct sr_session {
    const uint64_t *items; /* item keys, oldest first; NULL when len == 0 */
    const uint32_t *types; /* per item, its event's type code (sr_session_type_code); NULL: not
                            * recorded (a version-1 value: every code 0) */
    uint32_t len;
    int64_t last_ts;       /* event time (ms) of the last event; INT64_MIN when not found */
    bool found;            /* false: never seen, deleted, or expired for the reading event */
    bool expired;          /* found in the store but older than ttl: returned empty; last_ts kept */
    /* The session encoder's state (DESIGN §3.1: the recurrent model's hidden state after a
     * prefix of the items), opaque to the store and owned by the encode op; NULL/0 when none.
     * Read like items (into the call's arena); copied by sr_state_batch_put; dropped with the
     * session on TTL expiry. */
    const uint8_t *aux;
    uint32_t aux_len;
};

struct sr_state_params {
    const char *backend;        /* "memory" or "rocksdb" (default "rocksdb") */
    const char *dir;            /* RocksDB directory (default "./streamrec-state"); borrowed */
    uint32_t max_len;           /* items kept per session, >= 1 (default 50) */
    int64_t ttl_ms;             /* session.ttl.ms; <= 0 turns TTL off (default 1800000) */
    int64_t ttl_grace_ms;       /* removal lag behind the watermark; < 0: same as ttl_ms */
    size_t cache_sessions;      /* state.cache.sessions; 0 disables the cache (default 100000) */
    bool sync;                  /* fsync the WAL on each commit (default false: a commit
                                   survives a process crash, not a power loss) */
    const char *identity;       /* what the store holds state of, e.g. "run group=G
                                   input.topic=T" (borrowed): a rocksdb store remembers the
                                   first one and refuses to open for another (SR_ESTATE), so
                                   applied offsets of one input are never read for another;
                                   NULL: not checked */
    bool must_be_new;           /* refuse (SR_ESTATE) a store that already holds applied
                                   offsets: a replay that does not resume starts fresh */
};

/* Fills defaults (see field comments). */
void sr_state_params_init(struct sr_state_params *p);
/* Reads state.backend, state.dir, state.cache.sessions, session.ttl.ms and, when set,
 * session.max_len. Strings point into cfg (keep it alive until sr_state_open returns). */
sr_err_t sr_state_params_from_config(struct sr_state_params *p, const sr_config_t *cfg,
                                     struct sr_error *err);

/* Opens (creating when missing) a store; loads the applied offsets and the watermark. On
 * success *out is the caller's, released with sr_state_close. Errors: SR_EINVAL (params),
 * SR_ESTATE (RocksDB, with its message), SR_EUNSUPPORTED (store written by a newer format). */
sr_err_t sr_state_open(const struct sr_state_params *p, sr_state_t **out, struct sr_error *err);
/* Closes the store, dropping pending batches; NULL is a no-op. */
void sr_state_close(sr_state_t *store);
/* Deletes a RocksDB store's files (the store must be closed). A missing dir is not an error. */
sr_err_t sr_state_destroy_db(const char *dir, struct sr_error *err);
/* "memory" or "rocksdb". */
const char *sr_state_backend_name(const sr_state_t *store);

/* Reads n sessions: pending batches first (newest wins), then the cache, then one RocksDB
 * MultiGet for every miss. out[i] is filled for keys[i]; items live in `arena` (required) until
 * its reset. event_ts (may be NULL: no TTL check) gives per key the time of the reading event.
 * Duplicate keys are allowed. Errors: SR_EINVAL, SR_ESTATE (RocksDB), SR_EFORMAT (a stored
 * value that does not decode: the message names partition and session id). */
sr_err_t sr_state_multi_get(sr_state_t *store, size_t n, const struct sr_state_key *keys,
                            const int64_t *event_ts, struct sr_session *out, sr_arena_t *arena,
                            struct sr_error *err);

/* ---- batches ------------------------------------------------------------------------ */

/* A new empty batch (recycled from the store's pool: no allocation in steady state); NULL on
 * OOM. The batch is tied to the store and must not outlive it. */
sr_state_batch_t *sr_state_batch_new(sr_state_t *store);
/* Releases a batch that was not staged; NULL is a no-op. */
void sr_state_batch_destroy(sr_state_batch_t *b);
/* Sets a key's session (copying id and items; a second put of the same key replaces the
 * first). Raises the batch watermark to s->last_ts, unless it is SR_STATE_TS_PERMANENT. */
sr_err_t sr_state_batch_put(sr_state_batch_t *b, const struct sr_state_key *key,
                            const struct sr_session *s, struct sr_error *err);
/* Deletes a key's session. */
sr_err_t sr_state_batch_delete(sr_state_batch_t *b, const struct sr_state_key *key,
                               struct sr_error *err);
/* Records the highest input offset applied by this batch for a partition (last call wins;
 * a later batch's value replaces an earlier one's at commit). */
sr_err_t sr_state_batch_set_offset(sr_state_batch_t *b, int32_t partition, int64_t offset,
                                   struct sr_error *err);
/* Records a partition's changelog checkpoint with the batch: the next changelog offset that
 * the state does not reflect (restore reads from there). Last call wins. */
sr_err_t sr_state_batch_set_checkpoint(sr_state_batch_t *b, int32_t partition, int64_t offset,
                                       struct sr_error *err);
/* Raises the batch watermark (max event time seen) to ts; puts already do so. */
void sr_state_batch_set_watermark(sr_state_batch_t *b, int64_t ts);
/* Number of distinct keys put or deleted in the batch. */
size_t sr_state_batch_size(const sr_state_batch_t *b);

/* Stages a batch (see the contract above); takes ownership of b on success; *id is its id. */
sr_err_t sr_state_stage(sr_state_t *store, sr_state_batch_t *b, uint64_t *id,
                        struct sr_error *err);
/* Commits pending batches with id' <= id in one atomic write. SR_EINVAL for an id never
 * issued; SR_ESTATE when the write fails (the batches stay pending). */
sr_err_t sr_state_commit(sr_state_t *store, uint64_t id, struct sr_error *err);
/* Drops pending batches with id' >= id. */
void sr_state_discard(sr_state_t *store, uint64_t id);
/* Adds a changelog checkpoint to the pending batch `id` (committed with it). SR_EINVAL when
 * that batch is not pending. */
sr_err_t sr_state_stage_checkpoint(sr_state_t *store, uint64_t id, int32_t partition,
                                   int64_t offset, struct sr_error *err);
/* Visits the changes of the pending batch `id`, in order: each session put (s) or delete
 * (s == NULL, applied == -1), then each applied offset (key->len == 0, s == NULL, applied >=
 * 0). The key and session are valid during the call only. fn returning non-zero stops the
 * walk with SR_EIO. SR_EINVAL when that batch is not pending. For the changelog. */
typedef int (*sr_state_change_fn)(void *opaque, const struct sr_state_key *key,
                                  const struct sr_session *s, int64_t applied);
sr_err_t sr_state_staged_foreach(sr_state_t *store, uint64_t id, sr_state_change_fn fn,
                                 void *opaque, struct sr_error *err);
/* Writes b alone, durably and atomically, leaving the pending batches pending (unlike
 * sr_state_batch_commit, which commits every pending batch up to b): for a restore, whose
 * partition has nothing pending while others do. Takes ownership of b (also on failure). A
 * pending batch still overlays what b wrote for the same key. */
sr_err_t sr_state_batch_apply(sr_state_t *store, sr_state_batch_t *b, struct sr_error *err);
/* Stages and commits b at once; takes ownership of b on success and on a failed write (the
 * batch is then discarded). */
sr_err_t sr_state_batch_commit(sr_state_t *store, sr_state_batch_t *b, struct sr_error *err);
/* Number of pending (staged, uncommitted) batches. */
size_t sr_state_pending(const sr_state_t *store);

/* ---- offsets, partitions, TTL, metrics --------------------------------------------- */

/* The committed applied offset of a partition, -1 when none. */
int64_t sr_state_applied_offset(const sr_state_t *store, int32_t partition);
/* The committed changelog checkpoint of a partition, -1 when none (restore from the start). */
int64_t sr_state_checkpoint(const sr_state_t *store, int32_t partition);
/* The committed watermark (max event time committed), INT64_MIN when none. */
int64_t sr_state_watermark(const sr_state_t *store);
/* Items kept per session (sr_state_params.max_len, fixed at open). */
uint32_t sr_state_max_len(const sr_state_t *store);

/* Drops a partition's committed sessions from the cache (on revoke): a later read goes to
 * RocksDB. Pending batches are untouched: commit or discard them first. No-op on `memory`,
 * which has no cache (its map is the store). */
void sr_state_partition_evict(sr_state_t *store, int32_t partition);
/* Calls fn for each committed session of a partition, in key order (rocksdb) or any order
 * (memory); the id and items are valid during the call only. fn returning non-zero stops the
 * walk (not an error). Pending batches are not visited. */
typedef int (*sr_state_visit_fn)(void *opaque, const struct sr_state_key *key,
                                 const struct sr_session *s);
sr_err_t sr_state_partition_foreach(sr_state_t *store, int32_t partition, sr_state_visit_fn fn,
                                    void *opaque, struct sr_error *err);
/* Durably removes a partition's sessions and applied offset (one atomic write) and evicts it
 * from the cache; for a partition whose state now lives elsewhere. Pending batches untouched. */
sr_err_t sr_state_partition_drop(sr_state_t *store, int32_t partition, struct sr_error *err);

/* Removes sessions with last_ts < watermark_ms - ttl - grace: at once on `memory`; on
 * `rocksdb` it raises the compaction filter's watermark and drops them from the cache (disk
 * copies go at the next compaction). No-op when TTL is off. */
sr_err_t sr_state_expire(sr_state_t *store, int64_t watermark_ms, struct sr_error *err);
/* Compacts the whole RocksDB store now (runs the TTL filter); no-op on `memory`. Slow: for
 * maintenance and tests, never the hot path. */
sr_err_t sr_state_compact(sr_state_t *store, struct sr_error *err);
/* Committed sessions: exact on `memory`, RocksDB's estimate on `rocksdb` (for metrics). */
uint64_t sr_state_count(sr_state_t *store);

/* Replaces the encoder state of `key` in the pending batch `id` (aux copied; NULL/0 removes
 * it), leaving its items and last_ts: the encode op runs after session_update staged the
 * batch. SR_EINVAL when the batch is not pending or holds no put of the key (a delete or an
 * unchanged session is left alone), SR_ERANGE when aux_len > SR_SESSION_AUX_MAX. */
sr_err_t sr_state_stage_set_aux(sr_state_t *store, uint64_t id, const struct sr_state_key *key,
                                const void *aux, uint32_t aux_len, struct sr_error *err);

/* Adds a put of key (as sr_state_batch_put) to the pending batch `id`: for an op that runs
 * after session_update staged the batch and keeps a per-partition value of its own. SR_EINVAL
 * when that batch is not pending. */
sr_err_t sr_state_stage_put(sr_state_t *store, uint64_t id, const struct sr_state_key *key,
                            const struct sr_session *s, struct sr_error *err);

/* ---- value codec (also the changelog record value) ---------------------------------- */

/* Bytes of an encoded session of len items without encoder state (version 2): version byte,
 * count varint, last_ts (8 bytes LE), items (8 bytes LE each), then each item's event type code
 * (4 bytes LE each). Version 1 is the same without the type codes. */
size_t sr_session_encoded_size(uint32_t len);
/* Bytes of the encoding of s: version 2 as above when s has no encoder state, else version 3
 * = version 2's fields followed by the state's length as a varint and its bytes. */
size_t sr_session_value_size(const struct sr_session *s);
/* The code stored for an event type: 32 bits of sr_hash64(type), never 0 (0 = unknown). */
uint32_t sr_session_type_code(const char *type, size_t len);
/* Encodes s into buf (cap bytes, sr_session_value_size); *written gets the size. SR_ERANGE
 * when cap is too small or the encoder state exceeds SR_SESSION_AUX_MAX. */
sr_err_t sr_session_encode(const struct sr_session *s, void *buf, size_t cap, size_t *written,
                           struct sr_error *err);
/* Decodes a value of version 1, 2 or 3 (types NULL for 1, aux NULL/0 for 1 and 2); items,
 * types and encoder state are copied into arena. A wrong version, a truncated or overlong
 * value is SR_EFORMAT with the reason; never reads past n. */
sr_err_t sr_session_decode(const void *buf, size_t n, sr_arena_t *arena, struct sr_session *out,
                           struct sr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SR_STATE_H */
