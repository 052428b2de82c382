/* log.c — one line per event of interest, to stderr, in one of two formats (log.format):
 *   text  "ts level component msg k=v k=\"v w\"..."
 *   json  {"time":"ts","level":"..","component":"..","message":"..","k":"v",...}
 * Callers pass the fields as a logfmt tail (k=v, a value with spaces in double quotes); the JSON
 * writer splits that tail back into fields, so every call site serves both formats (DESIGN §7).
 * Field values stay JSON strings: one key always has one type, as log indexers require (an
 * offset may read "end"). The level and format are process-wide; a mutex keeps lines whole
 * when several threads log. Any thread. */
#include "sr_core.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static sr_log_level_t log_level = SR_LOG_INFO;
static sr_log_format_t log_format = SR_LOG_FORMAT_TEXT;

static const char *const level_name[] = {"debug", "info", "warn", "error", "off"};
static const char *const format_name[] = {"text", "json"};

void sr_log_set_level(sr_log_level_t level) { __atomic_store_n(&log_level, level, __ATOMIC_RELAXED); }
sr_log_level_t sr_log_get_level(void) { return __atomic_load_n(&log_level, __ATOMIC_RELAXED); }
void sr_log_set_format(sr_log_format_t f) { __atomic_store_n(&log_format, f, __ATOMIC_RELAXED); }
sr_log_format_t sr_log_get_format(void) { return __atomic_load_n(&log_format, __ATOMIC_RELAXED); }

sr_err_t sr_log_level_parse(const char *s, sr_log_level_t *out)
{
    for (int i = 0; i <= SR_LOG_OFF; i++) {
        if (s && strcmp(s, level_name[i]) == 0) {
            *out = (sr_log_level_t)i;
            return SR_OK;
        }
    }
    return SR_EINVAL;
}

sr_err_t sr_log_format_parse(const char *s, sr_log_format_t *out)
{
    for (int i = 0; i <= SR_LOG_FORMAT_JSON; i++) {
        if (s && strcmp(s, format_name[i]) == 0) {
            *out = (sr_log_format_t)i;
            return SR_OK;
        }
    }
    return SR_EINVAL;
}

/* ---- JSON writer: a bounded buffer that always ends as a whole object ------------------- */

/* Bytes kept back so a value cut short can still close: '"', '}' and the NUL. */
#define JSON_TAIL 3

struct jw {
    char *p;
    size_t n, cap;
    bool full; /* something did not fit: later fields are left out */
};

static bool jw_room(const struct jw *w, size_t k) { return w->n + k + JSON_TAIL <= w->cap; }

static void jw_raw(struct jw *w, const char *s, size_t k)
{
    if (!jw_room(w, k)) {
        w->full = true;
        return;
    }
    memcpy(w->p + w->n, s, k);
    w->n += k;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t k;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return k;
}

/* A JSON string of s[0..k): escapes quotes, backslashes and control bytes; a byte that is not
 * UTF-8 becomes U+FFFD. Cut short (still closed) when the buffer is full. */
static void jw_str(struct jw *w, const char *s, size_t k)
{
    if (w->full || !jw_room(w, 1)) {
        w->full = true;
        return;
    }
    w->p[w->n++] = '"';
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < k && !w->full;) {
        char esc[8];
        size_t m = 1, e = 0;
        const char *out = (const char *)u + i;
        if (u[i] == '"' || u[i] == '\\') {
            esc[0] = '\\', esc[1] = (char)u[i], e = 2;
        } else if (u[i] < 0x20) {
            e = (size_t)snprintf(esc, sizeof esc, "\\u%04x", u[i]);
        } else if (u[i] >= 0x80) {
            m = utf8_len(u + i, k - i);
            if (!m)
                m = 1, memcpy(esc, "\\ufffd", 6), e = 6;
        }
        if (e)
            jw_raw(w, esc, e);
        else
            jw_raw(w, out, m);
        if (!w->full)
            i += m;
    }
    w->p[w->n++] = '"'; /* JSON_TAIL keeps room for it */
}

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* Length of a "key=" at s (0 when s does not start one). */
static size_t key_at(const char *s)
{
    size_t k = 0;
    while (key_char(s[k]))
        k++;
    return k && s[k] == '=' ? k : 0;
}

static void jw_field(struct jw *w, const char *k, size_t kl, const char *v, size_t vl)
{
    static const char *const reserved[] = {"time", "level", "component", "message"};
    if (w->full || !jw_room(w, kl + 16)) {
        w->full = true;
        return;
    }
    jw_raw(w, ",", 1);
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strlen(reserved[i]) == kl && !memcmp(reserved[i], k, kl)) {
            char pk[64];
            int n = snprintf(pk, sizeof pk, "field_%.*s", (int)kl, k);
            jw_str(w, pk, (size_t)n);
            goto value;
        }
    jw_str(w, k, kl);
value:
    jw_raw(w, ":", 1);
    jw_str(w, v, vl);
}

/* Splits a logfmt tail into fields: k=v, k="v with spaces" (the value ends at a quote
 * followed by the end or by " key="). Text that is not a field goes whole into "detail". */
static void jw_kv(struct jw *w, const char *kv)
{
    const char *p = kv;
    while (*p && !w->full) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        size_t kl = key_at(p);
        if (!kl) {
            jw_field(w, "detail", 6, p, strlen(p));
            return;
        }
        const char *v = p + kl + 1, *end;
        if (*v == '"') {
            v++;
            end = v;
            for (;; end++) {
                end = strchr(end, '"');
                if (!end || !end[1] || (end[1] == ' ' && key_at(end + 2)))
                    break;
            }
            if (!end)
                end = v + strlen(v);
            jw_field(w, p, kl, v, (size_t)(end - v));
            p = *end ? end + 1 : end;
        } else {
            end = strchr(v, ' ');
            if (!end)
                end = v + strlen(v);
            jw_field(w, p, kl, v, (size_t)(end - v));
            p = end;
        }
    }
}

/* ---- lines ---------------------------------------------------------------------------- */

static void vlog(sr_log_level_t level, const char *component, const char *msg, const char *kv,
                 va_list ap)
{
    char fields[2048] = "", line[4096], ts_s[64];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(ts_s, sizeof ts_s, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
    if (kv && kv[0])
        vsnprintf(fields, sizeof fields, kv, ap);
    const char *lvl = level_name[level < SR_LOG_OFF ? level : SR_LOG_ERROR];
    component = component ? component : "-";
    msg = msg ? msg : "";
    if (sr_log_get_format() == SR_LOG_FORMAT_JSON) {
        struct jw w = {.p = line, .cap = sizeof line - 1}; /* - 1: the newline */
        jw_raw(&w, "{\"time\":", 8);
        jw_str(&w, ts_s, strlen(ts_s));
        jw_raw(&w, ",\"level\":", 9);
        jw_str(&w, lvl, strlen(lvl));
        jw_raw(&w, ",\"component\":", 13);
        jw_str(&w, component, strlen(component));
        jw_raw(&w, ",\"message\":", 11);
        jw_str(&w, msg, strlen(msg));
        jw_kv(&w, fields);
        w.p[w.n++] = '}';
        w.p[w.n] = 0;
    } else {
        snprintf(line, sizeof line, "%s %s %s %s%s%s", ts_s, lvl, component, msg,
                 fields[0] ? " " : "", fields);
    }
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}

void sr_log(sr_log_level_t level, const char *component, const char *msg, const char *kv, ...)
{
    if (level < sr_log_get_level() || level >= SR_LOG_OFF)
        return;
    va_list ap;
    va_start(ap, kv);
    vlog(level, component, msg, kv, ap);
    va_end(ap);
}

void sr_log_always(sr_log_level_t level, const char *component, const char *msg, const char *kv,
                   ...)
{
    va_list ap;
    va_start(ap, kv);
    vlog(level, component, msg, kv, ap);
    va_end(ap);
}
