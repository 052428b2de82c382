/* event_json.c — events in JSON: decoding through jansson into arena-backed sr_event, the
 * field checks every decoder shares (sr_event_validate), and the JSON event encoder.
 *
 * Decoding policy: json_loadb with JSON_REJECT_DUPLICATES — an object naming session_id twice is
 * ambiguous, and silently taking one of them would route the event by a guess — so duplicate
 * keys are invalid_json. Unknown keys are ignored (producers may add fields). user_id may be
 * absent or null. timestamp_ms must be a JSON integer (1.5 or 1e3 are wrong_type) >= 0.
 * Thread: whatever thread owns the decoder. */
#include "schemas_int.h"

#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

sr_err_t sr_event_validate(const struct sr_event *ev, enum sr_event_invalid *why,
                           struct sr_error *err)
{
    struct {
        const char *name;
        const char *s;
        size_t n;
        bool required;
    } f[] = {
        {"session_id", ev->session_id, ev->session_id_len, true},
        {"user_id", ev->user_id, ev->user_id_len, false},
        {"item_id", ev->item_id, ev->item_id_len, true},
        {"event_type", ev->event_type, ev->event_type_len, true},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].s) {
            if (f[i].required)
                return sr__invalid(why, SR_EVENT_INVALID_MISSING_FIELD, err,
                                   "field %s: missing", f[i].name);
            continue;
        }
        if (f[i].n > SR_EVENT_FIELD_MAX)
            return sr__invalid(why, SR_EVENT_INVALID_FIELD_TOO_LONG, err,
                               "field %s: %zu bytes, longer than %d", f[i].name, f[i].n,
                               SR_EVENT_FIELD_MAX);
        if (f[i].required && f[i].n == 0)
            return sr__invalid(why, SR_EVENT_INVALID_EMPTY_FIELD, err, "field %s: empty",
                               f[i].name);
        ptrdiff_t bad = sr__utf8_check(f[i].s, f[i].n);
        if (bad >= 0)
            return sr__invalid(why, SR_EVENT_INVALID_INVALID_UTF8, err,
                               "field %s: invalid UTF-8 or NUL at byte %td", f[i].name, bad);
    }
    if (ev->timestamp_ms < 0 && ev->timestamp_ms != SR_EVENT_TS_ABSENT)
        return sr__invalid(why, SR_EVENT_INVALID_BAD_TIMESTAMP, err,
                           "field timestamp_ms: negative (%" PRId64 ")", ev->timestamp_ms);
    if (why)
        *why = SR_EVENT_INVALID_NONE;
    return SR_OK;
}

/* Copies a JSON string member into the arena. A NULL *out with SR_OK means absent/null. */
static sr_err_t get_string(json_t *obj, const char *name, bool nullable, sr_arena_t *arena,
                           const char **out, size_t *out_len, enum sr_event_invalid *why,
                           struct sr_error *err)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    *out_len = 0;
    if (!v) {
        if (nullable)
            return SR_OK;
        return sr__invalid(why, SR_EVENT_INVALID_MISSING_FIELD, err, "field %s: missing", name);
    }
    if (json_is_null(v) && nullable)
        return SR_OK;
    if (!json_is_string(v))
        return sr__invalid(why, SR_EVENT_INVALID_WRONG_TYPE, err, "field %s: not a string",
                           name);
    size_t n = json_string_length(v);
    if (n > SR_EVENT_FIELD_MAX)
        return sr__invalid(why, SR_EVENT_INVALID_FIELD_TOO_LONG, err,
                           "field %s: %zu bytes, longer than %d", name, n, SR_EVENT_FIELD_MAX);
    char *s = sr_arena_strndup(arena, json_string_value(v), n);
    if (!s)
        return sr_error_set(err, SR_ENOMEM, "field %s: arena exhausted", name);
    *out = s;
    *out_len = n;
    return SR_OK;
}

static sr_err_t json_load(const void *buf, size_t len, json_t **root, enum sr_event_invalid *why,
                          struct sr_error *err)
{
    if (len == 0)
        return sr__invalid(why, SR_EVENT_INVALID_EMPTY_MESSAGE, err, "empty message");
    json_error_t jerr;
    *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!*root)
        return sr__invalid(why, SR_EVENT_INVALID_INVALID_JSON, err,
                           "invalid JSON at column %d: %s", jerr.column, jerr.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return sr__invalid(why, SR_EVENT_INVALID_NOT_OBJECT, err, "JSON value is not an object");
    }
    return SR_OK;
}

sr_err_t sr__event_decode_json(const void *buf, size_t len, sr_arena_t *arena,
                               struct sr_event *out, enum sr_event_invalid *why,
                               struct sr_error *err)
{
    json_t *root;
    sr_err_t rc = json_load(buf, len, &root, why, err);
    if (rc != SR_OK)
        return rc;
    struct sr_event ev;
    memset(&ev, 0, sizeof ev);
    /* fields in schema order, so the first problem named is the first field's */
    if ((rc = get_string(root, "session_id", false, arena, &ev.session_id, &ev.session_id_len,
                         why, err)) != SR_OK ||
        (rc = get_string(root, "user_id", true, arena, &ev.user_id, &ev.user_id_len, why,
                         err)) != SR_OK ||
        (rc = get_string(root, "item_id", false, arena, &ev.item_id, &ev.item_id_len, why,
                         err)) != SR_OK ||
        (rc = get_string(root, "event_type", false, arena, &ev.event_type, &ev.event_type_len,
                         why, err)) != SR_OK)
        goto out;
    json_t *ts = json_object_get(root, "timestamp_ms");
    if (!ts || json_is_null(ts)) {
        /* absent: the caller may take the record's own timestamp (sr_event.timestamp_ms) */
        ev.timestamp_ms = SR_EVENT_TS_ABSENT;
        rc = sr_event_validate(&ev, why, err);
        if (rc == SR_OK)
            *out = ev;
        goto out;
    }
    if (!json_is_integer(ts)) {
        rc = sr__invalid(why, SR_EVENT_INVALID_WRONG_TYPE, err,
                         "field timestamp_ms: not an integer");
        goto out;
    }
    ev.timestamp_ms = (int64_t)json_integer_value(ts);
    rc = sr_event_validate(&ev, why, err);
    if (rc == SR_OK)
        *out = ev;
out:
    json_decref(root);
    return rc;
}

/* ---- encoding ------------------------------------------------------------------------- */

#define PUT_LIT(b, s) sr_buf_append((b), (s), sizeof(s) - 1)

sr_err_t sr__event_encode_json(const struct sr_event *ev, struct sr_buf *out)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%" PRId64, ev->timestamp_ms);
    if (PUT_LIT(out, "{\"session_id\": ") ||
        sr__json_put_string(out, ev->session_id, ev->session_id_len) ||
        PUT_LIT(out, ", \"user_id\": ") ||
        (ev->user_id ? sr__json_put_string(out, ev->user_id, ev->user_id_len)
                     : PUT_LIT(out, "null")) ||
        PUT_LIT(out, ", \"item_id\": ") || sr__json_put_string(out, ev->item_id, ev->item_id_len) ||
        PUT_LIT(out, ", \"event_type\": ") ||
        sr__json_put_string(out, ev->event_type, ev->event_type_len) ||
        PUT_LIT(out, ", \"timestamp_ms\": ") || sr_buf_append(out, num, (size_t)n) ||
        PUT_LIT(out, "}"))
        return SR_ENOMEM;
    return SR_OK;
}

/* ---- recommendations from JSON (tools and tests) -------------------------------------- */

static sr_err_t rec_str(json_t *obj, const char *name, bool nullable, sr_arena_t *arena,
                        const char **s, size_t *n, struct sr_error *err)
{
    json_t *v = json_object_get(obj, name);
    if ((!v || json_is_null(v)) && nullable) {
        *s = NULL;
        *n = 0;
        return SR_OK;
    }
    if (!json_is_string(v))
        return sr_error_set(err, SR_EFORMAT, "recommendation field %s: %s", name,
                            v ? "not a string" : "missing");
    *n = json_string_length(v);
    *s = sr_arena_strndup(arena, json_string_value(v), *n);
    return *s ? SR_OK : sr_error_set(err, SR_ENOMEM, "arena exhausted");
}

static sr_err_t rec_int(json_t *obj, const char *name, int64_t *out, struct sr_error *err)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v))
        return sr_error_set(err, SR_EFORMAT, "recommendation field %s: %s", name,
                            v ? "not an integer" : "missing");
    *out = (int64_t)json_integer_value(v);
    return SR_OK;
}

sr_err_t sr_rec_decode_json(const void *buf, size_t len, sr_arena_t *arena, struct sr_rec *out,
                            struct sr_error *err)
{
    json_t *root;
    sr_err_t rc = json_load(buf, len, &root, NULL, err);
    if (rc != SR_OK)
        return rc;
    struct sr_rec r;
    memset(&r, 0, sizeof r);
    int64_t partition = 0;
    json_t *items = json_object_get(root, "items"), *src = json_object_get(root, "source");
    if ((rc = rec_str(root, "session_id", false, arena, &r.session_id, &r.session_id_len, err)) ||
        (rc = rec_str(root, "user_id", true, arena, &r.user_id, &r.user_id_len, err)) ||
        (rc = rec_int(root, "event_timestamp_ms", &r.event_timestamp_ms, err)) ||
        (rc = rec_str(root, "model_version", false, arena, &r.model_version,
                      &r.model_version_len, err)))
        goto out;
    if (!json_is_array(items)) {
        rc = sr_error_set(err, SR_EFORMAT, "recommendation field items: not an array");
        goto out;
    }
    if (!json_is_object(src)) {
        rc = sr_error_set(err, SR_EFORMAT, "recommendation field source: not an object");
        goto out;
    }
    if ((rc = rec_str(src, "topic", false, arena, &r.source_topic, &r.source_topic_len, err)) ||
        (rc = rec_int(src, "partition", &partition, err)) ||
        (rc = rec_int(src, "offset", &r.source_offset, err)))
        goto out;
    if (partition < INT32_MIN || partition > INT32_MAX) {
        rc = sr_error_set(err, SR_EFORMAT, "recommendation field source.partition: out of range");
        goto out;
    }
    r.source_partition = (int32_t)partition;
    if (json_object_get(root, "variant") &&
        (rc = rec_str(root, "variant", true, arena, &r.variant, &r.variant_len, err)))
        goto out;
    r.n_items = json_array_size(items);
    struct sr_scored_item *it = sr_arena_calloc(arena, r.n_items ? r.n_items : 1, sizeof *it);
    if (!it) {
        rc = sr_error_set(err, SR_ENOMEM, "arena exhausted");
        goto out;
    }
    for (size_t i = 0; i < r.n_items; i++) {
        json_t *e = json_array_get(items, i), *sc = json_object_get(e, "score");
        if (!json_is_object(e) || !json_is_number(sc)) {
            rc = sr_error_set(err, SR_EFORMAT, "recommendation items[%zu]: bad item", i);
            goto out;
        }
        if ((rc = rec_str(e, "item_id", false, arena, &it[i].item_id, &it[i].item_id_len, err)))
            goto out;
        it[i].score = json_number_value(sc);
    }
    r.items = it;
    *out = r;
out:
    json_decref(root);
    return rc;
}
