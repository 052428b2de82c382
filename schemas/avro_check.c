/* avro_check.c — the parts of Avro decoding that Avro C leaves to us:
 *  - a pre-scan of untrusted bytes against the writer schema, without allocating. Avro C's
 *    reader mallocs a string's declared length before checking that the bytes exist, so a
 *    five-byte message could ask for gigabytes; after the pre-scan every length is known to
 *    fit in the message, and a short message is reported as truncated_avro precisely;
 *  - resolution of a writer schema to our reader schema, working around the resolver's lack of
 *    reader defaults (see schemas_int.h);
 *  - extraction of a resolved value into an arena-backed sr_event.
 * Thread: whichever owns the decoder; no shared state. */
#include "schemas_int.h"

#include <jansson.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- pre-scan ------------------------------------------------------------------------- */

#define PRESCAN_MAX_DEPTH 64
#define PRESCAN_MAX_ZERO_SIZE_ITEMS 65536 /* items of a zero-byte type (null, empty record) */

struct scan {
    const unsigned char *p, *end;
    enum sr_event_invalid *why;
    struct sr_error *err;
    long zero_items;
    int64_t max_field;
};

static sr_err_t scan_long(struct scan *s, const char *what, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (s->p >= s->end)
            return sr__invalid(s->why, SR_EVENT_INVALID_TRUNCATED_AVRO, s->err,
                               "Avro %s: truncated varint", what);
        unsigned char b = *s->p++;
        if (shift == 63 && (b & 0x7E))
            break; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return SR_OK;
        }
    }
    return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err, "Avro %s: varint too long",
                       what);
}

static sr_err_t scan_skip(struct scan *s, const char *what, int64_t n)
{
    if (n < 0)
        return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                           "Avro %s: negative length %lld", what, (long long)n);
    if ((uint64_t)n > (uint64_t)(s->end - s->p))
        return sr__invalid(s->why, SR_EVENT_INVALID_TRUNCATED_AVRO, s->err,
                           "Avro %s: %lld bytes declared, %td left", what, (long long)n,
                           s->end - s->p);
    s->p += n;
    return SR_OK;
}

static bool zero_size(avro_schema_t t)
{
    if (is_avro_link(t))
        return false; /* recursion needs a union or array to terminate: never zero-size */
    if (is_avro_null(t))
        return true;
    if (is_avro_fixed(t))
        return avro_schema_fixed_size(t) == 0;
    if (is_avro_record(t)) {
        for (size_t i = 0; i < avro_schema_record_size(t); i++)
            if (!zero_size(avro_schema_record_field_get_by_index(t, (int)i)))
                return false;
        return true;
    }
    return false;
}

static sr_err_t scan_value(struct scan *s, avro_schema_t t, const char *field, int depth)
{
    sr_err_t rc;
    int64_t n;
    if (depth > PRESCAN_MAX_DEPTH)
        return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                           "Avro field %s: nested deeper than %d", field, PRESCAN_MAX_DEPTH);
    switch (avro_typeof(t)) {
    case AVRO_NULL:
        return SR_OK;
    case AVRO_BOOLEAN:
        if (s->p >= s->end)
            return sr__invalid(s->why, SR_EVENT_INVALID_TRUNCATED_AVRO, s->err,
                               "Avro field %s: truncated boolean", field);
        if (*s->p > 1)
            return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                               "Avro field %s: boolean byte %u", field, *s->p);
        s->p++;
        return SR_OK;
    case AVRO_INT32:
        if ((rc = scan_long(s, field, &n)))
            return rc;
        if (n < INT32_MIN || n > INT32_MAX)
            return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                               "Avro field %s: int out of range", field);
        return SR_OK;
    case AVRO_INT64:
        return scan_long(s, field, &n);
    case AVRO_FLOAT:
        return scan_skip(s, field, 4);
    case AVRO_DOUBLE:
        return scan_skip(s, field, 8);
    case AVRO_STRING:
    case AVRO_BYTES:
        if ((rc = scan_long(s, field, &n)))
            return rc;
        if (n > s->max_field && (uint64_t)n <= (uint64_t)(s->end - s->p))
            return sr__invalid(s->why, SR_EVENT_INVALID_FIELD_TOO_LONG, s->err,
                               "field %s: %lld bytes, longer than %lld", field, (long long)n,
                               (long long)s->max_field);
        return scan_skip(s, field, n);
    case AVRO_FIXED:
        return scan_skip(s, field, avro_schema_fixed_size(t));
    case AVRO_ENUM:
        if ((rc = scan_long(s, field, &n)))
            return rc;
        if (n < 0 || n >= avro_schema_enum_number_of_symbols(t))
            return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                               "Avro field %s: enum index %lld out of range", field,
                               (long long)n);
        return SR_OK;
    case AVRO_UNION:
        if ((rc = scan_long(s, field, &n)))
            return rc;
        if (n < 0 || (uint64_t)n >= avro_schema_union_size(t))
            return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                               "Avro field %s: union branch %lld out of range", field,
                               (long long)n);
        return scan_value(s, avro_schema_union_branch(t, (int)n), field, depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(t); i++) {
            const char *name = avro_schema_record_field_name(t, (int)i);
            if ((rc = scan_value(s, avro_schema_record_field_get_by_index(t, (int)i), name,
                                 depth + 1)))
                return rc;
        }
        return SR_OK;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        bool is_map = is_avro_map(t);
        avro_schema_t item = is_map ? avro_schema_map_values(t) : avro_schema_array_items(t);
        bool zero = !is_map && zero_size(item);
        for (;;) {
            if ((rc = scan_long(s, field, &n)))
                return rc;
            if (n == 0)
                return SR_OK;
            if (n < 0) {
                int64_t bytes;
                if (n == INT64_MIN)
                    return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                                       "Avro field %s: bad block count", field);
                n = -n;
                if ((rc = scan_long(s, field, &bytes)))
                    return rc;
            }
            /* every item takes at least one byte unless its type has zero size */
            if (zero) {
                s->zero_items += (long)(n > PRESCAN_MAX_ZERO_SIZE_ITEMS ? PRESCAN_MAX_ZERO_SIZE_ITEMS + 1 : n);
                if (s->zero_items > PRESCAN_MAX_ZERO_SIZE_ITEMS)
                    return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                                       "Avro field %s: too many empty items", field);
            } else if ((uint64_t)n > (uint64_t)(s->end - s->p)) {
                return sr__invalid(s->why, SR_EVENT_INVALID_TRUNCATED_AVRO, s->err,
                                   "Avro field %s: %lld items declared, %td bytes left", field,
                                   (long long)n, s->end - s->p);
            }
            for (int64_t i = 0; i < n; i++) {
                if (is_map) {
                    int64_t klen;
                    if ((rc = scan_long(s, field, &klen)) || (rc = scan_skip(s, field, klen)))
                        return rc;
                }
                if ((rc = scan_value(s, item, field, depth + 1)))
                    return rc;
            }
        }
    }
    case AVRO_LINK:
        return scan_value(s, avro_schema_link_target(t), field, depth + 1);
    default:
        /* Avro C 1.12 (trixie) adds AVRO_INVALID to the type enum, 1.11 (bookworm) lacks it:
         * a default rather than a case keeps -Wswitch quiet on both, and any type not scanned
         * above is refused below. */
        break;
    }
    return sr__invalid(s->why, SR_EVENT_INVALID_INVALID_AVRO, s->err,
                       "Avro field %s: unsupported type", field);
}

sr_err_t sr__avro_prescan(avro_schema_t schema, const void *buf, size_t len, int64_t max_field,
                          size_t *used, enum sr_event_invalid *why, struct sr_error *err)
{
    struct scan s = {.p = buf, .end = (const unsigned char *)buf + len, .why = why, .err = err,
                     .max_field = max_field};
    sr_err_t rc = scan_value(&s, schema, "(record)", 0);
    if (rc == SR_OK)
        *used = (size_t)(s.p - (const unsigned char *)buf);
    return rc;
}

/* ---- resolution ----------------------------------------------------------------------- */

static bool writer_has_field(avro_schema_t w, const char *name)
{
    return avro_schema_record_field_get_index(w, name) >= 0;
}

sr_err_t sr__event_resolved_init(struct sr__event_resolved *r, avro_schema_t writer,
                                 enum sr_event_invalid *why, struct sr_error *err)
{
    memset(r, 0, sizeof *r);
    if (!is_avro_record(writer))
        return sr__invalid(why, SR_EVENT_INVALID_INCOMPATIBLE_SCHEMA, err,
                           "writer schema is a %s, not a record", avro_schema_type_name(writer));
    /* Our schema, minus optional fields the writer lacks, named like the writer's record.
     * Jansson fails only for memory here; its failures are checked (a reader schema missing a
     * field would refuse the writer's as incompatible) and malloc's errno tells them apart. */
    json_error_t jerr;
    errno = 0;
    json_t *ours = json_loads(sr__avsc_user_event, 0, &jerr);
    if (!ours && errno == ENOMEM)
        return sr_error_set(err, SR_ENOMEM, "reader schema: out of memory");
    if (!ours)
        return sr_error_set(err, SR_EINTERNAL, "embedded user_event.avsc: %s", jerr.text);
    json_t *fields = json_object_get(ours, "fields");
    json_t *kept = json_array();
    bool oom = !kept;
    sr_err_t rc = SR_OK;
    for (size_t i = 0; !oom && i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        if (writer_has_field(writer, name)) {
            oom = json_array_append(kept, f) != 0;
        } else if (!json_object_get(f, "default")) {
            rc = sr__invalid(why, SR_EVENT_INVALID_INCOMPATIBLE_SCHEMA, err,
                             "writer schema %s lacks required field %s",
                             avro_schema_name(writer), name);
            break;
        }
    }
    char *text = NULL;
    if (rc == SR_OK && !oom) {
        /* json_object_set_new takes the value also when it fails (and refuses NULL) */
        oom = json_object_set_new(ours, "fields", kept) != 0;
        kept = NULL;
        oom = oom || json_object_set_new(ours, "name", json_string(avro_schema_name(writer)));
        json_object_del(ours, "namespace");
        const char *ns = avro_schema_namespace(writer);
        if (!oom && ns && *ns)
            oom = json_object_set_new(ours, "namespace", json_string(ns)) != 0;
        text = oom ? NULL : json_dumps(ours, JSON_COMPACT);
    }
    json_decref(kept);
    json_decref(ours);
    if (rc != SR_OK)
        return rc;
    if (!text)
        return sr_error_set(err, SR_ENOMEM, "building reader schema");
    rc = sr__schema_parse(text, strlen(text), "reader schema", &r->reader, err);
    free(text);
    if (rc != SR_OK)
        return rc;
    r->writer = avro_schema_incref(writer);
    errno = 0;
    r->reader_iface = avro_generic_class_from_schema(r->reader);
    r->rw_iface = r->reader_iface ? avro_resolved_writer_new(writer, r->reader) : NULL;
    if (!r->rw_iface && errno == ENOMEM) {
        sr__event_resolved_fini(r);
        return sr_error_set(err, SR_ENOMEM, "resolving writer schema %s: out of memory",
                            avro_schema_name(writer));
    }
    if (!r->rw_iface) {
        rc = sr__invalid(why, SR_EVENT_INVALID_INCOMPATIBLE_SCHEMA, err,
                         "writer schema %s does not resolve to streamrec.UserEvent: %s",
                         avro_schema_name(writer), avro_strerror());
        sr__event_resolved_fini(r);
        return rc;
    }
    if (avro_generic_value_new(r->reader_iface, &r->reader_value) != 0) {
        sr__event_resolved_fini(r);
        return sr_error_set(err, SR_ENOMEM, "Avro value: %s", avro_strerror());
    }
    if (avro_resolved_writer_new_value(r->rw_iface, &r->rw_value) != 0) {
        sr__event_resolved_fini(r);
        return sr_error_set(err, SR_ENOMEM, "Avro value: %s", avro_strerror());
    }
    avro_resolved_writer_set_dest(&r->rw_value, &r->reader_value);
    return SR_OK;
}

void sr__event_resolved_fini(struct sr__event_resolved *r)
{
    if (r->rw_value.iface)
        avro_value_decref(&r->rw_value);
    if (r->reader_value.iface)
        avro_value_decref(&r->reader_value);
    if (r->rw_iface)
        avro_value_iface_decref(r->rw_iface);
    if (r->reader_iface)
        avro_value_iface_decref(r->reader_iface);
    if (r->reader)
        avro_schema_decref(r->reader);
    if (r->writer)
        avro_schema_decref(r->writer);
    memset(r, 0, sizeof *r);
}

/* ---- extraction ----------------------------------------------------------------------- */

/* Reads a string (or ["null","string"] when nullable) field; absent fields stay NULL. */
static sr_err_t take_string(avro_value_t *rec, const char *name, sr_arena_t *arena,
                            const char **out, size_t *out_len, enum sr_event_invalid *why,
                            struct sr_error *err)
{
    avro_value_t f, b;
    *out = NULL;
    *out_len = 0;
    if (avro_value_get_by_name(rec, name, &f, NULL) != 0)
        return SR_OK; /* dropped from the effective reader: takes its default (null) */
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, &b) != 0)
            return sr__invalid(why, SR_EVENT_INVALID_INVALID_AVRO, err, "field %s: no branch",
                               name);
        if (avro_value_get_type(&b) == AVRO_NULL)
            return SR_OK;
        f = b;
    }
    const char *s;
    size_t size;
    if (avro_value_get_string(&f, &s, &size) != 0)
        return sr__invalid(why, SR_EVENT_INVALID_WRONG_TYPE, err, "field %s: not a string",
                           name);
    size = size ? size - 1 : 0; /* Avro C counts the terminating NUL */
    if (size > SR_EVENT_FIELD_MAX)
        return sr__invalid(why, SR_EVENT_INVALID_FIELD_TOO_LONG, err,
                           "field %s: %zu bytes, longer than %d", name, size, SR_EVENT_FIELD_MAX);
    char *c = sr_arena_strndup(arena, s ? s : "", size);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "field %s: arena exhausted", name);
    *out = c;
    *out_len = size;
    return SR_OK;
}

sr_err_t sr__event_from_avro(struct sr__event_resolved *r, sr_arena_t *arena,
                             struct sr_event *out, enum sr_event_invalid *why,
                             struct sr_error *err)
{
    struct sr_event ev;
    memset(&ev, 0, sizeof ev);
    avro_value_t *v = &r->reader_value, ts;
    sr_err_t rc;
    if ((rc = take_string(v, "session_id", arena, &ev.session_id, &ev.session_id_len, why,
                          err)) ||
        (rc = take_string(v, "user_id", arena, &ev.user_id, &ev.user_id_len, why, err)) ||
        (rc = take_string(v, "item_id", arena, &ev.item_id, &ev.item_id_len, why, err)) ||
        (rc = take_string(v, "event_type", arena, &ev.event_type, &ev.event_type_len, why,
                          err)))
        return rc;
    if (avro_value_get_by_name(v, "timestamp_ms", &ts, NULL) != 0 ||
        avro_value_get_long(&ts, &ev.timestamp_ms) != 0)
        return sr__invalid(why, SR_EVENT_INVALID_WRONG_TYPE, err,
                           "field timestamp_ms: not a long");
    if ((rc = sr_event_validate(&ev, why, err)) != SR_OK)
        return rc;
    *out = ev;
    return SR_OK;
}

/* ---- filling values for encoding ------------------------------------------------------ */

/* Avro C's set_string_len copies `size` bytes counting a NUL terminator, and our strings are
 * length-delimited, so each is terminated in `scratch` first. */
int sr__avro_set_str(avro_value_t *f, const char *s, size_t n, struct sr_buf *scratch)
{
    sr_buf_reset(scratch);
    if (sr_buf_append(scratch, s ? s : "", s ? n : 0) || sr_buf_append(scratch, "", 1))
        return ENOMEM;
    return avro_value_set_string_len(f, scratch->data, scratch->len);
}

static int set_field(avro_value_t *rec, const char *name, const char *s, size_t n,
                     struct sr_buf *scratch)
{
    avro_value_t f;
    int rc = avro_value_get_by_name(rec, name, &f, NULL);
    return rc ? rc : sr__avro_set_str(&f, s, n, scratch);
}

sr_err_t sr__event_to_avro(const struct sr_event *ev, avro_value_t *v, struct sr_buf *scratch,
                           struct sr_error *err)
{
    avro_value_t f, b;
    avro_value_reset(v);
    errno = 0; /* a failed scratch or Avro allocation: malloc's ENOMEM */
    if (set_field(v, "session_id", ev->session_id, ev->session_id_len, scratch) ||
        set_field(v, "item_id", ev->item_id, ev->item_id_len, scratch) ||
        set_field(v, "event_type", ev->event_type, ev->event_type_len, scratch) ||
        avro_value_get_by_name(v, "timestamp_ms", &f, NULL) ||
        avro_value_set_long(&f, ev->timestamp_ms) ||
        avro_value_get_by_name(v, "user_id", &f, NULL) ||
        avro_value_set_branch(&f, ev->user_id ? 1 : 0, &b) ||
        (ev->user_id ? sr__avro_set_str(&b, ev->user_id, ev->user_id_len, scratch)
                     : avro_value_set_null(&b)))
        return errno == ENOMEM ? sr_error_set(err, SR_ENOMEM, "filling Avro event: out of memory")
                               : sr_error_set(err, SR_EINTERNAL, "filling Avro event: %s",
                                              avro_strerror());
    return SR_OK;
}
