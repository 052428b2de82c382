/* rec_encode.c — the recommendation encoder: JSON in the exact form of DESIGN.md section 4
 * (", " and ": " separators, fields in schema order, scores in shortest round-trip form), bare
 * Avro and Confluent-framed Avro with streamrec.Recommendation. The encoder owns one generic
 * Avro value reused for every record. One thread at a time per encoder. */
#include "schemas_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sr_rec_encoder {
    enum sr_format format;
    int32_t schema_id;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    avro_writer_t writer;
    struct sr_buf scratch;
};

sr_err_t sr_rec_encoder_new(enum sr_format format, int32_t schema_id, sr_rec_encoder_t **out,
                            struct sr_error *err)
{
    if (!out || format < SR_FORMAT_JSON || format > SR_FORMAT_AVRO_CONFLUENT)
        return sr_error_set(err, SR_EINVAL, "sr_rec_encoder_new: bad argument");
    sr__avro_init();
    sr_rec_encoder_t *e = calloc(1, sizeof *e);
    if (!e)
        return sr_error_set(err, SR_ENOMEM, "recommendation encoder");
    e->format = format;
    e->schema_id = schema_id;
    if (format != SR_FORMAT_JSON) {
        sr_err_t rc = sr__avro_encoder_init(sr__avsc_recommendation, &e->schema, &e->iface,
                                            &e->value, &e->writer, err);
        if (rc != SR_OK) {
            sr_rec_encoder_destroy(e);
            return rc;
        }
    }
    *out = e;
    return SR_OK;
}

void sr_rec_encoder_destroy(sr_rec_encoder_t *e)
{
    if (!e)
        return;
    sr__avro_encoder_fini(e->schema, e->iface, &e->value, e->writer);
    sr_buf_free(&e->scratch);
    free(e);
}

static sr_err_t check_str(const char *what, const char *s, size_t n, bool nullable,
                          struct sr_error *err)
{
    if (!s) {
        if (nullable)
            return SR_OK;
        return sr_error_set(err, SR_EINVAL, "recommendation %s: NULL", what);
    }
    ptrdiff_t bad = sr__utf8_check(s, n);
    if (bad >= 0)
        return sr_error_set(err, SR_EINVAL, "recommendation %s: invalid UTF-8 or NUL at byte %td",
                            what, bad);
    return SR_OK;
}

sr_err_t sr__rec_validate(const struct sr_rec *r, struct sr_error *err)
{
    sr_err_t rc;
    if ((rc = check_str("session_id", r->session_id, r->session_id_len, false, err)) ||
        (rc = check_str("user_id", r->user_id, r->user_id_len, true, err)) ||
        (rc = check_str("model_version", r->model_version, r->model_version_len, false, err)) ||
        (rc = check_str("source.topic", r->source_topic, r->source_topic_len, false, err)) ||
        (rc = check_str("variant", r->variant, r->variant_len, true, err)))
        return rc;
    if (r->n_items && !r->items)
        return sr_error_set(err, SR_EINVAL, "recommendation items: NULL with n_items %zu",
                            r->n_items);
    for (size_t i = 0; i < r->n_items; i++)
        if ((rc = check_str("items[].item_id", r->items[i].item_id, r->items[i].item_id_len,
                            false, err)))
            return rc;
    return SR_OK;
}

#define PUT_LIT(b, s) sr_buf_append((b), (s), sizeof(s) - 1)

static sr_err_t rec_json(const struct sr_rec *r, struct sr_buf *o)
{
    char num[32];
    int n;
    if (PUT_LIT(o, "{\"session_id\": ") || sr__json_put_string(o, r->session_id, r->session_id_len) ||
        PUT_LIT(o, ", \"user_id\": ") ||
        (r->user_id ? sr__json_put_string(o, r->user_id, r->user_id_len) : PUT_LIT(o, "null")))
        return SR_ENOMEM;
    n = snprintf(num, sizeof num, "%" PRId64, r->event_timestamp_ms);
    if (PUT_LIT(o, ", \"event_timestamp_ms\": ") || sr_buf_append(o, num, (size_t)n) ||
        PUT_LIT(o, ", \"model_version\": ") ||
        sr__json_put_string(o, r->model_version, r->model_version_len) ||
        PUT_LIT(o, ", \"items\": ["))
        return SR_ENOMEM;
    for (size_t i = 0; i < r->n_items; i++) {
        if ((i && PUT_LIT(o, ", ")) || PUT_LIT(o, "{\"item_id\": ") ||
            sr__json_put_string(o, r->items[i].item_id, r->items[i].item_id_len) ||
            PUT_LIT(o, ", \"score\": "))
            return SR_ENOMEM;
        n = (int)sr_json_format_double(r->items[i].score, num);
        if (sr_buf_append(o, num, (size_t)n) || PUT_LIT(o, "}"))
            return SR_ENOMEM;
    }
    if (PUT_LIT(o, "], \"source\": {\"topic\": ") ||
        sr__json_put_string(o, r->source_topic, r->source_topic_len) ||
        PUT_LIT(o, ", \"partition\": "))
        return SR_ENOMEM;
    n = snprintf(num, sizeof num, "%" PRId32, r->source_partition);
    if (sr_buf_append(o, num, (size_t)n) || PUT_LIT(o, ", \"offset\": "))
        return SR_ENOMEM;
    n = snprintf(num, sizeof num, "%" PRId64, r->source_offset);
    if (sr_buf_append(o, num, (size_t)n) || PUT_LIT(o, "}"))
        return SR_ENOMEM;
    /* Only under A/B: without variants a recommendation's bytes are what they always were. */
    if (r->variant && (PUT_LIT(o, ", \"variant\": ") ||
                       sr__json_put_string(o, r->variant, r->variant_len)))
        return SR_ENOMEM;
    return PUT_LIT(o, "}") ? SR_ENOMEM : SR_OK;
}

sr_err_t sr__rec_to_avro(const struct sr_rec *r, avro_value_t *v, struct sr_buf *scratch,
                         struct sr_error *err)
{
    avro_value_t f, b, items, item, src;
    avro_value_reset(v);
#define SETS(parent, name, s, n)                                                                   \
    (avro_value_get_by_name((parent), (name), &f, NULL) || sr__avro_set_str(&f, (s), (n), scratch))
    if (SETS(v, "session_id", r->session_id, r->session_id_len) ||
        avro_value_get_by_name(v, "user_id", &f, NULL) ||
        avro_value_set_branch(&f, r->user_id ? 1 : 0, &b) ||
        (r->user_id ? sr__avro_set_str(&b, r->user_id, r->user_id_len, scratch)
                    : avro_value_set_null(&b)) ||
        avro_value_get_by_name(v, "event_timestamp_ms", &f, NULL) ||
        avro_value_set_long(&f, r->event_timestamp_ms) ||
        SETS(v, "model_version", r->model_version, r->model_version_len) ||
        avro_value_get_by_name(v, "items", &items, NULL) ||
        avro_value_get_by_name(v, "source", &src, NULL) ||
        SETS(&src, "topic", r->source_topic, r->source_topic_len) ||
        avro_value_get_by_name(&src, "partition", &f, NULL) ||
        avro_value_set_int(&f, r->source_partition) ||
        avro_value_get_by_name(&src, "offset", &f, NULL) ||
        avro_value_set_long(&f, r->source_offset) ||
        avro_value_get_by_name(v, "variant", &f, NULL) ||
        avro_value_set_branch(&f, r->variant ? 1 : 0, &b) ||
        (r->variant ? sr__avro_set_str(&b, r->variant, r->variant_len, scratch)
                    : avro_value_set_null(&b)))
        goto fail;
    for (size_t i = 0; i < r->n_items; i++) {
        if (avro_value_append(&items, &item, NULL) ||
            SETS(&item, "item_id", r->items[i].item_id, r->items[i].item_id_len) ||
            avro_value_get_by_name(&item, "score", &f, NULL) ||
            avro_value_set_double(&f, r->items[i].score))
            goto fail;
    }
#undef SETS
    return SR_OK;
fail:
    return sr_error_set(err, SR_EINTERNAL, "filling Avro recommendation: %s", avro_strerror());
}

sr_err_t sr_rec_encode(sr_rec_encoder_t *e, const struct sr_rec *rec, struct sr_buf *out,
                       struct sr_error *err)
{
    if (!e || !rec || !out)
        return sr_error_set(err, SR_EINVAL, "sr_rec_encode: NULL argument");
    sr_err_t rc = sr__rec_validate(rec, err);
    if (rc != SR_OK)
        return rc;
    size_t mark = out->len;
    if (e->format == SR_FORMAT_JSON) {
        rc = rec_json(rec, out);
        if (rc != SR_OK)
            sr_error_set(err, rc, "output buffer");
    } else {
        if (e->format == SR_FORMAT_AVRO_CONFLUENT && sr__confluent_header(out, e->schema_id))
            return sr_error_set(err, SR_ENOMEM, "output buffer");
        rc = sr__rec_to_avro(rec, &e->value, &e->scratch, err);
        if (rc == SR_OK)
            rc = sr__avro_append(e->writer, &e->value, out, err);
    }
    if (rc != SR_OK)
        out->len = mark;
    return rc;
}
