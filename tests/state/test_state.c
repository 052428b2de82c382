/* test_state.c — session store tests: value codec and corrupt values, put/get/delete on both
 * backends, staging overlay (stage, read-through, commit in order, discard), reopen persistence
 * of sessions, offsets and watermark, commit atomicity of offsets with sessions, CLOCK cache
 * eviction under a working set larger than the cache, TTL on read, TTL removal by the RocksDB
 * compaction filter and by the memory sweep, partition evict/foreach/drop, and a randomized
 * property test where memory, RocksDB and a plain reference model must agree after every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sr_state.h"

#include <rocksdb/c.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void make_dir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/sr_state_test_XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static void remove_dir(const char *dir)
{
    struct sr_error err;
    assert_int_equal(sr_state_destroy_db(dir, &err), SR_OK);
    rmdir(dir);
}

static sr_state_t *open_store(const char *backend, const char *dir, uint32_t max_len,
                              int64_t ttl, int64_t grace, size_t cache)
{
    struct sr_state_params p;
    sr_state_params_init(&p);
    p.backend = backend;
    p.dir = dir;
    p.max_len = max_len;
    p.ttl_ms = ttl;
    p.ttl_grace_ms = grace;
    p.cache_sessions = cache;
    struct sr_error err = { 0 };
    sr_state_t *st = NULL;
    sr_err_t rc = sr_state_open(&p, &st, &err);
    if (rc)
        fail_msg("open %s: %s", backend, err.msg);
    return st;
}

static struct sr_state_key key_of(int32_t part, const char *id)
{
    return (struct sr_state_key){ part, (uint32_t)strlen(id), id };
}

static void put1(sr_state_batch_t *b, int32_t part, const char *id, const uint64_t *items,
                 uint32_t len, int64_t ts)
{
    struct sr_state_key k = key_of(part, id);
    struct sr_session s = { .items = items, .len = len, .last_ts = ts, .found = true };
    struct sr_error err;
    assert_int_equal(sr_state_batch_put(b, &k, &s, &err), SR_OK);
}

static struct sr_session get1(sr_state_t *st, sr_arena_t *a, int32_t part, const char *id,
                              const int64_t *ts)
{
    struct sr_state_key k = key_of(part, id);
    struct sr_session s;
    struct sr_error err = { 0 };
    if (sr_state_multi_get(st, 1, &k, ts, &s, a, &err))
        fail_msg("multi_get: %s", err.msg);
    return s;
}

static void commit_now(sr_state_t *st, sr_state_batch_t *b)
{
    struct sr_error err = { 0 };
    if (sr_state_batch_commit(st, b, &err))
        fail_msg("commit: %s", err.msg);
}

/* ---- codec ------------------------------------------------------------------------------- */

static void test_codec_roundtrip_and_rejects(void **unused)
{
    (void)unused;
    uint64_t items[3] = { 1, 0xFFFFFFFFFFFFFFFFULL, 0x0123456789ABCDEFULL };
    uint32_t types[3] = { 3, 0xDEADBEEFu, sr_session_type_code("purchase", 8) };
    struct sr_session s = { .items = items, .types = types, .len = 3, .last_ts = -5, .found = true };
    uint8_t buf[64];
    size_t n;
    struct sr_error err = { 0 };
    assert_int_equal(sr_session_encoded_size(3), 1 + 1 + 8 + 24 + 12);
    assert_int_equal(sr_session_encode(&s, buf, sizeof buf, &n, &err), SR_OK);
    assert_int_equal(n, 46);
    assert_int_equal(buf[0], SR_SESSION_VALUE_VERSION_V2); /* no encoder state: version 2 */
    assert_int_equal(buf[0], 2);
    assert_int_equal(buf[1], 3);
    assert_int_equal(buf[10], 1); /* first item LE */
    assert_int_equal(buf[34], 3); /* first type code LE, after the items */
    assert_int_equal(sr_session_encode(&s, buf, 45, &n, &err), SR_ERANGE);
    assert_int_not_equal(sr_session_type_code("purchase", 8), sr_session_type_code("view", 4));
    assert_int_not_equal(sr_session_type_code("", 0), 0);

    sr_arena_t *a = sr_arena_new(4096);
    struct sr_session d;
    assert_int_equal(sr_session_decode(buf, n, a, &d, &err), SR_OK);
    assert_int_equal(d.len, 3);
    assert_int_equal(d.last_ts, -5);
    assert_memory_equal(d.items, items, sizeof items);
    assert_non_null(d.types);
    assert_memory_equal(d.types, types, sizeof types);

    /* A version-1 value (no type codes) still reads: same items, types not recorded; it
     * re-encodes as version 2 with codes 0. */
    uint8_t v1[34];
    v1[0] = 1;
    memcpy(v1 + 1, buf + 1, 33);
    struct sr_session d1;
    assert_int_equal(sr_session_decode(v1, sizeof v1, a, &d1, &err), SR_OK);
    assert_int_equal(d1.len, 3);
    assert_int_equal(d1.last_ts, -5);
    assert_memory_equal(d1.items, items, sizeof items);
    assert_null(d1.types);
    uint8_t re[64];
    size_t rn;
    assert_int_equal(sr_session_encode(&d1, re, sizeof re, &rn, &err), SR_OK);
    assert_int_equal(rn, 46);
    assert_memory_equal(re + 1, v1 + 1, 33);
    for (int i = 34; i < 46; i++)
        assert_int_equal(re[i], 0);
    assert_int_equal(sr_session_decode(v1, 33, a, &d1, &err), SR_EFORMAT);

    /* every strict prefix and one extra byte are rejected by length */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(sr_session_decode(buf, k, a, &d, &err), SR_EFORMAT);
    uint8_t longer[64];
    memcpy(longer, buf, n);
    longer[n] = 0;
    assert_int_equal(sr_session_decode(longer, n + 1, a, &d, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "expected"));

    buf[0] = 9;
    assert_int_equal(sr_session_decode(buf, n, a, &d, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "version 9"));

    /* varint of 6 bytes / count over 32 bits */
    uint8_t bad[16] = { 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
    assert_int_equal(sr_session_decode(bad, 16, a, &d, &err), SR_EFORMAT);
    uint8_t huge[16] = { 1, 0xff, 0xff, 0xff, 0xff, 0x7f };
    assert_int_equal(sr_session_decode(huge, 16, a, &d, &err), SR_EFORMAT);

    /* random garbage never crashes */
    uint64_t r = 42;
    for (int t = 0; t < 20000; t++) {
        uint8_t g[40];
        size_t gl = rng_next(&r) % sizeof g;
        for (size_t i = 0; i < gl; i++)
            g[i] = (uint8_t)rng_next(&r);
        if (gl)
            g[0] = (rng_next(&r) & 1) ? 1 : g[0];
        sr_err_t rc = sr_session_decode(g, gl, a, &d, &err);
        assert_true(rc == SR_OK || rc == SR_EFORMAT);
        if (rc == SR_OK) /* version 1 has no type codes: 4 bytes an item fewer */
            assert_int_equal(sr_session_value_size(&d) - (g[0] == 1 ? 4u * d.len : 0), gl);
        sr_arena_reset(a);
    }
    sr_arena_destroy(a);
}

/* Version 3 is version 2 (items, type codes) followed by the encoder state; a session without
 * state is still written as version 2, and version 1 and 2 values decode without state. */
static void test_codec_v3_encoder_state(void **unused)
{
    (void)unused;
    uint64_t items[2] = { 7, 0x8000000000000001ULL };
    uint32_t types[2] = { sr_session_type_code("view", 4), 0xCAFEF00Du };
    uint8_t aux[200];
    for (size_t i = 0; i < sizeof aux; i++)
        aux[i] = (uint8_t)(i * 37 + 1);
    struct sr_session s = { .items = items, .types = types, .len = 2, .last_ts = 99,
                            .found = true, .aux = aux, .aux_len = sizeof aux };
    size_t want = sr_session_encoded_size(2) + 2 /* varint 200 */ + sizeof aux;
    assert_int_equal(sr_session_value_size(&s), want);
    uint8_t buf[512];
    size_t n;
    struct sr_error err = { 0 };
    assert_int_equal(sr_session_encode(&s, buf, sizeof buf, &n, &err), SR_OK);
    assert_int_equal(n, want);
    assert_int_equal(buf[0], SR_SESSION_VALUE_VERSION);
    assert_int_equal(buf[0], 3);
    assert_int_equal(sr_session_encode(&s, buf, want - 1, &n, &err), SR_ERANGE);
    /* the bytes before the state are exactly the version 2 encoding, but for the version byte */
    struct sr_session nos = s;
    nos.aux = NULL;
    nos.aux_len = 0;
    uint8_t v2[64];
    size_t n2;
    assert_int_equal(sr_session_encode(&nos, v2, sizeof v2, &n2, &err), SR_OK);
    assert_int_equal(n2, sr_session_encoded_size(2));
    assert_int_equal(v2[0], SR_SESSION_VALUE_VERSION_V2);
    assert_memory_equal(buf + 1, v2 + 1, n2 - 1);
    assert_int_equal(buf[n2], 0xC8); /* varint 200 */
    assert_int_equal(buf[n2 + 1], 0x01);
    assert_memory_equal(buf + n2 + 2, aux, sizeof aux);

    sr_arena_t *a = sr_arena_new(4096);
    struct sr_session d;
    assert_int_equal(sr_session_decode(buf, n, a, &d, &err), SR_OK);
    assert_int_equal(d.len, 2);
    assert_int_equal(d.last_ts, 99);
    assert_memory_equal(d.items, items, sizeof items);
    assert_non_null(d.types);
    assert_memory_equal(d.types, types, sizeof types);
    assert_int_equal(d.aux_len, sizeof aux);
    assert_memory_equal(d.aux, aux, sizeof aux);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(sr_session_decode(buf, k, a, &d, &err), SR_EFORMAT);
    buf[n] = 0;
    assert_int_equal(sr_session_decode(buf, n + 1, a, &d, &err), SR_EFORMAT);
    /* a version 3 value with an empty or missing state is malformed (writers use version 2) */
    uint8_t v3e[64];
    memcpy(v3e, v2, n2);
    v3e[0] = SR_SESSION_VALUE_VERSION;
    assert_int_equal(sr_session_decode(v3e, n2, a, &d, &err), SR_EFORMAT);
    v3e[n2] = 0;
    assert_int_equal(sr_session_decode(v3e, n2 + 1, a, &d, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "encoder state"));
    /* version 2 (as written without state) decodes with types, without state */
    assert_int_equal(sr_session_decode(v2, n2, a, &d, &err), SR_OK);
    assert_memory_equal(d.types, types, sizeof types);
    assert_null(d.aux);
    assert_int_equal(d.aux_len, 0);
    /* version 1 (no type codes) decodes without types and state */
    uint8_t v1[64];
    memcpy(v1, v2, n2 - 8);
    v1[0] = SR_SESSION_VALUE_VERSION_V1;
    assert_int_equal(sr_session_decode(v1, n2 - 8, a, &d, &err), SR_OK);
    assert_memory_equal(d.items, items, sizeof items);
    assert_null(d.types);
    assert_null(d.aux);
    assert_int_equal(d.aux_len, 0);
    sr_arena_destroy(a);
}

/* ---- basic operations, both backends ---------------------------------------------------- */

static void basic_ops(const char *backend)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_state_t *st = open_store(backend, dir, 4, 0, -1, 100);
    assert_string_equal(sr_state_backend_name(st), backend);
    sr_arena_t *a = sr_arena_new(1 << 16);
    struct sr_error err = { 0 };

    assert_int_equal(sr_state_applied_offset(st, 0), -1);
    assert_true(sr_state_watermark(st) == INT64_MIN);
    struct sr_session s = get1(st, a, 0, "nobody", NULL);
    assert_false(s.found);
    assert_int_equal(s.len, 0);

    uint64_t items[6] = { 10, 11, 12, 13, 14, 15 };
    sr_state_batch_t *b = sr_state_batch_new(st);
    put1(b, 0, "a", items, 6, 100); /* truncated to the last 4 */
    put1(b, 1, "a", items, 2, 90);  /* same id, other partition: a different key */
    put1(b, 0, "", items, 1, 80);   /* empty id is a valid key */
    assert_int_equal(sr_state_batch_set_offset(b, 0, 7, &err), SR_OK);
    assert_int_equal(sr_state_batch_set_offset(b, 0, 9, &err), SR_OK); /* last wins */
    assert_int_equal(sr_state_batch_size(b), 3);
    commit_now(st, b);

    s = get1(st, a, 0, "a", NULL);
    assert_true(s.found);
    assert_int_equal(s.len, 4);
    assert_memory_equal(s.items, items + 2, 4 * 8);
    assert_int_equal(s.last_ts, 100);
    s = get1(st, a, 1, "a", NULL);
    assert_int_equal(s.len, 2);
    assert_int_equal(s.last_ts, 90);
    s = get1(st, a, 0, "", NULL);
    assert_int_equal(s.len, 1);
    assert_int_equal(sr_state_applied_offset(st, 0), 9);
    assert_int_equal(sr_state_applied_offset(st, 1), -1);
    assert_int_equal(sr_state_watermark(st), 100);

    /* duplicates in one multi_get; a delete */
    b = sr_state_batch_new(st);
    struct sr_state_key k1 = key_of(1, "a");
    assert_int_equal(sr_state_batch_delete(b, &k1, &err), SR_OK);
    commit_now(st, b);
    struct sr_state_key ks[3] = { key_of(0, "a"), key_of(1, "a"), key_of(0, "a") };
    struct sr_session out[3];
    assert_int_equal(sr_state_multi_get(st, 3, ks, NULL, out, a, &err), SR_OK);
    assert_true(out[0].found && out[2].found && !out[1].found);
    assert_memory_equal(out[0].items, out[2].items, 4 * 8);

    /* bad arguments are errors, not crashes */
    struct sr_state_key neg = { -1, 1, "x" };
    b = sr_state_batch_new(st);
    struct sr_session one = { .items = items, .len = 1, .last_ts = 1 };
    assert_int_equal(sr_state_batch_put(b, &neg, &one, &err), SR_EINVAL);
    struct sr_session noitems = { .items = NULL, .len = 2 };
    struct sr_state_key ok = key_of(0, "x");
    assert_int_equal(sr_state_batch_put(b, &ok, &noitems, &err), SR_EINVAL);
    assert_int_equal(sr_state_batch_set_offset(b, 0, -3, &err), SR_EINVAL);
    sr_state_batch_destroy(b);
    assert_int_equal(sr_state_multi_get(st, 1, &neg, NULL, out, a, &err), SR_EINVAL);
    assert_int_equal(sr_state_commit(st, 999, &err), SR_EINVAL);

    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

/* The encoder state rides with the session: put, replaced in a pending batch, read through
 * the overlay, committed, read from the cache and (rocksdb) from disk after a reopen, visited
 * by foreach and staged_foreach, and dropped by a later put without one. */
static int count_aux(void *opaque, const struct sr_state_key *k, const struct sr_session *s)
{
    (void)k;
    *(uint32_t *)opaque += s->aux_len;
    return 0;
}

static int staged_aux(void *opaque, const struct sr_state_key *k, const struct sr_session *s,
                      int64_t applied)
{
    (void)k, (void)applied;
    if (s)
        *(uint32_t *)opaque += s->aux_len;
    return 0;
}

static void encoder_state(const char *backend)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_state_t *st = open_store(backend, dir, 8, 0, 0, 16);
    sr_arena_t *a = sr_arena_new(4096);
    struct sr_error err = { 0 };
    uint64_t items[3] = { 1, 2, 3 };
    uint8_t aux1[5] = { 1, 2, 3, 4, 5 }, aux2[300];
    memset(aux2, 0xAB, sizeof aux2);
    struct sr_state_key k = key_of(3, "s");
    sr_state_batch_t *b = sr_state_batch_new(st);
    struct sr_session v = { .items = items, .len = 3, .last_ts = 10, .aux = aux1, .aux_len = 5 };
    assert_int_equal(sr_state_batch_put(b, &k, &v, &err), SR_OK);
    uint64_t id;
    assert_int_equal(sr_state_stage(st, b, &id, &err), SR_OK);
    struct sr_session r = get1(st, a, 3, "s", NULL);
    assert_int_equal(r.aux_len, 5);
    assert_memory_equal(r.aux, aux1, 5);
    /* the encode op replaces it in the pending batch */
    assert_int_equal(sr_state_stage_set_aux(st, id, &k, aux2, sizeof aux2, &err), SR_OK);
    struct sr_state_key other = key_of(3, "t");
    assert_int_equal(sr_state_stage_set_aux(st, id, &other, aux1, 5, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "no put"));
    assert_int_equal(sr_state_stage_set_aux(st, id + 1, &k, aux1, 5, &err), SR_EINVAL);
    uint32_t seen = 0;
    assert_int_equal(sr_state_staged_foreach(st, id, staged_aux, &seen, &err), SR_OK);
    assert_int_equal(seen, sizeof aux2);
    r = get1(st, a, 3, "s", NULL);
    assert_int_equal(r.aux_len, sizeof aux2);
    assert_memory_equal(r.aux, aux2, sizeof aux2);
    assert_int_equal(sr_state_commit(st, id, &err), SR_OK);
    r = get1(st, a, 3, "s", NULL); /* committed: cache (rocksdb) or map (memory) */
    assert_int_equal(r.len, 3);
    assert_int_equal(r.aux_len, sizeof aux2);
    assert_memory_equal(r.aux, aux2, sizeof aux2);
    seen = 0;
    assert_int_equal(sr_state_partition_foreach(st, 3, count_aux, &seen, &err), SR_OK);
    assert_int_equal(seen, sizeof aux2);
    if (strcmp(backend, "rocksdb") == 0) {
        sr_state_close(st);
        st = open_store(backend, dir, 8, 0, 0, 16);
        r = get1(st, a, 3, "s", NULL); /* from disk */
        assert_int_equal(r.aux_len, sizeof aux2);
        assert_memory_equal(r.aux, aux2, sizeof aux2);
        r = get1(st, a, 3, "s", NULL); /* from the cache it filled */
        assert_int_equal(r.aux_len, sizeof aux2);
        assert_memory_equal(r.aux, aux2, sizeof aux2);
    }
    /* a put without state drops it */
    b = sr_state_batch_new(st);
    put1(b, 3, "s", items, 2, 11);
    commit_now(st, b);
    r = get1(st, a, 3, "s", NULL);
    assert_int_equal(r.len, 2);
    assert_int_equal(r.aux_len, 0);
    assert_null(r.aux);
    sr_arena_destroy(a);
    sr_state_close(st);
    remove_dir(dir);
}

static void test_encoder_state_memory(void **u) { (void)u; encoder_state("memory"); }
static void test_encoder_state_rocksdb(void **u) { (void)u; encoder_state("rocksdb"); }

static void test_basic_memory(void **u) { (void)u; basic_ops("memory"); }
static void test_basic_rocksdb(void **u) { (void)u; basic_ops("rocksdb"); }

static void test_open_errors(void **u)
{
    (void)u;
    struct sr_state_params p;
    sr_state_params_init(&p);
    struct sr_error err = { 0 };
    sr_state_t *st = NULL;
    p.backend = "redis";
    assert_int_equal(sr_state_open(&p, &st, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "redis"));
    p.backend = "rocksdb";
    p.max_len = 0;
    assert_int_equal(sr_state_open(&p, &st, &err), SR_EINVAL);
    p.max_len = 5;
    p.dir = "/proc/definitely/not/writable";
    assert_int_equal(sr_state_open(&p, &st, &err), SR_ESTATE);
    assert_non_null(strstr(err.msg, "/proc/definitely/not/writable"));
    assert_null(st);
    sr_state_close(NULL);

    /* params from config */
    sr_config_t *cfg = sr_config_new();
    assert_int_equal(sr_config_set(cfg, "state.backend", "memory", &err), SR_OK);
    assert_int_equal(sr_config_set(cfg, "session.max_len", "7", &err), SR_OK);
    assert_int_equal(sr_config_set(cfg, "session.ttl.ms", "60000", &err), SR_OK);
    assert_int_equal(sr_config_set(cfg, "state.cache.sessions", "12", &err), SR_OK);
    sr_state_params_init(&p);
    assert_int_equal(sr_state_params_from_config(&p, cfg, &err), SR_OK);
    assert_string_equal(p.backend, "memory");
    assert_int_equal(p.max_len, 7);
    assert_int_equal(p.ttl_ms, 60000);
    assert_int_equal(p.cache_sessions, 12);
    assert_string_equal(p.dir, "./streamrec-state");
    assert_int_equal(sr_config_set(cfg, "session.max_len", "0", &err), SR_OK);
    assert_int_equal(sr_state_params_from_config(&p, cfg, &err), SR_ECONFIG);
    sr_config_destroy(cfg);
}

/* ---- staging overlay ------------------------------------------------------------------- */

static void staging(const char *backend)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_state_t *st = open_store(backend, dir, 8, 0, -1, 100);
    sr_arena_t *a = sr_arena_new(1 << 16);
    struct sr_error err = { 0 };
    uint64_t it[3] = { 1, 2, 3 };

    sr_state_batch_t *b1 = sr_state_batch_new(st);
    put1(b1, 0, "s", it, 1, 10);
    put1(b1, 0, "t", it, 1, 10);
    sr_state_batch_set_offset(b1, 0, 100, &err);
    uint64_t id1, id2, id3;
    assert_int_equal(sr_state_stage(st, b1, &id1, &err), SR_OK);
    assert_int_equal(sr_state_stage(st, b1, &id1, &err), SR_EINVAL); /* twice */
    sr_state_batch_destroy(b1); /* staged: belongs to the store, a no-op */

    /* batch 2 reads batch 1's pending state */
    struct sr_session s = get1(st, a, 0, "s", NULL);
    assert_true(s.found);
    assert_int_equal(s.len, 1);
    assert_int_equal(sr_state_applied_offset(st, 0), -1); /* offsets: committed only */

    sr_state_batch_t *b2 = sr_state_batch_new(st);
    put1(b2, 0, "s", it, 2, 20);
    struct sr_state_key kt = key_of(0, "t");
    sr_state_batch_delete(b2, &kt, &err);
    sr_state_batch_set_offset(b2, 0, 200, &err);
    assert_int_equal(sr_state_stage(st, b2, &id2, &err), SR_OK);
    assert_int_equal(id2, id1 + 1);
    sr_state_batch_t *b3 = sr_state_batch_new(st);
    put1(b3, 0, "s", it, 3, 30);
    sr_state_batch_set_offset(b3, 0, 300, &err);
    assert_int_equal(sr_state_stage(st, b3, &id3, &err), SR_OK);
    assert_int_equal(sr_state_pending(st), 3);

    s = get1(st, a, 0, "s", NULL);
    assert_int_equal(s.len, 3); /* newest stage wins */
    s = get1(st, a, 0, "t", NULL);
    assert_false(s.found); /* pending delete hides the pending put */

    /* commit batch 1 only */
    assert_int_equal(sr_state_commit(st, id1, &err), SR_OK);
    assert_int_equal(sr_state_pending(st), 2);
    assert_int_equal(sr_state_applied_offset(st, 0), 100);
    assert_int_equal(get1(st, a, 0, "s", NULL).len, 3);
    assert_int_equal(sr_state_commit(st, id1, &err), SR_OK); /* idempotent */

    /* batch 2 failed downstream: discard it and everything after it */
    sr_state_discard(st, id2);
    assert_int_equal(sr_state_pending(st), 0);
    s = get1(st, a, 0, "s", NULL);
    assert_int_equal(s.len, 1);
    assert_int_equal(s.last_ts, 10);
    assert_true(get1(st, a, 0, "t", NULL).found);
    assert_int_equal(sr_state_applied_offset(st, 0), 100);
    assert_int_equal(sr_state_commit(st, id3, &err), SR_OK); /* nothing pending: no-op */
    assert_int_equal(sr_state_applied_offset(st, 0), 100);

    /* commit several at once */
    uint64_t ids[4];
    for (int i = 0; i < 4; i++) {
        sr_state_batch_t *b = sr_state_batch_new(st);
        put1(b, 0, "s", it, 1 + (i % 3), 40 + i);
        sr_state_batch_set_offset(b, 0, 400 + i, &err);
        sr_state_batch_set_offset(b, 1, 10 + i, &err);
        assert_int_equal(sr_state_stage(st, b, &ids[i], &err), SR_OK);
    }
    assert_int_equal(sr_state_commit(st, ids[2], &err), SR_OK);
    assert_int_equal(sr_state_applied_offset(st, 0), 402);
    assert_int_equal(sr_state_applied_offset(st, 1), 12);
    assert_int_equal(sr_state_watermark(st), 42);
    assert_int_equal(sr_state_pending(st), 1);

    if (strcmp(backend, "rocksdb") == 0) {
        /* close drops the pending batch 4: reopen shows batches 1..3 of this round */
        sr_state_close(st);
        st = open_store(backend, dir, 8, 0, -1, 100);
        assert_int_equal(sr_state_pending(st), 0);
        assert_int_equal(sr_state_applied_offset(st, 0), 402);
        assert_int_equal(sr_state_applied_offset(st, 1), 12);
        assert_int_equal(sr_state_watermark(st), 42);
        s = get1(st, a, 0, "s", NULL);
        assert_int_equal(s.len, 3);
        assert_int_equal(s.last_ts, 42);
    }
    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

static void test_staging_memory(void **u) { (void)u; staging("memory"); }
static void test_staging_rocksdb(void **u) { (void)u; staging("rocksdb"); }

/* ---- persistence and atomicity ---------------------------------------------------------- */

/* A state directory the store creates is its owner's alone (0700): sessions are user data. */
static void test_dir_private(void **u)
{
    (void)u;
    char parent[64], dir[96];
    make_dir(parent, sizeof parent);
    snprintf(dir, sizeof dir, "%s/state", parent);
    sr_state_t *st = open_store("rocksdb", dir, 5, 0, -1, 10);
    struct stat dir_st;
    assert_int_equal(stat(dir, &dir_st), 0);
    assert_int_equal(dir_st.st_mode & 0777, 0700);
    sr_state_close(st);
    remove_dir(dir);
    rmdir(parent);
}

static void test_reopen_persists(void **u)
{
    (void)u;
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_arena_t *a = sr_arena_new(1 << 16);
    struct sr_error err = { 0 };
    sr_state_t *st = open_store("rocksdb", dir, 5, 0, -1, 10);
    char id[32];
    for (int round = 0; round < 3; round++) {
        sr_state_batch_t *b = sr_state_batch_new(st);
        for (int i = 0; i < 300; i++) {
            uint64_t it[5] = { (uint64_t)i, (uint64_t)round, 7, 8, 9 };
            snprintf(id, sizeof id, "sess-%d", i);
            put1(b, i % 4, id, it, 1 + (uint32_t)(i % 5), 1000 * round + i);
        }
        for (int p = 0; p < 4; p++)
            sr_state_batch_set_offset(b, p, 1000 * round + p, &err);
        commit_now(st, b);
    }
    sr_state_close(st);

    st = open_store("rocksdb", dir, 5, 0, -1, 10);
    for (int p = 0; p < 4; p++)
        assert_int_equal(sr_state_applied_offset(st, p), 2000 + p);
    assert_int_equal(sr_state_applied_offset(st, 4), -1);
    assert_int_equal(sr_state_watermark(st), 2299);
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "sess-%d", i);
        struct sr_session s = get1(st, a, i % 4, id, NULL);
        assert_true(s.found);
        assert_int_equal(s.len, 1 + i % 5);
        assert_int_equal(s.items[0], (uint64_t)i);
        if (s.len > 1)
            assert_int_equal(s.items[1], 2);
        assert_int_equal(s.last_ts, 2000 + i);
        assert_false(get1(st, a, (i + 1) % 4, id, NULL).found);
    }
    uint64_t c = sr_state_count(st);
    assert_true(c >= 150 && c <= 600); /* an estimate */
    sr_state_close(st);

    /* a store opened with a smaller max_len keeps the newest items of old values */
    st = open_store("rocksdb", dir, 2, 0, -1, 10);
    struct sr_session s = get1(st, a, 4 % 4, "sess-4", NULL);
    assert_int_equal(s.len, 2);
    assert_int_equal(s.items[0], 8);
    assert_int_equal(s.items[1], 9);
    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

static void test_offsets_commit_with_sessions(void **u)
{
    (void)u;
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_arena_t *a = sr_arena_new(1 << 16);
    struct sr_error err = { 0 };
    uint64_t it[1] = { 5 };
    sr_state_t *st = open_store("rocksdb", dir, 5, 0, -1, 10);
    sr_state_batch_t *b = sr_state_batch_new(st);
    put1(b, 3, "x", it, 1, 50);
    sr_state_batch_set_offset(b, 3, 41, &err);
    uint64_t id;
    assert_int_equal(sr_state_stage(st, b, &id, &err), SR_OK);
    sr_state_close(st); /* staged, never committed: neither the session nor the offset */
    st = open_store("rocksdb", dir, 5, 0, -1, 10);
    assert_int_equal(sr_state_applied_offset(st, 3), -1);
    assert_false(get1(st, a, 3, "x", NULL).found);

    b = sr_state_batch_new(st);
    put1(b, 3, "x", it, 1, 50);
    sr_state_batch_set_offset(b, 3, 41, &err);
    assert_int_equal(sr_state_stage(st, b, &id, &err), SR_OK);
    assert_int_equal(sr_state_commit(st, id, &err), SR_OK);
    sr_state_close(st); /* committed: both */

    /* the raw store holds the offset in the meta family and the session under its
     * big-endian partition prefix, written by the same WriteBatch */
    rocksdb_options_t *o = rocksdb_options_create();
    const char *names[2] = { "default", "meta" };
    const rocksdb_options_t *cfo[2] = { o, o };
    rocksdb_column_family_handle_t *cf[2];
    char *e = NULL;
    rocksdb_t *db = rocksdb_open_column_families(o, dir, 2, names, cfo, cf, &e);
    assert_null(e);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    size_t vl;
    char *v = rocksdb_get_cf(db, ro, cf[0], "\0\0\0\3x", 5, &vl, &e);
    assert_null(e);
    assert_non_null(v);
    assert_int_equal(vl, sr_session_encoded_size(1));
    rocksdb_free(v);
    v = rocksdb_get_cf(db, ro, cf[1], "o\0\0\0\3", 5, &vl, &e);
    assert_non_null(v);
    assert_int_equal(vl, 8);
    assert_int_equal((uint8_t)v[0], 41);
    rocksdb_free(v);
    rocksdb_readoptions_destroy(ro);
    rocksdb_column_family_handle_destroy(cf[0]);
    rocksdb_column_family_handle_destroy(cf[1]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);

    st = open_store("rocksdb", dir, 5, 0, -1, 10);
    assert_int_equal(sr_state_applied_offset(st, 3), 41);
    assert_true(get1(st, a, 3, "x", NULL).found);
    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

struct collect {
    int n;
    char ids[64][16];
};

static int collect_fn(void *opaque, const struct sr_state_key *k, const struct sr_session *s)
{
    struct collect *c = opaque;
    (void)s;
    if (c->n < 64)
        snprintf(c->ids[c->n++], 16, "%.*s", (int)k->len, k->id);
    return 0;
}

static bool collected(const struct collect *c, const char *id)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->ids[i], id))
            return true;
    return false;
}

/* A value corrupted on disk is refused with a message naming the key and the reason. */
static void test_corrupt_value_rejected(void **u)
{
    (void)u;
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_arena_t *a = sr_arena_new(1 << 16);
    struct sr_error err = { 0 };
    sr_state_t *st = open_store("rocksdb", dir, 5, 0, -1, 10);
    sr_state_close(st);

    rocksdb_options_t *o = rocksdb_options_create();
    const char *names[2] = { "default", "meta" };
    const rocksdb_options_t *cfo[2] = { o, o };
    rocksdb_column_family_handle_t *cf[2];
    char *e = NULL;
    rocksdb_t *db = rocksdb_open_column_families(o, dir, 2, names, cfo, cf, &e);
    assert_null(e);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(db, wo, cf[0], "\0\0\0\1bad-version", 15, "\x07\x00\0\0\0\0\0\0\0\0", 10, &e);
    rocksdb_put_cf(db, wo, cf[0], "\0\0\0\1truncated", 13, "\x01\x02\0\0\0\0\0\0\0\0", 10, &e);
    assert_null(e);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_column_family_handle_destroy(cf[0]);
    rocksdb_column_family_handle_destroy(cf[1]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);

    st = open_store("rocksdb", dir, 5, 0, -1, 10);
    struct sr_state_key k = key_of(1, "bad-version");
    struct sr_session s;
    assert_int_equal(sr_state_multi_get(st, 1, &k, NULL, &s, a, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "bad-version"));
    assert_non_null(strstr(err.msg, "partition 1"));
    assert_non_null(strstr(err.msg, "version 7"));
    k = key_of(1, "truncated");
    assert_int_equal(sr_state_multi_get(st, 1, &k, NULL, &s, a, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_non_null(strstr(err.msg, "bytes for 2 items"));
    /* foreach stops at the bad value with the same error; a good key still reads */
    struct collect c = { 0 };
    assert_int_equal(sr_state_partition_foreach(st, 1, collect_fn, &c, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "partition 1"));
    assert_false(get1(st, a, 0, "fine", NULL).found);
    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

/* ---- cache -------------------------------------------------------------------------------- */

/* Cache of 16 sessions over a working set of 500: reads must always equal the last commit. */
static void test_cache_eviction(void **u)
{
    (void)u;
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_arena_t *a = sr_arena_new(1 << 20);
    struct sr_error err = { 0 };
    sr_state_t *st = open_store("rocksdb", dir, 4, 0, -1, 16);
    enum { N = 500 };
    static uint64_t truth[N][2];
    uint64_t r = 7;
    char ids[N][16];
    struct sr_state_key keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "k%d", i);
        keys[i] = key_of(i % 3, ids[i]);
    }
    for (int round = 0; round < 20; round++) {
        sr_state_batch_t *b = sr_state_batch_new(st);
        for (int j = 0; j < 60; j++) {
            int i = (int)(rng_next(&r) % N);
            /* skewed: half of the writes hit 10 hot keys */
            if (j % 2)
                i = (int)(rng_next(&r) % 10);
            uint64_t it[2] = { rng_next(&r), rng_next(&r) };
            assert_int_equal(sr_state_batch_put(b, &keys[i],
                                                &(struct sr_session){ .items = it, .len = 2,
                                                                      .last_ts = round },
                                                &err),
                             SR_OK);
            truth[i][0] = it[0];
            truth[i][1] = it[1];
        }
        commit_now(st, b);
        /* read everything in random-sized multi_gets, hot keys repeatedly */
        for (int pass = 0; pass < 3; pass++) {
            size_t off = 0;
            while (off < N) {
                size_t n = 1 + rng_next(&r) % 64;
                if (off + n > N)
                    n = N - off;
                struct sr_session out[64];
                assert_int_equal(sr_state_multi_get(st, n, keys + off, NULL, out, a, &err),
                                 SR_OK);
                for (size_t j = 0; j < n; j++) {
                    size_t i = off + j;
                    if (truth[i][0] || truth[i][1]) {
                        assert_true(out[j].found);
                        assert_int_equal(out[j].len, 2);
                        assert_int_equal(out[j].items[0], truth[i][0]);
                        assert_int_equal(out[j].items[1], truth[i][1]);
                    } else {
                        assert_false(out[j].found);
                    }
                }
                off += n;
                sr_arena_reset(a);
            }
        }
    }
    /* evicting a partition changes nothing visible */
    sr_state_partition_evict(st, 1);
    for (int i = 0; i < N; i++) {
        struct sr_session s;
        assert_int_equal(sr_state_multi_get(st, 1, &keys[i], NULL, &s, a, &err), SR_OK);
        assert_int_equal(s.found, truth[i][0] || truth[i][1]);
        if (s.found)
            assert_int_equal(s.items[1], truth[i][1]);
    }
    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

/* ---- TTL ---------------------------------------------------------------------------------- */

static void ttl_on_read(const char *backend)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    sr_arena_t *a = sr_arena_new(1 << 16);
    sr_state_t *st = open_store(backend, dir, 4, 1000, -1, 10);
    uint64_t it[2] = { 1, 2 };
    sr_state_batch_t *b = sr_state_batch_new(st);
    put1(b, 0, "s", it, 2, 5000);
    commit_now(st, b);
    int64_t t = 6000; /* exactly ttl later: still live */
    struct sr_session s = get1(st, a, 0, "s", &t);
    assert_true(s.found);
    assert_false(s.expired);
    assert_int_equal(s.len, 2);
    t = 6001; /* one ms past: starts empty */
    s = get1(st, a, 0, "s", &t);
    assert_false(s.found);
    assert_true(s.expired);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.last_ts, 5000);
    t = 4000; /* an earlier event (out of order) is not "later than ttl" */
    assert_true(get1(st, a, 0, "s", &t).found);
    assert_true(get1(st, a, 0, "s", NULL).found); /* no event time: no TTL check */
    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

static void test_ttl_read_memory(void **u) { (void)u; ttl_on_read("memory"); }
static void test_ttl_read_rocksdb(void **u) { (void)u; ttl_on_read("rocksdb"); }

/* ttl 1000, grace 500: sessions with last_ts < watermark - 1500 go at compaction. */
static void test_ttl_compaction_filter(void **u)
{
    (void)u;
    char dir[64];
    make_dir(dir, sizeof dir);
    struct sr_error err = { 0 };
    sr_state_t *st = open_store("rocksdb", dir, 4, 1000, 500, 10);
    uint64_t it[1] = { 9 };
    sr_state_batch_t *b = sr_state_batch_new(st);
    put1(b, 0, "old", it, 1, 1000);
    put1(b, 0, "edge", it, 1, 1500);  /* == cutoff: kept */
    put1(b, 0, "young", it, 1, 2500);
    put1(b, 1, "old2", it, 1, 100);
    commit_now(st, b);
    sr_state_close(st); /* flushed and compacted later in a fresh process: the watermark
                           comes back from the meta family */
    st = open_store("rocksdb", dir, 4, 1000, 500, 10);
    assert_int_equal(sr_state_compact(st, &err), SR_OK);
    struct collect c = { 0 };
    assert_int_equal(sr_state_partition_foreach(st, 0, collect_fn, &c, &err), SR_OK);
    assert_int_equal(c.n, 3); /* watermark 2500: cutoff 1000, nothing below it yet */

    b = sr_state_batch_new(st);
    put1(b, 2, "clock", it, 1, 3000); /* watermark 3000: cutoff 1500 */
    commit_now(st, b);
    assert_int_equal(sr_state_compact(st, &err), SR_OK);
    memset(&c, 0, sizeof c);
    assert_int_equal(sr_state_partition_foreach(st, 0, collect_fn, &c, &err), SR_OK);
    assert_int_equal(c.n, 2);
    assert_true(collected(&c, "edge") && collected(&c, "young") && !collected(&c, "old"));
    memset(&c, 0, sizeof c);
    assert_int_equal(sr_state_partition_foreach(st, 1, collect_fn, &c, &err), SR_OK);
    assert_int_equal(c.n, 0);

    /* sr_state_expire raises the filter's watermark without a commit */
    assert_int_equal(sr_state_expire(st, 3999, &err), SR_OK); /* cutoff 2499 */
    assert_int_equal(sr_state_compact(st, &err), SR_OK);
    memset(&c, 0, sizeof c);
    assert_int_equal(sr_state_partition_foreach(st, 0, collect_fn, &c, &err), SR_OK);
    assert_int_equal(c.n, 1);
    assert_true(collected(&c, "young"));
    sr_state_close(st);
    remove_dir(dir);
}

static void test_ttl_memory_sweep(void **u)
{
    (void)u;
    struct sr_error err = { 0 };
    sr_state_t *st = open_store("memory", NULL, 4, 1000, 0, 0);
    uint64_t it[1] = { 9 };
    sr_state_batch_t *b = sr_state_batch_new(st);
    put1(b, 0, "old", it, 1, 1000);
    put1(b, 0, "young", it, 1, 2500);
    commit_now(st, b);
    assert_int_equal(sr_state_count(st), 2);
    assert_int_equal(sr_state_expire(st, 2000, &err), SR_OK); /* cutoff 1000: keeps both */
    assert_int_equal(sr_state_count(st), 2);
    assert_int_equal(sr_state_expire(st, 2001, &err), SR_OK);
    assert_int_equal(sr_state_count(st), 1);
    sr_arena_t *a = sr_arena_new(4096);
    assert_false(get1(st, a, 0, "old", NULL).found);
    assert_true(get1(st, a, 0, "young", NULL).found);
    sr_arena_destroy(a);
    sr_state_close(st);
}

/* ---- partitions --------------------------------------------------------------------------- */

static void partitions(const char *backend)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    struct sr_error err = { 0 };
    sr_arena_t *a = sr_arena_new(1 << 16);
    sr_state_t *st = open_store(backend, dir, 4, 0, -1, 100);
    uint64_t it[1] = { 3 };
    sr_state_batch_t *b = sr_state_batch_new(st);
    char id[16];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "p%d", i);
        put1(b, i % 3, id, it, 1, i);
    }
    put1(b, 255, "hi", it, 1, 0); /* partition 255 vs 256: no prefix confusion */
    put1(b, 256, "hi", it, 1, 0);
    for (int p = 0; p < 3; p++)
        sr_state_batch_set_offset(b, p, 10 + p, &err);
    commit_now(st, b);

    struct collect c = { 0 };
    assert_int_equal(sr_state_partition_foreach(st, 1, collect_fn, &c, &err), SR_OK);
    assert_int_equal(c.n, 10);
    for (int i = 1; i < 30; i += 3) {
        snprintf(id, sizeof id, "p%d", i);
        assert_true(collected(&c, id));
    }
    memset(&c, 0, sizeof c);
    assert_int_equal(sr_state_partition_foreach(st, 255, collect_fn, &c, &err), SR_OK);
    assert_int_equal(c.n, 1);

    sr_state_partition_evict(st, 1); /* committed state is still there */
    assert_true(get1(st, a, 1, "p1", NULL).found);

    assert_int_equal(sr_state_partition_drop(st, 1, &err), SR_OK);
    assert_false(get1(st, a, 1, "p1", NULL).found);
    assert_true(get1(st, a, 0, "p0", NULL).found);
    assert_true(get1(st, a, 2, "p2", NULL).found);
    assert_int_equal(sr_state_applied_offset(st, 1), -1);
    assert_int_equal(sr_state_applied_offset(st, 2), 12);
    memset(&c, 0, sizeof c);
    assert_int_equal(sr_state_partition_foreach(st, 1, collect_fn, &c, &err), SR_OK);
    assert_int_equal(c.n, 0);
    if (!strcmp(backend, "rocksdb")) {
        sr_state_close(st);
        st = open_store(backend, dir, 4, 0, -1, 100);
        assert_int_equal(sr_state_applied_offset(st, 1), -1);
        assert_int_equal(sr_state_applied_offset(st, 0), 10);
        assert_false(get1(st, a, 1, "p4", NULL).found);
        assert_true(get1(st, a, 0, "p3", NULL).found);
        assert_true(get1(st, a, 256, "hi", NULL).found);
    } else {
        assert_int_equal(sr_state_count(st), 22);
    }
    sr_state_close(st);
    sr_arena_destroy(a);
    remove_dir(dir);
}

static void test_partitions_memory(void **u) { (void)u; partitions("memory"); }
static void test_partitions_rocksdb(void **u) { (void)u; partitions("rocksdb"); }

/* ---- property test: memory == rocksdb == model ------------------------------------------- */

enum { P_PARTS = 3, P_IDS = 40, P_KEYS = P_PARTS * P_IDS, P_MAXLEN = 5, P_TTL = 400 };

struct msess {
    bool found;
    uint32_t len;
    int64_t ts;
    uint64_t items[P_MAXLEN];
};

struct mop {
    int key;
    bool del;
    struct msess s;
};

struct mbatch {
    uint64_t id_m, id_r; /* ids restart at 1 when a store reopens */
    int nops;
    struct mop ops[40];
    int noffs;
    int32_t offpart[4];
    int64_t off[4];
};

struct model {
    struct msess committed[P_KEYS], visible[P_KEYS];
    int64_t offs[P_PARTS];
    struct mbatch pending[64];
    int npending;
};

static void model_recompute_visible(struct model *m)
{
    memcpy(m->visible, m->committed, sizeof m->visible);
    for (int b = 0; b < m->npending; b++)
        for (int i = 0; i < m->pending[b].nops; i++) {
            const struct mop *op = &m->pending[b].ops[i];
            if (op->del)
                m->visible[op->key] = (struct msess){ 0 };
            else
                m->visible[op->key] = op->s;
        }
}

static void compare_all(sr_state_t *mem, sr_state_t *rdb, const struct model *m,
                        const struct sr_state_key *keys, int64_t now, sr_arena_t *a,
                        uint64_t *r)
{
    struct sr_error err = { 0 };
    int64_t ts[P_KEYS];
    for (int i = 0; i < P_KEYS; i++)
        ts[i] = now - (int64_t)(rng_next(r) % 200);
    struct sr_session om[P_KEYS], orr[P_KEYS];
    if (sr_state_multi_get(mem, P_KEYS, keys, ts, om, a, &err))
        fail_msg("memory multi_get: %s", err.msg);
    if (sr_state_multi_get(rdb, P_KEYS, keys, ts, orr, a, &err))
        fail_msg("rocksdb multi_get: %s", err.msg);
    for (int i = 0; i < P_KEYS; i++) {
        const struct msess *e = &m->visible[i];
        bool expired = e->found && ts[i] - e->ts > P_TTL;
        bool found = e->found && !expired;
        const struct sr_session *x[2] = { &om[i], &orr[i] };
        for (int k = 0; k < 2; k++) {
            if (x[k]->found != found || x[k]->expired != expired)
                fail_msg("key %d %s: found %d/%d expired %d/%d", i, k ? "rocksdb" : "memory",
                         x[k]->found, found, x[k]->expired, expired);
            if (found) {
                assert_int_equal(x[k]->len, e->len);
                assert_int_equal(x[k]->last_ts, e->ts);
                if (e->len)
                    assert_memory_equal(x[k]->items, e->items, e->len * 8);
            }
        }
    }
    for (int p = 0; p < P_PARTS; p++) {
        assert_int_equal(sr_state_applied_offset(mem, p), m->offs[p]);
        assert_int_equal(sr_state_applied_offset(rdb, p), m->offs[p]);
    }
    assert_int_equal(sr_state_watermark(mem), sr_state_watermark(rdb));
    assert_int_equal(sr_state_pending(mem), (size_t)m->npending);
    assert_int_equal(sr_state_pending(rdb), (size_t)m->npending);
    sr_arena_reset(a);
}

static void test_property_memory_rocksdb_model(void **u)
{
    (void)u;
    char dir[64];
    make_dir(dir, sizeof dir);
    struct sr_error err = { 0 };
    sr_arena_t *a = sr_arena_new(1 << 20);
    /* grace huge: no compaction removal interferes; cache 16 < 120 keys */
    sr_state_t *mem = open_store("memory", NULL, P_MAXLEN, P_TTL, INT64_MAX / 4, 0);
    sr_state_t *rdb = open_store("rocksdb", dir, P_MAXLEN, P_TTL, INT64_MAX / 4, 16);
    static struct model m;
    memset(&m, 0, sizeof m);
    for (int p = 0; p < P_PARTS; p++)
        m.offs[p] = -1;
    static char ids[P_KEYS][16];
    struct sr_state_key keys[P_KEYS];
    for (int i = 0; i < P_KEYS; i++) {
        snprintf(ids[i], sizeof ids[i], "u%d", i % P_IDS);
        keys[i] = key_of(i / P_IDS, ids[i]);
    }
    uint64_t r = 0x9E3779B97F4A7C15ULL;
    int64_t now = 1000, next_off = 0;

    for (int step = 0; step < 1500; step++) {
        unsigned what = (unsigned)(rng_next(&r) % 100);
        if (what < 45 && m.npending < 60) {
            /* a micro-batch: read, update, stage in both stores and the model */
            struct mbatch *mb = &m.pending[m.npending];
            memset(mb, 0, sizeof *mb);
            mb->nops = 1 + (int)(rng_next(&r) % 40);
            sr_state_batch_t *bm = sr_state_batch_new(mem), *br = sr_state_batch_new(rdb);
            for (int i = 0; i < mb->nops; i++) {
                struct mop *op = &mb->ops[i];
                op->key = (int)(rng_next(&r) % P_KEYS);
                now += (int64_t)(rng_next(&r) % 30);
                int64_t ev = now;
                struct sr_session cur;
                assert_int_equal(sr_state_multi_get(mem, 1, &keys[op->key], &ev, &cur, a, &err),
                                 SR_OK);
                op->del = rng_next(&r) % 10 == 0;
                if (op->del) {
                    assert_int_equal(sr_state_batch_delete(bm, &keys[op->key], &err), SR_OK);
                    assert_int_equal(sr_state_batch_delete(br, &keys[op->key], &err), SR_OK);
                    m.visible[op->key] = (struct msess){ 0 };
                    continue;
                }
                uint64_t buf[P_MAXLEN + 3];
                uint32_t n = cur.len;
                if (n)
                    memcpy(buf, cur.items, n * 8);
                uint32_t add = 1 + (uint32_t)(rng_next(&r) % 3);
                for (uint32_t j = 0; j < add; j++)
                    buf[n++] = rng_next(&r) % 1000;
                struct sr_session ns = { .items = buf, .len = n, .last_ts = ev };
                assert_int_equal(sr_state_batch_put(bm, &keys[op->key], &ns, &err), SR_OK);
                assert_int_equal(sr_state_batch_put(br, &keys[op->key], &ns, &err), SR_OK);
                uint32_t keep = n > P_MAXLEN ? P_MAXLEN : n;
                op->s = (struct msess){ .found = true, .len = keep, .ts = ev };
                memcpy(op->s.items, buf + (n - keep), keep * 8);
                m.visible[op->key] = op->s;
                sr_arena_reset(a);
            }
            mb->noffs = 1 + (int)(rng_next(&r) % 3);
            for (int j = 0; j < mb->noffs; j++) {
                mb->offpart[j] = (int32_t)(rng_next(&r) % P_PARTS);
                mb->off[j] = next_off++;
                sr_state_batch_set_offset(bm, mb->offpart[j], mb->off[j], &err);
                sr_state_batch_set_offset(br, mb->offpart[j], mb->off[j], &err);
            }
            uint64_t idm, idr;
            assert_int_equal(sr_state_stage(mem, bm, &idm, &err), SR_OK);
            assert_int_equal(sr_state_stage(rdb, br, &idr, &err), SR_OK);
            mb->id_m = idm;
            mb->id_r = idr;
            m.npending++;
        } else if (what < 75 && m.npending) {
            /* commit through a random pending batch */
            int upto = (int)(rng_next(&r) % (uint64_t)m.npending);
            assert_int_equal(sr_state_commit(mem, m.pending[upto].id_m, &err), SR_OK);
            if (sr_state_commit(rdb, m.pending[upto].id_r, &err))
                fail_msg("commit: %s", err.msg);
            for (int b = 0; b <= upto; b++) {
                struct mbatch *mb = &m.pending[b];
                for (int i = 0; i < mb->nops; i++)
                    m.committed[mb->ops[i].key] =
                        mb->ops[i].del ? (struct msess){ 0 } : mb->ops[i].s;
                for (int j = 0; j < mb->noffs; j++)
                    m.offs[mb->offpart[j]] = mb->off[j];
            }
            m.npending -= upto + 1;
            memmove(m.pending, m.pending + upto + 1, (size_t)m.npending * sizeof m.pending[0]);
        } else if (what < 82 && m.npending) {
            /* discard the newest few */
            int from = (int)(rng_next(&r) % (uint64_t)m.npending);
            sr_state_discard(mem, m.pending[from].id_m);
            sr_state_discard(rdb, m.pending[from].id_r);
            m.npending = from;
            model_recompute_visible(&m);
        } else if (what < 86 && rng_next(&r) % 3 == 0) {
            /* restart (~1.3%: a RocksDB open/close costs tens of ms on a loaded machine):
             * rocksdb reopens (pending lost), memory drops its pending too */
            sr_state_close(rdb);
            rdb = open_store("rocksdb", dir, P_MAXLEN, P_TTL, INT64_MAX / 4, 16);
            if (m.npending)
                sr_state_discard(mem, m.pending[0].id_m);
            m.npending = 0;
            model_recompute_visible(&m);
        } else if (what < 90) {
            sr_state_partition_evict(rdb, (int32_t)(rng_next(&r) % P_PARTS));
        }
        compare_all(mem, rdb, &m, keys, now, a, &r);
    }
    uint64_t live = 0;
    for (int i = 0; i < P_KEYS; i++)
        live += m.committed[i].found;
    assert_int_equal(sr_state_count(mem), live);
    sr_state_close(mem);
    sr_state_close(rdb);
    sr_arena_destroy(a);
    remove_dir(dir);
}

int main(void)
{
    sr_log_set_level(SR_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip_and_rejects),
        cmocka_unit_test(test_codec_v3_encoder_state),
        cmocka_unit_test(test_encoder_state_memory),
        cmocka_unit_test(test_encoder_state_rocksdb),
        cmocka_unit_test(test_basic_memory),
        cmocka_unit_test(test_dir_private),
        cmocka_unit_test(test_basic_rocksdb),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_staging_memory),
        cmocka_unit_test(test_staging_rocksdb),
        cmocka_unit_test(test_reopen_persists),
        cmocka_unit_test(test_offsets_commit_with_sessions),
        cmocka_unit_test(test_corrupt_value_rejected),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_ttl_read_memory),
        cmocka_unit_test(test_ttl_read_rocksdb),
        cmocka_unit_test(test_ttl_compaction_filter),
        cmocka_unit_test(test_ttl_memory_sweep),
        cmocka_unit_test(test_partitions_memory),
        cmocka_unit_test(test_partitions_rocksdb),
        cmocka_unit_test(test_property_memory_rocksdb_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
