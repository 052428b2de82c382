/* test_state_crash.c — SIGKILL crash test of the RocksDB store (DESIGN §8). A forked writer
 * applies a deterministic stream of micro-batches (read sessions with MultiGet, append items,
 * delete some, set applied offsets; staged in groups of three and committed as one write) and
 * is SIGKILLed at a random moment. The parent reopens the store, reads the applied offset K of
 * partition 0 (= last committed batch) and checks the store equals, key for key and offset for
 * offset, an in-memory replay of batches 0..K — the state after a whole number of batches.
 * The next round resumes the writer from K+1 on the same directory, so recovery is followed by
 * more writing and another kill. The kill delays come from a seed printed for reproduction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sr_state.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { PARTS = 4, IDS = 600, KEYS = PARTS * IDS, MAXLEN = 8, GROUP = 3, ROUNDS = 6 };

static char g_ids[KEYS][16];
static struct sr_state_key g_keys[KEYS];

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static sr_state_t *open_store(const char *backend, const char *dir, struct sr_error *err)
{
    struct sr_state_params p;
    sr_state_params_init(&p);
    p.backend = backend;
    p.dir = dir;
    p.max_len = MAXLEN;
    p.ttl_ms = 0;
    p.cache_sessions = 64; /* far below the working set */
    sr_state_t *st = NULL;
    return sr_state_open(&p, &st, err) ? NULL : st;
}

/* Batch k: a deterministic function of k and of the state it reads. Batches are staged and
 * committed GROUP at a time, so a committed prefix always ends at k % GROUP == GROUP - 1. */
static sr_err_t run_batch(sr_state_t *st, int64_t k, sr_arena_t *a, struct sr_error *err)
{
    uint64_t rs = (uint64_t)k * 0x2545F4914F6CDD1DULL + 1;
    int n = 20 + (int)(splitmix(&rs) % 60);
    struct sr_state_key keys[80];
    int idx[80];
    int m = 0;
    for (int i = 0; i < n; i++) { /* distinct keys per batch */
        int x = (int)(splitmix(&rs) % KEYS);
        bool dup = false;
        for (int j = 0; j < m; j++)
            dup |= idx[j] == x;
        if (!dup) {
            idx[m] = x;
            keys[m++] = g_keys[x];
        }
    }
    struct sr_session cur[80];
    sr_err_t rc = sr_state_multi_get(st, (size_t)m, keys, NULL, cur, a, err);
    if (rc)
        return rc;
    sr_state_batch_t *b = sr_state_batch_new(st);
    if (!b)
        return sr_error_set(err, SR_ENOMEM, "batch");
    for (int i = 0; i < m && !rc; i++) {
        if (splitmix(&rs) % 12 == 0) {
            rc = sr_state_batch_delete(b, &keys[i], err);
            continue;
        }
        uint64_t items[MAXLEN + 3];
        uint32_t len = cur[i].len;
        if (len)
            memcpy(items, cur[i].items, (size_t)len * 8);
        uint32_t add = 1 + (uint32_t)(splitmix(&rs) % 3);
        for (uint32_t j = 0; j < add; j++)
            items[len++] = splitmix(&rs);
        struct sr_session s = { .items = items, .len = len, .last_ts = k * 100 + i };
        rc = sr_state_batch_put(b, &keys[i], &s, err);
    }
    if (!rc)
        rc = sr_state_batch_set_offset(b, 0, k, err);
    if (!rc)
        rc = sr_state_batch_set_offset(b, 1 + (int32_t)(k % 3), k * 7, err);
    if (rc) {
        sr_state_batch_destroy(b);
        return rc;
    }
    uint64_t id;
    if ((rc = sr_state_stage(st, b, &id, err))) {
        sr_state_batch_destroy(b);
        return rc;
    }
    sr_arena_reset(a);
    if (k % GROUP == GROUP - 1)
        rc = sr_state_commit(st, id, err);
    return rc;
}

/* The child: resume after the applied offset and write until killed (or a generous cap). */
static void writer(const char *dir, int ready_fd)
{
    struct sr_error err = { 0 };
    sr_state_t *st = open_store("rocksdb", dir, &err);
    sr_arena_t *a = sr_arena_new(1 << 16);
    if (!st || !a)
        _exit(3);
    int64_t k = sr_state_applied_offset(st, 0) + 1;
    if (write(ready_fd, "r", 1) != 1)
        _exit(4);
    close(ready_fd);
    for (int64_t end = k + 3000000; k < end; k++)
        if (run_batch(st, k, a, &err)) {
            fprintf(stderr, "writer: batch %lld: %s\n", (long long)k, err.msg);
            _exit(2);
        }
    sr_state_close(st);
    sr_arena_destroy(a);
    _exit(0);
}

struct count_ctx {
    int n;
};

static int count_fn(void *opaque, const struct sr_state_key *k, const struct sr_session *s)
{
    (void)k, (void)s;
    ((struct count_ctx *)opaque)->n++;
    return 0;
}

static void test_sigkill_mid_run(void **unused)
{
    (void)unused;
    for (int i = 0; i < KEYS; i++) {
        snprintf(g_ids[i], sizeof g_ids[i], "session-%d", i / PARTS);
        g_keys[i] = (struct sr_state_key){ i % PARTS, (uint32_t)strlen(g_ids[i]), g_ids[i] };
    }
    char dir[] = "/tmp/sr_state_crash_XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    const char *env = getenv("SR_CRASH_SEED");
    if (env)
        seed = strtoull(env, NULL, 0);
    printf("crash test seed %llu (SR_CRASH_SEED to repeat)\n", (unsigned long long)seed);

    struct sr_error err = { 0 };
    sr_state_t *oracle = open_store("memory", NULL, &err);
    assert_non_null(oracle);
    sr_arena_t *a = sr_arena_new(1 << 20);
    int64_t oracle_k = -1, last_k = -1;
    int progressed = 0;

    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            writer(dir, fds[1]);
        }
        close(fds[1]);
        char c;
        assert_int_equal(read(fds[0], &c, 1), 1); /* the writer has opened the store */
        close(fds[0]);
        useconds_t delay = (useconds_t)(2000 + splitmix(&seed) % 150000);
        usleep(delay);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        sr_state_t *st = open_store("rocksdb", dir, &err);
        if (!st)
            fail_msg("reopen after kill: %s", err.msg);
        int64_t k = sr_state_applied_offset(st, 0);
        printf("round %d: killed after %u us, store holds batches 0..%lld\n", round,
               (unsigned)delay, (long long)k);
        assert_true(k >= last_k);
        if (k >= 0)
            assert_int_equal(k % GROUP, GROUP - 1); /* commits are whole groups */
        progressed += k > last_k;
        last_k = k;

        while (oracle_k < k) {
            oracle_k++;
            if (run_batch(oracle, oracle_k, a, &err))
                fail_msg("oracle batch %lld: %s", (long long)oracle_k, err.msg);
        }
        for (int p = 0; p < PARTS; p++)
            assert_int_equal(sr_state_applied_offset(st, p), sr_state_applied_offset(oracle, p));
        assert_int_equal(sr_state_pending(oracle), 0);

        struct sr_session got[KEYS], want[KEYS];
        if (sr_state_multi_get(st, KEYS, g_keys, NULL, got, a, &err))
            fail_msg("read back: %s", err.msg);
        assert_int_equal(sr_state_multi_get(oracle, KEYS, g_keys, NULL, want, a, &err), SR_OK);
        int live = 0;
        for (int i = 0; i < KEYS; i++) {
            if (got[i].found != want[i].found)
                fail_msg("round %d key %d: found %d, expected %d after batch %lld", round, i,
                         got[i].found, want[i].found, (long long)k);
            if (!want[i].found)
                continue;
            live++;
            assert_int_equal(got[i].len, want[i].len);
            assert_int_equal(got[i].last_ts, want[i].last_ts);
            assert_memory_equal(got[i].items, want[i].items, (size_t)want[i].len * 8);
        }
        /* nothing beyond the universe either */
        struct count_ctx cc = { 0 };
        for (int p = 0; p < PARTS; p++)
            assert_int_equal(sr_state_partition_foreach(st, p, count_fn, &cc, &err), SR_OK);
        assert_int_equal(cc.n, live);
        assert_int_equal((uint64_t)live, sr_state_count(oracle));
        sr_arena_reset(a);
        sr_state_close(st);
    }
    assert_true(progressed >= ROUNDS / 2);
    assert_true(last_k > 0);
    sr_state_close(oracle);
    sr_arena_destroy(a);
    assert_int_equal(sr_state_destroy_db(dir, &err), SR_OK);
    rmdir(dir);
}

int main(void)
{
    sr_log_set_level(SR_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_mid_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
