/* topic_io.c — the topic source of `replay --input topic:NAME[@start[..end]]`: every partition
 * of a topic from a start (offset or time) to an end (offset or time; default the high
 * watermark when the replay starts), read with assign() and no group (nothing is committed).
 * Times map to offsets with offsets_for_times; where the broker answers -1 (librdkafka's mock
 * cluster does), the partition is scanned from its beginning and messages are filtered by
 * timestamp. Ranges are half-open: start <= x < end. Owns its consumer. One thread. */
#include "sr_stream.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct tpart {
    int32_t partition;
    int64_t end;  /* exclusive end offset */
    bool done;
};

struct sr_topic_source {
    rd_kafka_t *rk;
    char topic[256];
    struct sr_topic_range r;
    int n;
    struct tpart *parts;
    int n_done;
};

/* Parses one bound: digits below 1e11 are an offset; larger digits epoch milliseconds; else an
 * RFC 3339 time (sr_time_parse, the one date parser). */
static sr_err_t parse_bound(const char *s, size_t n, int64_t *v, bool *is_time, struct sr_error *err)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return sr_error_set(err, SR_EINVAL, "bad range bound '%.*s'", (int)n, s);
    memcpy(buf, s, n);
    buf[n] = 0;
    bool digits = n <= 18;
    for (size_t i = 0; i < n; i++)
        digits = digits && isdigit((unsigned char)buf[i]);
    if (digits) {
        long long x = strtoll(buf, NULL, 10);
        *v = x;
        *is_time = x >= 100000000000LL;
        return SR_OK;
    }
    *is_time = true;
    return sr_time_parse(buf, v, err);
}

sr_err_t sr_topic_spec_parse(const char *spec, char *topic, size_t topic_cap,
                             struct sr_topic_range *r, struct sr_error *err)
{
    memset(r, 0, sizeof *r);
    r->start = -1;
    r->end = -1;
    const char *at = strchr(spec, '@');
    size_t tl = at ? (size_t)(at - spec) : strlen(spec);
    if (tl == 0 || tl >= topic_cap)
        return sr_error_set(err, SR_EINVAL, "topic:%s: bad topic name", spec);
    memcpy(topic, spec, tl);
    topic[tl] = 0;
    if (!at)
        return SR_OK;
    const char *a = at + 1, *dots = strstr(a, "..");
    size_t al = dots ? (size_t)(dots - a) : strlen(a);
    sr_err_t rc = SR_OK;
    if (al)
        rc = parse_bound(a, al, &r->start, &r->start_is_time, err);
    if (rc == SR_OK && dots && dots[2])
        rc = parse_bound(dots + 2, strlen(dots + 2), &r->end, &r->end_is_time, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "topic:%s", spec);
    /* Half-open: an end at or before the start selects nothing, which is a mistake. */
    if (r->start >= 0 && r->end >= 0 && r->start_is_time == r->end_is_time && r->end <= r->start)
        return sr_error_set(err, SR_EINVAL, "topic:%s: empty range (the end must be after the "
                            "start; ranges are start <= x < end)", spec);
    return SR_OK;
}

static int64_t time_to_offset(rd_kafka_t *rk, const char *topic, int32_t p, int64_t ts)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = ts;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, l, 10000);
    int64_t off = !e && !l->elems[0].err ? l->elems[0].offset : -1;
    rd_kafka_topic_partition_list_destroy(l);
    return off;
}

sr_err_t sr_topic_source_open(const sr_config_t *cfg, const char *topic,
                              const struct sr_topic_range *r, sr_topic_source_t **out,
                              struct sr_error *err)
{
    *out = NULL;
    if (!sr_kafka_configured(cfg))
        return sr_error_set(err, SR_ECONFIG, "topic:%s needs kafka.bootstrap.servers", topic);
    sr_topic_source_t *s = calloc(1, sizeof *s);
    if (!s)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    snprintf(s->topic, sizeof s->topic, "%s", topic);
    s->r = *r;
    rd_kafka_conf_t *conf;
    sr_err_t rc = sr_kafka_conf_new(cfg, SR_KAFKA_CONSUMER, &conf, err);
    if (rc == SR_OK)
        rc = sr_kafka_conf_set(conf, "enable.auto.commit", "false", err);
    if (rc == SR_OK)
        rc = sr_kafka_conf_set(conf, "enable.partition.eof", "true", err);
    if (rc != SR_OK) {
        free(s);
        return rc;
    }
    char errstr[512];
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        free(s);
        return sr_error_set(err, SR_EKAFKA, "kafka consumer: %s", errstr);
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(s->rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        rc = sr_error_set(err, SR_EKAFKA, "topic %s: %s", topic,
                          rd_kafka_err2str(e ? e : md && md->topic_cnt ? md->topics[0].err
                                                                       : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        if (md)
            rd_kafka_metadata_destroy(md);
        sr_topic_source_close(s);
        return rc;
    }
    s->n = md->topics[0].partition_cnt;
    s->parts = calloc((size_t)s->n, sizeof *s->parts);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->n);
    for (int i = 0; s->parts && i < s->n; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(s->rk, topic, p, &lo, &hi, 10000);
        if (e) {
            rc = sr_error_set(err, SR_EKAFKA, "topic %s partition %d: watermarks: %s", topic, (int)p,
                              rd_kafka_err2str(e));
            break;
        }
        int64_t start = lo, end = hi;
        if (r->start >= 0 && !r->start_is_time && r->start > start)
            start = r->start;
        if (r->start >= 0 && r->start_is_time) {
            int64_t o = time_to_offset(s->rk, topic, p, r->start);
            if (o >= 0 && o > start)
                start = o;
            else if (o < 0) /* no time index (the mock) or no later message: scan and filter */
                sr_log(SR_LOG_INFO, "replay", "no offset for the start time: scanning the partition",
                       "topic=%s partition=%d start_time=%lld", topic, (int)p, (long long)r->start);
        }
        if (r->end >= 0 && !r->end_is_time && r->end < end)
            end = r->end;
        if (r->end >= 0 && r->end_is_time) {
            int64_t o = time_to_offset(s->rk, topic, p, r->end);
            if (o >= 0 && o < end)
                end = o;
        }
        s->parts[i].partition = p;
        s->parts[i].end = end;
        if (start >= end) {
            s->parts[i].done = true;
            s->n_done++;
        } else {
            rd_kafka_topic_partition_list_add(l, topic, p)->offset = start;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (rc == SR_OK && !s->parts)
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
    if (rc == SR_OK && l->cnt && (e = rd_kafka_assign(s->rk, l)) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = sr_error_set(err, SR_EKAFKA, "assign %s: %s", topic, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    if (rc != SR_OK) {
        sr_topic_source_close(s);
        return rc;
    }
    sr_log(SR_LOG_INFO, "replay", "topic source", "topic=%s partitions=%d to_read=%d", topic, s->n,
           s->n - s->n_done);
    *out = s;
    return SR_OK;
}

void sr_topic_source_close(sr_topic_source_t *s)
{
    if (!s)
        return;
    if (s->rk) {
        rd_kafka_consumer_close(s->rk);
        rd_kafka_destroy(s->rk);
    }
    free(s->parts);
    free(s);
}

static struct tpart *find_part(sr_topic_source_t *s, int32_t p)
{
    for (int i = 0; i < s->n; i++)
        if (s->parts[i].partition == p)
            return &s->parts[i];
    return NULL;
}

static void mark_done(sr_topic_source_t *s, struct tpart *tp)
{
    if (tp->done)
        return;
    tp->done = true;
    s->n_done++;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, s->topic, tp->partition);
    rd_kafka_pause_partitions(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

sr_err_t sr_topic_source_read(sr_topic_source_t *s, int32_t max, sr_arena_t *arena,
                              struct sr_batch *b, struct sr_error *err)
{
    struct sr_source_cols src;
    sr_err_t rc = sr_batch_init_source(b, arena, max, &src, err);
    if (rc != SR_OK)
        return rc;
    const char **rp = src.raw;
    int32_t *pp = src.partition;
    int64_t *op = src.offset;
    int32_t n = 0;
    while (n < max && s->n_done < s->n) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, n ? 0 : 1000);
        if (!m) {
            if (n)
                break; /* hand over what we have */
            continue;
        }
        struct tpart *tp = find_part(s, m->partition);
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (tp && m->offset >= tp->end)
                mark_done(s, tp);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            rc = sr_error_set(err, SR_EKAFKA, "topic %s: %s", s->topic, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            return rc;
        }
        if (!tp || tp->done || m->offset >= tp->end) {
            if (tp)
                mark_done(s, tp);
            rd_kafka_message_destroy(m);
            continue;
        }
        bool keep = true;
        if (s->r.start_is_time || s->r.end_is_time) {
            int64_t ts = rd_kafka_message_timestamp(m, NULL);
            keep = (!s->r.start_is_time || s->r.start < 0 || ts >= s->r.start) &&
                   (!s->r.end_is_time || s->r.end < 0 || ts < s->r.end);
        }
        if (keep) {
            rp[n] = sr_arena_strndup(arena, m->payload ? m->payload : "", m->len);
            if (!rp[n]) {
                rd_kafka_message_destroy(m);
                return sr_error_set(err, SR_ENOMEM, "out of memory");
            }
            src.raw_len[n] = (uint32_t)m->len;
            pp[n] = m->partition;
            op[n] = m->offset;
            src.timestamp[n] = rd_kafka_message_timestamp(m, NULL);
            n++;
        }
        if (m->offset + 1 >= tp->end)
            mark_done(s, tp);
        rd_kafka_message_destroy(m);
    }
    b->n = n;
    b->n_sel = n;
    return SR_OK;
}
