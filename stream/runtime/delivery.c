/* delivery.c — loop thread: delivery reports, batch completion in consumption order (advance),
 * offsets stored or sent to the transaction, exactly_once transactions, and in-process recovery
 * from a failed delivery (DESIGN §8). */
#include "runtime_int.h"

static void recover_check(sr_runtime_t *rt);
static void txn_abort(sr_runtime_t *rt);

/* exactly_once: the open transaction's first batch (batches before it are in a committed
 * transaction, their local commit pending), or NULL. */
static struct rt_batch *txn_first(sr_runtime_t *rt)
{
    struct rt_batch *b = rt->ihead;
    while (b && b->commit_sent)
        b = b->next;
    return b;
}

/* A changelog record settled (acknowledged or failed) for every one produced, and the
 * outputs too: nothing of the batch is still in librdkafka's hands. */
static bool batch_settled(const struct rt_batch *b)
{
    return b->acked + b->cl_acked + b->failed >= b->produced + b->cl_produced &&
           (!b->log_sent || b->logged);
}

/* Computed without error, and every recommendation and dead letter acknowledged. */
static bool batch_outputs_acked(const struct rt_batch *b)
{
    return b->computed && b->rc == SR_OK && !b->failed && b->acked >= b->produced;
}

/* Its state changes are in the changelog, acknowledged (or it needs none there). */
static bool batch_logged(const sr_runtime_t *rt, const struct rt_batch *b)
{
    return !rt->cl || !b->has_state || (b->logged && b->cl_acked >= b->cl_produced);
}

/* Hands the batch to the worker as its one job of that type. */
void sr__rt_batch_job(sr_runtime_t *rt, struct rt_batch *b, enum job_type type)
{
    b->job.type = type;
    b->job.b = b;
    sr__rt_job_push(rt, &b->job);
}

void sr__rt_rewind_note(sr_runtime_t *rt, const rd_kafka_message_t *m)
{
    const char *t = rd_kafka_topic_name(m->rkt);
    for (int i = 0; i < rt->n_rewinds; i++) {
        struct rewind *r = &rt->rewinds[i];
        if (r->partition == m->partition && !strcmp(r->topic, t)) {
            if (m->offset < r->offset)
                r->offset = m->offset;
            return;
        }
    }
    if (rt->n_rewinds == rt->cap_rewinds) {
        int cap = rt->cap_rewinds ? rt->cap_rewinds * 2 : 16;
        struct rewind *nr = realloc(rt->rewinds, sizeof *nr * (size_t)cap);
        if (!nr) {
            sr__rt_fail(rt, SR_ENOMEM, "out of memory while recovering from a failed delivery");
            return;
        }
        rt->rewinds = nr;
        rt->cap_rewinds = cap;
    }
    struct rewind *r = &rt->rewinds[rt->n_rewinds++];
    snprintf(r->topic, sizeof r->topic, "%s", t);
    r->partition = m->partition;
    r->offset = m->offset;
}

static void recover_begin(sr_runtime_t *rt, struct rt_batch *b)
{
    if (rt->fatal || (rt->recovering && rt->rfirst->seq <= b->seq))
        return; /* already dropped with an earlier batch */
    if (!rt->recovering) {
        if (++rt->recoveries > rt->max_recoveries) {
            sr__rt_fail(rt, SR_EKAFKA, "%lld deliveries in a row failed (runtime.max.recoveries)",
                 (long long)rt->recoveries);
            return;
        }
        rt->recovering = true;
        rt->n_rewinds = 0;
        if (rt->gather) { /* input after F: consumed again after the rewind */
            for (int32_t i = 0; i < rt->gather->n; i++)
                sr__rt_rewind_note(rt, rt->gather->msgs[i]);
            rt->inflight_events -= rt->gather->n;
            sr__rt_batch_put(rt, rt->gather);
            rt->gather = NULL;
            rt->due = false;
            uv_timer_stop(&rt->batch_timer);
        }
    }
    rt->rfirst = b;
    /* exactly_once: abort soon (sr__rt_advance: never inside a librdkafka callback, where sr__rt_dr_cb may
     * have called this); the abort purges what is queued, so the dropped batches settle. */
    rt->txn_must_abort = rt->eos && rt->txn_open;
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        sr__rt_fail(rt, SR_ENOMEM, "out of memory while recovering from a failed delivery");
        return;
    }
    j->type = JOB_DISCARD;
    j->state_id = b->discard_from;
    rt->discards++;
    sr_log(SR_LOG_WARN, CMP, "recovering: dropping a batch and the later ones, their events "
           "will be processed again", "batch_events=%d discard_from_state=%llu attempt=%lld",
           (int)b->n, (unsigned long long)b->discard_from, (long long)rt->recoveries);
    sr__rt_job_push(rt, j);
}

/* Finishes a recovery once the worker discarded the state and the dropped batches settled. */
static void recover_check(sr_runtime_t *rt)
{
    if (!rt->recovering || rt->discards > 0)
        return;
    struct rt_batch *prev = NULL, *b;
    for (b = rt->ihead; b && b != rt->rfirst; b = b->next)
        prev = b;
    for (struct rt_batch *x = b; x; x = x->next)
        if (!x->computed || !batch_settled(x))
            return; /* still computing, or delivery reports to come (they point into x) */
    uint64_t dropped = 0;
    while (b) {
        struct rt_batch *next = b->next;
        for (int32_t i = 0; i < b->n; i++)
            sr__rt_rewind_note(rt, b->msgs[i]);
        rt->inflight_events -= b->n;
        dropped += (uint64_t)b->n;
        sr__rt_batch_put(rt, b);
        b = next;
    }
    if (prev)
        prev->next = NULL;
    else
        rt->ihead = NULL;
    rt->itail = prev;
    rt->recovering = false;
    rt->rfirst = NULL;
    pthread_mutex_lock(&rt->mmu);
    rt->recovered_batches++;
    pthread_mutex_unlock(&rt->mmu);
    if (rt->n_rewinds > 0 && rt->consumer && !rt->fatal) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(rt->n_rewinds);
        for (int i = 0; i < rt->n_rewinds; i++) {
            rd_kafka_topic_partition_list_add(l, rt->rewinds[i].topic,
                                              rt->rewinds[i].partition)->offset = rt->rewinds[i].offset;
            sr__rt_pos_rewind(rt, rt->rewinds[i].partition, rt->rewinds[i].offset);
        }
        sr__rt_log_parts("recovering: rewinding", l);
        /* Asynchronous: the version barrier is set now, so messages already fetched past these
         * offsets are not handed out; a partition revoked meanwhile fails here, harmlessly
         * (its next owner starts from the committed offset). */
        rd_kafka_error_t *e = rd_kafka_seek_partitions(rt->consumer, l, 0);
        if (e) {
            sr__rt_fail(rt, SR_EKAFKA, "seek after a failed delivery: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    sr_log(SR_LOG_INFO, CMP, "recovered: processing again from the rewound offsets",
           "dropped_events=%llu", (unsigned long long)dropped);
    rt->n_rewinds = 0;
    sr__rt_check_backpressure(rt);
    sr__rt_serve_messages(rt);
}

void sr__rt_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    sr_runtime_t *rt = opaque;
    struct out_ref *ref = m->_private;
    if (!ref)
        return;
    struct rt_batch *b = ref->b;
    bool dlq = rt->dlq_rkt && m->rkt == rt->dlq_rkt;
    if (m->err && dlq && !rt->eos && !rd_kafka_fatal_error(rt->producer, NULL, 0)) {
        /* A dead letter the broker refuses (too large for its message.max.bytes, a policy):
         * logged and counted, never a reason to reprocess or stop the stream (DESIGN §4).
         * Under exactly_once the transaction aborts instead, below. */
        sr_log(SR_LOG_ERROR, CMP, "dead letter dropped", "topic=%s partition=%d offset=%lld "
               "error=\"%s\"",
               rd_kafka_topic_name(b->msgs[ref->row]->rkt), (int)b->msgs[ref->row]->partition,
               (long long)b->msgs[ref->row]->offset, rd_kafka_err2str(m->err));
        __atomic_fetch_add(&rt->dlq_dropped, 1, __ATOMIC_RELAXED);
        b->acked++;
        return;
    }
    if (m->err) {
        b->failed++;
        pthread_mutex_lock(&rt->mmu);
        rt->delivery_failures++;
        pthread_mutex_unlock(&rt->mmu);
        if (b->failed == 1 && ref->row < 0)
            sr_log(SR_LOG_WARN, CMP, "delivery failed", "topic=%s partition=%d error=\"%s\"",
                   rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
        else if (b->failed == 1)
            sr_log(SR_LOG_WARN, CMP, "delivery failed", "topic=%s source_partition=%d "
                   "source_offset=%lld error=\"%s\"", rd_kafka_topic_name(m->rkt),
                   (int)b->msgs[ref->row]->partition, (long long)b->msgs[ref->row]->offset,
                   rd_kafka_err2str(m->err));
        /* exactly_once: the open transaction aborts whole */
        recover_begin(rt, rt->eos && txn_first(rt) ? txn_first(rt) : b);
        return;
    }
    if (ref->row < 0) { /* a changelog record */
        b->cl_acked++;
        if (m->partition >= 0 && m->partition < rt->cl_parts && m->offset + 1 > b->cl_next[m->partition])
            b->cl_next[m->partition] = m->offset + 1;
        return;
    }
    b->acked++;
    uint64_t t_in = b->t_consumed[ref->row];
    double lat = (double)(sr_now_ns() - t_in) / 1e9, proc = (double)(ref->t_out - t_in) / 1e9;
    pthread_mutex_lock(&rt->mmu);
    if (dlq) {
        rt->dlq_published++;
    } else {
        rt->published++;
        sr_hist_add(&rt->lat_hist, lat);
        sr_hist_add(&rt->proc_hist, proc);
    }
    pthread_mutex_unlock(&rt->mmu);
}

/* Raises l's offsets to the batch's next offsets (highest offset + 1 per partition). */
static void batch_next_offsets(const struct rt_batch *b, rd_kafka_topic_partition_list_t *l)
{
    for (int32_t i = 0; i < b->n; i++) {
        const rd_kafka_message_t *m = b->msgs[i];
        const char *t = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(l, t, m->partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(l, t, m->partition);
        if (m->offset + 1 > p->offset)
            p->offset = m->offset + 1;
    }
}

/* Stores the batch's consumer offsets (highest offset + 1 per partition) for auto-commit. */
static void store_offsets(sr_runtime_t *rt, struct rt_batch *b)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    batch_next_offsets(b, l);
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(rt->consumer, l);
    if (e)
        sr_log(SR_LOG_DEBUG, CMP, "offsets not stored (partition no longer assigned)",
               "error=\"%s\"", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* exactly_once: aborts the open transaction (its outputs and changelog records are never
 * seen by read_committed consumers); the caller drops and reprocesses its batches.
 *
 * librdkafka's abort purges the queues once, when it starts, then flushes. A request that was
 * in flight behind a failed one for the same partition comes back OUT_OF_ORDER_SEQUENCE
 * ("requires epoch bump"): its messages return to the partition's queue after that purge and
 * wait there for the epoch bump, which comes only after the flush, so one long call waits for
 * message.timeout.ms. So the abort runs TXN_ABORT_SLICE_MS at a time and, while it answers
 * "retriable", is called again from sr__rt_advance (housekeeping timer): the next call purges
 * again and completes; the loop keeps serving meanwhile (DESIGN §8.8, §10). */
#define TXN_ABORT_SLICE_MS 100
#define TXN_ABORT_MAX_NS (600ULL * 1000000000ULL)
static void txn_abort(sr_runtime_t *rt)
{
    if (!rt->eos || !rt->txn_open)
        return;
    if (!rt->txn_abort_since_ns)
        rt->txn_abort_since_ns = sr_now_ns();
    rd_kafka_error_t *e = rd_kafka_abort_transaction(rt->producer, TXN_ABORT_SLICE_MS);
    if (e && rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e) &&
        sr_now_ns() - rt->txn_abort_since_ns < TXN_ABORT_MAX_NS) {
        if (!rt->txn_abort_waiting)
            sr_log(SR_LOG_WARN, CMP, "transaction abort not complete yet (messages in flight); "
                   "resuming it", "error=\"%s\"", rd_kafka_error_string(e));
        rt->txn_abort_waiting = true;
        rt->txn_must_abort = true; /* sr__rt_advance resumes it */
        rd_kafka_error_destroy(e);
        return;
    }
    rt->txn_abort_since_ns = 0;
    rt->txn_abort_waiting = false;
    rt->txn_open = rt->txn_closing = false;
    pthread_mutex_lock(&rt->mmu);
    rt->aborts++;
    pthread_mutex_unlock(&rt->mmu);
    if (e) {
        sr__rt_fail(rt, SR_EKAFKA, "exactly_once: abort_transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return;
    }
    sr_log(SR_LOG_WARN, CMP, "transaction aborted: its batches are processed again",
           "aborts=%llu", (unsigned long long)rt->aborts);
}

/* exactly_once: commits the open transaction once it is due (commit.interval.ms, a drain or
 * a revoke) and every batch in it is computed, acknowledged and logged: outputs, dead letters,
 * changelog records and the input offsets (send_offsets_to_transaction with the consumer's
 * group metadata, so a zombie of an older generation is fenced) in one commit. Then the batches'
 * local state commits (JOB_COMMIT) and the waiting batch starts the next transaction. An
 * abortable failure aborts and reprocesses; a fatal one (fenced) stops the runtime. */
void sr__rt_txn_maybe_commit(sr_runtime_t *rt)
{
    if (!rt->eos || !rt->txn_open || rt->recovering || rt->fatal || rt->txn_abort_waiting)
        return;
    if (!rt->draining && !rt->revoking && sr_now_ns() - rt->txn_began_ns < rt->txn_interval_ns)
        return;
    rt->txn_closing = true;
    if (rt->computing > 0)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (struct rt_batch *b = rt->ihead; b; b = b->next) {
        if (b->commit_sent)
            continue;
        if (!batch_outputs_acked(b) || !batch_logged(rt, b)) {
            rd_kafka_topic_partition_list_destroy(l);
            return;
        }
        batch_next_offsets(b, l);
    }
    rd_kafka_error_t *e = NULL;
    if (l->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata(rt->consumer);
        e = rd_kafka_send_offsets_to_transaction(rt->producer, l, g, -1);
        rd_kafka_consumer_group_metadata_destroy(g);
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (!e)
        e = rd_kafka_commit_transaction(rt->producer, -1);
    if (e) {
        bool fatal = rd_kafka_error_is_fatal(e), abortable = rd_kafka_error_txn_requires_abort(e);
        if (fatal)
            sr__rt_fail(rt, SR_EKAFKA, "exactly_once: the transaction cannot commit (%s): %s%s",
                 rd_kafka_error_name(e), rd_kafka_error_string(e),
                 rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__FENCED ||
                 rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED
                     ? " (fenced: another process uses this transactional.id)" : "");
        else if (abortable && txn_first(rt))
            recover_begin(rt, txn_first(rt)); /* aborts (sr__rt_advance), then reprocesses */
        else if (abortable)
            txn_abort(rt);
        else
            sr_log(SR_LOG_WARN, CMP, "transaction commit failed, retrying", "error=\"%s\"",
                   rd_kafka_error_string(e));
        pthread_mutex_lock(&rt->mmu);
        rt->commit_failures++;
        pthread_mutex_unlock(&rt->mmu);
        rd_kafka_error_destroy(e);
        return;
    }
    rt->txn_open = rt->txn_closing = false;
    pthread_mutex_lock(&rt->mmu);
    rt->transactions++;
    pthread_mutex_unlock(&rt->mmu);
    for (struct rt_batch *b = rt->ihead; b; b = b->next) {
        if (b->commit_sent)
            continue;
        b->commit_sent = true;
        sr__rt_batch_job(rt, b, JOB_COMMIT);
    }
    sr__rt_dispatch(rt);
}

/* Sends commit jobs for the complete batches at the head of the in-flight list (in order: a
 * batch commits only after every earlier one), and checks whether a drain is finished. Under
 * exactly_once the transaction decides instead (sr__rt_txn_maybe_commit). */
void sr__rt_advance(sr_runtime_t *rt)
{
    if (rt->txn_must_abort) {
        rt->txn_must_abort = false;
        txn_abort(rt);
    }
    bool in_order = true; /* every earlier batch has its commit sent */
    for (struct rt_batch *b = rt->ihead; b; b = b->next) {
        if (b->commit_sent)
            continue;
        if (!batch_outputs_acked(b))
            break;
        /* With a changelog, the batch's state changes go there first (in batch order: the
         * log jobs share the commit queue), and its local commit waits for their acks. */
        if (rt->cl && b->has_state && !b->log_sent) {
            b->log_sent = true;
            sr__rt_batch_job(rt, b, JOB_LOG);
        }
        in_order = in_order && batch_logged(rt, b);
        if (!in_order || rt->eos)
            continue;
        b->commit_sent = true;
        sr__rt_batch_job(rt, b, JOB_COMMIT);
    }
    sr__rt_txn_maybe_commit(rt);
    recover_check(rt);
    sr__rt_check_backpressure(rt);
    if ((rt->draining || rt->fatal) && !rt->finishing) {
        bool idle = !rt->gather || rt->fatal;
        for (struct rt_batch *b = rt->ihead; idle && b; b = b->next) {
            if (!rt->fatal)
                idle = false; /* a drain waits for every batch to commit */
            else if (!b->computed || (b->commit_sent && !b->committed) || !batch_settled(b))
                idle = false; /* a failure waits for the worker and the broker to settle */
        }
        if (idle) {
            rt->finishing = true;
            uv_stop(&rt->loop);
        }
    }
}

/* exactly_once: a produce refused because the transaction failed (it must abort) is not the
 * end: the transaction aborts and its batches are processed again. True when so handled. */
static bool txn_produce_failed(sr_runtime_t *rt, struct rt_batch *b)
{
    if (!rt->eos || b->rc != SR_EKAFKA)
        return false;
    if (rt->recovering && rt->rfirst && rt->rfirst->seq <= b->seq)
        return true; /* dropped with the transaction already */
    struct rt_batch *first = txn_first(rt);
    if (!first)
        return false;
    sr_log(SR_LOG_WARN, CMP, "produce refused in a failed transaction: aborting it",
           "error=\"%s\"", b->errmsg);
    recover_begin(rt, first);
    return true;
}

void sr__rt_handle_completions(sr_runtime_t *rt)
{
    pthread_mutex_lock(&rt->cmu);
    struct job *j = rt->chead;
    rt->chead = rt->ctail = NULL;
    pthread_mutex_unlock(&rt->cmu);
    while (j) {
        struct job *next = j->next;
        struct rt_batch *b = j->b;
        if (j->type == JOB_RUN) {
            b->computed = true;
            rt->computing--;
            if (b->rc != SR_OK && !txn_produce_failed(rt, b))
                sr__rt_fail(rt, b->rc, "batch of %d events failed: %s", (int)b->n, b->errmsg);
        } else if (j->type == JOB_LOG) {
            b->logged = true;
            if (b->rc != SR_OK && !txn_produce_failed(rt, b))
                sr__rt_fail(rt, b->rc, "state changelog: %s", b->errmsg);
        } else if (j->type == JOB_COMMIT) {
            if (b->rc != SR_OK) {
                sr__rt_fail(rt, b->rc, "state commit failed: %s", b->errmsg);
            } else {
                b->committed = true;
                rt->recoveries = 0;
            }
        } else if (j->type == JOB_RESTORE) {
            sr__rt_restore_finished(rt, j->rs);
        } else if (j->type == JOB_PROBE) {
            sr__rt_probe_done(rt, j->pr);
        } else if (j->type == JOB_DISCARD) {
            rt->discards--;
            free(j);
        } else if (j->type == JOB_SWAP) {
            sr__rt_reload_swapped(rt, j->rl);
        }
        j = next;
    }
    /* Committed batches leave from the head, in order. */
    while (rt->ihead && rt->ihead->committed) {
        struct rt_batch *b = rt->ihead;
        rt->ihead = b->next;
        if (!rt->ihead)
            rt->itail = NULL;
        if (!rt->eos) /* exactly_once: the offsets went in the transaction */
            store_offsets(rt, b);
        rt->inflight_events -= b->n;
        pthread_mutex_lock(&rt->mmu);
        rt->committed_events += (uint64_t)b->n;
        pthread_mutex_unlock(&rt->mmu);
        sr__rt_batch_put(rt, b);
    }
    if (rt->due && rt->computing == 0)
        sr__rt_dispatch(rt);
    else if (rt->adaptive && rt->computing == 0 && rt->gather) {
        sr__rt_serve_messages(rt); /* what waits in the queue joins the batch first */
        sr__rt_dispatch_if_idle(rt);
    }
    sr__rt_advance(rt);
}

void sr__rt_on_async(uv_async_t *a)
{
    sr_runtime_t *rt = a->data;
    if (__atomic_load_n(&rt->stop_requested, __ATOMIC_ACQUIRE) && !rt->draining)
        sr__rt_begin_drain(rt);
    sr__rt_handle_completions(rt);
}
