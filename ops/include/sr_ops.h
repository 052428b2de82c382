/* sr_ops.h — the operator graph: a columnar micro-batch, op descriptors and instances, a graph
 * built from configuration and validated at load, and its executor. The same graph runs
 * online (stream/ feeds it from Kafka) and offline (replay feeds it from a file or a topic
 * range); per-runtime variants (state backend, sink) are chosen by configuration.
 * Threads: a graph runs on one thread at a time (the compute worker); building it is done
 * before the first batch. */
#ifndef SR_OPS_H
#define SR_OPS_H

#include "sr_core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- columnar batch ------------------------------------------------------------------- */

typedef enum sr_col_type {
    SR_COL_I32 = 0,
    SR_COL_I64,
    SR_COL_U64,
    SR_COL_F32,
    SR_COL_STR,      /* const char *[n] + uint32_t lens[n]; NULL = null */
    SR_COL_LIST_I32, /* ragged: offsets[n+1] into int32 values */
    SR_COL_LIST_U64,
    SR_COL_LIST_F32,
    SR_COL_LIST_STR, /* ragged strings: offsets[n+1] into const char *values + uint32_t lens */
    SR_COL__COUNT
} sr_col_type_t;

const char *sr_col_type_name(sr_col_type_t t);

/* A named column. Fixed types hold n values in `data`; STR holds pointers in `data` and
 * lengths in `lens`; lists hold offsets[n+1] and the flattened values in `data` (LIST_STR:
 * pointers in `data`, one length per value in `lens`). Memory is
 * owned by the batch's arena (or, for constant columns, by the op that published them). */
struct sr_col {
    const char *name;
    sr_col_type_t type;
    void *data;
    uint32_t *lens;
    int32_t *offsets;
};

#define SR_BATCH_MAX_COLS 48

/* One micro-batch: rows are records in arrival order (source order is preserved end to end).
 * `sel` lists the live rows in order; ops that drop rows (decode failures, filters) shrink it,
 * never reorder it. Everything is arena memory, reset after the batch. */
struct sr_batch {
    sr_arena_t *arena;
    int32_t n;          /* rows */
    int32_t *sel;       /* live rows, ascending */
    int32_t n_sel;
    int n_cols;
    struct sr_col cols[SR_BATCH_MAX_COLS];
    bool has_state;     /* set by sr_graph_run: the batch staged state updates ... */
    uint64_t state_id;  /* ... under this id, to commit once its outputs are delivered */
    void *owner;        /* the runtime's record of this batch, handed back to its sink */
};

/* Prepares an empty batch of n rows with all rows selected, in arena memory. */
sr_err_t sr_batch_init(struct sr_batch *b, sr_arena_t *arena, int32_t n, struct sr_error *err);
/* The source columns every runtime fills before sr_graph_run: raw record bytes (with lengths),
 * input partition and offset. Arena memory of the batch. */
struct sr_source_cols {
    const char **raw;
    uint32_t *raw_len;
    int32_t *partition;
    int64_t *offset;
    int64_t *timestamp;  /* the record's timestamp (ms; Kafka's), -1 when the source has none */
};
/* sr_batch_init plus the three source columns, zeroed. */
sr_err_t sr_batch_init_source(struct sr_batch *b, sr_arena_t *arena, int32_t n,
                              struct sr_source_cols *out, struct sr_error *err);
/* The column of that name, or NULL. */
struct sr_col *sr_batch_col(struct sr_batch *b, const char *name);
/* Adds (or replaces) a column; fixed and STR columns get n zeroed slots, lists get n+1 zeroed
 * offsets and `list_cap` value slots (values may be NULL when list_cap is 0). */
sr_err_t sr_batch_add(struct sr_batch *b, const char *name, sr_col_type_t type, int64_t list_cap,
                      struct sr_col **out, struct sr_error *err);
/* Drops row r from the selection (no-op when not selected). O(n_sel). Prefer sr_batch_filter. */
void sr_batch_filter(struct sr_batch *b, const uint8_t *keep); /* keep[n]: keep row when non-zero */

/* ---- statistics ----------------------------------------------------------------------- */

/* Invalid-input reasons are strings owned by whoever produced them (codecs define theirs);
 * counters are keyed by reason. Updated by the compute thread, read by the metrics thread. */
#define SR_STATS_MAX_REASONS 32
#define SR_STATS_MAX_STAGES 16
struct sr_stats {
    uint64_t events;          /* records offered to the graph */
    uint64_t invalid;         /* records dropped as invalid (sum over reasons) */
    uint64_t filtered;        /* valid records of types neither stored nor triggering */
    uint64_t unknown_items;   /* valid records whose item is not in the bundle's vocabulary */
    uint64_t recommendations; /* recommendations emitted */
    uint64_t batches;
    uint64_t sessions_seen;   /* distinct sessions touched (approximate for large streams) */
    uint64_t timestamp_from_record; /* events without timestamp_ms given the record's */
    int n_reasons;
    const char *reason[SR_STATS_MAX_REASONS];
    uint64_t reason_count[SR_STATS_MAX_REASONS];
    int n_stages;
    const char *stage[SR_STATS_MAX_STAGES];
    uint64_t stage_ns[SR_STATS_MAX_STAGES];
};
void sr_stats_invalid(struct sr_stats *s, const char *reason);
void sr_stats_stage(struct sr_stats *s, const char *stage, uint64_t ns);

/* ---- ops and the graph ---------------------------------------------------------------- */

typedef struct sr_graph sr_graph_t;
struct sr_state;
struct sr_op_env;   /* shared, long-lived things ops may use: see ops_int.h */

/* The runtime supplies what varies between online and offline (the variants of DESIGN §1). */
struct sr_graph_params {
    const sr_config_t *cfg;       /* borrowed for the graph's lifetime */
    const char *runtime;          /* "online" | "offline" (log and metrics label) */
    struct sr_stats *stats;       /* borrowed; counters are added here */
    struct sr_sink *sink;         /* borrowed: where recommendations go (see below) */
    const char *source_topic;     /* source.topic of every recommendation (file base name
                                   * offline, input.topic online) */
    bool eval;                    /* add the next-item evaluator (replay --eval) */
    /* Input decoding: NULL fields take input.format / input.avro.writer_schema from cfg.
     * Replay of an Avro container file passes "avro" and the file's writer schema. */
    const char *input_format;
    const char *input_writer_schema_json;
    /* The session store, borrowed: its owner is the runtime (it outlives a graph, e.g. across a
     * bundle reload), opened with sr_session_store_open. Required. */
    struct sr_state *state;
    /* The bundle, borrowed (the graph takes its own reference); NULL loads model.bundle. */
    struct sr_bundle *bundle;
};

/* Opens the session store a graph runs on (state.* keys; session.max_len defaults to the
 * bundle's max_len; with no bundle, the store's default). `identity` is what its state belongs to and `must_be_new` refuses a store
 * that already holds applied offsets (a replay that does not resume): see sr_state_params. The
 * caller owns *out (sr_state_close). */
sr_err_t sr_session_store_open(const sr_config_t *cfg, const struct sr_bundle *bundle,
                               const char *identity, bool must_be_new, struct sr_state **out,
                               struct sr_error *err);

/* A/B variants (model.variants, DESIGN §4.5): each session is answered by one variant's bundle,
 * chosen by a stable hash of its id against the shares. Owned by the graph; `recommendations`
 * is updated by the graph's thread and may be read by another (atomic loads). */
#define SR_GRAPH_MAX_VARIANTS 8
struct sr_variant {
    char name[33];
    uint32_t share;            /* percent of sessions */
    struct sr_bundle *bundle;  /* the graph's reference */
    const char *version;       /* the bundle's version */
    uint64_t recommendations;  /* emitted by this variant */
};
/* The variant (0..n-1) of a session id for cumulative shares cum[0..n-1] (cum[n-1] = 100):
 * the same id always gets the same variant, whatever the instance, restart or batch. */
int sr_variant_of(const char *session_id, size_t len, const uint32_t *cum, int n);
/* The graph's variants (NULL and 0 without model.variants). */
const struct sr_variant *sr_graph_variants(const sr_graph_t *g, int *n);

/* Next-item evaluation (replay --eval): a recommendation's target is the item of the same
 * session's next event whose type is in session.event_types. */
struct sr_eval_report {
    int k;
    uint64_t evaluated;       /* recommendations whose target arrived */
    uint64_t unknown_targets; /* of those, targets not in the bundle's vocabulary (never a hit) */
    uint64_t unresolved;      /* replaced by a later recommendation before any stored event */
    uint64_t pending;         /* still waiting for a target (end of the input) */
    uint64_t hits;            /* target within the top-k (HitRate@K = Recall@K) */
    double mrr_sum;           /* sum of 1/rank over hits */
    double ndcg_sum;          /* sum of 1/log2(rank+1) over hits */
    uint64_t distinct_items;  /* distinct items ever recommended */
    uint64_t catalogue;       /* recommendable items (V - first_index) */
    /* With item sources (recs.trending, recs.sampling=epsilon; DESIGN §4.9): hits are matched
     * by item key, so a trending item outside the bundle can hit an unknown target; per source
     * (0 model, 1 trending, 2 random) the items recommended and the hits, MRR and NDCG sums
     * whose item came from it. */
    bool by_source;
    uint64_t items_by_source[3];
    uint64_t hits_by_source[3];
    double mrr_by_source[3], ndcg_by_source[3];
    /* recs.trending: a trending-only baseline, the top-k trending items (same exclusions) of
     * each evaluated recommendation, scored against the same targets. */
    bool has_baseline;
    uint64_t baseline_hits;
    double baseline_mrr_sum, baseline_ndcg_sum;
};

/* Scores one recommendation rec[0..n) (best first) against its target into r: evaluated + 1,
 * and at the target's rank j (1-based) hits + 1, mrr_sum + sr_eval_rr(j), ndcg_sum +
 * sr_eval_dcg(j). Returns j, 0 for a miss. The one definition of HitRate/MRR/NDCG@K (one
 * relevant item), used by the eval op (per bundle and per session) and by `streamrec demo`. */
int32_t sr_eval_score(struct sr_eval_report *r, const int32_t *rec, int32_t n, int32_t target);
double sr_eval_rr(int32_t rank);  /* reciprocal rank 1/j; 0 for a miss (rank 0) */
double sr_eval_dcg(int32_t rank); /* 1/log2(j+1); 0 for a miss */
/* HitRate@K (= Recall@K), MRR@K and NDCG@K of r: the sums over r->evaluated (0 when none). */
void sr_eval_rates(const struct sr_eval_report *r, double *hit_rate, double *mrr, double *ndcg);

/* One session's share of the evaluation (only sessions with an evaluated recommendation):
 * what a paired comparison of two bundles over the same events resamples (bootstrap over
 * sessions, DESIGN §6). `id` is valid during the callback only. */
struct sr_eval_session {
    const char *id;
    uint32_t id_len;
    uint64_t evaluated, hits;
    double mrr, ndcg;
};
typedef void (*sr_eval_session_fn)(void *opaque, const struct sr_eval_session *s);

/* The graph's outputs, implemented by each runtime (stream/: file, topic): recommendations and
 * dead letters. `emit` is called once per recommendation in source order with the batch and the
 * row it answers (the rec and its strings are valid during the call only); `flush` (optional)
 * once per batch after the last emit; `dead_letter` (optional: NULL drops them, counted as
 * invalid either way) once per record the graph could not decode, after the batch's
 * recommendations, in row order, except records a previous run already applied (DESIGN §4). */
struct sr_rec;
struct sr_sink {
    sr_err_t (*emit)(void *opaque, const struct sr_batch *b, int32_t row, const struct sr_rec *rec,
                     struct sr_error *err);
    sr_err_t (*flush)(void *opaque, struct sr_error *err);
    sr_err_t (*dead_letter)(void *opaque, const struct sr_batch *b, int32_t row, const char *reason,
                            struct sr_error *err);
    void *opaque;
};

/* Builds the graph of DESIGN §1 from configuration (decode → filter → session_update →
 * categorify → exclude_seen → require_available → user ops (graph.ops) → encode → retrieve →
 * eval (when enabled) → sink), instantiates each op and validates the column flow: a missing
 * input column or a type mismatch is SR_ECONFIG naming the op and the column. */
sr_err_t sr_graph_new(const struct sr_graph_params *p, sr_graph_t **out, struct sr_error *err);
/* The start-up check of the graph's keys (core cannot know the ops, DESIGN §5): every name in
 * graph.ops has a graph.op.<name>.type naming a known op type, and every graph.op.<name>.<option>
 * key is an option that type reads. Each problem goes to each (may be NULL) as one line naming
 * key, value and the allowed ones; returns SR_ECONFIG with the first in err, else SR_OK. */
sr_err_t sr_graph_config_check(const sr_config_t *cfg, sr_config_problem_fn each, void *opaque,
                               struct sr_error *err);
void sr_graph_destroy(sr_graph_t *g);
/* Runs every op over the batch (source columns filled by sr_batch_init_source: "raw",
 * "src_partition", "src_offset"). Per-stage time goes to stats. Errors are fatal to the batch
 * (bad records are not errors: they are counted and dropped). The session changes the batch
 * made are staged in the store (b->has_state, b->state_id): the runtime commits them with
 * sr_state_commit once the batch's outputs are delivered, or drops them (DESIGN §8). */
sr_err_t sr_graph_run(sr_graph_t *g, struct sr_batch *b, struct sr_error *err);
/* Fills the evaluation report (zeros when the graph has no evaluator). */
void sr_graph_eval_report(const sr_graph_t *g, struct sr_eval_report *r);
/* Calls fn once per evaluated session, in no particular order (none without an evaluator). */
void sr_graph_eval_sessions(const sr_graph_t *g, sr_eval_session_fn fn, void *opaque);
/* The model version of the loaded bundle (copied into every recommendation). */
const char *sr_graph_model_version(const sr_graph_t *g);
/* The bundle directory the graph runs (resolved: a symlink's target), owned by the graph. */
const char *sr_graph_model_dir(const sr_graph_t *g);
/* The last start-up check of a built graph: a test encode of a one-item session and its
 * top-k through the graph's model (DESIGN §3.3: what a reload checks before a swap). Vectors
 * and scores must be finite and indices in the catalogue; SR_EINTERNAL names the first that is
 * not. Call before the graph's first batch, on the thread that builds it. */
sr_err_t sr_graph_check(sr_graph_t *g, struct sr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SR_OPS_H */
