/* ops_int.h — private to ops/: op descriptors (name, init, run, fini: Redis's command-table
 * habit), the environment ops share, and the column names of the built-in graph. An op never
 * reaches into another op's context: it reads and writes batch columns and reads the env. */
#ifndef SR_OPS_INT_H
#define SR_OPS_INT_H

#include "sr_ops.h"

#define SR_OP_MAX_PORTS 16

/* Column names of the built-in graph (the contract between built-in ops). */
#define SR_C_RAW "raw"                 /* STR: undecoded record bytes (source) */
#define SR_C_SRC_PARTITION "src_partition" /* I32 (source) */
#define SR_C_SRC_OFFSET "src_offset"   /* I64 (source) */
#define SR_C_SRC_TIMESTAMP "src_timestamp" /* I64 (source): the record's timestamp (ms), -1 unknown */
#define SR_C_DECODE_ERROR "decode_error" /* STR: reason a record was dropped, NULL if decoded */
#define SR_C_SESSION "session_id"      /* STR */
#define SR_C_USER "user_id"            /* STR, NULL when absent */
#define SR_C_ITEM "item_id"            /* STR */
#define SR_C_TYPE "event_type"         /* STR */
#define SR_C_TS "timestamp_ms"         /* I64 */
#define SR_C_ITEM_KEY "item_key"       /* U64: sr_hash64(item_id) */
#define SR_C_APPEND "append"           /* I32: event type is stored in the session */
#define SR_C_TRIGGER "trigger"         /* I32: event type asks for a recommendation */
#define SR_C_SESSION_KEYS "session_keys"   /* LIST_U64: session items (keys) at a trigger */
#define SR_C_SESSION_ITEMS "session_items" /* LIST_I32: the same as bundle indices */
#define SR_C_SESSION_TYPES "session_types" /* LIST_I32: their event type codes (sr_session_type_code
                                            * bits; 0 = not recorded), same offsets */
#define SR_C_EXCLUDE "exclude"         /* LIST_I32: indices never to return for that row */
#define SR_C_VEC "session_vec"         /* LIST_F32: d floats per trigger row */
#define SR_C_REC_ITEMS "rec_items"     /* LIST_I32: top-k indices per trigger row */
#define SR_C_REC_SCORES "rec_scores"   /* LIST_F32: their scores */
#define SR_C_VARIANT "variant"         /* I32: the A/B variant of the row's session, -1 for rows
                                        * not selected (graphs with model.variants only) */
#define SR_C_REC_IDS "rec_item_ids"    /* LIST_STR: raw item ids of rec_items (trending: also
                                        * items outside the bundle, whose rec_items is -1) */
#define SR_C_REC_SOURCES "rec_sources" /* LIST_I32: each item's source (enum sr__rec_source) */
#define SR_C_TREND_BASELINE "trending_baseline" /* LIST_U64: replay --eval with recs.trending:
                                        * the trending-only top-k item keys of each rec row */

/* Where a recommended item came from (the output's per-item "source", DESIGN §4.3). */
enum sr__rec_source { SR__REC_MODEL = 0, SR__REC_TRENDING = 1, SR__REC_RANDOM = 2 };

struct sr_op_port {
    const char *name;
    sr_col_type_t type;
    bool optional; /* inputs only */
};

/* What init declares: the columns an instance reads and writes (validated by the graph). */
struct sr_op_ports {
    int n_in, n_out;
    struct sr_op_port in[SR_OP_MAX_PORTS];
    struct sr_op_port out[SR_OP_MAX_PORTS];
};

/* Long-lived things ops share, owned by the graph. */
struct sr_op_env {
    const sr_config_t *cfg;
    const char *runtime;
    struct sr_stats *stats;
    struct sr_sink *sink;
    struct sr_bundle *bundle;  /* loaded once per graph; NULL until the graph loads it */
    struct sr_model *model;
    struct sr_state *state;    /* session store, borrowed from the runtime (sr_graph_params) */
    uint64_t staged_id;        /* the state batch session_update staged for the current batch */
    bool has_staged;
    uint8_t *item_allowed;     /* [V]: static item rules (require_available, drop_items);
                                * NULL = every item allowed */
    float *item_boost;         /* [V]: score added by declared `boost` ops (negative buries);
                                * NULL = none (DESIGN §4.7) */
    int32_t k;                 /* recs.k */
    int32_t k_retrieve;        /* items per row retrieve returns: k, or the sampling pool
                                * (recs.sampling.candidates) that `sample` draws k from */
    struct sr_eval_report *eval; /* owned by the eval op; NULL without it */
    bool evaluating;           /* the graph has an eval op (set before any op's init) */
    const char *source_topic;
    const char *input_format;  /* overrides input.format when non-NULL */
    const char *input_writer_schema_json;
    /* A/B (DESIGN §4.5): the graph's variants, or NULL/0; rows carry SR_C_VARIANT then, and the
     * sink names each row's variant and bundle from here. */
    struct sr_variant *variants;
    int n_variants;
};

/* A TEXT key holding a number in [lo, hi] ((lo, hi] when lo_open), else SR_ECONFIG naming the
 * key and the range (op_sample.c; the ops and sr_graph_config_check read numbers with it). */
sr_err_t sr__cfg_number(const sr_config_t *cfg, const char *key, double lo, double hi,
                        bool lo_open, double *out, struct sr_error *err);
/* trending.event_weights as the trending op reads it (op_trending.c). */
sr_err_t sr__trending_check_weights(const sr_config_t *cfg, struct sr_error *err);

/* The per-session sums behind an eval op's report (op_eval.c). */
void sr__eval_sessions(const struct sr_eval_report *r, sr_eval_session_fn fn, void *opaque);

struct sr_op_desc {
    const char *name;
    const char *help;
    /* Reads its keys (`prefix` is "graph.op.<instance>." for user-declared ops, NULL for
     * built-ins), declares its ports and creates its context. */
    sr_err_t (*init)(struct sr_op_env *env, const char *prefix, void **ctx,
                     struct sr_op_ports *ports, struct sr_error *err);
    sr_err_t (*run)(void *ctx, struct sr_op_env *env, struct sr_batch *b, struct sr_error *err);
    void (*fini)(void *ctx);
    /* The option names init reads under graph.op.<instance>. ("type" aside), NULL-terminated;
     * NULL: none. sr_graph_config_check refuses any other graph.op.<instance>.* key. */
    const char *const *options;
};

/* The column-flow check of graph load, exposed for tests and for a future graph built from a
 * description rather than the built-in chain: nodes in execution order, each with its instance
 * name, op type and declared ports. The source columns (raw, src_partition, src_offset) are
 * available first; every required input must have been produced earlier with the same type.
 * Returns SR_ECONFIG naming the op and the column, else SR_OK. */
struct sr__graph_node_ports {
    const char *name; /* instance name ("decode", or the user's declared name) */
    const char *type; /* op type name */
    const struct sr_op_ports *ports;
};
sr_err_t sr__graph_validate(const struct sr__graph_node_ports *nodes, int n, struct sr_error *err);

/* recs.exclude_seen, parsed once for every op that honours it (op_rules.c): off, every item of
 * the session (on, n == 0), or only items stored from an event of the n listed types (their
 * sr_session_type_code). SR_ECONFIG naming the key for a list it cannot take. */
#define SR__EXCLUDE_MAX_TYPES 32
struct sr__exclude_spec {
    bool on;
    int n;
    uint32_t code[SR__EXCLUDE_MAX_TYPES];
};
sr_err_t sr__exclude_seen_parse(const sr_config_t *cfg, struct sr__exclude_spec *out,
                                struct sr_error *err);

/* ---- the trending sketch (trending.c, DESIGN §4.6) ------------------------------------------
 * Space-Saving (Metwally et al.) over forward-decayed counts: at most `cap` items, each with a
 * count that overestimates its true decayed weight by at most its `err`, itself at most the
 * total weight / cap. Counts are kept relative to a landmark time L (weight w at event time t
 * adds w * 2^((t - L) / half_life)), so an update touches one item; L moves forward (every
 * count rescaled) when counts would outgrow a double's comfortable range. Items are ordered by
 * (count desc, key asc), a total order: which item is evicted and what a top-n query returns
 * depend only on the events applied, never on memory layout, so a sketch decoded from its
 * bytes behaves exactly as the one that wrote them. All memory is one caller-provided arena
 * allocation of sr__trend_bytes(cap). One thread at a time. */
#define SR__TREND_ID_MAX 64        /* longer item ids are not tracked (counted by the op) */
#define SR__TREND_CAP_MIN 16
#define SR__TREND_CAP_MAX 8192
#define SR__TREND_VERSION 1

typedef struct sr__trend sr__trend_t;
/* Bytes one sketch of capacity cap takes (the memory bound of DESIGN §4.6). */
size_t sr__trend_bytes(uint32_t cap);
/* A new empty sketch in arena memory; NULL when the arena is exhausted. */
sr__trend_t *sr__trend_new(sr_arena_t *arena, uint32_t cap, int64_t half_life_ms);
uint32_t sr__trend_count(const sr__trend_t *t);
/* Adds weight w (> 0) to item key (raw id, idlen bytes) at event time ts. False when the id is
 * longer than SR__TREND_ID_MAX (the item is not tracked). */
bool sr__trend_add(sr__trend_t *t, uint64_t key, const char *id, uint32_t idlen, double w,
                   int64_t ts);
/* The accept callback of a top-n query: true when the item may be returned. */
typedef bool (*sr__trend_accept_fn)(void *opaque, uint64_t key);
/* Writes up to n items in (count desc, key asc) order that accept (NULL: all) takes into keys,
 * ids/idlens (pointers into the sketch: valid until its next add) and scores (the decayed
 * count at time ts); returns how many. scratch: sr__trend_count(t) uint32_t slots. */
uint32_t sr__trend_top(const sr__trend_t *t, int64_t ts, uint32_t n, sr__trend_accept_fn accept,
                       void *opaque, uint32_t *scratch, uint64_t *keys, const char **ids,
                       uint32_t *idlens, float *scores);
/* The estimate (decayed to ts) and error bound of an item; false when it is not tracked. */
bool sr__trend_estimate(const sr__trend_t *t, uint64_t key, int64_t ts, double *count,
                        double *err);
/* Encoding (the value stored per partition, DESIGN §4.6): version byte, landmark (8 bytes LE),
 * entry count (4 bytes LE), then per entry key (8), count (8, IEEE bits), err (8), id length
 * (1) and id bytes. sr__trend_encoded_max(cap) bounds it (<= SR_SESSION_AUX_MAX). */
size_t sr__trend_encoded_size(const sr__trend_t *t);
size_t sr__trend_encoded_max(uint32_t cap);
void sr__trend_encode(const sr__trend_t *t, uint8_t *out);
/* Decodes into a new sketch of capacity cap (keeping the cap greatest items when the value
 * holds more, e.g. after trending.capacity was lowered). SR_EFORMAT naming `what` for a value
 * that does not decode; SR_ENOMEM when the arena is exhausted. */
sr_err_t sr__trend_decode(const uint8_t *buf, size_t n, sr_arena_t *arena, uint32_t cap,
                          int64_t half_life_ms, const char *what, sr__trend_t **out,
                          struct sr_error *err);

/* Softmax sampling without replacement (op_sample.c, DESIGN §4.8): orders the n scores by
 * score / temperature + Gumbel noise drawn from a splitmix64 stream seeded by `seed` (the
 * Gumbel-top-k trick: the first m of that order are m draws without replacement from the
 * softmax), writing the first k positions into out. Deterministic in (scores, seed). */
void sr__sample_softmax(const float *scores, int32_t n, int32_t k, double temperature,
                        uint64_t seed, int32_t *out);
/* The seed of one recommendation: session id, event offset and model version. */
uint64_t sr__sample_seed(const char *session, uint32_t len, int64_t offset, const char *version);

/* The registry (ops_builtin.c): every op type, looked up by name. */
const struct sr_op_desc *sr__op_find(const char *name);
/* Writes the op type names, ", "-separated, into out (for messages). */
void sr__op_names(char *out, size_t n);

/* Convenience for ports. */
static inline void sr__port_in(struct sr_op_ports *p, const char *name, sr_col_type_t t, bool opt)
{
    p->in[p->n_in].name = name;
    p->in[p->n_in].type = t;
    p->in[p->n_in].optional = opt;
    p->n_in++;
}
static inline void sr__port_out(struct sr_op_ports *p, const char *name, sr_col_type_t t)
{
    p->out[p->n_out].name = name;
    p->out[p->n_out].type = t;
    p->out[p->n_out].optional = false;
    p->n_out++;
}

#endif /* SR_OPS_INT_H */
