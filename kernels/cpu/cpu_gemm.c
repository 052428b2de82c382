/* cpu_gemm.c — the cpu backend's `gemm` slot, C = alpha·op(A)·op(B) + beta·C, row-deterministic:
 * every element of C is one chain of fused multiply-adds over k = 0..K-1 from 0, then
 * alpha·acc (a multiply) and, when beta != 0, fma(beta, C, alpha·acc). Nothing in that
 * sequence depends on M, on where a row sits, on the thread split or on the instruction set,
 * so a session's rows give the same bits alone or inside any batch (DESIGN §8), on every
 * variant: AVX-512 (12×32 tiles), AVX2+FMA (6×16 tiles) and a portable one on fmaf() (4×16),
 * chosen once at backend creation (sr__cpu_gemm_isa_best). OpenBLAS cannot give this: its
 * result for a row depends on the row's position inside the call.
 * A call of at most 4 rows with a row-major op(B) reads op(B) in place instead (the same
 * chains: rows_direct_avx2), where packing it would cost as much as the GEMM (gpt2's encode
 * cache runs one new row per session, DESIGN §3.1).
 * Otherwise op(B) is packed once per call into panels of 16 columns (k-major, zero columns past
 * N; a whole number of tiles; whole panels of a row-major op(B) by copies), shared by the
 * tasks; each task owns a block of rows and packs each tile's rows of op(A) k-major into its
 * worker scratch (rows past M repeat a valid row and are not stored). Edge tiles go through a
 * register dump and a scalar epilogue doing the same operations. Owns c->gemm_pack (grown as
 * needed, freed with the backend).
 * Thread: the backend's caller; tasks on the pool. */
#include "cpu_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SR_GEMM_X86 1
#endif

#define PW 16      /* packed panel width, floats */
#define MR_MAX 12  /* most rows of any tile */
#define TW_MAX 32  /* widest tile, floats */

struct dg_job {
    struct sr__cpu *c;
    int isa, mr, tw;          /* variant, tile rows, tile width (PW or 2·PW) */
    int M, N, K, rows;        /* rows: per task, a multiple of mr */
    const float *A;
    size_t a_rs, a_cs;        /* op(A)(i, k) = A[i·a_rs + k·a_cs] */
    const float *B;
    size_t b_rs, b_cs;        /* op(B)(k, j) = B[k·b_rs + j·b_cs] */
    float *Bp;                /* packed panels: panel p, k, lane: Bp[(p·K + k)·PW + lane] */
    int panels;               /* a multiple of tw / PW */
    int pack_per;             /* panels per packing task */
    float alpha, beta;
    float *C;
    int ldc;
    bool oom;
};

/* ---- epilogue shared by every variant on edge tiles --------------------------------------- */

/* acc: nr × ncols accumulators (row stride TW_MAX); the operations of the vector epilogues. */
static void epilogue_scalar(const struct dg_job *g, const float *acc, int i0, int nr, int j0,
                            int ncols)
{
    for (int i = 0; i < nr; i++) {
        float *c = g->C + (size_t)(i0 + i) * g->ldc + j0;
        for (int j = 0; j < ncols; j++) {
            float t = g->alpha * acc[i * TW_MAX + j];
            c[j] = g->beta == 0.0f ? t : fmaf(g->beta, c[j], t);
        }
    }
}

/* ---- portable variant: 4 rows × 16 columns on fmaf ---------------------------------------- */

static void tile_generic(const struct dg_job *g, const float *Ap, size_t rs, size_t cs, int i0,
                         int nr, int p)
{
    float acc[4 * TW_MAX];
    const float *bp = g->Bp + (size_t)p * g->K * PW;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < PW; j++)
            acc[i * TW_MAX + j] = 0.0f;
    for (int k = 0; k < g->K; k++)
        for (int i = 0; i < 4; i++) {
            float a = Ap[i * rs + k * cs];
            for (int j = 0; j < PW; j++)
                acc[i * TW_MAX + j] = fmaf(a, bp[k * PW + j], acc[i * TW_MAX + j]);
        }
    int j0 = p * PW, ncols = g->N - j0 < PW ? g->N - j0 : PW;
    epilogue_scalar(g, acc, i0, nr, j0, ncols);
}

#ifdef SR_GEMM_X86
/* ---- AVX2+FMA: 6 rows × 16 columns (12 accumulators) -------------------------------------- */

__attribute__((target("avx2,fma"))) static void tile_avx2(const struct dg_job *g,
                                                           const float *Ap, size_t rs, size_t cs,
                                                           int i0, int nr, int p)
{
    __m256 c[6][2];
    for (int i = 0; i < 6; i++)
        c[i][0] = c[i][1] = _mm256_setzero_ps();
    const float *bp = g->Bp + (size_t)p * g->K * PW;
    for (int i = 0; i < nr; i++)
        _mm_prefetch((const char *)(g->C + (size_t)(i0 + i) * g->ldc + p * PW), _MM_HINT_T0);
    for (int k = 0; k < g->K; k++) {
        __m256 b0 = _mm256_load_ps(bp + (size_t)k * PW), b1 = _mm256_load_ps(bp + (size_t)k * PW + 8);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 a = _mm256_set1_ps(Ap[i * rs + k * cs]);
            c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
        }
    }
    int j0 = p * PW;
    __m256 va = _mm256_set1_ps(g->alpha), vb = _mm256_set1_ps(g->beta);
    if (nr == 6 && j0 + PW <= g->N) {
        for (int i = 0; i < 6; i++) {
            float *cp = g->C + (size_t)(i0 + i) * g->ldc + j0;
            __m256 t0 = _mm256_mul_ps(va, c[i][0]), t1 = _mm256_mul_ps(va, c[i][1]);
            if (g->beta != 0.0f) {
                t0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp), t0);
                t1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp + 8), t1);
            }
            _mm256_storeu_ps(cp, t0);
            _mm256_storeu_ps(cp + 8, t1);
        }
        return;
    }
    float acc[6 * TW_MAX];
    for (int i = 0; i < 6; i++) {
        _mm256_storeu_ps(acc + i * TW_MAX, c[i][0]);
        _mm256_storeu_ps(acc + i * TW_MAX + 8, c[i][1]);
    }
    epilogue_scalar(g, acc, i0, nr, j0, g->N - j0 < PW ? g->N - j0 : PW);
}

/* ---- AVX-512: 12 rows × 32 columns (24 accumulators) -------------------------------------- */

__attribute__((target("avx512f,avx2,fma"))) static void tile_avx512(const struct dg_job *g,
                                                                     const float *Ap, size_t rs,
                                                                     size_t cs, int i0, int nr,
                                                                     int p)
{
    __m512 c[12][2];
    for (int i = 0; i < 12; i++)
        c[i][0] = c[i][1] = _mm512_setzero_ps();
    const float *b0p = g->Bp + (size_t)p * g->K * PW, *b1p = b0p + (size_t)g->K * PW;
    /* this tile of C arrives (for the update or the write) while the k loop runs */
    for (int i = 0; i < nr; i++) {
        const char *cp = (const char *)(g->C + (size_t)(i0 + i) * g->ldc + p * PW);
        _mm_prefetch(cp, _MM_HINT_T0);
        _mm_prefetch(cp + 64, _MM_HINT_T0);
    }
    for (int k = 0; k < g->K; k++) {
        __m512 b0 = _mm512_load_ps(b0p + (size_t)k * PW), b1 = _mm512_load_ps(b1p + (size_t)k * PW);
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            __m512 a = _mm512_set1_ps(Ap[i * rs + k * cs]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
    }
    int j0 = p * PW, left = g->N - j0;
    __m512 va = _mm512_set1_ps(g->alpha), vb = _mm512_set1_ps(g->beta);
    if (nr == 12 && left > PW) {
        /* lanes past N are masked off: same operations on the lanes kept */
        __mmask16 m1 = left >= 2 * PW ? (__mmask16)0xffff : (__mmask16)((1u << (left - PW)) - 1);
        for (int i = 0; i < 12; i++) {
            float *cp = g->C + (size_t)(i0 + i) * g->ldc + j0;
            __m512 t0 = _mm512_mul_ps(va, c[i][0]), t1 = _mm512_mul_ps(va, c[i][1]);
            if (g->beta != 0.0f) {
                t0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), t0);
                t1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cp + PW), t1);
            }
            _mm512_storeu_ps(cp, t0);
            _mm512_mask_storeu_ps(cp + PW, m1, t1);
        }
        return;
    }
    float acc[12 * TW_MAX];
    for (int i = 0; i < 12; i++) {
        _mm512_storeu_ps(acc + i * TW_MAX, c[i][0]);
        _mm512_storeu_ps(acc + i * TW_MAX + PW, c[i][1]);
    }
    epilogue_scalar(g, acc, i0, nr, j0, left < 2 * PW ? left : 2 * PW);
}
/* ---- a few rows: op(B) read in place --------------------------------------------------- */

/* M <= 4 rows of a row-major op(B), without packing it (for one row the packing copied as
 * many floats as the GEMM reads): a row at a time, 64 then 8 columns at a time (independent
 * accumulators in registers), each element the same chain of fused multiply-adds from 0 over
 * k = 0..K-1, then alpha·acc and fma(beta, C, ·), as the tiles and their scalar epilogue do
 * (fmaf on the columns past the last eight), so the bits are the packed path's. For the FMA
 * variants only (AVX2, AVX-512); one thread. */
#define SR_DIRECT_EPILOGUE(cp, acc)                                                                \
    do {                                                                                           \
        __m256 t_ = _mm256_mul_ps(va, (acc));                                                      \
        if (g->beta != 0.0f)                                                                       \
            t_ = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp), t_);                                     \
        _mm256_storeu_ps((cp), t_);                                                                \
    } while (0)

__attribute__((target("avx2,fma"))) static void rows_direct_avx2(const struct dg_job *g)
{
    const int N = g->N, K = g->K;
    const size_t brs = g->b_rs;
    __m256 va = _mm256_set1_ps(g->alpha), vb = _mm256_set1_ps(g->beta);
    for (int i = 0; i < g->M; i++) {
        const float *a = g->A + (size_t)i * g->a_rs;
        float *crow = g->C + (size_t)i * g->ldc;
        int j0 = 0;
        for (; j0 + 64 <= N; j0 += 64) {
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
                   c7 = c0;
            const float *b = g->B + j0;
            for (int k = 0; k < K; k++, b += brs) {
                __m256 ak = _mm256_set1_ps(a[(size_t)k * g->a_cs]);
                c0 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b), c0);
                c1 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b + 8), c1);
                c2 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b + 16), c2);
                c3 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b + 24), c3);
                c4 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b + 32), c4);
                c5 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b + 40), c5);
                c6 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b + 48), c6);
                c7 = _mm256_fmadd_ps(ak, _mm256_loadu_ps(b + 56), c7);
            }
            float *cp = crow + j0;
            SR_DIRECT_EPILOGUE(cp, c0);
            SR_DIRECT_EPILOGUE(cp + 8, c1);
            SR_DIRECT_EPILOGUE(cp + 16, c2);
            SR_DIRECT_EPILOGUE(cp + 24, c3);
            SR_DIRECT_EPILOGUE(cp + 32, c4);
            SR_DIRECT_EPILOGUE(cp + 40, c5);
            SR_DIRECT_EPILOGUE(cp + 48, c6);
            SR_DIRECT_EPILOGUE(cp + 56, c7);
        }
        for (; j0 + 8 <= N; j0 += 8) {
            __m256 c0 = _mm256_setzero_ps();
            const float *b = g->B + j0;
            for (int k = 0; k < K; k++, b += brs)
                c0 = _mm256_fmadd_ps(_mm256_set1_ps(a[(size_t)k * g->a_cs]), _mm256_loadu_ps(b),
                                     c0);
            SR_DIRECT_EPILOGUE(crow + j0, c0);
        }
        for (; j0 < N; j0++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++)
                acc = fmaf(a[(size_t)k * g->a_cs], g->B[(size_t)k * brs + j0], acc);
            float t = g->alpha * acc;
            crow[j0] = g->beta == 0.0f ? t : fmaf(g->beta, crow[j0], t);
        }
    }
}
#undef SR_DIRECT_EPILOGUE
#endif

/* ---- packing and tasks -------------------------------------------------------------------- */

static void pack_b_task(void *arg, int t, int w)
{
    (void)w;
    struct dg_job *g = arg;
    int p1 = (t + 1) * g->pack_per < g->panels ? (t + 1) * g->pack_per : g->panels;
    for (int p = t * g->pack_per; p < p1; p++) {
        float *bp = g->Bp + (size_t)p * g->K * PW;
        if (g->b_cs == 1 && (p + 1) * PW <= g->N) { /* a whole panel of a row-major B: copies */
            const float *src = g->B + (size_t)p * PW;
            for (int k = 0; k < g->K; k++, bp += PW)
                memcpy(bp, src + (size_t)k * g->b_rs, sizeof(float) * PW);
            continue;
        }
        for (int k = 0; k < g->K; k++)
            for (int l = 0; l < PW; l++) {
                int j = p * PW + l;
                *bp++ = j < g->N ? g->B[(size_t)k * g->b_rs + (size_t)j * g->b_cs] : 0.0f;
            }
    }
}

/* Rows of a task go in chunks whose op(A) rows fit in about 24 KiB (L1): for each tile of
 * columns, every row tile of the chunk, so a tile of op(B) is read from L1 across the chunk. */
static void gemm_task(void *arg, int t, int w)
{
    struct dg_job *g = arg;
    int mr = g->mr, r0 = t * g->rows, r1 = r0 + g->rows < g->M ? r0 + g->rows : g->M;
    size_t K = (size_t)g->K;
    int chunk = 24576 / (int)(sizeof(float) * (K ? K : 1) * mr);
    chunk = (chunk < 1 ? 1 : chunk) * mr;
    float *Ap = sr__cpu_scratch(g->c, w, sizeof(float) * (size_t)chunk * (K ? K : 1));
    if (!Ap) {
        g->oom = true;
        return;
    }
    for (int c0 = r0; c0 < r1; c0 += chunk) {
        int c1 = c0 + chunk < r1 ? c0 + chunk : r1;
        /* whole tiles of a row-major A are read in place; others are packed k-major, rows
         * past the end repeating the tile's first row */
        for (int i0 = c0; i0 < c1; i0 += mr) {
            int nr = c1 - i0 < mr ? c1 - i0 : mr;
            if (nr == mr && g->a_cs == 1)
                continue;
            float *ap = Ap + (size_t)(i0 - c0) * K;
            for (int i = 0; i < mr; i++) {
                const float *src = g->A + (size_t)(i0 + (i < nr ? i : 0)) * g->a_rs;
                for (size_t k = 0; k < K; k++)
                    ap[k * mr + i] = src[k * g->a_cs];
            }
        }
        for (int p = 0; p < g->panels; p += g->tw / PW)
            for (int i0 = c0; i0 < c1; i0 += mr) {
                int nr = c1 - i0 < mr ? c1 - i0 : mr;
                const float *a = g->A + (size_t)i0 * g->a_rs;
                size_t rs = g->a_rs, cs = 1;
                if (nr < mr || g->a_cs != 1)
                    a = Ap + (size_t)(i0 - c0) * K, rs = 1, cs = (size_t)mr;
                switch (g->isa) {
#ifdef SR_GEMM_X86
                case SR__CPU_ISA_AVX512:
                    tile_avx512(g, a, rs, cs, i0, nr, p);
                    break;
                case SR__CPU_ISA_AVX2:
                    tile_avx2(g, a, rs, cs, i0, nr, p);
                    break;
#endif
                default:
                    tile_generic(g, a, rs, cs, i0, nr, p);
                }
            }
    }
}

int sr__cpu_gemm_isa_best(void)
{
#ifdef SR_GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return __builtin_cpu_supports("avx512f") ? SR__CPU_ISA_AVX512 : SR__CPU_ISA_AVX2;
#endif
    return SR__CPU_ISA_GENERIC;
}

sr_err_t sr__cpu_gemm(void *ctx, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc, struct sr_error *err)
{
    struct sr__cpu *c = ctx;
    if (M < 0 || N < 0 || K < 0)
        return sr_error_set(err, SR_EINVAL, "cpu gemm: negative size %dx%dx%d", M, N, K);
    if (M == 0 || N == 0)
        return SR_OK;
    int isa = c->gemm_isa;
    struct dg_job g = {.c = c, .isa = isa, .M = M, .N = N, .K = K, .A = A, .B = B,
                       .alpha = alpha, .beta = beta, .C = C, .ldc = ldc};
    g.mr = isa == SR__CPU_ISA_AVX512 ? 12 : isa == SR__CPU_ISA_AVX2 ? 6 : 4;
    g.tw = isa == SR__CPU_ISA_AVX512 ? 2 * PW : PW;
    g.a_rs = trans_a ? 1 : (size_t)lda;
    g.a_cs = trans_a ? (size_t)lda : 1;
    g.b_rs = trans_b ? 1 : (size_t)ldb;
    g.b_cs = trans_b ? (size_t)ldb : 1;
#ifdef SR_GEMM_X86
    if (M <= 4 && !trans_b && (isa == SR__CPU_ISA_AVX2 || isa == SR__CPU_ISA_AVX512)) {
        rows_direct_avx2(&g);
        return SR_OK;
    }
#endif
    int per_tile = g.tw / PW;
    g.panels = ((N + g.tw - 1) / g.tw) * per_tile;
    size_t bytes = sizeof(float) * (size_t)g.panels * PW * (K ? K : 1);
    if (bytes > c->gemm_cap) {
        float *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!p)
            return sr_error_set(err, SR_ENOMEM, "cpu gemm: out of memory packing %d×%d", K, N);
        free(c->gemm_pack);
        c->gemm_pack = p;
        c->gemm_cap = bytes;
    }
    g.Bp = c->gemm_pack;
    double work = (double)M * N * (K ? K : 1);
    bool par = c->threads > 1 && work >= 1 << 18;
    /* packing is parallel when op(B) is large (the copy is over N·K, the GEMM over M·N·K) */
    int pack_tasks = par && (size_t)K * N >= 1 << 15 ? c->threads : 1;
    g.pack_per = (g.panels + pack_tasks - 1) / pack_tasks;
    sr__cpu_parallel(c, (g.panels + g.pack_per - 1) / g.pack_per, pack_b_task, &g);
    /* rows per task: whole tiles, about four tasks per thread so a late worker's share moves */
    int tiles = (M + g.mr - 1) / g.mr, tasks = par ? 4 * c->threads : 1;
    if (tasks > tiles)
        tasks = tiles;
    g.rows = (tiles + tasks - 1) / tasks * g.mr;
    tasks = (M + g.rows - 1) / g.rows;
    sr__cpu_parallel(c, tasks, gemm_task, &g);
    if (g.oom)
        return sr_error_set(err, SR_ENOMEM, "cpu gemm: out of memory for a %d×%d row block",
                            g.mr, K);
    return SR_OK;
}

int sr__cpu_gemm_set_isa(void *ctx, int isa)
{
    struct sr__cpu *c = ctx;
    int prev = c->gemm_isa;
    if (isa >= SR__CPU_ISA_GENERIC && isa <= sr__cpu_gemm_isa_best())
        c->gemm_isa = isa;
    return prev;
}
