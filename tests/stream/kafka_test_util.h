/* kafka_test_util.h — helpers shared by the stream/ integration tests: an in-process librdkafka
 * mock cluster, producing the fixture events keyed by session id, consuming a whole topic,
 * spawning `streamrec` children and matching recommendations against the replay golden file.
 * Header-only (static functions) to keep each test one executable. */
#ifndef KAFKA_TEST_UTIL_H
#define KAFKA_TEST_UTIL_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <jansson.h>

#include <arpa/inet.h>
#include <errno.h>
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- mock cluster ---------------------------------------------------------------------- */

struct mock {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    char bootstraps[256];
};

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "mock: %s %s\n", fac, buf);
}

static int mock_start(struct mock *m, int brokers)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!m->rk)
        return -1;
    m->mc = rd_kafka_mock_cluster_new(m->rk, brokers);
    if (!m->mc)
        return -1;
    snprintf(m->bootstraps, sizeof m->bootstraps, "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
    return 0;
}

static void mock_stop(struct mock *m)
{
    if (m->mc)
        rd_kafka_mock_cluster_destroy(m->mc);
    if (m->rk)
        rd_kafka_destroy(m->rk);
    memset(m, 0, sizeof *m);
}

static rd_kafka_t *client(const char *bootstraps, rd_kafka_type_t type, const char *extra[][2])
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

/* ---- fixture events -------------------------------------------------------------------- */

struct fixture {
    int n;
    char **line;
    size_t *len;
    char **key; /* session_id or NULL */
};

static void fixture_load(struct fixture *f)
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

static void fixture_free(struct fixture *f)
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
static int produce_fixture(const char *bootstraps, const char *topic, const struct fixture *f,
                           int from, int to, int64_t ts0)
{
    const char *extra[][2] = {{"linger.ms", "5"}, {NULL, NULL}};
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
    char hdr[4][128]; /* error/model.version, source.topic, source.partition, source.offset */
};

struct msgs {
    int n, cap;
    struct msg *m;
};

static void msgs_free(struct msgs *ms)
{
    for (int i = 0; i < ms->n; i++) {
        free(ms->m[i].key);
        free(ms->m[i].value);
    }
    free(ms->m);
    memset(ms, 0, sizeof *ms);
}

static void header_copy(const rd_kafka_message_t *rm, const char *name, char out[128])
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
static void consume_topic(const char *bootstraps, const char *topic, int partitions, int want,
                          double timeout_s, int settle_ms, struct msgs *ms)
{
    const char *extra[][2] = {{"fetch.wait.max.ms", "10"}, {"enable.partition.eof", "false"},
                              {"group.id", "test-reader"}, {"enable.auto.commit", "false"},
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

static void expect_load(struct expect *e, const char *path)
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

static void expect_free(struct expect *e)
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

static int expect_find(const struct expect *e, const char *sid, int64_t ts)
{
    for (int i = 0; i < e->n; i++)
        if (e->ts[i] == ts && !strcmp(e->sid[i], sid))
            return i;
    return -1;
}

static int close_enough(double a, double b)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) <= 1e-4 * (m > 1 ? m : 1);
}

/* Items and scores as tests/gen/compare_recs.py compares them (a differing item is accepted
 * where the expected score at that rank ties another expected item's). 0 when they match. */
static int rec_items_differ(json_t *exp, json_t *act, char *why, size_t wn)
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
static void check_recs(struct expect *e, const struct msgs *ms, int exact_items, int *unmatched,
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

static pid_t spawn(const char *const argv[], const char *log_path)
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
static int wait_child(pid_t pid, double timeout_s)
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

static int free_port(void)
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

/* GET path from 127.0.0.1:port; returns the status code (body in buf), or -1. */
static int http_get(int port, const char *path, char *buf, size_t cap)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    if (write(s, req, (size_t)n) != n) {
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
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
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

#endif /* KAFKA_TEST_UTIL_H */
