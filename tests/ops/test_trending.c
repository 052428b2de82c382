/* test_trending.c — the trending sketch (ops/trending.c, DESIGN §4.6): its memory bound on a
 * 10^7-event stream of 10^6 distinct items, its top-100 against the exact top-100 on a Zipf
 * stream, the Space-Saving error bound, event-time decay, and that a sketch decoded from its
 * bytes behaves exactly as the one that wrote them (so batch boundaries cannot change outputs);
 * malformed values are refused with the reason. Also the softmax sampler's frequencies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_int.h"
#include "sr_state.h"

/* splitmix64: a reproducible stream of 64-bit values */
static uint64_t next64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void add_item(sr__trend_t *t, uint32_t item, double w, int64_t ts)
{
    char id[32];
    int n = snprintf(id, sizeof id, "sku-%u", item);
    assert_true(sr__trend_add(t, sr_hash64(id, (size_t)n), id, (uint32_t)n, w, ts));
}

/* 10^7 events over 10^6 distinct items: the sketch holds at most cap items, takes exactly
 * sr__trend_bytes(cap) of memory whatever the stream, and encodes within its bound. */
static void test_memory_bound(void **state)
{
    (void)state;
    const uint32_t cap = 1024;
    sr_arena_t *A = sr_arena_new(1 << 20);
    sr__trend_t *t = sr__trend_new(A, cap, 3600000);
    assert_non_null(t);
    size_t used = sr_arena_used(A);
    assert_true(used <= sr__trend_bytes(cap));
    uint64_t s = 1;
    for (uint32_t i = 0; i < 10000000u; i++)
        add_item(t, (uint32_t)(next64(&s) % 1000000u), 1.0, 1700000000000 + i / 10);
    assert_int_equal(sr__trend_count(t), cap);
    assert_int_equal(sr_arena_used(A), used); /* no allocation after creation */
    size_t n = sr__trend_encoded_size(t);
    assert_true(n <= sr__trend_encoded_max(cap));
    assert_true(sr__trend_encoded_max(SR__TREND_CAP_MAX) <= SR_SESSION_AUX_MAX);
    sr_arena_destroy(A);
}

static int cmp_desc(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b; /* (count << 32 | ~item): count desc, item asc */
    return *x < *y ? 1 : *x > *y ? -1 : 0;
}

/* Zipf (s = 1) over 10^6 items, 2·10^6 events, no decay to speak of (half-life 10^12 ms): the
 * sketch's top-100 shares >= 95 of the exact top-100. */
static void test_zipf_top100(void **state)
{
    (void)state;
    const uint32_t N = 1000000, E = 2000000;
    double *cdf = malloc(sizeof(double) * N);
    uint32_t *exact = calloc(N, sizeof(uint32_t));
    assert_non_null(cdf);
    assert_non_null(exact);
    double sum = 0;
    for (uint32_t i = 0; i < N; i++)
        cdf[i] = (sum += 1.0 / (i + 1));
    sr_arena_t *A = sr_arena_new(1 << 20);
    sr__trend_t *t = sr__trend_new(A, 1024, 1000000000000LL);
    uint64_t s = 7;
    for (uint32_t e = 0; e < E; e++) {
        /* a Zipf rank by inverse CDF; ranks are scattered over item numbers so that the item
         * number says nothing about popularity */
        double u = (double)(next64(&s) >> 11) / 9007199254740992.0 * sum;
        uint32_t lo = 0, hi = N - 1;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        uint32_t item = (uint32_t)(((uint64_t)lo * 2654435761u) % N);
        exact[item]++;
        add_item(t, item, 1.0, 1700000000000LL + e);
    }
    uint64_t *order = malloc(sizeof(uint64_t) * N);
    for (uint32_t i = 0; i < N; i++)
        order[i] = (uint64_t)exact[i] << 32 | (uint32_t)~i;
    qsort(order, N, sizeof *order, cmp_desc);
    uint64_t top[100];
    for (int i = 0; i < 100; i++) {
        char id[32];
        int n = snprintf(id, sizeof id, "sku-%u", ~(uint32_t)order[i]);
        top[i] = sr_hash64(id, (size_t)n);
    }
    uint32_t scratch[2048];
    uint64_t keys[100];
    const char *ids[100];
    uint32_t lens[100];
    float scores[100];
    uint32_t got = sr__trend_top(t, 1700000000000LL + E, 100, NULL, NULL, scratch, keys, ids,
                                 lens, scores);
    assert_int_equal(got, 100);
    int overlap = 0;
    for (int i = 0; i < 100; i++)
        for (int j = 0; j < 100; j++)
            overlap += keys[i] == top[j];
    print_message("zipf top-100 overlap: %d/100\n", overlap);
    assert_true(overlap >= 95);
    /* scores are decayed counts, in descending order; each estimate is within its bound */
    for (int i = 1; i < 100; i++)
        assert_true(scores[i] <= scores[i - 1]);
    for (int i = 0; i < 100; i++) {
        double c, er;
        assert_true(sr__trend_estimate(t, keys[i], 1700000000000LL + E, &c, &er));
        char num[32];
        memcpy(num, ids[i] + 4, lens[i] - 4); /* ids are not NUL-terminated */
        num[lens[i] - 4] = 0;
        uint32_t item = (uint32_t)strtoul(num, NULL, 10);
        assert_true(c + 1e-3 >= exact[item] * exp2(-(double)E / 1e12) * 0.999);
        assert_true(c - er <= exact[item] + 1e-3);
        assert_true(er <= (double)E / 1024 + 1e-3);
    }
    sr_arena_destroy(A);
    free(order);
    free(cdf);
    free(exact);
}

/* A half-life later, an item's count is half; a newer event weighs more than an older one. */
static void test_decay(void **state)
{
    (void)state;
    sr_arena_t *A = sr_arena_new(1 << 16);
    sr__trend_t *t = sr__trend_new(A, 16, 1000);
    add_item(t, 1, 4.0, 10000);
    double c, e;
    assert_true(sr__trend_estimate(t, sr_hash64("sku-1", 5), 11000, &c, &e));
    assert_true(fabs(c - 2.0) < 1e-12);
    assert_true(sr__trend_estimate(t, sr_hash64("sku-1", 5), 13000, &c, &e));
    assert_true(fabs(c - 0.5) < 1e-12);
    /* item 2 gets 1.0 three half-lives later: it outranks item 1 (0.5 by then) */
    add_item(t, 2, 1.0, 13000);
    uint32_t scratch[32];
    uint64_t keys[2];
    const char *ids[2];
    uint32_t lens[2];
    float sc[2];
    assert_int_equal(sr__trend_top(t, 13000, 2, NULL, NULL, scratch, keys, ids, lens, sc), 2);
    assert_memory_equal(ids[0], "sku-2", 5);
    assert_true(fabs(sc[0] - 1.0f) < 1e-6 && fabs(sc[1] - 0.5f) < 1e-6);
    /* far later (past the rescaling point) the order and ratios survive the landmark move */
    add_item(t, 1, 1.0, 13000 + 100 * 1000);
    assert_true(sr__trend_estimate(t, sr_hash64("sku-1", 5), 113000, &c, &e));
    assert_true(fabs(c - 1.0) < 1e-9);
    sr_arena_destroy(A);
}

static bool reject_even(void *opaque, uint64_t key)
{
    (void)opaque;
    return key % 2 == 1;
}

/* Two sketches fed the same events, one re-decoded from its bytes every few events (a batch
 * boundary), stay byte-identical and answer the same; the accept filter only skips. */
static void test_roundtrip_same_behaviour(void **state)
{
    (void)state;
    sr_arena_t *A = sr_arena_new(1 << 20), *B = sr_arena_new(1 << 20);
    sr__trend_t *a = sr__trend_new(A, 64, 5000), *b = NULL;
    uint8_t *buf = malloc(sr__trend_encoded_max(64)), *buf2 = malloc(sr__trend_encoded_max(64));
    size_t bn = 0;
    uint64_t s = 3;
    struct sr_error err;
    for (int i = 0; i < 20000; i++) {
        uint32_t item = (uint32_t)(next64(&s) % 500);
        double w = 1.0 + (double)(next64(&s) % 3);
        int64_t ts = 1000000 + i * 37 - (int64_t)(next64(&s) % 2000); /* out of order too */
        /* b: decoded from the previous bytes, then the event, then encoded again */
        sr_arena_reset(B);
        if (bn)
            assert_int_equal(sr__trend_decode(buf, bn, B, 64, 5000, "test", &b, &err), SR_OK);
        else
            b = sr__trend_new(B, 64, 5000);
        add_item(a, item, w, ts);
        add_item(b, item, w, ts);
        bn = sr__trend_encoded_size(b);
        sr__trend_encode(b, buf);
        if (i % 997 == 0 || i == 19999) {
            size_t an = sr__trend_encoded_size(a);
            assert_int_equal(an, bn);
            sr__trend_encode(a, buf2);
            assert_memory_equal(buf, buf2, bn);
        }
    }
    uint32_t scratch[128];
    uint64_t ka[10], kb[10];
    const char *ia[10], *ib[10];
    uint32_t la[10], lb[10];
    float sa[10], sb[10];
    uint32_t na = sr__trend_top(a, 2000000, 10, reject_even, NULL, scratch, ka, ia, la, sa);
    uint32_t nb = sr__trend_top(b, 2000000, 10, reject_even, NULL, scratch, kb, ib, lb, sb);
    assert_int_equal(na, 10);
    assert_int_equal(nb, 10);
    assert_memory_equal(ka, kb, sizeof ka);
    assert_memory_equal(sa, sb, sizeof sa);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ka[i] % 2, 1);
    /* a lower capacity on decode keeps the greatest items, in the same order */
    sr_arena_reset(B);
    sr__trend_t *small;
    assert_int_equal(sr__trend_decode(buf, bn, B, 16, 5000, "test", &small, &err), SR_OK);
    assert_int_equal(sr__trend_count(small), 16);
    uint64_t kall[16], kfull[16];
    const char *i16[16];
    uint32_t l16[16];
    float s16[16];
    assert_int_equal(sr__trend_top(small, 2000000, 16, NULL, NULL, scratch, kall, i16, l16, s16),
                     16);
    assert_int_equal(sr__trend_top(a, 2000000, 16, NULL, NULL, scratch, kfull, i16, l16, s16),
                     16);
    assert_memory_equal(kall, kfull, sizeof kall);
    free(buf);
    free(buf2);
    sr_arena_destroy(A);
    sr_arena_destroy(B);
}

static void test_decode_errors(void **state)
{
    (void)state;
    sr_arena_t *A = sr_arena_new(1 << 16);
    sr__trend_t *t = sr__trend_new(A, 16, 1000), *out;
    add_item(t, 1, 1.0, 5);
    add_item(t, 2, 1.0, 6);
    size_t n = sr__trend_encoded_size(t);
    uint8_t buf[256];
    sr__trend_encode(t, buf);
    struct sr_error err;
    assert_int_equal(sr__trend_decode(buf, n, A, 16, 1000, "partition 3", &out, &err), SR_OK);
    assert_int_equal(sr__trend_decode(buf, 5, A, 16, 1000, "partition 3", &out, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "partition 3: trending sketch: truncated header"));
    assert_int_equal(sr__trend_decode(buf, n - 1, A, 16, 1000, "p", &out, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "entry 1 truncated"));
    uint8_t v = buf[0];
    buf[0] = 9;
    assert_int_equal(sr__trend_decode(buf, n, A, 16, 1000, "p", &out, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "unknown version"));
    buf[0] = v;
    uint8_t longer[260];
    memcpy(longer, buf, n);
    longer[n] = 0;
    assert_int_equal(sr__trend_decode(longer, n + 1, A, 16, 1000, "p", &out, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "1 bytes after the entries"));
    /* the second entry a copy of the first: a duplicate item */
    size_t e1 = 13, e2 = 13 + 25 + buf[13 + 24];
    memcpy(buf + e2, buf + e1, 8);
    assert_int_equal(sr__trend_decode(buf, n, A, 16, 1000, "p", &out, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "duplicate item"));
    /* an id longer than SR__TREND_ID_MAX is not tracked */
    char id[SR__TREND_ID_MAX + 1];
    memset(id, 'x', sizeof id);
    assert_false(sr__trend_add(t, 99, id, sizeof id, 1.0, 7));
    sr_arena_destroy(A);
}

/* Softmax sampling (op_sample.c): over 10^4 seeds (one per event offset) the first draw
 * follows softmax(score / T) within 4 standard deviations per item, at T = 1 and T = 0.5; draws
 * are without replacement; the same seed gives the same draws. */
static void check_freq(double T)
{
    const float sc[5] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f};
    double p[5], z = 0;
    for (int i = 0; i < 5; i++)
        z += (p[i] = exp(sc[i] / T));
    int cnt[5] = {0};
    const int N = 10000;
    for (int o = 0; o < N; o++) {
        int32_t out[3];
        uint64_t seed = sr__sample_seed("s1", 2, o, "v1");
        sr__sample_softmax(sc, 5, 3, T, seed, out);
        assert_true(out[0] != out[1] && out[0] != out[2] && out[1] != out[2]);
        int32_t again[3];
        sr__sample_softmax(sc, 5, 3, T, seed, again);
        assert_memory_equal(out, again, sizeof out);
        cnt[out[0]]++;
    }
    for (int i = 0; i < 5; i++) {
        double pi = p[i] / z, f = (double)cnt[i] / N, sd = sqrt(pi * (1 - pi) / N);
        print_message("T=%.1f item %d: p=%.4f freq=%.4f\n", T, i, pi, f);
        assert_true(fabs(f - pi) < 4 * sd);
    }
}

static void test_softmax_sampling(void **state)
{
    (void)state;
    check_freq(1.0);
    check_freq(0.5);
    /* a different session or model version draws differently */
    assert_true(sr__sample_seed("s1", 2, 5, "v1") != sr__sample_seed("s2", 2, 5, "v1"));
    assert_true(sr__sample_seed("s1", 2, 5, "v1") != sr__sample_seed("s1", 2, 5, "v2"));
    assert_true(sr__sample_seed("s1", 2, 5, "v1") != sr__sample_seed("s1", 2, 6, "v1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_zipf_top100),
        cmocka_unit_test(test_decay),
        cmocka_unit_test(test_roundtrip_same_behaviour),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_softmax_sampling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
