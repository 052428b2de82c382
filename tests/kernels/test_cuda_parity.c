/* test_cuda_parity.c — every op of the backend table run on the cuda and the cpu backend with
 * the same fresh random inputs, compared with a normalised error ‖a−b‖/‖b‖ (1e-5 elementwise,
 * 1e-4 gemm/attention); top-k indices must agree except among scores equal within 1e-5, and
 * both results are checked for the contract itself (order, exclusions, reserved rows, pads).
 * Without a CUDA device it prints "skipped: no CUDA device" and exits 0. The seed is printed;
 * SR_TEST_SEED=<n> replays a run. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels_int.h"
#include "cuda/cuda_int.h"

struct be {
    const struct sr_backend_iface *f;
    void *ctx;
};

static struct be g_cpu, g_gpu;
static uint64_t g_rng;

/* ---- helpers ---------------------------------------------------------------------------- */

static uint32_t rnd_u32(void)
{
    /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static float rnd_f(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rnd_u32() >> 8) / (float)(1u << 24);
}

static int rnd_int(int n)
{
    return (int)(rnd_u32() % (uint32_t)n);
}

static float *rnd_vec(size_t n, float lo, float hi)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = rnd_f(lo, hi);
    return v;
}

static void check(sr_err_t rc, const struct sr_error *err, const char *what)
{
    if (rc != SR_OK)
        fail_msg("%s: %s", what, err->msg);
}

/* Device copy of host memory on backend b. */
static void *dup_to(struct be *b, const void *host, size_t bytes)
{
    struct sr_error err = {0};
    void *p = b->f->alloc(b->ctx, bytes);
    assert_non_null(p);
    check(b->f->upload(b->ctx, p, host, bytes, &err), &err, "upload");
    return p;
}

static void *fetch(struct be *b, const void *dev, size_t bytes)
{
    struct sr_error err = {0};
    void *h = malloc(bytes ? bytes : 1);
    assert_non_null(h);
    check(b->f->download(b->ctx, h, dev, bytes, &err), &err, "download");
    return h;
}

/* One host array mirrored on both backends. */
struct pair {
    void *cpu, *gpu;
    size_t bytes;
};

static struct pair mirror(const void *host, size_t bytes)
{
    struct pair p = {dup_to(&g_cpu, host, bytes), dup_to(&g_gpu, host, bytes), bytes};
    return p;
}

static void pair_free(struct pair *p)
{
    g_cpu.f->free(g_cpu.ctx, p->cpu);
    g_gpu.f->free(g_gpu.ctx, p->gpu);
}

/* ‖a−b‖/‖b‖ (‖a−b‖ when b is zero); non-finite values fail. */
static double nerr(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i]))
            fail_msg("non-finite value at %zu: cuda %g cpu %g", i, a[i], b[i]);
        double e = (double)a[i] - b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Downloads n floats of both halves of p and requires their normalised error below tol. */
static void expect_close(const struct pair *p, size_t n, double tol, const char *what)
{
    float *a = fetch(&g_gpu, p->gpu, n * sizeof(float));
    float *b = fetch(&g_cpu, p->cpu, n * sizeof(float));
    double e = nerr(a, b, n);
    if (!(e < tol))
        fail_msg("%s: normalised error %.3g >= %.1g", what, e, tol);
    free(a);
    free(b);
}

/* ---- gemm ------------------------------------------------------------------------------- */

static void one_gemm(bool ta, bool tb, int M, int N, int K, int pad)
{
    struct sr_error err = {0};
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    float *A = rnd_vec((size_t)ar * lda, -1, 1), *B = rnd_vec((size_t)br * ldb, -1, 1);
    float *C = rnd_vec((size_t)M * ldc, -1, 1);
    struct pair a = mirror(A, (size_t)ar * lda * 4), b = mirror(B, (size_t)br * ldb * 4),
                c = mirror(C, (size_t)M * ldc * 4);
    check(g_cpu.f->gemm(g_cpu.ctx, ta, tb, M, N, K, 0.7f, a.cpu, lda, b.cpu, ldb, 0.3f, c.cpu, ldc,
                        &err), &err, "cpu gemm");
    check(g_gpu.f->gemm(g_gpu.ctx, ta, tb, M, N, K, 0.7f, a.gpu, lda, b.gpu, ldb, 0.3f, c.gpu, ldc,
                        &err), &err, "cuda gemm");
    char what[96];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d %dx%dx%d pad %d", ta, tb, M, N, K, pad);
    expect_close(&c, (size_t)M * ldc, 1e-4, what);
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
    free(A);
    free(B);
    free(C);
}

static void test_gemm(void **state)
{
    (void)state;
    for (int t = 0; t < 4; t++) {
        one_gemm(t & 1, t & 2, 37, 53, 29, 0);
        one_gemm(t & 1, t & 2, 64, 192, 64, 3);
        one_gemm(t & 1, t & 2, 1, 300, 17, 1);
    }
}

/* ---- embed / gather --------------------------------------------------------------------- */

static void one_embed(int V, int P, int n, int d, bool with_pos, bool gather)
{
    struct sr_error err = {0};
    float *T = rnd_vec((size_t)V * d, -1, 1), *PT = rnd_vec((size_t)P * d, -1, 1);
    int32_t *items = malloc(n * sizeof *items), *pos = malloc(n * sizeof *pos);
    for (int i = 0; i < n; i++) {
        items[i] = rnd_int(V);
        pos[i] = rnd_int(P);
    }
    struct pair t = mirror(T, (size_t)V * d * 4), pt = mirror(PT, (size_t)P * d * 4),
                it = mirror(items, n * 4u), po = mirror(pos, n * 4u);
    float *zero = calloc((size_t)n * d, sizeof(float));
    struct pair out = mirror(zero, (size_t)n * d * 4);
    if (gather) {
        check(g_cpu.f->gather_rows(g_cpu.ctx, t.cpu, it.cpu, n, d, out.cpu, &err), &err, "cpu");
        check(g_gpu.f->gather_rows(g_gpu.ctx, t.gpu, it.gpu, n, d, out.gpu, &err), &err, "cuda");
    } else {
        check(g_cpu.f->embed(g_cpu.ctx, t.cpu, with_pos ? pt.cpu : NULL, it.cpu,
                             with_pos ? po.cpu : NULL, n, d, out.cpu, &err), &err, "cpu embed");
        check(g_gpu.f->embed(g_gpu.ctx, t.gpu, with_pos ? pt.gpu : NULL, it.gpu,
                             with_pos ? po.gpu : NULL, n, d, out.gpu, &err), &err, "cuda embed");
    }
    char what[64];
    snprintf(what, sizeof what, "%s d=%d pos=%d", gather ? "gather_rows" : "embed", d, with_pos);
    expect_close(&out, (size_t)n * d, 1e-5, what);
    /* a gather is exact: spot-check against the host table too */
    float *o = fetch(&g_gpu, out.gpu, (size_t)n * d * 4);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            float want = T[(size_t)items[i] * d + c] + (with_pos && !gather ? PT[(size_t)pos[i] * d + c] : 0.f);
            if (fabsf(o[(size_t)i * d + c] - want) > 1e-6f)
                fail_msg("%s: row %d col %d: %g, want %g", what, i, c, o[(size_t)i * d + c], want);
        }
    free(o);
    pair_free(&t);
    pair_free(&pt);
    pair_free(&it);
    pair_free(&po);
    pair_free(&out);
    free(T);
    free(PT);
    free(items);
    free(pos);
    free(zero);
}

static void test_embed_gather(void **state)
{
    (void)state;
    one_embed(1000, 50, 333, 64, true, false);
    one_embed(1000, 50, 333, 64, false, false);
    one_embed(97, 7, 41, 13, true, false);
    one_embed(1000, 1, 257, 64, false, true);
    one_embed(97, 1, 41, 13, false, true);
}

/* ---- layer norm ------------------------------------------------------------------------- */

static void one_ln(int n, int d, bool inplace)
{
    struct sr_error err = {0};
    float *X = rnd_vec((size_t)n * d, -3, 5), *G = rnd_vec(d, 0.5f, 1.5f), *Bt = rnd_vec(d, -1, 1);
    struct pair x = mirror(X, (size_t)n * d * 4), g = mirror(G, d * 4u), b = mirror(Bt, d * 4u);
    struct pair out = inplace ? x : mirror(X, (size_t)n * d * 4);
    check(g_cpu.f->layer_norm(g_cpu.ctx, x.cpu, g.cpu, b.cpu, n, d, 1e-5f, out.cpu, &err), &err,
          "cpu layer_norm");
    check(g_gpu.f->layer_norm(g_gpu.ctx, x.gpu, g.gpu, b.gpu, n, d, 1e-5f, out.gpu, &err), &err,
          "cuda layer_norm");
    char what[64];
    snprintf(what, sizeof what, "layer_norm %dx%d inplace=%d", n, d, inplace);
    expect_close(&out, (size_t)n * d, 1e-5, what);
    if (!inplace)
        pair_free(&out);
    pair_free(&x);
    pair_free(&g);
    pair_free(&b);
    free(X);
    free(G);
    free(Bt);
}

static void test_layer_norm(void **state)
{
    (void)state;
    one_ln(300, 64, false);
    one_ln(300, 64, true);
    one_ln(77, 50, false);
    one_ln(5, 1024, true);
    one_ln(9, 3, false);
}

/* ---- bias + activation, add ------------------------------------------------------------- */

static void one_bias_act(int n, int d, bool with_bias, sr_act_t act)
{
    struct sr_error err = {0};
    float *X = rnd_vec((size_t)n * d, -4, 4), *Bv = rnd_vec(d, -1, 1);
    struct pair x = mirror(X, (size_t)n * d * 4), b = mirror(Bv, d * 4u);
    check(g_cpu.f->bias_act(g_cpu.ctx, x.cpu, with_bias ? b.cpu : NULL, n, d, act, &err), &err,
          "cpu bias_act");
    check(g_gpu.f->bias_act(g_gpu.ctx, x.gpu, with_bias ? b.gpu : NULL, n, d, act, &err), &err,
          "cuda bias_act");
    char what[64];
    snprintf(what, sizeof what, "bias_act %dx%d bias=%d act=%d", n, d, with_bias, (int)act);
    expect_close(&x, (size_t)n * d, 1e-5, what);
    pair_free(&x);
    pair_free(&b);
    free(X);
    free(Bv);
}

static void test_bias_act(void **state)
{
    (void)state;
    for (int act = SR_ACT_NONE; act <= SR_ACT_RELU; act++) {
        one_bias_act(200, 256, true, (sr_act_t)act);
        one_bias_act(200, 256, false, (sr_act_t)act);
        one_bias_act(31, 30, true, (sr_act_t)act);
    }
}

static void one_add(size_t n, size_t off)
{
    struct sr_error err = {0};
    float *X = rnd_vec(n + off, -1, 1), *Y = rnd_vec(n + off, -1, 1);
    struct pair x = mirror(X, (n + off) * 4), y = mirror(Y, (n + off) * 4);
    check(g_cpu.f->add(g_cpu.ctx, (float *)x.cpu + off, (const float *)y.cpu + off, n, &err), &err,
          "cpu add");
    check(g_gpu.f->add(g_gpu.ctx, (float *)x.gpu + off, (const float *)y.gpu + off, n, &err), &err,
          "cuda add");
    char what[64];
    snprintf(what, sizeof what, "add n=%zu offset=%zu", n, off);
    expect_close(&x, n + off, 1e-5, what);
    pair_free(&x);
    pair_free(&y);
    free(X);
    free(Y);
}

static void test_add(void **state)
{
    (void)state;
    one_add(100003, 0);
    one_add(1027, 1);
    one_add(3, 0);
}

/* ---- GRU gates -------------------------------------------------------------------------- */

static void test_gru_gates(void **state)
{
    (void)state;
    const int shapes[][2] = {{17, 24}, {256, 64}, {3, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        struct sr_error err = {0};
        int n = shapes[s][0], H = shapes[s][1];
        float *GI = rnd_vec((size_t)n * 3 * H, -3, 3), *GH = rnd_vec((size_t)n * 3 * H, -3, 3);
        float *Hh = rnd_vec((size_t)n * H, -1, 1);
        struct pair gi = mirror(GI, (size_t)n * 3 * H * 4), gh = mirror(GH, (size_t)n * 3 * H * 4),
                    h = mirror(Hh, (size_t)n * H * 4);
        check(g_cpu.f->gru_gates(g_cpu.ctx, gi.cpu, gh.cpu, h.cpu, n, H, &err), &err, "cpu gru");
        check(g_gpu.f->gru_gates(g_gpu.ctx, gi.gpu, gh.gpu, h.gpu, n, H, &err), &err, "cuda gru");
        char what[64];
        snprintf(what, sizeof what, "gru_gates %dx%d", n, H);
        expect_close(&h, (size_t)n * H, 1e-5, what);
        pair_free(&gi);
        pair_free(&gh);
        pair_free(&h);
        free(GI);
        free(GH);
        free(Hh);
    }
}

/* ---- attention -------------------------------------------------------------------------- */

static void one_attention(const int *lens, int B, int max_len, int heads, int dh)
{
    struct sr_error err = {0};
    int32_t *off = malloc((B + 1) * sizeof *off);
    off[0] = 0;
    for (int b = 0; b < B; b++)
        off[b + 1] = off[b] + lens[b];
    int T = off[B], d = heads * dh;
    float *QKV = rnd_vec((size_t)T * 3 * d, -2, 2);
    float *zero = calloc((size_t)T * d, sizeof(float));
    struct pair qkv = mirror(QKV, (size_t)T * 3 * d * 4), o = mirror(off, (B + 1) * 4u),
                out = mirror(zero, (size_t)T * d * 4);
    check(g_cpu.f->attention(g_cpu.ctx, qkv.cpu, o.cpu, B, max_len, heads, dh, out.cpu, &err),
          &err, "cpu attention");
    check(g_gpu.f->attention(g_gpu.ctx, qkv.gpu, o.gpu, B, max_len, heads, dh, out.gpu, &err),
          &err, "cuda attention");
    char what[96];
    snprintf(what, sizeof what, "attention B=%d T=%d max_len=%d heads=%d d_head=%d", B, T, max_len,
             heads, dh);
    expect_close(&out, (size_t)T * d, 1e-4, what);
    /* a length-1 session attends only to itself: its output is its own v */
    float *got = fetch(&g_gpu, out.gpu, (size_t)T * d * 4);
    for (int b = 0; b < B; b++) {
        if (lens[b] != 1)
            continue;
        for (int c = 0; c < d; c++) {
            float v = QKV[(size_t)off[b] * 3 * d + 2 * d + c];
            if (fabsf(got[(size_t)off[b] * d + c] - v) > 1e-5f)
                fail_msg("%s: length-1 session %d col %d: %g, want v=%g", what, b, c,
                         got[(size_t)off[b] * d + c], v);
        }
    }
    free(got);
    pair_free(&qkv);
    pair_free(&o);
    pair_free(&out);
    free(QKV);
    free(zero);
    free(off);
}

static void test_attention(void **state)
{
    (void)state;
    const int l1[] = {1, 5, 1, 50, 17, 1, 64, 33, 2, 49};
    one_attention(l1, 10, 64, 2, 32);
    one_attention(l1, 10, 64, 4, 16);
    one_attention(l1, 10, 64, 1, 64);
    one_attention(l1, 10, 64, 3, 20);
    const int l2[] = {1};
    one_attention(l2, 1, 1, 2, 8);
    const int l3[] = {300, 1, 129, 65, 200};
    one_attention(l3, 5, 300, 2, 64);
    one_attention(l3, 5, 300, 2, 128);
    const int l4[] = {1024, 7};
    one_attention(l4, 2, 1024, 2, 32);
    /* many random sessions, as a serving batch */
    int l5[256];
    for (int b = 0; b < 256; b++)
        l5[b] = 1 + rnd_int(50);
    one_attention(l5, 256, 50, 2, 32);
}

/* ---- top-k ------------------------------------------------------------------------------ */

struct topk_case {
    int B, d, V, first, k, tile;
    bool bias, excl, ties;
    bool filter; /* every 7th item's bias is -INF (sr_model_set_item_filter): never returned */
};

/* Contract checks on one result: descending, ties by index, no reserved/excluded items, pads
 * last, and each score the host recomputes (float) within 1e-4 relative. */
static void check_topk_contract(const char *who, const struct topk_case *tc, const float *Q,
                                const float *E, const float *bias, const int32_t *eoff,
                                const int32_t *eitems, const int32_t *idx, const float *sc)
{
    for (int b = 0; b < tc->B; b++) {
        bool padded = false;
        for (int i = 0; i < tc->k; i++) {
            int32_t j = idx[(size_t)b * tc->k + i];
            float s = sc[(size_t)b * tc->k + i];
            if (j < 0) {
                if (j != -1 || !(isinf(s) && s < 0))
                    fail_msg("%s: row %d pos %d: bad pad (%d, %g)", who, b, i, j, s);
                padded = true;
                continue;
            }
            if (padded)
                fail_msg("%s: row %d pos %d: item after a pad", who, b, i);
            if (j < tc->first || j >= tc->V)
                fail_msg("%s: row %d pos %d: index %d outside [%d,%d)", who, b, i, j, tc->first,
                         tc->V);
            if (eoff)
                for (int e = eoff[b]; e < eoff[b + 1]; e++)
                    if (eitems[e] == j)
                        fail_msg("%s: row %d returns excluded item %d", who, b, j);
            for (int i2 = 0; i2 < i; i2++)
                if (idx[(size_t)b * tc->k + i2] == j)
                    fail_msg("%s: row %d returns %d twice", who, b, j);
            if (i > 0) {
                float ps = sc[(size_t)b * tc->k + i - 1];
                int32_t pj = idx[(size_t)b * tc->k + i - 1];
                if (s > ps || (s == ps && j < pj))
                    fail_msg("%s: row %d pos %d out of order: (%d,%g) after (%d,%g)", who, b, i, j,
                             s, pj, ps);
            }
            if (bias && isinf(bias[j]))
                fail_msg("%s: row %d returns filtered item %d", who, b, j);
            double want = bias ? bias[j] : 0.0, mag = fabs(want);
            for (int c = 0; c < tc->d; c++) {
                want += (double)Q[(size_t)b * tc->d + c] * E[(size_t)j * tc->d + c];
                mag += fabs((double)Q[(size_t)b * tc->d + c] * E[(size_t)j * tc->d + c]);
            }
            if (fabs(s - want) > 1e-4 * (mag + 1e-6))
                fail_msg("%s: row %d item %d score %g, recomputed %g", who, b, j, s, want);
        }
    }
}

static bool near(float a, float b)
{
    return fabsf(a - b) <= 1e-5f * fmaxf(1.0f, fmaxf(fabsf(a), fabsf(b)));
}

static void one_topk(const struct topk_case *tc)
{
    struct sr_error err = {0};
    char what[160];
    snprintf(what, sizeof what,
             "topk B=%d d=%d V=%d first=%d k=%d tile=%d bias=%d excl=%d ties=%d", tc->B, tc->d,
             tc->V, tc->first, tc->k, tc->tile, tc->bias, tc->excl, tc->ties);
    float *Q = rnd_vec((size_t)tc->B * tc->d, -1, 1), *E = rnd_vec((size_t)tc->V * tc->d, -1, 1);
    float *Bs = rnd_vec(tc->V, -0.5f, 0.5f);
    if (tc->ties) { /* small integers: many exactly equal scores, computed exactly */
        for (size_t i = 0; i < (size_t)tc->B * tc->d; i++)
            Q[i] = (float)rnd_int(2);
        for (size_t i = 0; i < (size_t)tc->V * tc->d; i++)
            E[i] = (float)(rnd_int(3) - 1);
        for (int i = 0; i < tc->V; i++)
            Bs[i] = (float)rnd_int(2);
    }
    if (tc->filter)
        for (int i = 0; i < tc->V; i += 7)
            Bs[i] = -INFINITY;
    /* Exclusions: most rows exclude their own 5 best items (so exclusion changes the answer),
     * a few random ones, a duplicate and a reserved index; every third row excludes nothing. */
    int32_t *eoff = NULL, *eitems = NULL;
    if (tc->excl) {
        eoff = malloc((tc->B + 1) * sizeof *eoff);
        eitems = malloc(((size_t)tc->B * 40 + 1) * sizeof *eitems);
        float *row = malloc(tc->V * sizeof *row);
        eoff[0] = 0;
        for (int b = 0; b < tc->B; b++) {
            int32_t *e = eitems + eoff[b];
            int n = 0;
            if (b % 3 != 2) {
                for (int j = 0; j < tc->V; j++) {
                    float s = tc->bias ? Bs[j] : 0.f;
                    for (int c = 0; c < tc->d; c++)
                        s += Q[(size_t)b * tc->d + c] * E[(size_t)j * tc->d + c];
                    row[j] = j < tc->first ? -INFINITY : s;
                }
                for (int t = 0; t < 5 && t < tc->V; t++) { /* 5 best, by selection */
                    int best = 0;
                    for (int j = 1; j < tc->V; j++)
                        if (row[j] > row[best])
                            best = j;
                    e[n++] = best;
                    row[best] = -INFINITY;
                }
                int extra = rnd_int(30);
                for (int i = 0; i < extra; i++)
                    e[n++] = rnd_int(tc->V);
                e[n++] = e[0]; /* duplicate */
                e[n++] = 0;    /* reserved: ineligible anyway */
            }
            eoff[b + 1] = eoff[b] + n;
        }
        free(row);
    }
    size_t nbk = (size_t)tc->B * tc->k;
    int32_t *ci = malloc(nbk * 4), *gi = malloc(nbk * 4);
    float *cs = malloc(nbk * 4), *gs = malloc(nbk * 4);
    struct pair q = mirror(Q, (size_t)tc->B * tc->d * 4), e = mirror(E, (size_t)tc->V * tc->d * 4),
                bs = mirror(Bs, tc->V * 4u);
    struct pair eo = {0}, ei = {0};
    if (tc->excl) {
        eo = mirror(eoff, (tc->B + 1) * 4u);
        ei = mirror(eitems, (eoff[tc->B] ? eoff[tc->B] : 1) * 4u);
    }
    sr__cuda_topk_set_tile(g_gpu.ctx, tc->tile);
    check(g_cpu.f->topk(g_cpu.ctx, q.cpu, tc->B, e.cpu, tc->bias ? bs.cpu : NULL, tc->d,
                        tc->first, tc->V, tc->excl ? eo.cpu : NULL, tc->excl ? ei.cpu : NULL,
                        tc->k, ci, cs, &err), &err, "cpu topk");
    check(g_gpu.f->topk(g_gpu.ctx, q.gpu, tc->B, e.gpu, tc->bias ? bs.gpu : NULL, tc->d,
                        tc->first, tc->V, tc->excl ? eo.gpu : NULL, tc->excl ? ei.gpu : NULL,
                        tc->k, gi, gs, &err), &err, "cuda topk");
    sr__cuda_topk_set_tile(g_gpu.ctx, 0);
    check_topk_contract("cuda", tc, Q, E, tc->bias ? Bs : NULL, eoff, eitems, gi, gs);
    check_topk_contract("cpu", tc, Q, E, tc->bias ? Bs : NULL, eoff, eitems, ci, cs);

    /* Parity: same index at every position unless the scores there tie within 1e-5; then the
     * differing items must still be tied with the position's score in the other result. */
    for (int b = 0; b < tc->B; b++) {
        const int32_t *gr = gi + (size_t)b * tc->k, *cr = ci + (size_t)b * tc->k;
        const float *gsr = gs + (size_t)b * tc->k, *csr = cs + (size_t)b * tc->k;
        for (int i = 0; i < tc->k; i++) {
            if ((gr[i] < 0) != (cr[i] < 0))
                fail_msg("%s: row %d pos %d: cuda %d vs cpu %d (padding differs)", what, b, i,
                         gr[i], cr[i]);
            if (gr[i] < 0)
                continue;
            if (!near(gsr[i], csr[i]) && fabsf(gsr[i] - csr[i]) > 1e-4f * fabsf(csr[i]))
                fail_msg("%s: row %d pos %d: score cuda %.7g vs cpu %.7g", what, b, i, gsr[i],
                         csr[i]);
            if (gr[i] == cr[i])
                continue;
            /* find the cpu item's cuda score among near-equal neighbours */
            bool ok = near(gsr[i], csr[i]);
            if (ok)
                for (int i2 = 0; i2 < tc->k && ok; i2++)
                    if (cr[i2] == gr[i] && !near(csr[i2], gsr[i]))
                        ok = false;
            if (!ok)
                fail_msg("%s: row %d pos %d: cuda %d (%.7g) vs cpu %d (%.7g)", what, b, i, gr[i],
                         gsr[i], cr[i], csr[i]);
        }
    }
    if (tc->ties) /* exact integer scores: tie-breaking must agree exactly */
        for (size_t i = 0; i < nbk; i++)
            if (gi[i] != ci[i] || gs[i] != cs[i])
                fail_msg("%s: exact scores: pos %zu cuda (%d,%g) vs cpu (%d,%g)", what, i, gi[i],
                         gs[i], ci[i], cs[i]);
    pair_free(&q);
    pair_free(&e);
    pair_free(&bs);
    if (tc->excl) {
        pair_free(&eo);
        pair_free(&ei);
    }
    free(Q);
    free(E);
    free(Bs);
    free(eoff);
    free(eitems);
    free(ci);
    free(gi);
    free(cs);
    free(gs);
}

static void test_topk(void **state)
{
    (void)state;
    const struct topk_case cases[] = {
        /* B   d     V  first  k  tile bias  excl   ties  filter */
        {9, 32, 10007, 3, 10, 0, true, true, false, false}, /* auto tile, radix-select path */
        {9, 32, 10007, 3, 300, 256, true, true, false, false}, /* k > tile, V % tile != 0 */
        {4, 64, 5000, 2, 1024, 700, false, true, false, false}, /* k = 1024 across tiles */
        {3, 16, 6001, 3, 2000, 0, true, false, false, false}, /* k = 2000: > 48 KiB shared */
        {5, 8, 20, 3, 30, 0, true, true, false, false},    /* fewer eligible than k: pads */
        {7, 12, 3001, 3, 50, 512, true, true, true, false}, /* exact ties across tiles */
        {6, 12, 70001, 3, 20, 0, false, false, true, false}, /* ties inside a radix bucket */
        {256, 64, 100000, 2, 10, 0, true, false, false, false}, /* serving shape */
        {1, 1, 4, 3, 2, 0, false, false, false, false},    /* one eligible item */
        {9, 32, 10007, 3, 10, 0, true, true, false, true}, /* item filter (-INF bias) */
        {5, 8, 30, 3, 40, 0, true, false, false, true},    /* filter leaves fewer than k */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        one_topk(&cases[i]);
}

/* ---- errors are values ------------------------------------------------------------------ */

static void test_errors(void **state)
{
    (void)state;
    struct sr_error err = {0};
    const struct sr_backend_iface *f = NULL;
    void *ctx = NULL;
    assert_int_equal(sr__backend_cuda_new(sr__cuda_device_count() + 3, &f, &ctx, &err), SR_EDEVICE);
    assert_null(ctx);
    assert_non_null(strstr(err.msg, "does not exist"));
    assert_int_equal(strncmp(g_gpu.f->describe(g_gpu.ctx), "cuda (", 6), 0);
    assert_string_equal(g_gpu.f->name, "cuda");
    assert_int_equal(g_gpu.f->api_version, SR_BACKEND_API_VERSION);
    /* unsupported shapes are refused, and the backend keeps working afterwards */
    float *buf = g_gpu.f->alloc(g_gpu.ctx, 4096);
    int32_t off[2] = {0, 1};
    int32_t *doff = dup_to(&g_gpu, off, sizeof off);
    assert_non_null(buf);
    assert_int_equal(g_gpu.f->attention(g_gpu.ctx, buf, doff, 1, 1, 1, 300, buf, &err),
                     SR_EUNSUPPORTED);
    assert_int_equal(g_gpu.f->gemm(g_gpu.ctx, false, false, -1, 2, 2, 1.f, buf, 2, buf, 2, 0.f,
                                   buf, 2, &err), SR_EINVAL);
    int32_t idx[1];
    float sc[1];
    assert_int_equal(g_gpu.f->topk(g_gpu.ctx, buf, 1, buf, NULL, 1, 0, 4, NULL, NULL, 1 << 20,
                                   idx, sc, &err), SR_EUNSUPPORTED);
    float one = 1.f;
    check(g_gpu.f->upload(g_gpu.ctx, buf, &one, sizeof one, &err), &err, "upload after errors");
    g_gpu.f->free(g_gpu.ctx, doff);
    g_gpu.f->free(g_gpu.ctx, buf);
    g_gpu.f->free(g_gpu.ctx, NULL);
}

/* ---- main ------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    struct sr_error err = {0};
    if (sr__backend_cpu_new(2, &g_cpu.f, &g_cpu.ctx, &err) != SR_OK) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return -1;
    }
    if (sr__backend_cuda_new(0, &g_gpu.f, &g_gpu.ctx, &err) != SR_OK) {
        fprintf(stderr, "cuda backend: %s\n", err.msg);
        return -1;
    }
    printf("parity: %s vs %s\n", g_gpu.f->describe(g_gpu.ctx), g_cpu.f->describe(g_cpu.ctx));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_gpu.f)
        g_gpu.f->destroy(g_gpu.ctx);
    if (g_cpu.f)
        g_cpu.f->destroy(g_cpu.ctx);
    return 0;
}

int main(void)
{
    if (!sr__cuda_usable()) {
        printf("skipped: no CUDA device, or no cuBLAS to load (libcublas.so.13/.12)\n");
        return 0;
    }
    const char *s = getenv("SR_TEST_SEED");
    g_rng = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("SR_TEST_SEED=%llu\n", (unsigned long long)g_rng);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),       cmocka_unit_test(test_embed_gather),
        cmocka_unit_test(test_layer_norm), cmocka_unit_test(test_bias_act),
        cmocka_unit_test(test_add),        cmocka_unit_test(test_gru_gates),
        cmocka_unit_test(test_attention),  cmocka_unit_test(test_topk),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("cuda_parity", tests, setup, teardown);
}
