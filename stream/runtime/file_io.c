/* file_io.c — the offline source and sink: JSON Lines or Avro container files in, JSON Lines
 * or Avro container files out. Records keep their file order; a record's offset is its 0-based
 * record number (a JSON line, blank or not, is one record). Avro records are re-encoded as bare
 * Avro with our schema so the graph's one decode path handles every source.
 * Owns its FILE handles, Avro readers/writers and line buffers. One thread. */
#include "sr_stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct sr_file_source {
    FILE *f;                     /* JSON Lines */
    sr_avro_file_reader_t *avro; /* or an Avro container */
    sr_event_encoder_t *enc;
    sr_arena_t *scratch;
    struct sr_buf buf;
    char *line;
    size_t line_cap;
    int64_t next_offset;
    uint64_t size;
    char name[256];
    bool is_stdin;
    bool eof;                    /* Avro C's reader must not be read again after its EOF: a
                                  * second read past the end fails ("Cannot read 16 bytes") */
};

sr_err_t sr_file_source_open(const char *path, sr_file_source_t **out, struct sr_error *err)
{
    *out = NULL;
    sr_file_source_t *s = calloc(1, sizeof *s);
    if (!s)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    const char *base = strrchr(path, '/');
    snprintf(s->name, sizeof s->name, "%s", base ? base + 1 : path);
    if (strcmp(path, "-") == 0) {
        s->f = stdin;
        s->is_stdin = true;
        snprintf(s->name, sizeof s->name, "stdin");
        *out = s;
        return SR_OK;
    }
    s->f = fopen(path, "rb");
    if (!s->f) {
        sr_error_set(err, errno == ENOENT ? SR_ENOENT : SR_EIO, "%s: cannot open: %s", path,
                     strerror(errno));
        free(s);
        return err ? err->code : SR_EIO;
    }
    struct stat st;
    if (fstat(fileno(s->f), &st) == 0)
        s->size = (uint64_t)st.st_size;
    unsigned char magic[4];
    size_t got = fread(magic, 1, 4, s->f);
    if (got == 4 && sr_avro_is_container(magic, 4)) {
        fclose(s->f);
        s->f = NULL;
        sr_err_t rc = sr_avro_file_reader_open(path, &s->avro, err);
        if (rc == SR_OK)
            rc = sr_event_encoder_new(SR_FORMAT_AVRO, 0, &s->enc, err);
        if (rc == SR_OK && !(s->scratch = sr_arena_new(1 << 16)))
            rc = sr_error_set(err, SR_ENOMEM, "out of memory");
        if (rc != SR_OK) {
            sr_file_source_close(s);
            return rc;
        }
    } else {
        rewind(s->f);
    }
    *out = s;
    return SR_OK;
}

void sr_file_source_close(sr_file_source_t *s)
{
    if (!s)
        return;
    if (s->f && !s->is_stdin)
        fclose(s->f);
    sr_avro_file_reader_close(s->avro);
    sr_event_encoder_destroy(s->enc);
    sr_arena_destroy(s->scratch);
    sr_buf_free(&s->buf);
    free(s->line);
    free(s);
}

const char *sr_file_source_format(const sr_file_source_t *s) { return s->avro ? "avro" : "json"; }

const char *sr_file_source_writer_schema(const sr_file_source_t *s)
{
    return s->avro ? sr_schema_user_event_json() : NULL;
}

const char *sr_file_source_name(const sr_file_source_t *s) { return s->name; }

void sr_file_source_progress(const sr_file_source_t *s, uint64_t *done, uint64_t *total)
{
    long pos = s->f && !s->is_stdin ? ftell(s->f) : -1;
    *done = pos > 0 ? (uint64_t)pos : 0;
    *total = s->avro ? 0 : s->size;
}

sr_err_t sr_file_source_read(sr_file_source_t *s, int32_t max, sr_arena_t *arena,
                             struct sr_batch *b, struct sr_stats *stats, struct sr_error *err)
{
    /* Rows are filled first into a batch of `max` rows, then n is cut to what was read. */
    struct sr_source_cols src;
    sr_err_t rc = sr_batch_init_source(b, arena, max, &src, err);
    if (rc != SR_OK)
        return rc;
    const char **rp = src.raw;
    int64_t *op = src.offset;
    int32_t n = 0;
    while (n < max && !s->eof) {
        if (s->f) {
            ssize_t len = getline(&s->line, &s->line_cap, s->f);
            if (len < 0) {
                if (ferror(s->f))
                    return sr_error_set(err, SR_EIO, "%s: read error: %s", s->name, strerror(errno));
                break;
            }
            while (len > 0 && (s->line[len - 1] == '\n' || s->line[len - 1] == '\r'))
                len--;
            rp[n] = sr_arena_strndup(arena, s->line, (size_t)len);
            if (!rp[n])
                return sr_error_set(err, SR_ENOMEM, "out of memory");
            src.raw_len[n] = (uint32_t)len;
        } else {
            struct sr_event ev;
            enum sr_event_invalid why = SR_EVENT_INVALID_NONE;
            struct sr_error e;
            sr_arena_reset(s->scratch);
            rc = sr_avro_file_reader_next(s->avro, s->scratch, &ev, &why, &e);
            if (rc == SR_ENOENT) {
                s->eof = true;
                break;
            }
            if (rc == SR_EFORMAT) {
                sr_stats_invalid(stats, sr_event_invalid_name(why));
                __atomic_fetch_add(&stats->events, 1, __ATOMIC_RELAXED);
                s->next_offset++;
                continue;
            }
            if (rc != SR_OK)
                return sr_error_set(err, rc, "%s: record %lld: %s", s->name,
                                    (long long)s->next_offset, e.msg);
            sr_buf_reset(&s->buf);
            rc = sr_event_encode(s->enc, &ev, &s->buf, err);
            if (rc != SR_OK)
                return rc;
            rp[n] = sr_arena_strndup(arena, s->buf.data, s->buf.len);
            if (!rp[n])
                return sr_error_set(err, SR_ENOMEM, "out of memory");
            src.raw_len[n] = (uint32_t)s->buf.len;
        }
        op[n] = s->next_offset++;
        n++;
    }
    /* partitions stay zeroed: a file is partition 0 */
    b->n = n;
    b->n_sel = n;
    return SR_OK;
}

/* ---- sink ----------------------------------------------------------------------------- */

struct sr_file_sink {
    struct sr_sink iface;
    FILE *f;
    bool is_stdout;
    sr_avro_file_writer_t *avro;
    sr_rec_encoder_t *enc;
    struct sr_buf buf;
    char path[512];
};

static sr_err_t sink_emit(void *opaque, const struct sr_batch *b, int32_t row, const struct sr_rec *rec,
                          struct sr_error *err)
{
    (void)b;
    (void)row;
    sr_file_sink_t *s = opaque;
    if (s->avro)
        return sr_avro_file_writer_append_rec(s->avro, rec, err);
    sr_err_t rc = sr_rec_encode(s->enc, rec, &s->buf, err);
    if (rc == SR_OK && sr_buf_append(&s->buf, "\n", 1) != SR_OK)
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
    return rc;
}

/* One write per batch: a crash leaves whole batches (plus at most one torn line). */
static sr_err_t sink_flush(void *opaque, struct sr_error *err)
{
    sr_file_sink_t *s = opaque;
    if (s->avro || !s->buf.len)
        return SR_OK;
    if (fwrite(s->buf.data, 1, s->buf.len, s->f) != s->buf.len || fflush(s->f) != 0)
        return sr_error_set(err, SR_EIO, "%s: write error: %s", s->path, strerror(errno));
    sr_buf_reset(&s->buf);
    return SR_OK;
}

sr_err_t sr_file_sink_open(const char *path, sr_file_sink_t **out, struct sr_error *err)
{
    *out = NULL;
    sr_file_sink_t *s = calloc(1, sizeof *s);
    if (!s)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    snprintf(s->path, sizeof s->path, "%s", path);
    s->iface = (struct sr_sink){.emit = sink_emit, .flush = sink_flush, .opaque = s};
    size_t len = strlen(path);
    sr_err_t rc = SR_OK;
    if (len > 5 && strcmp(path + len - 5, ".avro") == 0) {
        rc = sr_avro_file_writer_create(path, SR_AVRO_FILE_RECS, &s->avro, err);
    } else {
        if (strcmp(path, "-") == 0) {
            s->f = stdout;
            s->is_stdout = true;
        } else if (!(s->f = fopen(path, "wb"))) {
            rc = sr_error_set(err, SR_EIO, "%s: cannot create: %s", path, strerror(errno));
        }
        if (rc == SR_OK)
            rc = sr_rec_encoder_new(SR_FORMAT_JSON, 0, &s->enc, err);
    }
    if (rc != SR_OK) {
        sr_file_sink_close(s, NULL);
        return rc;
    }
    *out = s;
    return SR_OK;
}

struct sr_sink *sr_file_sink_iface(sr_file_sink_t *s) { return &s->iface; }

sr_err_t sr_file_sink_close(sr_file_sink_t *s, struct sr_error *err)
{
    if (!s)
        return SR_OK;
    sr_err_t rc = SR_OK;
    if (s->f) {
        rc = sink_flush(s, err);
        if (!s->is_stdout && fclose(s->f) != 0 && rc == SR_OK)
            rc = sr_error_set(err, SR_EIO, "%s: close: %s", s->path, strerror(errno));
    }
    if (s->avro) {
        sr_err_t r2 = sr_avro_file_writer_close(s->avro, err);
        if (rc == SR_OK)
            rc = r2;
    }
    sr_rec_encoder_destroy(s->enc);
    sr_buf_free(&s->buf);
    free(s);
    return rc;
}
