/* worker.c — the worker thread: the job queue (run a batch through the graph, log its changelog,
 * commit its state, evict or discard, restore a partition step by step, swap in a reloaded
 * graph between two batches) and the completion queue
 * back to the loop. The only thread that runs the graph; dead letters are produced here, from the
 * graph's dead-letter output. */
#include "runtime_int.h"

/* Loop → worker (and worker → itself for a restore's next step). Commits and changelog logs go
 * to their own queue, in order, served before runs: a commit waiting behind every queued run
 * would hold the in-flight room (and the input) until the worker is idle. */
void sr__rt_job_push(sr_runtime_t *rt, struct job *j)
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

/* Topic sink callback (worker): the delivery-report opaque of the recommendation of a row, asked
 * for just before it is produced (the moment that ends the runtime's part of its latency). */
void *sr__rt_rec_opaque(void *ctx, const struct sr_batch *batch, int32_t row)
{
    (void)ctx;
    struct rt_batch *b = batch->owner;
    b->refs[row].t_out = sr_now_ns();
    return &b->refs[row];
}

/* The graph's recommendation output (worker): the topic sink. */
static sr_err_t out_emit(void *opaque, const struct sr_batch *batch, int32_t row,
                         const struct sr_rec *rec, struct sr_error *err)
{
    sr_runtime_t *rt = opaque;
    struct sr_sink *ts = sr_topic_sink_iface(rt->sink);
    sr_err_t rc = ts->emit(ts->opaque, batch, row, rec, err);
    if (rc == SR_OK)
        ((struct rt_batch *)batch->owner)->produced++;
    return rc;
}

/* The graph's dead-letter output (worker): the original message to dlq.topic, copied unchanged
 * (key, value, headers, timestamp) plus streamrec's headers: the reason and the source position
 * (DESIGN §4). A message that cannot be delivered whole (key + value above dlq.max.bytes) goes
 * out truncated to fit, flagged streamrec.truncated=true with streamrec.original.size; one the
 * producer still refuses is skipped with an error line and counted
 * (streamrec_dlq_dropped_total): under at_least_once a dead letter never stops the stream.
 * Under exactly_once a refused produce fails the batch, as for a recommendation: the
 * transaction aborts and its events are processed again. */
static sr_err_t out_dead_letter(void *opaque, const struct sr_batch *batch, int32_t row,
                                const char *reason, struct sr_error *err)
{
    sr_runtime_t *rt = opaque;
    struct rt_batch *b = batch->owner;
    const rd_kafka_message_t *m = b->msgs[row];
    rd_kafka_headers_t *orig = NULL, *h;
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(6);
    char size[24];
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_header_add(h, "streamrec.error", -1, reason, -1);
    sr_kafka_headers_add_source(h, topic, strlen(topic), m->partition, m->offset);
    size_t key_len = m->key_len, len = m->len, max = (size_t)rt->dlq_max_bytes;
    if (key_len + len > max) {
        int sl = snprintf(size, sizeof size, "%zu", m->len);
        rd_kafka_header_add(h, "streamrec.truncated", -1, "true", 4);
        rd_kafka_header_add(h, "streamrec.original.size", -1, size, sl);
        if (key_len > max / 4) {
            sl = snprintf(size, sizeof size, "%zu", m->key_len);
            rd_kafka_header_add(h, "streamrec.original.key.size", -1, size, sl);
            key_len = max / 4;
        }
        len = max - key_len;
    }
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    struct sr_error perr = {0};
    sr_err_t rc = sr_kafka_produce(rt->producer, rt->dlq_rkt, RD_KAFKA_PARTITION_UA, m->key,
                                   key_len, m->payload, len, h, ts > 0 ? ts : 0, &b->refs[row],
                                   false, &perr);
    if (rc == SR_OK) {
        b->produced++;
    } else if (rt->eos || rd_kafka_fatal_error(rt->producer, NULL, 0)) {
        /* exactly_once (a failed transaction refuses every produce) or a fatal producer:
         * the batch fails and the transaction or the runtime handles it (DESIGN §8.8) */
        if (err)
            *err = perr;
        return rc;
    } else {
        sr_log(SR_LOG_ERROR, CMP, "dead letter dropped", "topic=%s partition=%d offset=%lld "
               "reason=%s error=\"%s\"",
               rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset, reason,
               perr.msg);
        __atomic_fetch_add(&rt->dlq_dropped, 1, __ATOMIC_RELAXED);
    }
    return SR_OK;
}

void sr__rt_outputs_init(sr_runtime_t *rt)
{
    rt->outputs = (struct sr_sink){.emit = out_emit,
                                   .dead_letter = rt->dlq_rkt ? out_dead_letter : NULL,
                                   .opaque = rt};
}

/* Worker: runs the graph over a batch; its outputs go to the output topic and dlq.topic. */
static void run_batch(sr_runtime_t *rt, struct rt_batch *b)
{
    struct sr_error err = {0};
    struct sr_batch batch;
    struct sr_source_cols src;
    sr_arena_reset(b->arena);
    sr_err_t rc = sr_batch_init_source(&batch, b->arena, b->n, &src, &err);
    if (rc == SR_OK) {
        for (int32_t i = 0; i < b->n; i++) {
            const rd_kafka_message_t *m = b->msgs[i];
            src.raw[i] = m->payload ? m->payload : "";
            src.raw_len[i] = (uint32_t)m->len;
            src.partition[i] = m->partition;
            src.offset[i] = m->offset;
            src.timestamp[i] = rd_kafka_message_timestamp(m, NULL);
            b->refs[i].b = b;
            b->refs[i].row = i;
        }
        batch.owner = b;
        b->produced = 0;
        b->discard_from = rt->w_last_state + 1;
        rc = sr_graph_run(rt->g, &batch, &err);
        b->has_state = batch.has_state;
        b->state_id = batch.state_id;
        if (batch.has_state)
            rt->w_last_state = batch.state_id;
    }
    b->rc = rc;
    if (rc != SR_OK)
        snprintf(b->errmsg, sizeof b->errmsg, "%s", err.msg);
}

/* Worker, g_mu held: the sessions gauge from the store, after every commit, restore step,
 * eviction and sweep (exact on memory, RocksDB's estimate on rocksdb). */
static void sessions_gauge(sr_runtime_t *rt)
{
    __atomic_store_n(&rt->sessions, sr_state_count(rt->state), __ATOMIC_RELAXED);
}

/* Worker, g_mu held: removes expired sessions each time the committed watermark (the max
 * event time committed) has moved a quarter of session.ttl.ms since the last sweep. Event
 * time, like the TTL itself (DESIGN §4.2): the same input at any speed sweeps at the same
 * events. O(sessions) on memory, O(cache) on rocksdb, once per quarter TTL of event time. On
 * memory this is what bounds the store; on rocksdb it raises the compaction filter's
 * watermark and empties expired sessions out of the cache. */
static void sweep(sr_runtime_t *rt, int64_t ttl, int64_t *swept)
{
    int64_t wm = sr_state_watermark(rt->state);
    if (ttl <= 0 || wm == INT64_MIN || (*swept != INT64_MIN && wm - *swept < ttl / 4))
        return;
    struct sr_error err = {0};
    if (sr_state_expire(rt->state, wm, &err) != SR_OK)
        sr_log(SR_LOG_WARN, CMP, "expired sessions not swept", "error=\"%s\"", err.msg);
    *swept = wm;
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
    sr_state_t *st = rt->state;
    if (!rs->r) /* takes g_mu itself, only around the state (the broker may take a while) */
        rs->rc = sr_changelog_restore_begin(rt->cl, st, rs->partition, &rt->g_mu, &rs->r, &err);
    if (rs->rc == SR_OK) {
        pthread_mutex_lock(&rt->g_mu);
        rs->rc = sr_changelog_restore_step(rs->r, st, 20000000ULL, &done, &err);
        sessions_gauge(rt);
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

void *sr__rt_worker_main(void *arg)
{
    sr_runtime_t *rt = arg;
    int64_t ttl = 0, swept = INT64_MIN;
    if (sr_config_get_int(rt->cfg, "session.ttl.ms", &ttl, NULL) != SR_OK)
        ttl = 0; /* checked at start-up (sr_state_params_from_config) */
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
            b->rc = sr_changelog_log(rt->cl, rt->state, b->state_id, &b->cl_ref,
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
                        b->rc = sr_state_stage_checkpoint(rt->state, b->state_id, p,
                                                          b->cl_next[p], &err);
                if (b->rc == SR_OK)
                    b->rc = sr_state_commit(rt->state, b->state_id, &err);
                if (b->rc == SR_OK) {
                    sweep(rt, ttl, &swept);
                    sessions_gauge(rt);
                }
                pthread_mutex_unlock(&rt->g_mu);
                if (b->rc != SR_OK)
                    snprintf(b->errmsg, sizeof b->errmsg, "%s", err.msg);
            }
            completion_push(rt, j);
            break;
        }
        case JOB_EVICT:
            sr_state_partition_evict(rt->state, j->partition);
            pthread_mutex_lock(&rt->g_mu);
            sessions_gauge(rt);
            pthread_mutex_unlock(&rt->g_mu);
            free(j);
            break;
        case JOB_DISCARD:
            pthread_mutex_lock(&rt->g_mu);
            sr_state_discard(rt->state, j->state_id);
            pthread_mutex_unlock(&rt->g_mu);
            completion_push(rt, j);
            break;
        case JOB_RESTORE:
            if (restore_step(rt, j->rs))
                completion_push(rt, j);
            else
                sr__rt_job_push(rt, j); /* behind the queued runs: other partitions keep flowing */
            break;
        case JOB_SWAP: /* between two batches: the next run takes the new graph (reload.c) */
            sr__rt_reload_swap(rt, j->rl);
            completion_push(rt, j);
            break;
        case JOB_QUIT:
            free(j);
            return NULL;
        case JOB_PROBE: /* a completion only (stall.c): never queued to the worker */
            break;
        }
    }
}
