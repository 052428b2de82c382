/* codec.c — the stored session value: version byte, item count as an unsigned LEB128 varint
 * (at most 5 bytes), last event time as 8 bytes LE (two's complement), the item keys as 8 bytes
 * LE each, oldest first, then each item's event type code as 4 bytes LE (version 2, DESIGN
 * §8.9); version 3 follows version 2's fields with the encoder state's length (a varint,
 * 1..SR_SESSION_AUX_MAX) and its bytes (DESIGN §3.1). A session without encoder state is
 * written as version 2, byte for byte what it was before version 3 existed. Version 1 (no type
 * codes) is still read, as codes 0. The same bytes are the changelog record value.
 * Decoding checks version, varints and exact length before touching items: a bad value is an
 * error, never a crash or an over-read. Pure functions, any thread. */
#include "state_int.h"

#include <string.h>

static size_t varint_size(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint8_t *put_varint(uint8_t *p, uint32_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Reads a varint of at most 5 bytes at buf[*pos..n); SR_EFORMAT naming `what`. */
static sr_err_t get_varint(const uint8_t *buf, size_t n, size_t *pos, uint64_t *out,
                           const char *what, struct sr_error *err)
{
    uint64_t c = 0;
    for (int shift = 0;; shift += 7) {
        if (*pos >= n)
            return sr_error_set(err, SR_EFORMAT, "session value: truncated %s", what);
        if (shift > 28)
            return sr_error_set(err, SR_EFORMAT, "session value: %s varint too long", what);
        uint8_t b = buf[(*pos)++];
        c |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    *out = c;
    return SR_OK;
}

size_t sr_session_encoded_size(uint32_t len)
{
    return 1 + varint_size(len) + 8 + (size_t)len * 12;
}

size_t sr_session_value_size(const struct sr_session *s)
{
    size_t n = sr_session_encoded_size(s->len);
    return s->aux_len ? n + varint_size(s->aux_len) + s->aux_len : n;
}

uint32_t sr_session_type_code(const char *type, size_t len)
{
    uint64_t h = sr_hash64(type, len);
    uint32_t c = (uint32_t)(h ^ (h >> 32));
    return c ? c : 1;
}

sr_err_t sr_session_encode(const struct sr_session *s, void *buf, size_t cap, size_t *written,
                           struct sr_error *err)
{
    if (!s || !buf || (s->len && !s->items) || (s->aux_len && !s->aux))
        return sr_error_set(err, SR_EINVAL, "session encode: null session, buffer, items or state");
    if (s->aux_len > SR_SESSION_AUX_MAX)
        return sr_error_set(err, SR_ERANGE, "session encode: encoder state of %u bytes (max %u)",
                            s->aux_len, SR_SESSION_AUX_MAX);
    size_t need = sr_session_value_size(s);
    if (cap < need)
        return sr_error_set(err, SR_ERANGE, "session encode: %zu bytes needed, buffer has %zu",
                            need, cap);
    uint8_t *p = buf;
    *p++ = s->aux_len ? SR_SESSION_VALUE_VERSION : SR_SESSION_VALUE_VERSION_V2;
    p = put_varint(p, s->len);
    put_le64(p, (uint64_t)s->last_ts);
    p += 8;
    for (uint32_t i = 0; i < s->len; i++, p += 8)
        put_le64(p, s->items[i]);
    for (uint32_t i = 0; i < s->len; i++, p += 4) {
        uint32_t t = s->types ? s->types[i] : 0;
        for (int k = 0; k < 4; k++)
            p[k] = (uint8_t)(t >> (8 * k));
    }
    if (s->aux_len) {
        p = put_varint(p, s->aux_len);
        memcpy(p, s->aux, s->aux_len);
    }
    if (written)
        *written = need;
    return SR_OK;
}

sr_err_t sr__session_peek(const uint8_t *buf, size_t n, uint32_t *count, int64_t *last_ts,
                          const uint8_t **raw, const uint8_t **traw, const uint8_t **aux,
                          uint32_t *aux_len, struct sr_error *err)
{
    if (n < 1)
        return sr_error_set(err, SR_EFORMAT, "session value: empty");
    const unsigned ver = buf[0];
    if (ver < SR_SESSION_VALUE_VERSION_V1 || ver > SR_SESSION_VALUE_VERSION)
        return sr_error_set(err, SR_EFORMAT, "session value: version %u, expected %u..%u", ver,
                            (unsigned)SR_SESSION_VALUE_VERSION_V1,
                            (unsigned)SR_SESSION_VALUE_VERSION);
    const size_t per_item = ver == SR_SESSION_VALUE_VERSION_V1 ? 8 : 12;
    size_t pos = 1;
    uint64_t c = 0;
    sr_err_t rc = get_varint(buf, n, &pos, &c, "item count", err);
    if (rc)
        return rc;
    if (c > UINT32_MAX)
        return sr_error_set(err, SR_EFORMAT, "session value: item count %llu too large",
                            (unsigned long long)c);
    /* pos <= 6 and c < 2^32: no overflow in size_t (64-bit) arithmetic */
    size_t need = pos + 8 + (size_t)c * per_item;
    uint64_t a = 0;
    size_t apos = need;
    if (ver == SR_SESSION_VALUE_VERSION) {
        if (n <= need)
            return sr_error_set(err, SR_EFORMAT,
                                "session value: %zu bytes for %llu items, expected more than %zu",
                                n, (unsigned long long)c, need);
        if ((rc = get_varint(buf, n, &apos, &a, "encoder state length", err)))
            return rc;
        if (a == 0 || a > SR_SESSION_AUX_MAX)
            return sr_error_set(err, SR_EFORMAT, "session value: encoder state of %llu bytes "
                                "(1..%u)", (unsigned long long)a, SR_SESSION_AUX_MAX);
        need = apos + (size_t)a;
    }
    if (n != need)
        return sr_error_set(err, SR_EFORMAT,
                            "session value: %zu bytes for %llu items, expected %zu", n,
                            (unsigned long long)c, need);
    *count = (uint32_t)c;
    *last_ts = (int64_t)get_le64(buf + pos);
    *raw = buf + pos + 8;
    if (traw)
        *traw = per_item == 12 ? buf + pos + 8 + (size_t)c * 8 : NULL;
    if (aux) {
        *aux = a ? buf + apos : NULL;
        *aux_len = (uint32_t)a;
    }
    return SR_OK;
}

uint32_t sr__session_items_load(uint64_t *dst, const uint8_t *raw, uint32_t count, uint32_t keep)
{
    uint32_t skip = count > keep ? count - keep : 0;
    uint32_t m = count - skip;
    raw += (size_t)skip * 8;
    for (uint32_t i = 0; i < m; i++, raw += 8)
        dst[i] = get_le64(raw);
    return m;
}

void sr__session_types_load(uint32_t *dst, const uint8_t *traw, uint32_t count, uint32_t keep)
{
    uint32_t skip = count > keep ? count - keep : 0, m = count - skip;
    if (!traw) {
        memset(dst, 0, (size_t)m * 4);
        return;
    }
    traw += (size_t)skip * 4;
    for (uint32_t i = 0; i < m; i++, traw += 4)
        dst[i] = (uint32_t)traw[0] | (uint32_t)traw[1] << 8 | (uint32_t)traw[2] << 16 |
                 (uint32_t)traw[3] << 24;
}

sr_err_t sr_session_decode(const void *buf, size_t n, sr_arena_t *arena, struct sr_session *out,
                           struct sr_error *err)
{
    if (!buf || !arena || !out)
        return sr_error_set(err, SR_EINVAL, "session decode: null buffer, arena or output");
    uint32_t count, aux_len;
    int64_t ts;
    const uint8_t *raw, *traw, *aux;
    sr_err_t rc = sr__session_peek(buf, n, &count, &ts, &raw, &traw, &aux, &aux_len, err);
    if (rc)
        return rc;
    uint64_t *items = NULL;
    uint32_t *types = NULL;
    if (count) {
        items = sr_arena_alloc(arena, (size_t)count * 8, 8);
        types = traw ? sr_arena_alloc(arena, (size_t)count * 4, 4) : NULL;
        if (!items || (traw && !types))
            return sr_error_set(err, SR_ENOMEM, "session decode: %u items", count);
        sr__session_items_load(items, raw, count, count);
        if (traw)
            sr__session_types_load(types, traw, count, count);
    }
    uint8_t *a = NULL;
    if (aux_len) {
        if (!(a = sr_arena_alloc(arena, aux_len, 16)))
            return sr_error_set(err, SR_ENOMEM, "session decode: encoder state of %u bytes",
                                aux_len);
        memcpy(a, aux, aux_len);
    }
    out->items = items;
    out->types = types;
    out->len = count;
    out->last_ts = ts;
    out->aux = a;
    out->aux_len = aux_len;
    out->found = true;
    out->expired = false;
    return SR_OK;
}
