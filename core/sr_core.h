/* sr_core.h — what every layer of streamrec uses: the error type and its context, logging,
 * the properties configuration, arenas and 64-bit hashing of item ids.
 * Thread safety: sr_error and sr_arena are owned by one thread at a time; logging is
 * thread-safe; a config is built on one thread and read-only afterwards. */
#ifndef SR_CORE_H
#define SR_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors --------------------------------------------------------------------------- */

/* X-macro list: one place defines every error code and its default text (libuv habit). */
#define SR_ERRNO_MAP(X)                                                        \
    X(OK,          "success")                                                  \
    X(EINVAL,      "invalid argument")                                         \
    X(ENOMEM,      "out of memory")                                            \
    X(EIO,         "input/output error")                                       \
    X(ENOENT,      "not found")                                                \
    X(EFORMAT,     "malformed input")                                          \
    X(ERANGE,      "value out of range")                                       \
    X(EUNSUPPORTED,"not supported")                                            \
    X(ECONFIG,     "configuration error")                                      \
    X(EDEVICE,     "compute device error")                                     \
    X(EKAFKA,      "kafka error")                                              \
    X(ESTATE,      "state store error")                                        \
    X(EAGAIN,      "try again")                                                \
    X(ECANCELED,   "canceled")                                                 \
    X(EINTERNAL,   "internal error")

typedef enum sr_err {
#define SR__ERR_ENUM(name, text) SR_##name,
    SR_ERRNO_MAP(SR__ERR_ENUM)
#undef SR__ERR_ENUM
    SR__ERR_COUNT
} sr_err_t;

/* Static text of an error code; never NULL. */
const char *sr_err_str(sr_err_t code);
/* Short symbolic name ("EFORMAT"); never NULL. */
const char *sr_err_name(sr_err_t code);

#define SR_ERROR_MSG_MAX 512

/* Caller-provided error context: the code plus a one-line message naming what was wrong and
 * where (file, line, field, tensor). Functions that take a `struct sr_error *` fill it on
 * failure only; NULL is accepted and means "the caller does not want the story". */
struct sr_error {
    sr_err_t code;
    char msg[SR_ERROR_MSG_MAX];
};

/* Sets err (if non-NULL) to code + printf-style message; returns code, so that
 * `return sr_error_set(err, SR_EFORMAT, "...")` reads naturally. */
sr_err_t sr_error_set(struct sr_error *err, sr_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
sr_err_t sr_error_vset(struct sr_error *err, sr_err_t code, const char *fmt, va_list ap);
/* Prepends "prefix: " to an already-set message (adds outer context such as a file name). */
sr_err_t sr_error_prefix(struct sr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sr_error_clear(struct sr_error *err);

/* ---- logging -------------------------------------------------------------------------- */

typedef enum sr_log_level {
    SR_LOG_DEBUG = 0,
    SR_LOG_INFO = 1,
    SR_LOG_WARN = 2,
    SR_LOG_ERROR = 3,
    SR_LOG_OFF = 4
} sr_log_level_t;

/* log.format: text ("ts level component msg k=v") or json (one object per line: time, level,
 * component, message and one string field per key=value). */
typedef enum sr_log_format {
    SR_LOG_FORMAT_TEXT = 0,
    SR_LOG_FORMAT_JSON = 1
} sr_log_format_t;

/* One line per event of interest: "ts level component msg k=v k=v" to stderr, or its JSON
 * object (log.format). `kv` is an optional printf-style tail of key=value pairs, a value with
 * spaces in double quotes (k="a b"); the JSON format turns each pair into a field. Name a
 * record by topic=, partition= and offset= (sr_kafka_offset_str for the offset). Thread-safe. */
void sr_log(sr_log_level_t level, const char *component, const char *msg, const char *kv, ...)
    __attribute__((format(printf, 4, 5)));
/* The same whatever the level: a command's final error, which is never hidden. */
void sr_log_always(sr_log_level_t level, const char *component, const char *msg, const char *kv,
                   ...) __attribute__((format(printf, 4, 5)));
void sr_log_set_level(sr_log_level_t level);
sr_log_level_t sr_log_get_level(void);
/* Parses "debug|info|warn|error|off". */
sr_err_t sr_log_level_parse(const char *s, sr_log_level_t *out);
void sr_log_set_format(sr_log_format_t f);
sr_log_format_t sr_log_get_format(void);
/* Parses "text|json". */
sr_err_t sr_log_format_parse(const char *s, sr_log_format_t *out);

#define SR_LOG_DEBUG_ON() (sr_log_get_level() <= SR_LOG_DEBUG)

/* ---- configuration -------------------------------------------------------------------- */

/* Properties (java.util.Properties syntax: `key=value`, `key: value`, `key value`, `\`
 * continuations, `#`/`!` comments, Java escapes). Every known key is declared once in
 * core/sr_config_keys.h with its kind, allowed values, default and meaning; `kafka.*` keys pass
 * through to librdkafka, `graph.op.*` keys are checked by ops/ (sr_graph_config_check).
 * Precedence: defaults < file < STREAMREC_* environment < --set (DESIGN §5). */
typedef struct sr_config sr_config_t;

sr_config_t *sr_config_new(void);
void sr_config_destroy(sr_config_t *cfg);
/* A copy of every set key (NULL when out of memory). The caller owns it. */
sr_config_t *sr_config_dup(const sr_config_t *cfg);
/* Sets one key; an unknown key is SR_ECONFIG naming the nearest known key. The value is not
 * checked here (sr_config_check, the getters). */
sr_err_t sr_config_set(sr_config_t *cfg, const char *key, const char *value, struct sr_error *err);
/* Parses "key=value" (the --set form). */
sr_err_t sr_config_set_kv(sr_config_t *cfg, const char *kv, struct sr_error *err);
/* One problem, as one line: "[origin: ]key=value: expected <allowed values>[ (reason)]", the
 * origin being "FILE:LINE", the variable's name or "--set". */
typedef void (*sr_config_problem_fn)(void *opaque, const char *line);
struct sr_config_sources {
    const char *file;        /* properties file; NULL: none */
    char *const *envp;       /* environment to read STREAMREC_* from; NULL: none */
    const char *const *sets; /* "key=value" overrides (--set), applied last, in order */
    int n_sets;
    bool apply_log_level;    /* set the process log level and format from log.level and
                                log.format when they are set */
};
/* The one loader: file, then STREAMREC_* variables, then sets, then sr_config_check. Every
 * problem goes to each (may be NULL); returns SR_OK, or the first problem's code and message in
 * err (SR_EIO/SR_ENOENT for an unreadable file, which stops the load, else SR_ECONFIG).
 * Ignored environment variables are logged at debug level. */
sr_err_t sr_config_load(sr_config_t *cfg, const struct sr_config_sources *src,
                        sr_config_problem_fn each, void *opaque, struct sr_error *err);
/* Checks every known key's value (set or default) against its kind and allowed values, and
 * that required keys (model.bundle) are set; reports each problem as sr_config_load does. */
sr_err_t sr_config_check(const sr_config_t *cfg, sr_config_problem_fn each, void *opaque,
                         struct sr_error *err);
/* Where a key's value came from ("FILE:LINE", "STREAMREC_X", "--set"), NULL if defaulted or
 * set by a program. Owned by cfg. */
const char *sr_config_origin(const sr_config_t *cfg, const char *key);
/* Parses "host:port", "[v6]:port" or ":port" (host "" = every interface) into host and port;
 * the one parser metrics.listen's check and its listener use. */
sr_err_t sr_hostport_parse(const char *s, char *host, size_t host_cap, int *port,
                           struct sr_error *err);
/* Value of a key, or its default, or NULL when unset and without default. The pointer is
 * owned by cfg and valid until the key is set again. */
const char *sr_config_get(const sr_config_t *cfg, const char *key);
/* Typed getters: a value that does not parse (or, for a known INT key, lies outside its
 * allowed range) is SR_ECONFIG with the message sr_config_check gives. */
sr_err_t sr_config_get_int(const sr_config_t *cfg, const char *key, int64_t *out, struct sr_error *err);
sr_err_t sr_config_get_bool(const sr_config_t *cfg, const char *key, bool *out, struct sr_error *err);
/* True when the key was set explicitly (file, env or --set), not only defaulted. */
bool sr_config_is_set(const sr_config_t *cfg, const char *key);
/* Calls fn for every explicitly set key starting with prefix (e.g. "kafka."), in insertion
 * order; stops early when fn returns non-zero and returns that value. */
int sr_config_foreach(const sr_config_t *cfg, const char *prefix,
                      int (*fn)(void *opaque, const char *key, const char *value), void *opaque);
/* True when a key holds a secret (password, secret, key material): logs must mask its value. */
bool sr_config_key_is_secret(const char *key);
/* The nearest known key to `key` by edit distance, or NULL if nothing is close. */
const char *sr_config_nearest_key(const char *key);
/* The table of known keys, for `streamrec config --list` and the user guide. */
int sr_config_known_count(void);
void sr_config_known_at(int i, const char **key, const char **def, const char **help);

/* Splits a comma list "a,b,c" (whitespace trimmed, empty items dropped) into at most max
 * entries copied into buf; returns the count or -1 when it does not fit. */
int sr_split_csv(const char *s, char *buf, size_t buflen, const char **items, int max);

/* ---- arenas --------------------------------------------------------------------------- */

/* Bump allocator for per-batch scratch: allocations live until reset/destroy. Chunks are
 * kept across resets, so a steady state allocates nothing. Not thread-safe. */
typedef struct sr_arena sr_arena_t;

sr_arena_t *sr_arena_new(size_t chunk_size);
void sr_arena_destroy(sr_arena_t *a);
/* Returns memory aligned to `align` (power of two, <= 4096) or NULL on OOM. */
void *sr_arena_alloc(sr_arena_t *a, size_t size, size_t align);
void *sr_arena_calloc(sr_arena_t *a, size_t n, size_t size);
char *sr_arena_strndup(sr_arena_t *a, const char *s, size_t n);
void sr_arena_reset(sr_arena_t *a);
/* Bytes handed out since the last reset. */
size_t sr_arena_used(const sr_arena_t *a);

/* ---- hashing -------------------------------------------------------------------------- */

/* 64-bit hash of a raw item id (XXH64, seed 0). Stable across versions and platforms: item
 * keys in stored session state are these hashes, so a bundle change leaves state valid. */
uint64_t sr_hash64(const void *data, size_t len);
static inline uint64_t sr_hash64_str(const char *s);

/* ---- small utilities ------------------------------------------------------------------ */

/* Monotonic clock in nanoseconds, and wall clock in milliseconds since the epoch. */
uint64_t sr_now_ns(void);
int64_t sr_wall_ms(void);
/* Reads a whole file into a malloc'd, NUL-terminated buffer (caller frees). */
sr_err_t sr_file_read_all(const char *path, char **out, size_t *len, struct sr_error *err);
/* Parses an RFC 3339 / ISO-8601 time, YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|(+|-)HH:MM] (no zone:
 * UTC), into epoch milliseconds. Every field must be real (2026-13-45T99:99:00Z is refused:
 * month, day of that month, hour, minute, second <= 60, zone <= 23:59); the message names the
 * first bad field. */
sr_err_t sr_time_parse(const char *s, int64_t *epoch_ms, struct sr_error *err);

#include <string.h>
static inline uint64_t sr_hash64_str(const char *s) { return sr_hash64(s, strlen(s)); }

#ifdef __cplusplus
}
#endif
#endif /* SR_CORE_H */
