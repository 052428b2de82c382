/* runtime_int.h — private to stream/runtime/: the online runtime's structures (sr_runtime,
 * batches, jobs, restores) and the functions its files share. Which thread may touch a field is
 * written beside it; every function says its thread (@thread loop | worker | any). See runtime.c
 * for the overview and docs/LIFE-OF-AN-EVENT.md for one event's path. */
#ifndef SR_RUNTIME_INT_H
#define SR_RUNTIME_INT_H

#include "sr_kernels.h"
#include "sr_state.h"
#include "sr_stream.h"
#include "sd_notify.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
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
    uint64_t t_out;          /* ns: handed to the producer (written before the produce call, read
                              * in its delivery report) */
};

enum job_type { JOB_RUN = 1, JOB_LOG, JOB_COMMIT, JOB_EVICT, JOB_DISCARD, JOB_RESTORE, JOB_SWAP,
                JOB_QUIT, JOB_PROBE /* completion only: a stall probe ended (stall.c) */ };

struct restore;
struct reload;
struct probe;
#define SR_WATCH_MAX (1 + SR_GRAPH_MAX_VARIANTS)

struct job {
    struct job *next;
    enum job_type type;
    struct rt_batch *b;
    int32_t partition;
    uint64_t state_id;       /* JOB_DISCARD: drop staged state from this id on */
    struct restore *rs;      /* JOB_RESTORE */
    struct reload *rl;       /* JOB_SWAP: the new graph (reload.c) */
    struct probe *pr;        /* JOB_PROBE */
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

/* stall.c: an input partition's position (loop thread), indexed by partition. */
#define POS_BEGINNING (-2)   /* next: from the log start (no committed or applied offset) */
struct part_pos {
    bool assigned;
    int64_t next;            /* offset after the last message taken, POS_BEGINNING, -1 unknown */
    int64_t floor;           /* messages below it are dropped: the probe took or skipped them */
    int64_t store_at;        /* at_least_once: offset to store once nothing of it is in flight */
    uint64_t since_ns;       /* last progress, or last moment no progress was expected */
    uint64_t stalls, skipped, lost; /* metrics */
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
    struct sr_sink outputs;  /* the graph's outputs: sink to output.topic, dead letters */
    const char *input_topic, *dlq_topic;
    /* graph + worker */
    sr_graph_t *g;           /* the worker's; replaced (JOB_SWAP) under mmu, read on the loop
                              * under mmu only (A/B variant metrics) */
    sr_state_t *state;       /* the session store (the runtime owns it; the graph borrows it) */
    struct sr_stats stats;
    pthread_mutex_t g_mu;    /* sr_graph_commit (worker) vs applied-offset reads (loop) */
    pthread_t worker;
    bool worker_started;
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
    bool adaptive;             /* batch.adaptive: dispatch when the worker idles (batcher.c) */
    struct rt_batch *gather, *free_list, *ihead, *itail;
    int computing;           /* batches handed to the worker and not computed yet */
    bool due;                /* the gathering batch passed its deadline while the worker ran */
    uv_timer_t batch_timer, house_timer;
    int64_t inflight_events;
    int64_t max_inflight, max_outq;
    bool held;               /* backpressure: messages are left in mq */
    /* lifecycle */
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t watchdog_timer;   /* systemd WatchdogSec keep-alives (sd_notify.c), when asked */
    bool notified_ready;         /* READY=1 sent: the group was joined once */
    bool signals;
    bool draining, finishing, fatal;
    sr_err_t fatal_rc;
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
    uint64_t txn_abort_since_ns; /* an abort resumed after a retriable timeout (delivery.c) */
    bool txn_abort_waiting;
    /* metrics (loop thread) */
    sr_http_t *http;
    pthread_mutex_t mmu;     /* guards the fields below for sr_runtime_* readers off the loop */
    uint64_t dlq_dropped;    /* dead letters the producer or broker refused (atomic) */
    int64_t dlq_max_bytes;   /* dlq.max.bytes */
    uint64_t consumed, committed_events, published, dlq_published, delivery_failures, rebalances,
        recovered_batches;
    struct sr_hist batch_hist, lat_hist, proc_hist; /* proc: consumed → produced */
    struct part_lag *lags;
    int n_lags;
    uint64_t sessions;       /* written by the worker (atomic) */
    /* model lifecycle (reload.c; loop thread): what is live, updated when a swap completes */
    char model_version[256], model_dir[PATH_MAX];
    struct reload *reload;   /* the reload in flight (threadpool, then the job queue), or NULL */
    bool reload_again;       /* a trigger arrived meanwhile: one more reload after it */
    char reload_again_why[32];
    uint64_t reloads_ok, reloads_refused;
    uv_timer_t watch_timer;  /* model.watch.interval.ms */
    uv_fs_t watch_req;
    bool watch_busy, watch_changed;
    /* the watched paths: [0] model.bundle, then each A/B variant's own model.variant.*.bundle;
     * their targets when last resolved; the one a tick is resolving */
    int watch_n, watch_i;
    const char *watch_path[SR_WATCH_MAX];
    char watch_seen[SR_WATCH_MAX][PATH_MAX];
    /* stall detection (stall.c, loop thread): runtime.stall.timeout.ms, 0 = off */
    int64_t stall_timeout_ms;
    uint64_t stall_checked_ns;
    struct part_pos *pos;
    int32_t n_pos, probe_turn;
    struct probe *probe;     /* the probe running (one at a time), NULL */
    rd_kafka_t *probe_rk;
    bool probe_failed;       /* the probe consumer could not be made (logged once) */
};

/* runtime.c — @thread loop */
/* Stops the runtime for good (the first cause wins): code is the cause's own error code
 * (SR_EKAFKA for a broker's refusal, the worker's code for a failed batch, ...), which
 * sr_runtime_new/run return with the message. */
void sr__rt_fail(sr_runtime_t *rt, sr_err_t code, const char *fmt, ...);
void sr__rt_begin_drain(sr_runtime_t *rt);
void sr__rt_drain_blocking(sr_runtime_t *rt, int timeout_ms);

/* batcher.c — @thread loop (sr__rt_set_nonblock_pipe, sr__rt_batch_free: any, before
 * the loop runs or after it ends) */
int sr__rt_set_nonblock_pipe(int fds[2]);
void sr__rt_batch_put(sr_runtime_t *rt, struct rt_batch *b);
void sr__rt_batch_free(struct rt_batch *b);
void sr__rt_pause_resume_all(sr_runtime_t *rt, bool pause);
void sr__rt_check_backpressure(sr_runtime_t *rt);
void sr__rt_dispatch(sr_runtime_t *rt);
/* batch.adaptive: the gathering batch goes now when the worker is idle and input is drained. */
void sr__rt_dispatch_if_idle(sr_runtime_t *rt);
void sr__rt_serve_consumer(sr_runtime_t *rt);
void sr__rt_serve_messages(sr_runtime_t *rt);
void sr__rt_serve_producer(sr_runtime_t *rt);
/* A record the stall probe read (stall.c): into the gathering batch like a consumed one. */
void sr__rt_take_probed(sr_runtime_t *rt, rd_kafka_message_t *m);
void sr__rt_on_cpoll(uv_poll_t *h, int status, int events);
void sr__rt_on_mpoll(uv_poll_t *h, int status, int events);
void sr__rt_on_ppoll(uv_poll_t *h, int status, int events);

/* worker.c — @thread worker, except sr__rt_job_push (@thread loop) and
 * sr__rt_outputs_init (@thread loop, before the worker starts) */
void sr__rt_job_push(sr_runtime_t *rt, struct job *j);
void *sr__rt_rec_opaque(void *ctx, const struct sr_batch *batch, int32_t row);
/* Fills rt->outputs, the graph's sink (recommendations, dead letters), once dlq_rkt is set. */
void sr__rt_outputs_init(sr_runtime_t *rt);
void *sr__rt_worker_main(void *arg);

/* delivery.c — @thread loop (sr__rt_dr_cb runs inside rd_kafka_poll on the loop) */
void sr__rt_batch_job(sr_runtime_t *rt, struct rt_batch *b, enum job_type type);
void sr__rt_rewind_note(sr_runtime_t *rt, const rd_kafka_message_t *m);
void sr__rt_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
void sr__rt_txn_maybe_commit(sr_runtime_t *rt);
void sr__rt_advance(sr_runtime_t *rt);
void sr__rt_handle_completions(sr_runtime_t *rt);
void sr__rt_on_async(uv_async_t *a);

/* rebalance.c — @thread loop (librdkafka calls sr__rt_rebalance_cb from the consumer
 * queue the loop polls) */
struct restore *sr__rt_restoring(sr_runtime_t *rt, int32_t partition);
void sr__rt_restore_finished(sr_runtime_t *rt, struct restore *rs);
void sr__rt_log_parts(const char *what, const rd_kafka_topic_partition_list_t *l);
void sr__rt_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);

/* reload.c — @thread loop, except sr__rt_reload_swap (@thread worker) and sr__rt_reload_free
 * (any, once the loop and the worker ended). sr__rt_reload: SIGHUP, POST /admin/reload and the
 * watch ask for a reload with the name of what asked. */
void sr__rt_reload(sr_runtime_t *rt, const char *trigger);
sr_err_t sr__rt_watch_start(sr_runtime_t *rt, struct sr_error *err);
void sr__rt_reload_swap(sr_runtime_t *rt, struct reload *r);
void sr__rt_reload_swapped(sr_runtime_t *rt, struct reload *r);
void sr__rt_reload_free(struct reload *r);
/* stall.c — @thread loop (sr__rt_stall_destroy: after the loop ended) */
void sr__rt_pos_start(sr_runtime_t *rt, int32_t partition, int64_t offset);
void sr__rt_pos_stop(sr_runtime_t *rt, int32_t partition);
void sr__rt_pos_rewind(sr_runtime_t *rt, int32_t partition, int64_t offset);
/* false: a message the probe already delivered or skipped (dropped by the caller) */
bool sr__rt_pos_taken(sr_runtime_t *rt, const rd_kafka_message_t *m, uint64_t now);
void sr__rt_stall_check(sr_runtime_t *rt);
void sr__rt_probe_done(sr_runtime_t *rt, struct probe *pr);
void sr__rt_stall_destroy(sr_runtime_t *rt);

/* observe.c — @thread loop (statistics and errors arrive on the queues the loop polls) */
int sr__rt_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque);
void sr__rt_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);
void sr__rt_http_handler(void *ctx, const struct sr_http_req *req, int *status,
                         const char **ctype, struct sr_buf *body);

#endif /* SR_RUNTIME_INT_H */
