/* op_decode.c — `decode`: turns each record's raw bytes into event columns with the configured
 * codec (input.format; replay of an Avro container passes its own). An undecodable record is
 * dropped from the batch, counted by reason and logged (rate-limited); it never stops the
 * stream. The runtime sees failures through sr_batch's `decode_error` column to route them to
 * the dead-letter topic. Owns the decoder; with schema.registry.url its registry client fetches
 * unknown writer schemas on the thread that runs the graph (the worker in `run`). */
#include "ops_int.h"
#include "sr_schemas.h"

#include <stdlib.h>
#include <string.h>

struct decode_ctx {
    sr_event_decoder_t *dec;
    uint64_t logged;        /* rate limit: the first 10, then every 1000th */
    uint64_t failures;
};

static sr_err_t decode_init(struct sr_op_env *env, const char *prefix, void **ctx,
                            struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct sr_event_decoder_params p = {0};
    const char *fmt = env->input_format ? env->input_format : sr_config_get(env->cfg, "input.format");
    sr_err_t rc = sr_format_parse(fmt, &p.format, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "input.format");
    if (env->input_writer_schema_json) {
        p.writer_schema_json = env->input_writer_schema_json;
    } else {
        const char *ws = sr_config_get(env->cfg, "input.avro.writer_schema");
        if (ws && *ws)
            p.writer_schema_path = ws;
    }
    struct sr_registry_params rp;
    rc = sr_registry_params_from_config(env->cfg, &rp, err);
    if (rc != SR_OK)
        return rc;
    p.registry = &rp;
    const char *reg = sr_config_get(env->cfg, "schemas.registry.dir");
    if (reg && *reg)
        p.registry_dir = reg;
    else if (p.format == SR_FORMAT_AVRO_CONFLUENT && !rp.url)
        return sr_error_set(err, SR_ECONFIG, "input.format=avro-confluent needs schema.registry.url "
                            "or schemas.registry.dir (<id>.avsc files)");
    struct decode_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    rc = sr_event_decoder_new(&p, &c->dec, err);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    sr__port_in(ports, SR_C_RAW, SR_COL_STR, false);
    sr__port_out(ports, SR_C_SESSION, SR_COL_STR);
    sr__port_out(ports, SR_C_USER, SR_COL_STR);
    sr__port_out(ports, SR_C_ITEM, SR_COL_STR);
    sr__port_out(ports, SR_C_TYPE, SR_COL_STR);
    sr__port_out(ports, SR_C_TS, SR_COL_I64);
    sr__port_out(ports, SR_C_ITEM_KEY, SR_COL_U64);
    sr__port_out(ports, SR_C_DECODE_ERROR, SR_COL_STR);
    *ctx = c;
    return SR_OK;
}

static sr_err_t decode_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                           struct sr_error *err)
{
    struct decode_ctx *c = ctx;
    struct sr_col *raw = sr_batch_col(b, SR_C_RAW);
    struct sr_col *sess, *user, *item, *type, *ts, *key, *derr;
    sr_err_t rc = SR_OK;
    rc = rc ? rc : sr_batch_add(b, SR_C_SESSION, SR_COL_STR, 0, &sess, err);
    rc = rc ? rc : sr_batch_add(b, SR_C_USER, SR_COL_STR, 0, &user, err);
    rc = rc ? rc : sr_batch_add(b, SR_C_ITEM, SR_COL_STR, 0, &item, err);
    rc = rc ? rc : sr_batch_add(b, SR_C_TYPE, SR_COL_STR, 0, &type, err);
    rc = rc ? rc : sr_batch_add(b, SR_C_TS, SR_COL_I64, 0, &ts, err);
    rc = rc ? rc : sr_batch_add(b, SR_C_ITEM_KEY, SR_COL_U64, 0, &key, err);
    rc = rc ? rc : sr_batch_add(b, SR_C_DECODE_ERROR, SR_COL_STR, 0, &derr, err);
    uint8_t *keep = rc ? NULL : sr_arena_calloc(b->arena, (size_t)(b->n > 0 ? b->n : 1), 1);
    if (rc != SR_OK || !keep)
        return rc != SR_OK ? rc : sr_error_set(err, SR_ENOMEM, "out of memory");
    const char **rawp = raw->data;
    const char **s_sess = sess->data, **s_user = user->data, **s_item = item->data,
               **s_type = type->data, **s_err = derr->data;
    int64_t *v_ts = ts->data;
    uint64_t *v_key = key->data;
    const int64_t *offs = sr_batch_col(b, SR_C_SRC_OFFSET)->data;
    const int32_t *parts = sr_batch_col(b, SR_C_SRC_PARTITION)->data;
    struct sr_col *rts = sr_batch_col(b, SR_C_SRC_TIMESTAMP);
    const int64_t *rec_ts = rts ? rts->data : NULL;
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        struct sr_event ev;
        enum sr_event_invalid why = SR_EVENT_INVALID_NONE;
        struct sr_error e;
        sr_err_t drc = sr_event_decode(c->dec, rawp[r], raw->lens[r], b->arena, &ev, &why, &e);
        if (drc == SR_OK && ev.timestamp_ms == SR_EVENT_TS_ABSENT) {
            /* No timestamp_ms: the record's timestamp stands in (counted); a source without
             * one (a file) leaves the event invalid. */
            if (rec_ts && rec_ts[r] >= 0) {
                ev.timestamp_ms = rec_ts[r];
                __atomic_fetch_add(&env->stats->timestamp_from_record, 1, __ATOMIC_RELAXED);
            } else {
                drc = sr_error_set(&e, SR_EFORMAT, "field timestamp_ms: missing (and the record "
                                   "has no timestamp)");
                why = SR_EVENT_INVALID_MISSING_FIELD;
            }
        }
        if (drc == SR_ENOMEM)
            return sr_error_set(err, SR_ENOMEM, "decode: out of memory");
        if (drc != SR_OK) {
            const char *reason = sr_event_invalid_name(why);
            sr_stats_invalid(env->stats, reason);
            s_err[r] = reason;
            derr->lens[r] = (uint32_t)strlen(reason);
            c->failures++;
            if (c->failures <= 10 || c->failures % 1000 == 0)
                sr_log(SR_LOG_WARN, "decode", "invalid event", "reason=%s topic=%s partition=%d "
                       "offset=%lld count=%llu error=\"%s\"", reason, env->source_topic,
                       (int)parts[r], (long long)offs[r], (unsigned long long)c->failures, e.msg);
            continue;
        }
        keep[r] = 1;
        s_sess[r] = ev.session_id;
        sess->lens[r] = (uint32_t)ev.session_id_len;
        s_user[r] = ev.user_id;
        user->lens[r] = (uint32_t)ev.user_id_len;
        s_item[r] = ev.item_id;
        item->lens[r] = (uint32_t)ev.item_id_len;
        s_type[r] = ev.event_type;
        type->lens[r] = (uint32_t)ev.event_type_len;
        v_ts[r] = ev.timestamp_ms;
        v_key[r] = sr_hash64(ev.item_id, ev.item_id_len);
    }
    __atomic_fetch_add(&env->stats->events, (uint64_t)b->n_sel, __ATOMIC_RELAXED);
    sr_batch_filter(b, keep);
    return SR_OK;
}

static void decode_fini(void *ctx)
{
    struct decode_ctx *c = ctx;
    if (!c)
        return;
    sr_event_decoder_destroy(c->dec);
    free(c);
}

const struct sr_op_desc sr__op_decode = {
    .name = "decode",
    .help = "decode raw records (input.format: json, avro, avro-confluent); drop and count bad ones",
    .init = decode_init,
    .run = decode_run,
    .fini = decode_fini,
};
