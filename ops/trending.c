/* trending.c — the trending sketch of DESIGN §4.6: Space-Saving (Metwally, Agrawal, El Abbadi,
 * 2005) over forward-decayed counts (Cormode, Shkapenyuk, Srivastava, Xu, 2009). It owns
 * nothing but the arena block it lives in: the entries, a min-heap of them by (count, key) for
 * the eviction, and an open-addressing index by item key. Invariants: n <= cap; the heap holds
 * every entry and its root is the least by the total order (count asc, key desc); the index
 * maps each tracked key to its entry. Called by the trending op on the graph's thread. */
#include "ops_int.h"
#include "sr_state.h"

#include <math.h>
#include <string.h>

/* L moves forward when an event is more than this many half-lives after it: counts stay below
 * 2^RESCALE_HALF_LIVES times the weights they sum, far from a double's range. */
#define RESCALE_HALF_LIVES 64

struct sr__trend {
    uint32_t cap, n;
    uint32_t tcap;       /* index slots: power of two >= 2 * cap */
    int64_t landmark;    /* L (ms); meaningful once n > 0 */
    bool has_landmark;
    double half_life;    /* ms */
    uint64_t *key;       /* [cap] */
    double *cnt, *err;   /* [cap]: count relative to L and its overestimate bound */
    uint8_t *idlen;      /* [cap] */
    char *ids;           /* [cap * SR__TREND_ID_MAX] */
    uint32_t *heap;      /* [cap]: entry indices */
    uint32_t *hpos;      /* [cap]: entry -> heap position */
    uint32_t *tab;       /* [tcap]: entry + 1, 0 = empty */
};

static uint32_t tab_cap(uint32_t cap)
{
    uint32_t t = 16;
    while (t < 2 * cap)
        t <<= 1;
    return t;
}

size_t sr__trend_bytes(uint32_t cap)
{
    size_t per = 8 + 8 + 8 + 1 + SR__TREND_ID_MAX + 4 + 4;
    return sizeof(struct sr__trend) + (size_t)cap * per + (size_t)tab_cap(cap) * 4 + 8 * 16;
}

sr__trend_t *sr__trend_new(sr_arena_t *A, uint32_t cap, int64_t half_life_ms)
{
    if (cap < 1 || half_life_ms < 1)
        return NULL;
    sr__trend_t *t = sr_arena_alloc(A, sizeof *t, 16);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->cap = cap;
    t->tcap = tab_cap(cap);
    t->half_life = (double)half_life_ms;
    t->key = sr_arena_alloc(A, 8u * cap, 16);
    t->cnt = sr_arena_alloc(A, 8u * cap, 16);
    t->err = sr_arena_alloc(A, 8u * cap, 16);
    t->idlen = sr_arena_alloc(A, cap, 16);
    t->ids = sr_arena_alloc(A, (size_t)cap * SR__TREND_ID_MAX, 16);
    t->heap = sr_arena_alloc(A, 4u * cap, 16);
    t->hpos = sr_arena_alloc(A, 4u * cap, 16);
    t->tab = sr_arena_calloc(A, t->tcap, 4);
    if (!t->key || !t->cnt || !t->err || !t->idlen || !t->ids || !t->heap || !t->hpos || !t->tab)
        return NULL;
    return t;
}

uint32_t sr__trend_count(const sr__trend_t *t) { return t->n; }

/* a before b in the eviction order: the smaller count, ties to the greater key */
static inline bool below(const sr__trend_t *t, uint32_t a, uint32_t b)
{
    return t->cnt[a] < t->cnt[b] || (t->cnt[a] == t->cnt[b] && t->key[a] > t->key[b]);
}

static void heap_set(sr__trend_t *t, uint32_t pos, uint32_t e)
{
    t->heap[pos] = e;
    t->hpos[e] = pos;
}

static void sift_up(sr__trend_t *t, uint32_t pos)
{
    uint32_t e = t->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!below(t, e, t->heap[parent]))
            break;
        heap_set(t, pos, t->heap[parent]);
        pos = parent;
    }
    heap_set(t, pos, e);
}

static void sift_down(sr__trend_t *t, uint32_t pos)
{
    uint32_t e = t->heap[pos];
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= t->n)
            break;
        if (c + 1 < t->n && below(t, t->heap[c + 1], t->heap[c]))
            c++;
        if (!below(t, t->heap[c], e))
            break;
        heap_set(t, pos, t->heap[c]);
        pos = c;
    }
    heap_set(t, pos, e);
}

static uint32_t slot_of(uint64_t key, uint32_t tcap)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & (tcap - 1);
}

/* The entry of key, or UINT32_MAX. */
static uint32_t tab_find(const sr__trend_t *t, uint64_t key)
{
    for (uint32_t j = slot_of(key, t->tcap);; j = (j + 1) & (t->tcap - 1)) {
        uint32_t v = t->tab[j];
        if (!v)
            return UINT32_MAX;
        if (t->key[v - 1] == key)
            return v - 1;
    }
}

static void tab_insert(sr__trend_t *t, uint32_t e)
{
    uint32_t j = slot_of(t->key[e], t->tcap);
    while (t->tab[j])
        j = (j + 1) & (t->tcap - 1);
    t->tab[j] = e + 1;
}

/* Removes key's slot with backward-shift deletion (linear probing keeps no tombstones). */
static void tab_remove(sr__trend_t *t, uint64_t key)
{
    uint32_t m = t->tcap - 1, j = slot_of(key, t->tcap);
    while (t->tab[j] && t->key[t->tab[j] - 1] != key)
        j = (j + 1) & m;
    if (!t->tab[j])
        return;
    t->tab[j] = 0;
    for (uint32_t k = (j + 1) & m; t->tab[k]; k = (k + 1) & m) {
        uint32_t home = slot_of(t->key[t->tab[k] - 1], t->tcap);
        /* move k's entry into the hole when its home is not cyclically in (j, k] */
        bool stays = j <= k ? (home > j && home <= k) : (home > j || home <= k);
        if (!stays) {
            t->tab[j] = t->tab[k];
            t->tab[k] = 0;
            j = k;
        }
    }
}

static void rescale(sr__trend_t *t, int64_t ts)
{
    double f = exp2(-(double)(ts - t->landmark) / t->half_life);
    for (uint32_t i = 0; i < t->n; i++) {
        t->cnt[i] *= f;
        t->err[i] *= f;
    }
    t->landmark = ts;
    /* scaling keeps the order except where it rounds two counts together: restore the heap */
    for (uint32_t i = t->n / 2; i-- > 0;)
        sift_down(t, i);
}

bool sr__trend_add(sr__trend_t *t, uint64_t key, const char *id, uint32_t idlen, double w,
                   int64_t ts)
{
    if (idlen > SR__TREND_ID_MAX)
        return false;
    if (!t->has_landmark) {
        t->landmark = ts;
        t->has_landmark = true;
    } else if ((double)(ts - t->landmark) > RESCALE_HALF_LIVES * t->half_life) {
        rescale(t, ts);
    }
    double inc = w * exp2((double)(ts - t->landmark) / t->half_life);
    uint32_t e = tab_find(t, key);
    if (e != UINT32_MAX) {
        t->cnt[e] += inc;
        sift_down(t, t->hpos[e]);
        return true;
    }
    bool fresh = t->n < t->cap;
    double base = 0;
    if (fresh) {
        e = t->n++;
        heap_set(t, t->n - 1, e);
    } else { /* Space-Saving: the least item's slot, its count kept as the newcomer's error */
        e = t->heap[0];
        tab_remove(t, t->key[e]);
        base = t->cnt[e];
    }
    t->key[e] = key;
    t->cnt[e] = base + inc;
    t->err[e] = base;
    t->idlen[e] = (uint8_t)idlen;
    memcpy(t->ids + (size_t)e * SR__TREND_ID_MAX, id, idlen);
    tab_insert(t, e);
    if (fresh)
        sift_up(t, t->hpos[e]);
    else
        sift_down(t, 0);
    return true;
}

bool sr__trend_estimate(const sr__trend_t *t, uint64_t key, int64_t ts, double *count,
                        double *err)
{
    uint32_t e = tab_find(t, key);
    if (e == UINT32_MAX)
        return false;
    double f = exp2((double)(t->landmark - ts) / t->half_life);
    *count = t->cnt[e] * f;
    *err = t->err[e] * f;
    return true;
}

/* Orders candidates for the top: a min-heap of at most `cap` of them by the total order, so
 * its root is the weakest kept. */
static void top_sift_down(const sr__trend_t *t, uint32_t *h, uint32_t n, uint32_t pos)
{
    uint32_t e = h[pos];
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= n)
            break;
        if (c + 1 < n && below(t, h[c + 1], h[c]))
            c++;
        if (!below(t, h[c], e))
            break;
        h[pos] = h[c];
        pos = c;
    }
    h[pos] = e;
}

static uint32_t top_select(const sr__trend_t *t, uint32_t want, uint32_t *h)
{
    uint32_t m = 0;
    for (uint32_t e = 0; e < t->n; e++) {
        if (m < want) {
            h[m++] = e;
            if (m == want)
                for (uint32_t i = m / 2; i-- > 0;)
                    top_sift_down(t, h, m, i);
        } else if (below(t, h[0], e)) {
            h[0] = e;
            top_sift_down(t, h, m, 0);
        }
    }
    if (m < want)
        for (uint32_t i = m / 2; i-- > 0;)
            top_sift_down(t, h, m, i);
    /* heap sort: pop the weakest to the back, leaving the strongest first */
    for (uint32_t k = m; k > 1; k--) {
        uint32_t x = h[0];
        h[0] = h[k - 1];
        h[k - 1] = x;
        top_sift_down(t, h, k - 1, 0);
    }
    return m;
}

uint32_t sr__trend_top(const sr__trend_t *t, int64_t ts, uint32_t n, sr__trend_accept_fn accept,
                       void *opaque, uint32_t *scratch, uint64_t *keys, const char **ids,
                       uint32_t *idlens, float *scores)
{
    if (!n || !t->n)
        return 0;
    double f = exp2((double)(t->landmark - ts) / t->half_life);
    /* Select a few more than n and filter; when the filter takes too many, select more. */
    uint32_t want = n + n / 2 + 8, got = 0;
    for (;;) {
        if (want > t->n)
            want = t->n;
        uint32_t m = top_select(t, want, scratch);
        got = 0;
        for (uint32_t i = 0; i < m && got < n; i++) {
            uint32_t e = scratch[i];
            if (accept && !accept(opaque, t->key[e]))
                continue;
            keys[got] = t->key[e];
            ids[got] = t->ids + (size_t)e * SR__TREND_ID_MAX;
            idlens[got] = t->idlen[e];
            scores[got] = (float)(t->cnt[e] * f);
            got++;
        }
        if (got == n || want == t->n)
            return got;
        want = want * 2 > t->n ? t->n : want * 2;
    }
}

/* ---- encoding ----------------------------------------------------------------------------- */

#define ENTRY_FIXED (8 + 8 + 8 + 1)
#define HEADER (1 + 8 + 4)

size_t sr__trend_encoded_max(uint32_t cap)
{
    return HEADER + (size_t)cap * (ENTRY_FIXED + SR__TREND_ID_MAX);
}

size_t sr__trend_encoded_size(const sr__trend_t *t)
{
    size_t s = HEADER + (size_t)t->n * ENTRY_FIXED;
    for (uint32_t i = 0; i < t->n; i++)
        s += t->idlen[i];
    return s;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t dbits(double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    return v;
}

static double bitsd(uint64_t v)
{
    double d;
    memcpy(&d, &v, 8);
    return d;
}

void sr__trend_encode(const sr__trend_t *t, uint8_t *p)
{
    *p++ = SR__TREND_VERSION;
    put64(p, (uint64_t)t->landmark);
    p += 8;
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(t->n >> (8 * i));
    for (uint32_t e = 0; e < t->n; e++) { /* entry order: decode restores the same indices */
        put64(p, t->key[e]);
        put64(p + 8, dbits(t->cnt[e]));
        put64(p + 16, dbits(t->err[e]));
        p[24] = t->idlen[e];
        memcpy(p + 25, t->ids + (size_t)e * SR__TREND_ID_MAX, t->idlen[e]);
        p += 25 + t->idlen[e];
    }
}

sr_err_t sr__trend_decode(const uint8_t *buf, size_t n, sr_arena_t *A, uint32_t cap,
                          int64_t half_life_ms, const char *what, sr__trend_t **out,
                          struct sr_error *err)
{
    *out = NULL;
    if (n < HEADER || buf[0] != SR__TREND_VERSION)
        return sr_error_set(err, SR_EFORMAT, "%s: trending sketch: %s", what,
                            n < HEADER ? "truncated header" : "unknown version");
    uint32_t count = (uint32_t)buf[9] | (uint32_t)buf[10] << 8 | (uint32_t)buf[11] << 16 |
                     (uint32_t)buf[12] << 24;
    if (count > SR__TREND_CAP_MAX)
        return sr_error_set(err, SR_EFORMAT, "%s: trending sketch: %u entries (max %u)", what,
                            count, SR__TREND_CAP_MAX);
    /* a value of more entries than cap is read whole, then its cap greatest are kept */
    sr__trend_t *t = sr__trend_new(A, count > cap ? count : cap, half_life_ms);
    if (!t)
        return sr_error_set(err, SR_ENOMEM, "%s: trending sketch of %u entries", what, count);
    t->landmark = (int64_t)get64(buf + 1);
    t->has_landmark = count > 0;
    const uint8_t *p = buf + HEADER, *end = buf + n;
    for (uint32_t e = 0; e < count; e++) {
        if (end - p < ENTRY_FIXED || end - p < ENTRY_FIXED + p[24])
            return sr_error_set(err, SR_EFORMAT, "%s: trending sketch: entry %u truncated", what,
                                e);
        if (p[24] > SR__TREND_ID_MAX)
            return sr_error_set(err, SR_EFORMAT, "%s: trending sketch: entry %u: id of %u bytes "
                                "(max %d)", what, e, p[24], SR__TREND_ID_MAX);
        t->key[e] = get64(p);
        t->cnt[e] = bitsd(get64(p + 8));
        t->err[e] = bitsd(get64(p + 16));
        t->idlen[e] = p[24];
        memcpy(t->ids + (size_t)e * SR__TREND_ID_MAX, p + 25, p[24]);
        if (!(t->cnt[e] >= 0) || !(t->err[e] >= 0) || tab_find(t, t->key[e]) != UINT32_MAX)
            return sr_error_set(err, SR_EFORMAT, "%s: trending sketch: entry %u: %s", what, e,
                                tab_find(t, t->key[e]) != UINT32_MAX ? "duplicate item"
                                                                     : "bad count");
        t->n = e + 1;
        tab_insert(t, e);
        p += 25 + p[24];
    }
    if (p != end)
        return sr_error_set(err, SR_EFORMAT, "%s: trending sketch: %zu bytes after the entries",
                            what, (size_t)(end - p));
    for (uint32_t e = 0; e < t->n; e++)
        heap_set(t, e, e);
    for (uint32_t i = t->n / 2; i-- > 0;)
        sift_down(t, i);
    if (t->n > cap) { /* keep the cap greatest, in their order, in a sketch of cap */
        uint32_t *order = sr_arena_alloc(A, 4u * t->n, 16);
        sr__trend_t *s = sr__trend_new(A, cap, half_life_ms);
        if (!order || !s)
            return sr_error_set(err, SR_ENOMEM, "%s: trending sketch", what);
        uint32_t m = top_select(t, cap, order);
        s->landmark = t->landmark;
        s->has_landmark = true;
        for (uint32_t i = 0; i < m; i++) {
            uint32_t e = order[i];
            s->key[i] = t->key[e];
            s->cnt[i] = t->cnt[e];
            s->err[i] = t->err[e];
            s->idlen[i] = t->idlen[e];
            memcpy(s->ids + (size_t)i * SR__TREND_ID_MAX, t->ids + (size_t)e * SR__TREND_ID_MAX,
                   t->idlen[e]);
            s->n = i + 1;
            tab_insert(s, i);
            heap_set(s, i, i);
        }
        for (uint32_t i = s->n / 2; i-- > 0;)
            sift_down(s, i);
        t = s;
    }
    *out = t;
    return SR_OK;
}
