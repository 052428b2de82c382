/* test_schemas.c — the event and recommendation codecs: every invalid-event reason, JSON / Avro /
 * Confluent round trips, writer-schema evolution (added field, reordered fields, dropped
 * optional field), registry lookups, truncation at every prefix, length bombs, container files,
 * and the recommendation JSON byte for byte against tests/data/gpt2-small.events.expected.jsonl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <float.h>
#include <math.h>
#include <cmocka.h>

#include <avro.h>
#include <jansson.h>
#include <time.h>

#include "sr_schemas.h"

static sr_arena_t *arena;
static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    arena = sr_arena_new(1 << 16);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sr_test_schemas_XXXXXX");
    return arena && mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sr_arena_destroy(arena);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static sr_event_decoder_t *decoder(enum sr_format fmt, const char *writer_json)
{
    struct sr_event_decoder_params p = {.format = fmt, .writer_schema_json = writer_json,
                                        .registry_dir = tmpdir};
    sr_event_decoder_t *d = NULL;
    struct sr_error err;
    assert_int_equal(sr_event_decoder_new(&p, &d, &err), SR_OK);
    return d;
}

static enum sr_event_invalid decode_why(sr_event_decoder_t *d, const void *buf, size_t len)
{
    struct sr_event ev;
    enum sr_event_invalid why = SR_EVENT_INVALID_NONE;
    struct sr_error err = {0};
    sr_err_t rc = sr_event_decode(d, buf, len, arena, &ev, &why, &err);
    if (rc == SR_OK)
        assert_int_equal(why, SR_EVENT_INVALID_NONE);
    else {
        assert_int_equal(rc, SR_EFORMAT);
        assert_int_equal(err.code, SR_EFORMAT);
        assert_true(strlen(err.msg) > 0);
        assert_null(strchr(err.msg, '\n'));
    }
    return why;
}

static enum sr_event_invalid json_why(const char *s)
{
    sr_event_decoder_t *d = decoder(SR_FORMAT_JSON, NULL);
    enum sr_event_invalid why = decode_why(d, s, strlen(s));
    sr_event_decoder_destroy(d);
    return why;
}

static const struct sr_event ev1 = {"s1", 2, "u1", 2, "i42", 3, "view", 4, 1700000000000};

static void assert_event_eq(const struct sr_event *a, const struct sr_event *b)
{
#define EQS(f)                                                                                   \
    do {                                                                                         \
        assert_int_equal(a->f##_len, b->f##_len);                                                \
        assert_memory_equal(a->f, b->f, a->f##_len);                                             \
    } while (0)
    EQS(session_id);
    EQS(item_id);
    EQS(event_type);
    if (!a->user_id || !b->user_id)
        assert_ptr_equal(a->user_id, b->user_id);
    else
        EQS(user_id);
    assert_int_equal(a->timestamp_ms, b->timestamp_ms);
#undef EQS
}

/* ---- names ---------------------------------------------------------------------------- */

static void test_invalid_names(void **state)
{
    (void)state;
    assert_string_equal(sr_event_invalid_name(SR_EVENT_INVALID_MISSING_FIELD), "missing_field");
    assert_string_equal(sr_event_invalid_name(SR_EVENT_INVALID_TRUNCATED_AVRO), "truncated_avro");
    assert_string_equal(sr_event_invalid_name(SR_EVENT_INVALID__COUNT), "unknown");
    for (int i = 0; i < SR_EVENT_INVALID__COUNT; i++) {
        const char *n = sr_event_invalid_name((enum sr_event_invalid)i);
        for (const char *c = n; *c; c++)
            assert_true((*c >= 'a' && *c <= 'z') || *c == '_' || (*c >= '0' && *c <= '9'));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(n, sr_event_invalid_name((enum sr_event_invalid)j));
    }
    enum sr_format f;
    assert_int_equal(sr_format_parse("avro-confluent", &f, NULL), SR_OK);
    assert_int_equal(f, SR_FORMAT_AVRO_CONFLUENT);
    assert_int_equal(sr_format_parse("xml", &f, NULL), SR_ECONFIG);
    assert_non_null(strstr(sr_schema_user_event_json(), "\"UserEvent\""));
    assert_non_null(strstr(sr_schema_recommendation_json(), "\"ScoredItem\""));
}

/* ---- JSON events ---------------------------------------------------------------------- */

static void test_json_valid(void **state)
{
    (void)state;
    sr_event_decoder_t *d = decoder(SR_FORMAT_JSON, NULL);
    struct sr_event ev;
    enum sr_event_invalid why;
    const char *s = "{\"session_id\": \"s1\", \"user_id\": \"u1\", \"item_id\": \"i42\", "
                    "\"event_type\": \"view\", \"timestamp_ms\": 1700000000000, \"extra\": [1]}\n";
    assert_int_equal(sr_event_decode(d, s, strlen(s), arena, &ev, &why, NULL), SR_OK);
    assert_event_eq(&ev, &ev1);
    s = "{\"session_id\": \"s1\", \"item_id\": \"i\", \"event_type\": \"v\", \"timestamp_ms\": 0}";
    assert_int_equal(sr_event_decode(d, s, strlen(s), arena, &ev, &why, NULL), SR_OK);
    assert_null(ev.user_id);
    assert_int_equal(ev.timestamp_ms, 0);
    s = "{\"session_id\": \"s\\u00e9\", \"user_id\": null, \"item_id\": \"i\", \"event_type\": "
        "\"v\", \"timestamp_ms\": 5}";
    assert_int_equal(sr_event_decode(d, s, strlen(s), arena, &ev, &why, NULL), SR_OK);
    assert_null(ev.user_id);
    assert_int_equal(ev.session_id_len, 3);
    assert_memory_equal(ev.session_id, "s\xc3\xa9", 3);
    sr_event_decoder_destroy(d);
}

#define OK_TAIL "\"item_id\": \"a\", \"event_type\": \"view\", \"timestamp_ms\": 1}"

static void test_json_invalid_reasons(void **state)
{
    (void)state;
    assert_int_equal(json_why(""), SR_EVENT_INVALID_EMPTY_MESSAGE);
    assert_int_equal(json_why("not json at all"), SR_EVENT_INVALID_INVALID_JSON);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": \"a\", \"event_type\": "
                              "\"view\""),
                     SR_EVENT_INVALID_INVALID_JSON);
    assert_int_equal(json_why("\x00\x01\x02"), SR_EVENT_INVALID_EMPTY_MESSAGE); /* strlen 0 */
    {
        sr_event_decoder_t *d = decoder(SR_FORMAT_JSON, NULL);
        assert_int_equal(decode_why(d, "\x00\x01\x02", 3), SR_EVENT_INVALID_INVALID_JSON);
        /* jansson checks UTF-8 of JSON text */
        const char *bad = "{\"session_id\": \"\xff\", " OK_TAIL;
        assert_int_equal(decode_why(d, bad, strlen(bad)), SR_EVENT_INVALID_INVALID_JSON);
        sr_event_decoder_destroy(d);
    }
    assert_int_equal(json_why("{\"session_id\": \"x\", \"session_id\": \"y\", " OK_TAIL),
                     SR_EVENT_INVALID_INVALID_JSON);
    assert_int_equal(json_why("{\"session_id\": \"x\", " OK_TAIL " trailing"),
                     SR_EVENT_INVALID_INVALID_JSON);
    assert_int_equal(json_why("[]"), SR_EVENT_INVALID_NOT_OBJECT);
    assert_int_equal(json_why("42"), SR_EVENT_INVALID_NOT_OBJECT);
    assert_int_equal(json_why("{}"), SR_EVENT_INVALID_MISSING_FIELD);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"event_type\": \"view\", \"timestamp_ms\": 1}"),
                     SR_EVENT_INVALID_MISSING_FIELD);
    /* no timestamp_ms: decoded, marked absent (the runtime takes the record's timestamp) */
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": \"a\", \"event_type\": \"v\"}"),
                     SR_EVENT_INVALID_NONE);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": \"a\", \"event_type\": \"v\", "
                              "\"timestamp_ms\": null}"),
                     SR_EVENT_INVALID_NONE);
    assert_int_equal(json_why("{\"session_id\": null, " OK_TAIL), SR_EVENT_INVALID_WRONG_TYPE);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": 5, \"event_type\": \"view\", "
                              "\"timestamp_ms\": 1}"),
                     SR_EVENT_INVALID_WRONG_TYPE);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"user_id\": 7, " OK_TAIL),
                     SR_EVENT_INVALID_WRONG_TYPE);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": \"a\", \"event_type\": \"view\", "
                              "\"timestamp_ms\": \"yesterday\"}"),
                     SR_EVENT_INVALID_WRONG_TYPE);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": \"a\", \"event_type\": \"view\", "
                              "\"timestamp_ms\": 1.5}"),
                     SR_EVENT_INVALID_WRONG_TYPE);
    assert_int_equal(json_why("{\"session_id\": \"\", " OK_TAIL), SR_EVENT_INVALID_EMPTY_FIELD);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": \"\", \"event_type\": \"v\", "
                              "\"timestamp_ms\": 1}"),
                     SR_EVENT_INVALID_EMPTY_FIELD);
    assert_int_equal(json_why("{\"session_id\": \"x\", \"item_id\": \"a\", \"event_type\": \"view\", "
                              "\"timestamp_ms\": -1}"),
                     SR_EVENT_INVALID_BAD_TIMESTAMP);
    /* 64 KiB is accepted, one byte more is not */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = SR_EVENT_FIELD_MAX + (size_t)extra;
        char *s = malloc(n + 200);
        int k = sprintf(s, "{\"session_id\": \"");
        memset(s + k, 'a', n);
        strcpy(s + k + n, "\", " OK_TAIL);
        assert_int_equal(json_why(s),
                         extra ? SR_EVENT_INVALID_FIELD_TOO_LONG : SR_EVENT_INVALID_NONE);
        free(s);
    }
}

static void test_json_fixture_lines(void **state)
{
    (void)state;
    FILE *f = fopen(SR_TEST_DATA "/gpt2-small.events.jsonl", "rb");
    assert_non_null(f);
    sr_event_decoder_t *d = decoder(SR_FORMAT_JSON, NULL);
    char line[4096];
    int valid = 0, invalid = 0, counts[SR_EVENT_INVALID__COUNT] = {0};
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            n--;
        sr_arena_reset(arena);
        enum sr_event_invalid why = decode_why(d, line, n);
        counts[why]++;
        if (why == SR_EVENT_INVALID_NONE)
            valid++;
        else
            invalid++;
    }
    fclose(f);
    sr_event_decoder_destroy(d);
    /* 950 lines are well-formed events (checked with a grep of the exact line shape) */
    assert_int_equal(valid, 950);
    assert_int_equal(invalid, 50);
    assert_true(counts[SR_EVENT_INVALID_INVALID_JSON] > 0);
    assert_true(counts[SR_EVENT_INVALID_NOT_OBJECT] > 0);
    assert_true(counts[SR_EVENT_INVALID_MISSING_FIELD] > 0);
    assert_true(counts[SR_EVENT_INVALID_WRONG_TYPE] > 0);
}

static void test_json_event_roundtrip(void **state)
{
    (void)state;
    sr_event_encoder_t *e;
    assert_int_equal(sr_event_encoder_new(SR_FORMAT_JSON, 0, &e, NULL), SR_OK);
    struct sr_buf b = {0};
    assert_int_equal(sr_event_encode(e, &ev1, &b, NULL), SR_OK);
    const char *want = "{\"session_id\": \"s1\", \"user_id\": \"u1\", \"item_id\": \"i42\", "
                       "\"event_type\": \"view\", \"timestamp_ms\": 1700000000000}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    struct sr_event odd = {"a\"b\\c\n\x01", 7, NULL, 0, "\xe2\x82\xac", 3, "t", 1, 9};
    sr_buf_reset(&b);
    assert_int_equal(sr_event_encode(e, &odd, &b, NULL), SR_OK);
    sr_event_decoder_t *d = decoder(SR_FORMAT_JSON, NULL);
    struct sr_event back;
    assert_int_equal(sr_event_decode(d, b.data, b.len, arena, &back, NULL, NULL), SR_OK);
    assert_event_eq(&back, &odd);
    /* invalid events are refused by the encoder */
    struct sr_event bad = ev1;
    bad.item_id_len = 0;
    struct sr_error err;
    assert_int_equal(sr_event_encode(e, &bad, &b, &err), SR_EINVAL);
    sr_event_decoder_destroy(d);
    sr_event_encoder_destroy(e);
    sr_buf_free(&b);
}

/* ---- Avro events ---------------------------------------------------------------------- */

static void encode_event(enum sr_format fmt, int32_t id, const struct sr_event *ev,
                         struct sr_buf *b)
{
    sr_event_encoder_t *e;
    assert_int_equal(sr_event_encoder_new(fmt, id, &e, NULL), SR_OK);
    sr_buf_reset(b);
    assert_int_equal(sr_event_encode(e, ev, b, NULL), SR_OK);
    sr_event_encoder_destroy(e);
}

static void test_avro_roundtrip(void **state)
{
    (void)state;
    struct sr_buf b = {0};
    struct sr_event ev2 = ev1, back;
    ev2.user_id = NULL;
    const struct sr_event *evs[] = {&ev1, &ev2};
    write_file("1.avsc", sr_schema_user_event_json());
    for (int k = 0; k < 2; k++) {
        encode_event(SR_FORMAT_AVRO, 0, evs[k], &b);
        sr_event_decoder_t *d = decoder(SR_FORMAT_AVRO, NULL);
        assert_int_equal(sr_event_decode(d, b.data, b.len, arena, &back, NULL, NULL), SR_OK);
        assert_event_eq(&back, evs[k]);
        sr_event_decoder_destroy(d);

        encode_event(SR_FORMAT_AVRO_CONFLUENT, 1, evs[k], &b);
        assert_memory_equal(b.data, "\0\0\0\0\1", 5);
        d = decoder(SR_FORMAT_AVRO_CONFLUENT, NULL);
        for (int rep = 0; rep < 3; rep++) { /* cached after the first */
            assert_int_equal(sr_event_decode(d, b.data, b.len, arena, &back, NULL, NULL), SR_OK);
            assert_event_eq(&back, evs[k]);
        }
        sr_event_decoder_destroy(d);
    }
    sr_buf_free(&b);
}

/* A producer's schema: other record name and namespace, fields reordered, one added. */
static const char *evolved_schema =
    "{\"type\": \"record\", \"name\": \"Click\", \"namespace\": \"com.acme\", \"fields\": ["
    "{\"name\": \"timestamp_ms\", \"type\": \"long\"},"
    "{\"name\": \"item_id\", \"type\": \"string\"},"
    "{\"name\": \"price\", \"type\": [\"null\", \"double\"], \"default\": null},"
    "{\"name\": \"event_type\", \"type\": \"string\"},"
    "{\"name\": \"tags\", \"type\": {\"type\": \"array\", \"items\": \"string\"}},"
    "{\"name\": \"user_id\", \"type\": [\"null\", \"string\"]},"
    "{\"name\": \"session_id\", \"type\": \"string\"}]}";

/* Lacks the optional user_id: it takes its default (null). Timestamp as int is promoted. */
static const char *minimal_schema =
    "{\"type\": \"record\", \"name\": \"UserEvent\", \"fields\": ["
    "{\"name\": \"session_id\", \"type\": \"string\"},"
    "{\"name\": \"item_id\", \"type\": \"string\"},"
    "{\"name\": \"event_type\", \"type\": \"string\"},"
    "{\"name\": \"timestamp_ms\", \"type\": \"int\"}]}";

/* Encodes ev with an arbitrary writer schema via Avro C's generic values. */
static void encode_with_schema(const char *schema_json, const struct sr_event *ev,
                               struct sr_buf *b)
{
    avro_schema_t s;
    assert_int_equal(avro_schema_from_json_length(schema_json, strlen(schema_json), &s), 0);
    avro_value_iface_t *cls = avro_generic_class_from_schema(s);
    avro_value_t v, f, br, it;
    assert_int_equal(avro_generic_value_new(cls, &v), 0);
    char tmp[256];
#define STR(name, p, n)                                                                          \
    if (avro_value_get_by_name(&v, name, &f, NULL) == 0) {                                       \
        memcpy(tmp, p, n);                                                                       \
        tmp[n] = 0;                                                                              \
        assert_int_equal(avro_value_set_string(&f, tmp), 0);                                     \
    }
    STR("session_id", ev->session_id, ev->session_id_len);
    STR("item_id", ev->item_id, ev->item_id_len);
    STR("event_type", ev->event_type, ev->event_type_len);
#undef STR
    if (avro_value_get_by_name(&v, "timestamp_ms", &f, NULL) == 0) {
        if (avro_value_get_type(&f) == AVRO_INT32)
            avro_value_set_int(&f, (int32_t)ev->timestamp_ms);
        else
            avro_value_set_long(&f, ev->timestamp_ms);
    }
    if (avro_value_get_by_name(&v, "user_id", &f, NULL) == 0) {
        if (ev->user_id) {
            memcpy(tmp, ev->user_id, ev->user_id_len);
            tmp[ev->user_id_len] = 0;
            avro_value_set_branch(&f, 1, &br);
            avro_value_set_string(&br, tmp);
        } else {
            avro_value_set_branch(&f, 0, &br);
            avro_value_set_null(&br);
        }
    }
    if (avro_value_get_by_name(&v, "price", &f, NULL) == 0) {
        avro_value_set_branch(&f, 1, &br);
        avro_value_set_double(&br, 9.5);
    }
    if (avro_value_get_by_name(&v, "tags", &f, NULL) == 0) {
        avro_value_append(&f, &it, NULL);
        avro_value_set_string(&it, "new");
        avro_value_append(&f, &it, NULL);
        avro_value_set_string(&it, "sale");
    }
    static char raw[4096];
    avro_writer_t w = avro_writer_memory(raw, sizeof raw);
    assert_int_equal(avro_value_write(w, &v), 0);
    sr_buf_reset(b);
    sr_buf_append(b, raw, (size_t)avro_writer_tell(w));
    avro_writer_free(w);
    avro_value_decref(&v);
    avro_value_iface_decref(cls);
    avro_schema_decref(s);
}

static void test_avro_schema_evolution(void **state)
{
    (void)state;
    struct sr_buf b = {0};
    struct sr_event back, want = ev1;
    want.timestamp_ms = 1700000000; /* fits the int of minimal_schema */
    /* bare Avro with a configured writer schema */
    encode_with_schema(evolved_schema, &want, &b);
    sr_event_decoder_t *d = decoder(SR_FORMAT_AVRO, evolved_schema);
    assert_int_equal(sr_event_decode(d, b.data, b.len, arena, &back, NULL, NULL), SR_OK);
    assert_event_eq(&back, &want);
    sr_event_decoder_destroy(d);

    encode_with_schema(minimal_schema, &want, &b);
    d = decoder(SR_FORMAT_AVRO, minimal_schema);
    assert_int_equal(sr_event_decode(d, b.data, b.len, arena, &back, NULL, NULL), SR_OK);
    struct sr_event want_null = want;
    want_null.user_id = NULL;
    assert_event_eq(&back, &want_null);
    sr_event_decoder_destroy(d);

    /* the same through the registry: ids 2 and 3 */
    write_file("2.avsc", evolved_schema);
    write_file("3.avsc", minimal_schema);
    d = decoder(SR_FORMAT_AVRO_CONFLUENT, NULL);
    struct sr_buf framed = {0};
    for (int id = 2; id <= 3; id++) {
        encode_with_schema(id == 2 ? evolved_schema : minimal_schema, &want, &b);
        sr_buf_reset(&framed);
        unsigned char h[5] = {0, 0, 0, 0, (unsigned char)id};
        sr_buf_append(&framed, h, 5);
        sr_buf_append(&framed, b.data, b.len);
        assert_int_equal(sr_event_decode(d, framed.data, framed.len, arena, &back, NULL, NULL),
                         SR_OK);
        assert_event_eq(&back, id == 2 ? &want : &want_null);
    }
    sr_event_decoder_destroy(d);
    sr_buf_free(&framed);
    sr_buf_free(&b);
}

static void test_avro_decoder_config_errors(void **state)
{
    (void)state;
    struct sr_error err;
    sr_event_decoder_t *d = NULL;
    struct sr_event_decoder_params p = {.format = SR_FORMAT_AVRO, .writer_schema_json = "{nope"};
    assert_int_equal(sr_event_decoder_new(&p, &d, &err), SR_ECONFIG);
    p.writer_schema_json = "{\"type\": \"record\", \"name\": \"E\", \"fields\": ["
                           "{\"name\": \"session_id\", \"type\": \"string\"}]}";
    assert_int_equal(sr_event_decoder_new(&p, &d, &err), SR_ECONFIG);
    assert_non_null(strstr(err.msg, "item_id"));
    p.writer_schema_json = NULL;
    p.writer_schema_path = "/nonexistent/x.avsc";
    assert_int_not_equal(sr_event_decoder_new(&p, &d, &err), SR_OK);
    p = (struct sr_event_decoder_params){.format = SR_FORMAT_AVRO_CONFLUENT};
    assert_int_equal(sr_event_decoder_new(&p, &d, &err), SR_ECONFIG);
    assert_null(d);
}

static void test_confluent_reasons(void **state)
{
    (void)state;
    write_file("1.avsc", sr_schema_user_event_json());
    write_file("4.avsc", "{\"type\": \"record\", \"name\": \"E\", \"fields\": ["
                         "{\"name\": \"session_id\", \"type\": \"string\"}]}");
    write_file("5.avsc", "this is not a schema");
    sr_event_decoder_t *d = decoder(SR_FORMAT_AVRO_CONFLUENT, NULL);
    struct sr_buf b = {0};
    encode_event(SR_FORMAT_AVRO_CONFLUENT, 1, &ev1, &b);
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_NONE);
    b.data[0] = 1;
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_BAD_MAGIC);
    b.data[0] = 0;
    for (int id = 4; id <= 9; id++) {
        b.data[4] = (char)id;
        enum sr_event_invalid want = id <= 5 ? SR_EVENT_INVALID_INCOMPATIBLE_SCHEMA
                                             : SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID;
        assert_int_equal(decode_why(d, b.data, b.len), want);
        assert_int_equal(decode_why(d, b.data, b.len), want); /* cached negative */
    }
    b.data[1] = (char)0xff; /* id 4278190089 */
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID);
    assert_int_equal(decode_why(d, "", 0), SR_EVENT_INVALID_EMPTY_MESSAGE);
    assert_int_equal(decode_why(d, "\0\0\0", 3), SR_EVENT_INVALID_TRUNCATED_AVRO);
    sr_event_decoder_destroy(d);
    sr_buf_free(&b);
}

/* schemas.registry.dir: the registry's JSON form {"schema": "..."} is read like a plain .avsc,
 * and a missing id is asked again after the negative-cache interval (not only after a
 * restart). */
static void test_confluent_dir_json_form_and_negative_cache(void **state)
{
    (void)state;
    struct sr_registry_params rp;
    sr_registry_params_default(&rp);
    rp.negative_cache_ms = 100;
    struct sr_event_decoder_params p = {.format = SR_FORMAT_AVRO_CONFLUENT,
                                        .registry_dir = tmpdir, .registry = &rp};
    sr_event_decoder_t *d = NULL;
    assert_int_equal(sr_event_decoder_new(&p, &d, NULL), SR_OK);
    struct sr_buf b = {0};
    encode_event(SR_FORMAT_AVRO_CONFLUENT, 31, &ev1, &b);
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID);
    /* the file appears, in the registry's form (as GET /schemas/ids/31 returns it) */
    json_t *j = json_pack("{s:s, s:[]}", "schema", sr_schema_user_event_json(), "references");
    char *text = json_dumps(j, 0);
    write_file("31.avsc", text);
    free(text);
    json_decref(j);
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID); /* cached */
    struct timespec ts = {0, 150 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_NONE);
    sr_event_decoder_destroy(d);
    sr_buf_free(&b);
}

static void test_avro_truncated_every_prefix(void **state)
{
    (void)state;
    write_file("1.avsc", sr_schema_user_event_json());
    struct sr_buf b = {0};
    for (int framed = 0; framed <= 1; framed++) {
        encode_event(framed ? SR_FORMAT_AVRO_CONFLUENT : SR_FORMAT_AVRO, 1, &ev1, &b);
        sr_event_decoder_t *d =
            decoder(framed ? SR_FORMAT_AVRO_CONFLUENT : SR_FORMAT_AVRO, NULL);
        for (size_t n = 0; n < b.len; n++) {
            char *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
            memcpy(copy, b.data, n);
            enum sr_event_invalid why = decode_why(d, copy, n);
            free(copy);
            assert_int_equal(why, n == 0 ? SR_EVENT_INVALID_EMPTY_MESSAGE
                                         : SR_EVENT_INVALID_TRUNCATED_AVRO);
        }
        assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_NONE);
        sr_buf_append(&b, "x", 1);
        assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_TRAILING_BYTES);
        sr_event_decoder_destroy(d);
    }
    sr_buf_free(&b);
}

static void test_avro_invalid_reasons(void **state)
{
    (void)state;
    sr_event_decoder_t *d = decoder(SR_FORMAT_AVRO, NULL);
    /* session_id declares 2^40 bytes: refused before anything is allocated */
    const unsigned char bomb[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 'x'};
    assert_int_equal(decode_why(d, bomb, sizeof bomb), SR_EVENT_INVALID_TRUNCATED_AVRO);
    const unsigned char neg[] = {0x01, 'x'}; /* length -1 */
    assert_int_equal(decode_why(d, neg, sizeof neg), SR_EVENT_INVALID_INVALID_AVRO);
    const unsigned char longvar[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(decode_why(d, longvar, sizeof longvar), SR_EVENT_INVALID_INVALID_AVRO);
    /* session "s", union branch 4 */
    const unsigned char badunion[] = {0x02, 's', 0x08};
    assert_int_equal(decode_why(d, badunion, sizeof badunion), SR_EVENT_INVALID_INVALID_AVRO);

    struct sr_buf b = {0};
    struct sr_event ev = ev1;
    /* encoders refuse invalid events, so build invalid ones by hand: s="" u=null i="i" e="v" */
    const unsigned char empty_session[] = {0x00, 0x00, 0x02, 'i', 0x02, 'v', 0x02};
    assert_int_equal(decode_why(d, empty_session, sizeof empty_session),
                     SR_EVENT_INVALID_EMPTY_FIELD);
    const unsigned char bad_utf8[] = {0x02, 0xff, 0x00, 0x02, 'i', 0x02, 'v', 0x02};
    assert_int_equal(decode_why(d, bad_utf8, sizeof bad_utf8), SR_EVENT_INVALID_INVALID_UTF8);
    const unsigned char nul[] = {0x04, 'a', 0x00, 0x00, 0x02, 'i', 0x02, 'v', 0x02};
    assert_int_equal(decode_why(d, nul, sizeof nul), SR_EVENT_INVALID_INVALID_UTF8);
    const unsigned char overlong[] = {0x04, 0xc0, 0xaf, 0x00, 0x02, 'i', 0x02, 'v', 0x02};
    assert_int_equal(decode_why(d, overlong, sizeof overlong), SR_EVENT_INVALID_INVALID_UTF8);
    const unsigned char negts[] = {0x02, 's', 0x00, 0x02, 'i', 0x02, 'v', 0x01};
    assert_int_equal(decode_why(d, negts, sizeof negts), SR_EVENT_INVALID_BAD_TIMESTAMP);
    /* a real 64 KiB + 1 string */
    char *big = malloc(SR_EVENT_FIELD_MAX + 1);
    memset(big, 'b', SR_EVENT_FIELD_MAX + 1);
    ev.item_id = big;
    ev.item_id_len = SR_EVENT_FIELD_MAX;
    encode_event(SR_FORMAT_AVRO, 0, &ev, &b);
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_NONE);
    /* grow item_id by one byte in place: its varint length 131072 -> 131074 keeps 3 bytes */
    sr_buf_reset(&b);
    const unsigned char head[] = {0x04, 's', '1', 0x00, 0x84, 0x80, 0x08};
    sr_buf_append(&b, head, sizeof head);
    sr_buf_append(&b, big, SR_EVENT_FIELD_MAX + 1);
    const unsigned char tail[] = {0x02, 'v', 0x02};
    sr_buf_append(&b, tail, sizeof tail);
    assert_int_equal(decode_why(d, b.data, b.len), SR_EVENT_INVALID_FIELD_TOO_LONG);
    free(big);
    sr_buf_free(&b);
    sr_event_decoder_destroy(d);
}

/* ---- recommendations ------------------------------------------------------------------ */

static void test_double_format(void **state)
{
    (void)state;
    struct {
        double v;
        const char *s;
    } cases[] = {
        {3.17, "3.17"}, {100.0, "100.0"}, {0.0, "0.0"}, {-0.0, "-0.0"}, {1e16, "1e+16"},
        {1e15, "1000000000000000.0"}, {1e-5, "1e-05"}, {0.0001, "0.0001"}, {-2.5, "-2.5"},
        {18.13330207272689, "18.13330207272689"}, {14.843996537483111, "14.843996537483111"},
        {1.5e300, "1.5e+300"}, {5e-324, "5e-324"}, {0.1, "0.1"}, {123456.789, "123456.789"},
        {NAN, "null"}, {INFINITY, "null"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = sr_json_format_double(cases[i].v, buf);
        assert_int_equal(n, strlen(buf));
        assert_string_equal(buf, cases[i].s);
    }
    /* round trip over many bit patterns */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        memcpy(&v, &x, sizeof v);
        if (!isfinite(v))
            continue;
        sr_json_format_double(v, buf);
        assert_true(strtod(buf, NULL) == v);
    }
}

/* The significant digits (trailing zeros dropped) and the decimal exponent of a number as
 * text: "1.2500e+03", "0.000125", "1250.0" -> "125", 3 / -4 / 3. */
static void digits_of(const char *s, char *dig, int *e10)
{
    int n = 0, point = -1, first = -1, pos = 0;
    const char *p = s + (*s == '-');
    for (; *p && *p != 'e'; p++) {
        if (*p == '.') {
            point = pos;
            continue;
        }
        if (first < 0 && *p != '0')
            first = pos;
        if (first >= 0)
            dig[n++] = *p;
        pos++;
    }
    if (point < 0)
        point = pos;
    while (n > 1 && dig[n - 1] == '0')
        n--;
    dig[n] = 0;
    *e10 = point - first - 1 + (*p == 'e' ? atoi(p + 1) : 0);
}

/* Float values (model scores) are formatted from %.8e's digits without printf: the same digits
 * and exponent as printf, checked over every 17th float of four binades, a million random ones
 * from 1e-22 to 1e9 and their negatives, and the exact ties m/8 (10 significant digits ending
 * in 5: glibc rounds them to even). */
static void check_float_digits(float f)
{
    char buf[32], ref[40], d1[24], d2[24];
    int e1, e2;
    sr_json_format_double((double)f, buf);
    snprintf(ref, sizeof ref, "%.8e", (double)f);
    digits_of(buf, d1, &e1);
    digits_of(ref, d2, &e2);
    if (strcmp(d1, d2) != 0 || e1 != e2)
        fail_msg("float %a: formatted %s, printf %s", (double)f, buf, ref);
    assert_true(strtof(buf, NULL) == f);
}

static void test_float_format_matches_printf(void **state)
{
    (void)state;
    static const float binade[] = {0x1p-10f, 1.0f, 0x1p20f, 0x1p29f};
    for (size_t i = 0; i < sizeof binade / sizeof *binade; i++)
        for (float f = binade[i]; f < 2 * binade[i]; f = nextafterf(f, INFINITY)) {
            check_float_digits(f);
            for (int k = 0; k < 16 && f < 2 * binade[i]; k++)
                f = nextafterf(f, INFINITY);
        }
    uint64_t x = 0x243F6A8885A308D3ull;
    for (int i = 0; i < 1000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        float f = (float)(1e-22 * pow(1e31, (double)(x >> 11) / 9007199254740992.0));
        check_float_digits((x & 1) ? -f : f);
    }
    for (uint32_t m = (1u << 23) + 1; m < (1u << 24); m += 34)
        check_float_digits((float)m / 8.0f);
    check_float_digits(1234567.125f); /* 1.23456712|5e6: ties to the even 2 */
    check_float_digits(999999999.0f);
    check_float_digits(1e-22f);
    check_float_digits(FLT_MIN);
    check_float_digits(FLT_MAX);
}

static void test_rec_json_matches_expected_file(void **state)
{
    (void)state;
    FILE *f = fopen(SR_TEST_DATA "/gpt2-small.events.expected.jsonl", "rb");
    assert_non_null(f);
    sr_rec_encoder_t *e;
    assert_int_equal(sr_rec_encoder_new(SR_FORMAT_JSON, 0, &e, NULL), SR_OK);
    static char line[1 << 16];
    struct sr_buf b = {0};
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = 0;
        sr_arena_reset(arena);
        struct sr_rec r;
        struct sr_error err;
        assert_int_equal(sr_rec_decode_json(line, n, arena, &r, &err), SR_OK);
        sr_buf_reset(&b);
        assert_int_equal(sr_rec_encode(e, &r, &b, &err), SR_OK);
        if (b.len != n || memcmp(b.data, line, n) != 0)
            fail_msg("line %d differs:\n%.*s\n%s", lines + 1, (int)b.len, b.data, line);
        lines++;
    }
    fclose(f);
    assert_int_equal(lines, 781);
    sr_rec_encoder_destroy(e);
    sr_buf_free(&b);
}

static const struct sr_scored_item items2[] = {{"i42", 3, 3.17, NULL}, {"i\"7", 3, -1.0, NULL}};
static const struct sr_rec rec1 = {"s1", 2, NULL, 0, 1700000000000, "v1", 2, items2, 2,
                                   "events", 6, 3, 17, NULL, 0, false};

static void test_rec_json_form(void **state)
{
    (void)state;
    sr_rec_encoder_t *e;
    assert_int_equal(sr_rec_encoder_new(SR_FORMAT_JSON, 0, &e, NULL), SR_OK);
    struct sr_buf b = {0};
    assert_int_equal(sr_rec_encode(e, &rec1, &b, NULL), SR_OK);
    const char *want = "{\"session_id\": \"s1\", \"user_id\": null, \"event_timestamp_ms\": "
                       "1700000000000, \"model_version\": \"v1\", \"items\": [{\"item_id\": "
                       "\"i42\", \"score\": 3.17}, {\"item_id\": \"i\\\"7\", \"score\": -1.0}], "
                       "\"source\": {\"topic\": \"events\", \"partition\": 3, \"offset\": 17}}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    struct sr_rec empty = rec1;
    empty.n_items = 0;
    empty.user_id = "u";
    empty.user_id_len = 1;
    sr_buf_reset(&b);
    assert_int_equal(sr_rec_encode(e, &empty, &b, NULL), SR_OK);
    assert_non_null(strstr(b.data, "\"user_id\": \"u\""));
    assert_non_null(strstr(b.data, "\"items\": [], "));
    /* under A/B the variant follows source; a JSON reader takes it back */
    struct sr_rec ab = rec1;
    ab.variant = "b";
    ab.variant_len = 1;
    sr_buf_reset(&b);
    assert_int_equal(sr_rec_encode(e, &ab, &b, NULL), SR_OK);
    const char *tail = "\"offset\": 17}, \"variant\": \"b\"}";
    assert_true(b.len > strlen(tail));
    assert_memory_equal(b.data + b.len - strlen(tail), tail, strlen(tail));
    sr_arena_t *arena = sr_arena_new(1 << 16);
    struct sr_rec back;
    assert_int_equal(sr_rec_decode_json(b.data, b.len, arena, &back, NULL), SR_OK);
    assert_int_equal(back.variant_len, 1);
    assert_memory_equal(back.variant, "b", 1);
    assert_int_equal(sr_rec_decode_json(want, strlen(want), arena, &back, NULL), SR_OK);
    assert_null(back.variant);
    sr_arena_destroy(arena);
    struct sr_rec bad = rec1;
    bad.model_version = "\xff";
    bad.model_version_len = 1;
    struct sr_error err;
    size_t before = b.len;
    assert_int_equal(sr_rec_encode(e, &bad, &b, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "model_version"));
    assert_int_equal(b.len, before);
    sr_rec_encoder_destroy(e);
    sr_buf_free(&b);
}

/* Reads an Avro Recommendation with Avro C and compares it with rec1. */
static void check_rec_avro(const char *data, size_t len)
{
    avro_schema_t s;
    const char *js = sr_schema_recommendation_json();
    assert_int_equal(avro_schema_from_json_length(js, strlen(js), &s), 0);
    avro_value_iface_t *cls = avro_generic_class_from_schema(s);
    avro_value_t v, f, b, it;
    avro_generic_value_new(cls, &v);
    avro_reader_t r = avro_reader_memory(data, (int64_t)len);
    assert_int_equal(avro_value_read(r, &v), 0);
    const char *str;
    size_t n;
    int64_t l = 0;
    int32_t i32 = 0;
    double d = 0;
    avro_value_get_by_name(&v, "session_id", &f, NULL);
    avro_value_get_string(&f, &str, &n);
    assert_string_equal(str, "s1");
    avro_value_get_by_name(&v, "user_id", &f, NULL);
    avro_value_get_current_branch(&f, &b);
    assert_int_equal(avro_value_get_type(&b), AVRO_NULL);
    avro_value_get_by_name(&v, "event_timestamp_ms", &f, NULL);
    avro_value_get_long(&f, &l);
    assert_int_equal(l, 1700000000000);
    avro_value_get_by_name(&v, "items", &f, NULL);
    avro_value_get_size(&f, &n);
    assert_int_equal(n, 2);
    avro_value_get_by_index(&f, 1, &it, NULL);
    avro_value_get_by_name(&it, "item_id", &b, NULL);
    avro_value_get_string(&b, &str, &n);
    assert_string_equal(str, "i\"7");
    avro_value_get_by_name(&it, "score", &b, NULL);
    avro_value_get_double(&b, &d);
    assert_true(d == -1.0);
    avro_value_get_by_name(&v, "source", &f, NULL);
    avro_value_get_by_name(&f, "partition", &b, NULL);
    avro_value_get_int(&b, &i32);
    assert_int_equal(i32, 3);
    avro_value_get_by_name(&f, "offset", &b, NULL);
    avro_value_get_long(&b, &l);
    assert_int_equal(l, 17);
    avro_reader_free(r);
    avro_value_decref(&v);
    avro_value_iface_decref(cls);
    avro_schema_decref(s);
}

static void test_rec_avro(void **state)
{
    (void)state;
    struct sr_buf b = {0};
    sr_rec_encoder_t *e;
    assert_int_equal(sr_rec_encoder_new(SR_FORMAT_AVRO, 0, &e, NULL), SR_OK);
    for (int rep = 0; rep < 2; rep++) { /* the reused value must be reset between records */
        sr_buf_reset(&b);
        assert_int_equal(sr_rec_encode(e, &rec1, &b, NULL), SR_OK);
        check_rec_avro(b.data, b.len);
    }
    sr_rec_encoder_destroy(e);
    assert_int_equal(sr_rec_encoder_new(SR_FORMAT_AVRO_CONFLUENT, 258, &e, NULL), SR_OK);
    sr_buf_reset(&b);
    assert_int_equal(sr_rec_encode(e, &rec1, &b, NULL), SR_OK);
    assert_memory_equal(b.data, "\0\0\0\1\2", 5);
    check_rec_avro(b.data + 5, b.len - 5);
    sr_rec_encoder_destroy(e);
    sr_buf_free(&b);
}

/* ---- container files ------------------------------------------------------------------ */

static void test_container_roundtrip(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/events.avro", tmpdir);
    struct sr_error err;
    sr_avro_file_writer_t *w;
    for (int pass = 0; pass < 2; pass++) { /* second pass overwrites the file */
        assert_int_equal(sr_avro_file_writer_create(path, SR_AVRO_FILE_EVENTS, &w, &err), SR_OK);
        char sid[32];
        for (int i = 0; i < 1000; i++) {
            struct sr_event ev = ev1;
            ev.session_id_len = (size_t)snprintf(sid, sizeof sid, "s%d", i);
            ev.session_id = sid;
            ev.user_id = i % 3 ? "u" : NULL;
            ev.user_id_len = 1;
            ev.timestamp_ms = i;
            assert_int_equal(sr_avro_file_writer_append_event(w, &ev, &err), SR_OK);
        }
        assert_int_equal(sr_avro_file_writer_append_rec(w, &rec1, &err), SR_EINVAL);
        assert_int_equal(sr_avro_file_writer_close(w, &err), SR_OK);
    }
    FILE *f = fopen(path, "rb");
    char magic[4];
    assert_int_equal(fread(magic, 1, 4, f), 4);
    fclose(f);
    assert_true(sr_avro_is_container(magic, 4));
    assert_false(sr_avro_is_container("{\"a", 3));

    sr_avro_file_reader_t *r;
    assert_int_equal(sr_avro_file_reader_open(path, &r, &err), SR_OK);
    struct sr_event ev;
    int n = 0;
    sr_err_t rc;
    while ((rc = sr_avro_file_reader_next(r, arena, &ev, NULL, &err)) == SR_OK) {
        char sid[32];
        snprintf(sid, sizeof sid, "s%d", n);
        assert_int_equal(ev.session_id_len, strlen(sid));
        assert_memory_equal(ev.session_id, sid, ev.session_id_len);
        assert_int_equal(ev.timestamp_ms, n);
        if (n % 3)
            assert_non_null(ev.user_id);
        else
            assert_null(ev.user_id);
        n++;
    }
    assert_int_equal(rc, SR_ENOENT);
    assert_int_equal(n, 1000);
    sr_avro_file_reader_close(r);

    /* recommendations */
    snprintf(path, sizeof path, "%s/recs.avro", tmpdir);
    assert_int_equal(sr_avro_file_writer_create(path, SR_AVRO_FILE_RECS, &w, &err), SR_OK);
    assert_int_equal(sr_avro_file_writer_append_rec(w, &rec1, &err), SR_OK);
    assert_int_equal(sr_avro_file_writer_close(w, &err), SR_OK);
    avro_file_reader_t afr;
    assert_int_equal(avro_file_reader(path, &afr), 0);
    avro_schema_t ws = avro_file_reader_get_writer_schema(afr);
    avro_value_iface_t *cls = avro_generic_class_from_schema(ws);
    avro_value_t v;
    avro_generic_value_new(cls, &v);
    assert_int_equal(avro_file_reader_read_value(afr, &v), 0);
    char *json;
    avro_value_to_json(&v, 1, &json);
    assert_non_null(strstr(json, "\"i42\""));
    free(json);
    avro_value_decref(&v);
    avro_value_iface_decref(cls);
    avro_schema_decref(ws);
    avro_file_reader_close(afr);
    /* a recommendations file is not an events file */
    assert_int_equal(sr_avro_file_reader_open(path, &r, &err), SR_EFORMAT);
}

static void test_container_errors_and_evolution(void **state)
{
    (void)state;
    char path[512];
    struct sr_error err;
    sr_avro_file_reader_t *r;
    write_file("plain.jsonl", "{\"session_id\": \"x\"}\n");
    snprintf(path, sizeof path, "%s/plain.jsonl", tmpdir);
    assert_int_equal(sr_avro_file_reader_open(path, &r, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "container"));
    write_file("bad.avro", "Obj\x01garbage");
    snprintf(path, sizeof path, "%s/bad.avro", tmpdir);
    assert_int_equal(sr_avro_file_reader_open(path, &r, &err), SR_EFORMAT);
    snprintf(path, sizeof path, "%s/missing.avro", tmpdir);
    assert_int_equal(sr_avro_file_reader_open(path, &r, &err), SR_ENOENT);

    /* a file written by a producer with the evolved schema, with one invalid record */
    snprintf(path, sizeof path, "%s/evolved.avro", tmpdir);
    avro_schema_t s;
    assert_int_equal(avro_schema_from_json_length(evolved_schema, strlen(evolved_schema), &s), 0);
    avro_file_writer_t afw;
    unlink(path);
    assert_int_equal(avro_file_writer_create(path, s, &afw), 0);
    avro_value_iface_t *cls = avro_generic_class_from_schema(s);
    avro_value_t v, f, b;
    avro_generic_value_new(cls, &v);
    for (int i = 0; i < 3; i++) {
        avro_value_reset(&v);
        avro_value_get_by_name(&v, "timestamp_ms", &f, NULL);
        avro_value_set_long(&f, 5);
        avro_value_get_by_name(&v, "item_id", &f, NULL);
        avro_value_set_string(&f, i == 1 ? "" : "it");
        avro_value_get_by_name(&v, "price", &f, NULL);
        avro_value_set_branch(&f, 0, &b);
        avro_value_get_by_name(&v, "event_type", &f, NULL);
        avro_value_set_string(&f, "click");
        avro_value_get_by_name(&v, "user_id", &f, NULL);
        avro_value_set_branch(&f, 1, &b);
        avro_value_set_string(&b, "u9");
        avro_value_get_by_name(&v, "session_id", &f, NULL);
        avro_value_set_string(&f, "sx");
        assert_int_equal(avro_file_writer_append_value(afw, &v), 0);
    }
    avro_file_writer_close(afw);
    avro_value_decref(&v);
    avro_value_iface_decref(cls);
    avro_schema_decref(s);
    assert_int_equal(sr_avro_file_reader_open(path, &r, &err), SR_OK);
    struct sr_event ev;
    enum sr_event_invalid why;
    assert_int_equal(sr_avro_file_reader_next(r, arena, &ev, &why, &err), SR_OK);
    assert_int_equal(ev.user_id_len, 2);
    assert_int_equal(sr_avro_file_reader_next(r, arena, &ev, &why, &err), SR_EFORMAT);
    assert_int_equal(why, SR_EVENT_INVALID_EMPTY_FIELD);
    assert_non_null(strstr(err.msg, "record 1"));
    assert_int_equal(sr_avro_file_reader_next(r, arena, &ev, &why, &err), SR_OK);
    assert_int_equal(sr_avro_file_reader_next(r, arena, &ev, &why, &err), SR_ENOENT);
    sr_avro_file_reader_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_json_valid),
        cmocka_unit_test(test_json_invalid_reasons),
        cmocka_unit_test(test_json_fixture_lines),
        cmocka_unit_test(test_json_event_roundtrip),
        cmocka_unit_test(test_avro_roundtrip),
        cmocka_unit_test(test_avro_schema_evolution),
        cmocka_unit_test(test_avro_decoder_config_errors),
        cmocka_unit_test(test_confluent_reasons),
        cmocka_unit_test(test_confluent_dir_json_form_and_negative_cache),
        cmocka_unit_test(test_avro_truncated_every_prefix),
        cmocka_unit_test(test_avro_invalid_reasons),
        cmocka_unit_test(test_double_format),
        cmocka_unit_test(test_float_format_matches_printf),
        cmocka_unit_test(test_rec_json_matches_expected_file),
        cmocka_unit_test(test_rec_json_form),
        cmocka_unit_test(test_rec_avro),
        cmocka_unit_test(test_container_roundtrip),
        cmocka_unit_test(test_container_errors_and_evolution),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
