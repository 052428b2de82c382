/* test_run.c — `streamrec run` and topic replay on a real Kafka where the run has one, else on
 * librdkafka's mock cluster hosted in this process (kafka_test_util.h: cluster_start; the
 * fault-injection tests always use the mock). The runtimes are child processes:
 * recommendations equal `replay`'s for the same events (golden file), bad events in the DLQ
 * with their headers, metrics endpoints, SIGTERM drain + restart without loss or duplicate,
 * broker faults without loss, two processes in one group where one is SIGKILLed, topic
 * replay by offsets and times, and the model bundle's hot reload (symlink flip, SIGHUP, POST
 * /admin/reload, a broken bundle refused). Each test has its own topics, group, config and state dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kafka_test_util.h"

#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>


static void check_dlq(struct env *e)
{
    struct msgs dl = {0};
    consume_topic(e->c.bootstraps, e->t_dlq, 1, N_INVALID, 30, 300, &dl);
    assert_int_equal(dl.n, N_INVALID);
    for (int i = 0; i < dl.n; i++) {
        const struct msg *m = &dl.m[i];
        assert_true(m->hdr[0][0] != 0);                 /* streamrec.error = reason */
        assert_string_equal(m->hdr[1], e->t_events);    /* source topic */
        assert_true(m->hdr[2][0] && m->hdr[3][0]);      /* partition, offset */
        /* The value is one of the fixture lines, unchanged. */
        int found = 0;
        for (int k = 0; k < e->fx.n && !found; k++)
            found = e->fx.len[k] == m->value_len && !memcmp(e->fx.line[k], m->value, m->value_len) &&
                    ((!e->fx.key[k] && !m->key) || (e->fx.key[k] && m->key && !strcmp(e->fx.key[k], m->key)));
        if (!found)
            fprintf(stderr, "DLQ value not in the fixture: %.100s\n", m->value);
        assert_true(found);
    }
    msgs_free(&dl);
}

/* Every valid event yields exactly replay's recommendation; bad ones go to the DLQ; metrics. */
static void test_run_matches_replay(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_ANY);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    int port = free_port();
    char extra[128], cfg[300];
    snprintf(extra, sizeof extra, "metrics.listen=127.0.0.1:%d\nkafka.statistics.interval.ms=200\n"
             "metrics.admin=false\n", port);
    write_config(e, "a", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 60, 1000, &ms);
    int unmatched, mismatched, dups, missing;
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    fprintf(stderr, "recs %d: unmatched %d mismatched %d duplicates %d missing %d\n", ms.n,
            unmatched, mismatched, dups, missing);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(unmatched + mismatched + dups + missing, 0);
    for (int i = 0; i < ms.n; i++) { /* provenance headers */
        assert_string_equal(ms.m[i].hdr[0], "gpt2-small-v1");
        assert_string_equal(ms.m[i].hdr[1], e->t_events);
    }
    msgs_free(&ms);
    check_dlq(e);

    /* Metrics: wait for the counters to settle (acks are counted as they arrive). */
    static char body[1 << 16];
    char lag0[160];
    snprintf(lag0, sizeof lag0, "streamrec_consumer_lag{topic=\"%s\",partition=\"0\"} 0", e->t_events);
    int status = -1;
    for (int i = 0; i < 200; i++) {
        status = http_get(port, "/metrics", body, sizeof body);
        if (status == 200 && strstr(body, "streamrec_recommendations_published_total 781") &&
            strstr(body, lag0))
            break;
        sleep_ms(50);
    }
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "streamrec_events_consumed_total 1000"));
    assert_non_null(strstr(body, "streamrec_recommendations_published_total 781"));
    assert_non_null(strstr(body, "streamrec_dlq_published_total 50"));
    assert_non_null(strstr(body, "streamrec_events_invalid_total{reason=\"invalid_json\"} 15"));
    assert_non_null(strstr(body, "streamrec_latency_seconds_count 781"));
    assert_non_null(strstr(body, "streamrec_processing_seconds_count 781"));
    /* the runtime's part of each latency is less than the whole */
    const char *ls = strstr(body, "streamrec_latency_seconds_sum "),
               *ps = strstr(body, "streamrec_processing_seconds_sum ");
    assert_true(ls && ps);
    double lsum = strtod(ls + strlen("streamrec_latency_seconds_sum "), NULL),
           psum = strtod(ps + strlen("streamrec_processing_seconds_sum "), NULL);
    assert_true(psum > 0 && psum < lsum);
    assert_non_null(strstr(body, "streamrec_batch_size_bucket"));
    assert_non_null(strstr(body, "streamrec_stage_seconds_total{stage=\"encode\"}"));
    assert_non_null(strstr(body, "streamrec_model_info{version=\"gpt2-small-v1\",bundle=\"/"));
    assert_non_null(strstr(body, "streamrec_model_reloads_total{result=\"ok\"} 0\n"));
    assert_non_null(strstr(body, lag0));
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    assert_int_equal(http_get(port, "/readyz", body, sizeof body), 200);
    assert_int_equal(http_get(port, "/nope", body, sizeof body), 404);
    assert_int_equal(http_request("127.0.0.1", port, "POST", "/admin/reload", body, sizeof body),
                     403); /* metrics.admin=false */
    assert_non_null(strstr(body, "metrics.admin=false"));

    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
    /* Logs name offsets readably: no raw logical offsets such as events[0]@-1001. */
    char log[300];
    snprintf(log, sizeof log, "%s/a.log", e->dir);
    assert_int_equal(grep_count(log, "@-100"), 0);
    assert_true(grep_count(log, "partitions assigned") >= 1);
}

/* A/B online: every recommendation names its variant in the value and a header, a session
 * keeps its arm, the arms together answer every valid event once, metrics per variant. */
static void test_variants_online(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_ANY);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    int port = free_port();
    char extra[600], cfg[300];
    snprintf(extra, sizeof extra, "metrics.listen=127.0.0.1:%d\nmodel.variants=a,b\n"
             "model.variant.a.share=30\nmodel.variant.b.bundle=%s\n", port, BUNDLE);
    write_config(e, "ab", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "ab");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 60, 1000, &ms);
    assert_int_equal(ms.n, N_VALID_RECS);
    int n_a = 0, n_b = 0;
    for (int i = 0; i < ms.n; i++) {
        const struct msg *m = &ms.m[i];
        const char *v = m->hdr[4];
        assert_true(!strcmp(v, "a") || !strcmp(v, "b"));
        char field[160];
        snprintf(field, sizeof field, "\"variant\": \"%s\"}", v);
        assert_non_null(strstr(m->value, field));
        n_a += v[0] == 'a';
        n_b += v[0] == 'b';
        for (int j = 0; j < i; j++) /* a session (the key) never changes arm */
            if (m->key && ms.m[j].key && !strcmp(m->key, ms.m[j].key))
                assert_string_equal(ms.m[j].hdr[4], v);
    }
    assert_true(n_a > 0 && n_b > n_a);
    static char body[1 << 16];
    char want_a[160], want_b[160];
    snprintf(want_a, sizeof want_a, "streamrec_variant_recommendations_total{variant=\"a\","
             "model_version=\"gpt2-small-v1\"} %d", n_a);
    snprintf(want_b, sizeof want_b, "streamrec_variant_recommendations_total{variant=\"b\","
             "model_version=\"gpt2-small-v1\"} %d", n_b);
    int status = -1;
    for (int i = 0; i < 200; i++) {
        status = http_get(port, "/metrics", body, sizeof body);
        if (status == 200 && strstr(body, want_a) && strstr(body, want_b))
            break;
        sleep_ms(50);
    }
    assert_non_null(strstr(body, want_a));
    assert_non_null(strstr(body, want_b));
    assert_non_null(strstr(body, "streamrec_variant_share{variant=\"a\"} 30"));
    msgs_free(&ms);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
}

/* SIGTERM while events flow: the drain commits; a restart on the same state continues the
 * sessions: exactly replay's recommendations, none lost, none twice. */
static void test_drain_then_restart(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_ANY);
    char cfg[300];
    write_config(e, "a", "batch.max.events=8\n", cfg, sizeof cfg);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, 600, 0), 600);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, 1, 60, 0, &ms);
    assert_true(ms.n >= 1);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
    e->pids[--e->n_pids] = 0;
    msgs_free(&ms);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 600, e->fx.n, 0), 400);
    pid = start_run(e, cfg, "a");
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 60, 1500, &ms);
    int unmatched, mismatched, dups, missing;
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    fprintf(stderr, "recs %d: unmatched %d mismatched %d duplicates %d missing %d\n", ms.n,
            unmatched, mismatched, dups, missing);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(unmatched + mismatched + dups + missing, 0);
    msgs_free(&ms);
    check_dlq(e);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
}

/* SIGTERM while a fresh instance restores its partitions from the changelog: every restore,
 * queued or under way or done and not yet seen by the loop, ends with the process, which
 * exits 0 (under ASan: touching no restore record after it was freed). Several stops at
 * several moments of the restore, since its length depends on the broker. */
static void test_stop_during_restore(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_ANY);
    char cfg[300];
    write_config(e, "a", "batch.max.events=8\n", cfg, sizeof cfg);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 60, 0, &ms);
    assert_int_equal(ms.n, N_VALID_RECS);
    msgs_free(&ms);
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
    static const int delay_ms[] = {0, 5, 20, 60};
    for (int i = 0; i < (int)(sizeof delay_ms / sizeof *delay_ms); i++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", i); /* a fresh state.dir: everything is restored */
        write_config(e, name, "batch.max.events=8\n", cfg, sizeof cfg);
        pid = start_run(e, cfg, name);
        assert_true(wait_log(e, name, "partitions assigned count=4", 1, 60));
        sleep_ms(delay_ms[i]);
        assert_int_equal(stop_run(e, pid, name, 30), 0);
    }
}

/* Produce errors (retriable, with one request in flight) and a broker down for 2 s while the
 * runtime works: every recommendation arrives, equal to replay's (a duplicate would be
 * byte-identical and is tolerated here: at-least-once). */
static void test_broker_faults(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_MOCK);
    char cfg[300];
    write_config(e, "a", "kafka.producer.max.in.flight.requests.per.connection=1\n"
                         "kafka.producer.retry.backoff.ms=20\nbatch.max.events=16\n", cfg, sizeof cfg);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, 500, 0), 500);
    rd_kafka_mock_push_request_errors(e->c.mock.mc, 0 /* Produce */, 6,
                                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    pid_t pid = start_run(e, cfg, "a");
    assert_true(wait_log(e, "a", "partitions assigned", 1, 30));
    rd_kafka_mock_broker_set_down(e->c.mock.mc, 2);
    sleep_ms(2000);
    rd_kafka_mock_broker_set_up(e->c.mock.mc, 2);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 500, e->fx.n, 0), 500);
    rd_kafka_mock_push_request_errors(e->c.mock.mc, 0, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 90, 1500, &ms);
    int unmatched, mismatched, dups, missing;
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    fprintf(stderr, "recs %d: unmatched %d mismatched %d duplicates %d missing %d\n", ms.n,
            unmatched, mismatched, dups, missing);
    assert_int_equal(unmatched + mismatched + missing, 0);
    msgs_free(&ms);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
}

/* Final delivery failures (DESIGN §8): non-retriable Produce errors fail some recommendations
 * for good. The runtime drops the failed batch and the later ones (their staged state too),
 * rewinds and processes their events again: every valid event ends with exactly replay's
 * recommendation (so no event was applied twice to its session: a second application would
 * change the session's later recommendations), duplicates are byte-identical, none is missing,
 * and the runtime keeps running and drains cleanly. */
static void delivery_failure_recovery(void **state, bool exactly_once)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_MOCK);
    /* Inputs and the DLQ led by broker 1, recommendations by broker 2: the errors pushed to
     * broker 2 hit the runtime's recommendations only, never the test's own producer. */
    for (int p = 0; p < 4; p++) {
        rd_kafka_mock_partition_set_leader(e->c.mock.mc, e->t_events, p, 1);
        rd_kafka_mock_partition_set_leader(e->c.mock.mc, e->t_recs, p, 2);
    }
    rd_kafka_mock_partition_set_leader(e->c.mock.mc, e->t_dlq, 0, 1);
    char cfg[300];
    write_config(e, "a", exactly_once
                 ? "kafka.producer.retry.backoff.ms=20\nbatch.max.events=16\n"
                   "processing.guarantee=exactly_once\ninstance.id=a\n"
                 : "kafka.producer.max.in.flight.requests.per.connection=1\n"
                   "kafka.producer.retry.backoff.ms=20\nbatch.max.events=16\n", cfg, sizeof cfg);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, 400, 0), 400);
    pid_t pid = start_run(e, cfg, "a");
    assert_true(wait_log(e, "a", "partitions assigned", 1, 30));
    /* Permanent errors: librdkafka fails the messages of each such request at once. */
    rd_kafka_mock_broker_push_request_error_rtts(e->c.mock.mc, 2, 0 /* Produce */, 4,
                                                 RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0,
                                                 RD_KAFKA_RESP_ERR_INVALID_RECORD, 0,
                                                 RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0,
                                                 RD_KAFKA_RESP_ERR_INVALID_RECORD, 0);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 400, e->fx.n, 0), 600);
    struct msgs ms = {0};
    int unmatched = 0, mismatched = 0, dups = 0, missing = N_VALID_RECS;
    for (double t0 = now_s(); missing > 0 && now_s() - t0 < 90;) {
        msgs_free(&ms);
        consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 30, 1500, &ms);
        check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    }
    fprintf(stderr, "recs %d: unmatched %d mismatched %d duplicates %d missing %d\n", ms.n,
            unmatched, mismatched, dups, missing);
    assert_int_equal(unmatched + mismatched + missing, 0);
    int differ = duplicates_differing(e, &ms);
    assert_int_equal(differ, 0);
    msgs_free(&ms);
    char log[300];
    snprintf(log, sizeof log, "%s/a.log", e->dir);
    fprintf(stderr, "delivery failures logged %d, recoveries %d\n", grep_count(log, "delivery failed"),
            grep_count(log, "recovered: processing again"));
    assert_true(grep_count(log, "delivery failed") >= 1);
    assert_true(grep_count(log, "recovered: processing again") >= 1);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
}

static void test_delivery_failure_recovery(void **state) { delivery_failure_recovery(state, false); }

/* The same under exactly_once: a failed delivery aborts the open transaction and its batches
 * are processed again (the mock accepts transactions without enforcing them, so the aborted
 * attempts stay visible here: duplicates are byte-identical, nothing is missing). */
static void test_delivery_failure_recovery_eos(void **state) { delivery_failure_recovery(state, true); }

/* Two runtimes in one group on 8 partitions: both get partitions; one is SIGKILLed; the other
 * takes its partitions over, restoring their sessions from the changelog: every valid event
 * has exactly replay's recommendation at the end, and a duplicate is byte-identical. */
static void test_two_processes_sigkill(void **state)
{
    struct env *e = *state;
    topics(e, 8, CLUSTER_ANY);
    char cfa[300], cfb[300];
    write_config(e, "a", "batch.max.events=8\n", cfa, sizeof cfa);
    write_config(e, "b", "batch.max.events=8\n", cfb, sizeof cfb);
    pid_t a = start_run(e, cfa, "a");
    assert_true(wait_log(e, "a", "partitions assigned count=8", 1, 30));
    pid_t b = start_run(e, cfb, "b");
    assert_true(wait_log(e, "b", "partitions assigned count=", 1, 60));
    assert_true(wait_log(e, "a", "partitions revoked", 1, 30));
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, 500, 0), 500);
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 8, 50, 60, 0, &ms);
    assert_true(ms.n >= 50);
    msgs_free(&ms);
    kill(a, SIGKILL);
    assert_int_equal(wait_child(a, 10), 128 + SIGKILL);
    e->pids[0] = 0;
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 500, e->fx.n, 0), 500);
    assert_true(wait_log(e, "b", "partitions assigned count=", 2, 60));
    consume_topic(e->c.bootstraps, e->t_recs, 8, N_VALID_RECS, 90, 3000, &ms);
    int unmatched, mismatched, dups, missing;
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    fprintf(stderr, "recs %d: unmatched %d mismatched %d duplicates %d missing %d\n", ms.n,
            unmatched, mismatched, dups, missing);
    assert_int_equal(unmatched + mismatched + missing, 0);
    assert_int_equal(duplicates_differing(e, &ms), 0);
    msgs_free(&ms);
    kill(b, SIGTERM);
    assert_int_equal(wait_child(b, 30), 0);
}

/* A state directory keeps applied offsets per partition of one group's input: `run` on
 * another input topic with the same state.dir is refused with one line naming both, instead
 * of skipping every event as "already applied"; a fresh state.dir then answers every event. */
static void test_state_dir_identity(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_ANY);
    char other[96], cfg[300], extra[200], log[300];
    cluster_name(&e->c, "events-other", other, sizeof other);
    assert_int_equal(cluster_topic_create(&e->c, other, 4), 0);
    assert_int_equal(produce_fixture(e->c.bootstraps, other, &e->fx, 0, 100, 0), 100);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    snprintf(extra, sizeof extra, "input.topic=%s\n", other);
    write_config(e, "a", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, 1, 60, 0, &ms);
    assert_true(ms.n >= 1);
    msgs_free(&ms);
    kill(pid, SIGTERM);
    assert_int_equal(wait_child(pid, 30), 0);
    e->pids[0] = 0;
    /* Same state.dir (config "a" again, now on the events topic). */
    write_config(e, "a", NULL, cfg, sizeof cfg);
    pid = start_run(e, cfg, "a");
    int rc = wait_child(pid, 30);
    e->pids[1] = 0;
    snprintf(log, sizeof log, "%s/a.log", e->dir);
    fprintf(stderr, "run on another topic with the same state.dir: exit %d, %d refusal line(s)\n", rc,
            grep_count(log, "holds the state of"));
    assert_true(rc > 0 && rc < 128);
    assert_int_equal(grep_count(log, "holds the state of"), 1);
}

static int run_replay(struct env *e, const char *cfg, const char *input, const char *output)
{
    char log[300];
    snprintf(log, sizeof log, "%s/replay.log", e->dir);
    const char *argv[] = {STREAMREC, "replay", "-c", cfg, "--input", input, "--output", output, NULL};
    return wait_child(spawn(argv, log), 120);
}

/* Reads a recommendations file; checks each against the golden file (items) and returns the
 * count; every source.offset must lie in [lo, hi). */
static int check_rec_file(struct env *e, const char *path, int64_t lo, int64_t hi, int *bad)
{
    FILE *f = fopen(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    *bad = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        const char *sid = json_string_value(json_object_get(j, "session_id"));
        json_t *src = json_object_get(j, "source");
        int64_t off = json_integer_value(json_object_get(src, "offset"));
        int k = sid ? expect_find(&e->ex, sid, json_integer_value(json_object_get(j, "event_timestamp_ms"))) : -1;
        char why[256];
        if (k < 0 || off < lo || off >= hi ||
            strcmp(json_string_value(json_object_get(src, "topic")), e->t_events) != 0)
            (*bad)++;
        else if (lo == 0 && rec_items_differ(e->ex.rec[k], j, why, sizeof why)) /* full range only */
            (*bad)++;
        json_decref(j);
        n++;
    }
    free(line);
    if (f)
        fclose(f);
    return n;
}

/* Reads a recommendations file into lines[partition][offset] (malloc'd copies; the caller frees
 * them): the comparison key of a recommendation is its source position. */
#define TR_MAX_OFF 1000
static int read_rec_lines(const char *path, char *lines[4][TR_MAX_OFF])
{
    FILE *f = fopen(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0;
    while (f && (len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        json_t *j = json_loads(line, 0, NULL);
        json_t *src = json_object_get(j, "source");
        int p = (int)json_integer_value(json_object_get(src, "partition"));
        int64_t off = json_integer_value(json_object_get(src, "offset"));
        json_decref(j);
        if (p < 0 || p >= 4 || off < 0 || off >= TR_MAX_OFF || lines[p][off])
            return -1;
        lines[p][off] = strdup(line);
        n++;
    }
    free(line);
    if (f)
        fclose(f);
    return n;
}

/* Trending and softmax sampling online equal a topic replay byte for byte, across a drain and a
 * restart on a fresh state.dir: the second process restores sessions and the trending sketches
 * from the changelog (DESIGN §4.6), so its answers continue the first one's. */
static void test_run_trending_matches_replay(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_ANY);
    const char *feat = "recs.trending=true\nrecs.trending.slots=2\nrecs.sampling=softmax\n"
                       "recs.sampling.candidates=30\n";
    char cfg_a[300], cfg_b[300], cfg_r[300], out[300], in[300], extra[300];
    write_config(e, "ta", feat, cfg_a, sizeof cfg_a);
    write_config(e, "tb", feat, cfg_b, sizeof cfg_b);
    snprintf(extra, sizeof extra, "%sstate.backend=memory\n", feat);
    write_config(e, "tr", extra, cfg_r, sizeof cfg_r);
    /* the first half, and how many recommendations it makes (a replay of it) */
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, 500, 0), 500);
    snprintf(out, sizeof out, "%s/half.jsonl", e->dir);
    snprintf(in, sizeof in, "topic:%s", e->t_events);
    assert_int_equal(run_replay(e, cfg_r, in, out), 0);
    static char *half[4][TR_MAX_OFF];
    int n_half = read_rec_lines(out, half);
    assert_true(n_half > 100);
    pid_t pid = start_run(e, cfg_a, "ta");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, n_half, 60, 300, &ms);
    assert_int_equal(ms.n, n_half);
    msgs_free(&ms);
    assert_int_equal(stop_run(e, pid, "ta", 30), 0);
    /* the rest, to a second process on a fresh state.dir: it restores from the changelog */
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 500, e->fx.n, 0),
                     e->fx.n - 500);
    pid = start_run(e, cfg_b, "tb");
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 90, 1000, &ms);
    assert_int_equal(stop_run(e, pid, "tb", 30), 0);
    snprintf(out, sizeof out, "%s/all.jsonl", e->dir);
    assert_int_equal(run_replay(e, cfg_r, in, out), 0);
    static char *all[4][TR_MAX_OFF];
    assert_int_equal(read_rec_lines(out, all), N_VALID_RECS);
    int differ = 0, trending = 0;
    for (int i = 0; i < ms.n; i++) {
        int p = atoi(ms.m[i].hdr[2]);
        long off = atol(ms.m[i].hdr[3]);
        const char *want = p >= 0 && p < 4 && off >= 0 && off < TR_MAX_OFF ? all[p][off] : NULL;
        if (!want || strlen(want) != ms.m[i].value_len ||
            memcmp(want, ms.m[i].value, ms.m[i].value_len)) {
            if (differ++ < 3)
                fprintf(stderr, "online [%d]@%ld differs:\n  %.*s\n  %s\n", p, off,
                        (int)ms.m[i].value_len, ms.m[i].value, want ? want : "(none)");
        }
        char *v = strndup(ms.m[i].value, ms.m[i].value_len);
        trending += v && strstr(v, "\"source\": \"trending\"") != NULL;
        free(v);
    }
    fprintf(stderr, "trending online: %d recs, %d differ from replay, %d with trending items\n",
            ms.n, differ, trending);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(differ, 0);
    /* nearly all: a partition's first recommendations may find only the session's own items */
    assert_true(trending > N_VALID_RECS * 9 / 10);
    msgs_free(&ms);
    for (int p = 0; p < 4; p++)
        for (int o = 0; o < TR_MAX_OFF; o++) {
            free(half[p][o]);
            free(all[p][o]);
        }
}

/* replay --input topic:... (whole topic, offsets, times with the timestamp-scan fallback of the
 * mock) and --output topic:... */
static void test_replay_topic(void **state)
{
    struct env *e = *state;
    topics(e, 1, CLUSTER_ANY);
    const int64_t ts0 = 1700000000000LL;
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, ts0), e->fx.n);
    char cfg[300], out[300], in[300];
    write_config(e, "r", "state.backend=memory\n", cfg, sizeof cfg);
    snprintf(out, sizeof out, "%s/all.jsonl", e->dir);
    snprintf(in, sizeof in, "topic:%s", e->t_events);
    assert_int_equal(run_replay(e, cfg, in, out), 0);
    int bad, n = check_rec_file(e, out, 0, 1000, &bad);
    assert_int_equal(n, N_VALID_RECS);
    assert_int_equal(bad, 0);

    snprintf(out, sizeof out, "%s/offsets.jsonl", e->dir);
    snprintf(in, sizeof in, "topic:%s@100..300", e->t_events);
    assert_int_equal(run_replay(e, cfg, in, out), 0);
    n = check_rec_file(e, out, 100, 300, &bad);
    assert_true(n > 50);
    assert_int_equal(bad, 0);

    /* Message i has timestamp ts0 + i s: lines [200, 400) by epoch ms, [500, end) by ISO time.
     * A real broker answers offsets_for_times from its time index, so no partition is scanned
     * from its beginning; the mock has no time index and the scan fallback is taken. */
    char log[300];
    snprintf(log, sizeof log, "%s/replay.log", e->dir);
    int scans0 = grep_count(log, "scanning the partition");
    snprintf(in, sizeof in, "topic:%s@%lld..%lld", e->t_events, (long long)(ts0 + 200000),
             (long long)(ts0 + 400000));
    snprintf(out, sizeof out, "%s/times.jsonl", e->dir);
    assert_int_equal(run_replay(e, cfg, in, out), 0);
    n = check_rec_file(e, out, 200, 400, &bad);
    assert_true(n > 50);
    assert_int_equal(bad, 0);
    /* 1700000000000 ms = 2023-11-14T22:13:20Z; + 500 s = 22:21:40 */
    snprintf(out, sizeof out, "%s/iso.jsonl", e->dir);
    snprintf(in, sizeof in, "topic:%s@2023-11-14T22:21:40Z", e->t_events);
    assert_int_equal(run_replay(e, cfg, in, out), 0);
    n = check_rec_file(e, out, 500, 1000, &bad);
    assert_true(n > 100);
    assert_int_equal(bad, 0);
    int scans = grep_count(log, "scanning the partition") - scans0;
    fprintf(stderr, "time-range replays: %d partition scans (%s)\n", scans,
            e->c.real ? "real broker: expected 0" : "mock: fallback expected");
    assert_true(e->c.real ? scans == 0 : scans > 0);

    /* File in, topic out. */
    snprintf(out, sizeof out, "topic:%s", e->t_recs);
    assert_int_equal(run_replay(e, cfg, FIXTURE, out), 0);
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 1, N_VALID_RECS, 30, 500, &ms);
    int unmatched, mismatched, dups, missing;
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(unmatched + mismatched + dups + missing, 0);
    msgs_free(&ms);
}

/* Poison messages never stop the stream: an ~1 MB undecodable message and a valid-looking event
 * whose session_id is ~1 MB (refused as too long), mixed with the fixture. Their dead letters
 * cannot go out whole (the DLQ copy's headers push them past the producer's message.max.bytes):
 * they go out truncated and flagged, every good event is answered exactly as replay answers it,
 * and the group's offsets reach the end of every partition. */
static void test_poison_messages(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_ANY);
    enum { BIG = 999000 };
    char *junk = malloc(BIG), *ev = malloc(BIG + 200);
    assert_non_null(junk);
    assert_non_null(ev);
    memset(junk, '{', BIG);
    int n = snprintf(ev, 200, "{\"event_type\": \"view\", \"item_id\": \"i1\", "
                              "\"timestamp_ms\": 1700000000000, \"session_id\": \"");
    memset(ev + n, 's', BIG - n - 2);
    memcpy(ev + BIG - 2, "\"}", 2);
    const char *extra[][2] = {{"enable.idempotence", "true"}, {NULL, NULL}};
    rd_kafka_t *p = client(e->c.bootstraps, RD_KAFKA_PRODUCER, extra);
    const char *hkey = "poison";
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(e->t_events), RD_KAFKA_V_PARTITION(1),
                                       RD_KAFKA_V_KEY(hkey, strlen(hkey)),
                                       RD_KAFKA_V_VALUE(junk, (size_t)BIG),
                                       RD_KAFKA_V_HEADER("origin", "test", 4),
                                       RD_KAFKA_V_TIMESTAMP(1234567890123LL),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END), 0);
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(e->t_events), RD_KAFKA_V_PARTITION(2),
                                       RD_KAFKA_V_VALUE(ev, (size_t)BIG),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END), 0);
    assert_int_equal(rd_kafka_flush(p, 30000), 0);
    rd_kafka_destroy(p);
    free(junk);
    free(ev);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    int port = free_port();
    char cfgx[128], cfg[300];
    snprintf(cfgx, sizeof cfgx, "metrics.listen=127.0.0.1:%d\n", port);
    write_config(e, "a", cfgx, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 90, 1000, &ms);
    int unmatched, mismatched, dups, missing;
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(unmatched + mismatched + dups + missing, 0);
    msgs_free(&ms);
    /* The dead letters: the fixture's 50 unchanged, and the two big ones truncated to fit. */
    struct msgs dl = {0};
    consume_topic(e->c.bootstraps, e->t_dlq, 1, N_INVALID + 2, 60, 500, &dl);
    assert_int_equal(dl.n, N_INVALID + 2);
    int truncated = 0;
    for (int i = 0; i < dl.n; i++)
        if (dl.m[i].value_len + dl.m[i].key_len <= 900000 && dl.m[i].value_len > 800000 &&
            (dl.m[i].value[0] == '{'))
            truncated++;
    assert_int_equal(truncated, 2);
    msgs_free(&dl);
    /* Offsets committed to the end of every partition: 1000 fixture events + 2. */
    int64_t sum = 0;
    int committed = 0;
    for (int i = 0; i < 200 && sum != e->fx.n + 2; i++, sleep_ms(100))
        sum = group_committed(e->c.bootstraps, e->group, e->t_events, 4, &committed);
    assert_int_equal(sum, e->fx.n + 2);
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
}

/* ---- model reload (DESIGN §3.3) ------------------------------------------ */



/* The first IPv4 address of this host outside 127.0.0.0/8 into out; 0 when there is none. */
static int non_loopback_ipv4(char *out, size_t n)
{
    struct ifaddrs *ifs, *i;
    int found = 0;
    if (getifaddrs(&ifs) != 0)
        return 0;
    for (i = ifs; i && !found; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
            (ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr) >> 24) != 127)
            found = inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out,
                              (socklen_t)n) != NULL;
    freeifaddrs(ifs);
    return found;
}

/* Waits until /metrics holds every needle (NULL-terminated); 1 when it did within timeout_s. */
static int wait_metrics(int port, double timeout_s, const char *const needles[])
{
    static char body[1 << 16];
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        int all = http_get(port, "/metrics", body, sizeof body) == 200;
        for (int i = 0; all && needles[i]; i++)
            all = strstr(body, needles[i]) != NULL;
        if (all)
            return 1;
        sleep_ms(50);
    }
    for (int i = 0; needles[i]; i++)
        if (!strstr(body, needles[i]))
            fprintf(stderr, "/metrics lacks: %s\n", needles[i]);
    return 0;
}

/* A copy of the test bundle at DIR/name with `version` in bundle.json. */
static void bundle_copy(struct env *e, const char *name, const char *version)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp -r %s %s/%s", BUNDLE, e->dir, name);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"gpt2-small-v1\"/\"%s\"/' %s/%s/bundle.json", version,
             e->dir, name);
    assert_int_equal(system(cmd), 0);
}

/* Rewrites DIR/name/bundle.json's version in place (new file, then rename over the old). */
static void bundle_set_version(struct env *e, const char *name, const char *from, const char *to)
{
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "sed 's/\"%s\"/\"%s\"/' %s/%s/bundle.json > %s/%s/bundle.json.new && "
             "mv %s/%s/bundle.json.new %s/%s/bundle.json", from, to, e->dir, name, e->dir, name,
             e->dir, name, e->dir, name);
    assert_int_equal(system(cmd), 0);
}

/* Points DIR/current at DIR/name atomically (a new link renamed over the old one). */
static void link_flip(struct env *e, const char *link, const char *name)
{
    char target[400], tmp[300], cur[300];
    snprintf(target, sizeof target, "%s/%s", e->dir, name);
    snprintf(tmp, sizeof tmp, "%s/%s.new", e->dir, link);
    snprintf(cur, sizeof cur, "%s/%s", e->dir, link);
    unlink(tmp);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(rename(tmp, cur), 0);
}

static void bundle_flip(struct env *e, const char *name) { link_flip(e, "current", name); }

/* The events topic's high watermarks (partitions < 8). */
static void high_marks(struct env *e, int partitions, int64_t *hi)
{
    rd_kafka_t *c = client(e->c.bootstraps, RD_KAFKA_CONSUMER, NULL);
    for (int p = 0; p < partitions; p++) {
        int64_t lo = -1;
        hi[p] = -1;
        assert_int_equal(rd_kafka_query_watermark_offsets(c, e->t_events, p, &lo, &hi[p], 10000), 0);
    }
    rd_kafka_destroy(c);
}

/* Produces fixture lines [from, to) and waits until the runtime committed all `to` events. */
static void produce_and_settle(struct env *e, int port, int from, int to)
{
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, from, to, 0), to - from);
    char committed[96];
    snprintf(committed, sizeof committed, "streamrec_events_committed_total %d\n", to);
    const char *const want[] = {committed, NULL};
    assert_true(wait_metrics(port, 60, want));
}

/* model.bundle is a symlink; the bundle is reloaded by a symlink flip, SIGHUP and POST
 * /admin/reload between bursts of events, then a bundle the graph cannot take (an op's column
 * missing) and a broken one (truncated tensor file) are refused, by the watch and by SIGHUP,
 * while the old one keeps serving. Every valid event has
 * exactly replay's recommendation (the copies have the same weights), exactly once, and each
 * carries the model_version live when its event was consumed. */
static void test_model_reload(void **state)
{
    struct env *e = *state;
    enum { P = 4 };
    topics(e, P, CLUSTER_ANY);
    bundle_copy(e, "b1", "gpt2-small-v1");
    bundle_copy(e, "b2", "gpt2-small-v2");
    bundle_copy(e, "broken", "gpt2-small-broken");
    bundle_copy(e, "nocat", "gpt2-small-nocat");
    char cmd[900];
    snprintf(cmd, sizeof cmd, "cut -f1,2,4 %s/items.tsv > %s/nocat/items.tsv", BUNDLE, e->dir);
    assert_int_equal(system(cmd), 0);
    char path[400], real[PATH_MAX];
    snprintf(path, sizeof path, "%s/broken/model.safetensors", e->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    bundle_flip(e, "b1");

    int port = free_port();
    char extra[800], cfg[300];
    /* an op that needs the bundle's `category` column (and drops no item) */
    snprintf(extra, sizeof extra, "model.bundle=%s/current\nmodel.watch.interval.ms=100\n"
             "metrics.listen=:%d\nbatch.max.events=16\ngraph.ops=nocat\n"
             "graph.op.nocat.type=drop_items\ngraph.op.nocat.attribute=category\n"
             "graph.op.nocat.values=no-such-category\n", e->dir, port);
    write_config(e, "a", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    assert_true(wait_log(e, "a", "partitions assigned", 1, 60));
    static char body[1 << 16];
    assert_int_equal(http_get(port, "/admin/reload", body, sizeof body), 405);  /* POST only */
    assert_int_equal(http_request("127.0.0.1", port, "POST", "/metrics", body, sizeof body), 405);
    /* metrics.listen binds every interface; the admin endpoint still answers loopback only */
    char ip[64];
    if (non_loopback_ipv4(ip, sizeof ip))
        assert_int_equal(http_request(ip, port, "POST", "/admin/reload", body, sizeof body), 403);
    else
        fprintf(stderr, "no IPv4 address outside loopback: the 403 for other peers is not checked\n");

    /* phase k's events [k*200, k*200+200) are answered by versions[k] */
    static const char *const versions[] = {"gpt2-small-v1", "gpt2-small-v2", "gpt2-small-v3",
                                           "gpt2-small-v4", "gpt2-small-v4"};
    int64_t bound[5][P];
    char info[PATH_MAX + 200], ok[96];
    for (int k = 0; k < 5; k++) {
        if (k == 1) {
            bundle_flip(e, "b2");                                        /* the watch */
        } else if (k == 2) {
            bundle_set_version(e, "b2", "gpt2-small-v2", "gpt2-small-v3");
            kill(pid, SIGHUP);
        } else if (k == 3) {
            bundle_set_version(e, "b2", "gpt2-small-v3", "gpt2-small-v4");
            assert_int_equal(http_request("127.0.0.1", port, "POST", "/admin/reload", body, sizeof body), 202);
        } else if (k == 4) {
            bundle_flip(e, "nocat");            /* the running graph cannot take it: refused */
            const char *const one[] = {"streamrec_model_reloads_total{result=\"refused\"} 1\n", NULL};
            assert_true(wait_metrics(port, 30, one));
            bundle_flip(e, "broken");                                    /* refused */
            const char *const two[] = {"streamrec_model_reloads_total{result=\"refused\"} 2\n", NULL};
            assert_true(wait_metrics(port, 30, two));
            kill(pid, SIGHUP);                                           /* refused again */
            const char *const three[] = {"streamrec_model_reloads_total{result=\"refused\"} 3\n", NULL};
            assert_true(wait_metrics(port, 30, three));
        }
        snprintf(path, sizeof path, "%s/%s", e->dir, k == 0 ? "b1" : "b2");
        assert_non_null(realpath(path, real));
        snprintf(info, sizeof info, "streamrec_model_info{version=\"%s\",bundle=\"%s\"} 1\n",
                 versions[k], real);
        snprintf(ok, sizeof ok, "streamrec_model_reloads_total{result=\"ok\"} %d\n", k < 4 ? k : 3);
        const char *const live[] = {info, ok, NULL};
        assert_true(wait_metrics(port, 30, live));
        produce_and_settle(e, port, k * 200, k * 200 + 200);
        high_marks(e, P, bound[k]);
    }
    assert_int_equal(kill(pid, 0), 0); /* SIGHUP never stops it */
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    /* each refusal names its first problem */
    assert_int_equal(wait_log(e, "a", "model reload refused", 3, 1), 1);
    assert_int_equal(wait_log(e, "a", "has no column 'category'", 1, 1), 1);
    assert_int_equal(wait_log(e, "a", "model.safetensors: tensor", 2, 1), 1);

    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, P, N_VALID_RECS, 60, 1000, &ms);
    int unmatched, mismatched, dups, missing, wrong_version = 0;
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    for (int i = 0; i < ms.n; i++) {
        int p = atoi(ms.m[i].hdr[2]), k = 0;
        long long off = atoll(ms.m[i].hdr[3]);
        assert_true(p >= 0 && p < P);
        while (k < 4 && off >= bound[k][p])
            k++;
        if (strcmp(ms.m[i].hdr[0], versions[k]) != 0 && wrong_version++ < 3)
            fprintf(stderr, "%d@%lld answered by %s, expected %s\n", p, off, ms.m[i].hdr[0],
                    versions[k]);
    }
    fprintf(stderr, "recs %d: unmatched %d mismatched %d duplicates %d missing %d wrong version %d\n",
            ms.n, unmatched, mismatched, dups, missing, wrong_version);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(unmatched + mismatched + dups + missing + wrong_version, 0);
    msgs_free(&ms);
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
}

/* A/B variants (DESIGN §4.5) across a reload: variant a follows model.bundle (a symlink), b has
 * a bundle of its own. A flip reloads both; /metrics, which reads the variants, is scraped
 * throughout the swap; every valid event is answered once, a's answers carry the new version
 * after the swap and b's the one it had. */
static void test_model_reload_variants(void **state)
{
    struct env *e = *state;
    enum { P = 4 };
    topics(e, P, CLUSTER_ANY);
    bundle_copy(e, "b1", "gpt2-small-v1");
    bundle_copy(e, "b2", "gpt2-small-v2");
    bundle_copy(e, "fixed", "gpt2-small-fixed");
    bundle_copy(e, "fixed2", "gpt2-small-fixed2");
    bundle_flip(e, "b1");
    link_flip(e, "vb", "fixed");
    int port = free_port();
    char extra[800], cfg[300];
    snprintf(extra, sizeof extra, "model.bundle=%s/current\nmodel.watch.interval.ms=100\n"
             "metrics.listen=127.0.0.1:%d\nbatch.max.events=16\nmodel.variants=a,b\n"
             "model.variant.b.bundle=%s/vb\n", e->dir, port, e->dir);
    write_config(e, "a", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    assert_true(wait_log(e, "a", "partitions assigned", 1, 60));
    produce_and_settle(e, port, 0, 500);
    int64_t bound[P];
    high_marks(e, P, bound);
    bundle_flip(e, "b2");
    static char body[1 << 16];
    for (int i = 0; i < 40; i++) /* scrape the variants while the graph is swapped */
        assert_int_equal(http_get(port, "/metrics", body, sizeof body), 200);
    const char *const live[] = {"streamrec_model_info{version=\"gpt2-small-v2\"",
                                "streamrec_model_reloads_total{result=\"ok\"} 1\n",
                                "variant=\"b\",model_version=\"gpt2-small-fixed\"", NULL};
    assert_true(wait_metrics(port, 30, live));
    produce_and_settle(e, port, 500, 750);
    /* variant b's own bundle path is watched too: its flip reloads, a keeps its bundle */
    int64_t bound_b[P];
    high_marks(e, P, bound_b);
    link_flip(e, "vb", "fixed2");
    const char *const live2[] = {"streamrec_model_reloads_total{result=\"ok\"} 2\n",
                                 "variant=\"b\",model_version=\"gpt2-small-fixed2\"", NULL};
    assert_true(wait_metrics(port, 30, live2));
    produce_and_settle(e, port, 750, 1000);

    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, P, N_VALID_RECS, 60, 1000, &ms);
    int unmatched, mismatched, dups, missing, wrong = 0, seen[2] = {0, 0};
    check_recs(&e->ex, &ms, 1, &unmatched, &mismatched, &dups, &missing);
    for (int i = 0; i < ms.n; i++) {
        json_t *j = json_loads(ms.m[i].value, 0, NULL);
        const char *v = json_string_value(json_object_get(j, "variant"));
        int p = atoi(ms.m[i].hdr[2]);
        long long off = atoll(ms.m[i].hdr[3]);
        const char *want = v && !strcmp(v, "b")
                               ? (off < bound_b[p] ? "gpt2-small-fixed" : "gpt2-small-fixed2")
                           : off < bound[p] ? "gpt2-small-v1" : "gpt2-small-v2";
        if (v)
            seen[strcmp(v, "b") == 0]++;
        if ((!v || strcmp(ms.m[i].hdr[0], want) != 0) && wrong++ < 3)
            fprintf(stderr, "%d@%lld variant %s answered by %s, expected %s\n", p, off,
                    v ? v : "(none)", ms.m[i].hdr[0], want);
        json_decref(j);
    }
    fprintf(stderr, "recs %d (a %d, b %d): unmatched %d mismatched %d duplicates %d missing %d "
            "wrong version %d\n", ms.n, seen[0], seen[1], unmatched, mismatched, dups, missing, wrong);
    assert_int_equal(ms.n, N_VALID_RECS);
    assert_int_equal(unmatched + mismatched + dups + missing + wrong, 0);
    assert_true(seen[0] > 0 && seen[1] > 0);
    msgs_free(&ms);
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
}

/* n events of distinct sessions g<first>..g<first+n-1>, the i-th at ts0 + i * 10 ms. */
static void session_events(struct fixture *f, int first, int n, int64_t ts0)
{
    memset(f, 0, sizeof *f);
    f->line = calloc((size_t)n, sizeof *f->line);
    f->len = calloc((size_t)n, sizeof *f->len);
    f->key = calloc((size_t)n, sizeof *f->key);
    for (int i = 0; i < n; i++) {
        char sid[32], line[256];
        snprintf(sid, sizeof sid, "g%d", first + i);
        int len = snprintf(line, sizeof line, "{\"session_id\": \"%s\", \"item_id\": "
                           "\"sku-9348258\", \"event_type\": \"view\", \"timestamp_ms\": %lld}",
                           sid, (long long)(ts0 + i * 10));
        f->line[i] = strdup(line);
        f->len[i] = (size_t)len;
        f->key[i] = strdup(sid);
    }
    f->n = n;
}

/* Waits for /metrics to show `want` (a whole line); 0 when it did. */
static int wait_metric(int port, const char *want, double timeout_s)
{
    static char body[1 << 16];
    char line[160];
    snprintf(line, sizeof line, "\n%s\n", want);
    for (double t0 = now_s(); now_s() - t0 < timeout_s; sleep_ms(50))
        if (http_get(port, "/metrics", body, sizeof body) == 200 && strstr(body, line))
            return 0;
    const char *s = strstr(body, "\nstreamrec_sessions ");
    fprintf(stderr, "no '%s' in /metrics (%.40s)\n", want, s ? s + 1 : "no streamrec_sessions");
    return -1;
}

/* streamrec_sessions follows the store after every batch: N distinct sessions show N, a second
 * event for each leaves N; on memory, an event session.ttl.ms * 10 later in event time sweeps
 * the expired ones out (the store stays bounded in a long run) and the gauge drops to 1. On
 * rocksdb the gauge is RocksDB's estimate: N for N sessions written once. */
static void sessions_gauge(void **state, const char *backend)
{
    struct env *e = *state;
    topics(e, 2, CLUSTER_ANY);
    int port = free_port();
    char extra[200], cfg[300];
    snprintf(extra, sizeof extra, "metrics.listen=127.0.0.1:%d\nstate.backend=%s\n"
             "session.ttl.ms=60000\n", port, backend);
    write_config(e, "a", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    const int64_t ts0 = 1763856000000LL;
    struct fixture f;
    session_events(&f, 0, 400, ts0);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &f, 0, f.n, 0), f.n);
    fixture_free(&f);
    assert_int_equal(wait_metric(port, "streamrec_events_consumed_total 400", 60), 0);
    assert_int_equal(wait_metric(port, "streamrec_sessions 400", 10), 0);
    if (!strcmp(backend, "memory")) {
        session_events(&f, 0, 400, ts0 + 5000); /* the same sessions again */
        assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &f, 0, f.n, 0), f.n);
        fixture_free(&f);
        assert_int_equal(wait_metric(port, "streamrec_events_consumed_total 800", 60), 0);
        assert_int_equal(wait_metric(port, "streamrec_sessions 400", 10), 0);
        session_events(&f, 1000, 1, ts0 + 600000); /* 10 min later: the 400 expire */
        assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &f, 0, f.n, 0), f.n);
        fixture_free(&f);
        assert_int_equal(wait_metric(port, "streamrec_events_consumed_total 801", 60), 0);
        assert_int_equal(wait_metric(port, "streamrec_sessions 1", 10), 0);
    }
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
}

static void test_sessions_gauge_memory(void **state) { sessions_gauge(state, "memory"); }
static void test_sessions_gauge_rocksdb(void **state) { sessions_gauge(state, "rocksdb"); }

static void produce_one_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    *(rd_kafka_resp_err_t *)opaque = m->err;
    if (m->err)
        fprintf(stderr, "produce %zu bytes: %s\n", m->len, rd_kafka_err2str(m->err));
}

/* Produces `value` (len bytes) to topic[partition] with an optional key; 0 when acknowledged. */
static int produce_one(const char *bootstraps, const char *topic, int32_t partition, const char *key,
                       const char *value, size_t len)
{
    char errstr[256];
    rd_kafka_resp_err_t dr = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_conf_set_dr_msg_cb(conf, produce_one_dr);
    rd_kafka_conf_set_opaque(conf, &dr);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "message.max.bytes", "20000000", errstr, sizeof errstr))
        return -1;
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p)
        return -1;
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "origin", -1, "test", 4);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_TIMESTAMP(1234567890123LL),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(h);
    int rc = e || rd_kafka_flush(p, 30000) || dr != RD_KAFKA_RESP_ERR_NO_ERROR ? -1 : 0;
    rd_kafka_destroy(p);
    return rc;
}

static int64_t end_offsets(const char *bootstraps, const char *topic, int partitions)
{
    rd_kafka_t *c = client(bootstraps, RD_KAFKA_PRODUCER, NULL);
    int64_t sum = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t lo = -1, hi = -1;
        assert_int_equal(rd_kafka_query_watermark_offsets(c, topic, p, &lo, &hi, 10000), 0);
        sum += hi;
    }
    rd_kafka_destroy(c);
    return sum;
}

/* Big records (DESIGN §8.10) after the fixture, once its events are answered: in partition 1
 * an undecodable one (key, header, timestamp), in 2 an event whose session_id is too long, in
 * 3 a valid event padded with an unknown field, each `big` bytes; then in each of them one more
 * valid event. Every good event is answered (the fixture's exactly as replay answers them, the
 * big valid one and the three after them once), the bad ones are counted and dead-lettered when
 * there is a DLQ, and the group's offsets reach the end of every partition. The mock cluster
 * keeps about 5 MiB per partition: a larger record evicts it whole and the message set
 * appended next is lost with it (librdkafka 2.0's mock), so there the runtime can only log and
 * count the records the broker removed (streamrec_partition_records_lost_total) and still
 * commit to the end. run_extra: more configuration (fetch limits below the record size make
 * the group's consumer stall on it: the stall probe reads it). */
static void big_records(void **state, size_t big, bool dlq, const char *run_extra)
{
    struct env *e = *state;
    e->events_max_bytes = 16L << 20;
    topics(e, 4, CLUSTER_ANY);
    bool mock_loses = !e->c.real && big > (5u << 20);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    int port = free_port();
    char cfgx[600], cfg[300];
    snprintf(cfgx, sizeof cfgx, "metrics.listen=127.0.0.1:%d\nruntime.stall.timeout.ms=2000\n%s%s",
             port, dlq ? "" : "dlq.topic=\n", run_extra ? run_extra : "");
    write_config(e, "a", cfgx, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 90, 0, &ms);
    assert_int_equal(ms.n, N_VALID_RECS);
    msgs_free(&ms);

    char *v = malloc(big);
    assert_non_null(v);
    memset(v, '{', big); /* undecodable */
    assert_int_equal(produce_one(e->c.bootstraps, e->t_events, 1, "poison", v, big), 0);
    int n = snprintf(v, 200, "{\"event_type\": \"view\", \"item_id\": \"i1\", "
                             "\"timestamp_ms\": 1700000000000, \"session_id\": \"");
    memset(v + n, 's', big - (size_t)n - 2);
    memcpy(v + big - 2, "\"}", 2); /* session_id too long */
    assert_int_equal(produce_one(e->c.bootstraps, e->t_events, 2, NULL, v, big), 0);
    const char *item = json_string_value(json_object_get(
        json_array_get(json_object_get(e->ex.rec[0], "items"), 0), "item_id"));
    assert_non_null(item);
    n = snprintf(v, 300, "{\"event_type\": \"view\", \"item_id\": \"%s\", \"timestamp_ms\": "
                         "1700000000000, \"session_id\": \"big-valid\", \"pad\": \"", item);
    memset(v + n, 'p', big - (size_t)n - 2);
    memcpy(v + big - 2, "\"}", 2); /* valid: unknown fields are ignored */
    assert_int_equal(produce_one(e->c.bootstraps, e->t_events, 3, "big-valid", v, big), 0);
    free(v);
    for (int p = 1; p <= 3; p++) {
        char sid[32], ev[300];
        snprintf(sid, sizeof sid, "after-%d", p);
        int len = snprintf(ev, sizeof ev, "{\"event_type\": \"view\", \"item_id\": \"%s\", "
                           "\"timestamp_ms\": 1700000001000, \"session_id\": \"%s\"}", item, sid);
        assert_int_equal(produce_one(e->c.bootstraps, e->t_events, p, sid, ev, (size_t)len), 0);
    }

    /* Every partition committed to its end: what the broker holds was consumed or skipped. */
    int64_t end = end_offsets(e->c.bootstraps, e->t_events, 4), sum = -1;
    int committed = 0;
    for (int i = 0; i < 600 && sum != end; i++, sleep_ms(100))
        sum = group_committed(e->c.bootstraps, e->group, e->t_events, 4, &committed);
    fprintf(stderr, "big %zu dlq %d: end offsets %lld, committed %lld%s\n", big, dlq,
            (long long)end, (long long)sum, mock_loses ? " (mock: records evicted)" : "");
    assert_int_equal(end, mock_loses ? e->fx.n + 6 : e->fx.n + 6);
    assert_int_equal(sum, end);

    int want = N_VALID_RECS + (mock_loses ? 0 : 4);
    consume_topic(e->c.bootstraps, e->t_recs, 4, want, 60, 1000, &ms);
    int extra_recs = 0;
    struct msgs fx = {0};
    for (int i = 0; i < ms.n; i++) {
        if (ms.m[i].key && (!strcmp(ms.m[i].key, "big-valid") || !strncmp(ms.m[i].key, "after-", 6))) {
            extra_recs++;
            continue;
        }
        if (fx.n == fx.cap) {
            fx.cap = fx.cap ? 2 * fx.cap : 1024;
            fx.m = realloc(fx.m, sizeof *fx.m * (size_t)fx.cap);
        }
        fx.m[fx.n++] = ms.m[i];
    }
    int unmatched, mismatched, dups, missing;
    check_recs(&e->ex, &fx, 1, &unmatched, &mismatched, &dups, &missing);
    fprintf(stderr, "recs %d (big and after: %d): unmatched %d mismatched %d duplicates %d "
            "missing %d\n", ms.n, extra_recs, unmatched, mismatched, dups, missing);
    assert_int_equal(unmatched + mismatched + dups + missing, 0);
    assert_int_equal(extra_recs, mock_loses ? 0 : 4);
    free(fx.m);
    msgs_free(&ms);

    if (dlq) { /* the fixture's 50 unchanged, the two big ones truncated to fit */
        struct msgs dl = {0};
        int want_dl = N_INVALID + (mock_loses ? 0 : 2);
        consume_topic(e->c.bootstraps, e->t_dlq, 1, want_dl, 60, 500, &dl);
        assert_int_equal(dl.n, want_dl);
        int truncated = 0;
        for (int i = 0; i < dl.n; i++)
            if (dl.m[i].value_len + dl.m[i].key_len <= 900000 && dl.m[i].value_len > 800000)
                truncated++;
        assert_int_equal(truncated, mock_loses ? 0 : 2);
        msgs_free(&dl);
    }
    static char body[1 << 16];
    assert_int_equal(http_get(port, "/metrics", body, sizeof body), 200);
    if (mock_loses) {
        assert_non_null(strstr(body, "streamrec_partition_records_lost_total{partition=\"1\"}"));
        assert_non_null(strstr(body, "streamrec_partition_records_lost_total{partition=\"3\"}"));
    } else {
        assert_non_null(strstr(body, "streamrec_events_invalid_total{reason=\"field_too_long\"} 1"));
        assert_non_null(strstr(body, "streamrec_events_invalid_total{reason=\"invalid_json\"} 16"));
        assert_null(strstr(body, "streamrec_partition_records_lost_total{"));
        assert_null(strstr(body, "streamrec_partition_records_skipped_total{"));
    }
    if (run_extra) { /* the fetch limits stalled the consumer: the probe read the records */
        assert_non_null(strstr(body, "streamrec_partition_stalls_total{"));
        char log[300];
        snprintf(log, sizeof log, "%s/a.log", e->dir);
        assert_true(grep_count(log, "record read with raised fetch limits") >= 3);
    }
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
}

static void test_big_records_1mb(void **state) { big_records(state, 1u << 20, true, NULL); }
static void test_big_records_1mb_no_dlq(void **state) { big_records(state, 1u << 20, false, NULL); }
static void test_big_records_10mb(void **state) { big_records(state, 10u << 20, true, NULL); }
static void test_big_records_10mb_no_dlq(void **state) { big_records(state, 10u << 20, false, NULL); }
/* 3 MiB records (the mock keeps them) above the group consumer's receive.message.max.bytes:
 * its fetches fail, the partitions stall, and the probe reads each record. */
static void test_big_records_stall(void **state)
{
    big_records(state, 3u << 20, true, "kafka.consumer.fetch.max.bytes=1000000\n"
                                       "kafka.consumer.receive.message.max.bytes=2000000\n");
}

/* A record the consumer and the probe are both told they cannot read (the mock answers every
 * Fetch with MSG_SIZE_TOO_LARGE for a while): the partition stalls, the record is skipped with
 * a dead-letter stub (streamrec.error=unreadable_oversized, source position, no value), counted,
 * and the partition goes on: the event after it is answered and the offsets reach the end. */
static void test_unreadable_record_skipped(void **state)
{
    struct env *e = *state;
    topics(e, 4, CLUSTER_MOCK);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &e->fx, 0, e->fx.n, 0), e->fx.n);
    int port = free_port();
    char cfgx[200], cfg[300];
    snprintf(cfgx, sizeof cfgx, "metrics.listen=127.0.0.1:%d\nruntime.stall.timeout.ms=2000\n", port);
    write_config(e, "a", cfgx, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");
    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS, 90, 0, &ms);
    assert_int_equal(ms.n, N_VALID_RECS);
    msgs_free(&ms);
    const char *item = json_string_value(json_object_get(
        json_array_get(json_object_get(e->ex.rec[0], "items"), 0), "item_id"));
    char ev[300];
    int len = snprintf(ev, sizeof ev, "{\"event_type\": \"view\", \"item_id\": \"%s\", "
                       "\"timestamp_ms\": 1700000001000, \"session_id\": \"lost-1\"}", item);
    enum { N_ERR = 400 };
    rd_kafka_resp_err_t errs[N_ERR];
    for (int i = 0; i < N_ERR; i++)
        errs[i] = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    rd_kafka_mock_push_request_errors_array(e->c.mock.mc, 1 /* Fetch */, N_ERR, errs);
    assert_int_equal(produce_one(e->c.bootstraps, e->t_events, 1, "lost-1", ev, (size_t)len), 0);
    int skipped = wait_log(e, "a", "record unreadable, skipped", 1, 60);
    rd_kafka_mock_clear_request_errors(e->c.mock.mc, 1);
    assert_true(skipped);
    len = snprintf(ev, sizeof ev, "{\"event_type\": \"view\", \"item_id\": \"%s\", "
                   "\"timestamp_ms\": 1700000002000, \"session_id\": \"after-1\"}", item);
    assert_int_equal(produce_one(e->c.bootstraps, e->t_events, 1, "after-1", ev, (size_t)len), 0);
    consume_topic(e->c.bootstraps, e->t_recs, 4, N_VALID_RECS + 1, 60, 500, &ms);
    int after = 0, lost = 0;
    for (int i = 0; i < ms.n; i++) {
        after += ms.m[i].key && !strcmp(ms.m[i].key, "after-1");
        lost += ms.m[i].key && !strcmp(ms.m[i].key, "lost-1");
    }
    msgs_free(&ms);
    assert_int_equal(after, 1);
    assert_int_equal(lost, 0);
    struct msgs dl = {0};
    consume_topic(e->c.bootstraps, e->t_dlq, 1, N_INVALID + 1, 60, 500, &dl);
    assert_int_equal(dl.n, N_INVALID + 1);
    int stubs = 0;
    for (int i = 0; i < dl.n; i++)
        if (!strcmp(dl.m[i].hdr[0], "unreadable_oversized")) {
            stubs++;
            assert_int_equal(dl.m[i].value_len, 0);
            assert_string_equal(dl.m[i].hdr[2], "1");
        }
    assert_int_equal(stubs, 1);
    msgs_free(&dl);
    int64_t sum = -1;
    int committed = 0;
    for (int i = 0; i < 300 && sum != e->fx.n + 2; i++, sleep_ms(100))
        sum = group_committed(e->c.bootstraps, e->group, e->t_events, 4, &committed);
    assert_int_equal(sum, e->fx.n + 2);
    static char body[1 << 16];
    assert_int_equal(http_get(port, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "streamrec_partition_records_skipped_total{partition=\"1\"} 1"));
    assert_non_null(strstr(body, "streamrec_partition_stalls_total{partition=\"1\"}"));
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_matches_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_variants_online, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_trending_matches_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_records_1mb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_records_1mb_no_dlq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_records_10mb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_records_10mb_no_dlq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_records_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_record_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_then_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_dir_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_during_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_failure_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_failure_recovery_eos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_processes_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_reload_variants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_gauge_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_gauge_rocksdb, setup, teardown),
    };
    return sr_run_tests(tests);
}
