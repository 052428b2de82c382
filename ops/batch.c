/* batch.c — the columnar micro-batch and the statistics counters. All batch memory is arena
 * memory: nothing here frees, the arena reset after the batch does. */
#include "ops_int.h"

#include <string.h>

static const char *const col_type_names[SR_COL__COUNT] = {
    "i32", "i64", "u64", "f32", "str", "list<i32>", "list<u64>", "list<f32>", "list<str>",
};

const char *sr_col_type_name(sr_col_type_t t)
{
    return (unsigned)t < SR_COL__COUNT ? col_type_names[t] : "?";
}

static size_t elem_size(sr_col_type_t t)
{
    switch (t) {
    case SR_COL_I32: case SR_COL_LIST_I32: case SR_COL_F32: case SR_COL_LIST_F32: return 4;
    case SR_COL_I64: case SR_COL_U64: case SR_COL_LIST_U64: return 8;
    case SR_COL_STR: case SR_COL_LIST_STR: return sizeof(char *);
    default: return 0;
    }
}

sr_err_t sr_batch_init(struct sr_batch *b, sr_arena_t *arena, int32_t n, struct sr_error *err)
{
    memset(b, 0, sizeof *b);
    b->arena = arena;
    b->n = n;
    b->sel = sr_arena_alloc(arena, sizeof(int32_t) * (size_t)(n > 0 ? n : 1), 16);
    if (!b->sel)
        return sr_error_set(err, SR_ENOMEM, "batch of %d rows: out of memory", (int)n);
    for (int32_t i = 0; i < n; i++)
        b->sel[i] = i;
    b->n_sel = n;
    return SR_OK;
}

sr_err_t sr_batch_init_source(struct sr_batch *b, sr_arena_t *arena, int32_t n,
                              struct sr_source_cols *out, struct sr_error *err)
{
    struct sr_col *raw, *part, *off, *ts;
    sr_err_t rc = sr_batch_init(b, arena, n, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, SR_C_RAW, SR_COL_STR, 0, &raw, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, SR_C_SRC_PARTITION, SR_COL_I32, 0, &part, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, SR_C_SRC_OFFSET, SR_COL_I64, 0, &off, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, SR_C_SRC_TIMESTAMP, SR_COL_I64, 0, &ts, err);
    if (rc != SR_OK)
        return rc;
    for (int32_t i = 0; i < n; i++)
        ((int64_t *)ts->data)[i] = -1;
    *out = (struct sr_source_cols){.raw = (const char **)raw->data, .raw_len = raw->lens,
                                   .partition = part->data, .offset = off->data,
                                   .timestamp = ts->data};
    return SR_OK;
}

struct sr_col *sr_batch_col(struct sr_batch *b, const char *name)
{
    for (int i = 0; i < b->n_cols; i++)
        if (strcmp(b->cols[i].name, name) == 0)
            return &b->cols[i];
    return NULL;
}

sr_err_t sr_batch_add(struct sr_batch *b, const char *name, sr_col_type_t type, int64_t list_cap,
                      struct sr_col **out, struct sr_error *err)
{
    struct sr_col *c = sr_batch_col(b, name);
    if (!c) {
        if (b->n_cols == SR_BATCH_MAX_COLS)
            return sr_error_set(err, SR_ERANGE, "batch: more than %d columns (adding '%s')",
                                SR_BATCH_MAX_COLS, name);
        c = &b->cols[b->n_cols++];
    }
    memset(c, 0, sizeof *c);
    c->name = name;
    c->type = type;
    size_t n = (size_t)(b->n > 0 ? b->n : 1);
    bool list = type == SR_COL_LIST_I32 || type == SR_COL_LIST_U64 || type == SR_COL_LIST_F32 ||
                type == SR_COL_LIST_STR;
    if (list) {
        c->offsets = sr_arena_calloc(b->arena, n + 1, sizeof(int32_t));
        if (list_cap > 0)
            c->data = sr_arena_alloc(b->arena, elem_size(type) * (size_t)list_cap, 64);
        if (list_cap > 0 && type == SR_COL_LIST_STR)
            c->lens = sr_arena_alloc(b->arena, sizeof(uint32_t) * (size_t)list_cap, 16);
        if (!c->offsets || (list_cap > 0 && !c->data) ||
            (list_cap > 0 && type == SR_COL_LIST_STR && !c->lens))
            return sr_error_set(err, SR_ENOMEM, "batch: out of memory for column '%s'", name);
    } else {
        c->data = sr_arena_calloc(b->arena, n, elem_size(type));
        if (type == SR_COL_STR)
            c->lens = sr_arena_calloc(b->arena, n, sizeof(uint32_t));
        if (!c->data || (type == SR_COL_STR && !c->lens))
            return sr_error_set(err, SR_ENOMEM, "batch: out of memory for column '%s'", name);
    }
    if (out)
        *out = c;
    return SR_OK;
}

void sr_batch_filter(struct sr_batch *b, const uint8_t *keep)
{
    int32_t j = 0;
    for (int32_t i = 0; i < b->n_sel; i++)
        if (keep[b->sel[i]])
            b->sel[j++] = b->sel[i];
    b->n_sel = j;
}

void sr_stats_invalid(struct sr_stats *s, const char *reason)
{
    __atomic_fetch_add(&s->invalid, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < s->n_reasons; i++) {
        if (s->reason[i] == reason || strcmp(s->reason[i], reason) == 0) {
            __atomic_fetch_add(&s->reason_count[i], 1, __ATOMIC_RELAXED);
            return;
        }
    }
    if (s->n_reasons < SR_STATS_MAX_REASONS) {
        s->reason[s->n_reasons] = reason; /* static strings owned by the codec */
        s->reason_count[s->n_reasons] = 1;
        __atomic_store_n(&s->n_reasons, s->n_reasons + 1, __ATOMIC_RELEASE);
    }
}

void sr_stats_stage(struct sr_stats *s, const char *stage, uint64_t ns)
{
    for (int i = 0; i < s->n_stages; i++) {
        if (s->stage[i] == stage || strcmp(s->stage[i], stage) == 0) {
            __atomic_fetch_add(&s->stage_ns[i], ns, __ATOMIC_RELAXED);
            return;
        }
    }
    if (s->n_stages < SR_STATS_MAX_STAGES) {
        s->stage[s->n_stages] = stage;
        s->stage_ns[s->n_stages] = ns;
        __atomic_store_n(&s->n_stages, s->n_stages + 1, __ATOMIC_RELEASE);
    }
}
