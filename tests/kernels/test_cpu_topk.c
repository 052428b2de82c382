/* test_cpu_topk.c — the cpu backend's exact top-k (kernels/cpu/cpu_topk.c) against a full
 * ranking by the host re-scoring's key, (float) of the double chain bias + q·e (model.c),
 * index ascending on ties: the same index and score bytes, on data built to defeat the FP32
 * screen (near-ties below FP32 resolution, large norms with cancellation, all-equal scores,
 * filtered items), pinned and unpinned tables, every instruction-set variant, 1-3 threads,
 * and each query alone vs inside a batch. Thread: the test's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernels_int.h"
#include "cpu/cpu_int.h" /* sr__cpu_gemm_set_isa, sr__cpu_gemm_isa_best */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float frand(void) { return (float)((rnd() % 2000001) / 1000000.0 - 1.0); }

struct cand {
    float s;
    int32_t j;
};
static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

struct problem {
    int B, d, first, V, k;
    float *q, *tab, *bias;  /* bias may be NULL */
    int32_t *eo, *ei;       /* NULL: no exclusions */
};

/* The expected answer for query b: keys as model.c's re-scoring computes them. */
static void reference(const struct problem *P, int b, int32_t *idx, float *sc)
{
    struct cand *all = malloc(sizeof *all * (size_t)P->V + 1);
    int n = 0;
    for (int j = P->first; j < P->V; j++) {
        bool ex = false;
        for (int e = P->eo ? P->eo[b] : 0; P->eo && e < P->eo[b + 1]; e++)
            ex |= P->ei[e] == j;
        if (ex)
            continue;
        double acc = P->bias ? (double)P->bias[j] : 0.0;
        for (int x = 0; x < P->d; x++)
            acc += (double)P->q[(size_t)b * P->d + x] * (double)P->tab[(size_t)j * P->d + x];
        float s = (float)acc;
        if (s == -INFINITY)
            continue;
        all[n++] = (struct cand){s, j};
    }
    qsort(all, (size_t)n, sizeof *all, cand_cmp);
    for (int r = 0; r < P->k; r++) {
        idx[r] = r < n ? all[r].j : -1;
        sc[r] = r < n ? all[r].s : -INFINITY;
    }
    free(all);
}

static sr_backend_t *mk(int threads)
{
    struct sr_backend_params p = {.device = SR_DEVICE_CPU, .threads = threads};
    sr_backend_t *be = NULL;
    struct sr_error err;
    assert_int_equal(sr_backend_new(&p, &be, &err), SR_OK);
    return be;
}

/* Runs P through every variant and thread count, pinned and not, whole batch and one query at
 * a time; every answer must equal the reference byte for byte. */
static void check(const struct problem *P, const char *what)
{
    size_t nk = (size_t)P->B * P->k;
    int32_t *want_i = malloc(sizeof(int32_t) * nk), *got_i = malloc(sizeof(int32_t) * nk);
    float *want_s = malloc(sizeof(float) * nk), *got_s = malloc(sizeof(float) * nk);
    for (int b = 0; b < P->B; b++)
        reference(P, b, want_i + (size_t)b * P->k, want_s + (size_t)b * P->k);
    struct sr_error err;
    for (int threads = 1; threads <= 3; threads++) {
        sr_backend_t *be = mk(threads);
        const struct sr_backend_iface *ifc = be->iface;
        /* the FP32 screen at every instruction set, then the int8 one (AVX2 and up) */
        for (int v = SR__CPU_ISA_GENERIC; v <= sr__cpu_gemm_isa_best() + 1; v++) {
            int isa = v <= sr__cpu_gemm_isa_best() ? v : sr__cpu_gemm_isa_best();
            int screen = v <= sr__cpu_gemm_isa_best() ? SR__CPU_SCREEN_FP32 : SR__CPU_SCREEN_INT8;
            sr__cpu_gemm_set_isa(be->ctx, isa);
            sr__cpu_topk_set_screen(be->ctx, screen);
            for (int pin = 0; pin < 2; pin++) {
                if (pin)
                    assert_int_equal(ifc->topk_pin(be->ctx, P->tab, P->d, P->first, P->V, &err),
                                     SR_OK);
                /* the whole batch, then each query alone */
                for (int alone = 0; alone < 2; alone++) {
                    memset(got_i, 0x55, sizeof(int32_t) * nk);
                    if (!alone)
                        assert_int_equal(ifc->topk(be->ctx, P->q, P->B, P->tab, P->bias, P->d,
                                                   P->first, P->V, P->eo, P->ei, P->k, got_i,
                                                   got_s, &err), SR_OK);
                    for (int b = 0; alone && b < P->B; b++) {
                        int32_t eo1[2] = {0, P->eo ? P->eo[b + 1] - P->eo[b] : 0};
                        assert_int_equal(ifc->topk(be->ctx, P->q + (size_t)b * P->d, 1, P->tab,
                                                   P->bias, P->d, P->first, P->V,
                                                   P->eo ? eo1 : NULL,
                                                   P->eo ? P->ei + P->eo[b] : NULL, P->k,
                                                   got_i + (size_t)b * P->k,
                                                   got_s + (size_t)b * P->k, &err), SR_OK);
                    }
                    for (size_t i = 0; i < nk; i++)
                        if (got_i[i] != want_i[i] || memcmp(&got_s[i], &want_s[i], sizeof(float)))
                            fail_msg("%s: threads %d isa %d screen %d pin %d alone %d: query %zu rank "
                                     "%zu: got %d %.9g, want %d %.9g", what, threads, isa, screen,
                                     pin, alone,
                                     i / P->k, i % P->k, got_i[i], got_s[i], want_i[i], want_s[i]);
                }
                if (pin)
                    ifc->topk_unpin(be->ctx, P->tab, P->d, P->first, P->V);
            }
        }
        sr_backend_unref(be);
    }
    free(want_i), free(got_i), free(want_s), free(got_s);
}

static struct problem mkprob(int B, int d, int first, int V, int k, bool bias, bool excl)
{
    struct problem P = {.B = B, .d = d, .first = first, .V = V, .k = k};
    P.q = malloc(sizeof(float) * (size_t)B * d);
    P.tab = malloc(sizeof(float) * (size_t)V * d);
    P.bias = bias ? malloc(sizeof(float) * (size_t)V) : NULL;
    if (excl) {
        P.eo = malloc(sizeof(int32_t) * ((size_t)B + 1));
        P.ei = malloc(sizeof(int32_t) * (size_t)B * 30 + 1);
        P.eo[0] = 0;
        for (int b = 0; b < B; b++) {
            int ne = (int)(rnd() % 30);
            P.eo[b + 1] = P.eo[b] + ne;
        }
    }
    return P;
}

static void freeprob(struct problem *P)
{
    free(P->q), free(P->tab), free(P->bias), free(P->eo), free(P->ei);
}

/* Exclusions that hit the top: each query excludes some of its own best items, -1 and V. */
static void fill_excl(struct problem *P)
{
    if (!P->eo)
        return;
    int32_t *ti = malloc(sizeof(int32_t) * (size_t)P->k * 3);
    float *ts = malloc(sizeof(float) * (size_t)P->k * 3);
    struct problem Q = *P;
    Q.eo = NULL;
    Q.k = P->k * 3;
    for (int b = 0; b < P->B; b++) {
        reference(&Q, b, ti, ts);
        for (int e = P->eo[b]; e < P->eo[b + 1]; e++) {
            uint32_t r = rnd() % 4;
            P->ei[e] = r == 0 ? -1 : r == 1 ? P->V : ti[rnd() % (uint32_t)Q.k];
            if (P->ei[e] < 0 && r != 0)
                P->ei[e] = P->first;
        }
    }
    free(ti), free(ts);
}

static void test_random(void **state)
{
    (void)state;
    /* B, d, first, V, k; d 2048 is the int8 screen's largest (|qq·qe| < 2^24), 2049 FP32's */
    int shapes[][5] = {{37, 64, 1, 5003, 10}, {7, 16, 0, 2049, 18}, {1, 3, 2, 700, 5},
                       {13, 64, 1, 40, 50},   {5, 2048, 1, 200, 7},  {3, 2049, 0, 90, 4}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int bias = 0; bias < 2; bias++) {
            int *sh = shapes[s];
            struct problem P = mkprob(sh[0], sh[1], sh[2], sh[3], sh[4], bias, true);
            for (size_t i = 0; i < (size_t)P.B * P.d; i++)
                P.q[i] = frand();
            for (size_t i = 0; i < (size_t)P.V * P.d; i++)
                P.tab[i] = frand();
            for (int j = 0; bias && j < P.V; j++)
                P.bias[j] = frand();
            fill_excl(&P);
            check(&P, "random");
            freeprob(&P);
        }
}

/* Items whose exact scores differ by less than FP32 can resolve: e_j = v + j·2^-30·w, so
 * every FP32 score is the same few values while the keys are all distinct or tied in twos. */
static void test_near_ties(void **state)
{
    (void)state;
    struct problem P = mkprob(9, 64, 1, 3001, 12, true, true);
    float v[64], w[64];
    for (int x = 0; x < 64; x++) {
        v[x] = frand();
        w[x] = frand();
    }
    for (int j = 0; j < P.V; j++) {
        int jj = (j * 7919) % P.V; /* the best items are spread over the catalogue */
        for (int x = 0; x < 64; x++)
            P.tab[(size_t)j * 64 + x] = v[x] + (float)ldexp(w[x] * (jj / 2), -30);
        P.bias[j] = 0.25f;
    }
    for (size_t i = 0; i < (size_t)P.B * P.d; i++)
        P.q[i] = frand();
    fill_excl(&P);
    check(&P, "near-ties");
    freeprob(&P);
}

/* Norms of 10^6 cancelled by the bias for query 0: its FP32 scores carry errors (~0.1)
 * larger than the spread of its exact scores, uncorrelated from item to item. */
static void test_large_norms(void **state)
{
    (void)state;
    struct problem P = mkprob(8, 32, 0, 4000, 10, true, false);
    for (size_t i = 0; i < (size_t)P.B * P.d; i++)
        P.q[i] = frand();
    for (int j = 0; j < P.V; j++) {
        double qb = 0;
        for (int x = 0; x < 32; x++) {
            P.tab[(size_t)j * 32 + x] = 1e6f * frand();
            qb += (double)P.q[x] * P.tab[(size_t)j * 32 + x];
        }
        P.bias[j] = (float)-qb;
    }
    /* a huge-norm query beside the others */
    for (int x = 0; x < 32; x++)
        P.q[32 + x] = 3e4f * frand();
    check(&P, "large norms");
    freeprob(&P);
}

/* Every score equal (zero rows, equal rows), with a filter (-INF bias) on some items and fewer
 * eligible items than k: lowest indices win, filtered items never appear, padding is -1/-INF. */
static void test_all_equal(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        struct problem P = mkprob(5, 24, 2, kind == 2 ? 30 : 1500, kind == 2 ? 40 : 15, true, true);
        for (size_t i = 0; i < (size_t)P.B * P.d; i++)
            P.q[i] = kind == 0 ? 0.0f : frand();
        for (int j = 0; j < P.V; j++) {
            for (int x = 0; x < P.d; x++)
                P.tab[(size_t)j * P.d + x] = kind == 0 ? frand() : (float)(x % 3) - 1.0f;
            P.bias[j] = j % 7 == 3 ? -INFINITY : 0.5f;
        }
        fill_excl(&P);
        check(&P, "all equal");
        freeprob(&P);
    }
}

/* The int8 screen at its bound: query components of equal magnitude (quantized exactly) and
 * items whose int8 residual is aligned with the query (every component but the one that sets
 * the scale halfway between two steps), so the int8 score falls short of the exact one by
 * 99 % of the Cauchy-Schwarz bound |q|·|r|. Item 2i (zero row, a bias) has an exact key just
 * below item 2i+1's, and arrives first: a screen with half its slack drops the better item. */
static void test_int8_bound(void **state)
{
    (void)state;
    struct problem P = mkprob(6, 64, 0, 400, 1, true, false);
    for (int b = 0; b < P.B; b++)
        for (int x = 0; x < 64; x++)
            P.q[(size_t)b * 64 + x] = rnd() % 2 ? 0.75f : -0.75f;
    for (int j = 0; j < P.V; j += 2) {
        const float *q = P.q + (size_t)((j / 2) % P.B) * 64; /* the query this pair is for */
        float *a = P.tab + (size_t)(j + 1) * 64, s = 0.01f * (float)(1 + j % 7);
        memset(P.tab + (size_t)j * 64, 0, sizeof(float) * 64);
        a[0] = q[0] > 0 ? 63 * s : -63 * s;
        for (int x = 1; x < 64; x++)
            a[x] = (q[x] > 0 ? 1 : -1) * (10.49f + (float)(j % 5)) * s;
        double exact = 0, low = 0;
        for (int x = 0; x < 64; x++) {
            exact += (double)q[x] * a[x];
            low += (double)q[x] * (x ? (q[x] > 0 ? 1 : -1) * (10 + j % 5) * (double)s : a[0]);
        }
        P.bias[j + 1] = 0.0f;
        P.bias[j] = (float)(exact - 0.25 * (exact - low)); /* within the int8 error of the pair */
    }
    check(&P, "int8 bound");
    P.k = 3;
    check(&P, "int8 bound, k 3");
    freeprob(&P);
}

/* A catalogue whose best items for query 0 are every 16th item and the best 20 of those
 * excluded: whatever bounds the screen from below (a list's k-th key, another worker's, a
 * sample's) must count only eligible items, or it starts above the answer and loses it. */
static void test_excluded_best(void **state)
{
    (void)state;
    struct problem P = mkprob(2, 16, 0, 4000, 5, false, true);
    for (size_t i = 0; i < (size_t)P.B * P.d; i++)
        P.q[i] = frand();
    for (size_t i = 0; i < (size_t)P.V * P.d; i++)
        P.tab[i] = 0.1f * frand();
    for (int i = 0; i < 40; i++) /* items 16·i along query 0 */
        for (int x = 0; x < 16; x++)
            P.tab[(size_t)16 * i * 16 + x] = (float)(10 + i) * P.q[x];
    P.eo[0] = 0;
    P.eo[1] = 20;
    P.eo[2] = 20;
    for (int e = 0; e < 20; e++)
        P.ei[e] = 16 * (20 + e);
    check(&P, "excluded best");
    freeprob(&P);
}

/* A query with an infinite component (a broken model's output): every key whose item has a
 * positive value there is +INF, and the answer is the lowest such indices, as the FP32
 * screen gives it; the int8 screen sends such a query to the exact path. */
static void test_infinite_query(void **state)
{
    (void)state;
    struct problem P = mkprob(3, 16, 1, 300, 7, true, false);
    for (size_t i = 0; i < (size_t)P.B * P.d; i++)
        P.q[i] = frand();
    P.q[16 + 5] = INFINITY;
    for (int j = 0; j < P.V; j++) {
        for (int x = 0; x < P.d; x++)
            P.tab[(size_t)j * P.d + x] = frand();
        P.tab[(size_t)j * P.d + 5] = 0.5f + (float)(j % 3);
        P.bias[j] = frand();
    }
    check(&P, "infinite query");
    freeprob(&P);
}

/* Pins are counted; an unpinned table of the same shape at a reused address is packed anew. */
static void test_pins(void **state)
{
    (void)state;
    sr_backend_t *be = mk(2);
    const struct sr_backend_iface *ifc = be->iface;
    struct sr_error err;
    struct problem P = mkprob(3, 8, 0, 100, 4, false, false);
    for (size_t i = 0; i < (size_t)P.B * P.d; i++)
        P.q[i] = frand();
    int32_t idx[12], want_i[12];
    float sc[12], want_s[12];
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < (size_t)P.V * P.d; i++)
            P.tab[i] = frand();
        for (int b = 0; b < P.B; b++)
            reference(&P, b, want_i + b * P.k, want_s + b * P.k);
        if (round == 0) {
            assert_int_equal(ifc->topk_pin(be->ctx, P.tab, 8, 0, 100, &err), SR_OK);
            assert_int_equal(ifc->topk_pin(be->ctx, P.tab, 8, 0, 100, &err), SR_OK);
            ifc->topk_unpin(be->ctx, P.tab, 8, 0, 100);
        } else {
            ifc->topk_unpin(be->ctx, P.tab, 8, 0, 100);
        }
        assert_int_equal(ifc->topk(be->ctx, P.q, P.B, P.tab, NULL, 8, 0, 100, NULL, NULL, P.k,
                                   idx, sc, &err), SR_OK);
        assert_memory_equal(idx, want_i, sizeof idx);
        assert_memory_equal(sc, want_s, sizeof sc);
    }
    assert_int_not_equal(ifc->topk_pin(be->ctx, P.tab, 0, 0, 100, &err), SR_OK);
    freeprob(&P);
    sr_backend_unref(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random),      cmocka_unit_test(test_near_ties),
        cmocka_unit_test(test_large_norms), cmocka_unit_test(test_all_equal),
        cmocka_unit_test(test_int8_bound),  cmocka_unit_test(test_infinite_query),
        cmocka_unit_test(test_excluded_best),
        cmocka_unit_test(test_pins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
