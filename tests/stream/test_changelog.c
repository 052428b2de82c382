/* test_changelog.c — the state changelog (stream/changelog.c) against a broker (the suite's
 * real Kafka, or the in-process mock: kafka_test_util.h): what a batch logs, and restores of
 *   - a long changelog (20 000 records, later records of a key replacing earlier ones),
 *   - tombstones (a deleted session is not restored),
 *   - a local store ahead of / not described by the changelog (dropped and restored whole),
 *   - a store restarted with a healthy checkpoint (restores only the tail, here nothing),
 * each checked session by session against what the records say. */
#include "sr_state.h"
#include "sr_stream.h"

#include "kafka_test_util.h"

struct cl_env {
    struct cluster c;
    char dir[256], in[96], cl[160], group[96];
    sr_config_t *cfg;
    rd_kafka_t *producer;
    sr_changelog_t *log;
};

static int cl_setup(void **state)
{
    struct cl_env *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/sr_test_changelog.XXXXXX");
    if (!mkdtemp(e->dir))
        return -1;
    *state = e;
    return 0;
}

static int cl_teardown(void **state)
{
    struct cl_env *e = *state;
    sr_changelog_destroy(e->log);
    if (e->producer)
        rd_kafka_destroy(e->producer);
    sr_config_destroy(e->cfg);
    cluster_stop(&e->c);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", e->dir);
    free(e);
    return 0;
}

/* The cluster, an input topic of 2 partitions, a config naming them, and the changelog (made
 * by the test on the mock, which cannot create topics; by sr_changelog_open on a real one). */
static void open_log(struct cl_env *e)
{
    int rc = cluster_start(&e->c, 1, CLUSTER_ANY);
    assert_int_equal(rc, 0);
    cluster_name(&e->c, "events", e->in, sizeof e->in);
    cluster_name(&e->c, "streamrec-cltest", e->group, sizeof e->group);
    snprintf(e->cl, sizeof e->cl, "%s-sessions-changelog", e->group);
    assert_int_equal(cluster_topic_create(&e->c, e->in, 2), 0);
    if (!e->c.real)
        assert_int_equal(cluster_topic_create(&e->c, e->cl, 2), 0);
    struct sr_error err = {0};
    e->cfg = sr_config_new();
    assert_int_equal(sr_config_set(e->cfg, "kafka.bootstrap.servers", e->c.bootstraps, &err), SR_OK);
    assert_int_equal(sr_config_set(e->cfg, "kafka.group.id", e->group, &err), SR_OK);
    rd_kafka_conf_t *conf;
    assert_int_equal(sr_kafka_conf_new(e->cfg, SR_KAFKA_PRODUCER, &conf, &err), SR_OK);
    char errstr[256];
    e->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(e->producer);
    rc = sr_changelog_open(e->cfg, e->producer, e->in, &e->log, &err);
    if (rc)
        fprintf(stderr, "changelog open: %s\n", err.msg);
    assert_int_equal(rc, SR_OK);
    assert_string_equal(sr_changelog_topic(e->log), e->cl);
    assert_int_equal(sr_changelog_partitions(e->log), 2);
}

static sr_state_t *open_state(struct cl_env *e, const char *name)
{
    struct sr_state_params p;
    sr_state_params_init(&p);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/%s", e->dir, name);
    p.dir = dir;
    p.max_len = 20;
    p.ttl_ms = 0;
    sr_state_t *st = NULL;
    struct sr_error err = {0};
    assert_int_equal(sr_state_open(&p, &st, &err), SR_OK);
    return st;
}

/* Produces raw changelog records to partition p (value NULL = tombstone) and flushes. */
static void put_raw(struct cl_env *e, int32_t p, const char *key, size_t kl, const void *v, size_t vl)
{
    rd_kafka_resp_err_t r;
    while ((r = rd_kafka_producev(e->producer, RD_KAFKA_V_TOPIC(e->cl), RD_KAFKA_V_PARTITION(p),
                                  RD_KAFKA_V_KEY(key, kl), RD_KAFKA_V_VALUE((void *)v, vl),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(e->producer, 10);
    assert_int_equal(r, 0);
}

static void put_session(struct cl_env *e, int32_t p, const char *id, uint64_t item, int64_t ts)
{
    uint64_t items[2] = {item, item + 1};
    struct sr_session s = {.items = items, .len = 2, .last_ts = ts, .found = true};
    uint8_t buf[64];
    size_t n = 0;
    struct sr_error err = {0};
    assert_int_equal(sr_session_encode(&s, buf, sizeof buf, &n, &err), SR_OK);
    put_raw(e, p, id, strlen(id), buf, n);
}

static void put_applied(struct cl_env *e, int32_t p, long long off)
{
    char v[24];
    int n = snprintf(v, sizeof v, "%lld", off);
    put_raw(e, p, "\xffstreamrec.applied-offset", 25, v, (size_t)n);
}

/* Restores partition p to the end; returns the records applied (restore totals' delta). */
static uint64_t restore(struct cl_env *e, sr_state_t *st, int32_t p)
{
    uint64_t r0, b0, r1, b1;
    double s0, s1;
    sr_changelog_totals(e->log, &r0, &b0, &s0);
    struct sr_error err = {0};
    sr_changelog_restore_t *r = NULL;
    assert_int_equal(sr_changelog_restore_begin(e->log, st, p, NULL, &r, &err), SR_OK);
    bool done = false;
    for (int i = 0; !done && i < 10000; i++) {
        sr_err_t rc = sr_changelog_restore_step(r, st, 20000000ULL, &done, &err);
        if (rc)
            fprintf(stderr, "restore: %s\n", err.msg);
        assert_int_equal(rc, SR_OK);
    }
    assert_true(done);
    assert_int_equal(sr_changelog_restore_remaining(r), 0);
    sr_changelog_restore_end(r);
    sr_changelog_totals(e->log, &r1, &b1, &s1);
    return r1 - r0;
}

static void expect_session(sr_state_t *st, int32_t p, const char *id, bool found, uint64_t item,
                           int64_t ts)
{
    struct sr_state_key k = {p, (uint32_t)strlen(id), id};
    struct sr_session s;
    sr_arena_t *a = sr_arena_new(4096);
    struct sr_error err = {0};
    assert_int_equal(sr_state_multi_get(st, 1, &k, NULL, &s, a, &err), SR_OK);
    if (s.found != found)
        fprintf(stderr, "session %d/%s: found %d, expected %d\n", p, id, s.found, found);
    assert_int_equal(s.found, found);
    if (found) {
        assert_int_equal(s.len, 2);
        assert_int_equal(s.items[0], item);
        assert_int_equal(s.last_ts, ts);
    }
    sr_arena_destroy(a);
}

static void flush(struct cl_env *e)
{
    assert_int_equal(rd_kafka_flush(e->producer, 30000), 0);
}

/* A long changelog with replaced values and tombstones, restored into an empty store; then
 * the same store again (healthy checkpoint: nothing to restore), and a store whose local state
 * the changelog does not describe (dropped, restored whole). */
static void test_restore(void **state)
{
    struct cl_env *e = *state;
    open_log(e);
    char id[32];
    /* 5 000 sessions written 4 times each (the last write wins), every 10th then deleted. */
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < 5000; i++) {
            snprintf(id, sizeof id, "s%d", i);
            put_session(e, 0, id, (uint64_t)(1000 * round + i), 100 + round);
        }
    for (int i = 0; i < 5000; i += 10) {
        snprintf(id, sizeof id, "s%d", i);
        put_raw(e, 0, id, strlen(id), NULL, 0);
    }
    put_applied(e, 0, 4242);
    put_session(e, 1, "other", 7, 1); /* partition 1 is not restored below */
    flush(e);

    sr_state_t *st = open_state(e, "a");
    uint64_t n = restore(e, st, 0);
    fprintf(stderr, "restored %llu records\n", (unsigned long long)n);
    assert_int_equal(n, 4 * 5000 + 500 + 1);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "s%d", i);
        expect_session(st, 0, id, i % 10 != 0, (uint64_t)(3000 + i), 103);
    }
    expect_session(st, 1, "other", false, 0, 0);
    assert_int_equal(sr_state_applied_offset(st, 0), 4242);
    assert_int_equal(sr_state_checkpoint(st, 0), 4 * 5000 + 500 + 1);
    sr_state_close(st);

    /* Restart with the checkpoint at the end: only the tail, which is empty... */
    st = open_state(e, "a");
    assert_int_equal(restore(e, st, 0), 0);
    /* ...then one more record arrives: exactly that one is restored. */
    put_session(e, 0, "s1", 99, 200);
    flush(e);
    assert_int_equal(restore(e, st, 0), 1);
    expect_session(st, 0, "s1", true, 99, 200);
    sr_state_close(st);

    /* A store whose partition-0 state the changelog does not describe (written without it:
     * an applied offset ahead, a session the changelog never had, no checkpoint): dropped. */
    st = open_state(e, "b");
    sr_state_batch_t *b = sr_state_batch_new(st);
    uint64_t items[2] = {5, 6};
    struct sr_session s = {.items = items, .len = 2, .last_ts = 9, .found = true};
    struct sr_state_key k = {0, 5, "ghost"};
    struct sr_error err = {0};
    assert_int_equal(sr_state_batch_put(b, &k, &s, &err), SR_OK);
    assert_int_equal(sr_state_batch_set_offset(b, 0, 999999, &err), SR_OK);
    assert_int_equal(sr_state_batch_commit(st, b, &err), SR_OK);
    restore(e, st, 0);
    expect_session(st, 0, "ghost", false, 0, 0);
    expect_session(st, 0, "s1", true, 99, 200);
    expect_session(st, 0, "s2", true, 3002, 103);
    assert_int_equal(sr_state_applied_offset(st, 0), 4242);
    sr_state_close(st);
}

/* What a batch logs: its sessions and applied offsets, in the input partition's changelog
 * partition; restoring them into another store gives the same sessions. */
static void test_log_then_restore(void **state)
{
    struct cl_env *e = *state;
    open_log(e);
    sr_state_t *a = open_state(e, "a");
    sr_state_batch_t *b = sr_state_batch_new(a);
    struct sr_error err = {0};
    uint64_t items[2] = {11, 12};
    struct sr_session s = {.items = items, .len = 2, .last_ts = 50, .found = true};
    struct sr_state_key k0 = {0, 2, "u0"}, k1 = {1, 2, "u1"};
    assert_int_equal(sr_state_batch_put(b, &k0, &s, &err), SR_OK);
    items[0] = 21;
    assert_int_equal(sr_state_batch_put(b, &k1, &s, &err), SR_OK);
    assert_int_equal(sr_state_batch_set_offset(b, 0, 17, &err), SR_OK);
    assert_int_equal(sr_state_batch_set_offset(b, 1, 3, &err), SR_OK);
    uint64_t id, produced = 0;
    assert_int_equal(sr_state_stage(a, b, &id, &err), SR_OK);
    assert_int_equal(sr_changelog_log(e->log, a, id, NULL, &produced, &err), SR_OK);
    assert_int_equal(produced, 4);
    flush(e);
    assert_int_equal(sr_state_commit(a, id, &err), SR_OK);
    sr_state_close(a);

    sr_state_t *c = open_state(e, "c");
    assert_int_equal(restore(e, c, 0), 2);
    assert_int_equal(restore(e, c, 1), 2);
    expect_session(c, 0, "u0", true, 11, 50);
    expect_session(c, 1, "u1", true, 21, 50);
    assert_int_equal(sr_state_applied_offset(c, 0), 17);
    assert_int_equal(sr_state_applied_offset(c, 1), 3);
    sr_state_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_then_restore, cl_setup, cl_teardown),
        cmocka_unit_test_setup_teardown(test_restore, cl_setup, cl_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
