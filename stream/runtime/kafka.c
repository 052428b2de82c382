/* kafka.c — librdkafka glue shared by `run`, topic `replay` and the tools: configuration from
 * sr_config (kafka.* passthrough, streamrec's defaults, secrets never echoed), client log lines
 * routed to sr_log, and the topic sink (the online sr_sink variant: one message per
 * recommendation, key = session_id, provenance headers).
 * The sink is called on the thread that runs the graph; librdkafka's produce is thread-safe. */
#include "sr_stream.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

/* A broker failure at error level reaches the application twice with the same text: at once
 * as a FAIL log line (from the broker thread, so also while nothing polls the client, e.g.
 * during start-up) and later as an error for the error_cb. The FAIL line is logged and
 * remembered here (client + hash of the text, the last FAIL_RING of them), and
 * sr_kafka_error_log skips the error it describes: each occurrence is logged once. */
#define FAIL_RING 64
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fail_seen {
    const rd_kafka_t *rk;
    uint64_t hash;
} fail_ring[FAIL_RING];
static unsigned fail_next;

/* The text without librdkafka's "[thrd:NAME]: " prefix (log.thread.name). */
static const char *strip_thread(const char *buf)
{
    const char *e = strncmp(buf, "[thrd:", 6) ? NULL : strstr(buf, "]: ");
    return e ? e + 3 : buf;
}

void sr_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: errors and warnings always; notices and info only when debugging (e.g.
     * the mock broker's own "no bootstrap.servers"). kafka.* keys go to both clients, so a
     * side-specific one warns on the other (CONFWARN): not news either. */
    sr_log_level_t l = level <= 3 ? SR_LOG_ERROR : level <= 4 ? SR_LOG_WARN : SR_LOG_DEBUG;
    if (!strcmp(fac, "CONFWARN"))
        l = SR_LOG_DEBUG;
    if (level <= 3 && !strcmp(fac, "FAIL")) {
        const char *t = strip_thread(buf);
        pthread_mutex_lock(&fail_mu);
        fail_ring[fail_next++ % FAIL_RING] = (struct fail_seen){rk, sr_hash64(t, strlen(t))};
        pthread_mutex_unlock(&fail_mu);
    }
    if (l == SR_LOG_DEBUG && !SR_LOG_DEBUG_ON())
        return;
    sr_log(l, "kafka", buf, "client=%s facility=%s", rk ? rd_kafka_name(rk) : "-", fac);
}

void sr_kafka_error_log(const rd_kafka_t *rk, int err, const char *reason)
{
    uint64_t h = sr_hash64(reason, strlen(reason));
    bool seen = false;
    pthread_mutex_lock(&fail_mu);
    for (unsigned i = 0; i < FAIL_RING && !seen; i++) {
        if (fail_ring[i].rk == rk && fail_ring[i].hash == h) {
            fail_ring[i].rk = NULL;
            seen = true;
        }
    }
    pthread_mutex_unlock(&fail_mu);
    if (!seen)
        sr_log(SR_LOG_WARN, "kafka", "kafka error", "client=%s error=%s reason=\"%s\"",
               rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    sr_kafka_error_log(rk, err, reason);
}

const char *sr_kafka_offset_str(int64_t offset, char buf[SR_KAFKA_OFFSET_STR])
{
    switch (offset) {
    case RD_KAFKA_OFFSET_BEGINNING: return "beginning";
    case RD_KAFKA_OFFSET_END: return "end";
    case RD_KAFKA_OFFSET_STORED: return "stored";
    case RD_KAFKA_OFFSET_INVALID: return "(none)";
    default: break;
    }
    if (offset <= RD_KAFKA_OFFSET_TAIL_BASE)
        snprintf(buf, SR_KAFKA_OFFSET_STR, "end-%lld",
                 (long long)(RD_KAFKA_OFFSET_TAIL_BASE - offset));
    else if (offset < 0)
        snprintf(buf, SR_KAFKA_OFFSET_STR, "(logical %lld)", (long long)offset);
    else
        snprintf(buf, SR_KAFKA_OFFSET_STR, "%lld", (long long)offset);
    return buf;
}

bool sr__kafka_err_is_access(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
}

sr_err_t sr_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                           struct sr_error *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        if (sr_config_key_is_secret(key))
            return sr_error_set(err, SR_ECONFIG, "kafka.%s: rejected by librdkafka", key);
        return sr_error_set(err, SR_ECONFIG, "kafka.%s: %s", key, errstr);
    }
    return SR_OK;
}

struct conf_walk {
    rd_kafka_conf_t *conf;
    enum sr_kafka_side side;
    struct sr_error *err;
    sr_err_t rc;
};

static int conf_one(void *opaque, const char *key, const char *value)
{
    struct conf_walk *w = opaque;
    const char *k = key + strlen("kafka.");
    if (!strncmp(k, "consumer.", 9)) {
        if (w->side != SR_KAFKA_CONSUMER)
            return 0;
        k += 9;
    } else if (!strncmp(k, "producer.", 9)) {
        if (w->side != SR_KAFKA_PRODUCER)
            return 0;
        k += 9;
    } else if (w->side == SR_KAFKA_PRODUCER && !strcmp(k, "group.id")) {
        return 0; /* a consumer property: keep the producer's log free of the warning */
    }
    w->rc = sr_kafka_conf_set(w->conf, k, value, w->err);
    return w->rc != SR_OK;
}

bool sr_kafka_configured(const sr_config_t *cfg)
{
    const char *b = sr_config_get(cfg, "kafka.bootstrap.servers");
    return b && *b;
}

sr_err_t sr_kafka_conf_new(const sr_config_t *cfg, enum sr_kafka_side side, rd_kafka_conf_t **out,
                           struct sr_error *err)
{
    *out = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    rd_kafka_conf_set_log_cb(conf, sr_kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb); /* without one, each error is logged again */
    sr_err_t rc = SR_OK;
    if (side == SR_KAFKA_CONSUMER) {
        const char *group = sr_config_get(cfg, "kafka.group.id");
        static const char *const defaults[][2] = {
            {"partition.assignment.strategy", "cooperative-sticky"},
            {"enable.auto.offset.store", "false"},
            {"auto.offset.reset", "earliest"},
            {"enable.partition.eof", "false"},
        };
        if (group && *group)
            rc = sr_kafka_conf_set(conf, "group.id", group, err);
        for (size_t i = 0; rc == SR_OK && i < sizeof defaults / sizeof *defaults; i++)
            rc = sr_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err);
    } else {
        /* The sink produces a micro-batch's recommendations at once: a long linger only adds
         * latency (librdkafka's default is 5 ms); 0 wakes the broker thread per message. */
        rc = sr_kafka_conf_set(conf, "enable.idempotence", "true", err);
        if (rc == SR_OK)
            rc = sr_kafka_conf_set(conf, "linger.ms", "1", err);
        /* Java clients and Kafka Streams partition keys by murmur2: the same here, so the
         * recommendations are co-partitioned with their sessions' other topics (DESIGN §4.4). */
        if (rc == SR_OK)
            rc = sr_kafka_conf_set(conf, "partitioner", "murmur2_random", err);
    }
    /* client.id names the instance in broker logs and quotas: streamrec-<instance.id or host>. */
    if (rc == SR_OK) {
        char id[300], host[256] = "";
        const char *inst = sr_config_get(cfg, "instance.id");
        if (!inst || !*inst)
            inst = gethostname(host, sizeof host - 1) == 0 && *host ? host : "unknown";
        snprintf(id, sizeof id, "streamrec-%s", inst);
        rc = sr_kafka_conf_set(conf, "client.id", id, err);
    }
    struct conf_walk w = {conf, side, err, SR_OK};
    if (rc == SR_OK) {
        sr_config_foreach(cfg, "kafka.", conf_one, &w);
        rc = w.rc;
    }
    if (rc != SR_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    *out = conf;
    return SR_OK;
}

sr_err_t sr_kafka_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          rd_kafka_headers_t *hdrs, int64_t timestamp_ms, void *opaque,
                          bool serve_when_full, struct sr_error *err)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_TIMESTAMP(timestamp_ms > 0 ? timestamp_ms : 0),
            RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return SR_OK; /* the headers now belong to the message */
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            return sr_error_set(err, SR_EKAFKA, "produce to %s: %s", rd_kafka_topic_name(rkt),
                                rd_kafka_err2str(e));
        }
        if (serve_when_full) {
            rd_kafka_poll(rk, 10);
        } else {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
}

void sr_kafka_headers_add_source(rd_kafka_headers_t *h, const char *topic, size_t topic_len,
                                 int32_t partition, int64_t offset)
{
    char part[16], off[24];
    int pl = snprintf(part, sizeof part, "%d", (int)partition);
    int ol = snprintf(off, sizeof off, "%lld", (long long)offset);
    rd_kafka_header_add(h, "streamrec.source.topic", -1, topic, (ssize_t)topic_len);
    rd_kafka_header_add(h, "streamrec.source.partition", -1, part, pl);
    rd_kafka_header_add(h, "streamrec.source.offset", -1, off, ol);
}

/* ---- topic sink ------------------------------------------------------------------------ */

struct sr_topic_sink {
    struct sr_sink iface;
    struct sr_topic_sink_params p;
    rd_kafka_topic_t *rkt;
    sr_rec_encoder_t *enc;
    struct sr_buf buf;
    uint64_t produced;
};

static sr_err_t topic_emit(void *opaque, const struct sr_batch *b, int32_t row, const struct sr_rec *rec,
                           struct sr_error *err)
{
    sr_topic_sink_t *s = opaque;
    sr_buf_reset(&s->buf);
    sr_err_t rc = sr_rec_encode(s->enc, rec, &s->buf, err);
    if (rc != SR_OK)
        return rc;
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "streamrec.model.version", -1, rec->model_version,
                        (ssize_t)rec->model_version_len);
    if (rec->variant)
        rd_kafka_header_add(h, "streamrec.variant", -1, rec->variant, (ssize_t)rec->variant_len);
    sr_kafka_headers_add_source(h, rec->source_topic, rec->source_topic_len,
                                rec->source_partition, rec->source_offset);
    void *mo = s->p.msg_opaque ? s->p.msg_opaque(s->p.ctx, b, row) : NULL;
    rc = sr_kafka_produce(s->p.producer, s->rkt, RD_KAFKA_PARTITION_UA, rec->session_id, rec->session_id_len, s->buf.data,
                          s->buf.len, h, 0, mo, s->p.serve_when_full, err);
    if (rc == SR_OK)
        s->produced++;
    return rc;
}

sr_err_t sr_topic_sink_new(const struct sr_topic_sink_params *p, sr_topic_sink_t **out,
                           struct sr_error *err)
{
    *out = NULL;
    if (!p || !p->producer || !p->topic || !*p->topic)
        return sr_error_set(err, SR_EINVAL, "topic sink: producer and topic are required");
    sr_topic_sink_t *s = calloc(1, sizeof *s);
    if (!s)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    s->p = *p;
    s->iface = (struct sr_sink){.emit = topic_emit, .flush = NULL, .opaque = s};
    s->rkt = rd_kafka_topic_new(p->producer, p->topic, NULL);
    if (!s->rkt) {
        free(s);
        return sr_error_set(err, SR_EKAFKA, "topic %s: %s", p->topic,
                            rd_kafka_err2str(rd_kafka_last_error()));
    }
    sr_err_t rc = sr_rec_encoder_new(p->format, p->schema_id, &s->enc, err);
    if (rc != SR_OK) {
        sr_topic_sink_destroy(s);
        return rc;
    }
    *out = s;
    return SR_OK;
}

struct sr_sink *sr_topic_sink_iface(sr_topic_sink_t *s) { return &s->iface; }

uint64_t sr_topic_sink_produced(const sr_topic_sink_t *s) { return s->produced; }

void sr_topic_sink_destroy(sr_topic_sink_t *s)
{
    if (!s)
        return;
    if (s->rkt)
        rd_kafka_topic_destroy(s->rkt);
    sr_rec_encoder_destroy(s->enc);
    sr_buf_free(&s->buf);
    free(s);
}
