/* ops_int.h — private to ops/: op descriptors (name, init, run, fini: Redis's command-table
 * habit), the environment ops share, and the column names of the built-in graph. An op never
 * reaches into another op's context: it reads and writes batch columns and reads the env. */
#ifndef SR_OPS_INT_H
#define SR_OPS_INT_H

#include "sr_ops.h"

#define SR_OP_MAX_PORTS 8

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
    int32_t k;                 /* recs.k */
    struct sr_eval_report *eval; /* owned by the eval op; NULL without it */
    const char *source_topic;
    const char *input_format;  /* overrides input.format when non-NULL */
    const char *input_writer_schema_json;
    /* A/B (DESIGN §4.5): the graph's variants, or NULL/0; rows carry SR_C_VARIANT then, and the
     * sink names each row's variant and bundle from here. */
    struct sr_variant *variants;
    int n_variants;
};

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
