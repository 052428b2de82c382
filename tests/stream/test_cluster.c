/* test_cluster.c — what only a real Kafka can show (skipped, with a message, where the run has
 * only the mock; kafka_test_util.h: cluster_start):
 *   - a consumer group of `streamrec run` processes on 8 partitions while events flow: three
 *     start, a fourth joins, one leaves with SIGTERM, one is SIGKILLed; sessions follow their
 *     partitions through the changelog, so every valid event has exactly the recommendation a
 *     single-process replay gives, and every duplicate is byte-identical;
 *   - SASL/SCRAM-SHA-512 with ACLs (deploy/kafka/kafka-local.sh's users): a wrong password and
 *     a user without ACLs stop `run` with one line naming the failure, commit nothing and lose
 *     nothing: a later correct run answers every event, equal to replay's;
 *   - a broker restart (kafka-local.sh stop + start of the same directory) mid-stream: nothing
 *     lost, every recommendation equal to replay's, duplicates byte-identical;
 *   - exactly_once with kill -9 of one of two instances every 4.5 s for a minute while events
 *     flow: a read_committed consumer sees each recommendation exactly once, equal to replay's;
 *   - a changelog topic with the wrong partition count, or not compacted, stops `run`.
 * The runtimes, the broker of the restart test and the event producer are child processes or
 * threads of this test. */
#include <pthread.h>

#include "kafka_test_util.h"

/* ---- a paced producer thread (events flow while the group changes) ------------------- */

struct pacer {
    pthread_t th;
    const char *bootstraps, *topic;
    const struct fixture *fx;
    int from, to, per_ms; /* lines [from, to), one every per_ms */
    int produced;
};

static void *pacer_main(void *arg)
{
    struct pacer *p = arg;
    for (int i = p->from; i < p->to; i += 10) {
        int to = i + 10 < p->to ? i + 10 : p->to;
        int n = produce_fixture(p->bootstraps, p->topic, p->fx, i, to, 0);
        if (n > 0)
            p->produced += n;
        sleep_ms(p->per_ms * (to - i));
    }
    return NULL;
}

static void pacer_start(struct pacer *p, struct env *e, int from, int to, int per_ms)
{
    *p = (struct pacer){.bootstraps = e->c.bootstraps, .topic = e->t_events, .fx = &e->fx,
                        .from = from, .to = to, .per_ms = per_ms};
    assert_int_equal(pthread_create(&p->th, NULL, pacer_main, p), 0);
}

static int pacer_join(struct pacer *p)
{
    pthread_join(p->th, NULL);
    return p->produced;
}

/* Consumes the recommendations, checks them against the golden file and prints the counts. */
static void collect(struct env *e, int partitions, double timeout_s, int exact_items, struct msgs *ms,
                    int *unmatched, int *mismatched, int *dups, int *missing)
{
    consume_topic(e->c.bootstraps, e->t_recs, partitions, N_VALID_RECS, timeout_s, 2000, ms);
    check_recs(&e->ex, ms, exact_items, unmatched, mismatched, dups, missing);
    fprintf(stderr, "recs %d: unmatched %d mismatched %d duplicates %d missing %d\n", ms->n,
            *unmatched, *mismatched, *dups, *missing);
}

/* ---- a consumer group of three, then four, then two --------------------------------- */

static void test_group_membership_changes(void **state)
{
    struct env *e = *state;
    topics(e, 8, CLUSTER_REAL);
    char cfg[4][300];
    const char *names[4] = {"a", "b", "c", "d"};
    pid_t pid[4];
    for (int i = 0; i < 4; i++)
        write_config(e, names[i], "batch.max.events=16\n", cfg[i], sizeof cfg[i]);
    for (int i = 0; i < 3; i++)
        pid[i] = start_run(e, cfg[i], names[i]);
    for (int i = 0; i < 3; i++)
        assert_true(wait_log(e, names[i], "partitions assigned", 1, 60));
    struct pacer pc;
    pacer_start(&pc, e, 0, e->fx.n, 12); /* ~12 s of events */
    sleep_ms(3000);
    pid[3] = start_run(e, cfg[3], "d");
    assert_true(wait_log(e, "d", "partitions assigned", 1, 60));
    sleep_ms(1500);
    assert_int_equal(stop_run(e, pid[1], "b", 30), 0);
    sleep_ms(1500);
    kill(pid[2], SIGKILL);
    assert_int_equal(wait_child(pid[2], 10), 128 + SIGKILL);
    e->pids[2] = 0;
    assert_int_equal(pacer_join(&pc), e->fx.n);

    struct msgs ms = {0};
    int unmatched, mismatched, dups, missing;
    collect(e, 8, 120, 1, &ms, &unmatched, &mismatched, &dups, &missing);
    assert_int_equal(unmatched + mismatched + missing, 0);
    assert_int_equal(duplicates_differing(e, &ms), 0);
    msgs_free(&ms);
    for (int i = 0; i < 4; i += 3)
        assert_int_equal(stop_run(e, pid[i], names[i], 30), 0);
    /* Every partition's offsets are committed to the end once both drained. */
    int n_committed;
    int64_t sum = group_committed(e->c.bootstraps, e->group, e->t_events, 8, &n_committed);
    fprintf(stderr, "committed: %d partitions, offsets sum %lld of %d\n", n_committed,
            (long long)sum, e->fx.n);
    assert_int_equal(n_committed, 8);
    assert_int_equal(sum, e->fx.n);
}

/* ---- exactly-once under kill -9 ------------------------------------------------------------
 * As Kafka's transactions_test.py: two instances under processing.guarantee=exactly_once, one
 * of them SIGKILLed (and restarted with the same instance.id and state.dir) every few seconds
 * while events flow; a read_committed consumer of the output then sees exactly one
 * recommendation per valid event, each equal to the single-process replay's. */
static void test_exactly_once_kill9(void **state)
{
    struct env *e = *state;
    topics(e, 8, CLUSTER_REAL);
    char cfg[2][300];
    const char *names[2] = {"a", "b"};
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        char extra[256];
        snprintf(extra, sizeof extra, "processing.guarantee=exactly_once\ninstance.id=%s\n"
                 "commit.interval.ms=100\nbatch.max.events=16\n", names[i]);
        write_config(e, names[i], extra, cfg[i], sizeof cfg[i]);
        pid[i] = start_run(e, cfg[i], names[i]);
    }
    for (int i = 0; i < 2; i++)
        assert_true(wait_log(e, names[i], "partitions assigned", 1, 60));
    struct pacer pc; /* a minute of kill -9 (bench-length runs: loop this test) */
    pacer_start(&pc, e, 0, e->fx.n, 55); /* ~55 s of events */
    int kills = 0;
    for (double t0 = now_s(); now_s() - t0 < 60; kills++) {
        sleep_ms(4500);
        int v = kills % 2;
        kill(pid[v], SIGKILL);
        assert_int_equal(wait_child(pid[v], 10), 128 + SIGKILL);
        for (int i = 0; i < e->n_pids; i++)
            if (e->pids[i] == pid[v])
                e->pids[i] = 0;
        pid[v] = start_run(e, cfg[v], names[v]);
    }
    assert_int_equal(pacer_join(&pc), e->fx.n);
    fprintf(stderr, "exactly_once: %d kill -9 while events flowed\n", kills);

    consume_read_committed = 1;
    struct msgs ms = {0};
    int unmatched, mismatched, dups, missing;
    collect(e, 8, 180, 1, &ms, &unmatched, &mismatched, &dups, &missing);
    consume_read_committed = 0;
    assert_int_equal(unmatched + mismatched + missing + dups, 0);
    assert_int_equal(ms.n, N_VALID_RECS);
    msgs_free(&ms);
    for (int i = 0; i < 2; i++)
        assert_int_equal(stop_run(e, pid[i], names[i], 60), 0);
}

/* ---- the changelog topic is checked at start-up ------------------------------------------ */

static void test_changelog_topic_checks(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_REAL);
    char cfg[300], extra[300], cl[200], log[300];
    /* Another partition count than the input's: refused at start, saying both counts. */
    snprintf(cl, sizeof cl, "%s-sessions-changelog", e->group);
    assert_int_equal(cluster_topic_create(&e->c, cl, 2), 0);
    write_config(e, "parts", NULL, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "parts");
    int rc = wait_child(pid, 60);
    snprintf(log, sizeof log, "%s/parts.log", e->dir);
    fprintf(stderr, "changelog of 2 partitions for 4: exit %d\n", rc);
    if (grep_count(log, "has 2 partitions, input topic") != 1)
        log_tail(e, "parts");
    assert_true(rc > 0 && rc < 128);
    assert_int_equal(grep_count(log, "has 2 partitions, input topic"), 1);
    /* The broker's default cleanup.policy (delete): the runtime stops once it knows. */
    snprintf(cl, sizeof cl, "%s-deleting-changelog", e->group);
    assert_int_equal(cluster_topic_create(&e->c, cl, 4), 0);
    snprintf(extra, sizeof extra, "state.changelog.topic=%s\n", cl);
    write_config(e, "policy", extra, cfg, sizeof cfg);
    pid = start_run(e, cfg, "policy");
    rc = wait_child(pid, 60);
    snprintf(log, sizeof log, "%s/policy.log", e->dir);
    fprintf(stderr, "changelog with cleanup.policy=delete: exit %d\n", rc);
    if (grep_count(log, "cleanup.policy=delete") < 1)
        log_tail(e, "policy");
    assert_true(rc > 0 && rc < 128);
    assert_true(grep_count(log, "cleanup.policy=delete") >= 1);
}

/* ---- SASL/SCRAM and ACLs ----------------------------------------------------------------- */

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* The config lines that connect as `user` over the SASL listener. */
static void sasl_extra(struct env *e, const char *user, const char *password, char *out, size_t n)
{
    snprintf(out, n,
             "kafka.bootstrap.servers=%s\nkafka.security.protocol=SASL_PLAINTEXT\n"
             "kafka.sasl.mechanisms=SCRAM-SHA-512\nkafka.sasl.username=%s\n"
             "kafka.sasl.password=%s\nbatch.max.events=32\n",
             e->c.sasl, user, password);
}

/* A run that must stop by itself, exit non-zero, with a line naming `what`. */
static void expect_refused(struct env *e, const char *name, const char *extra, const char *what)
{
    char cfg[300], log[300];
    write_config(e, name, extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, name);
    int rc = wait_child(pid, 60);
    e->pids[e->n_pids - 1] = 0;
    snprintf(log, sizeof log, "%s/%s.log", e->dir, name);
    int lines = grep_count(log, what), stops = grep_count(log, "stopping: nothing after this point");
    fprintf(stderr, "%s: exit %d, %d line(s) naming '%s', %d stop line(s)\n", name, rc, lines, what,
            stops);
    if (rc <= 0 || stops != 1) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -20 %s >&2", log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
    }
    /* Refused at start-up (the error line) or while running (one "stopping" line). */
    assert_true(rc > 0 && rc < 128);
    assert_true(stops <= 1);
    assert_true(lines >= 1);
}

static void test_sasl_scram_and_acls(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_REAL);
    if (!e->c.sasl[0]) {
        fprintf(stderr, "no SASL listener known (set SR_TEST_BOOTSTRAP_SASL): skipped\n");
        skip();
    }
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    const char *pw = env_or("SR_KAFKA_STREAMREC_PASSWORD", "streamrec-secret");
    char extra[1200];

    sasl_extra(e, "streamrec", "not-the-password", extra, sizeof extra);
    expect_refused(e, "wrong-password", extra, "kafka authentication failed");
    sasl_extra(e, "other", env_or("SR_KAFKA_OTHER_PASSWORD", "other-secret"), extra, sizeof extra);
    expect_refused(e, "other-user", extra, "kafka authorization failed");

    /* Nothing was committed and nothing published by the refused runs. */
    int n_committed;
    group_committed(e->c.bootstraps, e->group, e->t_events, 4, &n_committed);
    assert_int_equal(n_committed, 0);
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, 1, 3, 0, &ms);
    assert_int_equal(ms.n, 0);

    /* The streamrec user with its password answers every event, as replay does. */
    sasl_extra(e, "streamrec", pw, extra, sizeof extra);
    char cfg[300];
    write_config(e, "good", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "good");
    int unmatched, mismatched, dups, missing;
    collect(e, 4, 90, 1, &ms, &unmatched, &mismatched, &dups, &missing);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(unmatched + mismatched + dups + missing, 0);
    msgs_free(&ms);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
    int64_t sum = group_committed(e->c.bootstraps, e->group, e->t_events, 4, &n_committed);
    assert_int_equal(n_committed, 4);
    assert_int_equal(sum, e->fx.n);
}

/* ---- a broker restart mid-stream ---------------------------------------------------------- */

static void test_broker_restart(void **state)
{
    struct env *e = *state;
    /* Its own broker: restarting the suite's shared one would disturb the other tests. */
    struct cluster probe;
    int rc = cluster_start(&probe, 1, CLUSTER_REAL);
    cluster_stop(&probe);
    if (rc == 77)
        skip();
    if (getenv("SR_TEST_BOOTSTRAP") && *getenv("SR_TEST_BOOTSTRAP")) {
        fprintf(stderr, "your own cluster (SR_TEST_BOOTSTRAP) is not restarted: skipped\n");
        skip();
    }
    char bdir[300], bs[512] = "";
    snprintf(bdir, sizeof bdir, "%s/broker", e->dir);
    assert_int_equal(mkdir(bdir, 0700), 0);
    snprintf(e->broker_dir, sizeof e->broker_dir, "%s", bdir); /* teardown stops it */
    assert_int_equal(kafka_local("start", bdir, bs, sizeof bs), 0);
    setenv("SR_TEST_BOOTSTRAP", bs, 1);
    rc = cluster_start(&e->c, 1, CLUSTER_REAL);
    unsetenv("SR_TEST_BOOTSTRAP");
    assert_int_equal(rc, 0);
    cluster_name(&e->c, "events", e->t_events, sizeof e->t_events);
    cluster_name(&e->c, "recommendations", e->t_recs, sizeof e->t_recs);
    cluster_name(&e->c, "dlq", e->t_dlq, sizeof e->t_dlq);
    cluster_name(&e->c, "streamrec-test", e->group, sizeof e->group);
    assert_int_equal(cluster_topic_create(&e->c, e->t_events, 4), 0);
    assert_int_equal(cluster_topic_create(&e->c, e->t_recs, 4), 0);
    assert_int_equal(cluster_topic_create(&e->c, e->t_dlq, 1), 0);

    char cfg[300];
    write_config(e, "a", "batch.max.events=16\nkafka.producer.message.timeout.ms=120000\n", cfg,
                 sizeof cfg);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, 500, 0), 500);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, 100, 60, 0, &ms);
    assert_true(ms.n >= 100);
    msgs_free(&ms);
    /* The broker goes away while the runtime works, and comes back on the same ports. */
    assert_int_equal(kafka_local("stop", bdir, NULL, 0), 0);
    sleep_ms(2000);
    assert_int_equal(kafka_local("start", bdir, NULL, 0), 0);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 500, e->fx.n, 0), 500);
    int unmatched, mismatched, dups, missing;
    collect(e, 4, 120, 1, &ms, &unmatched, &mismatched, &dups, &missing);
    assert_int_equal(unmatched + mismatched + missing, 0);
    assert_int_equal(duplicates_differing(e, &ms), 0);
    msgs_free(&ms);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
    e->pids[0] = 0;
    assert_int_equal(kafka_local("stop", bdir, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sasl_scram_and_acls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_membership_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exactly_once_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changelog_topic_checks, setup, teardown),
    };
    return sr_run_tests(tests);
}
