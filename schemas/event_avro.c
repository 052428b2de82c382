/* event_avro.c — the event decoder object (JSON, bare Avro, Confluent-framed Avro) and the event
 * encoder. A decoder owns its resolved writer schemas: one for bare Avro, and for Confluent a
 * cache of schema id -> resolution loaded lazily from the Schema Registry (its own client,
 * registry.c) or from <registry dir>/<id>.avsc. A missing, unreachable or incompatible id is
 * cached too, as a negative entry that expires after negative_cache_ms (then the id is asked
 * again: a schema registered later is picked up without a restart), up to
 * REGISTRY_MAX_NEGATIVE of them, so garbage ids cannot grow the cache without bound.
 * One thread at a time per decoder (the graph's worker thread in `run`: a registry fetch blocks
 * it, never the libuv loop; DESIGN §4). */
#include "schemas_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REGISTRY_MAX_NEGATIVE 1024

struct registry_entry {
    uint32_t id;
    bool ok;
    enum sr_event_invalid why; /* when !ok */
    char msg[SR_ERROR_MSG_MAX + 128]; /* when !ok: why the id is refused */
    uint64_t retry_ns;                /* when !ok: asked again from this sr_now_ns() on */
    struct sr__event_resolved res;
};

struct sr_event_decoder {
    enum sr_format format;
    avro_reader_t reader; /* memory reader, re-pointed at each message */
    struct sr__event_resolved bare;
    char *registry_dir;
    sr_registry_t *registry;  /* NULL: registry_dir */
    uint64_t negative_ns;     /* negative cache interval */
    struct registry_entry *entries;
    size_t n_entries, cap_entries, n_negative;
    struct registry_entry overflow; /* answer for an uncached negative lookup */
};

static sr_err_t load_writer_schema(const char *json, size_t len, const char *what,
                                   struct sr__event_resolved *res, enum sr_event_invalid *why,
                                   struct sr_error *err)
{
    avro_schema_t w;
    sr_err_t rc = sr__schema_parse(json, len, what, &w, err);
    if (rc != SR_OK) {
        if (why)
            *why = SR_EVENT_INVALID_INCOMPATIBLE_SCHEMA;
        return rc;
    }
    rc = sr__event_resolved_init(res, w, why, err);
    avro_schema_decref(w);
    if (rc != SR_OK)
        sr_error_prefix(err, "%s", what);
    return rc;
}

sr_err_t sr_event_decoder_new(const struct sr_event_decoder_params *params,
                              sr_event_decoder_t **out, struct sr_error *err)
{
    if (!params || !out)
        return sr_error_set(err, SR_EINVAL, "sr_event_decoder_new: NULL argument");
    sr__avro_init();
    sr_event_decoder_t *d = calloc(1, sizeof *d);
    if (!d)
        return sr_error_set(err, SR_ENOMEM, "event decoder");
    d->format = params->format;
    sr_err_t rc = SR_OK;
    static const char empty[1];
    switch (params->format) {
    case SR_FORMAT_JSON:
        break;
    case SR_FORMAT_AVRO:
        if (params->writer_schema_json) {
            rc = load_writer_schema(params->writer_schema_json, strlen(params->writer_schema_json),
                                    "writer schema", &d->bare, NULL, err);
        } else if (params->writer_schema_path && *params->writer_schema_path) {
            char *text;
            size_t len;
            rc = sr_file_read_all(params->writer_schema_path, &text, &len, err);
            if (rc == SR_OK) {
                rc = load_writer_schema(text, len, params->writer_schema_path, &d->bare, NULL,
                                        err);
                free(text);
            }
        } else {
            rc = load_writer_schema(sr__avsc_user_event, strlen(sr__avsc_user_event),
                                    "user_event.avsc", &d->bare, NULL, err);
        }
        if (rc != SR_OK && rc != SR_ENOMEM)
            rc = err ? (err->code = SR_ECONFIG) : SR_ECONFIG;
        break;
    case SR_FORMAT_AVRO_CONFLUENT: {
        struct sr_registry_params def;
        const struct sr_registry_params *rp = params->registry;
        if (!rp) {
            sr_registry_params_default(&def);
            rp = &def;
        }
        d->negative_ns = (uint64_t)rp->negative_cache_ms * 1000000ULL;
        if (rp->url && *rp->url) {
            rc = sr_registry_new(rp, &d->registry, err);
            if (rc == SR_OK)
                rc = sr_registry_probe(d->registry, err);
            if (rc == SR_EAGAIN)
                rc = err ? (err->code = SR_ECONFIG) : SR_ECONFIG;
            break;
        }
        if (!params->registry_dir || !*params->registry_dir) {
            rc = sr_error_set(err, SR_ECONFIG, "input.format=avro-confluent needs "
                              "schema.registry.url or schemas.registry.dir");
            break;
        }
        d->registry_dir = strdup(params->registry_dir);
        if (!d->registry_dir)
            rc = sr_error_set(err, SR_ENOMEM, "event decoder");
        break;
    }
    default:
        rc = sr_error_set(err, SR_EINVAL, "unknown event format %d", (int)params->format);
    }
    if (rc == SR_OK && params->format != SR_FORMAT_JSON) {
        d->reader = avro_reader_memory(empty, 0);
        if (!d->reader)
            rc = sr_error_set(err, SR_ENOMEM, "Avro reader: %s", avro_strerror());
    }
    if (rc != SR_OK) {
        sr_event_decoder_destroy(d);
        return rc;
    }
    *out = d;
    return SR_OK;
}

void sr_event_decoder_destroy(sr_event_decoder_t *d)
{
    if (!d)
        return;
    sr__event_resolved_fini(&d->bare);
    for (size_t i = 0; i < d->n_entries; i++)
        sr__event_resolved_fini(&d->entries[i].res);
    free(d->entries);
    free(d->registry_dir);
    sr_registry_destroy(d->registry);
    if (d->reader)
        avro_reader_free(d->reader);
    free(d);
}

/* Reads one Avro record written with res->writer from buf into *out. */
static sr_err_t decode_avro(sr_event_decoder_t *d, struct sr__event_resolved *res,
                            const void *buf, size_t len, sr_arena_t *arena, struct sr_event *out,
                            enum sr_event_invalid *why, struct sr_error *err)
{
    size_t used;
    sr_err_t rc = sr__avro_prescan(res->writer, buf, len, SR_EVENT_FIELD_MAX, &used, why, err);
    if (rc != SR_OK)
        return rc;
    if (used != len)
        return sr__invalid(why, SR_EVENT_INVALID_TRAILING_BYTES, err,
                           "Avro record ends at byte %zu of %zu", used, len);
    avro_reader_memory_set_source(d->reader, buf, (int64_t)len);
    if (avro_value_read(d->reader, &res->rw_value) != 0)
        return sr__invalid(why, SR_EVENT_INVALID_INVALID_AVRO, err, "Avro record: %s",
                           avro_strerror());
    return sr__event_from_avro(res, arena, out, why, err);
}

/* Loads the writer schema of id into *e (from the registry or the directory). SR_ENOMEM is the
 * only error: a refused id is a negative entry. */
static sr_err_t registry_load(sr_event_decoder_t *d, uint32_t id, struct registry_entry *e,
                              struct sr_error *err)
{
    memset(e, 0, sizeof *e);
    e->id = id;
    char what[4200];
    char *text = NULL;
    size_t len = 0;
    struct sr_error lerr = {0};
    sr_err_t rc;
    if (d->registry) {
        snprintf(what, sizeof what, "schema id %" PRIu32 " (registry)", id);
        rc = sr_registry_get_schema(d->registry, id, &text, &lerr);
        if (rc == SR_OK)
            len = strlen(text);
    } else {
        snprintf(what, sizeof what, "%s/%" PRIu32 ".avsc", d->registry_dir, id);
        rc = sr_file_read_all(what, &text, &len, &lerr);
        if (rc == SR_OK) {
            char *inner;
            size_t n;
            rc = sr__schema_text_unwrap(text, len, &inner, &n);
            if (rc == SR_OK && inner) {
                free(text);
                text = inner;
                len = n;
            }
            if (rc != SR_OK)
                sr_error_set(&lerr, rc, "%s", what);
        }
    }
    if (rc == SR_ENOMEM) {
        free(text);
        return sr_error_set(err, SR_ENOMEM, "%s", lerr.msg);
    }
    if (rc != SR_OK) {
        e->why = rc == SR_ENOENT || !d->registry ? SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID
                 : rc == SR_EUNSUPPORTED || rc == SR_EFORMAT ? SR_EVENT_INVALID_INCOMPATIBLE_SCHEMA
                                                             : SR_EVENT_INVALID_REGISTRY_UNAVAILABLE;
        snprintf(e->msg, sizeof e->msg, "schema id %" PRIu32 " %s (%s)", id,
                 e->why == SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID ? "unknown" : "refused", lerr.msg);
    } else {
        rc = load_writer_schema(text, len, what, &e->res, &e->why, &lerr);
        if (rc == SR_ENOMEM) {
            free(text);
            return sr_error_set(err, SR_ENOMEM, "%s", lerr.msg);
        }
        e->ok = rc == SR_OK;
        if (!e->ok)
            snprintf(e->msg, sizeof e->msg, "schema id %" PRIu32 ": %s", id, lerr.msg);
    }
    free(text);
    if (!e->ok)
        e->retry_ns = sr_now_ns() + d->negative_ns;
    return SR_OK;
}

static struct registry_entry *registry_lookup(sr_event_decoder_t *d, uint32_t id,
                                              struct sr_error *err)
{
    struct registry_entry *slot = NULL;
    for (size_t i = 0; i < d->n_entries; i++) {
        if (d->entries[i].id != id)
            continue;
        if (d->entries[i].ok || sr_now_ns() < d->entries[i].retry_ns)
            return &d->entries[i];
        slot = &d->entries[i]; /* negative entry expired: ask again */
        break;
    }
    struct registry_entry e;
    if (registry_load(d, id, &e, err) != SR_OK)
        return NULL;
    if (slot) {
        sr__event_resolved_fini(&slot->res);
        d->n_negative -= 1; /* the slot was negative */
        d->n_negative += !e.ok;
        *slot = e;
        if (e.ok)
            sr_log(SR_LOG_INFO, "decode", "schema id resolved after being refused",
                   "schema_id=%" PRIu32, id);
        return slot;
    }
    if (!e.ok && d->n_negative >= REGISTRY_MAX_NEGATIVE) {
        d->overflow = e; /* negative cache full: answer without caching */
        return &d->overflow;
    }
    if (d->n_entries == d->cap_entries) {
        size_t cap = d->cap_entries ? d->cap_entries * 2 : 8;
        struct registry_entry *p = realloc(d->entries, cap * sizeof *p);
        if (!p) {
            sr__event_resolved_fini(&e.res);
            sr_error_set(err, SR_ENOMEM, "schema registry cache");
            return NULL;
        }
        d->entries = p;
        d->cap_entries = cap;
    }
    d->n_negative += !e.ok;
    d->entries[d->n_entries] = e;
    return &d->entries[d->n_entries++];
}

sr_err_t sr_event_decode(sr_event_decoder_t *d, const void *buf, size_t len, sr_arena_t *arena,
                         struct sr_event *out, enum sr_event_invalid *why, struct sr_error *err)
{
    if (!d || (!buf && len) || !arena || !out)
        return sr_error_set(err, SR_EINVAL, "sr_event_decode: NULL argument");
    if (why)
        *why = SR_EVENT_INVALID_NONE;
    if (d->format == SR_FORMAT_JSON)
        return sr__event_decode_json(buf, len, arena, out, why, err);
    if (len == 0)
        return sr__invalid(why, SR_EVENT_INVALID_EMPTY_MESSAGE, err, "empty message");
    if (d->format == SR_FORMAT_AVRO)
        return decode_avro(d, &d->bare, buf, len, arena, out, why, err);
    const unsigned char *p = buf;
    if (p[0] != 0)
        return sr__invalid(why, SR_EVENT_INVALID_BAD_MAGIC, err,
                           "Confluent frame: magic byte 0x%02x, expected 0x00", p[0]);
    if (len < 5)
        return sr__invalid(why, SR_EVENT_INVALID_TRUNCATED_AVRO, err,
                           "Confluent frame: %zu bytes, header needs 5", len);
    uint32_t id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    struct registry_entry *e = registry_lookup(d, id, err);
    if (!e)
        return SR_ENOMEM;
    if (!e->ok)
        return sr__invalid(why, e->why, err, "%s", e->msg);
    return decode_avro(d, &e->res, p + 5, len - 5, arena, out, why, err);
}

/* ---- event encoder -------------------------------------------------------------------- */

struct sr_event_encoder {
    enum sr_format format;
    int32_t schema_id;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    avro_writer_t writer;
    struct sr_buf scratch;
};

sr_err_t sr__avro_append(avro_writer_t w, avro_value_t *v, struct sr_buf *out,
                         struct sr_error *err)
{
    size_t size;
    if (avro_value_sizeof(v, &size) != 0)
        return sr_error_set(err, SR_EINTERNAL, "Avro size: %s", avro_strerror());
    if (sr_buf_reserve(out, size) != SR_OK)
        return sr_error_set(err, SR_ENOMEM, "output buffer");
    avro_writer_memory_set_dest(w, out->data + out->len, (int64_t)size);
    if (avro_value_write(w, v) != 0)
        return sr_error_set(err, SR_EINTERNAL, "Avro write: %s", avro_strerror());
    out->len += size;
    return SR_OK;
}

/* Shared by the event and recommendation encoders: schema + generic value + memory writer. */
sr_err_t sr__avro_encoder_init(const char *json, avro_schema_t *schema, avro_value_iface_t **iface,
                               avro_value_t *value, avro_writer_t *writer, struct sr_error *err)
{
    static char dummy[1];
    sr_err_t rc = sr__schema_parse(json, strlen(json), "embedded schema", schema, err);
    if (rc != SR_OK)
        return rc;
    *iface = avro_generic_class_from_schema(*schema);
    if (!*iface || avro_generic_value_new(*iface, value) != 0)
        return sr_error_set(err, SR_ENOMEM, "Avro value: %s", avro_strerror());
    *writer = avro_writer_memory(dummy, 0);
    if (!*writer)
        return sr_error_set(err, SR_ENOMEM, "Avro writer: %s", avro_strerror());
    return SR_OK;
}

sr_err_t sr_event_encoder_new(enum sr_format format, int32_t schema_id, sr_event_encoder_t **out,
                              struct sr_error *err)
{
    if (!out || format < SR_FORMAT_JSON || format > SR_FORMAT_AVRO_CONFLUENT)
        return sr_error_set(err, SR_EINVAL, "sr_event_encoder_new: bad argument");
    sr__avro_init();
    sr_event_encoder_t *e = calloc(1, sizeof *e);
    if (!e)
        return sr_error_set(err, SR_ENOMEM, "event encoder");
    e->format = format;
    e->schema_id = schema_id;
    if (format != SR_FORMAT_JSON) {
        sr_err_t rc = sr__avro_encoder_init(sr__avsc_user_event, &e->schema, &e->iface, &e->value,
                                            &e->writer, err);
        if (rc != SR_OK) {
            sr_event_encoder_destroy(e);
            return rc;
        }
    }
    *out = e;
    return SR_OK;
}

void sr__avro_encoder_fini(avro_schema_t schema, avro_value_iface_t *iface, avro_value_t *value,
                           avro_writer_t writer)
{
    if (value->iface)
        avro_value_decref(value);
    if (iface)
        avro_value_iface_decref(iface);
    if (schema)
        avro_schema_decref(schema);
    if (writer)
        avro_writer_free(writer);
}

void sr_event_encoder_destroy(sr_event_encoder_t *e)
{
    if (!e)
        return;
    sr__avro_encoder_fini(e->schema, e->iface, &e->value, e->writer);
    sr_buf_free(&e->scratch);
    free(e);
}

sr_err_t sr__confluent_header(struct sr_buf *out, int32_t schema_id)
{
    uint32_t id = (uint32_t)schema_id;
    unsigned char h[5] = {0, (unsigned char)(id >> 24), (unsigned char)(id >> 16),
                          (unsigned char)(id >> 8), (unsigned char)id};
    return sr_buf_append(out, h, sizeof h);
}

sr_err_t sr_event_encode(sr_event_encoder_t *e, const struct sr_event *ev, struct sr_buf *out,
                         struct sr_error *err)
{
    if (!e || !ev || !out)
        return sr_error_set(err, SR_EINVAL, "sr_event_encode: NULL argument");
    sr_err_t rc = sr_event_validate(ev, NULL, err);
    if (rc != SR_OK)
        return err ? (err->code = SR_EINVAL) : SR_EINVAL;
    size_t mark = out->len;
    if (e->format == SR_FORMAT_JSON) {
        rc = sr__event_encode_json(ev, out);
        if (rc != SR_OK)
            sr_error_set(err, rc, "output buffer");
    } else {
        if (e->format == SR_FORMAT_AVRO_CONFLUENT && sr__confluent_header(out, e->schema_id))
            return sr_error_set(err, SR_ENOMEM, "output buffer");
        rc = sr__event_to_avro(ev, &e->value, &e->scratch, err);
        if (rc == SR_OK)
            rc = sr__avro_append(e->writer, &e->value, out, err);
    }
    if (rc != SR_OK)
        out->len = mark;
    return rc;
}
