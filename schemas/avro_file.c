/* avro_file.c — Avro object container files ("Obj\x01" + header + blocks) through Avro C's
 * file reader and writer. The reader resolves the file's writer schema to our UserEvent schema
 * exactly like the message decoders; the writer writes our UserEvent or Recommendation schema
 * with the null codec. Each handle owns its Avro file handle, schema and values; one thread at
 * a time. Avro C reads blocks itself, so the allocation cap of schemas.c guards them. */
#include "schemas_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool sr_avro_is_container(const void *buf, size_t len)
{
    return buf && len >= 4 && memcmp(buf, "Obj\x01", 4) == 0;
}

#define HEADER_MAX ((size_t)16 << 20)

static avro_schema_t map_of_bytes(void)
{
    avro_schema_t bytes = avro_schema_bytes();
    avro_schema_t map = avro_schema_map(bytes); /* takes its own reference */
    avro_schema_decref(bytes);
    return map;
}

/* Checks the header (magic, metadata map, sync marker) before Avro C reads it: Avro C's
 * header reader leaks on every failure path (metadata value, class, schema, block reader),
 * allocates declared sizes, and its message for a non-container file is obscure. So the
 * metadata map is pre-scanned, then read by Avro C into a value we own, and avro.schema must
 * parse and avro.codec be one this Avro C build has (null, deflate, snappy, lzma). */
static sr_err_t check_meta(avro_value_t *meta, const char *path, struct sr_error *err)
{
    avro_value_t v;
    const void *p;
    size_t n;
    if (avro_value_get_by_name(meta, "avro.codec", &v, NULL) == 0) {
        if (avro_value_get_bytes(&v, &p, &n) != 0)
            return sr_error_set(err, SR_EFORMAT, "%s: bad avro.codec", path);
        static const char *const codecs[] = {"null", "deflate", "snappy", "lzma"};
        bool known = false;
        for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++)
            known |= n == strlen(codecs[i]) && memcmp(p, codecs[i], n) == 0;
        if (!known)
            return sr_error_set(err, SR_EFORMAT, "%s: unsupported Avro codec '%.*s'", path,
                                (int)(n > 32 ? 32 : n), (const char *)p);
    }
    if (avro_value_get_by_name(meta, "avro.schema", &v, NULL) != 0 ||
        avro_value_get_bytes(&v, &p, &n) != 0)
        return sr_error_set(err, SR_EFORMAT, "%s: Avro container header has no avro.schema",
                            path);
    avro_schema_t ws;
    if (sr__schema_parse(p, n, path, &ws, err) != SR_OK)
        return SR_EFORMAT;
    avro_schema_decref(ws);
    return SR_OK;
}

static sr_err_t check_header(FILE *f, const char *path, struct sr_error *err)
{
    struct stat st;
    size_t cap = HEADER_MAX;
    if (fstat(fileno(f), &st) == 0 && st.st_size >= 0 && (uint64_t)st.st_size < cap)
        cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (!buf)
        return sr_error_set(err, SR_ENOMEM, "%s: header buffer", path);
    size_t got = fread(buf, 1, cap, f);
    sr_err_t rc = SR_OK;
    avro_schema_t meta = NULL;
    avro_value_iface_t *cls = NULL;
    avro_value_t value = {0};
    avro_reader_t rd = NULL;
    size_t used;
    if (!sr_avro_is_container(buf, got)) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: not an Avro container file (no Obj\\x01)", path);
    } else if ((meta = map_of_bytes()) == NULL || !(cls = avro_generic_class_from_schema(meta)) ||
               avro_generic_value_new(cls, &value) != 0 ||
               !(rd = avro_reader_memory(buf + 4, (int64_t)(got - 4)))) {
        rc = sr_error_set(err, SR_ENOMEM, "%s: header value", path);
    } else if (sr__avro_prescan(meta, buf + 4, got - 4, INT64_MAX, &used, NULL, err) != SR_OK) {
        sr_error_prefix(err, "%s: bad Avro container header", path);
        rc = SR_EFORMAT;
    } else if (got - 4 - used < 16) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: Avro container header has no sync marker", path);
    } else if (avro_value_read(rd, &value) != 0) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: bad Avro container header: %s", path,
                          avro_strerror());
    } else {
        rc = check_meta(&value, path, err);
    }
    if (err && rc == SR_EFORMAT)
        err->code = SR_EFORMAT;
    if (rd)
        avro_reader_free(rd);
    if (value.iface)
        avro_value_decref(&value);
    if (cls)
        avro_value_iface_decref(cls);
    if (meta)
        avro_schema_decref(meta);
    free(buf);
    return rc;
}

struct sr_avro_file_reader {
    FILE *fp; /* ours: Avro C is told not to close it, so no path closes it twice */
    avro_file_reader_t fr;
    struct sr__event_resolved res;
    char *path;
    uint64_t record; /* 0-based number of the next record */
};

sr_err_t sr_avro_file_reader_open(const char *path, sr_avro_file_reader_t **out,
                                  struct sr_error *err)
{
    if (!path || !out)
        return sr_error_set(err, SR_EINVAL, "sr_avro_file_reader_open: NULL argument");
    sr__avro_init();
    FILE *f = fopen(path, "rb");
    if (!f)
        return sr_error_set(err, errno == ENOENT ? SR_ENOENT : SR_EIO, "%s: cannot open: %s",
                            path, strerror(errno));
    sr_err_t rc = check_header(f, path, err);
    if (rc != SR_OK) {
        fclose(f);
        return rc;
    }
    rewind(f);
    sr_avro_file_reader_t *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        fclose(f);
        free(r);
        return sr_error_set(err, SR_ENOMEM, "%s: Avro reader", path);
    }
    r->fp = f;
    if (avro_file_reader_fp(f, path, 0, &r->fr) != 0) {
        r->fr = NULL;
        sr_error_set(err, SR_EFORMAT, "%s: bad Avro container header: %s", path, avro_strerror());
        sr_avro_file_reader_close(r);
        return SR_EFORMAT;
    }
    avro_schema_t ws = avro_file_reader_get_writer_schema(r->fr);
    rc = sr__event_resolved_init(&r->res, ws, NULL, err);
    avro_schema_decref(ws);
    if (rc != SR_OK) {
        sr_error_prefix(err, "%s", path);
        sr_avro_file_reader_close(r);
        return rc;
    }
    *out = r;
    return SR_OK;
}

sr_err_t sr_avro_file_reader_next(sr_avro_file_reader_t *r, sr_arena_t *arena,
                                  struct sr_event *out, enum sr_event_invalid *why,
                                  struct sr_error *err)
{
    if (!r || !arena || !out)
        return sr_error_set(err, SR_EINVAL, "sr_avro_file_reader_next: NULL argument");
    if (why)
        *why = SR_EVENT_INVALID_NONE;
    int arc = avro_file_reader_read_value(r->fr, &r->res.rw_value);
    if (arc == EOF)
        return SR_ENOENT;
    if (arc != 0)
        return sr_error_set(err, SR_EIO, "%s: record %llu: %s", r->path,
                            (unsigned long long)r->record, avro_strerror());
    uint64_t rec = r->record++;
    sr_err_t rc = sr__event_from_avro(&r->res, arena, out, why, err);
    if (rc == SR_EFORMAT)
        sr_error_prefix(err, "%s: record %llu", r->path, (unsigned long long)rec);
    return rc;
}

void sr_avro_file_reader_close(sr_avro_file_reader_t *r)
{
    if (!r)
        return;
    sr__event_resolved_fini(&r->res);
    if (r->fr)
        avro_file_reader_close(r->fr);
    if (r->fp)
        fclose(r->fp);
    free(r->path);
    free(r);
}

struct sr_avro_file_writer {
    enum sr_avro_file_kind kind;
    FILE *fp; /* ours, as in the reader */
    avro_file_writer_t fw;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    struct sr_buf scratch;
    char *path;
    bool item_sources; /* recommendations: the schema version of the header written */
};

static void writer_free(sr_avro_file_writer_t *w)
{
    if (w->value.iface)
        avro_value_decref(&w->value);
    if (w->iface)
        avro_value_iface_decref(w->iface);
    if (w->schema)
        avro_schema_decref(w->schema);
    sr_buf_free(&w->scratch);
    free(w->path);
    free(w);
}

/* Parses the writer's schema and writes the container header to w->fp. */
static sr_err_t writer_start(sr_avro_file_writer_t *w, const char *json, struct sr_error *err)
{
    sr_err_t rc = sr__schema_parse(json, strlen(json), "embedded schema", &w->schema, err);
    if (rc != SR_OK)
        return rc;
    w->iface = avro_generic_class_from_schema(w->schema);
    if (!w->iface || avro_generic_value_new(w->iface, &w->value) != 0)
        return sr_error_set(err, SR_ENOMEM, "%s: Avro value: %s", w->path, avro_strerror());
    if (avro_file_writer_create_fp(w->fp, w->path, 0, w->schema, &w->fw) != 0)
        return sr_error_set(err, SR_EIO, "%s: Avro header: %s", w->path, avro_strerror());
    return SR_OK;
}

sr_err_t sr_avro_file_writer_create(const char *path, enum sr_avro_file_kind kind,
                                    sr_avro_file_writer_t **out, struct sr_error *err)
{
    if (!path || !out || (kind != SR_AVRO_FILE_EVENTS && kind != SR_AVRO_FILE_RECS))
        return sr_error_set(err, SR_EINVAL, "sr_avro_file_writer_create: bad argument");
    sr__avro_init();
    sr_avro_file_writer_t *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return sr_error_set(err, SR_ENOMEM, "%s: Avro writer", path);
    }
    w->kind = kind;
    /* Our own fopen: Avro C's create refuses an existing file ("wbx"); we truncate. */
    FILE *f = fopen(path, "wb");
    if (!f) {
        sr_err_t rc = sr_error_set(err, SR_EIO, "%s: cannot create: %s", path, strerror(errno));
        writer_free(w);
        return rc;
    }
    w->fp = f;
    /* Recommendations: the header waits for the first record, whose item_sources chooses the
     * schema version (DESIGN §4.3); a file without records gets version 1 at close. */
    if (kind == SR_AVRO_FILE_EVENTS) {
        sr_err_t rc = writer_start(w, sr__avsc_user_event, err);
        if (rc != SR_OK) {
            if (!w->fw)
                fclose(f);
            writer_free(w);
            return rc;
        }
    }
    *out = w;
    return SR_OK;
}

sr_err_t sr_avro_file_writer_append_event(sr_avro_file_writer_t *w, const struct sr_event *ev,
                                          struct sr_error *err)
{
    if (!w || !ev || w->kind != SR_AVRO_FILE_EVENTS)
        return sr_error_set(err, SR_EINVAL, "sr_avro_file_writer_append_event: bad argument");
    sr_err_t rc = sr_event_validate(ev, NULL, err);
    if (rc != SR_OK)
        return err ? (err->code = SR_EINVAL) : SR_EINVAL;
    if ((rc = sr__event_to_avro(ev, &w->value, &w->scratch, err)) != SR_OK)
        return rc;
    if (avro_file_writer_append_value(w->fw, &w->value) != 0)
        return sr_error_set(err, SR_EIO, "%s: append: %s", w->path, avro_strerror());
    return SR_OK;
}

sr_err_t sr_avro_file_writer_append_rec(sr_avro_file_writer_t *w, const struct sr_rec *rec,
                                        struct sr_error *err)
{
    if (!w || !rec || w->kind != SR_AVRO_FILE_RECS)
        return sr_error_set(err, SR_EINVAL, "sr_avro_file_writer_append_rec: bad argument");
    sr_err_t rc = sr__rec_validate(rec, err);
    if (rc != SR_OK)
        return rc;
    if (!w->fw) {
        w->item_sources = sr_rec_is_v2(rec);
        if ((rc = writer_start(w, sr_schema_recommendation_json_for(w->item_sources), err)))
            return rc;
    } else if (sr_rec_is_v2(rec) != w->item_sources) {
        return sr_error_set(err, SR_EINVAL, "%s: a recommendation %s item sources after ones "
                            "%s them (one schema per file)", w->path,
                            sr_rec_is_v2(rec) ? "with" : "without",
                            w->item_sources ? "with" : "without");
    }
    if ((rc = sr__rec_to_avro(rec, &w->value, &w->scratch, err)) != SR_OK)
        return rc;
    if (avro_file_writer_append_value(w->fw, &w->value) != 0)
        return sr_error_set(err, SR_EIO, "%s: append: %s", w->path, avro_strerror());
    return SR_OK;
}

sr_err_t sr_avro_file_writer_close(sr_avro_file_writer_t *w, struct sr_error *err)
{
    if (!w)
        return SR_OK;
    sr_err_t rc = SR_OK;
    if (!w->fw && (rc = writer_start(w, sr_schema_recommendation_json_for(false), err))) {
        if (!w->fw)
            fclose(w->fp);
        writer_free(w);
        return rc;
    }
    if (avro_file_writer_flush(w->fw) != 0)
        rc = sr_error_set(err, SR_EIO, "%s: flush: %s", w->path, avro_strerror());
    if (avro_file_writer_close(w->fw) != 0 && rc == SR_OK)
        rc = sr_error_set(err, SR_EIO, "%s: close: %s", w->path, avro_strerror());
    if (fclose(w->fp) != 0 && rc == SR_OK)
        rc = sr_error_set(err, SR_EIO, "%s: close: %s", w->path, strerror(errno));
    writer_free(w);
    return rc;
}
