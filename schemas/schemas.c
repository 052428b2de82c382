/* schemas.c — the shared pieces of the codecs: embedded schema texts, reason names, formats,
 * the growable output buffer, UTF-8 validation, JSON string escaping and the round-trip
 * formatting of doubles. Stateless apart from the caller's buffers; thread-safe. */
#include "schemas_int.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sr_schema_user_event_json(void) { return sr__avsc_user_event; }
const char *sr_schema_recommendation_json(void) { return sr__avsc_recommendation; }

const char *sr_schema_recommendation_json_for(bool v2)
{
    return v2 ? sr__avsc_recommendation_v2 : sr__avsc_recommendation;
}

bool sr_rec_v2_configured(const sr_config_t *cfg)
{
    const char *variants = cfg ? sr_config_get(cfg, "model.variants") : NULL;
    return sr_rec_item_sources_configured(cfg) || (variants && *variants);
}

bool sr_rec_item_sources_configured(const sr_config_t *cfg)
{
    bool on = false;
    const char *sampling = cfg ? sr_config_get(cfg, "recs.sampling") : NULL;
    return cfg && ((sr_config_get_bool(cfg, "recs.trending", &on, NULL) == SR_OK && on) ||
                   (sampling && !strcmp(sampling, "epsilon")));
}

static const char *const invalid_names[] = {
#define SR__INVALID_NAME(name, label) label,
    SR_EVENT_INVALID_MAP(SR__INVALID_NAME)
#undef SR__INVALID_NAME
};

const char *sr_event_invalid_name(enum sr_event_invalid why)
{
    if ((unsigned)why >= SR_EVENT_INVALID__COUNT)
        return "unknown";
    return invalid_names[why];
}

sr_err_t sr__invalid(enum sr_event_invalid *why, enum sr_event_invalid reason,
                     struct sr_error *err, const char *fmt, ...)
{
    if (why)
        *why = reason;
    va_list ap;
    va_start(ap, fmt);
    sr_error_vset(err, SR_EFORMAT, fmt, ap);
    va_end(ap);
    return SR_EFORMAT;
}

sr_err_t sr_format_parse(const char *s, enum sr_format *out, struct sr_error *err)
{
    if (s && strcmp(s, "json") == 0)
        *out = SR_FORMAT_JSON;
    else if (s && strcmp(s, "avro") == 0)
        *out = SR_FORMAT_AVRO;
    else if (s && strcmp(s, "avro-confluent") == 0)
        *out = SR_FORMAT_AVRO_CONFLUENT;
    else
        return sr_error_set(err, SR_ECONFIG, "unknown format '%s' (json, avro, avro-confluent)",
                            s ? s : "(null)");
    return SR_OK;
}

sr_err_t sr__schema_parse(const char *json, size_t len, const char *what, avro_schema_t *out,
                          struct sr_error *err)
{
    errno = 0;
    int rc = avro_schema_from_json_length(json, len, out);
    /* Out of memory (in Avro C or its Jansson: malloc's errno) is not a bad schema, which a
     * decoder would remember as refused (DESIGN §9.1). */
    if (rc != 0 && (rc == ENOMEM || errno == ENOMEM))
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory parsing the Avro schema", what);
    if (rc != 0)
        return sr_error_set(err, SR_EFORMAT, "%s: invalid Avro schema: %s", what,
                            avro_strerror());
    return SR_OK;
}

/* ---- buffer --------------------------------------------------------------------------- */

sr_err_t sr_buf_reserve(struct sr_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return SR_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return SR_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return SR_ENOMEM;
    b->data = p;
    b->cap = cap;
    return SR_OK;
}

sr_err_t sr_buf_append(struct sr_buf *b, const void *p, size_t n)
{
    if (sr_buf_reserve(b, n) != SR_OK)
        return SR_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return SR_OK;
}

sr_err_t sr_buf_appendf(struct sr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sr_buf_reserve(b, (size_t)n + 1) != SR_OK)
        return SR_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SR_OK;
}

void sr_buf_free(struct sr_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

ptrdiff_t sr__utf8_check(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c >= 0x01 && c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned min, cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1, min = 0x80, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, min = 0x800, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return (ptrdiff_t)i; /* NUL, continuation byte, C0/C1 or F5..FF lead */
        }
        if (n - i - 1 < need)
            return (ptrdiff_t)i;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return (ptrdiff_t)i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return (ptrdiff_t)i;
        i += need + 1;
    }
    return -1;
}

/* ---- JSON output ---------------------------------------------------------------------- */

sr_err_t sr__json_put_string(struct sr_buf *b, const char *s, size_t n)
{
    /* worst case every byte becomes \u00XX */
    if (n > (SIZE_MAX - 2) / 6 || sr_buf_reserve(b, n * 6 + 2) != SR_OK)
        return SR_ENOMEM;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        default:
            if (c < 0x20 || c == 0x7F) {
                static const char hex[] = "0123456789abcdef";
                *o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            } else {
                *o++ = (char)c; /* ASCII and raw UTF-8 (validated by the callers) */
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return SR_OK;
}

/* The digits %.8e gives a normal float value f with 1e-22 <= |f| < 1e9 (every model score in
 * practice), without printf: d in [10^8, 10^9) and e10 with |f| ~ d·10^(e10-8), the correctly
 * rounded 9-digit decimal of the exact binary value (ties to even, as glibc rounds). Exact
 * integer arithmetic: |f| = m·2^e2 (m < 2^24), so |f|·10^k = m·10^k / 2^-e2 with k = 8 - e10
 * <= 30; m·10^k < 2^24·10^30 < 2^124 fits in 128 bits, and -e2 <= 97 < 128. False outside that
 * range (the caller uses printf). test_schemas compares it with printf over every float of
 * several binades and millions of random ones. */
static bool float_digits9(float f, uint32_t *d, int *e10)
{
    float a = fabsf(f);
    if (!(a >= 1e-22f && a < 1e9f))
        return false;
    int e2;
    float fr = frexpf(a, &e2);                       /* a = fr·2^e2, fr in [0.5, 1) */
    uint32_t m = (uint32_t)ldexpf(fr, 24);           /* exact: 24 significant bits */
    e2 -= 24;                                        /* a = m·2^e2 */
    int e = (int)floor(log10((double)a));
    for (int tries = 0; tries < 3; tries++) {
        int k = 8 - e;
        if (k < 0 || k > 30)
            return false;
        unsigned __int128 n = m;
        for (int i = 0; i < k; i++)
            n *= 10;
        uint64_t q, fl;                              /* a·10^k rounded, and its floor */
        if (e2 >= 0) {
            q = fl = (uint64_t)(n << e2);            /* an integer: no rounding */
        } else {
            int s = -e2;
            unsigned __int128 rem = n & (((unsigned __int128)1 << s) - 1);
            unsigned __int128 half = (unsigned __int128)1 << (s - 1);
            q = fl = (uint64_t)(n >> s);
            if (rem > half || (rem == half && (q & 1)))
                q++;
        }
        if (fl < 100000000u) {                       /* log10 rounded up across a power of 10 */
            e--;
            continue;
        }
        if (fl >= 1000000000u) {                     /* log10 rounded down */
            e++;
            continue;
        }
        if (q == 1000000000u) {                      /* 9.99999999|5.. rounds up to 10^(e+1) */
            q = 100000000u;
            e++;
        }
        *d = (uint32_t)q;
        *e10 = e;
        return true;
    }
    return false;
}

size_t sr_json_format_double(double v, char buf[32])
{
    if (!isfinite(v)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    if (v == 0) { /* keeps the sign of -0.0, like Python */
        const char *z = signbit(v) ? "-0.0" : "0.0";
        size_t n = strlen(z);
        memcpy(buf, z, n + 1);
        return n;
    }
    /* Shortest precision that reads back exactly: %.{p-1}e gives the correctly rounded p-digit
     * decimal, which is what a shortest round-trip algorithm (Python repr) picks. */
    char e[40];
    char digits[20];
    int nd = 0, exp10 = 0;
    bool neg = signbit(v) != 0;
    /* For a normal double whose shortest form has n <= 15 digits, the correctly rounded
     * 15-digit decimal is that form padded with zeros (|v - shortest| <= half an ulp, which is
     * below half the 15-digit spacing), and trailing zeros are stripped below: starting at 15
     * gives the same text with at most 3 conversions instead of up to 17 (scores, which come
     * from floats, need 17 nearly always). Subnormals have fewer significant bits: start at 1. */
    float f = (float)v;
    const bool is_float = (double)f == v && fabsf(f) >= FLT_MIN;
    uint32_t d9;
    if (is_float && float_digits9(f, &d9, &exp10)) {
        /* A float32 value (every model score is one): 9 significant digits always read back as
         * the same float; these are %.8e's digits (float_digits9), at a tenth of its cost. */
        for (nd = 9; nd > 0; nd--, d9 /= 10)
            digits[nd - 1] = (char)('0' + d9 % 10);
        nd = 9;
    } else {
        if (is_float) {
            snprintf(e, sizeof e, "%.8e", v); /* a float outside float_digits9's range */
        } else {
            for (int p = fabs(v) >= DBL_MIN ? 15 : 1; p <= 17; p++) {
                snprintf(e, sizeof e, "%.*e", p - 1, v);
                if (strtod(e, NULL) == v)
                    break;
            }
        }
        /* e = [-]d[.ddd]e[+-]XX : split into digits and exponent */
        const char *q = e + (*e == '-');
        for (; *q && *q != 'e'; q++)
            if (*q >= '0' && *q <= '9')
                digits[nd++] = *q;
        exp10 = atoi(q + 1);
    }
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    char *o = buf;
    if (neg)
        *o++ = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int k = 0; k < -exp10 - 1; k++)
                *o++ = '0';
            for (int k = 0; k < nd; k++)
                *o++ = digits[k];
        } else {
            for (int k = 0; k <= exp10; k++)
                *o++ = k < nd ? digits[k] : '0';
            *o++ = '.';
            if (nd > exp10 + 1)
                for (int k = exp10 + 1; k < nd; k++)
                    *o++ = digits[k];
            else
                *o++ = '0';
        }
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int k = 1; k < nd; k++)
                *o++ = digits[k];
        }
        o += snprintf(o, 8, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    *o = 0;
    return (size_t)(o - buf);
}

/* ---- Avro C allocator ----------------------------------------------------------------- */

/* Avro C allocates a value's declared size before it knows the bytes exist. Messages are
 * pre-scanned (avro_check.c), but container-file blocks are read inside Avro C, so every Avro
 * allocation is capped: a damaged or hostile file gets ENOMEM instead of gigabytes. The cap is
 * process-wide (Avro C has one allocator) and far above any legitimate event or block. */
#define SR_AVRO_ALLOC_MAX ((size_t)64 << 20)

static void *capped_allocator(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (nsize > SR_AVRO_ALLOC_MAX)
        return NULL;
    return realloc(ptr, nsize);
}

static pthread_once_t avro_once = PTHREAD_ONCE_INIT;
static void avro_init_once(void) { avro_set_allocator(capped_allocator, NULL); }
void sr__avro_init(void) { pthread_once(&avro_once, avro_init_once); }
