/* safetensors.c — reads the safetensors format (8-byte little-endian header length, JSON
 * header, raw little-endian data) from a read-only mmap or any memory buffer.
 * Invariants: every length and offset is checked against the buffer before a byte is read,
 * so any input (the fuzzer's, a truncated or lying file) gives an error, never a bad read.
 * F32 data aligned on a little-endian host is used in place; F16/BF16 (and unaligned F32) are
 * widened into owned F32 copies. Owns nothing beyond the entries and copies it returns.
 * Thread: whichever thread loads the bundle; no shared state. */
#define _GNU_SOURCE
#include "bundle_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The safetensors reference implementation refuses headers above 100 MB; so do we. */
#define SR__ST_MAX_HEADER (100u * 1000u * 1000u)

static const size_t dtype_size[] = {[SR__DT_F32] = 4, [SR__DT_F16] = 2, [SR__DT_BF16] = 2};

const char *sr__dtype_name(sr__dtype_t dt)
{
    switch (dt) {
    case SR__DT_F32: return "F32";
    case SR__DT_F16: return "F16";
    case SR__DT_BF16: return "BF16";
    }
    return "?";
}

static int host_little_endian(void)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return 1;
#else
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
#endif
}

static uint64_t rd_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        float f = (float)man * 0x1p-24f; /* zero or subnormal */
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (man << 13); /* Inf / NaN */
    else
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* "[32,96]" into buf. */
static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? "," : "", shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

void sr__st_dir_free(struct sr__st_dir *dir)
{
    if (!dir)
        return;
    for (int i = 0; i < dir->n; i++)
        free(dir->e[i].name);
    free(dir->e);
    dir->e = NULL;
    dir->n = 0;
}

int sr__st_find(const struct sr__st_dir *dir, const char *name)
{
    for (int i = 0; i < dir->n; i++)
        if (!strcmp(dir->e[i].name, name))
            return i;
    return -1;
}

struct range {
    uint64_t begin, end;
    int idx;
};

static int range_cmp(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses one header entry `key: val` into e (data offsets into rng). */
static sr_err_t parse_entry(const char *fname, const char *key, json_t *val, uint64_t dlen,
                            struct sr__st_entry *e, struct range *rng, struct sr_error *err)
{
    char shape_str[160];
    if (!json_is_object(val))
        return sr_error_set(err, SR_EFORMAT, "%s: tensor '%s': header entry is not an object",
                            fname, key);
    json_t *jd = json_object_get(val, "dtype");
    json_t *js = json_object_get(val, "shape");
    json_t *jo = json_object_get(val, "data_offsets");
    if (!json_is_string(jd))
        return sr_error_set(err, SR_EFORMAT, "%s: tensor '%s': dtype: %s", fname, key,
                            jd ? "expected string" : "missing");
    const char *ds = json_string_value(jd);
    if (!strcmp(ds, "F32"))
        e->dtype = SR__DT_F32;
    else if (!strcmp(ds, "F16"))
        e->dtype = SR__DT_F16;
    else if (!strcmp(ds, "BF16"))
        e->dtype = SR__DT_BF16;
    else
        return sr_error_set(err, SR_EUNSUPPORTED,
                            "%s: tensor '%s': unsupported dtype '%.32s' (F32, F16 or BF16)", fname,
                            key, ds);
    if (!json_is_array(js))
        return sr_error_set(err, SR_EFORMAT, "%s: tensor '%s': shape: %s", fname, key,
                            js ? "expected array" : "missing");
    size_t nd = json_array_size(js);
    if (nd > 4)
        return sr_error_set(err, SR_EUNSUPPORTED,
                            "%s: tensor '%s': %zu dimensions (at most 4 supported)", fname, key, nd);
    e->ndim = (int)nd;
    bool zero = false;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return sr_error_set(err, SR_EFORMAT,
                                "%s: tensor '%s': shape[%zu]: expected a non-negative integer",
                                fname, key, i);
        e->shape[i] = (int64_t)json_integer_value(d);
        zero |= e->shape[i] == 0;
    }
    /* Element count, refusing overflow; the byte count is later tied to the file size. */
    int64_t count = 1;
    if (zero) {
        count = 0;
    } else {
        for (int i = 0; i < e->ndim; i++) {
            if (count > INT64_MAX / 8 / e->shape[i])
                return sr_error_set(err, SR_EFORMAT, "%s: tensor '%s': shape %s is too large",
                                    fname, key, fmt_shape(shape_str, sizeof shape_str, e->ndim, e->shape));
            count *= e->shape[i];
        }
    }
    e->count = count;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return sr_error_set(err, SR_EFORMAT,
                            "%s: tensor '%s': data_offsets: expected [begin, end] integers", fname,
                            key);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b)
        return sr_error_set(err, SR_EFORMAT,
                            "%s: tensor '%s': data_offsets [%lld,%lld] are not an ascending pair",
                            fname, key, (long long)b, (long long)en);
    if ((uint64_t)en > dlen)
        return sr_error_set(err, SR_EFORMAT,
                            "%s: tensor '%s': data_offsets [%lld,%lld] run past the end of the data "
                            "(%" PRIu64 " bytes; file truncated?)",
                            fname, key, (long long)b, (long long)en, dlen);
    uint64_t need = (uint64_t)count * dtype_size[e->dtype];
    if ((uint64_t)(en - b) != need)
        return sr_error_set(err, SR_EFORMAT,
                            "%s: tensor '%s': data_offsets [%lld,%lld] hold %lld bytes, but %s %s "
                            "needs %" PRIu64,
                            fname, key, (long long)b, (long long)en, (long long)(en - b), ds,
                            fmt_shape(shape_str, sizeof shape_str, e->ndim, e->shape), need);
    rng->begin = (uint64_t)b;
    rng->end = (uint64_t)en;
    return SR_OK;
}

sr_err_t sr__st_parse(const void *buf, size_t len, const char *fname, struct sr__st_dir *dir,
                      struct sr_error *err)
{
    const unsigned char *p = buf;
    memset(dir, 0, sizeof *dir);
    if (len < 8)
        return sr_error_set(err, SR_EFORMAT,
                            "%s: truncated: %zu bytes, shorter than the 8-byte header length",
                            fname, len);
    uint64_t hl = rd_le64(p);
    if (hl > SR__ST_MAX_HEADER)
        return sr_error_set(err, SR_EFORMAT,
                            "%s: header length %" PRIu64 " is absurd (limit %u bytes; file is %zu)",
                            fname, hl, SR__ST_MAX_HEADER, len);
    if (hl > len - 8)
        return sr_error_set(err, SR_EFORMAT,
                            "%s: header length %" PRIu64 " runs past the end of the file (%zu "
                            "bytes; truncated or corrupt)",
                            fname, hl, len);
    json_error_t je;
    errno = 0; /* Jansson may report its own failed allocation as bad JSON (DESIGN §9.1) */
    json_t *h = json_loadb((const char *)p + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!h && errno == ENOMEM)
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory parsing the header", fname);
    if (!h)
        return sr_error_set(err, SR_EFORMAT, "%s: header is not valid JSON (byte %d: %s)", fname,
                            je.position, je.text);
    if (!json_is_object(h)) {
        json_decref(h);
        return sr_error_set(err, SR_EFORMAT, "%s: header is not a JSON object", fname);
    }
    const unsigned char *data = p + 8 + hl;
    uint64_t dlen = (uint64_t)(len - 8 - hl);
    size_t cap = json_object_size(h);
    struct range *rng = calloc(cap ? cap : 1, sizeof *rng);
    dir->e = calloc(cap ? cap : 1, sizeof *dir->e);
    sr_err_t rc = SR_OK;
    if (!rng || !dir->e) {
        rc = sr_error_set(err, SR_ENOMEM, "%s: out of memory reading the header", fname);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(h, key, val) {
        if (!strcmp(key, "__metadata__"))
            continue;
        struct sr__st_entry *e = &dir->e[dir->n];
        memset(e, 0, sizeof *e);
        rc = parse_entry(fname, key, val, dlen, e, &rng[dir->n], err);
        if (rc != SR_OK)
            goto out;
        e->name = strdup(key);
        if (!e->name) {
            rc = sr_error_set(err, SR_ENOMEM, "%s: out of memory reading the header", fname);
            goto out;
        }
        e->raw = data + rng[dir->n].begin;
        rng[dir->n].idx = dir->n;
        dir->n++;
    }
    /* No two tensors may share bytes (empty tensors share nothing). */
    qsort(rng, (size_t)dir->n, sizeof *rng, range_cmp);
    int prev = -1;
    for (int i = 0; i < dir->n; i++) {
        if (rng[i].begin == rng[i].end)
            continue;
        if (prev >= 0 && rng[i].begin < rng[prev].end) {
            rc = sr_error_set(err, SR_EFORMAT,
                              "%s: tensors '%s' [%" PRIu64 ",%" PRIu64 ") and '%s' [%" PRIu64
                              ",%" PRIu64 ") overlap",
                              fname, dir->e[rng[prev].idx].name, rng[prev].begin, rng[prev].end,
                              dir->e[rng[i].idx].name, rng[i].begin, rng[i].end);
            goto out;
        }
        prev = i;
    }
out:
    free(rng);
    json_decref(h);
    if (rc != SR_OK)
        sr__st_dir_free(dir);
    return rc;
}

void sr__tensor_free(struct sr__tensor *t)
{
    if (!t)
        return;
    if (t->owned)
        free(t->data);
    free(t->name);
    memset(t, 0, sizeof *t);
}

sr_err_t sr__st_materialize(const struct sr__st_entry *e, const char *fname, struct sr__tensor *t,
                            struct sr_error *err)
{
    memset(t, 0, sizeof *t);
    t->ndim = e->ndim;
    memcpy(t->shape, e->shape, sizeof t->shape);
    t->name = strdup(e->name);
    if (!t->name)
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory", fname);
    size_t n = (size_t)e->count;
    if (e->dtype == SR__DT_F32 && host_little_endian() &&
        (uintptr_t)e->raw % _Alignof(float) == 0) {
        t->data = (float *)(uintptr_t)e->raw; /* read-only view */
    } else {
        t->data = malloc(n ? n * sizeof(float) : 1);
        if (!t->data) {
            sr__tensor_free(t);
            return sr_error_set(err, SR_ENOMEM, "%s: tensor '%s': out of memory widening %zu values",
                                fname, e->name, n);
        }
        t->owned = true;
        const unsigned char *r = e->raw;
        for (size_t i = 0; i < n; i++) {
            if (e->dtype == SR__DT_F32) {
                uint32_t bits = (uint32_t)r[4 * i] | (uint32_t)r[4 * i + 1] << 8 |
                                (uint32_t)r[4 * i + 2] << 16 | (uint32_t)r[4 * i + 3] << 24;
                memcpy(&t->data[i], &bits, 4);
            } else {
                uint16_t h = (uint16_t)(r[2 * i] | r[2 * i + 1] << 8);
                t->data[i] = e->dtype == SR__DT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        float v = t->data[i];
        if (isfinite(v))
            continue;
        const char *what = isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
        char where[96] = "";
        if (e->ndim == 2 && e->shape[1] > 0)
            snprintf(where, sizeof where, " (row %" PRId64 ", column %" PRId64 ")",
                     (int64_t)i / e->shape[1], (int64_t)i % e->shape[1]);
        sr_error_set(err, SR_EFORMAT, "%s: tensor '%s': non-finite value %s at element %zu%s",
                     fname, e->name, what, i, where);
        sr__tensor_free(t);
        return SR_EFORMAT;
    }
    return SR_OK;
}
