/* runtime.c — the online runtime (`streamrec run`, DESIGN §1, §7, §8): a consumer group in,
 * the operator graph in the middle, recommendations out to a topic.
 *
 * Threads. The libuv loop thread owns all I/O: the consumer queue (rd_kafka_queue_io_event_enable
 * writes to a pipe watched by uv_poll; rebalances, statistics and errors are served there), the
 * message queue (every assigned partition's fetch queue is forwarded to it before the partition
 * is assigned; drained with rd_kafka_consume_batch_queue, same pipe mechanism),
 * the producer's delivery reports (same mechanism), the batch deadline and housekeeping timers,
 * SIGTERM/SIGINT, SIGHUP and the metrics listener. ONE worker thread runs the graph (it is
 * single-threaded), so batch n+1 gathers on the loop while batch n computes. Loop → worker: a
 * mutex/condvar job queue (run a batch, commit a batch's state, evict a partition); worker →
 * loop: a completion queue + uv_async_send. The loop never waits on the worker, except while
 * partitions are revoked (they must be finished and committed before they are handed over).
 *
 * Delivery (§8, at_least_once). A batch is a run of consumed messages (batch.max.events, or
 * batch.max.wait.ms after its first message, or sooner with batch.adaptive, DESIGN §1.3). The worker runs the graph over it; the topic sink
 * produces each recommendation (key = session_id, provenance headers) and undecodable messages
 * go unchanged to dlq.topic. Batches complete in consumption order: once every message a batch
 * produced is acknowledged and every earlier batch is complete, the worker commits its staged
 * state (sr_state_commit: sessions + applied offsets in one RocksDB write), and only then are
 * its consumer offsets stored (enable.auto.offset.store=false) for auto-commit. A message that
 * finally fails delivery is recovered in-process (recover_begin below): its batch and every
 * later one are dropped with their staged state, their partitions sought back, their events
 * processed again (duplicates byte-identical); after runtime.max.recoveries failures in a row
 * the runtime stops non-zero instead, and a restart resumes from the committed offsets, the
 * applied offsets making session_update skip what was applied: nothing is lost, nothing is
 * applied twice either way.
 *
 * Files (each states its thread): runtime.c (life: new, run, drain, destroy, signals), reload.c
 * (the model bundle's hot reload: loop, threadpool, a swap on the worker), batcher.c
 * (loop: messages into batches, backpressure), worker.c (the worker thread and its job queue),
 * delivery.c (loop: delivery reports, completion in order, offsets, transactions, recovery),
 * rebalance.c (loop: assignment, restore, revocation), observe.c (loop: statistics, errors,
 * /metrics, /healthz, /readyz), stall.c (loop: partitions that stop advancing, DESIGN §8.10);
 * runtime_int.h holds the structures they share.
 *
 * Backpressure: above runtime.max.inflight.events events in flight (gathering, computing or
 * awaiting acks) or runtime.max.producer.queue messages in the producer queue, the loop stops
 * taking messages from the message queue (it keeps serving the consumer queue: rebalances and
 * the poll interval); it takes them again below half of both. librdkafka's own prefetch bounds
 * (queued.min.messages, queued.max.messages.kbytes) then stop the fetcher. Partitions are not
 * paused for this: in librdkafka 2.0 a resumed partition waits up to a second for its broker
 * thread to notice, and pausing drops the prefetched messages. Nothing is dropped. */
#include "runtime_int.h"

void sr__rt_fail(sr_runtime_t *rt, sr_err_t code, const char *fmt, ...)
{
    if (rt->fatal)
        return;
    rt->fatal_rc = code != SR_OK ? code : SR_EINTERNAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->fatal_msg, sizeof rt->fatal_msg, fmt, ap);
    va_end(ap);
    rt->fatal = true;
    sr_log(SR_LOG_ERROR, CMP, "stopping: nothing after this point is committed", "reason=\"%s\"",
           rt->fatal_msg);
    if (rt->consumer)
        sr__rt_pause_resume_all(rt, true);
    if (rt->gather) {
        rt->inflight_events -= rt->gather->n;
        sr__rt_batch_put(rt, rt->gather);
        rt->gather = NULL;
        uv_timer_stop(&rt->batch_timer);
    }
}

void sr__rt_begin_drain(sr_runtime_t *rt)
{
    if (rt->draining)
        return;
    rt->draining = true;
    sr_notify_stopping();
    sr_log(SR_LOG_INFO, CMP, "draining: finishing in-flight batches", "inflight_events=%lld",
           (long long)rt->inflight_events);
    if (rt->consumer)
        sr__rt_pause_resume_all(rt, true);
    sr__rt_dispatch(rt);
    sr__rt_advance(rt);
}

/* Runs the pipeline without returning to the loop until nothing is in flight (revocation must
 * finish and commit before the partitions are handed over). Bounded by timeout_ms. */
void sr__rt_drain_blocking(sr_runtime_t *rt, int timeout_ms)
{
    sr__rt_dispatch(rt);
    uint64_t deadline = sr_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    while (rt->ihead && !rt->fatal && sr_now_ns() < deadline) {
        sr__rt_handle_completions(rt);
        rd_kafka_poll(rt->producer, 1);
        while (rd_kafka_poll(rt->producer, 0) > 0) {
        }
    }
    sr__rt_handle_completions(rt);
    if (rt->ihead && !rt->fatal)
        sr__rt_fail(rt, SR_ECANCELED, "in-flight batches did not finish within %d ms during a rebalance", timeout_ms);
}

static void on_signal(uv_signal_t *s, int signum)
{
    sr_runtime_t *rt = s->data;
    sr_log(SR_LOG_INFO, CMP, "signal: draining (a second signal exits at once)", "signal=%d", signum);
    /* With no watcher left libuv restores the default action: a second signal terminates. */
    uv_signal_stop(&rt->sigint);
    uv_signal_stop(&rt->sigterm);
    sr__rt_begin_drain(rt);
}

/* SIGHUP (systemd's ExecReload): reload model.bundle (reload.c); serving goes on whatever the
 * new bundle is (a reload never stops the stream). */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    sr__rt_reload(s->data, "SIGHUP");
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sr_notify_watchdog();
}

static void on_house(uv_timer_t *t)
{
    sr_runtime_t *rt = t->data;
    struct sr_error err = {0};
    if (rt->cl && sr_changelog_check(rt->cl, &err) != SR_OK)
        sr__rt_fail(rt, err.code, "%s", err.msg);
    /* A safety net under the queue wake-ups (they fire once until the queue is served). */
    sr__rt_serve_consumer(rt);
    sr__rt_serve_messages(rt);
    sr__rt_serve_producer(rt);
    sr__rt_handle_completions(rt);
    sr__rt_stall_check(rt);
}

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
    rd_kafka_conf_set_error_cb(conf, sr__rt_error_cb);
    if (side == SR_KAFKA_CONSUMER) {
        rd_kafka_conf_set_rebalance_cb(conf, sr__rt_rebalance_cb);
        rd_kafka_conf_set_stats_cb(conf, sr__rt_stats_cb);
        const char *ml = sr_config_get(rt->cfg, "metrics.listen");
        if (ml && *ml && !sr_config_is_set(rt->cfg, "kafka.statistics.interval.ms") &&
            !sr_config_is_set(rt->cfg, "kafka.consumer.statistics.interval.ms"))
            rc = sr_kafka_conf_set(conf, "statistics.interval.ms", "5000", err);
    } else {
        rd_kafka_conf_set_dr_msg_cb(conf, sr__rt_dr_cb);
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
    rt->proc_hist = rt->lat_hist;
    rt->input_topic = sr_config_get(cfg, "input.topic");
    rt->dlq_topic = sr_config_get(cfg, "dlq.topic");
    int64_t v;
    sr_err_t rc = get_int(cfg, "batch.max.events", 1, 1000000, &v, err);
    rt->max_events = (int32_t)v;
    if (rc == SR_OK)
        rc = get_int(cfg, "batch.max.wait.ms", 0, 60000, &rt->max_wait_ms, err);
    if (rc == SR_OK)
        rc = sr_config_get_bool(cfg, "batch.adaptive", &rt->adaptive, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "runtime.max.inflight.events", 1, INT32_MAX, &rt->max_inflight, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "runtime.max.producer.queue", 1, INT32_MAX, &rt->max_outq, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "runtime.max.recoveries", 0, INT32_MAX, &rt->max_recoveries, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "dlq.max.bytes", 1024, INT32_MAX, &rt->dlq_max_bytes, err);
    if (rc == SR_OK)
        rc = get_int(cfg, "runtime.stall.timeout.ms", 0, INT32_MAX, &rt->stall_timeout_ms, err);
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
    if (rc == SR_OK && ofmt == SR_FORMAT_AVRO_CONFLUENT) {
        int32_t sid; /* registered under <output.topic>-value with schema.registry.url */
        rc = sr_output_schema_id(cfg, sr_config_get(cfg, "output.topic"), &sid, err);
        schema_id = sid;
    }
    if (rc == SR_OK)
        rc = make_client(rt, SR_KAFKA_PRODUCER, err);
    if (rc == SR_OK)
        rc = make_client(rt, SR_KAFKA_CONSUMER, err);
    if (rc == SR_OK) {
        struct sr_topic_sink_params sp = {
            .producer = rt->producer, .topic = sr_config_get(cfg, "output.topic"),
            .format = ofmt, .schema_id = (int32_t)schema_id,
            .msg_opaque = sr__rt_rec_opaque, .ctx = rt, .serve_when_full = false,
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
        const char *dir = sr_config_get(cfg, "model.bundle");
        sr_bundle_t *bundle = NULL;
        if (!dir || !*dir)
            rc = sr_error_set(err, SR_ECONFIG, "model.bundle is required (the bundle directory)");
        else
            rc = sr_bundle_load(dir, &bundle, err);
        if (rc == SR_OK) /* the target the watch starts from (reload.c) */
            snprintf(rt->watch_seen[0], sizeof rt->watch_seen[0], "%s", sr_bundle_info(bundle)->dir);
        if (rc == SR_OK)
            rc = sr_session_store_open(cfg, bundle, identity, false, &rt->state, err);
        sr__rt_outputs_init(rt);
        struct sr_graph_params gp = {
            .cfg = cfg, .runtime = "online", .stats = &rt->stats, .sink = &rt->outputs,
            .source_topic = rt->input_topic, .state = rt->state, .bundle = bundle,
        };
        if (rc == SR_OK)
            rc = sr_graph_new(&gp, &rt->g, err);
        if (rc == SR_OK) /* the test encode a reload runs too (reload.c) */
            rc = sr_graph_check(rt->g, err);
        sr_bundle_unref(bundle);
    }
    if (rc == SR_OK) {
        snprintf(rt->model_version, sizeof rt->model_version, "%s", sr_graph_model_version(rt->g));
        snprintf(rt->model_dir, sizeof rt->model_dir, "%s", sr_graph_model_dir(rt->g));
    }
    if (rc != SR_OK && rt->producer) {
        /* A start-up request that failed on the broker's side (e.g. "transport failure" for a
         * wrong password): the client's error events name the cause; report that instead. */
        rd_kafka_poll(rt->producer, 0);
        if (rt->fatal)
            rc = sr_error_set(err, rt->fatal_rc, "%s", rt->fatal_msg);
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
    uv_async_init(&rt->loop, &rt->async, sr__rt_on_async);
    rt->async.data = rt;
    uv_timer_init(&rt->loop, &rt->batch_timer);
    rt->batch_timer.data = rt;
    uv_timer_init(&rt->loop, &rt->house_timer);
    rt->house_timer.data = rt;
    sr_err_t rc = SR_OK;
    if (sr__rt_set_nonblock_pipe(rt->cpipe) != 0 || sr__rt_set_nonblock_pipe(rt->ppipe) != 0 ||
        sr__rt_set_nonblock_pipe(rt->mpipe) != 0)
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
        uv_poll_start(&rt->cpoll, UV_READABLE, sr__rt_on_cpoll);
        uv_poll_init(&rt->loop, &rt->ppoll, rt->ppipe[0]);
        rt->ppoll.data = rt;
        uv_poll_start(&rt->ppoll, UV_READABLE, sr__rt_on_ppoll);
        uv_poll_init(&rt->loop, &rt->mpoll, rt->mpipe[0]);
        rt->mpoll.data = rt;
        uv_poll_start(&rt->mpoll, UV_READABLE, sr__rt_on_mpoll);
    }
    const char *ml = sr_config_get(rt->cfg, "metrics.listen");
    if (rc == SR_OK && ml && *ml)
        rc = sr_http_start(&rt->loop, ml, sr__rt_http_handler, rt, &rt->http, err);
    if (rc == SR_OK && handle_signals) {
        rt->signals = true;
        uv_signal_init(&rt->loop, &rt->sigint);
        uv_signal_init(&rt->loop, &rt->sigterm);
        rt->sigint.data = rt->sigterm.data = rt;
        uv_signal_start(&rt->sigint, on_signal, SIGINT);
        uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
        uv_signal_init(&rt->loop, &rt->sighup);
        rt->sighup.data = rt;
        uv_signal_start(&rt->sighup, on_sighup, SIGHUP);
    }
    if (rc == SR_OK)
        rc = sr__rt_watch_start(rt, err);
    if (rc == SR_OK) {
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, rt->input_topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(rt->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (e)
            rc = sr_error_set(err, SR_EKAFKA, "subscribe %s: %s", rt->input_topic, rd_kafka_err2str(e));
    }
    if (rc == SR_OK) {
        if (pthread_create(&rt->worker, NULL, sr__rt_worker_main, rt) != 0)
            rc = sr_error_set(err, SR_EINTERNAL, "cannot start the worker thread");
        else
            rt->worker_started = true;
    }
    if (rc == SR_OK) {
        uv_timer_start(&rt->house_timer, on_house, 100, 100);
        uint64_t wd_us = 0;
        if (sr_notify_watchdog_usec(&wd_us) == 1 && wd_us >= 2000) {
            uv_timer_init(&rt->loop, &rt->watchdog_timer);
            uv_timer_start(&rt->watchdog_timer, on_watchdog, 0, wd_us / 2000);
        }
        sr_log(SR_LOG_INFO, CMP, "started", "input=%s output=%s dlq=%s model_version=%s "
               "bundle=%s metrics=%s", rt->input_topic, sr_config_get(rt->cfg, "output.topic"),
               rt->dlq_topic && *rt->dlq_topic ? rt->dlq_topic : "(off)", rt->model_version,
               rt->model_dir, ml && *ml ? ml : "(off)");
        if (__atomic_load_n(&rt->stop_requested, __ATOMIC_ACQUIRE))
            sr__rt_begin_drain(rt);
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
        rc = sr_error_set(err, rt->fatal_rc, "%s", rt->fatal_msg);
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
            sr__rt_job_push(rt, q);
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
    for (struct job *j = rt->jhead; j;) {
        struct job *n = j->next;
        if (j->type == JOB_EVICT || j->type == JOB_QUIT || j->type == JOB_DISCARD)
            free(j); /* JOB_RESTORE jobs live in their restore records, freed below */
        else if (j->type == JOB_SWAP)
            sr__rt_reload_free(j->rl); /* the job lives in its reload record */
        j = n;
    }
    for (struct job *j = rt->chead; j;) { /* a swap the loop did not see complete */
        struct job *n = j->next;
        if (j->type == JOB_SWAP)
            sr__rt_reload_free(j->rl);
        j = n;
    }
    /* The restore records after both queues: a JOB_RESTORE still queued lives inside its
     * record, and walking the queue reads its `next`. */
    for (int i = 0; i < rt->n_restores; i++) {
        sr_changelog_restore_end(rt->restores[i]->r);
        free(rt->restores[i]);
    }
    free(rt->restores);
    if (rt->gather)
        sr__rt_batch_free(rt->gather);
    for (struct rt_batch *b = rt->ihead; b;) {
        struct rt_batch *n = b->next;
        sr__rt_batch_free(b);
        b = n;
    }
    for (struct rt_batch *b = rt->free_list; b;) {
        struct rt_batch *n = b->next;
        sr__rt_batch_free(b);
        b = n;
    }
    sr__rt_stall_destroy(rt); /* its messages were in the batches */
    if (rt->cq)
        rd_kafka_queue_destroy(rt->cq);
    if (rt->mq)
        rd_kafka_queue_destroy(rt->mq);
    if (rt->consumer)
        rd_kafka_destroy(rt->consumer);
    sr_graph_destroy(rt->g);
    sr_state_close(rt->state);
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
                         uint64_t *published, struct sr_hist *latency, struct sr_hist *processing)
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
    if (processing)
        *processing = rt->proc_hist;
    pthread_mutex_unlock(&rt->mmu);
}

/* Input partitions assigned now (the /readyz condition without the drain check), for tools
 * that embed the runtime and wait for the group join before offering events (demo). Any
 * thread: a relaxed atomic read of the loop thread's count. */
int sr_runtime_assigned(sr_runtime_t *rt)
{
    return __atomic_load_n(&rt->assigned, __ATOMIC_RELAXED);
}
