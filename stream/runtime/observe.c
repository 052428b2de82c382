/* observe.c — loop thread: librdkafka statistics (consumer lag) and errors, and the /metrics,
 * /healthz, /readyz answers rendered from the runtime's counters (DESIGN §7), and POST
 * /admin/reload (reload.c). */
#include "runtime_int.h"

#include <stddef.h>

/* librdkafka statistics (statistics.interval.ms): consumer lag per partition. */
int sr__rt_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
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
                /* -1: position or high watermark not known yet: export nothing then */
                if (p < 0 || !lag || json_integer_value(lag) < 0 ||
                    !json_is_true(json_object_get(v, "desired")))
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

void sr__rt_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sr_runtime_t *rt = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        if (sr__kafka_err_is_access(orig))
            sr__rt_fail(rt, SR_EKAFKA, "kafka authorization failed (%s): %s; check the ACLs of kafka.sasl.username",
                 rd_kafka_err2name(orig), buf);
        else
            sr__rt_fail(rt, SR_EKAFKA, "fatal kafka error: %s", buf);
        return;
    }
    /* A wrong password or a missing ACL does not heal by retrying: librdkafka would retry
     * forever, so stop with the reason (nothing uncommitted is lost; a corrected restart
     * resumes from the committed offsets). */
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        sr__rt_fail(rt, SR_EKAFKA, "kafka authentication failed: %s; check kafka.sasl.* and kafka.security.protocol",
             reason);
        return;
    }
    if (sr__kafka_err_is_access((rd_kafka_resp_err_t)err)) {
        sr__rt_fail(rt, SR_EKAFKA, "kafka authorization failed (%s): %s; check the ACLs of kafka.sasl.username",
             rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
        return;
    }
    sr_kafka_error_log(rk, err, reason);
}

static void counter(struct sr_buf *b, const char *name, const char *help, uint64_t v)
{
    sr_buf_appendf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
         (unsigned long long)v);
}

static void gauge(struct sr_buf *b, const char *name, const char *help, double v)
{
    sr_buf_appendf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

/* A per-partition counter: the uint64_t at `field` of each input partition's position, for
 * the partitions where it is not 0 (loop thread: the pos array is the loop's). */
static void partition_counter(struct sr_buf *b, const sr_runtime_t *rt, const char *name,
                              const char *help, size_t field)
{
    sr_buf_appendf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int32_t i = 0; i < rt->n_pos; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&rt->pos[i] + field, sizeof v);
        if (v)
            sr_buf_appendf(b, "%s{partition=\"%d\"} %llu\n", name, (int)i, (unsigned long long)v);
    }
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void label_value(struct sr_buf *b, const char *v)
{
    for (; *v; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        sr_buf_append(b, esc ? esc : v, esc ? 2 : 1);
    }
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
    counter(b, "streamrec_events_timestamp_from_record_total", "events without timestamp_ms "
            "that took their Kafka record's timestamp",
            __atomic_load_n(&st->timestamp_from_record, __ATOMIC_RELAXED));
    counter(b, "streamrec_events_unknown_item_total", "valid events whose item the bundle does not know",
            __atomic_load_n(&st->unknown_items, __ATOMIC_RELAXED));
    counter(b, "streamrec_recommendations_published_total",
            "recommendations acknowledged by the broker", rt->published);
    counter(b, "streamrec_dlq_published_total", "messages acknowledged on the dead-letter topic",
            rt->dlq_published);
    counter(b, "streamrec_dlq_dropped_total", "dead letters the producer or the broker refused "
            "(logged; the stream went on)", __atomic_load_n(&rt->dlq_dropped, __ATOMIC_RELAXED));
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
    sr_hist_write(&rt->proc_hist, b, "streamrec_processing_seconds",
                  "event consumed to recommendation handed to the producer (seconds): the "
                  "runtime's part of streamrec_latency_seconds");
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
    partition_counter(b, rt, "streamrec_partition_stalls_total", "times an input partition "
                      "consumed nothing for runtime.stall.timeout.ms below its high watermark",
                      offsetof(struct part_pos, stalls));
    partition_counter(b, rt, "streamrec_partition_records_skipped_total", "records no consumer "
                      "could read, skipped (dead-lettered without their bytes)",
                      offsetof(struct part_pos, skipped));
    partition_counter(b, rt, "streamrec_partition_records_lost_total", "records the broker "
                      "removed before they were consumed (retention)",
                      offsetof(struct part_pos, lost));
    gauge(b, "streamrec_sessions", "sessions held in state, after the last commit (exact on "
          "memory, RocksDB's estimate on rocksdb)",
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
    struct sr_registry_stats rs; /* schemas/registry.c's process-wide counters */
    sr_registry_stats_get(&rs);
    if (rs.configured) {
        counter(b, "streamrec_schema_registry_requests_total", "HTTP requests to the Schema Registry",
                rs.requests);
        counter(b, "streamrec_schema_registry_failures_total",
                "Schema Registry requests without an answer or answered 5xx", rs.failures);
        counter(b, "streamrec_schema_registry_retries_total",
                "backoff waits before retrying the Schema Registry", rs.retries);
        counter(b, "streamrec_schema_registry_unknown_ids_total",
                "schema ids the Schema Registry did not know", rs.unknown_ids);
        gauge(b, "streamrec_schema_registry_up",
              "1 when the last Schema Registry request got an answer", rs.up > 0 ? 1 : 0);
    }
    sr_buf_appendf(b, "# HELP streamrec_model_info the model bundle serving now\n"
                   "# TYPE streamrec_model_info gauge\nstreamrec_model_info{version=\"");
    label_value(b, rt->model_version);
    sr_buf_appendf(b, "\",bundle=\"");
    label_value(b, rt->model_dir);
    sr_buf_appendf(b, "\"} 1\n# HELP streamrec_model_reloads_total model bundle reloads: ok (swapped "
                   "in) or refused (a check failed; the running bundle kept serving)\n"
                   "# TYPE streamrec_model_reloads_total counter\n"
                   "streamrec_model_reloads_total{result=\"ok\"} %llu\n"
                   "streamrec_model_reloads_total{result=\"refused\"} %llu\n",
                   (unsigned long long)rt->reloads_ok, (unsigned long long)rt->reloads_refused);
    /* mmu: the worker swaps rt->g under it and destroys the old graph only after (reload.c) */
    pthread_mutex_lock(&rt->mmu);
    int nv = 0;
    const struct sr_variant *vs = rt->g ? sr_graph_variants(rt->g, &nv) : NULL;
    if (nv) {
        sr_buf_appendf(b, "# HELP streamrec_variant_recommendations_total recommendations by A/B "
                          "variant (model.variants)\n"
                          "# TYPE streamrec_variant_recommendations_total counter\n");
        for (int v = 0; v < nv; v++)
            sr_buf_appendf(b, "streamrec_variant_recommendations_total{variant=\"%s\","
                              "model_version=\"%s\"} %" PRIu64 "\n", vs[v].name, vs[v].version,
                           __atomic_load_n(&vs[v].recommendations, __ATOMIC_RELAXED));
        sr_buf_appendf(b, "# HELP streamrec_variant_share percent of sessions assigned to the "
                          "variant\n# TYPE streamrec_variant_share gauge\n");
        for (int v = 0; v < nv; v++)
            sr_buf_appendf(b, "streamrec_variant_share{variant=\"%s\"} %u\n", vs[v].name,
                           vs[v].share);
    }
    pthread_mutex_unlock(&rt->mmu);
}

/* POST /admin/reload (reload.c): answered to loopback peers only, whatever metrics.listen
 * binds (an admin action, not a scrape), and not at all with metrics.admin=false. The answer
 * says the reload started; its result is in the log and in streamrec_model_reloads_total. */
static void admin_reload(sr_runtime_t *rt, const struct sr_http_req *req, int *status,
                         struct sr_buf *body)
{
    bool on = true;
    if (sr_config_get_bool(rt->cfg, "metrics.admin", &on, NULL) != SR_OK || !on) {
        *status = 403;
        sr_buf_appendf(body, "admin endpoints are off (metrics.admin=false)\n");
    } else if (!req->loopback) {
        *status = 403;
        sr_buf_appendf(body, "admin endpoints answer loopback peers only\n");
    } else if (strcmp(req->method, "POST") != 0) {
        *status = 405;
        sr_buf_appendf(body, "POST /admin/reload reloads model.bundle\n");
    } else if (rt->draining || rt->fatal) {
        *status = 503;
        sr_buf_appendf(body, "%s: no reload\n", rt->fatal ? "failed" : "draining");
    } else {
        bool queued = rt->reload != NULL;
        sr__rt_reload(rt, "POST /admin/reload");
        *status = 202;
        sr_buf_appendf(body, "%s; model_version=%s until it succeeds (see "
                       "streamrec_model_reloads_total)\n",
                       queued ? "reload queued behind the one running" : "reload started",
                       rt->model_version);
    }
}

void sr__rt_http_handler(void *ctx, const struct sr_http_req *req, int *status,
                         const char **ctype, struct sr_buf *body)
{
    sr_runtime_t *rt = ctx;
    const char *path = req->path;
    if (!strcmp(path, "/admin/reload")) {
        admin_reload(rt, req, status, body);
    } else if (strcmp(req->method, "GET") != 0) {
        *status = 405;
        sr_buf_appendf(body, "only GET here\n");
    } else if (!strcmp(path, "/metrics")) {
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        render_metrics(rt, body);
    } else if (!strcmp(path, "/healthz")) {
        *status = rt->fatal ? 503 : 200;
        sr_buf_appendf(body, "%s\n", rt->fatal ? "failed" : "ok");
    } else if (!strcmp(path, "/readyz")) {
        /* Ready = in the group and able to work: a member without partitions (more replicas
         * than partitions) is ready; one sr__rt_restoring is ready and says what it restores. */
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
