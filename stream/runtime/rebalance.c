/* rebalance.c — loop thread (librdkafka serves rebalances on the consumer queue, which the loop
 * polls): assignment with changelog restore before consumption, revocation with the partition's
 * batches finished and committed first (DESIGN §8.7). */
#include "runtime_int.h"

static int64_t applied_offset(sr_runtime_t *rt, int32_t partition);

/* The restore record of a partition, or NULL (loop thread). */
struct restore *sr__rt_restoring(sr_runtime_t *rt, int32_t partition)
{
    for (int i = 0; i < rt->n_restores; i++)
        if (rt->restores[i]->partition == partition &&
            !__atomic_load_n(&rt->restores[i]->cancel, __ATOMIC_ACQUIRE))
            return rt->restores[i];
    return NULL;
}

static void restore_forget(sr_runtime_t *rt, struct restore *rs)
{
    for (int i = 0; i < rt->n_restores; i++)
        if (rt->restores[i] == rs) {
            rt->restores[i] = rt->restores[--rt->n_restores];
            break;
        }
    free(rs);
}

/* Loop: a partition's restore ended. Consumption starts after what its state applied (or the
 * group's committed offset, whichever is later): seek, then resume. */
/* The state applied further than the group committed (a crash between the local commit and
 * the offset commit, DESIGN §8): the start offset is stored for commit at once, so the group's
 * lag reaches 0 even when the partition gets no new event (at_least_once; exactly_once commits
 * offsets only inside transactions). l holds one partition with its start offset. */
static void store_ahead(sr_runtime_t *rt, rd_kafka_topic_partition_list_t *l, int64_t committed)
{
    if (rt->eos || l->elems[0].offset < 0 || l->elems[0].offset <= committed)
        return;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(rt->consumer, l);
    if (e)
        sr_log(SR_LOG_WARN, CMP, "cannot store the applied offset for commit", "partition=%d "
               "error=\"%s\"", (int)l->elems[0].partition, rd_kafka_err2str(e));
}

void sr__rt_restore_finished(sr_runtime_t *rt, struct restore *rs)
{
    if (__atomic_load_n(&rs->cancel, __ATOMIC_ACQUIRE)) {
        restore_forget(rt, rs); /* revoked meanwhile */
        return;
    }
    if (rs->rc != SR_OK) {
        sr__rt_fail(rt, rs->rc, "restore of partition %d from the changelog failed: %s", (int)rs->partition,
             rs->errmsg);
        restore_forget(rt, rs);
        return;
    }
    int64_t applied = applied_offset(rt, rs->partition);
    int64_t start = rs->committed;
    if (applied >= 0 && applied + 1 > start)
        start = applied + 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    int64_t from = start >= 0 ? start : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_topic_partition_list_add(l, rt->input_topic, rs->partition)->offset = from;
    char ob[SR_KAFKA_OFFSET_STR];
    sr_log(SR_LOG_INFO, CMP, "partition restored: consuming", "topic=%s partition=%d offset=%s "
           "applied=%lld", rt->input_topic, (int)rs->partition, sr_kafka_offset_str(from, ob),
           (long long)applied);
    int64_t committed = rs->committed;
    sr__rt_pos_start(rt, rs->partition, start);
    restore_forget(rt, rs);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(rt->consumer, l, 0);
    if (e) {
        sr__rt_fail(rt, SR_EKAFKA, "seek after a restore: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else {
        store_ahead(rt, l, committed);
        if (!rt->draining && !rt->fatal)
            rd_kafka_resume_partitions(rt->consumer, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static int64_t applied_offset(sr_runtime_t *rt, int32_t partition)
{
    pthread_mutex_lock(&rt->g_mu);
    int64_t a = sr_state_applied_offset(rt->state, partition);
    pthread_mutex_unlock(&rt->g_mu);
    return a;
}

void sr__rt_log_parts(const char *what, const rd_kafka_topic_partition_list_t *l)
{
    char buf[512];
    size_t n = 0;
    buf[0] = 0;
    /* "events[3]@17", a logical offset by name: "events[3]@beginning", "events[3]@(none)". */
    for (int i = 0; i < l->cnt && n + 48 < sizeof buf; i++) {
        char ob[SR_KAFKA_OFFSET_STR];
        int k = snprintf(buf + n, sizeof buf - n, "%s%s[%d]@%s", i ? "," : "", l->elems[i].topic,
                         (int)l->elems[i].partition, sr_kafka_offset_str(l->elems[i].offset, ob));
        n = k < 0 || (size_t)k >= sizeof buf - n ? sizeof buf - 1 : n + (size_t)k;
    }
    sr_log(SR_LOG_INFO, CMP, what, "count=%d partitions=%s", l->cnt, buf);
}

static void on_assign(sr_runtime_t *rt, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                      bool cooperative)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    if (e)
        sr_log(SR_LOG_WARN, CMP, "cannot read committed offsets", "error=\"%s\"",
               rd_kafka_err2str(e));
    rt->joined = true;
    if (!rt->notified_ready) { /* systemd Type=notify: ready once in the group (DEPLOY.md) */
        rt->notified_ready = true;
        sr_notify_ready("joined the consumer group");
    }
    /* With a changelog, each new partition is restored before it is consumed: it is assigned
     * paused, its state restored off the loop (JOB_RESTORE steps between batches), then sought
     * to what its state applied and resumed (sr__rt_restore_finished). */
    rd_kafka_topic_partition_list_t *hold = rd_kafka_topic_partition_list_new(l->cnt > 0 ? l->cnt : 1);
    int64_t *committed_of = calloc((size_t)(l->cnt > 0 ? l->cnt : 1), sizeof *committed_of);
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *p = &l->elems[i];
        int64_t committed = e || p->err || p->offset < 0 ? -1 : p->offset;
        if (committed_of)
            committed_of[i] = committed;
        if (rt->cl) {
            struct restore *rs = calloc(1, sizeof *rs);
            struct restore **nr = rt->n_restores == rt->cap_restores
                ? realloc(rt->restores, sizeof *nr * (size_t)(rt->cap_restores ? 2 * rt->cap_restores : 16))
                : rt->restores;
            if (!rs || !nr) {
                free(rs);
                sr__rt_fail(rt, SR_ENOMEM, "out of memory starting a restore");
            } else {
                if (nr != rt->restores) {
                    rt->restores = nr;
                    rt->cap_restores = rt->cap_restores ? 2 * rt->cap_restores : 16;
                }
                rs->partition = p->partition;
                rs->committed = committed;
                rs->remaining = -1;
                rs->job.type = JOB_RESTORE;
                rs->job.rs = rs;
                rt->restores[rt->n_restores++] = rs;
                rd_kafka_topic_partition_list_add(hold, p->topic, p->partition);
                sr__rt_job_push(rt, &rs->job); /* the pause below happens before any completion */
            }
        }
        int64_t applied = applied_offset(rt, p->partition);
        int64_t start = committed >= 0 ? committed : -1;
        if (applied >= 0 && applied + 1 > start)
            start = applied + 1;
        p->offset = start >= 0 ? start : RD_KAFKA_OFFSET_INVALID;
        p->err = 0;
        sr__rt_pos_start(rt, p->partition, start); /* -1: from the log start */
    }
    sr__rt_log_parts("partitions assigned", l);
    /* Before the fetchers start: their messages go to the message queue, not the consumer
     * queue (an application forward is kept by librdkafka's fetch start). */
    for (int i = 0; rt->mq && i < l->cnt; i++) {
        rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(rk, l->elems[i].topic,
                                                            l->elems[i].partition);
        if (pq) {
            rd_kafka_queue_forward(pq, rt->mq);
            rd_kafka_queue_destroy(pq);
        }
    }
    if (cooperative) {
        rd_kafka_error_t *err = rd_kafka_incremental_assign(rk, l);
        if (err) {
            sr__rt_fail(rt, SR_EKAFKA, "incremental assign: %s", rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
        }
    } else {
        rd_kafka_assign(rk, l);
    }
    for (int i = 0; !rt->cl && i < l->cnt; i++) { /* with a changelog: after the restore */
        rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(one, l->elems[i].topic, l->elems[i].partition)->offset =
            l->elems[i].offset;
        store_ahead(rt, one, committed_of ? committed_of[i] : INT64_MAX);
        rd_kafka_topic_partition_list_destroy(one);
    }
    free(committed_of);
    rt->assigned += l->cnt;
    if (rt->draining || rt->fatal)
        rd_kafka_pause_partitions(rk, l);
    else if (hold->cnt)
        rd_kafka_pause_partitions(rk, hold);
    rd_kafka_topic_partition_list_destroy(hold);
    rd_kafka_topic_partition_list_destroy(l);
}

static void on_revoke(sr_runtime_t *rt, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                      bool cooperative)
{
    sr__rt_log_parts("partitions revoked", parts);
    bool lost = rd_kafka_assignment_lost(rk);
    for (int i = 0; i < parts->cnt; i++) { /* a restore of a revoked partition stops */
        struct restore *rs = sr__rt_restoring(rt, parts->elems[i].partition);
        if (rs)
            __atomic_store_n(&rs->cancel, 1, __ATOMIC_RELEASE);
        sr__rt_pos_stop(rt, parts->elems[i].partition);
    }
    /* Finish everything in flight (batches mix partitions), store offsets, commit (under
     * exactly_once: commit the transaction, which holds the offsets). */
    rt->revoking = true;
    sr__rt_drain_blocking(rt, 30000);
    rt->revoking = false;
    if (!lost && !rt->fatal && !rt->eos) {
        rd_kafka_resp_err_t e = rd_kafka_commit(rk, NULL, 0);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            pthread_mutex_lock(&rt->mmu);
            rt->commit_failures++;
            pthread_mutex_unlock(&rt->mmu);
            sr_log(SR_LOG_WARN, CMP, "offsets NOT committed on revoke: the next owner processes "
                   "their events again (state is in the changelog)", "error=\"%s\"",
                   rd_kafka_err2str(e));
        }
    } else if (lost) {
        sr_log(SR_LOG_WARN, CMP, "partitions lost (the group moved on without us): offsets not "
               "committed", "count=%d", parts->cnt);
    }
    for (int i = 0; i < parts->cnt; i++) {
        struct job *j = calloc(1, sizeof *j);
        if (j) {
            j->type = JOB_EVICT;
            j->partition = parts->elems[i].partition;
            sr__rt_job_push(rt, j);
        }
    }
    if (cooperative) {
        rd_kafka_error_t *err = rd_kafka_incremental_unassign(rk, parts);
        if (err) {
            sr_log(SR_LOG_WARN, CMP, "incremental unassign failed", "error=\"%s\"",
                   rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
        }
        rt->assigned -= parts->cnt;
    } else {
        rd_kafka_assign(rk, NULL);
        rt->assigned = 0;
    }
    if (rt->assigned < 0)
        rt->assigned = 0;
}

void sr__rt_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    sr_runtime_t *rt = opaque;
    bool cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    pthread_mutex_lock(&rt->mmu);
    rt->rebalances++;
    pthread_mutex_unlock(&rt->mmu);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(rt, rk, parts, cooperative);
    else
        on_revoke(rt, rk, parts, cooperative);
}
