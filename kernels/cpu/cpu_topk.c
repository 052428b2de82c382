/* cpu_topk.c — exact top-k retrieval on the cpu backend, and the catalogue tables it keeps
 * packed (topk_pin / topk_unpin). Owns c->tables (the pinned, packed tables) and c->topk_buf.
 *
 * Layout. A table's rows first..V-1 are packed once into panels of 16 items, d-major
 * (panel p, dim x, lane l = item first+16p+l; zero rows past V), with an upper bound of each
 * row's Euclidean norm beside it. A model pins its table at load (DESIGN §8), so a call only
 * reads panels; a table nobody pinned is packed into scratch on each call.
 *
 * Scoring, fused with the running top-k. Queries go 6 at a time (fewer rows over more panels
 * for a batch under 6) through an AVX2+FMA register tile: 6 rows x 16 items, FP32 fused
 * multiply-adds over x = 0..d-1, bias added, and the 96 scores never leave the registers:
 * each is screened against its query's current k-th score and only the rare survivors are
 * looked at one by one. Workers take tiles of items in increasing order; each keeps a list per
 * query; the lists are merged by (score desc, index asc) at the end.
 *
 * Exactness. The FP32 scores only screen. The score of item j for query q is, as the host
 * re-scoring in model.c computes it, key = (float)D with D the double-precision chain
 * bias[j] + q0·e0 + q1·e1 + ... (float products are exact in double; the chain is the only
 * rounding). Every item that passes the screen gets its key computed exactly so, and the
 * lists hold keys, so the answer is the exact top-k by (key desc, index asc) whatever the
 * thread count, tile size or batch — nothing about the FP32 pass reaches the output.
 * The screen never drops an item that could enter a list. With u = 2^-24 and n = d+1:
 * the FP32 chain f (d fused multiply-adds from 0, then + bias: n roundings, in any order)
 * satisfies |f - x| <= gamma_n·S + n·2^-150 (Higham, Thm 3.1; the last term for underflow),
 * where x is the exact real score, S = sum|q_x e_x| + |bias| <= |q|·|e| + |bias| and
 * gamma_n = n·u/(1-n·u); the double chain D satisfies |D - x| <= n·2^-52·S <= 2^-32·S for
 * d < 2^20. The slack  s_j = g·|q|'·|e_j|' + (g·|bias_j| + FLT_MIN)  with g = 2(n+2)u, |q|' and |e_j|' the
 * norms rounded up to float, computed in FP32 (three roundings, each <= u relative) and
 * hi = f + s_j (one more rounding, <= u·(|f| + s_j)) satisfy hi >= D: the needed margin is
 * (gamma_n + 2^-32 + 1.01u)·S + n·2^-150 <= (n+1.1)u·S + FLT_MIN/2, and s_j·(1-u) - u·|f| >=
 * 2(n+2)u(1-4u)·S - 1.01u·S + FLT_MIN(1-2u) exceeds it. As rounding is monotone and hi is a
 * float, key_j = (float)D <= hi. A list's k-th key t only grows, and an item arrives after
 * every lower index of its worker, so it can enter only with key > t: hi <= t rules it out.
 * An infinite slack (norms past FLT_MAX) sends the item to the exact path; an FP32 score of
 * -INF (a filtered item's -INF bias, or a score past the float range, which the sgemm path
 * before this one dropped as well) gives hi = -INF or NaN and never passes.
 * Thread: the caller drives; the pool runs tiles. */
#include "cpu_int.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SR_TOPK_X86 1
#endif

#define PW 16                   /* items per packed panel */
#define SR_TOPK_TILE 2048       /* items per task: 2048·d·4 bytes stay in L2 across query blocks */


/* ---- packing -------------------------------------------------------------------------------- */

static float round_up_f(double v)
{
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

static void pack_table(struct sr__cpu_table *t)
{
    int n = t->V - t->first, d = t->d;
    for (int p = 0; p < t->n_panels; p++) {
        float *dst = t->panels + (size_t)p * d * PW;
        for (int l = 0; l < PW; l++) {
            int64_t i = (int64_t)p * PW + l;
            const float *row = i < n ? t->src + (size_t)(t->first + i) * d : NULL;
            double ss = 0;
            for (int x = 0; x < d; x++) {
                float v = row ? row[x] : 0.0f;
                dst[(size_t)x * PW + l] = v;
                ss += (double)v * v;
            }
            /* a double sum of d < 2^20 squares and its sqrt: relative error under 2^-32, covered */
            t->norm[i] = round_up_f(sqrt(ss) * (1 + 0x1p-30));
        }
    }
}

/* Allocates t's panels for src and packs them. */
static sr_err_t table_init(struct sr__cpu_table *t, const float *src, int d, int first, int V,
                           struct sr_error *err)
{
    t->src = src;
    t->d = d;
    t->first = first;
    t->V = V;
    t->n_panels = (V - first + PW - 1) / PW;
    size_t pb = sizeof(float) * (size_t)t->n_panels * d * PW;
    size_t nb = sizeof(float) * (size_t)t->n_panels * PW;
    t->panels = aligned_alloc(64, pb ? pb : 64);
    t->norm = aligned_alloc(64, nb ? nb : 64);
    if (!t->panels || !t->norm) {
        free(t->panels);
        free(t->norm);
        t->panels = t->norm = NULL;
        return sr_error_set(err, SR_ENOMEM, "cpu topk: out of memory packing a %d x %d table "
                            "(%zu bytes)", V - first, d, pb + nb);
    }
    pack_table(t);
    return SR_OK;
}

static struct sr__cpu_table *table_find(struct sr__cpu *c, const float *src, int d, int first,
                                        int V)
{
    for (int i = 0; i < c->n_tables; i++) {
        struct sr__cpu_table *t = &c->tables[i];
        if (t->src == src && t->d == d && t->first == first && t->V == V)
            return t;
    }
    return NULL;
}

sr_err_t sr__cpu_topk_pin(void *ctx, const float *table, int d, int first, int V,
                          struct sr_error *err)
{
    struct sr__cpu *c = ctx;
    if (!table || d <= 0 || first < 0 || V < first)
        return sr_error_set(err, SR_EINVAL, "cpu topk_pin: bad table d=%d first=%d V=%d", d,
                            first, V);
    struct sr__cpu_table *t = table_find(c, table, d, first, V);
    if (t) {
        t->pins++;
        return SR_OK;
    }
    struct sr__cpu_table *nt = realloc(c->tables, sizeof *nt * ((size_t)c->n_tables + 1));
    if (!nt)
        return sr_error_set(err, SR_ENOMEM, "cpu topk_pin: out of memory");
    c->tables = nt;
    t = &c->tables[c->n_tables];
    memset(t, 0, sizeof *t);
    sr_err_t rc = table_init(t, table, d, first, V, err);
    if (rc != SR_OK)
        return rc;
    t->pins = 1;
    c->n_tables++;
    return SR_OK;
}

void sr__cpu_topk_unpin(void *ctx, const float *table, int d, int first, int V)
{
    struct sr__cpu *c = ctx;
    struct sr__cpu_table *t = table_find(c, table, d, first, V);
    if (!t || --t->pins > 0)
        return;
    free(t->panels);
    free(t->norm);
    *t = c->tables[--c->n_tables];
}

void sr__cpu_topk_free(struct sr__cpu *c)
{
    for (int i = 0; i < c->n_tables; i++) {
        free(c->tables[i].panels);
        free(c->tables[i].norm);
    }
    free(c->tables);
    free(c->topk_tmp.panels);
    free(c->topk_tmp.norm);
    free(c->topk_buf);
}

/* ---- the job -------------------------------------------------------------------------------- */

struct topk_job {
    struct sr__cpu *c;
    const struct sr__cpu_table *t;
    const float *q, *bias;
    int B, d, first, V, k, tile_panels, isa;
    float g;                    /* slack factor 2(d+3)u */
    const float *gq;            /* [B] g·|q_b| rounded up */
    const int32_t *xoff, *xitem;/* per query: its exclusions in [first, V), sorted */
    float *lscore;              /* [threads][B][k] */
    int32_t *lidx;              /* [threads][B][k] */
};

static bool excluded(const struct topk_job *J, int b, int32_t j)
{
    int lo = J->xoff[b], hi = J->xoff[b + 1];
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (J->xitem[mid] < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < J->xoff[b + 1] && J->xitem[lo] == j;
}

/* The score model.c's re-scoring gives (see the top comment): double chain from the bias. */
static float exact_key(const struct topk_job *J, int b, int32_t j)
{
    const float *q = J->q + (size_t)b * J->d, *e = J->t->src + (size_t)j * J->d;
    double acc = J->bias ? (double)J->bias[j] : 0.0;
    for (int x = 0; x < J->d; x++)
        acc += (double)q[x] * (double)e[x];
    return (float)acc;
}

/* Item j passed query b's screen: unless excluded, its exact key enters the list if it beats
 * the k-th (ties: j is the newcomer with the higher index and loses). Returns the new k-th. */
static float offer(const struct topk_job *J, float *sc, int32_t *ix, int b, int32_t j)
{
    int k = J->k;
    if (J->xoff[b + 1] > J->xoff[b] && excluded(J, b, j))
        return sc[k - 1];
    float s = exact_key(J, b, j);
    if (!(s > sc[k - 1]))
        return sc[k - 1];
    int p = k - 1;
    while (p > 0 && sc[p - 1] < s) {
        sc[p] = sc[p - 1];
        ix[p] = ix[p - 1];
        p--;
    }
    sc[p] = s;
    ix[p] = j;
    return sc[k - 1];
}

/* Screens the FP32 scores f[0..n) of items j0.. for query b (hi = f + slack > k-th key). */
static void screen_scalar(const struct topk_job *J, int w, int b, int64_t j0, const float *f,
                          int n)
{
    float *sc = J->lscore + ((size_t)w * J->B + b) * J->k;
    int32_t *ix = J->lidx + ((size_t)w * J->B + b) * J->k;
    const float *ne = J->t->norm + (j0 - J->first);
    float thr = sc[J->k - 1], gq = J->gq[b];
    for (int l = 0; l < n; l++) {
        float bj = J->bias ? J->bias[j0 + l] : 0.0f;
        float hi = f[l] + (gq * ne[l] + (J->g * fabsf(bj) + FLT_MIN));
        if (hi > thr)
            thr = offer(J, sc, ix, b, (int32_t)(j0 + l));
    }
}

/* Portable path: one query x one panel at a time. */
static void tile_generic(const struct topk_job *J, int w, int p0, int p1)
{
    const int d = J->d;
    for (int b = 0; b < J->B; b++) {
        const float *q = J->q + (size_t)b * d;
        for (int p = p0; p < p1; p++) {
            const float *P = J->t->panels + (size_t)p * d * PW;
            float f[PW] = {0};
            for (int x = 0; x < d; x++)
                for (int l = 0; l < PW; l++)
                    f[l] = fmaf(q[x], P[(size_t)x * PW + l], f[l]);
            int64_t j0 = (int64_t)J->first + (int64_t)p * PW;
            int n = J->V - j0 < PW ? (int)(J->V - j0) : PW;
            if (J->bias)
                for (int l = 0; l < n; l++)
                    f[l] += J->bias[j0 + l];
            screen_scalar(J, w, b, j0, f, n);
        }
    }
}

#ifdef SR_TOPK_X86
/* MR queries (rows b0..) x NP panels (p..p+NP-1) in registers, then the screen. */
#define AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline
AVX2 void tile_avx2_rp(const struct topk_job *J, int w, int b0, int p, const int MR, const int NP)
{
    const int d = J->d;
    __m256 acc[6][8];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int n = 0; n < 2 * NP; n++)
            acc[i][n] = _mm256_setzero_ps();
    const float *P = J->t->panels + (size_t)p * d * PW;
    const float *q = J->q + (size_t)b0 * d;
    /* 16 registers: the accumulators plus whichever operand side is narrower stays live */
    if (2 * NP <= MR) {
        for (int x = 0; x < d; x++) {
            __m256 e[8];
#pragma GCC unroll 8
            for (int n = 0; n < 2 * NP; n++)
                e[n] = _mm256_load_ps(P + (size_t)(n / 2) * d * PW + (size_t)x * PW + (n % 2) * 8);
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                __m256 a = _mm256_broadcast_ss(q + (size_t)i * d + x);
#pragma GCC unroll 8
                for (int n = 0; n < 2 * NP; n++)
                    acc[i][n] = _mm256_fmadd_ps(a, e[n], acc[i][n]);
            }
        }
    } else {
        for (int x = 0; x < d; x++) {
            __m256 a[6];
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++)
                a[i] = _mm256_broadcast_ss(q + (size_t)i * d + x);
#pragma GCC unroll 8
            for (int n = 0; n < 2 * NP; n++) {
                __m256 e = _mm256_load_ps(P + (size_t)(n / 2) * d * PW + (size_t)x * PW + (n % 2) * 8);
#pragma GCC unroll 6
                for (int i = 0; i < MR; i++)
                    acc[i][n] = _mm256_fmadd_ps(a[i], e, acc[i][n]);
            }
        }
    }
    const __m256 g = _mm256_set1_ps(J->g), tiny = _mm256_set1_ps(FLT_MIN);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
#pragma GCC unroll 4
    for (int np = 0; np < NP; np++) {
        int64_t j0 = (int64_t)J->first + (int64_t)(p + np) * PW;
        int n_valid = J->V - j0 < PW ? (int)(J->V - j0) : PW;
        __m256 bias[2], slack0[2], ne[2];
        for (int h = 0; h < 2; h++) {
            ne[h] = _mm256_load_ps(J->t->norm + (j0 - J->first) + 8 * h);
            if (J->bias && n_valid == PW)
                bias[h] = _mm256_loadu_ps(J->bias + j0 + 8 * h);
            else
                bias[h] = _mm256_setzero_ps();
        }
        if (J->bias && n_valid < PW) {
            float tmp[PW] = {0};
            memcpy(tmp, J->bias + j0, sizeof(float) * n_valid);
            bias[0] = _mm256_loadu_ps(tmp);
            bias[1] = _mm256_loadu_ps(tmp + 8);
        }
        for (int h = 0; h < 2; h++)
            slack0[h] = _mm256_fmadd_ps(g, _mm256_and_ps(bias[h], absm), tiny);
        unsigned valid = n_valid == PW ? 0xffffu : (1u << n_valid) - 1;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            int b = b0 + i;
            float *sc = J->lscore + ((size_t)w * J->B + b) * J->k;
            float thr = sc[J->k - 1];
            __m256 gq = _mm256_set1_ps(J->gq[b]), vt = _mm256_set1_ps(thr);
            __m256 f0 = acc[i][2 * np], f1 = acc[i][2 * np + 1];
            if (J->bias) {
                f0 = _mm256_add_ps(f0, bias[0]);
                f1 = _mm256_add_ps(f1, bias[1]);
            }
            __m256 h0 = _mm256_add_ps(f0, _mm256_fmadd_ps(gq, ne[0], slack0[0]));
            __m256 h1 = _mm256_add_ps(f1, _mm256_fmadd_ps(gq, ne[1], slack0[1]));
            unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(h0, vt, _CMP_GT_OQ)) |
                         (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(h1, vt, _CMP_GT_OQ)) << 8;
            m &= valid;
            if (!m)
                continue;
            float hv[PW];
            _mm256_storeu_ps(hv, h0);
            _mm256_storeu_ps(hv + 8, h1);
            int32_t *ix = J->lidx + ((size_t)w * J->B + b) * J->k;
            while (m) {
                int l = __builtin_ctz(m);
                m &= m - 1;
                if (hv[l] > thr)
                    thr = offer(J, sc, ix, b, (int32_t)(j0 + l));
            }
        }
    }
}

__attribute__((target("avx2,fma"))) static void tile_avx2(const struct topk_job *J, int w, int p0,
                                                           int p1)
{
    int b0 = 0;
    /* a batch under 6 takes more panels per pass to keep 8-12 accumulators in flight */
    if (J->B < 6) {
        int np = J->B == 1 ? 4 : J->B == 2 ? 3 : J->B == 3 ? 2 : 1;
        int p = p0;
        for (; p + np <= p1; p += np)
            switch (J->B) {
            case 1: tile_avx2_rp(J, w, 0, p, 1, 4); break;
            case 2: tile_avx2_rp(J, w, 0, p, 2, 3); break;
            case 3: tile_avx2_rp(J, w, 0, p, 3, 2); break;
            case 4: tile_avx2_rp(J, w, 0, p, 4, 1); break;
            default: tile_avx2_rp(J, w, 0, p, 5, 1); break;
            }
        for (; p < p1; p++)
            switch (J->B) {
            case 1: tile_avx2_rp(J, w, 0, p, 1, 1); break;
            case 2: tile_avx2_rp(J, w, 0, p, 2, 1); break;
            default: tile_avx2_rp(J, w, 0, p, 3, 1); break;
            }
        return;
    }
    for (; b0 + 6 <= J->B; b0 += 6)
        for (int p = p0; p < p1; p++)
            tile_avx2_rp(J, w, b0, p, 6, 1);
    int r = J->B - b0;
    for (int p = p0; r && p < p1; p++)
        switch (r) {
        case 1: tile_avx2_rp(J, w, b0, p, 1, 1); break;
        case 2: tile_avx2_rp(J, w, b0, p, 2, 1); break;
        case 3: tile_avx2_rp(J, w, b0, p, 3, 1); break;
        case 4: tile_avx2_rp(J, w, b0, p, 4, 1); break;
        default: tile_avx2_rp(J, w, b0, p, 5, 1); break;
        }
}
#endif

static void topk_task(void *arg, int t, int w)
{
    struct topk_job *J = arg;
    int p0 = t * J->tile_panels;
    int p1 = p0 + J->tile_panels < J->t->n_panels ? p0 + J->tile_panels : J->t->n_panels;
#ifdef SR_TOPK_X86
    if (J->isa >= SR__CPU_ISA_AVX2) {
        tile_avx2(J, w, p0, p1);
        return;
    }
#endif
    tile_generic(J, w, p0, p1);
}

/* a ranks before b: higher score, then lower index; padding (-1) last. */
static inline bool ranks_before(float as, int32_t ai, float bs, int32_t bi)
{
    if (ai < 0)
        return false;
    if (bi < 0)
        return true;
    if (as != bs)
        return as > bs;
    return ai < bi;
}

static int i32_cmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

sr_err_t sr__cpu_topk(void *ctx, const float *q, int B, const float *table, const float *bias,
                      int d, int first, int V, const int32_t *excl_offsets,
                      const int32_t *excl_items, int k, int32_t *host_idx, float *host_score,
                      struct sr_error *err)
{
    struct sr__cpu *c = ctx;
    if (B < 0 || d <= 0 || k < 0 || first < 0 || V < 0)
        return sr_error_set(err, SR_EINVAL, "cpu topk: bad shape B=%d d=%d k=%d first=%d V=%d",
                            B, d, k, first, V);
    if (B == 0 || k == 0)
        return SR_OK;
    for (size_t i = 0; i < (size_t)B * k; i++) {
        host_idx[i] = -1;
        host_score[i] = -INFINITY;
    }
    if (first >= V)
        return SR_OK;
    if (d >= 1 << 20) /* the error bound above assumes it */
        return sr_error_set(err, SR_EINVAL, "cpu topk: d=%d is 2^20 or more", d);

    int threads = c->threads;
    int n_ex = 0;
    if (excl_offsets) {
        if (excl_offsets[B] < excl_offsets[0])
            return sr_error_set(err, SR_EINVAL, "cpu topk: exclusion offsets decrease");
        for (int b = 0; b < B; b++)
            if (excl_offsets[b + 1] < excl_offsets[b])
                return sr_error_set(err, SR_EINVAL,
                                    "cpu topk: exclusion offsets decrease at session %d", b);
        n_ex = excl_offsets[B] - excl_offsets[0];
    }
    /* the table: pinned (packed at load), else packed now into the context's spare */
    const struct sr__cpu_table *t = table_find(c, table, d, first, V);
    if (!t) {
        struct sr__cpu_table *tmp = &c->topk_tmp;
        int n_panels = (V - first + PW - 1) / PW;
        if ((size_t)n_panels * d * PW > c->topk_tmp_cap || (size_t)n_panels * PW > c->topk_tmp_ncap) {
            free(tmp->panels);
            free(tmp->norm);
            memset(tmp, 0, sizeof *tmp);
            c->topk_tmp_cap = c->topk_tmp_ncap = 0;
            sr_err_t rc = table_init(tmp, table, d, first, V, err);
            if (rc != SR_OK)
                return rc;
            c->topk_tmp_cap = (size_t)n_panels * d * PW;
            c->topk_tmp_ncap = (size_t)n_panels * PW;
        } else {
            tmp->src = table;
            tmp->d = d;
            tmp->first = first;
            tmp->V = V;
            tmp->n_panels = n_panels;
            pack_table(tmp);
        }
        t = tmp;
    }

    size_t lists = (size_t)threads * B * k;
    size_t need = lists * (sizeof(float) + sizeof(int32_t)) + sizeof(float) * (size_t)B +
                  sizeof(int32_t) * ((size_t)B + 1 + (size_t)n_ex);
    if (need > c->topk_cap) {
        void *p = realloc(c->topk_buf, need);
        if (!p)
            return sr_error_set(err, SR_ENOMEM, "cpu topk: out of memory for %zu bytes", need);
        c->topk_buf = p;
        c->topk_cap = need;
    }
    struct topk_job J = {.c = c, .t = t, .q = q, .bias = bias, .B = B, .d = d, .first = first,
                         .V = V, .k = k, .isa = c->gemm_isa};
    J.g = (float)(2.0 * (d + 3) * 0x1p-24);
    J.lscore = c->topk_buf;
    J.lidx = (int32_t *)(J.lscore + lists);
    float *gq = (float *)(J.lidx + lists);
    int32_t *xoff = (int32_t *)(gq + B), *xitem = xoff + B + 1;
    for (size_t i = 0; i < lists; i++) {
        J.lscore[i] = -INFINITY;
        J.lidx[i] = -1;
    }
    for (int b = 0; b < B; b++) {
        double ss = 0;
        for (int x = 0; x < d; x++)
            ss += (double)q[(size_t)b * d + x] * q[(size_t)b * d + x];
        gq[b] = round_up_f((double)J.g * sqrt(ss) * (1 + 0x1p-30));
    }
    /* each query's exclusions inside [first, V), sorted, for a binary search per survivor */
    int nx = 0;
    for (int b = 0; b < B; b++) {
        xoff[b] = nx;
        if (excl_offsets) {
            for (int32_t e = excl_offsets[b]; e < excl_offsets[b + 1]; e++)
                if (excl_items[e] >= first && excl_items[e] < V)
                    xitem[nx++] = excl_items[e];
            qsort(xitem + xoff[b], (size_t)(nx - xoff[b]), sizeof *xitem, i32_cmp);
        }
    }
    xoff[B] = nx;
    J.gq = gq;
    J.xoff = xoff;
    J.xitem = xitem;

    /* tasks of SR_TOPK_TILE items (a multiple of 4 panels), fewer when that leaves a worker idle */
    int tp = SR_TOPK_TILE / PW;
    while (tp > 4 && (t->n_panels + tp - 1) / tp < threads * 4)
        tp /= 2;
    J.tile_panels = tp;
    int n_tasks = (t->n_panels + tp - 1) / tp;
    sr__cpu_parallel(c, n_tasks, topk_task, &J);

    /* merge the per-worker lists */
    for (int b = 0; b < B; b++) {
        int pos[256];
        int nw = threads < 256 ? threads : 256;
        for (int w = 0; w < nw; w++)
            pos[w] = 0;
        for (int r = 0; r < k; r++) {
            int best = -1;
            float bs = -INFINITY;
            int32_t bi = -1;
            for (int w = 0; w < nw; w++) {
                if (pos[w] >= k)
                    continue;
                size_t o = ((size_t)w * B + b) * k + pos[w];
                if (best < 0 || ranks_before(J.lscore[o], J.lidx[o], bs, bi)) {
                    best = w;
                    bs = J.lscore[o];
                    bi = J.lidx[o];
                }
            }
            if (best < 0 || bi < 0)
                break;
            pos[best]++;
            host_idx[(size_t)b * k + r] = bi;
            host_score[(size_t)b * k + r] = bs;
        }
    }
    return SR_OK;
}
