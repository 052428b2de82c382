/* sr_stream.h — the stream library (stream/runtime/, DESIGN §1.1): the offline runtime
 * (sr_replay_*) over sources and outputs, the online runtime (sr_runtime_*), the Kafka glue, the
 * state changelog and the metrics listener. The commands (stream/cli/) and tools
 * (stream/tools/) are built on it. A source yields records (raw bytes + position) in order; an
 * output is where the graph's sr_sink writes (file or topic). */
#ifndef SR_STREAM_H
#define SR_STREAM_H

#include "sr_core.h"
#include "sr_ops.h"
#include "sr_schemas.h"

/* ---- sources and outputs of the offline runtime (source.c) ------------------------------ */

/* Where a replay reads: a file (JSON Lines or Avro container, detected; "-" is stdin) or a
 * topic range ("topic:NAME[@START[..END]]"). The counterpart of the graph's sr_sink. */
struct sr_source {
    /* Fills a fresh batch (raw, src_partition, src_offset) with up to max records; b->n = 0 at
     * the end. Raw bytes live in the arena. Records that cannot be read are counted in stats. */
    sr_err_t (*read)(void *ctx, int32_t max, sr_arena_t *arena, struct sr_batch *b,
                     struct sr_stats *stats, struct sr_error *err);
    /* Optional: bytes read so far and in all (0 when unknown). */
    void (*progress)(void *ctx, uint64_t *done, uint64_t *total);
    void (*close)(void *ctx);
    const char *name;           /* source.topic of recommendations (file base name, topic) */
    const char *format;         /* codec of the records when it is the source's (an Avro
                                 * container: "avro"), else NULL: input.format */
    const char *writer_schema;  /* with format: the writer schema (JSON) */
    void *ctx;
};
/* Opens a source by its spec (above). The caller closes it with sr_source_close. */
sr_err_t sr_source_open(const sr_config_t *cfg, const char *spec, struct sr_source *out,
                        struct sr_error *err);
void sr_source_close(struct sr_source *s);

/* Where a replay writes: a file (.avro: Avro container, else JSON Lines; "-" is stdout) or
 * "topic:NAME" (produced with key = session_id and provenance headers). */
struct sr_output {
    struct sr_sink sink;        /* what the graph emits to */
    /* Waits until everything emitted is durable (flushed, acknowledged): after it returns
     * SR_OK the batch's state may be committed. */
    sr_err_t (*settle)(void *ctx, struct sr_error *err);
    /* Flushes and closes; returns the first write error. */
    sr_err_t (*close)(void *ctx, struct sr_error *err);
    void *ctx;
};
sr_err_t sr_output_open(const sr_config_t *cfg, const char *spec, struct sr_output *out,
                        struct sr_error *err);
/* Closes (no-op on a zeroed output); returns the first write error. */
sr_err_t sr_output_close(struct sr_output *o, struct sr_error *err);

/* ---- the offline runtime (replay.c) -------------------------------------------------------- */

typedef struct sr_replay sr_replay_t;
/* A bundle of a comparison: a short name (report, output file suffix) and its directory. */
struct sr_replay_bundle {
    const char *name, *dir;
};
#define SR_REPLAY_MAX_BUNDLES 8

struct sr_replay_params {
    const sr_config_t *cfg;     /* borrowed for the replay's lifetime */
    const char *input, *output; /* specs of sr_source_open / sr_output_open */
    /* Several bundles over the same events in one pass (an offline A/B comparison): each gets
     * its own session store (temporary), graph and output (`output` with ".NAME" before its
     * extension, or none when output is NULL). 0: the single bundle of model.bundle. The first
     * is the baseline of sr_replay_compare. Borrowed. */
    const struct sr_replay_bundle *bundles;
    int n_bundles;
    bool eval;                  /* next-item evaluation (the eval op) */
    /* Continue the replay whose state is in state.dir; without it a replay starts from empty
     * state: a temporary directory (removed by sr_replay_destroy) unless state.dir is set, and
     * then it must hold no earlier replay. */
    bool resume;
    /* Optional, called after each batch (same thread). */
    void (*on_batch)(void *ctx, const struct sr_stats *stats, uint64_t done, uint64_t total);
    void *ctx;
};
/* Opens the source, the output, the session store and the graph. Caller owns *out. */
sr_err_t sr_replay_new(const struct sr_replay_params *p, sr_replay_t **out, struct sr_error *err);
/* Runs to the end of the source: per batch, the graph, then the output settles, then the
 * batch's state is committed (DESIGN §8: a replay killed and resumed re-emits byte-identical
 * recommendations). */
sr_err_t sr_replay_run(sr_replay_t *r, struct sr_error *err);
struct sr_replay_result {
    const char *name;            /* the bundle's name in a comparison; "" otherwise */
    const struct sr_stats *stats;
    struct sr_eval_report eval;  /* zeros without eval */
    bool has_eval;
    double seconds;              /* of sr_replay_run */
    uint64_t sessions;           /* held by the session store */
    const char *model_version;
};
void sr_replay_result(const sr_replay_t *r, struct sr_replay_result *out);
/* The number of bundles replayed, and the result of bundle i (0 = the first). */
int sr_replay_n_bundles(const sr_replay_t *r);
void sr_replay_result_of(const sr_replay_t *r, int i, struct sr_replay_result *out);
/* Bundle i minus bundle 0 on HitRate@K, MRR@K, NDCG@K (in that order), paired by session over
 * the sessions either evaluated, with a 95 % percentile interval from `resamples` bootstrap
 * resamples of sessions (seeded: the same replay gives the same interval). Needs eval. */
struct sr_replay_diff {
    double diff[3], lo[3], hi[3];
    uint64_t sessions;
    int resamples;
};
sr_err_t sr_replay_compare(const sr_replay_t *r, int i, int resamples, uint64_t seed,
                           struct sr_replay_diff *out, struct sr_error *err);
/* The report of `replay --report` (DESIGN §6): one JSON object and a newline. */
void sr_replay_write_report(const struct sr_replay_result *res, FILE *f);
/* The report of a comparison: {"bundles": [one report object per bundle, with "name"],
 * "comparison": [each bundle after the first against the first: the differences and their
 * intervals (sr_replay_compare)]}. */
sr_err_t sr_replay_write_comparison(const sr_replay_t *r, int resamples, uint64_t seed, FILE *f,
                                    struct sr_error *err);
/* Closes everything; flushes the output; removes a temporary state directory. NULL: no-op.
 * Returns the output's first write error (SR_OK otherwise). */
sr_err_t sr_replay_destroy(sr_replay_t *r, struct sr_error *err);

/* ---- file source: JSON Lines or an Avro object container file (detected) -------------- */

typedef struct sr_file_source sr_file_source_t;

/* Opens path ("-" is stdin, JSON Lines only). The caller owns *out. */
sr_err_t sr_file_source_open(const char *path, sr_file_source_t **out, struct sr_error *err);
void sr_file_source_close(sr_file_source_t *s);
/* "json" or "avro": the codec the graph must decode the source's raw records with. */
const char *sr_file_source_format(const sr_file_source_t *s);
/* Writer schema for the raw records of an Avro source (our own schema), else NULL. */
const char *sr_file_source_writer_schema(const sr_file_source_t *s);
/* Base name of the file: source.topic of recommendations. */
const char *sr_file_source_name(const sr_file_source_t *s);
/* Fills a fresh batch with up to max records (raw, src_partition = 0, src_offset = record
 * number); b->n = 0 at the end. Raw bytes live in the arena. An Avro record that cannot be
 * read is counted in stats by reason and skipped (its record number is used up). */
sr_err_t sr_file_source_read(sr_file_source_t *s, int32_t max, sr_arena_t *arena,
                             struct sr_batch *b, struct sr_stats *stats, struct sr_error *err);
/* Bytes read so far and the file size (0 when unknown): progress. */
void sr_file_source_progress(const sr_file_source_t *s, uint64_t *done, uint64_t *total);

/* ---- file sink: .jsonl (JSON Lines) or .avro (container) by extension ------------------ */

typedef struct sr_file_sink sr_file_sink_t;

/* Creates (truncates) path; "-" is stdout (JSON Lines). The caller owns *out. */
sr_err_t sr_file_sink_open(const char *path, sr_file_sink_t **out, struct sr_error *err);
/* The sr_sink view used by the graph (valid while the sink lives). */
struct sr_sink *sr_file_sink_iface(sr_file_sink_t *s);
/* Flushes and closes; returns the first write error. NULL is a no-op. */
sr_err_t sr_file_sink_close(sr_file_sink_t *s, struct sr_error *err);


/* ---- Kafka clients (kafka.c) ------------------------------------------------------------ */

#include <librdkafka/rdkafka.h>
#include <pthread.h>

enum sr_kafka_side { SR_KAFKA_CONSUMER = 0, SR_KAFKA_PRODUCER = 1 };

/* Builds a librdkafka configuration: streamrec's defaults for that side (consumer: group.id
 * from kafka.group.id, cooperative-sticky, enable.auto.offset.store=false, earliest reset;
 * producer: enable.idempotence=true, linger.ms=1), then every explicitly set `kafka.*` key with the prefix
 * stripped, `kafka.consumer.*` / `kafka.producer.*` to that side only. Errors name the key,
 * never the value (secrets). Log lines and errors of the client go to sr_log (sr_kafka_log_cb,
 * sr_kafka_error_log; a caller may set its own error_cb). Caller owns *out. */
sr_err_t sr_kafka_conf_new(const sr_config_t *cfg, enum sr_kafka_side side, rd_kafka_conf_t **out,
                           struct sr_error *err);
/* librdkafka's log lines through sr_log (component kafka, fields client and facility): errors
 * and warnings; the rest only at log level debug. For rd_kafka_conf_set_log_cb. */
void sr_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
/* Logs an error_cb's error (component kafka, fields client, error, reason) unless it is a
 * broker failure sr_kafka_log_cb already logged (the same client and text): one line per
 * occurrence. Any thread. */
void sr_kafka_error_log(const rd_kafka_t *rk, int err, const char *reason);
/* An offset for logs: the number, or the logical offset's name: "beginning", "end",
 * "stored", "(none)" (RD_KAFKA_OFFSET_INVALID), "end-N" (a tail offset). Returns buf or a
 * literal; buf holds SR_KAFKA_OFFSET_STR bytes. The one wording of offsets in every log line. */
#define SR_KAFKA_OFFSET_STR 32
const char *sr_kafka_offset_str(int64_t offset, char buf[SR_KAFKA_OFFSET_STR]);
/* Sets one librdkafka property (SR_ECONFIG naming the key on failure). */
sr_err_t sr_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                           struct sr_error *err);
/* True when kafka.bootstrap.servers is set. */
bool sr_kafka_configured(const sr_config_t *cfg);
/* True for the broker's authorization refusals (topic, group, transactional id, cluster):
 * errors that retrying does not heal. */
bool sr__kafka_err_is_access(rd_kafka_resp_err_t e);

/* ---- topic sink: the online variant of the graph's sr_sink (kafka.c) -------------------- */

typedef struct sr_topic_sink sr_topic_sink_t;

struct sr_topic_sink_params {
    rd_kafka_t *producer;          /* borrowed */
    const char *topic;             /* borrowed for the sink's lifetime */
    enum sr_format format;         /* output.format */
    int32_t schema_id;             /* output.avro.schema_id */
    /* Per-message opaque for delivery reports of the recommendation of batch row `row` (NULL:
     * none); called on the producing thread. */
    void *(*msg_opaque)(void *ctx, const struct sr_batch *b, int32_t row);
    void *ctx;
    /* When the producer queue is full: true = serve the producer (rd_kafka_poll) while waiting
     * (single-threaded users), false = sleep 1 ms (another thread serves delivery reports). */
    bool serve_when_full;
};

/* Each recommendation is produced with key = session_id and headers streamrec.model.version,
 * streamrec.source.topic, streamrec.source.partition, streamrec.source.offset. Caller owns *out. */
sr_err_t sr_topic_sink_new(const struct sr_topic_sink_params *p, sr_topic_sink_t **out,
                           struct sr_error *err);
struct sr_sink *sr_topic_sink_iface(sr_topic_sink_t *s);
/* Messages handed to the producer so far. */
uint64_t sr_topic_sink_produced(const sr_topic_sink_t *s);
void sr_topic_sink_destroy(sr_topic_sink_t *s);

/* Produces bytes (copied) to `partition` (RD_KAFKA_PARTITION_UA: the partitioner's choice)
 * with timestamp_ms (0: now), retrying while the producer queue is full (see
 * serve_when_full). Takes hdrs (NULL: none). */
sr_err_t sr_kafka_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          rd_kafka_headers_t *hdrs, int64_t timestamp_ms, void *opaque,
                          bool serve_when_full, struct sr_error *err);

/* Adds the provenance headers streamrec.source.topic / .partition / .offset (DESIGN §4.4). */
void sr_kafka_headers_add_source(rd_kafka_headers_t *h, const char *topic, size_t topic_len,
                                 int32_t partition, int64_t offset);

/* ---- topic source: replay --input topic:NAME[@start[..end]] (topic_io.c) --------------- */

/* A half-open range start <= x < end of offsets or times (epoch ms); -1 = open. */
struct sr_topic_range {
    int64_t start, end;
    bool start_is_time, end_is_time;
};
/* Parses "NAME[@start[..end]]" (the part after "topic:"): bounds are offsets, epoch ms (>= 1e11)
 * or ISO-8601 times. */
sr_err_t sr_topic_spec_parse(const char *spec, char *topic, size_t topic_cap,
                             struct sr_topic_range *r, struct sr_error *err);
typedef struct sr_topic_source sr_topic_source_t;
/* Assigns every partition of topic at the range start (no group; nothing committed); the end
 * is the range end or the high watermark now. Needs kafka.bootstrap.servers. Caller owns *out. */
sr_err_t sr_topic_source_open(const sr_config_t *cfg, const char *topic,
                              const struct sr_topic_range *r, sr_topic_source_t **out,
                              struct sr_error *err);
/* Fills a fresh batch (raw, src_partition, src_offset) with up to max messages; b->n = 0 once
 * every partition reached its end. */
sr_err_t sr_topic_source_read(sr_topic_source_t *s, int32_t max, sr_arena_t *arena,
                              struct sr_batch *b, struct sr_error *err);
void sr_topic_source_close(sr_topic_source_t *s);

/* ---- the state changelog (changelog.c) --------------------------------------------------- */

typedef struct sr_changelog sr_changelog_t;
typedef struct sr_changelog_restore sr_changelog_restore_t;
struct sr_state;
/* Finds or creates the changelog topic (state.changelog.topic, default <kafka.group.id>-
 * sessions-changelog) with the input topic's partition count and cleanup.policy=compact; a
 * wrong partition count is SR_ECONFIG saying so, a wrong policy is reported by
 * sr_changelog_check. `producer` (borrowed) produces its
 * records. Start-up thread. Caller owns *out. */
sr_err_t sr_changelog_open(const sr_config_t *cfg, rd_kafka_t *producer, const char *input_topic,
                           sr_changelog_t **out, struct sr_error *err);
void sr_changelog_destroy(sr_changelog_t *cl);
/* @thread loop. The answer to open's cleanup.policy question, when it came: SR_ECONFIG when
 * the topic is not compacted; SR_OK otherwise, also while no answer is there yet. */
sr_err_t sr_changelog_check(sr_changelog_t *cl, struct sr_error *err);
const char *sr_changelog_topic(const sr_changelog_t *cl);
int32_t sr_changelog_partitions(const sr_changelog_t *cl);
/* Restore totals so far (any thread). */
void sr_changelog_totals(const sr_changelog_t *cl, uint64_t *records, uint64_t *bytes,
                         double *seconds);
/* @thread worker. Produces the changes of the pending state batch `state_id` (sessions, then
 * applied offsets) with `opaque` on each message for its delivery report; *produced gets the
 * count handed to the producer (also on error). */
sr_err_t sr_changelog_log(sr_changelog_t *cl, struct sr_state *st, uint64_t state_id, void *opaque,
                          uint64_t *produced, struct sr_error *err);
/* @thread worker. Starts restoring `partition` into st: from its checkpoint (or the start of
 * the changelog) to the high watermark now, read_committed; transient broker errors are
 * retried for up to 60 s. `mu` (may be NULL) is held only while st is read or written, not
 * while the broker is asked. Caller owns *out (restore_end). */
sr_err_t sr_changelog_restore_begin(sr_changelog_t *cl, struct sr_state *st, int32_t partition,
                                    pthread_mutex_t *mu, sr_changelog_restore_t **out,
                                    struct sr_error *err);
/* @thread worker. Applies records for up to budget_ns, committing them in WriteBatches of up
 * to 4096 records with the checkpoint; *done once the end is reached. */
sr_err_t sr_changelog_restore_step(sr_changelog_restore_t *r, struct sr_state *st,
                                   uint64_t budget_ns, bool *done, struct sr_error *err);
/* Records left to read (the restore's remaining lag). */
int64_t sr_changelog_restore_remaining(const sr_changelog_restore_t *r);
void sr_changelog_restore_end(sr_changelog_restore_t *r);

/* ---- the online runtime (runtime.c) ----------------------------------------------------- */

typedef struct sr_runtime sr_runtime_t;

/* Builds the graph, the consumer (group, cooperative-sticky), the producer (idempotent), the
 * worker thread and the metrics listener from cfg (borrowed for the runtime's lifetime).
 * Caller owns *out. */
sr_err_t sr_runtime_new(const sr_config_t *cfg, sr_runtime_t **out, struct sr_error *err);
/* Runs the libuv loop until a drain completes (SIGTERM/SIGINT or sr_runtime_stop) or a fatal
 * error; SR_OK after a clean drain. Installs the signal handlers when handle_signals. */
sr_err_t sr_runtime_run(sr_runtime_t *rt, bool handle_signals, struct sr_error *err);
/* Asks the runtime to drain and stop; any thread, async-signal-unsafe. */
void sr_runtime_stop(sr_runtime_t *rt);
void sr_runtime_destroy(sr_runtime_t *rt);
/* A consistent copy of the counters (messages consumed; messages whose batch is committed;
 * recommendations acknowledged) and, in seconds over the acknowledged recommendations, the
 * consumed→delivered latency histogram and the consumed→produced one (the runtime's own part;
 * the rest is the producer and the broker), for tools embedding the runtime (bench e2e). Any
 * thread; NULL out-params are skipped. */
struct sr_hist;
void sr_runtime_counters(sr_runtime_t *rt, uint64_t *consumed, uint64_t *committed,
                         uint64_t *published, struct sr_hist *latency, struct sr_hist *processing);
/* Input partitions assigned to the runtime now (0 until its group join completes). Any thread. */
int sr_runtime_assigned(sr_runtime_t *rt);

/* ---- metrics (metrics.c) ---------------------------------------------------------------- */

/* Fixed-bucket histogram (Prometheus cumulative buckets on output). Loop thread only. */
#define SR_HIST_MAX_BUCKETS 24
struct sr_hist {
    int n;
    double le[SR_HIST_MAX_BUCKETS];     /* upper bounds, ascending */
    uint64_t count[SR_HIST_MAX_BUCKETS + 1]; /* last: +Inf */
    uint64_t total;
    double sum;
};
void sr_hist_init(struct sr_hist *h, const double *le, int n);
void sr_hist_add(struct sr_hist *h, double v);
/* Value at quantile q (0..1) by linear interpolation inside the bucket. */
double sr_hist_quantile(const struct sr_hist *h, double q);
void sr_hist_write(const struct sr_hist *h, struct sr_buf *out, const char *name, const char *help);

/* A tiny HTTP/1.0 server on a libuv loop (the metrics listener): GET and POST (a request
 * body is not read), one response per connection, requests capped at 8 KiB. Loop thread only. */
#include <uv.h>
typedef struct sr_http sr_http_t;
struct sr_http_req {
    const char *method;  /* "GET" | "POST" */
    const char *path;    /* without the query */
    bool loopback;       /* the peer is 127.0.0.0/8 or ::1 (admin endpoints answer only these) */
};
/* Fills status (default 200), content type (default text/plain) and body for a request. */
typedef void (*sr_http_handler_fn)(void *ctx, const struct sr_http_req *req, int *status,
                                   const char **content_type, struct sr_buf *body);
/* Listens on "host:port" (IPv4 or [IPv6]:port). Caller owns *out (sr_http_close). */
sr_err_t sr_http_start(uv_loop_t *loop, const char *listen, sr_http_handler_fn fn, void *ctx,
                       sr_http_t **out, struct sr_error *err);
/* Stops listening and closes open connections; memory goes when the handles are closed
 * (run the loop once more). NULL is a no-op. */
void sr_http_close(sr_http_t *h);

#endif /* SR_STREAM_H */
