/* kafka_test_util.h — helpers shared by the stream/ integration tests: the cluster a test runs
 * on (a real Kafka or librdkafka's in-process mock, with the test's own topics), producing the
 * fixture events keyed by session id, consuming a whole topic, spawning `streamrec` children,
 * a runtime test's environment (setup/teardown, configs) and matching recommendations against
 * the replay golden file. Header-only (static inline functions) to keep each test one
 * executable. */
#ifndef KAFKA_TEST_UTIL_H
#define KAFKA_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <jansson.h>

#include "sr_mock_broker.h" /* the embedded broker of streamrec broker/demo/bench e2e */

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FIXTURE SR_TEST_DATA "/gpt2-small.events.jsonl"
#define EXPECTED SR_TEST_DATA "/gpt2-small.events.expected.jsonl"
#define BUNDLE SR_TEST_DATA "/gpt2-small"
#define STREAMREC SR_BINARY_DIR "/stream/streamrec"

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- mock cluster ---------------------------------------------------------------------- */

struct mock {
    sr_mock_broker_t *mb;
    rd_kafka_mock_cluster_t *mc; /* of mb, for fault injection */
    char bootstraps[256];
};

static inline void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "mock: %s %s\n", fac, buf);
}

static inline int mock_start(struct mock *m, int brokers)
{
    struct sr_error err = {0};
    if (sr_mock_broker_start(brokers, &m->mb, &err) != SR_OK) {
        fprintf(stderr, "mock: %s\n", err.msg);
        return -1;
    }
    m->mc = sr_mock_broker_cluster(m->mb);
    snprintf(m->bootstraps, sizeof m->bootstraps, "%s", sr_mock_broker_bootstraps(m->mb));
    return 0;
}

static inline void mock_stop(struct mock *m)
{
    sr_mock_broker_stop(m->mb);
    memset(m, 0, sizeof *m);
}

static inline rd_kafka_t *client(const char *bootstraps, rd_kafka_type_t type, const char *extra[][2])
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof errstr);
    for (int i = 0; extra && extra[i][0]; i++)
        if (rd_kafka_conf_set(conf, extra[i][0], extra[i][1], errstr, sizeof errstr))
            fprintf(stderr, "conf %s: %s\n", extra[i][0], errstr);
    return rd_kafka_new(type, conf, errstr, sizeof errstr);
}

/* ---- the cluster a test runs on: a real Kafka or the mock ------------------------------
 *
 * SR_TEST_KAFKA=real|mock|auto (default auto) picks it. A real cluster is the one named by
 * SR_TEST_BOOTSTRAP (and SR_TEST_BOOTSTRAP_SASL for SCRAM-SHA-512 tests), else the suite's own
 * broker that the CTest fixture kafka_broker_start (kafka_fixture.sh) started and described in
 * SR_KAFKA_ENV_FILE. auto takes a real one when there is one, else the mock; real fails without
 * one. Tests that inject faults only the mock can inject ask for it (CLUSTER_MOCK), tests only
 * a real broker can pass ask for that (CLUSTER_REAL: skipped, with a message, on the mock).
 * On a real cluster every topic and group name gets a suffix unique to this test, so tests
 * share one broker without seeing each other's data; names keep the prefixes the broker's
 * ACLs grant to the streamrec user (events*, recommendations*, dlq*, streamrec*). */
enum cluster_need { CLUSTER_ANY, CLUSTER_MOCK, CLUSTER_REAL };

struct cluster {
    bool real;
    struct mock mock;
    char bootstraps[512];
    char sasl[512];          /* SASL_PLAINTEXT SCRAM-SHA-512 listener, "" when unknown */
    char suffix[48];         /* "" on the mock */
};

#ifndef SR_KAFKA_ENV_FILE
#define SR_KAFKA_ENV_FILE ""
#endif

/* Reads bootstrap.servers[.sasl]=... lines written by kafka_fixture.sh; 0 when found. */
static inline int cluster_env_file(struct cluster *c)
{
    FILE *f = SR_KAFKA_ENV_FILE[0] ? fopen(SR_KAFKA_ENV_FILE, "r") : NULL;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strncmp(line, "bootstrap.servers.sasl=", 23))
            snprintf(c->sasl, sizeof c->sasl, "%s", line + 23);
        else if (!strncmp(line, "bootstrap.servers=", 18))
            snprintf(c->bootstraps, sizeof c->bootstraps, "%s", line + 18);
    }
    if (f)
        fclose(f);
    return c->bootstraps[0] ? 0 : -1;
}

/* Starts (mock) or finds (real) the cluster for one test. Returns 0, -1 on failure (message
 * on stderr), 77 when the test needs what this run does not have (the caller skips). */
static inline int cluster_start(struct cluster *c, int mock_brokers, enum cluster_need need)
{
    static int seq;
    const char *mode = getenv("SR_TEST_KAFKA");
    mode = mode && *mode ? mode : "auto";
    memset(c, 0, sizeof *c);
    bool want_real = strcmp(mode, "mock") != 0 && need != CLUSTER_MOCK;
    if (want_real) {
        const char *bs = getenv("SR_TEST_BOOTSTRAP"), *sasl = getenv("SR_TEST_BOOTSTRAP_SASL");
        if (bs && *bs) {
            snprintf(c->bootstraps, sizeof c->bootstraps, "%s", bs);
            snprintf(c->sasl, sizeof c->sasl, "%s", sasl ? sasl : "");
        } else if (cluster_env_file(c) != 0 && !strcmp(mode, "real")) {
            fprintf(stderr, "SR_TEST_KAFKA=real but no broker: set SR_TEST_BOOTSTRAP or run the "
                            "kafka_broker_start fixture (%s is missing)\n", SR_KAFKA_ENV_FILE);
            return -1;
        }
        c->real = c->bootstraps[0] != 0;
    }
    if (need == CLUSTER_REAL && !c->real) {
        fprintf(stderr, "broker: none real in this run (SR_TEST_KAFKA=%s): skipped, this test "
                        "needs a real Kafka\n", mode);
        return 77;
    }
    if (c->real) {
        snprintf(c->suffix, sizeof c->suffix, "-%ld-%d-%d", (long)time(NULL) % 100000,
                 (int)getpid(), ++seq);
        fprintf(stderr, "broker: real Kafka at %s\n", c->bootstraps);
        return 0;
    }
    if (mock_start(&c->mock, mock_brokers) != 0)
        return -1;
    snprintf(c->bootstraps, sizeof c->bootstraps, "%s", c->mock.bootstraps);
    fprintf(stderr, "broker: librdkafka mock cluster (%d brokers)%s\n", mock_brokers,
            need == CLUSTER_MOCK ? ", for its fault injection" : "");
    return 0;
}

static inline void cluster_stop(struct cluster *c)
{
    mock_stop(&c->mock);
    c->real = false;
}

/* The cluster's name for a test's topic or group: base + the test's suffix. */
static inline const char *cluster_name(const struct cluster *c, const char *base, char *out, size_t n)
{
    snprintf(out, n, "%s%s", base, c->suffix);
    return out;
}

/* Creates topic `name` (already suffixed) with `partitions` partitions and waits until every
 * partition has a leader; on a real cluster the topic gets max.message.bytes=max_bytes and
 * segment.bytes=2*max_bytes when max_bytes > 0 (the mock has no limit). 0 on success. */
static inline int cluster_topic_create_max(struct cluster *c, const char *name, int partitions,
                                           long max_bytes)
{
    struct sr_error err = {0};
    if (!c->real)
        return sr_mock_broker_topic_create(c->mock.mb, name, partitions, 1, &err) ? -1 : 0;
    rd_kafka_t *rk = client(c->bootstraps, RD_KAFKA_PRODUCER, NULL);
    char errstr[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, errstr, sizeof errstr);
    if (max_bytes > 0) { /* and segments that hold such a record (kafka-local.sh: 1 MiB) */
        char v[32], seg[32];
        snprintf(v, sizeof v, "%ld", max_bytes);
        snprintf(seg, sizeof seg, "%ld", 2 * max_bytes);
        rd_kafka_NewTopic_set_config(nt, "max.message.bytes", v);
        rd_kafka_NewTopic_set_config(nt, "segment.bytes", seg);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (res) {
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        rd_kafka_resp_err_t e = cnt == 1 ? rd_kafka_topic_result_error(tr[0]) : rd_kafka_event_error(ev);
        rc = e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS ? -1 : 0;
        if (rc)
            fprintf(stderr, "create topic %s: %s\n", name, rd_kafka_err2str(e));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    for (double t0 = now_s(); rc == 0 && now_s() - t0 < 30; sleep_ms(100)) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int ready = 0;
        if (!rd_kafka_metadata(rk, 0, rkt, &md, 5000) && md->topic_cnt == 1 && !md->topics[0].err &&
            md->topics[0].partition_cnt == partitions) {
            ready = 1;
            for (int p = 0; p < partitions; p++)
                ready &= md->topics[0].partitions[p].leader >= 0 && !md->topics[0].partitions[p].err;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (ready)
            break;
    }
    rd_kafka_destroy(rk);
    return rc;
}

static inline int cluster_topic_create(struct cluster *c, const char *name, int partitions)
{
    return cluster_topic_create_max(c, name, partitions, 0);
}

/* ---- fixture events -------------------------------------------------------------------- */

struct fixture {
    int n;
    char **line;
    size_t *len;
    char **key; /* session_id or NULL */
};

static inline void fixture_load(struct fixture *f)
{
    FILE *fp = fopen(FIXTURE, "rb");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    memset(f, 0, sizeof *f);
    f->line = calloc(2048, sizeof *f->line);
    f->len = calloc(2048, sizeof *f->len);
    f->key = calloc(2048, sizeof *f->key);
    while (fp && (len = getline(&line, &cap, fp)) >= 0 && f->n < 2048) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        f->line[f->n] = malloc((size_t)len + 1);
        memcpy(f->line[f->n], line, (size_t)len);
        f->line[f->n][len] = 0;
        f->len[f->n] = (size_t)len;
        json_t *j = json_loadb(line, (size_t)len, 0, NULL);
        json_t *sid = j ? json_object_get(j, "session_id") : NULL;
        if (sid && json_is_string(sid))
            f->key[f->n] = strdup(json_string_value(sid));
        json_decref(j);
        f->n++;
    }
    free(line);
    if (fp)
        fclose(fp);
}

static inline void fixture_free(struct fixture *f)
{
    for (int i = 0; i < f->n; i++) {
        free(f->line[i]);
        free(f->key[i]);
    }
    free(f->line);
    free(f->len);
    free(f->key);
}

/* Produces lines [from, to) keyed by session id (NULL key for lines without one); message
 * timestamps are ts0 + i * 1000 when ts0 > 0. Returns the number acknowledged. */
static inline int produce_fixture(const char *bootstraps, const char *topic, const struct fixture *f,
                           int from, int to, int64_t ts0)
{
    /* Idempotent with one request in flight: a retried request (the mock's injected Produce
     * errors reach this producer too) never reorders a partition's events behind later ones,
     * which would change the sessions and so the expected recommendations. */
    const char *extra[][2] = {{"linger.ms", "5"}, {"enable.idempotence", "true"},
                              {"max.in.flight.requests.per.connection", "1"}, {NULL, NULL}};
    rd_kafka_t *p = client(bootstraps, RD_KAFKA_PRODUCER, extra);
    int ok = 0;
    for (int i = from; i < to && p; i++) {
        rd_kafka_resp_err_t e;
        do {
            e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_KEY(f->key[i], f->key[i] ? strlen(f->key[i]) : 0),
                                  RD_KAFKA_V_VALUE(f->line[i], f->len[i]),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_TIMESTAMP(ts0 > 0 ? ts0 + (int64_t)i * 1000 : 0),
                                  RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(p, 10);
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (!e)
            ok++;
    }
    if (p) {
        if (rd_kafka_flush(p, 30000))
            ok = -1;
        rd_kafka_destroy(p);
    }
    return ok;
}

/* ---- consuming a topic ----------------------------------------------------------------- */

struct msg {
    char *key, *value;
    size_t key_len, value_len;
    int32_t partition;
    int64_t offset;
    char hdr[5][128]; /* error/model.version, source.topic, source.partition, source.offset,
                       * variant */
};

struct msgs {
    int n, cap;
    struct msg *m;
};

static inline void msgs_free(struct msgs *ms)
{
    for (int i = 0; i < ms->n; i++) {
        free(ms->m[i].key);
        free(ms->m[i].value);
    }
    free(ms->m);
    memset(ms, 0, sizeof *ms);
}

static inline void header_copy(const rd_kafka_message_t *rm, const char *name, char out[128])
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t n;
    out[0] = 0;
    if (rd_kafka_message_headers(rm, &h) || rd_kafka_header_get_last(h, name, &v, &n))
        return;
    if (n > 127)
        n = 127;
    memcpy(out, v, n);
    out[n] = 0;
}

/* Reads every partition of topic from the beginning until `want` messages arrived (then
 * `settle_ms` more, to catch duplicates) or timeout_s passed. The caller frees ms. */
static int consume_read_committed; /* 1: consume_topic reads as isolation.level=read_committed */

static inline void consume_topic(const char *bootstraps, const char *topic, int partitions, int want,
                          double timeout_s, int settle_ms, struct msgs *ms)
{
    const char *extra[][2] = {{"fetch.wait.max.ms", "10"}, {"enable.partition.eof", "false"},
                              {"group.id", "test-reader"}, {"enable.auto.commit", "false"},
                              {"isolation.level", consume_read_committed ? "read_committed"
                                                                         : "read_uncommitted"},
                              {NULL, NULL}};
    rd_kafka_t *c = client(bootstraps, RD_KAFKA_CONSUMER, extra);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    double t0 = now_s(), done_at = 0;
    while (now_s() - t0 < timeout_s) {
        if (ms->n >= want && !done_at)
            done_at = now_s();
        if (done_at && (now_s() - done_at) * 1000 >= settle_ms)
            break;
        rd_kafka_message_t *rm = rd_kafka_consumer_poll(c, 50);
        if (!rm)
            continue;
        if (!rm->err) {
            if (ms->n == ms->cap) {
                ms->cap = ms->cap ? 2 * ms->cap : 1024;
                ms->m = realloc(ms->m, sizeof *ms->m * (size_t)ms->cap);
            }
            struct msg *m = &ms->m[ms->n++];
            memset(m, 0, sizeof *m);
            m->key = rm->key ? strndup(rm->key, rm->key_len) : NULL;
            m->key_len = rm->key_len;
            m->value = malloc(rm->len + 1);
            memcpy(m->value, rm->payload ? rm->payload : "", rm->len);
            m->value[rm->len] = 0;
            m->value_len = rm->len;
            m->partition = rm->partition;
            m->offset = rm->offset;
            header_copy(rm, "streamrec.source.topic", m->hdr[1]);
            header_copy(rm, "streamrec.source.partition", m->hdr[2]);
            header_copy(rm, "streamrec.source.offset", m->hdr[3]);
            header_copy(rm, "streamrec.error", m->hdr[0]);
            header_copy(rm, "streamrec.variant", m->hdr[4]);
            if (!m->hdr[0][0])
                header_copy(rm, "streamrec.model.version", m->hdr[0]);
        }
        rd_kafka_message_destroy(rm);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

/* ---- expected recommendations ----------------------------------------------------------- */

struct expect {
    int n;
    char **sid;
    int64_t *ts;
    json_t **rec;
    int *seen;
};

static inline void expect_load(struct expect *e, const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    memset(e, 0, sizeof *e);
    e->sid = calloc(4096, sizeof *e->sid);
    e->ts = calloc(4096, sizeof *e->ts);
    e->rec = calloc(4096, sizeof *e->rec);
    e->seen = calloc(4096, sizeof *e->seen);
    while (fp && getline(&line, &cap, fp) > 0 && e->n < 4096) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            continue;
        e->sid[e->n] = strdup(json_string_value(json_object_get(j, "session_id")));
        e->ts[e->n] = json_integer_value(json_object_get(j, "event_timestamp_ms"));
        e->rec[e->n] = j;
        e->n++;
    }
    free(line);
    if (fp)
        fclose(fp);
}

static inline void expect_free(struct expect *e)
{
    for (int i = 0; i < e->n; i++) {
        free(e->sid[i]);
        json_decref(e->rec[i]);
    }
    free(e->sid);
    free(e->ts);
    free(e->rec);
    free(e->seen);
}

static inline int expect_find(const struct expect *e, const char *sid, int64_t ts)
{
    for (int i = 0; i < e->n; i++)
        if (e->ts[i] == ts && !strcmp(e->sid[i], sid))
            return i;
    return -1;
}

static inline int close_enough(double a, double b)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) <= 1e-4 * (m > 1 ? m : 1);
}

/* Items and scores as tests/gen/compare_recs.py compares them (a differing item is accepted
 * where the expected score at that rank ties another expected item's). 0 when they match. */
static inline int rec_items_differ(json_t *exp, json_t *act, char *why, size_t wn)
{
    json_t *ei = json_object_get(exp, "items"), *ai = json_object_get(act, "items");
    if (json_array_size(ei) != json_array_size(ai)) {
        snprintf(why, wn, "%zu items, expected %zu", json_array_size(ai), json_array_size(ei));
        return 1;
    }
    for (size_t r = 0; r < json_array_size(ei); r++) {
        json_t *e = json_array_get(ei, r), *a = json_array_get(ai, r);
        double es = json_number_value(json_object_get(e, "score"));
        double as = json_number_value(json_object_get(a, "score"));
        if (!close_enough(es, as)) {
            snprintf(why, wn, "rank %zu: score %.9g, expected %.9g", r, as, es);
            return 1;
        }
        const char *eid = json_string_value(json_object_get(e, "item_id"));
        const char *aid = json_string_value(json_object_get(a, "item_id"));
        if (strcmp(eid, aid) != 0) {
            int tie = 0;
            for (size_t q = 0; q < json_array_size(ei); q++) {
                json_t *x = json_array_get(ei, q);
                if (!strcmp(json_string_value(json_object_get(x, "item_id")), aid) &&
                    close_enough(json_number_value(json_object_get(x, "score")), es))
                    tie = 1;
            }
            if (!tie) {
                snprintf(why, wn, "rank %zu: item %s, expected %s", r, aid, eid);
                return 1;
            }
        }
    }
    return 0;
}

/* Checks recommendations against the golden file: every message matches an expected one
 * (session_id + event_timestamp_ms) with the same items; counts go to the out-params.
 * exact_items = 0 skips the item comparison (state moved between processes). */
static inline void check_recs(struct expect *e, const struct msgs *ms, int exact_items, int *unmatched,
                       int *mismatched, int *duplicates, int *missing)
{
    *unmatched = *mismatched = *duplicates = *missing = 0;
    memset(e->seen, 0, sizeof(int) * 4096);
    for (int i = 0; i < ms->n; i++) {
        json_t *j = json_loads(ms->m[i].value, 0, NULL);
        const char *sid = j ? json_string_value(json_object_get(j, "session_id")) : NULL;
        int k = sid ? expect_find(e, sid, json_integer_value(json_object_get(j, "event_timestamp_ms"))) : -1;
        if (k < 0) {
            if (*unmatched < 3)
                fprintf(stderr, "unmatched recommendation: %.200s\n", ms->m[i].value);
            (*unmatched)++;
        } else {
            char why[256];
            if (e->seen[k]++)
                (*duplicates)++;
            if (!ms->m[i].key || strcmp(ms->m[i].key, sid) != 0) {
                fprintf(stderr, "recommendation key %s, expected %s\n", ms->m[i].key ? ms->m[i].key : "(null)", sid);
                (*mismatched)++;
            } else if (exact_items && rec_items_differ(e->rec[k], j, why, sizeof why)) {
                if (*mismatched < 3)
                    fprintf(stderr, "mismatch %s@%lld: %s\n", sid, (long long)e->ts[k], why);
                (*mismatched)++;
            }
        }
        json_decref(j);
    }
    for (int k = 0; k < e->n; k++)
        if (!e->seen[k])
            (*missing)++;
}

/* ---- child processes -------------------------------------------------------------------- */

static inline pid_t spawn(const char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (log_path) {
            FILE *f = freopen(log_path, "a", stderr);
            (void)f;
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits for a child; returns its exit code, 128 + signal, or -1 on timeout (then kills it). */
static inline int wait_child(pid_t pid, double timeout_s)
{
    double t0 = now_s();
    int st;
    while (now_s() - t0 < timeout_s) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static inline int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(s, (struct sockaddr *)&a, &len) != 0) {
        close(s);
        return 19464;
    }
    close(s);
    return ntohs(a.sin_port);
}

/* METHOD path to addr:port (an IPv4 address of this host; HTTP/1.0, empty body); returns the
 * status code (the response in buf), or -1. */
static inline int http_request(const char *addr, int port, const char *method, const char *path,
                               char *buf, size_t cap)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: x\r\n%s\r\n", method, path,
                     strcmp(method, "GET") ? "Content-Length: 0\r\n" : "");
    if (inet_pton(AF_INET, addr, &a.sin_addr) != 1 || connect(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        write(s, req, (size_t)n) != n) {
        close(s);
        return -1;
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(s, buf + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = 0;
    close(s);
    int status = -1;
    return sscanf(buf, "HTTP/1.%*d %d", &status) == 1 ? status : -1;
}

static inline int http_get(int port, const char *path, char *buf, size_t cap)
{
    return http_request("127.0.0.1", port, "GET", path, buf, cap);
}

/* Counts lines of a file containing needle. */
static inline int grep_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (f && getline(&line, &cap, f) > 0)
        if (strstr(line, needle))
            n++;
    free(line);
    if (f)
        fclose(f);
    return n;
}

#ifdef SR_SOURCE_DIR
#define SR_SOURCE_DIR_OR_EMPTY SR_SOURCE_DIR
#else
#define SR_SOURCE_DIR_OR_EMPTY "."
#endif
/* kafka-local.sh CMD DIR; for start, the PLAINTEXT bootstrap goes to out. 0 on success. */
static inline int kafka_local(const char *cmd, const char *dir, char *out, size_t n)
{
    char line[1200];
    snprintf(line, sizeof line, "bash %s/deploy/kafka/kafka-local.sh %s %s 2>%s/%s.err", SR_SOURCE_DIR_OR_EMPTY,
             cmd, dir, dir, cmd);
    FILE *p = popen(line, "r");
    if (!p)
        return -1;
    char buf[512];
    while (fgets(buf, sizeof buf, p))
        if (out && !strncmp(buf, "bootstrap.servers=", 18)) {
            buf[strcspn(buf, "\r\n")] = 0;
            snprintf(out, n, "%s", buf + 18);
        }
    return pclose(p) == 0 ? 0 : -1;
}

/* ---- a runtime test's environment (CMocka setup/teardown) ------------------------------
 * The fixture events and the golden recommendations, a temp directory for configs, logs and
 * state, the cluster with the test's topics and group, and the `streamrec run` children
 * (SIGKILLed at teardown if still running). SR_TEST_KEEP=1 keeps the directory. */
#define N_VALID_RECS 781
#define N_INVALID 50

struct env {
    pid_t pids[32];
    int n_pids;
    struct cluster c;
    char t_events[96], t_recs[96], t_dlq[96], group[96];
    struct fixture fx;
    struct expect ex;
    char dir[256];
    char broker_dir[300];    /* a broker of the test's own (kafka-local.sh), stopped at teardown */
    long events_max_bytes;   /* > 0: the events topic's max.message.bytes on a real cluster */
};

static inline int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/sr_test_run.XXXXXX");
    if (!mkdtemp(e->dir))
        return -1;
    fixture_load(&e->fx);
    expect_load(&e->ex, EXPECTED);
    if (e->fx.n != 1000 || e->ex.n != N_VALID_RECS)
        return -1;
    *state = e;
    return 0;
}

static inline int teardown(void **state)
{
    struct env *e = *state;
    for (int i = 0; i < e->n_pids; i++)
        if (e->pids[i] > 0 && kill(e->pids[i], SIGKILL) == 0)
            waitpid(e->pids[i], NULL, 0);
    cluster_stop(&e->c);
    if (e->broker_dir[0])
        kafka_local("stop", e->broker_dir, NULL, 0);
    fixture_free(&e->fx);
    expect_free(&e->ex);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    if (getenv("SR_TEST_KEEP"))
        fprintf(stderr, "kept %s\n", e->dir);
    else if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", e->dir);
    free(e);
    return 0;
}

/* Writes DIR/NAME.properties for a runtime with its own state dir; extra lines appended. */
static inline void write_config(struct env *e, const char *name, const char *extra, char *path, size_t n)
{
    snprintf(path, n, "%s/%s.properties", e->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "model.bundle=%s\n"
            "state.dir=%s/state-%s\n"
            "kafka.bootstrap.servers=%s\n"
            "input.topic=%s\noutput.topic=%s\ndlq.topic=%s\n"
            "kafka.group.id=%s\n"
            "kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
            "kafka.fetch.wait.max.ms=10\nkafka.auto.commit.interval.ms=100\n"
            "kafka.reconnect.backoff.ms=10\nkafka.reconnect.backoff.max.ms=200\n"
            "kafka.topic.metadata.refresh.interval.ms=1000\n"
            "batch.max.wait.ms=5\n"
            "metrics.listen=\nlog.level=info\n%s",
            BUNDLE, e->dir, name, e->c.bootstraps, e->t_events, e->t_recs, e->t_dlq, e->group,
            extra ? extra : "");
    fclose(f);
}

/* Prints the last lines of DIR/NAME.log (a child that did not end as expected). */
static inline void log_tail(struct env *e, const char *name)
{
    char cmd[1200];
    /* a sanitizer's report first: its head (what and where) is what a tail would cut off */
    snprintf(cmd, sizeof cmd, "grep -q -e '^==[0-9]*==ERROR' -e 'runtime error:' %s/%s.log && "
             "{ echo '--- %s.log (sanitizer report)'; grep -m1 -A40 -e '^==[0-9]*==ERROR' -e "
             "'runtime error:' %s/%s.log; }; echo '--- %s.log (tail)'; tail -25 %s/%s.log",
             e->dir, name, name, e->dir, name, name, e->dir, name);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

/* SIGTERM, then the exit status within timeout_s (printing the log's tail unless 0). */
static inline int stop_run(struct env *e, pid_t pid, const char *name, double timeout_s)
{
    kill(pid, SIGTERM);
    int rc = wait_child(pid, timeout_s);
    if (rc != 0)
        log_tail(e, name);
    for (int i = 0; i < e->n_pids; i++)
        if (e->pids[i] == pid)
            e->pids[i] = 0;
    return rc;
}

static inline pid_t start_run(struct env *e, const char *cfg, const char *name)
{
    char log[300];
    snprintf(log, sizeof log, "%s/%s.log", e->dir, name);
    const char *argv[] = {STREAMREC, "run", "-c", cfg, NULL};
    pid_t pid = spawn(argv, log);
    assert_true(pid > 0);
    e->pids[e->n_pids++] = pid;
    return pid;
}

/* The test's cluster (see cluster_start) and its topics events, recommendations (same
 * partition count) and dlq (1 partition). Skips the test when it needs what the run lacks. */
static inline void topics(struct env *e, int partitions, enum cluster_need need)
{
    int rc = cluster_start(&e->c, 3, need);
    if (rc == 77)
        skip();
    assert_int_equal(rc, 0);
    cluster_name(&e->c, "events", e->t_events, sizeof e->t_events);
    cluster_name(&e->c, "recommendations", e->t_recs, sizeof e->t_recs);
    cluster_name(&e->c, "dlq", e->t_dlq, sizeof e->t_dlq);
    cluster_name(&e->c, "streamrec-test", e->group, sizeof e->group);
    assert_int_equal(cluster_topic_create_max(&e->c, e->t_events, partitions, e->events_max_bytes), 0);
    assert_int_equal(cluster_topic_create(&e->c, e->t_recs, partitions), 0);
    assert_int_equal(cluster_topic_create(&e->c, e->t_dlq, 1), 0);
    /* The runtime creates its state changelog on a real broker; librdkafka 2.0's mock has no
     * CreateTopics, so the test creates it there (co-partitioned with the input). */
    if (!e->c.real) {
        char cl[160];
        snprintf(cl, sizeof cl, "%s-sessions-changelog", e->group);
        assert_int_equal(cluster_topic_create(&e->c, cl, partitions), 0);
    }
}

static inline int wait_log(struct env *e, const char *name, const char *needle, int count, double timeout_s)
{
    char log[300];
    snprintf(log, sizeof log, "%s/%s.log", e->dir, name);
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        if (grep_count(log, needle) >= count)
            return 1;
        sleep_ms(50);
    }
    return 0;
}

/* Counts recommendations that repeat an earlier one for the same event (session_id +
 * event_timestamp_ms) with other bytes (key, value or source headers): 0 when every duplicate
 * is byte-identical to the first delivery. */
static inline int duplicates_differing(struct env *e, const struct msgs *ms)
{
    int *first = malloc(sizeof *first * (size_t)e->ex.n), differ = 0;
    for (int k = 0; k < e->ex.n; k++)
        first[k] = -1;
    for (int i = 0; i < ms->n; i++) {
        json_t *j = json_loads(ms->m[i].value, 0, NULL);
        const char *sid = json_string_value(json_object_get(j, "session_id"));
        int k = sid ? expect_find(&e->ex, sid, json_integer_value(json_object_get(j, "event_timestamp_ms"))) : -1;
        json_decref(j);
        if (k < 0)
            continue;
        if (first[k] < 0) {
            first[k] = i;
            continue;
        }
        const struct msg *a = &ms->m[first[k]], *b = &ms->m[i];
        if (a->value_len != b->value_len || memcmp(a->value, b->value, a->value_len) != 0 ||
            !a->key || !b->key || strcmp(a->key, b->key) != 0 || strcmp(a->hdr[2], b->hdr[2]) != 0 ||
            strcmp(a->hdr[3], b->hdr[3]) != 0) {
            if (differ < 3)
                fprintf(stderr, "duplicate differs:\n  %.300s\n  %.300s\n", a->value, b->value);
            differ++;
        }
    }
    free(first);
    return differ;
}

/* The committed offsets of `group` for topic's partitions [0, partitions) summed, counting
 * each uncommitted partition as 0; *n_committed gets how many have a commit. */
static inline int64_t group_committed(const char *bootstraps, const char *group, const char *topic,
                               int partitions, int *n_committed)
{
    const char *extra[][2] = {{"group.id", group}, {NULL, NULL}};
    rd_kafka_t *c = client(bootstraps, RD_KAFKA_CONSUMER, extra);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    int64_t sum = 0;
    *n_committed = 0;
    if (rd_kafka_committed(c, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < l->cnt; i++)
            if (l->elems[i].offset >= 0) {
                sum += l->elems[i].offset;
                (*n_committed)++;
            }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
    return sum;
}

/* Runs a CMocka group, only the tests matching SR_TEST_FILTER when it is set (a glob such
 * as 'test_exactly*': one test while debugging it). */
#define sr_run_tests(tests)                                                              \
    (getenv("SR_TEST_FILTER") ? cmocka_set_test_filter(getenv("SR_TEST_FILTER")) : (void)0, \
     cmocka_run_group_tests(tests, NULL, NULL))

#endif /* KAFKA_TEST_UTIL_H */
