/* changelog.c — the session store's changelog (DESIGN §8): every state change the online
 * runtime commits is first produced to a compacted topic co-partitioned with the input
 * (state.changelog.topic, default <kafka.group.id>-sessions-changelog), so a partition's
 * sessions follow it to whichever process is assigned it next.
 *
 * Records, in the input partition's changelog partition:
 *   key = the session id bytes, value = the stored session encoding (sr_session_encode), or no
 *         value (a tombstone) for a deleted session;
 *   key = SR_CHANGELOG_APPLIED_KEY (0xFF + "streamrec.applied-offset": not valid UTF-8, so no
 *         decoded session id can equal it), value = the highest input offset applied, decimal.
 * Compaction keeps the newest record per key: the sessions and the partition's applied offset.
 *
 * Order (at_least_once, see runtime.c): a batch's records are produced after its
 * recommendations are acknowledged, and its local commit (sessions, applied offsets and the
 * changelog checkpoint = next changelog offset not reflected) waits for their acknowledgement.
 * So the local store never holds a change the changelog lacks, and input offsets are committed
 * only for changes both hold. A process that takes a partition over restores the changelog from
 * its local checkpoint (the whole changelog when it has none) before consuming the partition.
 *
 * Threads: sr_changelog_open on the caller's (start-up); sr_changelog_log and the restore
 * functions on the worker (the state store's thread); produce is librdkafka-thread-safe and
 * delivery reports are served by the loop. The restore consumer belongs to its restore. */
#include "sr_state.h"
#include "sr_stream.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMP "changelog"
#define APPLIED_KEY "\xffstreamrec.applied-offset"
#define APPLIED_KEY_LEN (sizeof APPLIED_KEY - 1)

struct sr_changelog {
    rd_kafka_t *producer;    /* borrowed */
    rd_kafka_topic_t *rkt;
    const sr_config_t *cfg;  /* borrowed */
    char topic[256];
    int32_t partitions;
    struct sr_buf buf;       /* worker: value encoding */
    rd_kafka_queue_t *checkq; /* the cleanup.policy check's answer (sr_changelog_check) */
    uint64_t check_since;
    /* restore totals (worker writes, any thread reads) */
    uint64_t restored_records, restored_bytes, restore_ns;
};

struct sr_changelog_restore {
    sr_changelog_t *cl;
    rd_kafka_t *rk;
    int32_t partition;
    int64_t next, end;       /* next changelog offset to apply, high watermark at the start */
    uint64_t records;
    sr_arena_t *arena;
};

/* ---- the topic ---------------------------------------------------------------------------- */

static int32_t topic_partitions(rd_kafka_t *rk, const char *topic, rd_kafka_resp_err_t *e)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    *e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    int32_t n = -1;
    if (!*e && md->topic_cnt == 1) {
        *e = md->topics[0].err;
        if (!*e)
            n = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

/* One admin request on rk, waited for; the result event (caller destroys) or NULL. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q)
{
    return rd_kafka_queue_poll(q, 30000);
}

static sr_err_t topic_create(sr_changelog_t *cl, int32_t partitions, struct sr_error *err)
{
    int64_t rf = -1;
    sr_err_t rc = sr_config_get_int(cl->cfg, "state.changelog.replication.factor", &rf, err);
    if (rc != SR_OK)
        return rc;
    char errstr[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(cl->topic, partitions, (int)rf, errstr,
                                                    sizeof errstr);
    if (!nt)
        return sr_error_set(err, SR_ECONFIG, "state.changelog.topic %s: %s", cl->topic, errstr);
    rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
    rd_kafka_queue_t *q = rd_kafka_queue_new(cl->producer);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(cl->producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(o, 15000, errstr, sizeof errstr);
    rd_kafka_CreateTopics(cl->producer, &nt, 1, o, q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_event_t *ev = admin_wait(q);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    rd_kafka_resp_err_t e = ev ? rd_kafka_event_error(ev) : RD_KAFKA_RESP_ERR__TIMED_OUT;
    const char *why = ev ? rd_kafka_event_error_string(ev) : "no answer in 30 s";
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
    if (!e && cnt == 1) {
        e = rd_kafka_topic_result_error(tr[0]);
        why = rd_kafka_topic_result_error_string(tr[0]);
    }
    rc = SR_OK;
    if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        rc = sr_error_set(err, SR_EKAFKA, "cannot create the state changelog topic %s (%d "
                          "partitions, cleanup.policy=compact): %s; create it, or set "
                          "state.changelog=false to keep state local", cl->topic, (int)partitions,
                          why && *why ? why : rd_kafka_err2str(e));
    else
        sr_log(SR_LOG_INFO, CMP, "changelog topic created", "topic=%s partitions=%d",
               cl->topic, (int)partitions);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* cleanup.policy must include compact: a deleting changelog loses sessions with its segments.
 * Asked at open, answered later (sr_changelog_check): some brokers (librdkafka's mock) never
 * answer DescribeConfigs, and start-up must not wait on them. */
static void topic_check_policy_ask(sr_changelog_t *cl)
{
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, cl->topic);
    cl->checkq = rd_kafka_queue_new(cl->producer);
    rd_kafka_DescribeConfigs(cl->producer, &cr, 1, NULL, cl->checkq);
    rd_kafka_ConfigResource_destroy(cr);
    cl->check_since = sr_now_ns();
}

sr_err_t sr_changelog_check(sr_changelog_t *cl, struct sr_error *err)
{
    if (!cl->checkq)
        return SR_OK;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(cl->checkq, 0);
    if (!ev) {
        if (sr_now_ns() - cl->check_since < 60000000000ULL)
            return SR_OK;
        sr_log(SR_LOG_WARN, CMP, "no answer to DescribeConfigs in 60 s: the changelog topic's "
               "cleanup.policy is not checked", "topic=%s", cl->topic);
        rd_kafka_queue_destroy(cl->checkq);
        cl->checkq = NULL;
        return SR_OK;
    }
    const rd_kafka_DescribeConfigs_result_t *res = rd_kafka_event_DescribeConfigs_result(ev);
    sr_err_t rc = SR_OK;
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs = res ? rd_kafka_DescribeConfigs_result_resources(res, &n) : NULL;
    const char *policy = NULL;
    for (size_t i = 0; rs && i < n && !rd_kafka_ConfigResource_error(rs[i]); i++) {
        size_t nc = 0;
        const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(rs[i], &nc);
        for (size_t k = 0; k < nc; k++)
            if (!strcmp(rd_kafka_ConfigEntry_name(ce[k]), "cleanup.policy"))
                policy = rd_kafka_ConfigEntry_value(ce[k]);
    }
    if (!policy)
        sr_log(SR_LOG_WARN, CMP, "cannot read the changelog topic's cleanup.policy: not checked",
               "topic=%s error=\"%s\"", cl->topic,
               rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev) : "no such entry");
    else if (!strstr(policy, "compact"))
        rc = sr_error_set(err, SR_ECONFIG, "state changelog topic %s has cleanup.policy=%s: it "
                          "must be compact (kafka-configs --alter --add-config "
                          "cleanup.policy=compact), or name another state.changelog.topic",
                          cl->topic, policy);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(cl->checkq);
    cl->checkq = NULL;
    return rc;
}

sr_err_t sr_changelog_open(const sr_config_t *cfg, rd_kafka_t *producer, const char *input_topic,
                           sr_changelog_t **out, struct sr_error *err)
{
    *out = NULL;
    sr_changelog_t *cl = calloc(1, sizeof *cl);
    if (!cl)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    cl->producer = producer;
    cl->cfg = cfg;
    const char *name = sr_config_get(cfg, "state.changelog.topic");
    if (name && *name)
        snprintf(cl->topic, sizeof cl->topic, "%s", name);
    else
        snprintf(cl->topic, sizeof cl->topic, "%s-sessions-changelog",
                 sr_config_get(cfg, "kafka.group.id"));
    rd_kafka_resp_err_t e;
    int32_t in = topic_partitions(producer, input_topic, &e);
    sr_err_t rc = SR_OK;
    if (in <= 0 && sr__kafka_err_is_access(e))
        rc = sr_error_set(err, SR_EKAFKA, "kafka authorization failed (%s): input.topic %s; check "
                          "the ACLs of kafka.sasl.username", rd_kafka_err2name(e), input_topic);
    else if (in <= 0)
        rc = sr_error_set(err, SR_EKAFKA, "input.topic %s: %s", input_topic,
                          rd_kafka_err2str(e ? e : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    int32_t have = rc == SR_OK ? topic_partitions(producer, cl->topic, &e) : -1;
    if (rc == SR_OK && have < 0) {
        rc = topic_create(cl, in, err);
        if (rc == SR_OK)
            for (int i = 0; i < 100 && (have = topic_partitions(producer, cl->topic, &e)) < 0; i++) {
                struct timespec ts = {0, 100000000};
                nanosleep(&ts, NULL);
            }
        if (rc == SR_OK && have < 0)
            rc = sr_error_set(err, SR_EKAFKA, "state changelog topic %s: %s", cl->topic,
                              rd_kafka_err2str(e));
    }
    if (rc == SR_OK && have != in)
        rc = sr_error_set(err, SR_ECONFIG, "state changelog topic %s has %d partitions, input "
                          "topic %s has %d: they must be co-partitioned (name another "
                          "state.changelog.topic, or recreate it)", cl->topic, (int)have,
                          input_topic, (int)in);
    if (rc == SR_OK)
        topic_check_policy_ask(cl);
    if (rc == SR_OK && !(cl->rkt = rd_kafka_topic_new(producer, cl->topic, NULL)))
        rc = sr_error_set(err, SR_EKAFKA, "changelog topic %s: %s", cl->topic,
                          rd_kafka_err2str(rd_kafka_last_error()));
    if (rc != SR_OK) {
        sr_changelog_destroy(cl);
        return rc;
    }
    cl->partitions = in;
    sr_log(SR_LOG_INFO, CMP, "state changelog", "topic=%s partitions=%d", cl->topic, (int)in);
    *out = cl;
    return SR_OK;
}

void sr_changelog_destroy(sr_changelog_t *cl)
{
    if (!cl)
        return;
    if (cl->rkt)
        rd_kafka_topic_destroy(cl->rkt);
    if (cl->checkq)
        rd_kafka_queue_destroy(cl->checkq);
    sr_buf_free(&cl->buf);
    free(cl);
}

const char *sr_changelog_topic(const sr_changelog_t *cl) { return cl->topic; }
int32_t sr_changelog_partitions(const sr_changelog_t *cl) { return cl->partitions; }

void sr_changelog_totals(const sr_changelog_t *cl, uint64_t *records, uint64_t *bytes,
                         double *seconds)
{
    *records = __atomic_load_n(&cl->restored_records, __ATOMIC_RELAXED);
    *bytes = __atomic_load_n(&cl->restored_bytes, __ATOMIC_RELAXED);
    *seconds = (double)__atomic_load_n(&cl->restore_ns, __ATOMIC_RELAXED) / 1e9;
}

/* ---- producing a batch's changes ------------------------------------------------------------ */

struct log_ctx {
    sr_changelog_t *cl;
    void *opaque;
    uint64_t produced;
    struct sr_error *err;
    sr_err_t rc;
};

static int log_change(void *opaque, const struct sr_state_key *key, const struct sr_session *s,
                      int64_t applied)
{
    struct log_ctx *c = opaque;
    sr_changelog_t *cl = c->cl;
    if (applied >= 0) {
        char v[24];
        int n = snprintf(v, sizeof v, "%" PRId64, applied);
        c->rc = sr_kafka_produce(cl->producer, cl->rkt, key->partition, APPLIED_KEY, APPLIED_KEY_LEN,
                                 v, (size_t)n, NULL, 0, c->opaque, false, c->err);
    } else if (!s) {
        c->rc = sr_kafka_produce(cl->producer, cl->rkt, key->partition, key->id, key->len, NULL, 0,
                                 NULL, 0, c->opaque, false, c->err);
    } else {
        size_t need = sr_session_value_size(s);
        sr_buf_reset(&cl->buf);
        c->rc = sr_buf_reserve(&cl->buf, need) ? sr_error_set(c->err, SR_ENOMEM, "out of memory")
                                               : SR_OK;
        if (c->rc == SR_OK)
            c->rc = sr_session_encode(s, cl->buf.data, need, &need, c->err);
        if (c->rc == SR_OK)
            c->rc = sr_kafka_produce(cl->producer, cl->rkt, key->partition, key->id, key->len,
                                     cl->buf.data, need, NULL, 0, c->opaque, false, c->err);
    }
    if (c->rc == SR_OK)
        c->produced++;
    return c->rc != SR_OK;
}

sr_err_t sr_changelog_log(sr_changelog_t *cl, sr_state_t *st, uint64_t state_id, void *opaque,
                          uint64_t *produced, struct sr_error *err)
{
    struct log_ctx c = {.cl = cl, .opaque = opaque, .err = err};
    sr_err_t rc = sr_state_staged_foreach(st, state_id, log_change, &c, err);
    *produced = c.produced;
    return c.rc != SR_OK ? c.rc : rc;
}

/* ---- restore ---------------------------------------------------------------------------------- */

sr_err_t sr_changelog_restore_begin(sr_changelog_t *cl, sr_state_t *st, int32_t partition,
                                    pthread_mutex_t *mu, sr_changelog_restore_t **out,
                                    struct sr_error *err)
{
    *out = NULL;
    sr_changelog_restore_t *r = calloc(1, sizeof *r);
    if (!r || !(r->arena = sr_arena_new(1 << 20))) {
        free(r);
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    }
    r->cl = cl;
    r->partition = partition;
    rd_kafka_conf_t *conf;
    sr_err_t rc = sr_kafka_conf_new(cl->cfg, SR_KAFKA_CONSUMER, &conf, err);
    static const char *const kv[][2] = {
        {"enable.auto.commit", "false"},     /* assign() only: nothing is committed */
        {"isolation.level", "read_committed"},
        {"enable.partition.eof", "true"},
        {"fetch.wait.max.ms", "50"},
    };
    for (size_t i = 0; rc == SR_OK && i < sizeof kv / sizeof *kv; i++)
        rc = sr_kafka_conf_set(conf, kv[i][0], kv[i][1], err);
    char errstr[512];
    if (rc == SR_OK && !(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        rc = sr_error_set(err, SR_EKAFKA, "changelog restore consumer: %s", errstr);
    } else if (rc != SR_OK) {
        rd_kafka_conf_destroy(conf);
    }
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    /* A topic just created, a leader moving or a broker restarting answer "not leader" or time
     * out for a while: retried for up to 60 s; an authorization refusal is final. */
    uint64_t t0 = sr_now_ns();
    while (rc == SR_OK && (e = rd_kafka_query_watermark_offsets(r->rk, cl->topic, partition, &lo,
                                                                &hi, 10000)) &&
           !sr__kafka_err_is_access(e) && e != RD_KAFKA_RESP_ERR__FATAL &&
           sr_now_ns() - t0 < 60000000000ULL) {
        struct timespec ts = {0, 200000000};
        nanosleep(&ts, NULL);
    }
    if (rc == SR_OK && e)
        rc = sr_error_set(err, SR_EKAFKA, "changelog %s [%d]: watermarks: %s", cl->topic,
                          (int)partition, rd_kafka_err2str(e));
    if (rc == SR_OK && mu)
        pthread_mutex_lock(mu);
    if (rc == SR_OK) {
        /* Local state the changelog does not describe (made with state.changelog=false, or a
         * checkpoint past the changelog's end: the topic was recreated) may hold changes the
         * changelog lacks or miss ones it has: drop it and restore the whole changelog. */
        int64_t ck = sr_state_checkpoint(st, partition);
        int64_t applied = sr_state_applied_offset(st, partition);
        if ((ck < 0 && applied >= 0) || ck > hi) {
            sr_log(SR_LOG_WARN, CMP, "local state of a partition is not described by the "
                   "changelog: dropped, restoring it from the changelog", "topic=%s partition=%d "
                   "checkpoint=%lld changelog_end=%lld applied=%lld", cl->topic, (int)partition,
                   (long long)ck, (long long)hi, (long long)applied);
            rc = sr_state_partition_drop(st, partition, err);
            ck = -1;
        }
        r->next = ck > lo ? ck : lo;
        r->end = hi;
        if (r->next < r->end) {
            rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(l, cl->topic, partition)->offset = r->next;
            e = rd_kafka_assign(r->rk, l);
            rd_kafka_topic_partition_list_destroy(l);
            if (e)
                rc = sr_error_set(err, SR_EKAFKA, "changelog %s [%d]: assign: %s", cl->topic,
                                  (int)partition, rd_kafka_err2str(e));
        }
        if (mu)
            pthread_mutex_unlock(mu);
    }
    if (rc != SR_OK) {
        sr_changelog_restore_end(r);
        return rc;
    }
    sr_log(SR_LOG_INFO, CMP, "restoring a partition", "topic=%s partition=%d from=%lld to=%lld",
           cl->topic, (int)partition, (long long)r->next, (long long)r->end);
    *out = r;
    return SR_OK;
}

int64_t sr_changelog_restore_remaining(const sr_changelog_restore_t *r)
{
    return r->end > r->next ? r->end - r->next : 0;
}

/* Applies one consumed record to the batch. */
static sr_err_t apply_record(sr_changelog_restore_t *r, sr_state_batch_t *bt,
                             const rd_kafka_message_t *m, struct sr_error *err)
{
    struct sr_state_key k = {r->partition, (uint32_t)m->key_len, m->key};
    if (!m->key)
        return sr_error_set(err, SR_EFORMAT, "changelog %s [%d] offset %lld: record without a key",
                            r->cl->topic, (int)r->partition, (long long)m->offset);
    if (m->key_len == APPLIED_KEY_LEN && !memcmp(m->key, APPLIED_KEY, APPLIED_KEY_LEN)) {
        char v[24];
        size_t n = m->len < sizeof v - 1 ? m->len : sizeof v - 1;
        memcpy(v, m->payload ? m->payload : "", n);
        v[n] = 0;
        char *end;
        long long off = strtoll(v, &end, 10);
        if (!n || *end || off < 0)
            return sr_error_set(err, SR_EFORMAT, "changelog %s [%d] offset %lld: applied offset "
                                "'%s' is not a number", r->cl->topic, (int)r->partition,
                                (long long)m->offset, v);
        return sr_state_batch_set_offset(bt, r->partition, off, err);
    }
    if (!m->payload)
        return sr_state_batch_delete(bt, &k, err);
    struct sr_session s;
    sr_err_t rc = sr_session_decode(m->payload, m->len, r->arena, &s, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "changelog %s [%d] offset %lld", r->cl->topic,
                               (int)r->partition, (long long)m->offset);
    s.found = true;
    return sr_state_batch_put(bt, &k, &s, err);
}

sr_err_t sr_changelog_restore_step(sr_changelog_restore_t *r, sr_state_t *st, uint64_t budget_ns,
                                   bool *done, struct sr_error *err)
{
    uint64_t t0 = sr_now_ns();
    sr_err_t rc = SR_OK;
    *done = r->next >= r->end;
    while (!*done && rc == SR_OK && sr_now_ns() - t0 < budget_ns) {
        sr_state_batch_t *bt = sr_state_batch_new(st);
        if (!bt)
            return sr_error_set(err, SR_ENOMEM, "out of memory");
        sr_arena_reset(r->arena);
        uint64_t n = 0, bytes = 0;
        while (rc == SR_OK && n < 4096 && r->next < r->end) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
            if (!m) {
                if (sr_now_ns() - t0 >= budget_ns)
                    break;
                continue;
            }
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                r->next = r->end; /* compaction or aborted transactions end it early */
            } else if (m->err && (sr__kafka_err_is_access(m->err) ||
                                  m->err == RD_KAFKA_RESP_ERR__FATAL ||
                                  m->err == RD_KAFKA_RESP_ERR__AUTHENTICATION)) {
                rc = sr_error_set(err, SR_EKAFKA, "changelog %s [%d]: %s", r->cl->topic,
                                  (int)r->partition, rd_kafka_message_errstr(m));
            } else if (m->err) { /* transient (a broker restarting, a leader moving): retried */
                sr_log(SR_LOG_WARN, CMP, "changelog restore: consumer error (retrying)",
                       "topic=%s partition=%d error=\"%s\"", r->cl->topic, (int)r->partition,
                       rd_kafka_message_errstr(m));
            } else if (m->offset >= r->next) {
                rc = apply_record(r, bt, m, err);
                r->next = m->offset + 1;
                n++;
                bytes += m->len + m->key_len;
            }
            rd_kafka_message_destroy(m);
        }
        if (rc == SR_OK)
            rc = sr_state_batch_set_checkpoint(bt, r->partition, r->next, err);
        if (rc == SR_OK) /* alone: other partitions' pending batches stay pending */
            rc = sr_state_batch_apply(st, bt, err); /* takes bt, also on a failed write */
        else
            sr_state_batch_destroy(bt);
        r->records += n;
        __atomic_add_fetch(&r->cl->restored_records, n, __ATOMIC_RELAXED);
        __atomic_add_fetch(&r->cl->restored_bytes, bytes, __ATOMIC_RELAXED);
        *done = r->next >= r->end;
    }
    __atomic_add_fetch(&r->cl->restore_ns, sr_now_ns() - t0, __ATOMIC_RELAXED);
    if (*done && rc == SR_OK)
        sr_log(SR_LOG_INFO, CMP, "partition restored", "topic=%s partition=%d records=%llu",
               r->cl->topic, (int)r->partition, (unsigned long long)r->records);
    return rc;
}

void sr_changelog_restore_end(sr_changelog_restore_t *r)
{
    if (!r)
        return;
    if (r->rk) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    sr_arena_destroy(r->arena);
    free(r);
}
