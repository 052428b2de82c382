/* schemas_int.h — internals shared by the files of schemas/: the embedded schema texts, the
 * writer->reader resolution of an Avro event schema, the Avro pre-scan, UTF-8 checks and JSON
 * string escaping. Not installed; nothing outside schemas/ includes it. */
#ifndef SR_SCHEMAS_INT_H
#define SR_SCHEMAS_INT_H

#include "sr_schemas.h"

#include <avro.h>

extern const char sr__avsc_user_event[];
extern const char sr__avsc_recommendation[];
extern const char sr__avsc_recommendation_v2[]; /* items with their source (DESIGN §4.3) */

/* Installs the capped Avro C allocator once per process; every constructor calls it. */
void sr__avro_init(void);

/* Sets *why (when non-NULL) and err; returns SR_EFORMAT. */
sr_err_t sr__invalid(enum sr_event_invalid *why, enum sr_event_invalid reason,
                     struct sr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses an embedded schema; the caller owns the returned reference (avro_schema_decref). */
sr_err_t sr__schema_parse(const char *json, size_t len, const char *what, avro_schema_t *out,
                          struct sr_error *err);

/* Byte offset of the first invalid UTF-8 sequence or NUL byte in s[0..n), or -1 when valid.
 * Overlong forms, surrogates and code points above U+10FFFF are invalid. */
ptrdiff_t sr__utf8_check(const char *s, size_t n);

/* Appends s as a JSON string literal (with quotes). */
sr_err_t sr__json_put_string(struct sr_buf *b, const char *s, size_t n);

/* One writer schema resolved to our UserEvent reader schema. Avro C's resolver ignores reader
 * defaults, so the effective reader schema is ours minus the optional fields the writer lacks
 * (they take their defaults when extracted) and renamed to the writer's record name (fields are
 * matched by name; a producer's namespace or record name does not matter). */
struct sr__event_resolved {
    avro_schema_t writer;
    avro_schema_t reader;             /* effective reader schema */
    avro_value_iface_t *reader_iface; /* generic class of reader */
    avro_value_iface_t *rw_iface;     /* resolved writer: writer bytes -> reader value */
    avro_value_t reader_value;
    avro_value_t rw_value;
};

/* Resolves writer (a new reference is taken; the caller keeps its own). Failure is SR_EFORMAT
 * naming the field, with *why INCOMPATIBLE_SCHEMA. */
sr_err_t sr__event_resolved_init(struct sr__event_resolved *r, avro_schema_t writer,
                                 enum sr_event_invalid *why, struct sr_error *err);
void sr__event_resolved_fini(struct sr__event_resolved *r);

/* Copies the fields of r->reader_value into *out (strings in arena) and validates them. */
sr_err_t sr__event_from_avro(struct sr__event_resolved *r, sr_arena_t *arena,
                             struct sr_event *out, enum sr_event_invalid *why,
                             struct sr_error *err);

/* Walks `schema` over buf[0..len) without allocating: every varint well formed, every length
 * within the buffer (and strings/bytes within max_field), union and enum indices in range.
 * On success *used is the value's size. Makes Avro C's reader safe against length bombs. */
sr_err_t sr__avro_prescan(avro_schema_t schema, const void *buf, size_t len, int64_t max_field,
                          size_t *used, enum sr_event_invalid *why, struct sr_error *err);

/* Fills a generic value of our UserEvent / Recommendation schema; scratch is a work buffer
 * used to NUL-terminate strings for Avro C. */
int sr__avro_set_str(avro_value_t *f, const char *s, size_t n, struct sr_buf *scratch);
sr_err_t sr__event_to_avro(const struct sr_event *ev, avro_value_t *v, struct sr_buf *scratch,
                           struct sr_error *err);
sr_err_t sr__rec_to_avro(const struct sr_rec *rec, avro_value_t *v, struct sr_buf *scratch,
                         struct sr_error *err);

/* JSON forms of events (event_json.c). */
sr_err_t sr__event_decode_json(const void *buf, size_t len, sr_arena_t *arena,
                               struct sr_event *out, enum sr_event_invalid *why,
                               struct sr_error *err);
sr_err_t sr__event_encode_json(const struct sr_event *ev, struct sr_buf *out);

/* Appends an Avro value's binary encoding to out. */
sr_err_t sr__avro_append(avro_writer_t w, avro_value_t *v, struct sr_buf *out,
                         struct sr_error *err);

/* Checks a recommendation's strings (UTF-8, no NUL) before encoding. */
sr_err_t sr__rec_validate(const struct sr_rec *rec, struct sr_error *err);

/* Parses an embedded schema and makes a generic value of it plus a memory writer (encoders).
 * On failure the caller releases whatever was set (NULL/zero fields are skipped). */
sr_err_t sr__avro_encoder_init(const char *json, avro_schema_t *schema, avro_value_iface_t **iface,
                               avro_value_t *value, avro_writer_t *writer, struct sr_error *err);
/* Releases what sr__avro_encoder_init made (each may be NULL / unset). */
void sr__avro_encoder_fini(avro_schema_t schema, avro_value_iface_t *iface, avro_value_t *value,
                           avro_writer_t writer);

/* A schema file's text in the registry's JSON form {"schema": "<avsc>"}: *unwrapped is the
 * inner schema (malloc'd, caller frees); NULL when the text is not in that form (plain .avsc). */
sr_err_t sr__schema_text_unwrap(const char *text, size_t len, char **unwrapped,
                                size_t *unwrapped_len);

/* Appends the 5-byte Confluent header (magic 0, big-endian id). */
sr_err_t sr__confluent_header(struct sr_buf *out, int32_t schema_id);

#endif /* SR_SCHEMAS_INT_H */
