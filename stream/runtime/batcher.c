/* batcher.c — loop thread: takes messages from the forwarded fetch queue into micro-batches
 * (batch.max.events or batch.max.wait.ms), hands them to the worker in consumption order, and
 * holds backpressure (runtime.max.inflight.events, runtime.max.producer.queue). Owns the batch
 * pool and the three queue pipes watched by uv_poll. */
#include "runtime_int.h"

int sr__rt_set_nonblock_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

static void drain_pipe(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static struct rt_batch *batch_get(sr_runtime_t *rt)
{
    struct rt_batch *b = rt->free_list;
    if (b) {
        rt->free_list = b->next;
    } else {
        b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
        b->cap = rt->max_events;
        b->msgs = calloc((size_t)b->cap, sizeof *b->msgs);
        b->t_consumed = calloc((size_t)b->cap, sizeof *b->t_consumed);
        b->refs = calloc((size_t)b->cap, sizeof *b->refs);
        b->arena = sr_arena_new(1 << 20);
        if (rt->cl_parts > 0)
            b->cl_next = calloc((size_t)rt->cl_parts, sizeof *b->cl_next);
        if (!b->msgs || !b->t_consumed || !b->refs || !b->arena || (rt->cl_parts > 0 && !b->cl_next)) {
            free(b->msgs);
            free(b->t_consumed);
            free(b->refs);
            free(b->cl_next);
            sr_arena_destroy(b->arena);
            free(b);
            return NULL;
        }
    }
    b->next = NULL;
    b->n = 0;
    b->rc = SR_OK;
    b->errmsg[0] = 0;
    b->has_state = false;
    b->produced = b->acked = b->failed = 0;
    b->computed = b->commit_sent = b->committed = false;
    b->log_sent = b->logged = false;
    b->cl_produced = b->cl_acked = 0;
    b->cl_ref = (struct out_ref){.b = b, .row = -1};
    for (int32_t i = 0; i < rt->cl_parts; i++)
        b->cl_next[i] = -1;
    return b;
}

static void batch_release_msgs(struct rt_batch *b)
{
    for (int32_t i = 0; i < b->n; i++)
        rd_kafka_message_destroy(b->msgs[i]);
    b->n = 0;
}

void sr__rt_batch_put(sr_runtime_t *rt, struct rt_batch *b)
{
    batch_release_msgs(b);
    b->next = rt->free_list;
    rt->free_list = b;
}

void sr__rt_batch_free(struct rt_batch *b)
{
    batch_release_msgs(b);
    free(b->msgs);
    free(b->t_consumed);
    free(b->refs);
    free(b->cl_next);
    sr_arena_destroy(b->arena);
    free(b);
}

static bool over_high_water(sr_runtime_t *rt)
{
    return rt->inflight_events >= rt->max_inflight ||
           (int64_t)rd_kafka_outq_len(rt->producer) >= rt->max_outq;
}

static bool under_low_water(sr_runtime_t *rt)
{
    return rt->inflight_events <= rt->max_inflight / 2 &&
           (int64_t)rd_kafka_outq_len(rt->producer) <= rt->max_outq / 2;
}

void sr__rt_pause_resume_all(sr_runtime_t *rt, bool pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(rt->consumer, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return;
    if (a->cnt > 0) {
        if (pause)
            rd_kafka_pause_partitions(rt->consumer, a);
        else
            rd_kafka_resume_partitions(rt->consumer, a);
    }
    rd_kafka_topic_partition_list_destroy(a);
}

void sr__rt_check_backpressure(sr_runtime_t *rt)
{
    if (rt->draining || rt->fatal)
        return; /* paused for good */
    if (!rt->held && over_high_water(rt)) {
        rt->held = true;
        sr_log(SR_LOG_DEBUG, CMP, "backpressure: input held", "inflight_events=%lld outq=%d",
               (long long)rt->inflight_events, rd_kafka_outq_len(rt->producer));
    } else if (rt->held && under_low_water(rt)) {
        rt->held = false;
        sr_log(SR_LOG_DEBUG, CMP, "backpressure: input taken again", "inflight_events=%lld",
               (long long)rt->inflight_events);
        sr__rt_serve_messages(rt); /* no wake-up comes for messages that waited */
    }
}

void sr__rt_dispatch(sr_runtime_t *rt)
{
    struct rt_batch *b = rt->gather;
    uv_timer_stop(&rt->batch_timer);
    if (!b || b->n == 0)
        return;
    if (rt->eos && (rt->txn_closing || rt->recovering))
        return; /* it goes in the next transaction (sr__rt_txn_maybe_commit dispatches it) */
    if (rt->eos && !rt->txn_open) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(rt->producer);
        if (e) {
            sr__rt_fail(rt, SR_EKAFKA, "exactly_once: begin_transaction: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return;
        }
        rt->txn_open = true;
        rt->txn_began_ns = sr_now_ns();
    }
    rt->gather = NULL;
    rt->due = false;
    rt->computing++;
    b->seq = ++rt->next_seq;
    if (rt->itail)
        rt->itail->next = b;
    else
        rt->ihead = b;
    rt->itail = b;
    b->next = NULL;
    pthread_mutex_lock(&rt->mmu);
    sr_hist_add(&rt->batch_hist, (double)b->n);
    pthread_mutex_unlock(&rt->mmu);
    sr__rt_batch_job(rt, b, JOB_RUN);
}

/* The deadline hands the batch over only when the worker is free; while it computes, the batch
 * keeps gathering (up to batch.max.events) and goes when the computation completes. Waiting in
 * the job queue would cost the same time, and a bigger batch costs less per event (Triton's
 * dynamic batcher). Outputs do not depend on the batch (DESIGN §8). */
static void on_batch_timer(uv_timer_t *t)
{
    sr_runtime_t *rt = t->data;
    if (rt->computing > 0)
        rt->due = true;
    else
        sr__rt_dispatch(rt);
}

/* Adds a consumed message to the gathering batch; false when it is not taken (an error event,
 * or input after a drain or failure began: not committed, so delivered again after a restart). */
static bool take_message(sr_runtime_t *rt, rd_kafka_message_t *m, uint64_t now)
{
    if (m->err) {
        if (sr__kafka_err_is_access(m->err))
            sr__rt_fail(rt, SR_EKAFKA, "kafka authorization failed (%s): %s; check the ACLs of kafka.sasl.username "
                 "for the input topic and kafka.group.id", rd_kafka_err2name(m->err),
                 rd_kafka_message_errstr(m));
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            sr_log(SR_LOG_WARN, CMP, "consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return false;
    }
    if (rt->recovering) {
        sr__rt_rewind_note(rt, m);
        rd_kafka_message_destroy(m);
        return false;
    }
    if (rt->draining || rt->fatal) {
        rd_kafka_message_destroy(m);
        return false;
    }
    if (rt->n_restores && sr__rt_restoring(rt, m->partition)) {
        rd_kafka_message_destroy(m); /* fetched before the pause: sought back after the restore */
        return false;
    }
    if (rt->gather && rt->gather->n >= rt->max_events) {
        /* exactly_once, a transaction closing: the batch waits for the next one and is full.
         * Only a message from the consumer queue gets here (the message queue takes a batch's
         * room): read it again later. */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset = m->offset;
        rd_kafka_error_t *e = rd_kafka_seek_partitions(rt->consumer, l, 0);
        if (e)
            rd_kafka_error_destroy(e);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_message_destroy(m);
        return false;
    }
    if (!sr__rt_pos_taken(rt, m, now)) {
        rd_kafka_message_destroy(m);
        return false;
    }
    if (!rt->gather) {
        rt->gather = batch_get(rt);
        if (!rt->gather) {
            rd_kafka_message_destroy(m);
            sr__rt_fail(rt, SR_ENOMEM, "out of memory for a batch");
            return false;
        }
        uv_timer_start(&rt->batch_timer, on_batch_timer, (uint64_t)rt->max_wait_ms, 0);
    }
    struct rt_batch *b = rt->gather;
    b->t_consumed[b->n] = now;
    b->msgs[b->n++] = m;
    rt->inflight_events++;
    if (b->n >= rt->max_events)
        sr__rt_dispatch(rt);
    return true;
}

/* Adaptive batching (batch.adaptive): when every waiting message has been taken and the worker
 * is idle, the gathering batch goes now instead of at its deadline. At low load batches are
 * small and wait for nothing; as load grows, messages arrive while the worker computes, so the
 * next batch has grown by the time it is free (the deadline keeps that wait bounded; the
 * timer callback dispatches when the computation completes). Outputs do not depend on the
 * batch (DESIGN §8). */
void sr__rt_dispatch_if_idle(sr_runtime_t *rt)
{
    if (rt->adaptive && rt->gather && rt->gather->n > 0 && rt->computing == 0 && !rt->held)
        sr__rt_dispatch(rt);
}

static void count_consumed(sr_runtime_t *rt, uint64_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&rt->mmu);
    rt->consumed += n;
    pthread_mutex_unlock(&rt->mmu);
}

/* Consumer queue: rebalances, errors, statistics (and a message only where a partition's
 * queue was not forwarded). */
void sr__rt_serve_consumer(sr_runtime_t *rt)
{
    rd_kafka_message_t *m;
    uint64_t n = 0;
    while (rt->consumer && (m = rd_kafka_consumer_poll(rt->consumer, 0)) != NULL) {
        n += take_message(rt, m, sr_now_ns());
    }
    count_consumed(rt, n);
    sr__rt_check_backpressure(rt);
    if (n)
        sr__rt_dispatch_if_idle(rt);
}

/* Message queue: takes what is there, a batch's room at a time, unless held back. */
void sr__rt_serve_messages(sr_runtime_t *rt)
{
    uint64_t total = 0;
    while (rt->mq && !rt->held && !rt->draining && !rt->fatal && !rt->recovering) {
        int32_t room = rt->gather ? rt->max_events - rt->gather->n : rt->max_events;
        ssize_t n = rd_kafka_consume_batch_queue(rt->mq, 0, rt->take, (size_t)room);
        if (n <= 0)
            break;
        uint64_t now = sr_now_ns();
        for (ssize_t i = 0; i < n; i++) {
            total += take_message(rt, rt->take[i], now);
        }
        if (over_high_water(rt))
            sr__rt_check_backpressure(rt);
        if (n < room)
            break;
    }
    count_consumed(rt, total);
    if (total)
        sr__rt_dispatch_if_idle(rt);
}

void sr__rt_take_probed(sr_runtime_t *rt, rd_kafka_message_t *m)
{
    count_consumed(rt, take_message(rt, m, sr_now_ns()));
}

void sr__rt_serve_producer(sr_runtime_t *rt)
{
    while (rd_kafka_poll(rt->producer, 0) > 0) {
    }
    sr__rt_advance(rt);
}

void sr__rt_on_cpoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sr_runtime_t *rt = h->data;
    drain_pipe(rt->cpipe[0]);
    sr__rt_serve_consumer(rt);
}

void sr__rt_on_mpoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sr_runtime_t *rt = h->data;
    drain_pipe(rt->mpipe[0]);
    sr__rt_serve_messages(rt);
}

void sr__rt_on_ppoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sr_runtime_t *rt = h->data;
    drain_pipe(rt->ppipe[0]);
    sr__rt_serve_producer(rt);
}
