/* test_run.c — `streamrec run` and topic replay on a real Kafka where the run has one, else on
 * librdkafka's mock cluster hosted in this process (kafka_test_util.h: cluster_start; the
 * fault-injection tests always use the mock). The runtimes are child processes:
 * recommendations equal `replay`'s for the same events (golden file), bad events in the DLQ
 * with their headers, metrics endpoints, SIGTERM drain + restart without loss or duplicate,
 * broker faults without loss, two processes in one group where one is SIGKILLed, and topic
 * replay by offsets and times. Each test has its own topics, group, config and state dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kafka_test_util.h"

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
    snprintf(extra, sizeof extra, "metrics.listen=127.0.0.1:%d\nkafka.statistics.interval.ms=200\n", port);
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
    assert_non_null(strstr(body, "streamrec_batch_size_bucket"));
    assert_non_null(strstr(body, "streamrec_stage_seconds_total{stage=\"encode\"}"));
    assert_non_null(strstr(body, "streamrec_model_info{version=\"gpt2-small-v1\"} 1"));
    assert_non_null(strstr(body, lag0));
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    assert_int_equal(http_get(port, "/readyz", body, sizeof body), 200);
    assert_int_equal(http_get(port, "/nope", body, sizeof body), 404);

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_matches_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_variants_online, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_then_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_dir_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_failure_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_failure_recovery_eos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_processes_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_gauge_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_gauge_rocksdb, setup, teardown),
    };
    return sr_run_tests(tests);
}
