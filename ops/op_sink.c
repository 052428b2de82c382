/* op_sink.c — `sink`: the graph's outputs. Turns each trigger row's top-k into a recommendation
 * (DESIGN §4: item ids, scores, model version, source position) and hands it, in source order,
 * to the runtime's sink (file or topic, stream/); then hands over the batch's undecodable
 * records as dead letters. Owns a scratch array of scored items. Runs on the graph's thread. */
#include "ops_int.h"
#include "sr_kernels.h"
#include "sr_schemas.h"
#include "sr_state.h"

#include <stdlib.h>
#include <string.h>

struct sink_ctx {
    struct sr_scored_item *items; /* k slots */
    const char *version;
    size_t version_len;
};

static sr_err_t sink_init(struct sr_op_env *env, const char *prefix, void **ctx,
                          struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    if (!env->sink)
        return sr_error_set(err, SR_EINVAL, "no sink given to the graph");
    struct sink_ctx *c = calloc(1, sizeof *c);
    if (c)
        c->items = calloc((size_t)env->k, sizeof *c->items);
    if (!c || !c->items) {
        free(c);
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    }
    c->version = sr_bundle_info(env->bundle)->version;
    c->version_len = strlen(c->version);
    sr__port_in(ports, SR_C_SESSION, SR_COL_STR, false);
    sr__port_in(ports, SR_C_USER, SR_COL_STR, false);
    sr__port_in(ports, SR_C_TS, SR_COL_I64, false);
    sr__port_in(ports, SR_C_REC_ITEMS, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_REC_SCORES, SR_COL_LIST_F32, false);
    sr__port_in(ports, SR_C_DECODE_ERROR, SR_COL_STR, false);
    *ctx = c;
    return SR_OK;
}

static sr_err_t sink_run(void *ctx, struct sr_op_env *env, struct sr_batch *b, struct sr_error *err)
{
    struct sink_ctx *c = ctx;
    struct sr_col *sess = sr_batch_col(b, SR_C_SESSION), *user = sr_batch_col(b, SR_C_USER);
    struct sr_col *ri = sr_batch_col(b, SR_C_REC_ITEMS), *rs = sr_batch_col(b, SR_C_REC_SCORES);
    const int64_t *ts = sr_batch_col(b, SR_C_TS)->data;
    const int32_t *part = sr_batch_col(b, SR_C_SRC_PARTITION)->data;
    const int64_t *off = sr_batch_col(b, SR_C_SRC_OFFSET)->data;
    const char **sid = sess->data, **uid = user->data;
    const int32_t *idx = ri->data;
    const float *score = rs->data;
    /* under A/B each row names its variant, whose bundle its indices belong to (DESIGN §4.5) */
    const int32_t *var = env->n_variants ? sr_batch_col(b, SR_C_VARIANT)->data : NULL;
    uint64_t emitted = 0;
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        int32_t lo = ri->offsets[r], hi = ri->offsets[r + 1];
        if (hi <= lo)
            continue;
        struct sr_variant *va = var ? &env->variants[var[r]] : NULL;
        const struct sr_bundle *bundle = va ? va->bundle : env->bundle;
        size_t n = 0;
        for (int32_t j = lo; j < hi && n < (size_t)env->k; j++) {
            if (idx[j] < 0)
                continue;
            size_t len;
            c->items[n].item_id = sr_bundle_item_id(bundle, idx[j], &len);
            c->items[n].item_id_len = len;
            c->items[n].score = score[j];
            n++;
        }
        struct sr_rec rec = {
            .session_id = sid[r], .session_id_len = sess->lens[r],
            .user_id = uid[r], .user_id_len = user->lens[r],
            .event_timestamp_ms = ts[r],
            .model_version = va ? va->version : c->version,
            .model_version_len = va ? strlen(va->version) : c->version_len,
            .items = c->items, .n_items = n,
            .source_topic = env->source_topic, .source_topic_len = strlen(env->source_topic),
            .source_partition = part[r], .source_offset = off[r],
            .variant = va ? va->name : NULL, .variant_len = va ? strlen(va->name) : 0,
        };
        sr_err_t rc = env->sink->emit(env->sink->opaque, b, r, &rec, err);
        if (rc != SR_OK)
            return rc;
        if (va)
            __atomic_fetch_add(&va->recommendations, 1, __ATOMIC_RELAXED);
        emitted++;
    }
    __atomic_fetch_add(&env->stats->recommendations, emitted, __ATOMIC_RELAXED);
    sr_err_t rc = env->sink->flush ? env->sink->flush(env->sink->opaque, err) : SR_OK;
    /* Dead letters: every row, selected or not (decode dropped them), unless a previous run
     * applied it (its dead letter went out then). */
    const char **why = sr_batch_col(b, SR_C_DECODE_ERROR)->data;
    for (int32_t r = 0; rc == SR_OK && env->sink->dead_letter && r < b->n; r++)
        if (why[r] && off[r] > sr_state_applied_offset(env->state, part[r]))
            rc = env->sink->dead_letter(env->sink->opaque, b, r, why[r], err);
    return rc;
}

static void sink_fini(void *ctx)
{
    struct sink_ctx *c = ctx;
    if (c)
        free(c->items);
    free(c);
}

const struct sr_op_desc sr__op_sink = {
    .name = "sink",
    .help = "publish recommendations to the runtime's sink (file offline, topic online)",
    .init = sink_init,
    .run = sink_run,
    .fini = sink_fini,
};
