/* source.c — the offline runtime's sources and outputs behind one interface each
 * (struct sr_source, struct sr_output in sr_stream.h): a spec "topic:..." is a topic range
 * (topic_io.c) or a topic producer (kafka.c), anything else a file (file_io.c). Owns the
 * adapters and, for a topic output, the producer whose delivery reports it serves. Runs on the
 * replay's thread. */
#include "sr_stream.h"

#include <stdlib.h>
#include <string.h>

/* ---- sources ------------------------------------------------------------------------------ */

static sr_err_t file_read(void *ctx, int32_t max, sr_arena_t *arena, struct sr_batch *b,
                          struct sr_stats *stats, struct sr_error *err)
{
    return sr_file_source_read(ctx, max, arena, b, stats, err);
}

static void file_progress(void *ctx, uint64_t *done, uint64_t *total)
{
    sr_file_source_progress(ctx, done, total);
}

static void file_close(void *ctx) { sr_file_source_close(ctx); }

struct topic_in {
    sr_topic_source_t *src;
    char topic[256];
};

static sr_err_t topic_read(void *ctx, int32_t max, sr_arena_t *arena, struct sr_batch *b,
                           struct sr_stats *stats, struct sr_error *err)
{
    (void)stats;
    struct topic_in *t = ctx;
    return sr_topic_source_read(t->src, max, arena, b, err);
}

static void topic_in_close(void *ctx)
{
    struct topic_in *t = ctx;
    if (t)
        sr_topic_source_close(t->src);
    free(t);
}

sr_err_t sr_source_open(const sr_config_t *cfg, const char *spec, struct sr_source *out,
                        struct sr_error *err)
{
    memset(out, 0, sizeof *out);
    if (!strncmp(spec, "topic:", 6)) {
        struct topic_in *t = calloc(1, sizeof *t);
        if (!t)
            return sr_error_set(err, SR_ENOMEM, "out of memory");
        struct sr_topic_range range;
        sr_err_t rc = sr_topic_spec_parse(spec + 6, t->topic, sizeof t->topic, &range, err);
        if (rc == SR_OK)
            rc = sr_topic_source_open(cfg, t->topic, &range, &t->src, err);
        if (rc != SR_OK) {
            topic_in_close(t);
            return rc;
        }
        *out = (struct sr_source){.read = topic_read, .close = topic_in_close, .name = t->topic,
                                  .ctx = t};
        return SR_OK;
    }
    sr_file_source_t *f;
    sr_err_t rc = sr_file_source_open(spec, &f, err);
    if (rc != SR_OK)
        return rc;
    const char *fmt = sr_file_source_format(f);
    *out = (struct sr_source){.read = file_read, .progress = file_progress, .close = file_close,
                              .name = sr_file_source_name(f),
                              .format = strcmp(fmt, "json") ? fmt : NULL,
                              .writer_schema = sr_file_source_writer_schema(f), .ctx = f};
    return SR_OK;
}

void sr_source_close(struct sr_source *s)
{
    if (s && s->close)
        s->close(s->ctx);
    if (s)
        memset(s, 0, sizeof *s);
}

/* ---- outputs ------------------------------------------------------------------------------ */

static sr_err_t file_settle(void *ctx, struct sr_error *err)
{
    (void)ctx;
    (void)err;
    return SR_OK; /* the graph's sink flush wrote the batch */
}

static sr_err_t file_out_close(void *ctx, struct sr_error *err)
{
    return sr_file_sink_close(ctx, err);
}

/* topic:NAME — an idempotent producer and the topic sink; delivery reports are served on this
 * thread (settle waits for each batch's acknowledgements). */
struct topic_out {
    rd_kafka_t *rk;
    sr_topic_sink_t *sink;
    uint64_t failed;
    char first_error[256];
    char name[256];
};

static void topic_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct topic_out *t = opaque;
    if (m->err && !t->failed++)
        snprintf(t->first_error, sizeof t->first_error, "%s", rd_kafka_err2str(m->err));
}

static sr_err_t topic_settle(void *ctx, struct sr_error *err)
{
    struct topic_out *t = ctx;
    rd_kafka_resp_err_t e = rd_kafka_flush(t->rk, 60000);
    if (e)
        return sr_error_set(err, SR_EKAFKA, "topic %s: not acknowledged within 60 s: %s", t->name,
                            rd_kafka_err2str(e));
    if (t->failed)
        return sr_error_set(err, SR_EKAFKA, "topic %s: %llu recommendations not delivered: %s "
                            "(state of the batch not committed)", t->name,
                            (unsigned long long)t->failed, t->first_error);
    return SR_OK;
}

static sr_err_t topic_out_close(void *ctx, struct sr_error *err)
{
    (void)err;
    struct topic_out *t = ctx;
    if (!t)
        return SR_OK;
    sr_topic_sink_destroy(t->sink);
    if (t->rk) {
        rd_kafka_flush(t->rk, 10000);
        rd_kafka_destroy(t->rk);
    }
    free(t);
    return SR_OK;
}

static sr_err_t topic_out_open(const sr_config_t *cfg, const char *name, struct sr_output *out,
                               struct sr_error *err)
{
    if (!sr_kafka_configured(cfg))
        return sr_error_set(err, SR_ECONFIG, "topic:%s needs kafka.bootstrap.servers", name);
    struct topic_out *t = calloc(1, sizeof *t);
    if (!t)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", name);
    enum sr_format fmt;
    int64_t sid = 1;
    sr_err_t rc = sr_format_parse(sr_config_get(cfg, "output.format"), &fmt, err);
    if (rc == SR_OK && fmt == SR_FORMAT_AVRO_CONFLUENT) {
        int32_t id; /* registered under <topic>-value with schema.registry.url */
        rc = sr_output_schema_id(cfg, name, &id, err);
        sid = id;
    }
    rd_kafka_conf_t *conf = NULL;
    if (rc == SR_OK)
        rc = sr_kafka_conf_new(cfg, SR_KAFKA_PRODUCER, &conf, err);
    if (rc == SR_OK) {
        rd_kafka_conf_set_opaque(conf, t);
        rd_kafka_conf_set_dr_msg_cb(conf, topic_dr_cb);
        char errstr[512];
        if (!(t->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
            rd_kafka_conf_destroy(conf);
            rc = sr_error_set(err, SR_EKAFKA, "kafka producer: %s", errstr);
        }
    }
    if (rc == SR_OK) {
        struct sr_topic_sink_params sp = {.producer = t->rk, .topic = t->name, .format = fmt,
                                          .schema_id = (int32_t)sid, .serve_when_full = true};
        rc = sr_topic_sink_new(&sp, &t->sink, err);
    }
    if (rc != SR_OK) {
        topic_out_close(t, NULL);
        return rc;
    }
    *out = (struct sr_output){.sink = *sr_topic_sink_iface(t->sink), .settle = topic_settle,
                              .close = topic_out_close, .ctx = t};
    return SR_OK;
}

sr_err_t sr_output_open(const sr_config_t *cfg, const char *spec, struct sr_output *out,
                        struct sr_error *err)
{
    memset(out, 0, sizeof *out);
    if (!strncmp(spec, "topic:", 6))
        return topic_out_open(cfg, spec + 6, out, err);
    sr_file_sink_t *f;
    sr_err_t rc = sr_file_sink_open(spec, &f, err);
    if (rc != SR_OK)
        return rc;
    *out = (struct sr_output){.sink = *sr_file_sink_iface(f), .settle = file_settle,
                              .close = file_out_close, .ctx = f};
    return SR_OK;
}

sr_err_t sr_output_close(struct sr_output *o, struct sr_error *err)
{
    sr_err_t rc = o && o->close ? o->close(o->ctx, err) : SR_OK;
    if (o)
        memset(o, 0, sizeof *o);
    return rc;
}
