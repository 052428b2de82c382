/* stall.c — loop thread (the probe thread where marked): notices an input partition that stops
 * advancing (DESIGN §8.10). Owns the per-partition positions (struct part_pos), the stall
 * check run from the housekeeping timer, and the probe: a second consumer with the largest
 * fetch limits librdkafka allows, run on a short-lived thread, that reads the record the
 * group's consumer cannot deliver.
 *
 * A partition stalls when the offset after the last message taken stays below its high
 * watermark for runtime.stall.timeout.ms while the runtime takes input (not held back, not
 * recovering, draining or restoring it). Then one line names topic, partition and offset, the
 * stall is counted (streamrec_partition_stalls_total), and the probe reads that offset:
 *   - read: the record goes into the gathering batch like any other (so it is answered or
 *     dead-lettered as usual), and the consumer is sought past it;
 *   - the probe's consumer reports the record itself unreadable (MSG_SIZE_TOO_LARGE: larger
 *     than even the probe's limits; a corrupt message set) while the leader answers: the
 *     consumer is sought past it, a dead letter without the record (source position,
 *     streamrec.error=unreadable_oversized or unreadable) goes to dlq.topic when there is one,
 *     and the offset after it is stored for commit;
 *   - the leader does not answer, or nothing and no such error came within the probe's wait:
 *     nothing is skipped (a broker that is down or slow is not a bad record); asked again.
 * A partition whose next offset falls below the log start (the broker removed records before
 * they were consumed: retention, or the mock cluster's 5 MiB log) is logged and counted
 * (streamrec_partition_records_lost_total), and its position moves to the log start. */
#include "runtime_int.h"

#define PROBE_WAIT_MS 10000

struct probe {
    struct job job;          /* JOB_PROBE: the completion back to the loop */
    pthread_t thread;
    sr_runtime_t *rt;        /* read-only on the probe thread: input_topic, the completion list */
    rd_kafka_t *rk;          /* the probe consumer (rt->probe_rk), used by this thread only */
    int32_t partition;
    int64_t asked;           /* the position the loop asked about (POS_BEGINNING possible) */
    int64_t offset;          /* the offset read: asked, or the log start when below it */
    rd_kafka_message_t *msg; /* the record at (or first after) offset, NULL when none */
    bool leader_ok;          /* the partition's leader answered a watermark query */
    int64_t lo, hi;
    rd_kafka_resp_err_t err; /* the last consumer error the probe saw */
    uint64_t quiet_ms;       /* how long nothing was consumed before the probe */
    uint64_t started_ns;
    char why[256];
};

static struct part_pos *pos_of(sr_runtime_t *rt, int32_t partition)
{
    if (partition < 0)
        return NULL;
    if (partition >= rt->n_pos) {
        int n = partition + 1 > 2 * rt->n_pos ? partition + 1 : 2 * rt->n_pos;
        struct part_pos *np = realloc(rt->pos, sizeof *np * (size_t)n);
        if (!np)
            return NULL;
        memset(np + rt->n_pos, 0, sizeof *np * (size_t)(n - rt->n_pos));
        for (int i = rt->n_pos; i < n; i++)
            np[i].next = np[i].floor = np[i].store_at = -1;
        rt->pos = np;
        rt->n_pos = n;
    }
    return &rt->pos[partition];
}

void sr__rt_pos_start(sr_runtime_t *rt, int32_t partition, int64_t offset)
{
    struct part_pos *p = pos_of(rt, partition);
    if (!p)
        return;
    p->assigned = true;
    p->next = offset >= 0 ? offset : POS_BEGINNING;
    p->floor = p->store_at = -1;
    p->since_ns = sr_now_ns();
}

void sr__rt_pos_stop(sr_runtime_t *rt, int32_t partition)
{
    struct part_pos *p = pos_of(rt, partition);
    if (p)
        p->assigned = false;
}

void sr__rt_pos_rewind(sr_runtime_t *rt, int32_t partition, int64_t offset)
{
    struct part_pos *p = pos_of(rt, partition);
    if (!p)
        return;
    p->next = offset;
    p->floor = p->store_at = -1;
    p->since_ns = sr_now_ns();
}

bool sr__rt_pos_taken(sr_runtime_t *rt, const rd_kafka_message_t *m, uint64_t now)
{
    struct part_pos *p = pos_of(rt, m->partition);
    if (!p)
        return true;
    if (m->offset < p->floor)
        return false; /* the probe took it, or it was skipped; the seek had not taken effect */
    p->next = m->offset + 1;
    p->since_ns = now;
    p->store_at = -1;
    return true;
}

/* Is any message of the partition gathering or in flight? */
static bool batch_has(const struct rt_batch *b, int32_t partition)
{
    for (int32_t i = 0; b && i < b->n; i++)
        if (b->msgs[i]->partition == partition)
            return true;
    return false;
}

static bool in_flight(sr_runtime_t *rt, int32_t partition)
{
    if (batch_has(rt->gather, partition))
        return true;
    for (struct rt_batch *b = rt->ihead; b; b = b->next)
        if (batch_has(b, partition))
            return true;
    return false;
}

/* at_least_once: once nothing of the partition is in flight, the offset after a skipped or
 * removed record is stored for commit, so the group's offsets reach the end (exactly_once
 * commits offsets only with a transaction's batches). */
static void store_pending(sr_runtime_t *rt, int32_t partition, struct part_pos *p)
{
    if (p->store_at < 0 || rt->eos || in_flight(rt, partition))
        return;
    if (p->next == p->store_at) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, rt->input_topic, partition)->offset = p->store_at;
        rd_kafka_resp_err_t e = rd_kafka_offsets_store(rt->consumer, l);
        if (e)
            sr_log(SR_LOG_DEBUG, CMP, "offset after a skipped record not stored", "partition=%d "
                   "error=\"%s\"", (int)partition, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(l);
    }
    p->store_at = -1;
}

static void seek_past(sr_runtime_t *rt, int32_t partition, struct part_pos *p, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rt->input_topic, partition)->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(rt->consumer, l, 0);
    if (e) {
        sr_log(SR_LOG_WARN, CMP, "cannot seek past a stalled offset", "topic=%s partition=%d "
               "offset=%lld error=\"%s\"", rt->input_topic, (int)partition, (long long)offset,
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    p->floor = offset;
}

/* Probe thread: reads (partition, offset) with the probe consumer; pushes the completion. */
static void *probe_main(void *arg)
{
    struct probe *pr = arg;
    rd_kafka_t *rk = pr->rk;
    sr_runtime_t *owner = pr->rt;
    const char *topic = owner->input_topic;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, pr->partition, &pr->lo,
                                                             &pr->hi, 5000);
    pr->leader_ok = e == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!pr->leader_ok)
        snprintf(pr->why, sizeof pr->why, "watermarks: %s", rd_kafka_err2str(e));
    else if (pr->offset == POS_BEGINNING || pr->offset < pr->lo)
        pr->offset = pr->lo; /* from the log start */
    if (pr->leader_ok && pr->offset < pr->hi) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, pr->partition)->offset = pr->offset;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        for (uint64_t t0 = sr_now_ns(); !pr->msg && sr_now_ns() - t0 < PROBE_WAIT_MS * 1000000ULL;) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
            if (!m)
                continue;
            if (!m->err && m->partition == pr->partition && m->offset >= pr->offset) {
                pr->msg = m;
                break;
            }
            /* Evidence that the record itself cannot be read: only these skip it. */
            if (m->err && m->partition == pr->partition &&
                (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                 m->err == RD_KAFKA_RESP_ERR__BAD_MSG ||
                 m->err == RD_KAFKA_RESP_ERR_INVALID_MSG)) {
                pr->err = m->err;
                snprintf(pr->why, sizeof pr->why, "%s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_assign(rk, NULL);
        if (!pr->msg && !pr->why[0])
            snprintf(pr->why, sizeof pr->why, "not delivered within %d ms", PROBE_WAIT_MS);
    }
    pthread_mutex_lock(&owner->cmu);
    pr->job.next = NULL;
    if (owner->ctail)
        owner->ctail->next = &pr->job;
    else
        owner->chead = &pr->job;
    owner->ctail = &pr->job;
    if (!owner->async_closed)
        uv_async_send(&owner->async);
    pthread_mutex_unlock(&owner->cmu);
    return NULL;
}

/* The probe consumer: the runtime's consumer configuration, no group membership (assign
 * only, nothing committed), and the largest fetch limits librdkafka accepts. */
static rd_kafka_t *probe_client(sr_runtime_t *rt)
{
    if (rt->probe_rk || rt->probe_failed)
        return rt->probe_rk;
    rt->probe_failed = true; /* until it is made: one warning, not one per check */
    struct sr_error err = {0};
    rd_kafka_conf_t *conf;
    if (sr_kafka_conf_new(rt->cfg, SR_KAFKA_CONSUMER, &conf, &err) != SR_OK) {
        sr_log(SR_LOG_WARN, CMP, "stall probe: no consumer configuration", "error=\"%s\"", err.msg);
        return NULL;
    }
    static const char *const kv[][2] = {
        {"enable.auto.commit", "false"}, {"enable.partition.eof", "false"},
        {"receive.message.max.bytes", "2147483647"}, {"fetch.max.bytes", "2147483135"},
        {"max.partition.fetch.bytes", "1000000000"}, {"statistics.interval.ms", "0"},
    };
    sr_err_t rc = SR_OK;
    for (size_t i = 0; rc == SR_OK && i < sizeof kv / sizeof *kv; i++)
        rc = sr_kafka_conf_set(conf, kv[i][0], kv[i][1], &err);
    if (rc == SR_OK && rt->eos)
        rc = sr_kafka_conf_set(conf, "isolation.level", "read_committed", &err);
    char errstr[512] = "";
    rd_kafka_t *rk = rc == SR_OK ? rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr) : NULL;
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        sr_log(SR_LOG_WARN, CMP, "stall probe: cannot create its consumer", "error=\"%s\"",
               rc != SR_OK ? err.msg : errstr);
        return NULL;
    }
    rt->probe_rk = rk;
    rt->probe_failed = false;
    return rk;
}

static void probe_start(sr_runtime_t *rt, int32_t partition, int64_t offset, uint64_t quiet_ns)
{
    rd_kafka_t *rk = probe_client(rt);
    struct probe *pr = rk ? calloc(1, sizeof *pr) : NULL;
    if (!pr)
        return;
    pr->job.type = JOB_PROBE;
    pr->job.pr = pr;
    pr->rt = rt;
    pr->rk = rk;
    pr->partition = partition;
    pr->asked = pr->offset = offset;
    pr->started_ns = sr_now_ns();
    pr->quiet_ms = quiet_ns / 1000000;
    if (pthread_create(&pr->thread, NULL, probe_main, pr) != 0) {
        sr_log(SR_LOG_WARN, CMP, "stall probe: cannot start its thread", "partition=%d", (int)partition);
        free(pr);
        return;
    }
    rt->probe = pr;
}

/* The dead letter of a record nobody can read: no key or value, the source position and why. */
static void dead_letter_unread(sr_runtime_t *rt, int32_t partition, int64_t offset,
                               const char *reason, const char *why)
{
    if (!rt->dlq_rkt)
        return;
    if (rt->eos) {
        sr_log(SR_LOG_WARN, CMP, "exactly_once: no dead letter for a skipped record (outside a "
               "transaction)", "topic=%s partition=%d offset=%lld", rt->input_topic,
               (int)partition, (long long)offset);
        return;
    }
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    rd_kafka_header_add(h, "streamrec.error", -1, reason, -1);
    rd_kafka_header_add(h, "streamrec.error.detail", -1, why, -1);
    sr_kafka_headers_add_source(h, rt->input_topic, strlen(rt->input_topic), partition, offset);
    struct sr_error err = {0};
    if (sr_kafka_produce(rt->producer, rt->dlq_rkt, RD_KAFKA_PARTITION_UA, NULL, 0, NULL, 0, h, 0,
                         NULL, false, &err) != SR_OK) {
        sr_log(SR_LOG_ERROR, CMP, "dead letter dropped", "source=%s[%d]@%lld reason=%s error=\"%s\"",
               rt->input_topic, (int)partition, (long long)offset, reason, err.msg);
        __atomic_fetch_add(&rt->dlq_dropped, 1, __ATOMIC_RELAXED);
    }
}

void sr__rt_probe_done(sr_runtime_t *rt, struct probe *pr)
{
    pthread_join(pr->thread, NULL);
    rt->probe = NULL;
    sr_log(SR_LOG_DEBUG, CMP, "stall probe done", "partition=%d asked=%lld offset=%lld lo=%lld "
           "hi=%lld leader_ok=%d read=%d took_ms=%llu why=\"%s\"", (int)pr->partition,
           (long long)pr->asked, (long long)pr->offset, (long long)pr->lo, (long long)pr->hi,
           pr->leader_ok, pr->msg != NULL,
           (unsigned long long)((sr_now_ns() - pr->started_ns) / 1000000), pr->why);
    struct part_pos *p = pos_of(rt, pr->partition);
    bool usable = p && p->assigned && p->next == pr->asked && !rt->recovering && !rt->draining &&
                  !rt->fatal && !rt->held && !(rt->gather && rt->gather->n >= rt->max_events) &&
                  !(rt->n_restores && sr__rt_restoring(rt, pr->partition));
    if (usable && pr->leader_ok && pr->asked >= 0 && pr->offset > pr->asked) {
        p->lost += (uint64_t)(pr->offset - pr->asked);
        sr_log(SR_LOG_ERROR, CMP, "records removed by the broker before they were consumed",
               "topic=%s partition=%d from=%lld to=%lld count=%lld", rt->input_topic,
               (int)pr->partition, (long long)pr->asked, (long long)pr->offset,
               (long long)(pr->offset - pr->asked));
        p->next = p->store_at = pr->offset;
        store_pending(rt, pr->partition, p);
    }
    if (usable && pr->leader_ok && pr->offset < pr->hi) {
        p->stalls++;
        sr_log(SR_LOG_WARN, CMP, "partition stalled: nothing consumed past an offset below the "
               "high watermark", "topic=%s partition=%d offset=%lld high_watermark=%lld "
               "quiet_ms=%llu", rt->input_topic, (int)pr->partition, (long long)pr->offset,
               (long long)pr->hi, (unsigned long long)pr->quiet_ms);
    }
    if (!usable || (pr->leader_ok && pr->offset >= pr->hi)) {
        /* idle (caught up); or it moved, or the runtime stopped taking input meanwhile */
        if (pr->msg)
            rd_kafka_message_destroy(pr->msg);
    } else if (pr->msg) {
        int64_t o = pr->msg->offset;
        sr_log(SR_LOG_WARN, CMP, "stalled partition: record read with raised fetch limits, "
               "consuming past it", "topic=%s partition=%d offset=%lld bytes=%zu", rt->input_topic,
               (int)pr->partition, (long long)o, pr->msg->len);
        sr__rt_take_probed(rt, pr->msg); /* owns it now; before the floor moves past it */
        seek_past(rt, pr->partition, p, o + 1);
    } else if (pr->leader_ok && pr->offset < pr->hi && pr->err) {
        const char *reason = pr->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? "unreadable_oversized"
                                                                               : "unreadable";
        sr_log(SR_LOG_ERROR, CMP, "stalled partition: record unreadable, skipped", "topic=%s "
               "partition=%d offset=%lld reason=%s error=\"%s\"", rt->input_topic,
               (int)pr->partition, (long long)pr->offset, reason, pr->why);
        seek_past(rt, pr->partition, p, pr->offset + 1);
        p->next = p->store_at = pr->offset + 1;
        p->skipped++;
        dead_letter_unread(rt, pr->partition, pr->offset, reason, pr->why);
        store_pending(rt, pr->partition, p);
    } else {
        /* The leader does not answer, or the probe got nothing and no error about the record
         * (a slow or throttled broker): never a reason to drop a record; asked again later. */
        sr_log(SR_LOG_WARN, CMP, "stalled partition: record not read, nothing skipped", "topic=%s "
               "partition=%d offset=%lld leader_answered=%d error=\"%s\"", rt->input_topic,
               (int)pr->partition, (long long)pr->offset, pr->leader_ok, pr->why);
    }
    if (p)
        p->since_ns = sr_now_ns();
    free(pr);
}

void sr__rt_stall_check(sr_runtime_t *rt)
{
    uint64_t now = sr_now_ns();
    if (rt->stall_timeout_ms <= 0 || now - rt->stall_checked_ns < 1000000000ULL)
        return;
    rt->stall_checked_ns = now;
    /* Not taking input (or not all of it): no partition is expected to advance. */
    bool waiting = rt->held || rt->recovering || rt->draining || rt->fatal || rt->txn_closing;
    uint64_t limit = (uint64_t)rt->stall_timeout_ms * 1000000ULL;
    for (int32_t k = 0; k < rt->n_pos; k++) {
        /* round robin from the partition after the last probed one: a quiet (idle) partition
         * must not keep a stalled one from its turn */
        int32_t i = (rt->probe_turn + k) % rt->n_pos;
        struct part_pos *p = &rt->pos[i];
        if (!p->assigned)
            continue;
        if (waiting || (rt->probe && rt->probe->partition == i) ||
            (rt->n_restores && sr__rt_restoring(rt, i))) {
            p->since_ns = now;
            continue;
        }
        store_pending(rt, i, p);
        /* The watermarks of the last successful fetch (a failing fetch leaves them as they were) */
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(rt->consumer, rt->input_topic, i, &lo, &hi))
            lo = hi = -1;
        if (p->next >= 0 && lo >= 0 && p->next < lo && lo <= hi) {
            /* Removed before they were consumed: librdkafka resets to the log start. */
            p->lost += (uint64_t)(lo - p->next);
            sr_log(SR_LOG_ERROR, CMP, "records removed by the broker before they were consumed",
                   "topic=%s partition=%d from=%lld to=%lld count=%lld", rt->input_topic, (int)i,
                   (long long)p->next, (long long)lo, (long long)(lo - p->next));
            p->next = p->store_at = lo;
            p->since_ns = now;
            store_pending(rt, i, p);
            continue;
        }
        /* Quiet for the timeout: idle, or stalled. The probe asks the leader (one partition at
         * a time, off the loop) and reads the offset when it is below the high watermark. */
        if (p->next == -1 || now - p->since_ns < limit || rt->probe)
            continue;
        probe_start(rt, i, p->next, now - p->since_ns);
        p->since_ns = now;
        rt->probe_turn = (i + 1) % rt->n_pos;
    }
}

/* sr_runtime_destroy, after the batches are freed (they may hold the probe's messages): a
 * probe still running ends within its wait; then the probe consumer goes. */
void sr__rt_stall_destroy(sr_runtime_t *rt)
{
    if (rt->probe) {
        pthread_join(rt->probe->thread, NULL);
        if (rt->probe->msg)
            rd_kafka_message_destroy(rt->probe->msg);
        free(rt->probe);
        rt->probe = NULL;
    }
    if (rt->probe_rk)
        rd_kafka_destroy(rt->probe_rk);
    rt->probe_rk = NULL;
    free(rt->pos);
    rt->pos = NULL;
    rt->n_pos = 0;
}
