/* avro_tool.c — a test helper for the replay integration tests (tests/integration):
 *
 *   avro_tool events IN.jsonl OUT.avro
 *       writes the valid events of a JSON Lines file into an Avro object container file (our
 *       user_event schema) with the schemas API; invalid lines are left out, and their 0-based
 *       line numbers are printed, one per line, on stdout (the test maps record numbers of
 *       the container back to line numbers with them);
 *   avro_tool recs IN.avro OUT.jsonl
 *       reads a container of recommendations (as `streamrec replay --output X.avro` writes it)
 *       with Avro C's generic reader and writes each record as the JSON line the JSON sink
 *       would have written (sr_rec_encode), so the two outputs compare byte for byte; items
 *       carry their source when the container's schema has it (version 2, DESIGN §4.3);
 *   avro_tool recs-v1 IN.avro OUT.jsonl
 *       the same through schema resolution to version 1 (recommendation.avsc), as a reader
 *       that predates item sources decodes a version-2 container.
 * Exits 0 on success, 1 with a one-line reason. Not installed: a tool for tests only. */
#include <avro.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sr_schemas.h"

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "avro_tool: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

static int events(const char *in, const char *out)
{
    FILE *f = fopen(in, "rb");
    if (!f)
        return fail("%s: %s", in, strerror(errno));
    struct sr_event_decoder_params p = {.format = SR_FORMAT_JSON};
    sr_event_decoder_t *dec = NULL;
    sr_avro_file_writer_t *w = NULL;
    sr_arena_t *arena = sr_arena_new(1 << 16);
    struct sr_error err = {0};
    int rc = 0;
    if (sr_event_decoder_new(&p, &dec, &err) != SR_OK ||
        sr_avro_file_writer_create(out, SR_AVRO_FILE_EVENTS, &w, &err) != SR_OK)
        rc = fail("%s%s", err.msg, "");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long n = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        sr_arena_reset(arena);
        struct sr_event ev;
        if (sr_event_decode(dec, line, (size_t)len, arena, &ev, NULL, NULL) != SR_OK)
            printf("%ld\n", n);
        else if (sr_avro_file_writer_append_event(w, &ev, &err) != SR_OK)
            rc = fail("%s: %s", out, err.msg);
        n++;
    }
    if (sr_avro_file_writer_close(w, &err) != SR_OK && !rc)
        rc = fail("%s: %s", out, err.msg);
    free(line);
    fclose(f);
    sr_event_decoder_destroy(dec);
    sr_arena_destroy(arena);
    return rc;
}

/* String field `name` of record v (or of the current branch of a ["null","string"] union). */
static int get_str(avro_value_t *v, const char *name, const char **s, size_t *len)
{
    avro_value_t f, branch;
    if (avro_value_get_by_name(v, name, &f, NULL) != 0)
        return -1;
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, &branch) != 0)
            return -1;
        if (avro_value_get_type(&branch) == AVRO_NULL) {
            *s = NULL;
            *len = 0;
            return 0;
        }
        f = branch;
    }
    size_t size;
    if (avro_value_get_string(&f, s, &size) != 0)
        return -1;
    *len = size ? size - 1 : 0; /* Avro C counts the NUL */
    return 0;
}

static int recs(const char *in, const char *out, const char *reader_json)
{
    avro_file_reader_t r;
    if (avro_file_reader(in, &r) != 0)
        return fail("%s: %s", in, avro_strerror());
    FILE *f = fopen(out, "wb");
    if (!f) {
        avro_file_reader_close(r);
        return fail("%s: %s", out, strerror(errno));
    }
    avro_schema_t ws = avro_file_reader_get_writer_schema(r); /* a new reference */
    avro_schema_t rs = ws;
    if (reader_json && avro_schema_from_json_length(reader_json, strlen(reader_json), &rs) != 0) {
        avro_file_reader_close(r);
        fclose(f);
        return fail("%s: reader schema: %s", in, avro_strerror());
    }
    avro_value_iface_t *iface = avro_generic_class_from_schema(rs);
    avro_value_t v, wv;
    avro_generic_value_new(iface, &v);
    avro_value_iface_t *resolver = reader_json ? avro_resolved_writer_new(ws, rs) : NULL;
    if (reader_json && !resolver) {
        avro_file_reader_close(r);
        fclose(f);
        return fail("%s: not readable as version 1: %s", in, avro_strerror());
    }
    if (resolver) {
        avro_resolved_writer_new_value(resolver, &wv);
        avro_resolved_writer_set_dest(&wv, &v);
    }
    sr_rec_encoder_t *enc = NULL;
    struct sr_error err = {0};
    struct sr_buf buf = {0};
    struct sr_scored_item *items = NULL;
    size_t items_cap = 0;
    int rc = sr_rec_encoder_new(SR_FORMAT_JSON, 0, &enc, &err) != SR_OK;
    while (!rc && avro_file_reader_read_value(r, resolver ? &wv : &v) == 0) {
        struct sr_rec rec = {0};
        avro_value_t fld, src, arr;
        int bad = get_str(&v, "session_id", &rec.session_id, &rec.session_id_len) ||
                  get_str(&v, "user_id", &rec.user_id, &rec.user_id_len) ||
                  get_str(&v, "model_version", &rec.model_version, &rec.model_version_len) ||
                  avro_value_get_by_name(&v, "event_timestamp_ms", &fld, NULL) ||
                  avro_value_get_long(&fld, &rec.event_timestamp_ms) ||
                  avro_value_get_by_name(&v, "source", &src, NULL) ||
                  get_str(&src, "topic", &rec.source_topic, &rec.source_topic_len) ||
                  avro_value_get_by_name(&src, "partition", &fld, NULL) ||
                  avro_value_get_int(&fld, &rec.source_partition) ||
                  avro_value_get_by_name(&src, "offset", &fld, NULL) ||
                  avro_value_get_long(&fld, &rec.source_offset) ||
                  avro_value_get_by_name(&v, "items", &arr, NULL);
        size_t n = 0;
        if (!bad && avro_value_get_size(&arr, &n) == 0 && n > items_cap) {
            items_cap = n;
            items = realloc(items, n * sizeof *items);
            bad = !items;
        }
        for (size_t i = 0; !bad && i < n; i++) {
            avro_value_t it, sc;
            bad = avro_value_get_by_index(&arr, i, &it, NULL) ||
                  get_str(&it, "item_id", &items[i].item_id, &items[i].item_id_len) ||
                  avro_value_get_by_name(&it, "score", &sc, NULL) ||
                  avro_value_get_double(&sc, &items[i].score);
            size_t sl;
            items[i].source = NULL;
            if (!bad && avro_value_get_by_name(&it, "source", &sc, NULL) == 0) {
                bad = get_str(&it, "source", &items[i].source, &sl);
                rec.item_sources = true;
            }
        }
        if (bad) {
            rc = fail("%s: unexpected record layout: %s", in, avro_strerror());
            break;
        }
        rec.items = items;
        rec.n_items = n;
        sr_buf_reset(&buf);
        if (sr_rec_encode(enc, &rec, &buf, &err) != SR_OK) {
            rc = fail("%s: %s", in, err.msg);
            break;
        }
        fwrite(buf.data, 1, buf.len, f);
        fputc('\n', f);
        avro_value_reset(&v);
    }
    if (fclose(f) != 0 && !rc)
        rc = fail("%s: %s", out, strerror(errno));
    free(items);
    sr_buf_free(&buf);
    sr_rec_encoder_destroy(enc);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    if (resolver) {
        avro_value_decref(&wv);
        avro_value_iface_decref(resolver);
        avro_schema_decref(rs);
    }
    avro_schema_decref(ws);
    avro_file_reader_close(r);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "events"))
        return events(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "recs"))
        return recs(argv[2], argv[3], NULL);
    if (argc == 4 && !strcmp(argv[1], "recs-v1"))
        return recs(argv[2], argv[3], sr_schema_recommendation_json());
    fprintf(stderr, "usage: avro_tool events IN.jsonl OUT.avro | recs[-v1] IN.avro OUT.jsonl\n");
    return 2;
}
