/* runtime.c — the online runtime (`streamrec run`, DESIGN §1, §7, §8): a consumer group in,
 * the operator graph in the middle, recommendations out to a topic.
 *
 * Threads. The libuv loop thread owns all I/O: the consumer queue (rd_kafka_queue_io_event_enable
 * writes to a pipe watched by uv_poll; rebalances, statistics and errors are served there), the
 * message queue (every assigned partition's fetch queue is forwarded to it before the partition
 * is assigned; drained with rd_kafka_consume_batch_queue, same pipe mechanism),
 * the producer's delivery reports (same mechanism), the batch deadline and housekeeping timers,
 * SIGTERM/SIGINT and the metrics listener. ONE worker thread runs the graph (it is
 * single-threaded), so batch n+1 gathers on the loop while batch n computes. Loop → worker: a
 * mutex/condvar job queue (run a batch, commit a batch's state, evict a partition); worker →
 * loop: a completion queue + uv_async_send. The loop never waits on the worker, except while
 * partitions are revoked (they must be finished and committed before they are handed over).
 *
 * Delivery (§8, at_least_once). A batch is a run of consumed messages (batch.max.events, or
 * batch.max.wait.ms after its first message). The worker runs the graph over it; the topic sink
 * produces each recommendation (key = session_id, provenance headers) and undecodable messages
 * go unchanged to dlq.topic. Batches complete in consumption order: once every message a batch
 * produced is acknowledged and every earlier batch is complete, the worker commits its staged
 * state (sr_graph_commit: sessions + applied offsets in one RocksDB write), and only then are
 * its consumer offsets stored (enable.auto.offset.store=false) for auto-commit. A message that
 * finally fails delivery is recovered in-process (recover_begin below): its batch and every
 * later one are dropped with their staged state, their partitions sought back, their events
 * processed again (duplicates byte-identical); after runtime.max.recoveries failures in a row
 * the runtime stops non-zero instead, and a restart resumes from the committed offsets, the
 * applied offsets making session_update skip what was applied: nothing is lost, nothing is
 * applied twice either way.
 *
 * Backpressure: above runtime.max.inflight.events events in flight (gathering, computing or
 * awaiting acks) or runtime.max.producer.queue messages in the producer queue, the loop stops
 * taking messages from the message queue (it keeps serving the consumer queue: rebalances and
 * the poll interval); it takes them again below half of both. librdkafka's own prefetch bounds
 * (queued.min.messages, queued.max.messages.kbytes) then stop the fetcher. Partitions are not
 * paused for this: in librdkafka 2.0 a resumed partition waits up to a second for its broker
 * thread to notice, and pausing drops the prefetched messages. Nothing is dropped. */
#include "sr_state.h"
#include "sr_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMP "run"

struct rt_batch;

struct out_ref {
    struct rt_batch *b;
    int32_t row;
};

enum job_type { JOB_RUN = 1, JOB_LOG, JOB_COMMIT, JOB_EVICT, JOB_DISCARD, JOB_RESTORE, JOB_QUIT };

struct restore;

struct job {
    struct job *next;
    enum job_type type;
    struct rt_batch *b;
    int32_t partition;
    uint64_t state_id;       /* JOB_DISCARD: drop staged state from this id on */
    struct restore *rs;      /* JOB_RESTORE */
};

/* A partition being restored from the changelog before it is consumed (DESIGN §8). The loop
 * owns the record; the worker owns `r` while the job runs. */
struct restore {
    struct job job;
    int32_t partition;
    int64_t committed;       /* the group's committed offset at assignment, -1 when none */
    int cancel;              /* atomic: revoked meanwhile: the worker stops, the loop forgets */
    int64_t remaining;       /* atomic: changelog records left (metrics, /readyz) */
    sr_changelog_restore_t *r;
    sr_err_t rc;
    char errmsg[SR_ERROR_MSG_MAX];
};

struct rt_batch {
    struct rt_batch *next;   /* in-flight FIFO or free list */
    struct job job;          /* one job at a time per batch (run, then commit) */
    int32_t n, cap;
    rd_kafka_message_t **msgs;
    uint64_t *t_consumed;    /* ns */
    struct out_ref *refs;
    sr_arena_t *arena;
    int32_t cursor;          /* worker: sink row cursor */
    /* worker results, read by the loop after the completion */
    sr_err_t rc;
    char errmsg[SR_ERROR_MSG_MAX];
    bool has_state;
    uint64_t state_id;
    uint64_t discard_from;   /* the first state id this batch or a later one can stage */
    uint64_t produced;
    /* the changelog (state.changelog): produced after the outputs are acknowledged (JOB_LOG),
     * acknowledged before the local commit (JOB_COMMIT), see changelog.c */
    struct out_ref cl_ref;   /* delivery-report opaque of its records (row -1) */
    uint64_t cl_produced;    /* worker */
    int64_t *cl_next;        /* [changelog partitions]: offset after its last record, -1 */
    /* loop only */
    uint64_t seq;            /* dispatch order */
    bool computed, commit_sent, committed, log_sent, logged;
    uint64_t acked, failed, cl_acked;
};

/* Where to consume a partition again after a recovery: the lowest dropped offset. */
struct rewind {
    char topic[256];
    int32_t partition;
    int64_t offset;
};

struct part_lag {
    int32_t partition;
    int64_t lag;
};

struct sr_runtime {
    const sr_config_t *cfg;
    uv_loop_t loop;
    bool loop_init;
    /* kafka */
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *cq, *pq, *mq;  /* consumer events, producer events, input messages */
    int cpipe[2], ppipe[2], mpipe[2];
    uv_poll_t cpoll, ppoll, mpoll;
    rd_kafka_message_t **take;       /* rd_kafka_consume_batch_queue's array (max_events) */
    rd_kafka_topic_t *dlq_rkt;
    sr_topic_sink_t *sink;
    const char *input_topic, *dlq_topic;
    /* graph + worker */
    sr_graph_t *g;
    struct sr_stats stats;
    pthread_mutex_t g_mu;    /* sr_graph_commit (worker) vs applied-offset reads (loop) */
    pthread_t worker;
    bool worker_started;
    struct rt_batch *cur;    /* worker only: the batch the graph is running */
    pthread_mutex_t jmu;
    pthread_cond_t jcond;
    struct job *jhead, *jtail;   /* runs, evictions, quit: in order */
    struct job *khead, *ktail;   /* commits: ahead of runs (they free in-flight room) */
    pthread_mutex_t cmu;
    struct job *chead, *ctail;
    uv_async_t async;        /* completions, stop requests */
    bool async_closed;       /* under cmu: the loop is gone, the loop side polls instead */
    volatile int stop_requested;
    /* batching */
    int32_t max_events;
    int64_t max_wait_ms;
    struct rt_batch *gather, *free_list, *ihead, *itail;
    int computing;           /* batches handed to the worker and not computed yet */
    bool due;                /* the gathering batch passed its deadline while the worker ran */
    uv_timer_t batch_timer, house_timer;
    int64_t inflight_events;
    int64_t max_inflight, max_outq;
    bool held;               /* backpressure: messages are left in mq */
    /* lifecycle */
    uv_signal_t sigint, sigterm;
    bool signals;
    bool draining, finishing, fatal;
    char fatal_msg[SR_ERROR_MSG_MAX];
    /* recovery from a failed delivery (loop thread; see recover_begin) */
    bool recovering;
    struct rt_batch *rfirst; /* the earliest batch with a failed delivery */
    int discards;            /* JOB_DISCARDs not completed */
    uint64_t next_seq;
    int64_t recoveries, max_recoveries; /* in a row, without a commit in between */
    struct rewind *rewinds;
    int n_rewinds, cap_rewinds;
    uint64_t w_last_state;   /* worker: the last state id staged */
    int assigned;
    bool joined;             /* a first assignment arrived (possibly empty): in the group */
    /* state changelog (NULL with state.changelog=false) and partitions restoring from it */
    sr_changelog_t *cl;
    int32_t cl_parts;
    struct restore **restores;
    int n_restores, cap_restores;
    uint64_t commit_failures;
    /* exactly_once (loop): every batch in flight belongs to the open transaction, which
     * commits (outputs, changelog, input offsets) once they are all settled and
     * commit.interval.ms passed, or at a drain or revoke; no batch is dispatched meanwhile */
    bool eos, txn_open, txn_closing, revoking, txn_must_abort;
    uint64_t txn_began_ns, txn_interval_ns, transactions, aborts;
    /* metrics (loop thread) */
    sr_http_t *http;
    pthread_mutex_t mmu;     /* guards the fields below for sr_runtime_* readers off the loop */
    uint64_t consumed, committed_events, published, dlq_published, delivery_failures, rebalances,
        recovered_batches;
    struct sr_hist batch_hist, lat_hist;
    struct part_lag *lags;
    int n_lags;
    uint64_t sessions;       /* written by the worker (atomic) */
    uint64_t sessions_at;
    const char *version;
};

/* ---- small helpers ------------------------------------------------------------------- */

static void fail(sr_runtime_t *rt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void begin_drain(sr_runtime_t *rt);
static void advance(sr_runtime_t *rt);
static void handle_completions(sr_runtime_t *rt);
static void rewind_note(sr_runtime_t *rt, const rd_kafka_message_t *m);
static void recover_check(sr_runtime_t *rt);
static void txn_abort(sr_runtime_t *rt);
static void dispatch(sr_runtime_t *rt);
static void log_parts(const char *what, const rd_kafka_topic_partition_list_t *l);
static int64_t applied_offset(sr_runtime_t *rt, int32_t partition);

/* The restore record of a partition, or NULL (loop thread). */
static struct restore *restoring(sr_runtime_t *rt, int32_t partition)
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

static void job_push(sr_runtime_t *rt, struct job *j);

/* Hands the batch to the worker as its one job of that type. */
static void batch_job(sr_runtime_t *rt, struct rt_batch *b, enum job_type type)
{
    b->job.type = type;
    b->job.b = b;
    job_push(rt, &b->job);
}

static int set_nonblock_pipe(int fds[2])
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
    b->cl_ref = (struct out_ref){b, -1};
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

static void batch_put(sr_runtime_t *rt, struct rt_batch *b)
{
    batch_release_msgs(b);
    b->next = rt->free_list;
    rt->free_list = b;
}

static void batch_free(struct rt_batch *b)
{
    batch_release_msgs(b);
    free(b->msgs);
    free(b->t_consumed);
    free(b->refs);
    free(b->cl_next);
    sr_arena_destroy(b->arena);
    free(b);
}

/* ---- worker ------------------------------------------------------------------------- */

/* Loop → worker (and worker → itself for a restore's next step). Commits and changelog logs go
 * to their own queue, in order, served before runs: a commit waiting behind every queued run
 * would hold the in-flight room (and the input) until the worker is idle. */
static void job_push(sr_runtime_t *rt, struct job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&rt->jmu);
    bool commit = j->type == JOB_COMMIT || j->type == JOB_LOG;
    struct job **head = commit ? &rt->khead : &rt->jhead;
    struct job **tail = commit ? &rt->ktail : &rt->jtail;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
    pthread_cond_signal(&rt->jcond);
    pthread_mutex_unlock(&rt->jmu);
}

static void completion_push(sr_runtime_t *rt, struct job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&rt->cmu);
    if (rt->ctail)
        rt->ctail->next = j;
    else
        rt->chead = j;
    rt->ctail = j;
    if (!rt->async_closed)
        uv_async_send(&rt->async);
    pthread_mutex_unlock(&rt->cmu);
}


/* Sink callback (worker): the delivery-report opaque of the recommendation of row (p, o). Rows
 * are emitted in batch order, so a forward cursor finds them. */
static void *rec_opaque(void *ctx, const struct sr_rec *rec)
{
    sr_runtime_t *rt = ctx;
    struct rt_batch *b = rt->cur;
    if (!b)
        return NULL;
    while (b->cursor < b->n && !(b->msgs[b->cursor]->partition == rec->source_partition &&
                                 b->msgs[b->cursor]->offset == rec->source_offset))
        b->cursor++;
    return b->cursor < b->n ? &b->refs[b->cursor] : NULL;
}

static sr_err_t produce_dlq(sr_runtime_t *rt, struct rt_batch *b, int32_t r, const char *reason,
                            struct sr_error *err)
{
    const rd_kafka_message_t *m = b->msgs[r];
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    char part[16], off[24];
    int pl = snprintf(part, sizeof part, "%d", (int)m->partition);
    int ol = snprintf(off, sizeof off, "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "streamrec.error", -1, reason, -1);
    rd_kafka_header_add(h, "streamrec.source.topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(h, "streamrec.source.partition", -1, part, pl);
    rd_kafka_header_add(h, "streamrec.source.offset", -1, off, ol);
    return sr_kafka_produce(rt->producer, rt->dlq_rkt, RD_KAFKA_PARTITION_UA, m->key, m->key_len, m->payload, m->len, h,
                            &b->refs[r], false, err);
}

/* Worker: runs the graph over a batch; the sink produces its recommendations, then its
 * undecodable messages go to the DLQ (except those a previous run already applied). */
static void run_batch(sr_runtime_t *rt, struct rt_batch *b)
{
    struct sr_error err = {0};
    struct sr_batch sb;
    struct sr_source_cols src;
    sr_arena_reset(b->arena);
    sr_err_t rc = sr_batch_init_source(&sb, b->arena, b->n, &src, &err);
    if (rc == SR_OK) {
        for (int32_t i = 0; i < b->n; i++) {
            const rd_kafka_message_t *m = b->msgs[i];
            src.raw[i] = m->payload ? m->payload : "";
            src.raw_len[i] = (uint32_t)m->len;
            src.partition[i] = m->partition;
            src.offset[i] = m->offset;
            b->refs[i].b = b;
            b->refs[i].row = i;
        }
        uint64_t before = sr_topic_sink_produced(rt->sink);
        b->discard_from = rt->w_last_state + 1;
        b->cursor = 0;
        rt->cur = b;
        rc = sr_graph_run(rt->g, &sb, &err);
        rt->cur = NULL;
        b->produced = sr_topic_sink_produced(rt->sink) - before;
        struct sr_col *de = rc == SR_OK && rt->dlq_rkt ? sr_batch_col(&sb, "decode_error") : NULL;
        const char **why = de ? de->data : NULL;
        for (int32_t r = 0; rc == SR_OK && why && r < b->n; r++) {
            const rd_kafka_message_t *m = b->msgs[r];
            if (!why[r] || m->offset <= sr_graph_applied_offset(rt->g, m->partition))
                continue;
            rc = produce_dlq(rt, b, r, why[r], &err);
            if (rc == SR_OK)
                b->produced++;
        }
        b->has_state = sb.has_state;
        b->state_id = sb.state_id;
        if (sb.has_state)
            rt->w_last_state = sb.state_id;
    }
    b->rc = rc;
    if (rc != SR_OK)
        snprintf(b->errmsg, sizeof b->errmsg, "%s", err.msg);
}

/* Worker: one step of a partition's restore (about 20 ms, between batches); true when it
 * is finished (done, failed or cancelled). */
static bool restore_step(sr_runtime_t *rt, struct restore *rs)
{
    if (__atomic_load_n(&rs->cancel, __ATOMIC_ACQUIRE)) {
        sr_changelog_restore_end(rs->r);
        rs->r = NULL;
        return true;
    }
    struct sr_error err = {0};
    bool done = false;
    sr_state_t *st = sr_graph_state(rt->g);
    if (!rs->r) /* takes g_mu itself, only around the state (the broker may take a while) */
        rs->rc = sr_changelog_restore_begin(rt->cl, st, rs->partition, &rt->g_mu, &rs->r, &err);
    if (rs->rc == SR_OK) {
        pthread_mutex_lock(&rt->g_mu);
        rs->rc = sr_changelog_restore_step(rs->r, st, 20000000ULL, &done, &err);
        pthread_mutex_unlock(&rt->g_mu);
    }
    if (rs->rc != SR_OK) {
        snprintf(rs->errmsg, sizeof rs->errmsg, "%s", err.msg);
        done = true;
    }
    __atomic_store_n(&rs->remaining, rs->r ? sr_changelog_restore_remaining(rs->r) : 0,
                     __ATOMIC_RELEASE);
    if (done) {
        sr_changelog_restore_end(rs->r);
        rs->r = NULL;
    }
    return done;
}

static void *worker_main(void *arg)
{
    sr_runtime_t *rt = arg;
    uint64_t sessions_ns = 0;
    for (;;) {
        pthread_mutex_lock(&rt->jmu);
        while (!rt->jhead && !rt->khead)
            pthread_cond_wait(&rt->jcond, &rt->jmu);
        struct job *j;
        if (rt->khead) {
            j = rt->khead;
            rt->khead = j->next;
            if (!rt->khead)
                rt->ktail = NULL;
        } else {
            j = rt->jhead;
            rt->jhead = j->next;
            if (!rt->jhead)
                rt->jtail = NULL;
        }
        pthread_mutex_unlock(&rt->jmu);
        switch (j->type) {
        case JOB_RUN:
            run_batch(rt, j->b);
            completion_push(rt, j);
            break;
        case JOB_LOG: {
            struct sr_error err = {0};
            struct rt_batch *b = j->b;
            b->rc = sr_changelog_log(rt->cl, sr_graph_state(rt->g), b->state_id, &b->cl_ref,
                                     &b->cl_produced, &err);
            if (b->rc != SR_OK)
                snprintf(b->errmsg, sizeof b->errmsg, "%s", err.msg);
            completion_push(rt, j);
            break;
        }
        case JOB_COMMIT: {
            struct sr_error err = {0};
            struct rt_batch *b = j->b;
            b->rc = SR_OK;
            if (b->has_state) {
                pthread_mutex_lock(&rt->g_mu);
                /* The changelog checkpoint goes with the state it describes (one write). */
                for (int32_t p = 0; b->rc == SR_OK && rt->cl && p < rt->cl_parts; p++)
                    if (b->cl_next[p] >= 0)
                        b->rc = sr_state_stage_checkpoint(sr_graph_state(rt->g), b->state_id, p,
                                                          b->cl_next[p], &err);
                if (b->rc == SR_OK)
                    b->rc = sr_graph_commit(rt->g, b->state_id, &err);
                pthread_mutex_unlock(&rt->g_mu);
                if (b->rc != SR_OK)
                    snprintf(b->errmsg, sizeof b->errmsg, "%s", err.msg);
            }
            uint64_t now = sr_now_ns();
            if (now - sessions_ns > 1000000000ULL) {
                __atomic_store_n(&rt->sessions, sr_graph_sessions(rt->g), __ATOMIC_RELAXED);
                sessions_ns = now;
            }
            completion_push(rt, j);
            break;
        }
        case JOB_EVICT:
            sr_graph_partition_evict(rt->g, j->partition);
            free(j);
            break;
        case JOB_DISCARD:
            pthread_mutex_lock(&rt->g_mu);
            sr_graph_discard(rt->g, j->state_id);
            pthread_mutex_unlock(&rt->g_mu);
            completion_push(rt, j);
            break;
        case JOB_RESTORE:
            if (restore_step(rt, j->rs))
                completion_push(rt, j);
            else
                job_push(rt, j); /* behind the queued runs: other partitions keep flowing */
            break;
        case JOB_QUIT:
            free(j);
            return NULL;
        }
    }
}

/* ---- loop side: batching ------------------------------------------------------------- */

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

static void pause_resume_all(sr_runtime_t *rt, bool pause)
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

static void serve_messages(sr_runtime_t *rt);

static void check_backpressure(sr_runtime_t *rt)
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
        serve_messages(rt); /* no wake-up comes for messages that waited */
    }
}

static void dispatch(sr_runtime_t *rt)
{
    struct rt_batch *b = rt->gather;
    uv_timer_stop(&rt->batch_timer);
    if (!b || b->n == 0)
        return;
    if (rt->eos && (rt->txn_closing || rt->recovering))
        return; /* it goes in the next transaction (txn_maybe_commit dispatches it) */
    if (rt->eos && !rt->txn_open) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(rt->producer);
        if (e) {
            fail(rt, "exactly_once: begin_transaction: %s", rd_kafka_error_string(e));
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
    batch_job(rt, b, JOB_RUN);
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
        dispatch(rt);
}

/* Adds a consumed message to the gathering batch; false when it is not taken (an error event,
 * or input after a drain or failure began: not committed, so delivered again after a restart). */
static bool take_message(sr_runtime_t *rt, rd_kafka_message_t *m, uint64_t now)
{
    if (m->err) {
        if (sr__kafka_err_is_access(m->err))
            fail(rt, "kafka authorization failed (%s): %s; check the ACLs of kafka.sasl.username "
                 "for the input topic and kafka.group.id", rd_kafka_err2name(m->err),
                 rd_kafka_message_errstr(m));
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            sr_log(SR_LOG_WARN, CMP, "consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return false;
    }
    if (rt->recovering) {
        rewind_note(rt, m);
        rd_kafka_message_destroy(m);
        return false;
    }
    if (rt->draining || rt->fatal) {
        rd_kafka_message_destroy(m);
        return false;
    }
    if (rt->n_restores && restoring(rt, m->partition)) {
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
    if (!rt->gather) {
        rt->gather = batch_get(rt);
        if (!rt->gather) {
            rd_kafka_message_destroy(m);
            fail(rt, "out of memory for a batch");
            return false;
        }
        uv_timer_start(&rt->batch_timer, on_batch_timer, (uint64_t)rt->max_wait_ms, 0);
    }
    struct rt_batch *b = rt->gather;
    b->t_consumed[b->n] = now;
    b->msgs[b->n++] = m;
    rt->inflight_events++;
    if (b->n >= rt->max_events)
        dispatch(rt);
    return true;
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
static void serve_consumer(sr_runtime_t *rt)
{
    rd_kafka_message_t *m;
    uint64_t n = 0;
    while (rt->consumer && (m = rd_kafka_consumer_poll(rt->consumer, 0)) != NULL) {
        n += take_message(rt, m, sr_now_ns());
    }
    count_consumed(rt, n);
    check_backpressure(rt);
}

/* Message queue: takes what is there, a batch's room at a time, unless held back. */
static void serve_messages(sr_runtime_t *rt)
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
            check_backpressure(rt);
        if (n < room)
            break;
    }
    count_consumed(rt, total);
}

static void serve_producer(sr_runtime_t *rt)
{
    while (rd_kafka_poll(rt->producer, 0) > 0) {
    }
    advance(rt);
}

static void on_cpoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sr_runtime_t *rt = h->data;
    drain_pipe(rt->cpipe[0]);
    serve_consumer(rt);
}

static void on_mpoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sr_runtime_t *rt = h->data;
    drain_pipe(rt->mpipe[0]);
    serve_messages(rt);
}

static void on_ppoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sr_runtime_t *rt = h->data;
    drain_pipe(rt->ppipe[0]);
    serve_producer(rt);
}

/* ---- loop side: delivery, commits, completion ---------------------------------------- */

/* ---- loop side: recovery from a failed delivery (DESIGN §8) ---------------------------
 * A message that finally fails delivery makes its batch F incomplete: F and every later batch
 * (their state was read from F's) must not commit. The loop stops taking input and drops the
 * gathering batch; the worker discards the staged state from F on (JOB_DISCARD, queued behind
 * the runs already handed over, so it runs after the last of them); once those batches are
 * computed and every message they produced has its delivery report, they are dropped and each
 * partition they (or the dropped input) held is sought back to its lowest dropped offset. Their
 * events are then processed again from the same state, so a recommendation delivered by the
 * failed attempt is delivered again byte-identical (at-least-once, with its source offset).
 * Batches before F commit as usual. A failure in an earlier batch while recovering moves F
 * back. runtime.max.recoveries failures in a row (no commit in between) stop the runtime as a
 * fatal error, leaving the state and offsets of the last committed batch. */

static void rewind_note(sr_runtime_t *rt, const rd_kafka_message_t *m)
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
            fail(rt, "out of memory while recovering from a failed delivery");
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
            fail(rt, "%lld deliveries in a row failed (runtime.max.recoveries)",
                 (long long)rt->recoveries);
            return;
        }
        rt->recovering = true;
        rt->n_rewinds = 0;
        if (rt->gather) { /* input after F: consumed again after the rewind */
            for (int32_t i = 0; i < rt->gather->n; i++)
                rewind_note(rt, rt->gather->msgs[i]);
            rt->inflight_events -= rt->gather->n;
            batch_put(rt, rt->gather);
            rt->gather = NULL;
            rt->due = false;
            uv_timer_stop(&rt->batch_timer);
        }
    }
    rt->rfirst = b;
    /* exactly_once: abort soon (advance: never inside a librdkafka callback, where dr_cb may
     * have called this); the abort purges what is queued, so the dropped batches settle. */
    rt->txn_must_abort = rt->eos && rt->txn_open;
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        fail(rt, "out of memory while recovering from a failed delivery");
        return;
    }
    j->type = JOB_DISCARD;
    j->state_id = b->discard_from;
    rt->discards++;
    sr_log(SR_LOG_WARN, CMP, "recovering: dropping a batch and the later ones, their events "
           "will be processed again", "batch_events=%d discard_from_state=%llu attempt=%lld",
           (int)b->n, (unsigned long long)b->discard_from, (long long)rt->recoveries);
    job_push(rt, j);
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
            rewind_note(rt, b->msgs[i]);
        rt->inflight_events -= b->n;
        dropped += (uint64_t)b->n;
        batch_put(rt, b);
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
        for (int i = 0; i < rt->n_rewinds; i++)
            rd_kafka_topic_partition_list_add(l, rt->rewinds[i].topic,
                                              rt->rewinds[i].partition)->offset = rt->rewinds[i].offset;
        log_parts("recovering: rewinding", l);
        /* Asynchronous: the version barrier is set now, so messages already fetched past these
         * offsets are not handed out; a partition revoked meanwhile fails here, harmlessly
         * (its next owner starts from the committed offset). */
        rd_kafka_error_t *e = rd_kafka_seek_partitions(rt->consumer, l, 0);
        if (e) {
            fail(rt, "seek after a failed delivery: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    sr_log(SR_LOG_INFO, CMP, "recovered: processing again from the rewound offsets",
           "dropped_events=%llu", (unsigned long long)dropped);
    rt->n_rewinds = 0;
    check_backpressure(rt);
    serve_messages(rt);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    sr_runtime_t *rt = opaque;
    struct out_ref *ref = m->_private;
    if (!ref)
        return;
    struct rt_batch *b = ref->b;
    bool dlq = rt->dlq_rkt && m->rkt == rt->dlq_rkt;
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
    double lat = (double)(sr_now_ns() - b->t_consumed[ref->row]) / 1e9;
    pthread_mutex_lock(&rt->mmu);
    if (dlq) {
        rt->dlq_published++;
    } else {
        rt->published++;
        sr_hist_add(&rt->lat_hist, lat);
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
 * seen by read_committed consumers); the caller drops and reprocesses its batches. */
static void txn_abort(sr_runtime_t *rt)
{
    if (!rt->eos || !rt->txn_open)
        return;
    rd_kafka_error_t *e = rd_kafka_abort_transaction(rt->producer, 30000);
    rt->txn_open = rt->txn_closing = false;
    pthread_mutex_lock(&rt->mmu);
    rt->aborts++;
    pthread_mutex_unlock(&rt->mmu);
    if (e) {
        fail(rt, "exactly_once: abort_transaction: %s", rd_kafka_error_string(e));
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
static void txn_maybe_commit(sr_runtime_t *rt)
{
    if (!rt->eos || !rt->txn_open || rt->recovering || rt->fatal)
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
            fail(rt, "exactly_once: the transaction cannot commit (%s): %s%s",
                 rd_kafka_error_name(e), rd_kafka_error_string(e),
                 rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__FENCED ||
                 rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED
                     ? " (fenced: another process uses this transactional.id)" : "");
        else if (abortable && txn_first(rt))
            recover_begin(rt, txn_first(rt)); /* aborts (advance), then reprocesses */
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
        batch_job(rt, b, JOB_COMMIT);
    }
    dispatch(rt);
}

/* Sends commit jobs for the complete batches at the head of the in-flight list (in order: a
 * batch commits only after every earlier one), and checks whether a drain is finished. Under
 * exactly_once the transaction decides instead (txn_maybe_commit). */
static void advance(sr_runtime_t *rt)
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
            batch_job(rt, b, JOB_LOG);
        }
        in_order = in_order && batch_logged(rt, b);
        if (!in_order || rt->eos)
            continue;
        b->commit_sent = true;
        batch_job(rt, b, JOB_COMMIT);
    }
    txn_maybe_commit(rt);
    recover_check(rt);
    check_backpressure(rt);
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

/* Loop: a partition's restore ended. Consumption starts after what its state applied (or the
 * group's committed offset, whichever is later): seek, then resume. */
static void restore_finished(sr_runtime_t *rt, struct restore *rs)
{
    if (__atomic_load_n(&rs->cancel, __ATOMIC_ACQUIRE)) {
        restore_forget(rt, rs); /* revoked meanwhile */
        return;
    }
    if (rs->rc != SR_OK) {
        fail(rt, "restore of partition %d from the changelog failed: %s", (int)rs->partition,
             rs->errmsg);
        restore_forget(rt, rs);
        return;
    }
    int64_t applied = applied_offset(rt, rs->partition);
    int64_t start = rs->committed;
    if (applied >= 0 && applied + 1 > start)
        start = applied + 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rt->input_topic, rs->partition)->offset =
        start >= 0 ? start : RD_KAFKA_OFFSET_BEGINNING;
    sr_log(SR_LOG_INFO, CMP, "partition restored: consuming", "topic=%s partition=%d offset=%lld "
           "applied=%lld", rt->input_topic, (int)rs->partition, (long long)start, (long long)applied);
    restore_forget(rt, rs);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(rt->consumer, l, 0);
    if (e) {
        fail(rt, "seek after a restore: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else if (!rt->draining && !rt->fatal) {
        rd_kafka_resume_partitions(rt->consumer, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
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

static void handle_completions(sr_runtime_t *rt)
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
                fail(rt, "batch of %d events failed: %s", (int)b->n, b->errmsg);
        } else if (j->type == JOB_LOG) {
            b->logged = true;
            if (b->rc != SR_OK && !txn_produce_failed(rt, b))
                fail(rt, "state changelog: %s", b->errmsg);
        } else if (j->type == JOB_COMMIT) {
            if (b->rc != SR_OK) {
                fail(rt, "state commit failed: %s", b->errmsg);
            } else {
                b->committed = true;
                rt->recoveries = 0;
            }
        } else if (j->type == JOB_RESTORE) {
            restore_finished(rt, j->rs);
        } else if (j->type == JOB_DISCARD) {
            rt->discards--;
            free(j);
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
        batch_put(rt, b);
    }
    if (rt->due && rt->computing == 0)
        dispatch(rt);
    advance(rt);
}

static void on_async(uv_async_t *a)
{
    sr_runtime_t *rt = a->data;
    if (__atomic_load_n(&rt->stop_requested, __ATOMIC_ACQUIRE) && !rt->draining)
        begin_drain(rt);
    handle_completions(rt);
}

static void fail(sr_runtime_t *rt, const char *fmt, ...)
{
    if (rt->fatal)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->fatal_msg, sizeof rt->fatal_msg, fmt, ap);
    va_end(ap);
    rt->fatal = true;
    sr_log(SR_LOG_ERROR, CMP, "stopping: nothing after this point is committed", "reason=\"%s\"",
           rt->fatal_msg);
    if (rt->consumer)
        pause_resume_all(rt, true);
    if (rt->gather) {
        rt->inflight_events -= rt->gather->n;
        batch_put(rt, rt->gather);
        rt->gather = NULL;
        uv_timer_stop(&rt->batch_timer);
    }
}

static void begin_drain(sr_runtime_t *rt)
{
    if (rt->draining)
        return;
    rt->draining = true;
    sr_log(SR_LOG_INFO, CMP, "draining: finishing in-flight batches", "inflight_events=%lld",
           (long long)rt->inflight_events);
    if (rt->consumer)
        pause_resume_all(rt, true);
    dispatch(rt);
    advance(rt);
}

/* Runs the pipeline without returning to the loop until nothing is in flight (revocation must
 * finish and commit before the partitions are handed over). Bounded by timeout_ms. */
static void drain_blocking(sr_runtime_t *rt, int timeout_ms)
{
    dispatch(rt);
    uint64_t deadline = sr_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    while (rt->ihead && !rt->fatal && sr_now_ns() < deadline) {
        handle_completions(rt);
        rd_kafka_poll(rt->producer, 1);
        while (rd_kafka_poll(rt->producer, 0) > 0) {
        }
    }
    handle_completions(rt);
    if (rt->ihead && !rt->fatal)
        fail(rt, "in-flight batches did not finish within %d ms during a rebalance", timeout_ms);
}

/* ---- rebalances ---------------------------------------------------------------------- */

static int64_t applied_offset(sr_runtime_t *rt, int32_t partition)
{
    pthread_mutex_lock(&rt->g_mu);
    int64_t a = sr_graph_applied_offset(rt->g, partition);
    pthread_mutex_unlock(&rt->g_mu);
    return a;
}

static void log_parts(const char *what, const rd_kafka_topic_partition_list_t *l)
{
    char buf[512];
    size_t n = 0;
    buf[0] = 0;
    /* "events[3]@17"; a logical offset by name ("events[3]" alone where there is none). */
    for (int i = 0; i < l->cnt && n + 48 < sizeof buf; i++) {
        int64_t o = l->elems[i].offset;
        char at[32] = "";
        if (o >= 0)
            snprintf(at, sizeof at, "@%lld", (long long)o);
        else if (o == RD_KAFKA_OFFSET_BEGINNING)
            snprintf(at, sizeof at, "@beginning");
        else if (o == RD_KAFKA_OFFSET_END)
            snprintf(at, sizeof at, "@end");
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s[%d]%s", i ? "," : "",
                              l->elems[i].topic, (int)l->elems[i].partition, at);
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
    /* With a changelog, each new partition is restored before it is consumed: it is assigned
     * paused, its state restored off the loop (JOB_RESTORE steps between batches), then sought
     * to what its state applied and resumed (restore_finished). */
    rd_kafka_topic_partition_list_t *hold = rd_kafka_topic_partition_list_new(l->cnt > 0 ? l->cnt : 1);
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *p = &l->elems[i];
        int64_t committed = e || p->err || p->offset < 0 ? -1 : p->offset;
        if (rt->cl) {
            struct restore *rs = calloc(1, sizeof *rs);
            struct restore **nr = rt->n_restores == rt->cap_restores
                ? realloc(rt->restores, sizeof *nr * (size_t)(rt->cap_restores ? 2 * rt->cap_restores : 16))
                : rt->restores;
            if (!rs || !nr) {
                free(rs);
                fail(rt, "out of memory starting a restore");
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
                job_push(rt, &rs->job); /* the pause below happens before any completion */
            }
        }
        int64_t applied = applied_offset(rt, p->partition);
        int64_t start = committed >= 0 ? committed : -1;
        if (applied >= 0 && applied + 1 > start)
            start = applied + 1;
        p->offset = start >= 0 ? start : RD_KAFKA_OFFSET_INVALID;
        p->err = 0;
    }
    log_parts("partitions assigned", l);
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
            fail(rt, "incremental assign: %s", rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
        }
    } else {
        rd_kafka_assign(rk, l);
    }
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
    log_parts("partitions revoked", parts);
    bool lost = rd_kafka_assignment_lost(rk);
    for (int i = 0; i < parts->cnt; i++) { /* a restore of a revoked partition stops */
        struct restore *rs = restoring(rt, parts->elems[i].partition);
        if (rs)
            __atomic_store_n(&rs->cancel, 1, __ATOMIC_RELEASE);
    }
    /* Finish everything in flight (batches mix partitions), store offsets, commit (under
     * exactly_once: commit the transaction, which holds the offsets). */
    rt->revoking = true;
    drain_blocking(rt, 30000);
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
            job_push(rt, j);
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

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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

/* librdkafka statistics (statistics.interval.ms): consumer lag per partition. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    sr_runtime_t *rt = opaque;
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    json_t *topic = root ? json_object_get(json_object_get(root, "topics"), rt->input_topic) : NULL;
    json_t *parts = topic ? json_object_get(topic, "partitions") : NULL;
    if (parts) {
        const char *k;
        json_t *v;
        pthread_mutex_lock(&rt->mmu);
        rt->n_lags = 0;
        size_t n = json_object_size(parts);
        struct part_lag *nl = realloc(rt->lags, sizeof *nl * (n ? n : 1));
        if (nl) {
            rt->lags = nl;
            json_object_foreach(parts, k, v) {
                json_int_t p = json_integer_value(json_object_get(v, "partition"));
                json_t *lag = json_object_get(v, "consumer_lag");
                if (p < 0 || !lag || !json_is_true(json_object_get(v, "desired")))
                    continue;
                rt->lags[rt->n_lags].partition = (int32_t)p;
                rt->lags[rt->n_lags].lag = json_integer_value(lag);
                rt->n_lags++;
            }
        }
        pthread_mutex_unlock(&rt->mmu);
    }
    json_decref(root);
    return 0;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sr_runtime_t *rt = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        if (sr__kafka_err_is_access(orig))
            fail(rt, "kafka authorization failed (%s): %s; check the ACLs of kafka.sasl.username",
                 rd_kafka_err2name(orig), buf);
        else
            fail(rt, "fatal kafka error: %s", buf);
        return;
    }
    /* A wrong password or a missing ACL does not heal by retrying: librdkafka would retry
     * forever, so stop with the reason (nothing uncommitted is lost; a corrected restart
     * resumes from the committed offsets). */
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        fail(rt, "kafka authentication failed: %s; check kafka.sasl.* and kafka.security.protocol",
             reason);
        return;
    }
    if (sr__kafka_err_is_access((rd_kafka_resp_err_t)err)) {
        fail(rt, "kafka authorization failed (%s): %s; check the ACLs of kafka.sasl.username",
             rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
        return;
    }
    sr_log(SR_LOG_WARN, CMP, "kafka error", "client=%s error=\"%s\" reason=\"%s\"",
           rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---- metrics ------------------------------------------------------------------------- */

static void counter(struct sr_buf *b, const char *name, const char *help, uint64_t v)
{
    sr_buf_appendf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
         (unsigned long long)v);
}

static void gauge(struct sr_buf *b, const char *name, const char *help, double v)
{
    sr_buf_appendf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void render_metrics(sr_runtime_t *rt, struct sr_buf *b)
{
    const struct sr_stats *st = &rt->stats;
    pthread_mutex_lock(&rt->mmu);
    counter(b, "streamrec_events_consumed_total", "messages consumed from the input topic",
            rt->consumed);
    counter(b, "streamrec_events_committed_total",
            "consumed messages whose batch is fully delivered and committed (state + offsets stored)",
            rt->committed_events);
    sr_buf_appendf(b, "# HELP streamrec_events_invalid_total events refused by the decoder, by reason\n"
            "# TYPE streamrec_events_invalid_total counter\n");
    int nr = __atomic_load_n(&st->n_reasons, __ATOMIC_ACQUIRE);
    for (int i = 0; i < nr; i++)
        sr_buf_appendf(b, "streamrec_events_invalid_total{reason=\"%s\"} %llu\n", st->reason[i],
             (unsigned long long)__atomic_load_n(&st->reason_count[i], __ATOMIC_RELAXED));
    counter(b, "streamrec_events_filtered_total", "valid events of types neither stored nor triggering",
            __atomic_load_n(&st->filtered, __ATOMIC_RELAXED));
    counter(b, "streamrec_recommendations_published_total",
            "recommendations acknowledged by the broker", rt->published);
    counter(b, "streamrec_dlq_published_total", "messages acknowledged on the dead-letter topic",
            rt->dlq_published);
    counter(b, "streamrec_delivery_failures_total", "messages the producer failed to deliver",
            rt->delivery_failures);
    counter(b, "streamrec_rebalances_total", "consumer group rebalances (assign and revoke)",
            rt->rebalances);
    counter(b, "streamrec_delivery_recoveries_total",
            "failed deliveries recovered by dropping the batches from the failed one on and "
            "processing their events again", rt->recovered_batches);
    counter(b, "streamrec_batches_total", "micro-batches run",
            __atomic_load_n(&st->batches, __ATOMIC_RELAXED));
    sr_hist_write(&rt->batch_hist, b, "streamrec_batch_size", "events per micro-batch");
    sr_hist_write(&rt->lat_hist, b, "streamrec_latency_seconds",
                  "event consumed to recommendation delivered (seconds)");
    sr_buf_appendf(b, "# HELP streamrec_stage_seconds_total time spent per graph stage\n"
            "# TYPE streamrec_stage_seconds_total counter\n");
    int ns = __atomic_load_n(&st->n_stages, __ATOMIC_ACQUIRE);
    for (int i = 0; i < ns; i++)
        sr_buf_appendf(b, "streamrec_stage_seconds_total{stage=\"%s\"} %.9f\n", st->stage[i],
             (double)__atomic_load_n(&st->stage_ns[i], __ATOMIC_RELAXED) / 1e9);
    sr_buf_appendf(b, "# HELP streamrec_consumer_lag messages behind the high watermark, per partition\n"
            "# TYPE streamrec_consumer_lag gauge\n");
    for (int i = 0; i < rt->n_lags; i++)
        sr_buf_appendf(b, "streamrec_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n", rt->input_topic,
             (int)rt->lags[i].partition, (long long)rt->lags[i].lag);
    pthread_mutex_unlock(&rt->mmu);
    gauge(b, "streamrec_sessions", "sessions held in state",
          (double)__atomic_load_n(&rt->sessions, __ATOMIC_RELAXED));
    gauge(b, "streamrec_inflight_events", "events consumed and not yet committed",
          (double)rt->inflight_events);
    gauge(b, "streamrec_paused", "1 while input is held back (backpressure, drain or failure)",
          rt->held || rt->draining || rt->fatal ? 1 : 0);
    gauge(b, "streamrec_assigned_partitions", "input partitions assigned to this process",
          rt->assigned);
    if (rt->eos) {
        counter(b, "streamrec_transactions_total", "transactions committed (exactly_once)",
                rt->transactions);
        counter(b, "streamrec_transaction_aborts_total",
                "transactions aborted and their batches processed again (exactly_once)", rt->aborts);
    }
    counter(b, "streamrec_offset_commit_failures_total",
            "consumer offset commits that failed on revoke or at the end of a drain",
            rt->commit_failures);
    if (rt->cl) {
        uint64_t rec, bytes;
        double secs;
        sr_changelog_totals(rt->cl, &rec, &bytes, &secs);
        counter(b, "streamrec_restore_records_total", "changelog records restored into the state", rec);
        counter(b, "streamrec_restore_bytes_total", "changelog bytes restored into the state", bytes);
        sr_buf_appendf(b, "# HELP streamrec_restore_seconds_total time spent restoring from the changelog\n"
                       "# TYPE streamrec_restore_seconds_total counter\nstreamrec_restore_seconds_total %.6f\n",
                       secs);
        gauge(b, "streamrec_restoring_partitions", "partitions restoring their state before consumption",
              rt->n_restores);
        sr_buf_appendf(b, "# HELP streamrec_restore_remaining_records changelog records left to restore, per partition\n"
                       "# TYPE streamrec_restore_remaining_records gauge\n");
        for (int i = 0; i < rt->n_restores; i++) {
            int64_t left = __atomic_load_n(&rt->restores[i]->remaining, __ATOMIC_ACQUIRE);
            if (left >= 0)
                sr_buf_appendf(b, "streamrec_restore_remaining_records{partition=\"%d\"} %lld\n",
                               (int)rt->restores[i]->partition, (long long)left);
        }
    }
    sr_buf_appendf(b, "# HELP streamrec_model_info the loaded model bundle\n# TYPE streamrec_model_info gauge\n"
            "streamrec_model_info{version=\"%s\"} 1\n", rt->version);
}

static void http_handler(void *ctx, const char *path, int *status, const char **ctype,
                         struct sr_buf *body)
{
    sr_runtime_t *rt = ctx;
    if (!strcmp(path, "/metrics")) {
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        render_metrics(rt, body);
    } else if (!strcmp(path, "/healthz")) {
        *status = rt->fatal ? 503 : 200;
        sr_buf_appendf(body, "%s\n", rt->fatal ? "failed" : "ok");
    } else if (!strcmp(path, "/readyz")) {
        /* Ready = in the group and able to work: a member without partitions (more replicas
         * than partitions) is ready; one restoring is ready and says what it restores. */
        bool ready = !rt->fatal && !rt->draining && rt->joined;
        *status = ready ? 200 : 503;
        sr_buf_appendf(body, "%s", ready ? "ready" : rt->fatal ? "failed" : rt->draining ? "draining"
                                                                              : "joining the group");
        for (int i = 0; ready && i < rt->n_restores; i++)
            sr_buf_appendf(body, "%s%d", i ? "," : " restoring partitions ", (int)rt->restores[i]->partition);
        sr_buf_appendf(body, "\n");
    } else {
        *status = 404;
        sr_buf_appendf(body, "not found\n");
    }
}

/* ---- signals and housekeeping --------------------------------------------------------- */

static void on_signal(uv_signal_t *s, int signum)
{
    sr_runtime_t *rt = s->data;
    sr_log(SR_LOG_INFO, CMP, "signal: draining (a second signal exits at once)", "signal=%d", signum);
    /* With no watcher left libuv restores the default action: a second signal terminates. */
    uv_signal_stop(&rt->sigint);
    uv_signal_stop(&rt->sigterm);
    begin_drain(rt);
}

static void on_house(uv_timer_t *t)
{
    sr_runtime_t *rt = t->data;
    struct sr_error err = {0};
    if (rt->cl && sr_changelog_check(rt->cl, &err) != SR_OK)
        fail(rt, "%s", err.msg);
    /* A safety net under the queue wake-ups (they fire once until the queue is served). */
    serve_consumer(rt);
    serve_messages(rt);
    serve_producer(rt);
    handle_completions(rt);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static sr_err_t get_int(const sr_config_t *cfg, const char *key, int64_t lo, int64_t hi,
                        int64_t *out, struct sr_error *err)
{
    sr_err_t rc = sr_config_get_int(cfg, key, out, err);
    if (rc == SR_OK && (*out < lo || *out > hi))
        rc = sr_error_set(err, SR_ECONFIG, "%s: %lld is out of range (%lld..%lld)", key,
                          (long long)*out, (long long)lo, (long long)hi);
    return rc;
}

static sr_err_t make_client(sr_runtime_t *rt, enum sr_kafka_side side, struct sr_error *err)
{
    rd_kafka_conf_t *conf;
    sr_err_t rc = sr_kafka_conf_new(rt->cfg, side, &conf, err);
    if (rc != SR_OK)
        return rc;
    rd_kafka_conf_set_opaque(conf, rt);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (side == SR_KAFKA_CONSUMER) {
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
        const char *ml = sr_config_get(rt->cfg, "metrics.listen");
        if (ml && *ml && !sr_config_is_set(rt->cfg, "kafka.statistics.interval.ms") &&
            !sr_config_is_set(rt->cfg, "kafka.consumer.statistics.interval.ms"))
            rc = sr_kafka_conf_set(conf, "statistics.interval.ms", "5000", err);
    } else {
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    }
    if (rc == SR_OK && rt->eos) {
        /* exactly_once: offsets go in the transaction, inputs written by transactional
         * producers are read committed, and one transactional.id per instance (a restarted
         * instance fences its predecessor's open transaction, KIP-447). */
        if (side == SR_KAFKA_CONSUMER) {
            rc = sr_kafka_conf_set(conf, "enable.auto.commit", "false", err);
            if (rc == SR_OK)
                rc = sr_kafka_conf_set(conf, "isolation.level", "read_committed", err);
        } else {
            char tid[512], host[256] = "";
            const char *inst = sr_config_get(rt->cfg, "instance.id");
            if ((!inst || !*inst) && gethostname(host, sizeof host - 1) == 0)
                inst = host;
            snprintf(tid, sizeof tid, "%s-%s", sr_config_get(rt->cfg, "kafka.group.id"),
                     inst && *inst ? inst : "0");
            rc = sr_kafka_conf_set(conf, "transactional.id", tid, err);
        }
    }
    if (rc != SR_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(side == SR_KAFKA_CONSUMER ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER,
                                  conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return sr_error_set(err, SR_EKAFKA, "kafka %s: %s",
                            side == SR_KAFKA_CONSUMER ? "consumer" : "producer", errstr);
    }
    if (side == SR_KAFKA_CONSUMER)
        rt->consumer = rk;
    else
        rt->producer = rk;
    if (side == SR_KAFKA_PRODUCER && rt->eos) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(rk, 60000);
        if (e) {
            sr_err_t rc2 = sr_error_set(err, SR_EKAFKA, "%s: init_transactions: %s",
                                        sr__kafka_err_is_access(rd_kafka_error_code(e))
                                            ? "kafka authorization failed" : "exactly_once",
                                        rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return rc2;
        }
    }
    return SR_OK;
}

sr_err_t sr_runtime_new(const sr_config_t *cfg, sr_runtime_t **out, struct sr_error *err)
{
    *out = NULL;
    if (!sr_kafka_configured(cfg))
        return sr_error_set(err, SR_ECONFIG, "kafka.bootstrap.servers is required for run");
    const char *guarantee = sr_config_get(cfg, "processing.guarantee");
    bool eos = guarantee && !strcmp(guarantee, "exactly_once");
    if (guarantee && !eos && strcmp(guarantee, "at_least_once") != 0)
        return sr_error_set(err, SR_ECONFIG, "processing.guarantee=%s: expected at_least_once or "
                            "exactly_once", guarantee);
    bool changelog_on = true;
    sr_err_t crc = sr_config_get_bool(cfg, "state.changelog", &changelog_on, err);
    if (crc != SR_OK)
        return crc;
    if (eos && !changelog_on) /* local state is committed after the transaction: a crash in
                                 between is repaired only by the changelog's restore */
        return sr_error_set(err, SR_ECONFIG, "processing.guarantee=exactly_once needs "
                            "state.changelog=true");
    sr_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    rt->eos = eos;
    rt->cfg = cfg;
    rt->cpipe[0] = rt->cpipe[1] = rt->ppipe[0] = rt->ppipe[1] = rt->mpipe[0] = rt->mpipe[1] = -1;
    pthread_mutex_init(&rt->g_mu, NULL);
    pthread_mutex_init(&rt->jmu, NULL);
    pthread_cond_init(&rt->jcond, NULL);
    pthread_mutex_init(&rt->cmu, NULL);
    pthread_mutex_init(&rt->mmu, NULL);
    static const double batch_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
    static const double lat_le[] = {0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02,
                                    0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10};
    sr_hist_init(&rt->batch_hist, batch_le, (int)(sizeof batch_le / sizeof *batch_le));
    sr_hist_init(&rt->lat_hist, lat_le, (int)(sizeof lat_le / sizeof *lat_le));
    rt->input_topic = sr_config_get(cfg, "input.topic");
    rt->dlq_topic = sr_config_get(cfg, "dlq.topic");
    int64_t v;
    sr_err_t rc = get_int(cfg, "batch.max.events", 1, 1000000, &v, err);
    rt->max_events = (int32_t)v;
    if (rc == SR_OK)
        rc = get_int(cfg, "batch.max.wait.ms", 0, 60000, &rt->max_wait_ms, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "runtime.max.inflight.events", 1, INT32_MAX, &rt->max_inflight, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "runtime.max.producer.queue", 1, INT32_MAX, &rt->max_outq, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "runtime.max.recoveries", 0, INT32_MAX, &rt->max_recoveries, err);
    int64_t txn_ms = 100;
    if (rc == SR_OK)
        rc = get_int(cfg, "commit.interval.ms", 1, 3600000, &txn_ms, err);
    rt->txn_interval_ns = (uint64_t)txn_ms * 1000000ULL;
    if (rc == SR_OK && rt->max_inflight < rt->max_events)
        rt->max_inflight = rt->max_events; /* one full batch must always fit */
    if (rc == SR_OK && !(rt->take = calloc((size_t)rt->max_events, sizeof *rt->take)))
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
    enum sr_format ofmt = SR_FORMAT_JSON;
    int64_t schema_id = 1;
    if (rc == SR_OK)
        rc = sr_format_parse(sr_config_get(cfg, "output.format"), &ofmt, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "output.avro.schema_id", 0, INT32_MAX, &schema_id, err);
    if (rc == SR_OK)
        rc = make_client(rt, SR_KAFKA_PRODUCER, err);
    if (rc == SR_OK)
        rc = make_client(rt, SR_KAFKA_CONSUMER, err);
    if (rc == SR_OK) {
        struct sr_topic_sink_params sp = {
            .producer = rt->producer, .topic = sr_config_get(cfg, "output.topic"),
            .format = ofmt, .schema_id = (int32_t)schema_id,
            .msg_opaque = rec_opaque, .ctx = rt, .serve_when_full = false,
        };
        rc = sr_topic_sink_new(&sp, &rt->sink, err);
    }
    bool changelog = true;
    if (rc == SR_OK)
        rc = sr_config_get_bool(cfg, "state.changelog", &changelog, err);
    if (rc == SR_OK && changelog) {
        rc = sr_changelog_open(cfg, rt->producer, rt->input_topic, &rt->cl, err);
        if (rc == SR_OK)
            rt->cl_parts = sr_changelog_partitions(rt->cl);
    }
    if (rc == SR_OK && rt->dlq_topic && *rt->dlq_topic) {
        rt->dlq_rkt = rd_kafka_topic_new(rt->producer, rt->dlq_topic, NULL);
        if (!rt->dlq_rkt)
            rc = sr_error_set(err, SR_EKAFKA, "dlq.topic %s: %s", rt->dlq_topic,
                              rd_kafka_err2str(rd_kafka_last_error()));
    }
    if (rc == SR_OK) {
        /* The state's applied offsets are per partition of this group's input: a state.dir
         * used by another group or topic is refused, never silently skipped against. */
        char identity[600];
        const char *group = sr_config_get(cfg, "kafka.group.id");
        snprintf(identity, sizeof identity, "run kafka.group.id=%s input.topic=%s",
                 group ? group : "streamrec", rt->input_topic);
        struct sr_graph_params gp = {
            .cfg = cfg, .runtime = "online", .stats = &rt->stats,
            .sink = sr_topic_sink_iface(rt->sink), .source_topic = rt->input_topic,
            .state_identity = identity,
        };
        rc = sr_graph_new(&gp, &rt->g, err);
    }
    if (rc == SR_OK)
        rt->version = sr_graph_model_version(rt->g);
    if (rc != SR_OK && rt->producer) {
        /* A start-up request that failed on the broker's side (e.g. "transport failure" for a
         * wrong password): the client's error events name the cause; report that instead. */
        rd_kafka_poll(rt->producer, 0);
        if (rt->fatal)
            rc = sr_error_set(err, SR_EKAFKA, "%s", rt->fatal_msg);
    }
    if (rc != SR_OK) {
        sr_runtime_destroy(rt);
        return rc;
    }
    *out = rt;
    return SR_OK;
}

void sr_runtime_stop(sr_runtime_t *rt)
{
    __atomic_store_n(&rt->stop_requested, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&rt->cmu);
    if (rt->loop_init && !rt->async_closed)
        uv_async_send(&rt->async);
    pthread_mutex_unlock(&rt->cmu);
}

static void close_cb_noop(uv_handle_t *h) { (void)h; }

static void close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, close_cb_noop);
}

sr_err_t sr_runtime_run(sr_runtime_t *rt, bool handle_signals, struct sr_error *err)
{
    if (uv_loop_init(&rt->loop) != 0)
        return sr_error_set(err, SR_EIO, "libuv loop init failed");
    rt->loop_init = true;
    uv_async_init(&rt->loop, &rt->async, on_async);
    rt->async.data = rt;
    uv_timer_init(&rt->loop, &rt->batch_timer);
    rt->batch_timer.data = rt;
    uv_timer_init(&rt->loop, &rt->house_timer);
    rt->house_timer.data = rt;
    sr_err_t rc = SR_OK;
    if (set_nonblock_pipe(rt->cpipe) != 0 || set_nonblock_pipe(rt->ppipe) != 0 ||
        set_nonblock_pipe(rt->mpipe) != 0)
        rc = sr_error_set(err, SR_EIO, "pipe: %s", strerror(errno));
    if (rc == SR_OK) {
        rd_kafka_poll_set_consumer(rt->consumer);
        rt->cq = rd_kafka_queue_get_consumer(rt->consumer);
        rt->pq = rd_kafka_queue_get_main(rt->producer);
        rt->mq = rd_kafka_queue_new(rt->consumer);
        rd_kafka_queue_io_event_enable(rt->cq, rt->cpipe[1], "1", 1);
        rd_kafka_queue_io_event_enable(rt->pq, rt->ppipe[1], "1", 1);
        rd_kafka_queue_io_event_enable(rt->mq, rt->mpipe[1], "1", 1);
        uv_poll_init(&rt->loop, &rt->cpoll, rt->cpipe[0]);
        rt->cpoll.data = rt;
        uv_poll_start(&rt->cpoll, UV_READABLE, on_cpoll);
        uv_poll_init(&rt->loop, &rt->ppoll, rt->ppipe[0]);
        rt->ppoll.data = rt;
        uv_poll_start(&rt->ppoll, UV_READABLE, on_ppoll);
        uv_poll_init(&rt->loop, &rt->mpoll, rt->mpipe[0]);
        rt->mpoll.data = rt;
        uv_poll_start(&rt->mpoll, UV_READABLE, on_mpoll);
    }
    const char *ml = sr_config_get(rt->cfg, "metrics.listen");
    if (rc == SR_OK && ml && *ml)
        rc = sr_http_start(&rt->loop, ml, http_handler, rt, &rt->http, err);
    if (rc == SR_OK && handle_signals) {
        rt->signals = true;
        uv_signal_init(&rt->loop, &rt->sigint);
        uv_signal_init(&rt->loop, &rt->sigterm);
        rt->sigint.data = rt->sigterm.data = rt;
        uv_signal_start(&rt->sigint, on_signal, SIGINT);
        uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
    }
    if (rc == SR_OK) {
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, rt->input_topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(rt->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (e)
            rc = sr_error_set(err, SR_EKAFKA, "subscribe %s: %s", rt->input_topic, rd_kafka_err2str(e));
    }
    if (rc == SR_OK) {
        if (pthread_create(&rt->worker, NULL, worker_main, rt) != 0)
            rc = sr_error_set(err, SR_EINTERNAL, "cannot start the worker thread");
        else
            rt->worker_started = true;
    }
    if (rc == SR_OK) {
        uv_timer_start(&rt->house_timer, on_house, 100, 100);
        sr_log(SR_LOG_INFO, CMP, "started", "input=%s output=%s dlq=%s model_version=%s metrics=%s",
               rt->input_topic, sr_config_get(rt->cfg, "output.topic"),
               rt->dlq_topic && *rt->dlq_topic ? rt->dlq_topic : "(off)", rt->version,
               ml && *ml ? ml : "(off)");
        if (__atomic_load_n(&rt->stop_requested, __ATOMIC_ACQUIRE))
            begin_drain(rt);
        uv_run(&rt->loop, UV_RUN_DEFAULT);
    }
    /* Drained (or failed): offsets stored so far are committed (under exactly_once the last
     * transaction holds them), the group is left. The result is reported below. */
    rd_kafka_resp_err_t commit_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (rt->consumer && rc == SR_OK) {
        if (!rt->eos)
            commit_err = rd_kafka_commit(rt->consumer, NULL, 0);
        rd_kafka_consumer_close(rt->consumer);
    }
    if (rt->producer)
        rd_kafka_flush(rt->producer, 10000);
    if (rt->cq)
        rd_kafka_queue_io_event_enable(rt->cq, -1, NULL, 0);
    if (rt->pq)
        rd_kafka_queue_io_event_enable(rt->pq, -1, NULL, 0);
    if (rt->mq)
        rd_kafka_queue_io_event_enable(rt->mq, -1, NULL, 0);
    sr_http_close(rt->http);
    rt->http = NULL;
    pthread_mutex_lock(&rt->cmu);
    rt->async_closed = true;
    pthread_mutex_unlock(&rt->cmu);
    uv_walk(&rt->loop, close_all, NULL);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    if (rt->fatal && rt->eos && rt->txn_open) { /* best effort: a fenced one cannot */
        rd_kafka_error_t *e = rd_kafka_abort_transaction(rt->producer, 5000);
        if (e)
            rd_kafka_error_destroy(e);
        rt->txn_open = false;
    }
    if (rc == SR_OK && rt->fatal)
        rc = sr_error_set(err, SR_EKAFKA, "%s", rt->fatal_msg);
    if (rc == SR_OK) {
        /* Say what the final commit did: the group may have moved on (fenced, generation
         * changed) or the broker be gone; never claim a commit not made. */
        rd_kafka_resp_err_t e = commit_err;
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            pthread_mutex_lock(&rt->mmu);
            rt->commit_failures++;
            pthread_mutex_unlock(&rt->mmu);
            sr_log(SR_LOG_WARN, CMP, "drained: state committed, offsets NOT committed (the next "
                   "owner processes the last events again)", "error=\"%s\" consumed=%llu",
                   rd_kafka_err2str(e), (unsigned long long)rt->consumed);
        } else {
            sr_log(SR_LOG_INFO, CMP, "drained: state and offsets committed", "consumed=%llu "
                   "published=%llu", (unsigned long long)rt->consumed,
                   (unsigned long long)rt->published);
        }
    }
    return rc;
}

void sr_runtime_destroy(sr_runtime_t *rt)
{
    if (!rt)
        return;
    if (rt->worker_started) {
        struct job *q = calloc(1, sizeof *q);
        if (q) {
            q->type = JOB_QUIT;
            job_push(rt, q);
            pthread_join(rt->worker, NULL);
        }
    }
    /* Producer first (its pending delivery reports point into batches), then the batches
     * (they hold consumer messages), then the consumer. */
    sr_topic_sink_destroy(rt->sink);
    if (rt->dlq_rkt)
        rd_kafka_topic_destroy(rt->dlq_rkt);
    if (rt->pq)
        rd_kafka_queue_destroy(rt->pq);
    sr_changelog_destroy(rt->cl); /* its topic handle, before the producer */
    if (rt->producer)
        rd_kafka_destroy(rt->producer);
    for (int i = 0; i < rt->n_restores; i++) {
        sr_changelog_restore_end(rt->restores[i]->r);
        free(rt->restores[i]);
    }
    free(rt->restores);
    for (struct job *j = rt->jhead; j;) {
        struct job *n = j->next;
        if (j->type == JOB_EVICT || j->type == JOB_QUIT || j->type == JOB_DISCARD)
            free(j); /* JOB_RESTORE jobs live in their restore records, freed above */
        j = n;
    }
    if (rt->gather)
        batch_free(rt->gather);
    for (struct rt_batch *b = rt->ihead; b;) {
        struct rt_batch *n = b->next;
        batch_free(b);
        b = n;
    }
    for (struct rt_batch *b = rt->free_list; b;) {
        struct rt_batch *n = b->next;
        batch_free(b);
        b = n;
    }
    if (rt->cq)
        rd_kafka_queue_destroy(rt->cq);
    if (rt->mq)
        rd_kafka_queue_destroy(rt->mq);
    if (rt->consumer)
        rd_kafka_destroy(rt->consumer);
    sr_graph_destroy(rt->g);
    for (int i = 0; i < 2; i++) {
        if (rt->cpipe[i] >= 0)
            close(rt->cpipe[i]);
        if (rt->ppipe[i] >= 0)
            close(rt->ppipe[i]);
        if (rt->mpipe[i] >= 0)
            close(rt->mpipe[i]);
    }
    if (rt->loop_init)
        uv_loop_close(&rt->loop);
    free(rt->lags);
    free(rt->take);
    free(rt->rewinds);
    pthread_mutex_destroy(&rt->g_mu);
    pthread_mutex_destroy(&rt->jmu);
    pthread_cond_destroy(&rt->jcond);
    pthread_mutex_destroy(&rt->cmu);
    pthread_mutex_destroy(&rt->mmu);
    free(rt);
}

/* Counters for tools that embed the runtime (bench e2e): a consistent copy. Any thread. */
void sr_runtime_counters(sr_runtime_t *rt, uint64_t *consumed, uint64_t *committed,
                         uint64_t *published, struct sr_hist *latency)
{
    pthread_mutex_lock(&rt->mmu);
    if (consumed)
        *consumed = rt->consumed;
    if (committed)
        *committed = rt->committed_events;
    if (published)
        *published = rt->published;
    if (latency)
        *latency = rt->lat_hist;
    pthread_mutex_unlock(&rt->mmu);
}

/* Input partitions assigned now (the /readyz condition without the drain check), for tools
 * that embed the runtime and wait for the group join before offering events (demo). Any
 * thread: a relaxed atomic read of the loop thread's count. */
int sr_runtime_assigned(sr_runtime_t *rt)
{
    return __atomic_load_n(&rt->assigned, __ATOMIC_RELAXED);
}
