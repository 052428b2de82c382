/* sr_schemas.h — the event and recommendation codecs (DESIGN.md section 4).
 *
 * Input events arrive as JSON, bare Avro binary (a configured writer schema) or Confluent-framed
 * Avro (magic 0, 4-byte big-endian schema id, Avro binary; ids are fetched from a Schema Registry
 * over its REST API, or read from <registry dir>/<id>.avsc offline).
 * Every Avro writer schema is resolved to our reader schema `streamrec.UserEvent` (the text of
 * schemas/user_event.avsc, embedded in the library at build time), so a producer that adds a
 * field, drops an optional one or reorders fields still decodes. Recommendations are encoded as
 * JSON, Avro or Confluent-framed Avro with schema `streamrec.Recommendation`. Avro object
 * container files ("Obj\x01") of events are read and written; recommendations are written.
 *
 * Memory: a decoded event's strings point into a caller-provided arena (core's sr_arena_t) and
 * live until that arena is reset; the decoder itself never allocates per event (the libraries
 * underneath, jansson and Avro C, do their own allocation per message).
 * Threads: decoders, encoders and file handles are used by one thread at a time. */
#ifndef SR_SCHEMAS_H
#define SR_SCHEMAS_H

#include "sr_core.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- embedded schemas ----------------------------------------------------------------- */

/* NUL-terminated JSON texts of schemas/user_event.avsc and schemas/recommendation.avsc.
 * Static storage; never NULL. */
const char *sr_schema_user_event_json(void);
const char *sr_schema_recommendation_json(void);

/* Longest accepted string field, in bytes (larger is SR_EVENT_INVALID_FIELD_TOO_LONG). */
#define SR_EVENT_FIELD_MAX 65536

/* ---- growable output buffer ----------------------------------------------------------- */

/* A byte buffer the encoders append to. Zero-initialise it; data is malloc'd and owned by the
 * caller, who frees it with sr_buf_free. Appends grow it; sr_buf_reset keeps the capacity. */
struct sr_buf {
    char *data;
    size_t len, cap;
};

sr_err_t sr_buf_reserve(struct sr_buf *b, size_t extra);
sr_err_t sr_buf_append(struct sr_buf *b, const void *p, size_t n);
/* Appends printf-style text (no NUL kept in len); SR_ENOMEM when it cannot grow. */
sr_err_t sr_buf_appendf(struct sr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void sr_buf_reset(struct sr_buf *b) { b->len = 0; }
void sr_buf_free(struct sr_buf *b);

/* ---- formats -------------------------------------------------------------------------- */

enum sr_format {
    SR_FORMAT_JSON = 0,
    SR_FORMAT_AVRO = 1,           /* bare Avro binary */
    SR_FORMAT_AVRO_CONFLUENT = 2, /* magic 0 + big-endian schema id + Avro binary */
};

/* Parses "json", "avro", "avro-confluent" (the input.format / output.format values). */
sr_err_t sr_format_parse(const char *s, enum sr_format *out, struct sr_error *err);

/* ---- events --------------------------------------------------------------------------- */

/* A decoded event. Strings are not NUL-terminated by contract (they happen to be when decoded
 * into an arena, but encoders take the lengths); user_id is NULL when null or absent. */
struct sr_event {
    const char *session_id;
    size_t session_id_len;
    const char *user_id;
    size_t user_id_len;
    const char *item_id;
    size_t item_id_len;
    const char *event_type;
    size_t event_type_len;
    int64_t timestamp_ms;   /* SR_EVENT_TS_ABSENT: the event has none (JSON: absent or null) */
};
/* An event without timestamp_ms: the runtime takes the Kafka record's timestamp instead. */
#define SR_EVENT_TS_ABSENT INT64_MIN

/* Why a message was refused. The names are stable: they are metrics labels and DLQ headers. */
#define SR_EVENT_INVALID_MAP(X)                                                         \
    X(NONE,               "none")               /* valid */                              \
    X(INVALID_JSON,       "invalid_json")       /* not JSON, trailing bytes, dup keys */ \
    X(NOT_OBJECT,         "not_object")         /* JSON but not an object */             \
    X(MISSING_FIELD,      "missing_field")      /* a required field is absent */         \
    X(WRONG_TYPE,         "wrong_type")         /* a field has the wrong JSON type */    \
    X(EMPTY_FIELD,        "empty_field")        /* empty session_id/item_id/event_type */\
    X(FIELD_TOO_LONG,     "field_too_long")     /* a string over SR_EVENT_FIELD_MAX */   \
    X(INVALID_UTF8,       "invalid_utf8")       /* bad UTF-8 or a NUL byte in a string */\
    X(BAD_TIMESTAMP,      "bad_timestamp")      /* negative timestamp_ms */              \
    X(BAD_MAGIC,          "bad_magic")          /* Confluent frame not starting with 0 */\
    X(UNKNOWN_SCHEMA_ID,  "unknown_schema_id")  /* id not in the registry / no <id>.avsc */\
    X(INCOMPATIBLE_SCHEMA,"incompatible_schema")/* writer schema not resolvable to ours */\
    X(TRUNCATED_AVRO,     "truncated_avro")     /* Avro body ends inside a value */      \
    X(INVALID_AVRO,       "invalid_avro")       /* bad varint, length, union/enum index */\
    X(TRAILING_BYTES,     "trailing_bytes")     /* bytes left after the Avro record */   \
    X(EMPTY_MESSAGE,      "empty_message")      /* zero-length payload */                \
    X(REGISTRY_UNAVAILABLE,"registry_unavailable")/* registry unreachable for its id */

enum sr_event_invalid {
#define SR__EVENT_INVALID_ENUM(name, label) SR_EVENT_INVALID_##name,
    SR_EVENT_INVALID_MAP(SR__EVENT_INVALID_ENUM)
#undef SR__EVENT_INVALID_ENUM
    SR_EVENT_INVALID__COUNT
};

/* snake_case label of a reason ("missing_field"); "unknown" for out-of-range values. */
const char *sr_event_invalid_name(enum sr_event_invalid why);

/* ---- Schema Registry -------------------------------------------------------------------- */

/* A Confluent-API Schema Registry (Confluent, Apicurio's /apis/ccompat/v7, Karapace), the
 * schema.registry.* keys. Strings are borrowed (copied by sr_registry_new); NULL = unset. */
struct sr_registry_params {
    const char *url;          /* comma list of base URLs, tried in turn; NULL: no registry */
    const char *user_info;    /* basic auth "user:password" */
    const char *ca_location, *cert_location, *key_location, *key_password; /* PEM files */
    int64_t connect_timeout_ms, request_timeout_ms;
    int64_t backoff_ms, backoff_max_ms; /* retries of an unreachable registry: exponential */
    int64_t retry_timeout_ms;           /* ... for at most this long per call */
    int64_t negative_cache_ms;          /* an unknown id is asked again after this */
};

/* The defaults of core/sr_config_keys.h, without a URL (tests, tools). */
void sr_registry_params_default(struct sr_registry_params *p);
/* Reads the schema.registry.* keys (pointers into cfg); bad values are SR_ECONFIG. */
sr_err_t sr_registry_params_from_config(const sr_config_t *cfg, struct sr_registry_params *p,
                                        struct sr_error *err);

/* A client: one curl handle, used by one thread at a time, blocking (never on the libuv loop;
 * DESIGN §4). Every call retries an unreachable registry (no answer, HTTP 5xx) with backoff
 * for retry_timeout_ms, logging each attempt, and then returns SR_EAGAIN. */
typedef struct sr_registry sr_registry_t;

sr_err_t sr_registry_new(const struct sr_registry_params *p, sr_registry_t **out,
                         struct sr_error *err);
void sr_registry_destroy(sr_registry_t *r);
/* Start-up check (GET /subjects): SR_OK once the registry answers (any status but 401 and
 * 5xx); SR_ECONFIG when it refuses our credentials (401); SR_EAGAIN when it stayed
 * unreachable. */
sr_err_t sr_registry_probe(sr_registry_t *r, struct sr_error *err);
/* GET /schemas/ids/{id}: *text is the schema (malloc'd, caller frees). SR_ENOENT: the registry
 * does not know the id; SR_EUNSUPPORTED: not an Avro schema; SR_EAGAIN: unreachable. */
sr_err_t sr_registry_get_schema(sr_registry_t *r, uint32_t id, char **text,
                                struct sr_error *err);
/* POST /subjects/{subject}/versions: registers schema_json (or finds it registered) and sets
 * *id. SR_EFORMAT when the registry refuses it as incompatible (HTTP 409). */
sr_err_t sr_registry_register(sr_registry_t *r, const char *subject, const char *schema_json,
                              int32_t *id, struct sr_error *err);

/* Process-wide counters of every client, for the metrics endpoint (any thread). */
struct sr_registry_stats {
    uint64_t requests;        /* HTTP requests sent */
    uint64_t failures;        /* requests without an answer or answered 5xx */
    uint64_t retries;         /* backoff waits after a failure */
    uint64_t schemas_fetched; /* writer schemas fetched by id */
    uint64_t unknown_ids;     /* lookups answered "not found" */
    uint64_t registered;      /* successful registrations */
    int up;                   /* 1: the last request got an answer, 0: it did not, -1: none yet */
    bool configured;          /* a client was created in this process */
};
void sr_registry_stats_get(struct sr_registry_stats *out);

/* The schema id of output.format=avro-confluent: with schema.registry.url, the id of
 * streamrec.Recommendation registered under "<topic>-value" (TopicNameStrategy; start-up only,
 * blocking with retries); else output.avro.schema_id. */
sr_err_t sr_output_schema_id(const sr_config_t *cfg, const char *topic, int32_t *id,
                             struct sr_error *err);

/* ---- event decoder ---------------------------------------------------------------------- */

/* Decoder parameters. For SR_FORMAT_AVRO the writer schema is writer_schema_json, else the
 * file writer_schema_path, else our own schema. For SR_FORMAT_AVRO_CONFLUENT the writer schema
 * of an id is fetched from registry->url when set (the registry is probed at creation, with
 * retries), else read from registry_dir/<id>.avsc (plain .avsc or the registry's
 * {"schema": "..."} form); it is loaded when the id is first seen and cached. An id that is
 * unknown (or whose registry was unreachable) is refused for registry->negative_cache_ms
 * (default 30 s), then asked again. Pointers are only read during sr_event_decoder_new. */
struct sr_event_decoder_params {
    enum sr_format format;
    const char *writer_schema_json;
    const char *writer_schema_path;
    const char *registry_dir;
    const struct sr_registry_params *registry; /* NULL: defaults, no URL */
};

typedef struct sr_event_decoder sr_event_decoder_t;

/* Creates a decoder; a writer schema that fails to parse or cannot be resolved to ours is
 * SR_ECONFIG naming the schema and the field. The caller owns *out (sr_event_decoder_destroy). */
sr_err_t sr_event_decoder_new(const struct sr_event_decoder_params *params,
                              sr_event_decoder_t **out, struct sr_error *err);
void sr_event_decoder_destroy(sr_event_decoder_t *d);

/* Decodes one message. On success fills *out (strings in `arena`), sets *why to NONE and returns
 * SR_OK. Invalid input returns SR_EFORMAT with *why set and a one-line message naming the field;
 * arena exhaustion is SR_ENOMEM. Safe for any bytes. why and err may be NULL. */
sr_err_t sr_event_decode(sr_event_decoder_t *d, const void *buf, size_t len, sr_arena_t *arena,
                         struct sr_event *out, enum sr_event_invalid *why, struct sr_error *err);

/* Validates a filled event (non-empty required fields, lengths, UTF-8, timestamp). Used by the
 * decoders and by encoders of generated events. */
sr_err_t sr_event_validate(const struct sr_event *ev, enum sr_event_invalid *why,
                           struct sr_error *err);

/* Appends one event in `format` to out (JSON: one object without newline, field order of
 * DESIGN.md section 4; Confluent: with schema_id). The event is validated first (SR_EINVAL). */
typedef struct sr_event_encoder sr_event_encoder_t;
sr_err_t sr_event_encoder_new(enum sr_format format, int32_t schema_id, sr_event_encoder_t **out,
                              struct sr_error *err);
void sr_event_encoder_destroy(sr_event_encoder_t *e);
sr_err_t sr_event_encode(sr_event_encoder_t *e, const struct sr_event *ev, struct sr_buf *out,
                         struct sr_error *err);

/* ---- recommendations ------------------------------------------------------------------ */

struct sr_scored_item {
    const char *item_id;
    size_t item_id_len;
    double score;
};

struct sr_rec {
    const char *session_id;
    size_t session_id_len;
    const char *user_id; /* NULL: null */
    size_t user_id_len;
    int64_t event_timestamp_ms;
    const char *model_version;
    size_t model_version_len;
    const struct sr_scored_item *items;
    size_t n_items;
    const char *source_topic;
    size_t source_topic_len;
    int32_t source_partition;
    int64_t source_offset;
    const char *variant; /* the A/B variant that answered (DESIGN §4.3); NULL: none */
    size_t variant_len;
};

typedef struct sr_rec_encoder sr_rec_encoder_t;

/* schema_id is written in the Confluent frame (ignored otherwise). */
sr_err_t sr_rec_encoder_new(enum sr_format format, int32_t schema_id, sr_rec_encoder_t **out,
                            struct sr_error *err);
void sr_rec_encoder_destroy(sr_rec_encoder_t *e);

/* Appends one recommendation to out. JSON is exactly
 *   {"session_id": "s1", "user_id": null, "event_timestamp_ms": 1700000000000,
 *    "model_version": "v", "items": [{"item_id": "i42", "score": 3.17}],
 *    "source": {"topic": "events", "partition": 0, "offset": 17}}
 * on one line, no newline; strings escaped (non-ASCII stays raw UTF-8), scores laid out like
 * Python's repr (sr_json_format_double): a score that is a float32 value (model scores are) with
 * 9 significant digits, which read back as the same float; any other double in the shortest
 * text that reads back as the same double.
 * Strings must be valid UTF-8 (else SR_EINVAL). */
sr_err_t sr_rec_encode(sr_rec_encoder_t *e, const struct sr_rec *rec, struct sr_buf *out,
                       struct sr_error *err);

/* Decodes a JSON recommendation (tools and tests; not the hot path). Strings and the items
 * array are allocated in arena. */
sr_err_t sr_rec_decode_json(const void *buf, size_t len, sr_arena_t *arena, struct sr_rec *out,
                            struct sr_error *err);

/* Writes v in Python repr layout (fixed for 1e-4 <= |v| < 1e16 with ".0" when integral, else
 * d.ddde+XX): a normal float32 value with 9 significant digits (trailing zeros dropped; strtof
 * reads back the same float), any other double as the shortest decimal strtod reads back as
 * exactly v; non-finite values write "null". buf needs 32 bytes. Returns the length. */
size_t sr_json_format_double(double v, char buf[32]);

/* ---- Avro object container files ------------------------------------------------------ */

/* True when the bytes start with the container magic "Obj\x01" (needs len >= 4). */
bool sr_avro_is_container(const void *buf, size_t len);

typedef struct sr_avro_file_reader sr_avro_file_reader_t;

/* Opens a container file of events; its writer schema is resolved to ours (SR_EFORMAT naming the
 * file and field when it cannot be). Caller owns *out. */
sr_err_t sr_avro_file_reader_open(const char *path, sr_avro_file_reader_t **out,
                                  struct sr_error *err);
/* Reads the next record: SR_OK (event in *out, strings in arena), SR_ENOENT at end of file,
 * SR_EFORMAT for an invalid record (*why set; the record is skipped and reading may go on),
 * SR_EIO when the file is damaged (stop). */
sr_err_t sr_avro_file_reader_next(sr_avro_file_reader_t *r, sr_arena_t *arena,
                                  struct sr_event *out, enum sr_event_invalid *why,
                                  struct sr_error *err);
void sr_avro_file_reader_close(sr_avro_file_reader_t *r);

typedef struct sr_avro_file_writer sr_avro_file_writer_t;

enum sr_avro_file_kind { SR_AVRO_FILE_EVENTS = 0, SR_AVRO_FILE_RECS = 1 };

/* Creates (truncates) a container file with our event or recommendation schema, null codec. */
sr_err_t sr_avro_file_writer_create(const char *path, enum sr_avro_file_kind kind,
                                    sr_avro_file_writer_t **out, struct sr_error *err);
sr_err_t sr_avro_file_writer_append_event(sr_avro_file_writer_t *w, const struct sr_event *ev,
                                          struct sr_error *err);
sr_err_t sr_avro_file_writer_append_rec(sr_avro_file_writer_t *w, const struct sr_rec *rec,
                                        struct sr_error *err);
/* Flushes and closes; returns the first error of the final flush. NULL is a no-op. */
sr_err_t sr_avro_file_writer_close(sr_avro_file_writer_t *w, struct sr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SR_SCHEMAS_H */
