/* test_cpu_ops.c — every cpu backend op against a naive double-precision reference on fresh
 * random inputs (ggml test-backend-ops habit): gemm in all transpose/alpha/beta/stride
 * variants, embed, layer norm, each activation, add, causal attention with several heads and
 * variable lengths (length 1 included) and its prefix consistency (attention_rows), GRU
 * gates, the whole GRU layer (inputs gathered by row index or read in order), gather, and exact
 * top-k with ties, bias, exclusions, first_index 3, k above the eligible count and
 * tile/query-block boundaries.
 * Each test runs the backend with 1, 2 and 3 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernels_int.h"
#include "cpu/cpu_int.h" /* sr__cpu_gemm_set_isa */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float frand(void) { return (float)((rnd() % 2000001) / 1000000.0 - 1.0); }
static float *randv(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}

static sr_backend_t *mk(int threads)
{
    struct sr_backend_params p = {.device = SR_DEVICE_CPU, .threads = threads};
    sr_backend_t *be = NULL;
    struct sr_error err;
    assert_int_equal(sr_backend_new(&p, &be, &err), SR_OK);
    assert_string_equal(sr_backend_name(be), "cpu");
    return be;
}

static void close_to(const float *got, const double *want, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (1.0 + fabs(want[i]));
        if (!(e <= tol)) {
            fail_msg("%s[%zu]: got %.9g want %.9g (err %.3g > %.3g)", what, i, got[i], want[i], e,
                     tol);
        }
    }
}

static const int thread_counts[] = {1, 2, 3};
#define FOR_THREADS for (size_t ti_ = 0; ti_ < 3; ti_++)
#define TH thread_counts[ti_]

/* ---- gemm ---- */
static void test_gemm(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 96, 64}, {300, 130, 70}, {3, 1000, 64}};
        for (size_t s = 0; s < 5; s++)
            for (int v = 0; v < 8; v++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                bool ta = v & 1, tb = v & 2;
                float alpha = (v & 4) ? 0.5f : 1.0f, beta = (v & 4) ? -1.5f : 0.0f;
                int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
                float *A = randv((size_t)(ta ? K : M) * lda, 1), *Bm = randv((size_t)(tb ? N : K) * ldb, 1);
                float *C = randv((size_t)M * ldc, 1);
                double *want = malloc(sizeof(double) * M * N);
                float *got = malloc(sizeof(float) * M * N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double acc = 0;
                        for (int k = 0; k < K; k++) {
                            double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                            double b = tb ? Bm[(size_t)j * ldb + k] : Bm[(size_t)k * ldb + j];
                            acc += a * b;
                        }
                        want[(size_t)i * N + j] = alpha * acc + beta * C[(size_t)i * ldc + j];
                    }
                struct sr_error err;
                assert_int_equal(be->iface->gemm(be->ctx, ta, tb, M, N, K, alpha, A, lda, Bm, ldb,
                                                 beta, C, ldc, &err),
                                 SR_OK);
                for (int i = 0; i < M; i++)
                    memcpy(got + (size_t)i * N, C + (size_t)i * ldc, sizeof(float) * N);
                close_to(got, want, (size_t)M * N, 1e-5 * (1 + K / 16.0), "gemm");
                free(A), free(Bm), free(C), free(want), free(got);
            }
        sr_backend_unref(be);
    }
}

/* Row determinism (DESIGN §8): a row of C has the same bits whatever the other rows of the
 * call, its position, M, the thread count and the gemm variant (AVX-512, AVX2, fmaf). Each
 * row of a reference call is recomputed inside calls of other sizes at other positions (rows
 * shifted and reversed, sharing the call with random rows), in every transpose mode, with
 * beta 0 and 1 and N on and off the tile edges. The double reference of test_gemm also runs
 * here on every variant. */
static void test_gemm_row_determinism(void **state)
{
    (void)state;
    /* M <= 4 with a row-major B: rows_direct_avx2 (calls of M rows) against the packed tiles
     * (calls of M + 5 and 3M + 5 rows) */
    const int shapes[][3] = {{37, 72, 24}, {50, 192, 64}, {29, 40, 256}, {13, 17, 5}, {64, 33, 1},
                             {1, 72, 24},  {3, 33, 17},   {4, 8, 64},    {2, 5, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int v = 0; v < 8; v++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            bool ta = v & 1, tb = v & 2;
            float beta = (v & 4) ? 1.0f : 0.0f;
            int MM = 3 * M + 5; /* the largest call below */
            int lda = ta ? MM : K, ldb = tb ? K : N;
            float *Bm = randv((size_t)(tb ? N : K) * ldb, 1);
            float *A0 = randv((size_t)M * K, 1), *C0 = randv((size_t)M * N, 1);
            float *A = malloc(sizeof(float) * (size_t)MM * K), *C = malloc(sizeof(float) * (size_t)MM * N);
            float *want = malloc(sizeof(float) * (size_t)M * N);
            double *ref = malloc(sizeof(double) * (size_t)M * N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = 0;
                    for (int k = 0; k < K; k++)
                        acc += (double)A0[(size_t)i * K + k] *
                               (tb ? Bm[(size_t)j * ldb + k] : Bm[(size_t)k * ldb + j]);
                    ref[(size_t)i * N + j] = acc + beta * C0[(size_t)i * N + j];
                }
            bool have_want = false;
            for (int isa = SR__CPU_ISA_AVX512; isa >= SR__CPU_ISA_GENERIC; isa--) {
                if (isa > sr__cpu_gemm_isa_best())
                    continue;
                FOR_THREADS
                {
                    sr_backend_t *be = mk(TH);
                    sr__cpu_gemm_set_isa(be->ctx, isa);
                    /* calls of n rows holding row i of the reference at position pos(i) */
                    for (int layout = 0; layout < 4; layout++) {
                        int n = layout == 0 ? M : layout == 1 ? M + 5 : layout == 2 ? MM : M;
                        for (size_t x = 0; x < (size_t)n * K; x++)
                            A[x] = frand();
                        for (size_t x = 0; x < (size_t)n * N; x++)
                            C[x] = frand();
                        int pos[512];
                        for (int i = 0; i < M; i++) {
                            pos[i] = layout == 0 ? i : layout == 1 ? i + 5 : layout == 2 ? 3 * i + 2
                                                                                         : M - 1 - i;
                            for (int k = 0; k < K; k++) {
                                float a = A0[(size_t)i * K + k];
                                if (ta)
                                    A[(size_t)k * lda + pos[i]] = a;
                                else
                                    A[(size_t)pos[i] * lda + k] = a;
                            }
                            memcpy(C + (size_t)pos[i] * N, C0 + (size_t)i * N, sizeof(float) * N);
                        }
                        struct sr_error err;
                        assert_int_equal(be->iface->gemm(be->ctx, ta, tb, n, N, K, 1.0f, A, lda, Bm,
                                                         ldb, beta, C, N, &err),
                                         SR_OK);
                        for (int i = 0; i < M; i++) {
                            const float *row = C + (size_t)pos[i] * N;
                            if (!have_want) {
                                memcpy(want + (size_t)i * N, row, sizeof(float) * N);
                                continue;
                            }
                            if (memcmp(row, want + (size_t)i * N, sizeof(float) * N) != 0)
                                fail_msg("gemm %dx%dx%d ta %d tb %d beta %g: row %d differs "
                                         "(variant %d, %d threads, %d rows, at %d)",
                                         M, N, K, ta, tb, beta, i, isa, TH, n, pos[i]);
                        }
                        if (!have_want)
                            close_to(want, ref, (size_t)M * N, 1e-5 * (1 + K / 16.0), "gemm");
                        have_want = true;
                    }
                    sr_backend_unref(be);
                }
            }
            free(Bm), free(A0), free(C0), free(A), free(C), free(want), free(ref);
        }
}

/* ---- embed, layer norm, activations, add, gather ---- */
static void test_embed_gather(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        int V = 50, P = 20, d = 24, n = 3000;
        float *tab = randv((size_t)V * d, 1), *pos = randv((size_t)P * d, 1);
        int32_t *it = malloc(sizeof(int32_t) * n), *ps = malloc(sizeof(int32_t) * n);
        for (int i = 0; i < n; i++)
            it[i] = (int32_t)(rnd() % V), ps[i] = (int32_t)(rnd() % P);
        float *out = malloc(sizeof(float) * n * d);
        double *want = malloc(sizeof(double) * n * d);
        for (int with_pos = 0; with_pos < 2; with_pos++) {
            assert_int_equal(be->iface->embed(be->ctx, tab, with_pos ? pos : NULL, it, ps, n, d, out, NULL), SR_OK);
            for (int i = 0; i < n; i++)
                for (int k = 0; k < d; k++)
                    want[(size_t)i * d + k] = (double)tab[(size_t)it[i] * d + k] +
                                              (with_pos ? (double)pos[(size_t)ps[i] * d + k] : 0.0);
            close_to(out, want, (size_t)n * d, 1e-7, "embed");
        }
        assert_int_equal(be->iface->gather_rows(be->ctx, tab, it, n, d, out, NULL), SR_OK);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < d; k++)
                want[(size_t)i * d + k] = tab[(size_t)it[i] * d + k];
        close_to(out, want, (size_t)n * d, 0, "gather_rows");
        free(tab), free(pos), free(it), free(ps), free(out), free(want);
        sr_backend_unref(be);
    }
}

static void test_layer_norm(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        const int dims[][2] = {{1, 1}, {3, 7}, {2000, 64}, {5, 1024}};
        for (int s = 0; s < 4; s++) {
            int n = dims[s][0], d = dims[s][1];
            float *x = randv((size_t)n * d, 3), *g = randv(d, 1), *b = randv(d, 1);
            for (size_t i = 0; i < (size_t)n * d; i++)
                x[i] += 5.0f; /* a mean far from zero */
            double *want = malloc(sizeof(double) * n * d);
            float eps = 1e-5f;
            for (int i = 0; i < n; i++) {
                double mu = 0, var = 0;
                for (int k = 0; k < d; k++)
                    mu += x[(size_t)i * d + k];
                mu /= d;
                for (int k = 0; k < d; k++)
                    var += (x[(size_t)i * d + k] - mu) * (x[(size_t)i * d + k] - mu);
                var /= d;
                for (int k = 0; k < d; k++)
                    want[(size_t)i * d + k] = (x[(size_t)i * d + k] - mu) / sqrt(var + eps) * g[k] + b[k];
            }
            float *out = malloc(sizeof(float) * n * d);
            assert_int_equal(be->iface->layer_norm(be->ctx, x, g, b, n, d, eps, out, NULL), SR_OK);
            close_to(out, want, (size_t)n * d, 2e-5, "layer_norm");
            /* in place */
            assert_int_equal(be->iface->layer_norm(be->ctx, x, g, b, n, d, eps, x, NULL), SR_OK);
            close_to(x, want, (size_t)n * d, 2e-5, "layer_norm in place");
            free(x), free(g), free(b), free(want), free(out);
        }
        sr_backend_unref(be);
    }
}

static double ref_act(double v, sr_act_t a)
{
    switch (a) {
    case SR_ACT_GELU_TANH:
        return 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    case SR_ACT_GELU_ERF:
        return 0.5 * v * (1 + erf(v / sqrt(2.0)));
    case SR_ACT_RELU:
        return v > 0 ? v : 0;
    default:
        return v;
    }
}

static void test_bias_act(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        for (int a = SR_ACT_NONE; a <= SR_ACT_RELU; a++)
            for (int with_bias = 0; with_bias < 4; with_bias++) {
                int n = 700, d = with_bias < 2 ? 96 : 13;
                float *x = randv((size_t)n * d, 6), *b = randv(d, 1);
                x[0] = 0.0f, x[1] = -12.0f, x[2] = 12.0f, x[3] = 1e-4f; /* tails and zero */
                double *want = malloc(sizeof(double) * n * d);
                for (int i = 0; i < n; i++)
                    for (int k = 0; k < d; k++)
                        want[(size_t)i * d + k] = ref_act((double)x[(size_t)i * d + k] + (with_bias & 1 ? b[k] : 0), a);
                assert_int_equal(be->iface->bias_act(be->ctx, x, with_bias & 1 ? b : NULL, n, d, a, NULL), SR_OK);
                close_to(x, want, (size_t)n * d, 2e-6, "bias_act");
                free(x), free(b), free(want);
            }
        struct sr_error err;
        float x1 = 1;
        assert_int_equal(be->iface->bias_act(be->ctx, &x1, NULL, 1, 1, (sr_act_t)9, &err), SR_EINVAL);
        sr_backend_unref(be);
    }
}

static void test_add(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        size_t ns[] = {1, 4095, 4097, 100003};
        for (int s = 0; s < 4; s++) {
            size_t n = ns[s];
            float *x = randv(n, 1), *y = randv(n, 1);
            double *want = malloc(sizeof(double) * n);
            for (size_t i = 0; i < n; i++)
                want[i] = (double)x[i] + y[i];
            assert_int_equal(be->iface->add(be->ctx, x, y, n, NULL), SR_OK);
            close_to(x, want, n, 1e-7, "add");
            free(x), free(y), free(want);
        }
        sr_backend_unref(be);
    }
}

/* ---- attention ---- */
static void test_attention(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        const int heads[] = {1, 2, 4};
        const int lens[] = {1, 5, 17, 1, 32, 2, 9};
        int B = 7, max_len = 32;
        for (int hi = 0; hi < 3; hi++) {
            int nh = heads[hi], dh = 8, d = nh * dh;
            int32_t off[8];
            off[0] = 0;
            for (int s = 0; s < B; s++)
                off[s + 1] = off[s] + lens[s];
            int T = off[B];
            float *qkv = randv((size_t)T * 3 * d, 2), *out = malloc(sizeof(float) * T * d);
            double *want = calloc((size_t)T * d, sizeof(double));
            double sc[64];
            for (int s = 0; s < B; s++)
                for (int h = 0; h < nh; h++)
                    for (int i = off[s]; i < off[s + 1]; i++) {
                        double mx = -INFINITY, sum = 0;
                        for (int j = off[s]; j <= i; j++) {
                            double a = 0;
                            for (int k = 0; k < dh; k++)
                                a += (double)qkv[(size_t)i * 3 * d + h * dh + k] *
                                     qkv[(size_t)j * 3 * d + d + h * dh + k];
                            sc[j - off[s]] = a / sqrt((double)dh);
                            mx = fmax(mx, sc[j - off[s]]);
                        }
                        for (int j = off[s]; j <= i; j++)
                            sum += sc[j - off[s]] = exp(sc[j - off[s]] - mx);
                        for (int j = off[s]; j <= i; j++)
                            for (int k = 0; k < dh; k++)
                                want[(size_t)i * d + h * dh + k] +=
                                    sc[j - off[s]] / sum * qkv[(size_t)j * 3 * d + 2 * d + h * dh + k];
                    }
            assert_int_equal(be->iface->attention(be->ctx, qkv, off, B, max_len, nh, dh, out, NULL), SR_OK);
            close_to(out, want, (size_t)T * d, 1e-5, "attention");
            struct sr_error err;
            assert_int_equal(be->iface->attention(be->ctx, qkv, off, B, 16, nh, dh, out, &err), SR_EINVAL);
            free(qkv), free(out), free(want);
        }
        sr_backend_unref(be);
    }
}

/* Prefix consistency (DESIGN §3.1): row i of a session gets the same bits in a call over its
 * first j > i rows as in one over all L, wherever the session sits in the batch, and
 * attention_rows gives rows first..L-1 those bits from rows kept anywhere; every variant
 * (AVX2+FMA, fmaf) gives the same bits; head widths take every body and tail of the kernel
 * (1..33), and the rows stay close to the double reference. */
static void test_attention_prefix(void **state)
{
    (void)state;
    const int dhs[] = {1, 3, 4, 7, 8, 9, 12, 16, 17, 32, 33};
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        for (size_t di = 0; di < sizeof dhs / sizeof dhs[0]; di++)
            for (int nh = 1; nh <= 3; nh++) {
                int dh = dhs[di], d = nh * dh, L = 37, ld = 3 * d;
                float *qkv = randv((size_t)L * ld, 2), *full = malloc(sizeof(float) * L * d);
                int32_t off1[2] = {0, L};
                assert_int_equal(be->iface->attention(be->ctx, qkv, off1, 1, L, nh, dh, full, NULL),
                                 SR_OK);
                /* every variant (AVX2+FMA, fmaf) gives the same bits */
                for (int isa = sr__cpu_gemm_isa_best(); isa >= SR__CPU_ISA_GENERIC; isa--) {
                    float *alt = malloc(sizeof(float) * L * d);
                    int prev = sr__cpu_gemm_set_isa(be->ctx, isa);
                    assert_int_equal(be->iface->attention(be->ctx, qkv, off1, 1, L, nh, dh, alt,
                                                          NULL), SR_OK);
                    sr__cpu_gemm_set_isa(be->ctx, prev);
                    if (memcmp(alt, full, sizeof(float) * (size_t)L * d))
                        fail_msg("d_head %d heads %d: attention variant %d differs", dh, nh, isa);
                    free(alt);
                }
                /* the double reference, row L-1 */
                for (int h = 0; h < nh; h++) {
                    double sc[64], mx = -INFINITY, sum = 0, want[64] = {0};
                    const float *q = qkv + (size_t)(L - 1) * ld + h * dh;
                    for (int t = 0; t < L; t++) {
                        double a = 0;
                        for (int k = 0; k < dh; k++)
                            a += (double)q[k] * qkv[(size_t)t * ld + d + h * dh + k];
                        sc[t] = a / sqrt((double)dh);
                        mx = fmax(mx, sc[t]);
                    }
                    for (int t = 0; t < L; t++)
                        sum += sc[t] = exp(sc[t] - mx);
                    for (int t = 0; t < L; t++)
                        for (int k = 0; k < dh; k++)
                            want[k] += sc[t] / sum * qkv[(size_t)t * ld + 2 * d + h * dh + k];
                    close_to(full + (size_t)(L - 1) * d + h * dh, want, (size_t)dh, 1e-5,
                             "attention last row");
                }
                /* every prefix j, as the second session of a batch after 5 random rows */
                float *pk = randv((size_t)(5 + L) * ld, 2);
                float *po = malloc(sizeof(float) * (5 + L) * d);
                for (int j = 1; j <= L; j++) {
                    memcpy(pk + (size_t)5 * ld, qkv, sizeof(float) * (size_t)j * ld);
                    int32_t off2[3] = {0, 5, 5 + j};
                    assert_int_equal(
                        be->iface->attention(be->ctx, pk, off2, 2, L, nh, dh, po, NULL), SR_OK);
                    if (memcmp(po + (size_t)5 * d, full, sizeof(float) * (size_t)j * d))
                        fail_msg("d_head %d heads %d: rows of a %d-row call differ from the "
                                 "%d-row call's", dh, nh, j, L);
                }
                /* attention_rows: three sessions, rows first..len-1, packed */
                const float *rows[3] = {qkv, qkv, pk};
                int32_t first[3] = {L - 1, 3, 0}, len[3] = {L, 20, 5}, orow[3] = {0, 1, 18};
                float *ro = malloc(sizeof(float) * 23 * d);
                assert_int_equal(be->iface->attention_rows(be->ctx, rows, first, len, orow, 3, L,
                                                           nh, dh, ro, NULL), SR_OK);
                assert_memory_equal(ro, full + (size_t)(L - 1) * d, sizeof(float) * d);
                assert_memory_equal(ro + d, full + (size_t)3 * d, sizeof(float) * 17 * d);
                int32_t off5[2] = {0, 5};
                assert_int_equal(be->iface->attention(be->ctx, pk, off5, 1, L, nh, dh, po, NULL),
                                 SR_OK);
                assert_memory_equal(ro + (size_t)18 * d, po, sizeof(float) * 5 * d);
                struct sr_error err;
                first[1] = 21; /* past len */
                assert_int_equal(be->iface->attention_rows(be->ctx, rows, first, len, orow, 3, L,
                                                           nh, dh, ro, &err), SR_EINVAL);
                free(qkv), free(full), free(pk), free(po), free(ro);
            }
        sr_backend_unref(be);
    }
}

/* ---- GRU gates ---- */
static void test_gru_gates(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        for (int H = 13; H <= 40; H += 27) { /* 13: wide, narrow and scalar tails */
        int n = 300;
        float *gi = randv((size_t)n * 3 * H, 4), *gh = randv((size_t)n * 3 * H, 4), *h = randv((size_t)n * H, 1);
        double *want = malloc(sizeof(double) * n * H);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < H; k++) {
                const float *a = gi + (size_t)i * 3 * H, *b = gh + (size_t)i * 3 * H;
                double r = 1 / (1 + exp(-((double)a[k] + b[k])));
                double z = 1 / (1 + exp(-((double)a[H + k] + b[H + k])));
                double c = tanh((double)a[2 * H + k] + r * b[2 * H + k]);
                want[(size_t)i * H + k] = (1 - z) * c + z * h[(size_t)i * H + k];
            }
        assert_int_equal(be->iface->gru_gates(be->ctx, gi, gh, h, n, H, NULL), SR_OK);
        close_to(h, want, (size_t)n * H, 2e-6, "gru_gates");
        free(gi), free(gh), free(h), free(want);
        }
        sr_backend_unref(be);
    }
}

/* ---- GRU layer: the recurrence over time-major rows of sessions sorted longest first ---- */
static void test_gru_layer(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        assert_non_null(be->iface->gru_layer);
        /* 29: 16-, 8-, 4- and 1-wide unit blocks; 64: the benchmark's width. B = 23 sessions leave
         * a partial block of rows; lengths run from L down to 1, with ties. H = 29 reads its
         * inputs through x_rows (as from an embedding table), H = 64 row by row. */
        for (int H = 29; H <= 64; H += 35) {
            enum { B = 23, L = 9, NX = 37 };
            int len[B], tstart[L + 1];
            for (int s = 0; s < B; s++)
                len[s] = s < 3 ? L : L - (s * (L - 1)) / (B - 1);
            tstart[0] = 0;
            for (int t = 0; t < L; t++) {
                int n = 0;
                while (n < B && len[n] > t)
                    n++;
                tstart[t + 1] = tstart[t] + n;
            }
            int T = tstart[L];
            bool indexed = H == 29;
            int32_t *xr = malloc(sizeof(int32_t) * T);
            for (int i = 0; i < T; i++)
                xr[i] = indexed ? (int32_t)(rnd() % NX) : i;
            float *x = randv((size_t)(indexed ? NX : T) * H, 1);
            float *wi = randv((size_t)3 * H * H, 0.3f), *w = randv((size_t)3 * H * H, 0.3f);
            float *bi = randv((size_t)3 * H, 0.5f), *bh = randv((size_t)3 * H, 0.5f);
            float *out = randv((size_t)T * H, 1);
            double *want = malloc(sizeof(double) * T * H), *hs = calloc((size_t)H, sizeof(double));
            for (int s = 0; s < B; s++) {
                memset(hs, 0, sizeof(double) * H);
                for (int t = 0; t < len[s]; t++) {
                    const float *xt = x + (size_t)xr[tstart[t] + s] * H;
                    double *o = want + (size_t)(tstart[t] + s) * H;
                    for (int k = 0; k < H; k++) {
                        double gi[3], gh[3];
                        for (int q = 0; q < 3; q++) {
                            gi[q] = bi[q * H + k];
                            gh[q] = bh[q * H + k];
                            for (int c = 0; c < H; c++) {
                                gi[q] += xt[c] * (double)wi[(size_t)(q * H + k) * H + c];
                                gh[q] += hs[c] * w[(size_t)(q * H + k) * H + c];
                            }
                        }
                        double r = 1 / (1 + exp(-(gi[0] + gh[0])));
                        double z = 1 / (1 + exp(-(gi[1] + gh[1])));
                        double c = tanh(gi[2] + r * gh[2]);
                        o[k] = (1 - z) * c + z * hs[k];
                    }
                    memcpy(hs, o, sizeof(double) * H);
                }
            }
            assert_int_equal(be->iface->gru_layer(be->ctx, x, indexed ? xr : NULL, wi, w, bi, bh,
                                                  tstart, L, H, out, NULL),
                             SR_OK);
            close_to(out, want, (size_t)T * H, 1e-5, "gru_layer");
            /* a step with more rows than the one before is refused */
            int bad[3] = {0, 2, 5};
            struct sr_error err;
            assert_int_equal(be->iface->gru_layer(be->ctx, x, NULL, wi, w, bi, bh, bad, 2, H, out,
                                                  &err),
                             SR_EINVAL);
            free(xr), free(x), free(wi), free(w), free(bi), free(bh), free(out);
            free(want), free(hs);
        }
        sr_backend_unref(be);
    }
}

/* ---- top-k ---- */

struct cand {
    double s;
    int32_t j;
};
static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* Checks backend top-k against the double reference. exact: inputs are small integers, so
 * float scores are exact and ties must resolve to the lower index. */
static void check_topk(sr_backend_t *be, int B, int d, int first, int V, int k, bool exact,
                       bool with_bias, bool with_excl)
{
    float *q = malloc(sizeof(float) * (size_t)B * d), *tab = malloc(sizeof(float) * (size_t)V * d);
    float *bias = NULL;
    for (size_t i = 0; i < (size_t)B * d; i++)
        q[i] = exact ? (float)((int)(rnd() % 5) - 2) : frand();
    for (size_t i = 0; i < (size_t)V * d; i++)
        tab[i] = exact ? (float)((int)(rnd() % 5) - 2) : frand();
    if (with_bias) {
        bias = malloc(sizeof(float) * V);
        for (int j = 0; j < V; j++)
            bias[j] = exact ? (float)((int)(rnd() % 3) - 1) : frand();
    }
    int32_t *eo = NULL, *ei = NULL;
    if (with_excl) {
        eo = malloc(sizeof(int32_t) * (B + 1));
        ei = malloc(sizeof(int32_t) * (size_t)B * 40);
        eo[0] = 0;
        for (int b = 0; b < B; b++) {
            int ne = (int)(rnd() % 40);
            for (int e = 0; e < ne; e++)
                ei[eo[b] + e] = (int32_t)(rnd() % (V + 2)) - 1; /* includes -1, reserved, V */
            eo[b + 1] = eo[b] + ne;
        }
    }
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)B * k);
    float *sc = malloc(sizeof(float) * (size_t)B * k);
    struct sr_error err;
    assert_int_equal(be->iface->topk(be->ctx, q, B, tab, bias, d, first, V, eo, ei, k, idx, sc, &err), SR_OK);
    struct cand *all = malloc(sizeof *all * (size_t)(V > 0 ? V : 1));
    for (int b = 0; b < B; b++) {
        int n = 0;
        for (int j = first; j < V; j++) {
            bool ex = false;
            for (int e = with_excl ? eo[b] : 0; with_excl && e < eo[b + 1]; e++)
                ex |= ei[e] == j;
            if (ex)
                continue;
            double s = with_bias ? bias[j] : 0;
            for (int x = 0; x < d; x++)
                s += (double)q[(size_t)b * d + x] * tab[(size_t)j * d + x];
            all[n++] = (struct cand){s, j};
        }
        qsort(all, (size_t)n, sizeof *all, cand_cmp);
        for (int r = 0; r < k; r++) {
            int32_t gi = idx[(size_t)b * k + r];
            float gs = sc[(size_t)b * k + r];
            if (r >= n) {
                if (gi != -1 || !(isinf(gs) && gs < 0))
                    fail_msg("B=%d V=%d k=%d row %d rank %d: want padding, got %d %g", B, V, k, b, r, gi, gs);
                continue;
            }
            double tol = exact ? 0 : 1e-5 * (1 + fabs(all[r].s));
            if (fabs(gs - all[r].s) > tol)
                fail_msg("B=%d V=%d k=%d row %d rank %d: score %.9g want %.9g", B, V, k, b, r, gs, all[r].s);
            if (gi != all[r].j) {
                /* without exact arithmetic, only near-ties may swap */
                bool near = !exact && ((r > 0 && fabs(all[r - 1].s - all[r].s) <= 2 * tol) ||
                                       (r + 1 < n && fabs(all[r + 1].s - all[r].s) <= 2 * tol));
                if (!near)
                    fail_msg("B=%d V=%d k=%d row %d rank %d: index %d want %d (score %.9g)", B, V,
                             k, b, r, gi, all[r].j, all[r].s);
            }
        }
    }
    free(all), free(q), free(tab), free(bias), free(eo), free(ei), free(idx), free(sc);
}

static void test_topk(void **state)
{
    (void)state;
    FOR_THREADS
    {
        sr_backend_t *be = mk(TH);
        /* random floats, with and without bias/exclusions, across tile sizes and B > 256 */
        check_topk(be, 1, 16, 2, 1000, 10, false, false, false);
        check_topk(be, 5, 64, 2, 5003, 10, false, true, true);
        check_topk(be, 300, 32, 3, 4099, 7, false, true, true);
        check_topk(be, 257, 8, 2, 70000, 5, false, false, true);
        /* exact small integers: many ties, which must go to the lower index */
        check_topk(be, 9, 4, 3, 3000, 20, true, false, false);
        check_topk(be, 31, 3, 2, 777, 50, true, true, true);
        check_topk(be, 260, 2, 3, 10000, 12, true, true, false);
        /* k above the eligible count, a single eligible item, none */
        check_topk(be, 4, 8, 3, 8, 10, false, true, true);
        check_topk(be, 3, 8, 3, 4, 2, true, false, false);
        check_topk(be, 3, 8, 3, 3, 2, true, false, false);
        check_topk(be, 2, 8, 0, 100, 100, false, false, true);
        sr_backend_unref(be);
    }
}

static void test_device_parse(void **state)
{
    (void)state;
    sr_device_t d;
    struct sr_error err;
    assert_int_equal(sr_device_parse("auto", &d, &err), SR_OK);
    assert_int_equal(d, SR_DEVICE_AUTO);
    assert_int_equal(sr_device_parse("cpu", &d, &err), SR_OK);
    assert_int_equal(d, SR_DEVICE_CPU);
    assert_int_equal(sr_device_parse("cuda", &d, &err), SR_OK);
    assert_int_equal(d, SR_DEVICE_CUDA);
    assert_int_equal(sr_device_parse("gpu", &d, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "gpu"));
    sr_backend_t *be = NULL;
    struct sr_backend_params p = {.device = SR_DEVICE_CUDA};
    if (!sr_cuda_available()) {
        assert_int_equal(sr_backend_new(&p, &be, &err), SR_EDEVICE);
        assert_null(be);
        assert_non_null(strstr(err.msg, "cuda"));
        p.device = SR_DEVICE_AUTO;
        assert_int_equal(sr_backend_new(&p, &be, &err), SR_OK);
        assert_string_equal(sr_backend_name(be), "cpu");
        assert_non_null(strstr(sr_backend_describe(be), "OpenBLAS"));
        assert_ptr_equal(sr_backend_ref(be), be);
        sr_backend_unref(be);
        sr_backend_unref(be);
    }
    p.device = SR_DEVICE_CPU;
    p.threads = -1;
    assert_int_equal(sr_backend_new(&p, &be, &err), SR_EINVAL);
    sr_backend_unref(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),        cmocka_unit_test(test_gemm_row_determinism),
        cmocka_unit_test(test_embed_gather),
        cmocka_unit_test(test_layer_norm),  cmocka_unit_test(test_bias_act),
        cmocka_unit_test(test_add),         cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_prefix),
        cmocka_unit_test(test_gru_gates),   cmocka_unit_test(test_gru_layer),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_device_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
