/* cpu_topk.c — exact top-k retrieval on the cpu backend, and the catalogue tables it keeps
 * packed (topk_pin / topk_unpin). Owns c->tables (the pinned, packed tables) and c->topk_buf.
 *
 * Layout. A table's rows first..V-1 are packed once into panels of 16 items (zero rows past
 * V), with an upper bound of each row's Euclidean norm beside it: d-major floats for the FP32
 * screen (panel p, dim x, lane l = item first+16p+l), or groups of 4 signed bytes for the int8
 * screen (panel p, dims 4g..4g+3, lane l) with each row's scale and bound terms. A model pins its
 * table at load (DESIGN §8), so a call only reads panels; a table nobody pinned is packed into
 * scratch on each call. The int8 table is d + 20 bytes per item against the FP32 one's 4·d + 4.
 *
 * Scoring, fused with the running top-k. Queries go 6 at a time (fewer rows over more panels
 * for a batch under 6) through an AVX2+FMA register tile: 6 rows x 16 items, FP32 fused
 * multiply-adds over x = 0..d-1, bias added, and the 96 scores never leave the registers:
 * each is screened against its query's current k-th score and only the rare survivors are
 * looked at one by one (the int8 screen below: 4 rows x 16 items of integer dot products).
 * Workers take tiles of items in increasing order; each keeps a list per
 * query; the lists are merged by (score desc, index asc) at the end. A worker screens against
 * the higher of its own k-th key and the float just below the best k-th key of any worker
 * (screen_thr), so two workers do not each pay the whole warm-up of their lists.
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
 *
 * The int8 screen (AVX2 and up, d <= 2048; the default): the same contract with a cheaper first
 * pass. Item j is stored as s_j (max|e_j|/63) and qe_j = round(e_j/s_j) in [-63, 63], query b
 * as t_b (max|q_b|/127) and qq_b in [-127, 127]; the kernel computes the integer I = qq·qe
 * exactly (|I| <= 127·63·d < 2^24) and f = fl(fl(t·s)·I + bias) in one FMA. With the residuals
 * r = e - s·qe and rho = q - t·qq (computed in double from the actual qe, qq):
 *   q·e = s·t·I + s·(rho·qe) + q·r, so |x - y| <= E = A_j·|rho_b| + |q_b|·|r_j|
 * for y = s·t·I + bias, A_j >= s_j·|qe_j| (Cauchy-Schwarz). The float steps give
 * |f - y| <= 2.01u·Tq_b·A_j + u·|bias_j| + 1.1·FLT_MIN with Tq_b >= t_b·|qq_b| >= |s·t·I|/A_j
 * (t·s may underflow: 2^-150·|I| <= FLT_MIN). The slack, computed in FP32 by two FMAs,
 *   sigma = c1_b·A_j + qn_b·R_j + (2^-21·|bias_j| + 4·FLT_MIN),
 *   c1_b >= (1 + 8u)·|rho_b| + 8u·Tq_b,  qn_b >= (1 + 8u)·|q_b|,  R_j >= |r_j| + 8u·|e_j|,
 * all rounded up where they are made, loses at most three roundings (factor (1-u)^3 >= 1-3u),
 * so sigma >= E + 4.9u·(...) covers E, the float steps and the double chain's 2^-32·S (S <=
 * |q||e| + |bias|): f + sigma >= D, and hi = fl(f + sigma) >= fl(D) = key_j by monotone
 * rounding. The screen is looser than the FP32 one (E is about 2 % of |q||e| on Gaussian
 * data), so its survivors go through the FP32 screen on their source row first (`survivors`),
 * then to the exact key. A row with a non-finite value gets infinite A_j, R_j (its hi is +INF
 * unless its bias is -INF); a non-finite query skips the screen and every item goes to the
 * exact path. tests/kernels/test_cpu_topk.c builds items whose int8 error is 99 % of E: half
 * the slack drops the right answer there.
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
#define I8_MR 4                 /* int8 screen: queries per register tile (5 and 6 measured slower) */


/* ---- packing -------------------------------------------------------------------------------- */

static float round_up_f(double v)
{
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

/* Each row's norm (both screens use it). */
static void pack_norms(struct sr__cpu_table *t)
{
    int64_t n = t->V - t->first, np = (int64_t)t->n_panels * PW;
    for (int64_t i = 0; i < np; i++) {
        const float *row = i < n ? t->src + (size_t)(t->first + i) * t->d : NULL;
        double ss = 0;
        for (int x = 0; row && x < t->d; x++)
            ss += (double)row[x] * row[x];
        /* a double sum of d < 2^20 squares and its sqrt: relative error under 2^-32, covered */
        t->norm[i] = round_up_f(sqrt(ss) * (1 + 0x1p-30));
    }
}

static void pack_f32(struct sr__cpu_table *t)
{
    int n = t->V - t->first, d = t->d;
    for (int p = 0; p < t->n_panels; p++) {
        float *dst = t->panels + (size_t)p * d * PW;
        for (int l = 0; l < PW; l++) {
            int64_t i = (int64_t)p * PW + l;
            const float *row = i < n ? t->src + (size_t)(t->first + i) * d : NULL;
            for (int x = 0; x < d; x++)
                dst[(size_t)x * PW + l] = row ? row[x] : 0.0f;
        }
    }
}

/* The int8 screen's table (see the int8 screen below): per row, s = max|e|/63, qe = round(e/s)
 * clamped to ±63, the residual r = e - s·qe and its bound terms, computed in double from the
 * actual qe, so rounding in s or qe only costs tightness. A row with a non-finite value gets
 * s = 0, qe = 0 and infinite terms: its slack is infinite and it goes to the exact path. */
static void pack_i8(struct sr__cpu_table *t)
{
    int n = t->V - t->first, d = t->d, d4 = (d + 3) / 4;
    memset(t->q8, 0, (size_t)t->n_panels * d4 * PW * 4);
    for (int64_t i = 0; i < (int64_t)t->n_panels * PW; i++) {
        t->s8[i] = t->a8[i] = t->r8[i] = 0.0f;
        t->c8[i] = 0;
        if (i >= n)
            continue;
        const float *row = t->src + (size_t)(t->first + i) * d;
        float mx = 0.0f;
        for (int x = 0; x < d; x++)
            mx = fmaxf(mx, fabsf(row[x]));
        if (!isfinite(mx) || isnan(t->norm[i])) { /* fmaxf skips NaN: the norm carries it */
            t->a8[i] = t->r8[i] = INFINITY;
            continue;
        }
        float s = mx / 63.0f;
        int8_t *q = t->q8 + ((size_t)(i / PW) * d4 * PW + (size_t)(i % PW)) * 4;
        double rr = 0, qq = 0;
        int32_t sum = 0;
        for (int x = 0; x < d; x++) {
            long v = s > 0.0f ? lrintf(row[x] / s) : 0;
            v = v > 63 ? 63 : v < -63 ? -63 : v;
            q[(size_t)(x / 4) * PW * 4 + x % 4] = (int8_t)v;
            double r = (double)row[x] - (double)s * (double)v;
            rr += r * r;
            qq += (double)(v * v);
            sum += (int32_t)v;
        }
        t->s8[i] = s;
        t->a8[i] = round_up_f((double)s * sqrt(qq) * (1 + 0x1p-30));
        t->r8[i] = round_up_f((sqrt(rr) * (1 + 0x1p-30) + 0x1p-21 * (double)t->norm[i]) * (1 + 0x1p-30));
        t->c8[i] = 128 * sum;
    }
}

static void table_free(struct sr__cpu_table *t)
{
    free(t->norm);
    free(t->panels);
    free(t->q8);
    free(t->s8);
    free(t->a8);
    free(t->r8);
    free(t->c8);
    memset(t, 0, sizeof *t);
}

/* Grows *p to n bytes (64-aligned, contents dropped) unless *cap already holds n. */
static bool grow(void **p, size_t *cap, size_t n)
{
    if (n <= *cap && *p)
        return true;
    free(*p);
    *p = aligned_alloc(64, n ? (n + 63) / 64 * 64 : 64);
    *cap = *p ? n : 0;
    return *p != NULL;
}

/* Makes t's layout for `screen` current: allocates what is missing and packs from src. `fresh`:
 * src's contents may have changed since the last call (an unpinned table: packed each call). */
static sr_err_t table_ready(struct sr__cpu_table *t, int screen, bool fresh, struct sr_error *err)
{
    if (fresh)
        t->have_f32 = t->have_i8 = false;
    bool norms = !t->have_f32 && !t->have_i8;
    if ((screen == SR__CPU_SCREEN_INT8 && t->have_i8) || (screen == SR__CPU_SCREEN_FP32 && t->have_f32))
        return SR_OK;
    size_t items = (size_t)t->n_panels * PW, d4 = (size_t)(t->d + 3) / 4;
    size_t ci = t->cap_items, cf = t->cap_f32 * sizeof(float);
    bool ok = true;
    if (items > t->cap_items) {
        void **v[] = {(void **)&t->norm, (void **)&t->s8, (void **)&t->a8, (void **)&t->r8,
                      (void **)&t->c8};
        for (size_t i = 0; i < sizeof v / sizeof *v && ok; i++) {
            size_t c = ci * sizeof(float);
            ok = grow(v[i], &c, items * sizeof(float));
        }
        t->cap_items = ok ? items : 0;
        t->have_f32 = t->have_i8 = false;
        norms = true;
    }
    if (ok && screen == SR__CPU_SCREEN_FP32) {
        ok = grow((void **)&t->panels, &cf, items * (size_t)t->d * sizeof(float));
        t->cap_f32 = cf / sizeof(float);
    } else if (ok) {
        ok = grow((void **)&t->q8, &t->cap_q8, items * d4 * 4);
    }
    if (!ok) {
        int V = t->V, first = t->first, d = t->d;
        table_free(t);
        return sr_error_set(err, SR_ENOMEM, "cpu topk: out of memory packing a %d x %d table",
                            V - first, d);
    }
    if (norms)
        pack_norms(t);
    if (screen == SR__CPU_SCREEN_FP32) {
        pack_f32(t);
        t->have_f32 = true;
    } else {
        pack_i8(t);
        t->have_i8 = true;
    }
    return SR_OK;
}

/* The screen a call of d dimensions uses on c. */
static int screen_of(const struct sr__cpu *c, int d)
{
#ifdef SR_TOPK_X86
    /* |qq·qe| <= 127·63·d must stay below 2^24 (exact as a float): d <= 2096 */
    if (c->topk_screen == SR__CPU_SCREEN_INT8 && c->gemm_isa >= SR__CPU_ISA_AVX2 && d <= 2048)
        return SR__CPU_SCREEN_INT8;
#else
    (void)c, (void)d;
#endif
    return SR__CPU_SCREEN_FP32;
}

int sr__cpu_topk_set_screen(void *ctx, int screen)
{
    struct sr__cpu *c = ctx;
    int prev = c->topk_screen;
    if (screen == SR__CPU_SCREEN_FP32 || screen == SR__CPU_SCREEN_INT8)
        c->topk_screen = screen;
    return prev;
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
    *t = (struct sr__cpu_table){.src = table, .d = d, .first = first, .V = V,
                                .n_panels = (V - first + PW - 1) / PW};
    sr_err_t rc = table_ready(t, screen_of(c, d), true, err);
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
    table_free(t);
    *t = c->tables[--c->n_tables];
}

void sr__cpu_topk_free(struct sr__cpu *c)
{
    for (int i = 0; i < c->n_tables; i++)
        table_free(&c->tables[i]);
    free(c->tables);
    table_free(&c->topk_tmp);
    free(c->topk_buf);
}

/* ---- the job -------------------------------------------------------------------------------- */

struct topk_job {
    struct sr__cpu *c;
    const struct sr__cpu_table *t;
    const float *q, *bias;
    int B, d, first, V, k, tile_panels, isa, screen;
    float g;                    /* FP32 screen: slack factor 2(d+3)u */
    const float *gq;            /* FP32 screen: [B] g·|q_b| rounded up */
    int d4;                     /* int8 screen: groups of 4 dimensions */
    const uint8_t *qu8;         /* [B][d4·4]: qq + 128 */
    const float *qt, *qc1, *qqn;/* [B]: t_b; its coefficients of A_j and R_j (rounded up) */
    const int32_t *xoff, *xitem;/* per query: its exclusions in [first, V), sorted */
    float *lscore;              /* [threads][B][k] */
    uint32_t *shared;           /* [B] or NULL (one worker): bits of the float just below the
                                 * highest k-th key any worker's list holds (see screen_thr) */
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

/* The threshold query b's screen compares with on worker w: its own list's k-th key, or, when
 * higher, the float just below another worker's k-th key. The answer's k-th key is at least
 * any worker's, so an item under it is in no answer; one equal to it may be (ties go to the
 * lower index), hence "just below". With one worker there is no other list (shared is NULL). */
static inline float screen_thr(const struct topk_job *J, int b, float own)
{
    if (!J->shared)
        return own;
    uint32_t u = __atomic_load_n(&J->shared[b], __ATOMIC_RELAXED);
    float f;
    memcpy(&f, &u, sizeof f);
    return f > own ? f : own;
}

/* Raises query b's shared threshold to just below k-th key t (a CAS loop: a float max). */
static void publish(const struct topk_job *J, int b, float t)
{
    if (!J->shared || !(t > -INFINITY))
        return;
    float v = nextafterf(t, -INFINITY), cur;
    uint32_t nu, u = __atomic_load_n(&J->shared[b], __ATOMIC_RELAXED);
    memcpy(&nu, &v, sizeof nu);
    do {
        memcpy(&cur, &u, sizeof cur);
        if (!(v > cur))
            return;
    } while (!__atomic_compare_exchange_n(&J->shared[b], &u, nu, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

/* Item j passed query b's screen: unless excluded, its exact key enters the list if it beats
 * the k-th (ties: j is the newcomer with the higher index and loses). Returns the new screen
 * threshold (screen_thr). */
static float offer(const struct topk_job *J, float *sc, int32_t *ix, int b, int32_t j)
{
    int k = J->k;
    if (J->xoff[b + 1] > J->xoff[b] && excluded(J, b, j))
        return screen_thr(J, b, sc[k - 1]);
    float s = exact_key(J, b, j);
    if (!(s > sc[k - 1]))
        return screen_thr(J, b, sc[k - 1]);
    int p = k - 1;
    while (p > 0 && sc[p - 1] < s) {
        sc[p] = sc[p - 1];
        ix[p] = ix[p - 1];
        p--;
    }
    sc[p] = s;
    ix[p] = j;
    publish(J, b, sc[k - 1]);
    return screen_thr(J, b, sc[k - 1]);
}

/* Screens the FP32 scores f[0..n) of items j0.. for query b (hi = f + slack > k-th key). */
static void screen_scalar(const struct topk_job *J, int w, int b, int64_t j0, const float *f,
                          int n)
{
    float *sc = J->lscore + ((size_t)w * J->B + b) * J->k;
    int32_t *ix = J->lidx + ((size_t)w * J->B + b) * J->k;
    const float *ne = J->t->norm + (j0 - J->first);
    float thr = screen_thr(J, b, sc[J->k - 1]), gq = J->gq[b];
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
/* The int8 screen's survivors m (bit l: item j0 + l) for query b: the FP32 screen again, on the
 * FP32 score of the source row (a sum of the same d + 1 terms in another order, which the FP32
 * bound above covers), before the double-precision key. The int8 bound is looser, and without
 * this second screen its extra survivors would each cost the exact key's serial chain. */
__attribute__((target("avx2,fma"), noinline)) static void survivors(const struct topk_job *J,
                                                                     int w, int b, int64_t j0,
                                                                     unsigned m)
{
    float *sc = J->lscore + ((size_t)w * J->B + b) * J->k;
    int32_t *ix = J->lidx + ((size_t)w * J->B + b) * J->k;
    const int d = J->d;
    const float *q = J->q + (size_t)b * d;
    float thr = screen_thr(J, b, sc[J->k - 1]);
    while (m) {
        int l = __builtin_ctz(m);
        m &= m - 1;
        int64_t j = j0 + l;
        const float *e = J->t->src + (size_t)j * d;
        __m256 v = _mm256_setzero_ps();
        int x = 0;
        for (; x + 8 <= d; x += 8)
            v = _mm256_fmadd_ps(_mm256_loadu_ps(q + x), _mm256_loadu_ps(e + x), v);
        float lane[8];
        _mm256_storeu_ps(lane, v);
        float f = J->bias ? J->bias[j] : 0.0f;
        for (; x < d; x++)
            f = fmaf(q[x], e[x], f);
        for (int i = 0; i < 8; i++)
            f += lane[i];
        float bj = J->bias ? J->bias[j] : 0.0f;
        float hi = f + (J->gq[b] * J->t->norm[j - J->first] + (J->g * fabsf(bj) + FLT_MIN));
        if (hi > thr)
            thr = offer(J, sc, ix, b, (int32_t)j);
    }
}

/* MR queries (rows b0..) x NP panels (p..p+NP-1) in registers, then the screen. */
#define AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

/* The biases of the panel's items j0..j0+15 (zero past V, or without a bias), in two halves. */
AVX2 void panel_bias(const struct topk_job *J, int64_t j0, int n_valid, __m256 *b0, __m256 *b1)
{
    if (J->bias && n_valid == PW) {
        *b0 = _mm256_loadu_ps(J->bias + j0);
        *b1 = _mm256_loadu_ps(J->bias + j0 + 8);
    } else if (J->bias) {
        float tmp[PW] = {0};
        memcpy(tmp, J->bias + j0, sizeof(float) * n_valid);
        *b0 = _mm256_loadu_ps(tmp);
        *b1 = _mm256_loadu_ps(tmp + 8);
    } else {
        *b0 = *b1 = _mm256_setzero_ps();
    }
}
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
        for (int h = 0; h < 2; h++)
            ne[h] = _mm256_load_ps(J->t->norm + (j0 - J->first) + 8 * h);
        panel_bias(J, j0, n_valid, &bias[0], &bias[1]);
        for (int h = 0; h < 2; h++)
            slack0[h] = _mm256_fmadd_ps(g, _mm256_and_ps(bias[h], absm), tiny);
        unsigned valid = n_valid == PW ? 0xffffu : (1u << n_valid) - 1;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            int b = b0 + i;
            float *sc = J->lscore + ((size_t)w * J->B + b) * J->k;
            float thr = screen_thr(J, b, sc[J->k - 1]);
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

/* The int8 screen: MR queries (rows b0..) x NP panels, integer dot products in registers
 * (vpmaddubsw: unsigned query bytes qq+128 times signed item bytes, pairs summed to int16 —
 * 255·63·2 < 2^15, no saturation — then vpmaddwd by ones to int32), then the screen. */
AVX2 void tile_i8_rp(const struct topk_job *J, int w, int b0, int p, const int MR, const int NP)
{
    const int d4 = J->d4;
    const size_t pstride = (size_t)d4 * PW * 4;
    __m256i acc[I8_MR][8];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int n = 0; n < 2 * NP; n++)
            acc[i][n] = _mm256_setzero_si256();
    const int8_t *P = J->t->q8 + (size_t)p * pstride;
    const uint8_t *q = J->qu8 + (size_t)b0 * d4 * 4;
    const __m256i ones = _mm256_set1_epi16(1);
    if (2 * NP <= MR) {
        for (int g = 0; g < d4; g++) {
            __m256i e[8];
#pragma GCC unroll 8
            for (int n = 0; n < 2 * NP; n++)
                e[n] = _mm256_load_si256((const __m256i *)(P + (size_t)(n / 2) * pstride +
                                                           (size_t)g * PW * 4 + (n % 2) * 32));
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                int32_t qv;
                memcpy(&qv, q + ((size_t)i * d4 + g) * 4, 4);
                __m256i a = _mm256_set1_epi32(qv);
#pragma GCC unroll 8
                for (int n = 0; n < 2 * NP; n++)
                    acc[i][n] = _mm256_add_epi32(acc[i][n],
                                                 _mm256_madd_epi16(_mm256_maddubs_epi16(a, e[n]), ones));
            }
        }
    } else {
        for (int g = 0; g < d4; g++) {
            __m256i a[I8_MR];
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                int32_t qv;
                memcpy(&qv, q + ((size_t)i * d4 + g) * 4, 4);
                a[i] = _mm256_set1_epi32(qv);
            }
#pragma GCC unroll 8
            for (int n = 0; n < 2 * NP; n++) {
                __m256i e = _mm256_load_si256((const __m256i *)(P + (size_t)(n / 2) * pstride +
                                                                (size_t)g * PW * 4 + (n % 2) * 32));
#pragma GCC unroll 6
                for (int i = 0; i < MR; i++)
                    acc[i][n] = _mm256_add_epi32(acc[i][n],
                                                 _mm256_madd_epi16(_mm256_maddubs_epi16(a[i], e), ones));
            }
        }
    }
    const __m256 g8 = _mm256_set1_ps(0x1p-21f), tiny = _mm256_set1_ps(4 * FLT_MIN);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
#pragma GCC unroll 4
    for (int np = 0; np < NP; np++) {
        int64_t j0 = (int64_t)J->first + (int64_t)(p + np) * PW;
        size_t o = (size_t)(j0 - J->first);
        int n_valid = J->V - j0 < PW ? (int)(J->V - j0) : PW;
        const struct sr__cpu_table *t = J->t;
        __m256 s0 = _mm256_load_ps(t->s8 + o), s1 = _mm256_load_ps(t->s8 + o + 8);
        __m256 a0 = _mm256_load_ps(t->a8 + o), a1 = _mm256_load_ps(t->a8 + o + 8);
        __m256 r0 = _mm256_load_ps(t->r8 + o), r1 = _mm256_load_ps(t->r8 + o + 8);
        __m256i c0 = _mm256_load_si256((const __m256i *)(t->c8 + o));
        __m256i c1i = _mm256_load_si256((const __m256i *)(t->c8 + o + 8));
        __m256 b0v, b1v;
        panel_bias(J, j0, n_valid, &b0v, &b1v);
        __m256 z0 = _mm256_fmadd_ps(g8, _mm256_and_ps(b0v, absm), tiny);
        __m256 z1 = _mm256_fmadd_ps(g8, _mm256_and_ps(b1v, absm), tiny);
        unsigned valid = n_valid == PW ? 0xffffu : (1u << n_valid) - 1;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            int b = b0 + i;
            float *sc = J->lscore + ((size_t)w * J->B + b) * J->k;
            float thr = screen_thr(J, b, sc[J->k - 1]);
            __m256 vt = _mm256_set1_ps(thr), tq = _mm256_broadcast_ss(J->qt + b);
            __m256 k1 = _mm256_broadcast_ss(J->qc1 + b), qn = _mm256_broadcast_ss(J->qqn + b);
            __m256 f0 = _mm256_fmadd_ps(_mm256_mul_ps(tq, s0),
                                        _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][2 * np], c0)), b0v);
            __m256 f1 = _mm256_fmadd_ps(_mm256_mul_ps(tq, s1),
                                        _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][2 * np + 1], c1i)), b1v);
            __m256 h0 = _mm256_add_ps(f0, _mm256_fmadd_ps(qn, r0, _mm256_fmadd_ps(k1, a0, z0)));
            __m256 h1 = _mm256_add_ps(f1, _mm256_fmadd_ps(qn, r1, _mm256_fmadd_ps(k1, a1, z1)));
            unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(h0, vt, _CMP_GT_OQ)) |
                         (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(h1, vt, _CMP_GT_OQ)) << 8;
            m &= valid;
            if (__builtin_expect(m != 0, 0))
                survivors(J, w, b, j0, m);
        }
    }
}

__attribute__((target("avx2,fma"))) static void tile_i8(const struct topk_job *J, int w, int p0,
                                                         int p1)
{
    int b0 = 0;
    if (J->B < 4) { /* more panels per pass to keep 6-8 accumulators in flight */
        int np = J->B == 1 ? 4 : J->B == 2 ? 2 : 1;
        int p = p0;
        for (; p + np <= p1; p += np)
            switch (J->B) {
            case 1: tile_i8_rp(J, w, 0, p, 1, 4); break;
            case 2: tile_i8_rp(J, w, 0, p, 2, 2); break;
            default: tile_i8_rp(J, w, 0, p, 3, 1); break;
            }
        for (; p < p1; p++)
            switch (J->B) {
            case 1: tile_i8_rp(J, w, 0, p, 1, 1); break;
            default: tile_i8_rp(J, w, 0, p, 2, 1); break;
            }
        return;
    }
    for (; b0 + I8_MR <= J->B; b0 += I8_MR)
        for (int p = p0; p < p1; p++)
            tile_i8_rp(J, w, b0, p, I8_MR, 1);
    int r = J->B - b0; /* 0 to I8_MR - 1 */
    for (int p = p0; r && p < p1; p++)
        switch (r) {
        case 1: tile_i8_rp(J, w, b0, p, 1, 1); break;
        case 2: tile_i8_rp(J, w, b0, p, 2, 1); break;
        default: tile_i8_rp(J, w, b0, p, 3, 1); break;
        }
}
#endif

static void topk_task(void *arg, int t, int w)
{
    struct topk_job *J = arg;
    int p0 = t * J->tile_panels;
    int p1 = p0 + J->tile_panels < J->t->n_panels ? p0 + J->tile_panels : J->t->n_panels;
#ifdef SR_TOPK_X86
    if (J->screen == SR__CPU_SCREEN_INT8) {
        tile_i8(J, w, p0, p1);
        return;
    }
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
    int screen = screen_of(c, d);
    struct sr__cpu_table *t = table_find(c, table, d, first, V);
    sr_err_t rc;
    if (t) {
        rc = table_ready(t, screen, false, err); /* a screen nobody packed yet (tests switch) */
    } else {
        t = &c->topk_tmp;
        t->src = table;
        t->d = d;
        t->first = first;
        t->V = V;
        t->n_panels = (V - first + PW - 1) / PW;
        rc = table_ready(t, screen, true, err);
    }
    if (rc != SR_OK)
        return rc;

    int d4 = (d + 3) / 4;
    size_t lists = (size_t)threads * B * k;
    size_t need = lists * (sizeof(float) + sizeof(int32_t)) + sizeof(float) * 5 * (size_t)B +
                  sizeof(int32_t) * ((size_t)B + 1 + (size_t)n_ex) + (size_t)B * (d4 * 4 + 1);
    if (need > c->topk_cap) {
        void *p = realloc(c->topk_buf, need);
        if (!p)
            return sr_error_set(err, SR_ENOMEM, "cpu topk: out of memory for %zu bytes", need);
        c->topk_buf = p;
        c->topk_cap = need;
    }
    struct topk_job J = {.c = c, .t = t, .q = q, .bias = bias, .B = B, .d = d, .first = first,
                         .V = V, .k = k, .isa = c->gemm_isa, .screen = screen, .d4 = d4};
    J.g = (float)(2.0 * (d + 3) * 0x1p-24);
    J.lscore = c->topk_buf;
    J.lidx = (int32_t *)(J.lscore + lists);
    float *gq = (float *)(J.lidx + lists), *qt = gq + B, *qc1 = qt + B, *qqn = qc1 + B;
    uint32_t *shared = (uint32_t *)(qqn + B);
    int32_t *xoff = (int32_t *)(shared + B), *xitem = xoff + B + 1;
    uint8_t *qu8 = (uint8_t *)(xitem + n_ex), *qall = qu8 + (size_t)B * d4 * 4;
    for (size_t i = 0; i < lists; i++) {
        J.lscore[i] = -INFINITY;
        J.lidx[i] = -1;
    }
    if (threads > 1) {
        float ninf = -INFINITY;
        for (int b = 0; b < B; b++)
            memcpy(&shared[b], &ninf, sizeof ninf);
        J.shared = shared;
    }
    for (int b = 0; b < B; b++) {
        const float *qb = q + (size_t)b * d;
        double ss = 0;
        float mx = 0.0f;
        for (int x = 0; x < d; x++) {
            ss += (double)qb[x] * qb[x];
            mx = fmaxf(mx, fabsf(qb[x]));
        }
        gq[b] = round_up_f((double)J.g * sqrt(ss) * (1 + 0x1p-30));
        if (screen != SR__CPU_SCREEN_INT8)
            continue;
        /* the query in 8 bits: t = max|q|/127, qq = round(q/t) clamped to ±127, stored as
         * qq + 128 (padding dimensions 128: their item bytes are 0); the residual
         * rho = q - t·qq in double, from the actual qq */
        uint8_t *u = qu8 + (size_t)b * d4 * 4;
        memset(u, 128, (size_t)d4 * 4);
        qall[b] = !isfinite(mx);
        float tb = qall[b] ? 0.0f : mx / 127.0f;
        double rr = 0, sq = 0;
        for (int x = 0; x < d; x++) {
            long v = tb > 0.0f ? lrintf(qb[x] / tb) : 0;
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            u[x] = (uint8_t)(v + 128);
            double r = (double)qb[x] - (double)tb * (double)v;
            rr += r * r;
            sq += (double)(v * v);
        }
        double rho = sqrt(rr) * (1 + 0x1p-30), tq = (double)tb * sqrt(sq) * (1 + 0x1p-30);
        double qn = sqrt(ss) * (1 + 0x1p-30);
        qt[b] = tb;
        qc1[b] = round_up_f((rho * (1 + 0x1p-21) + 0x1p-21 * tq) * (1 + 0x1p-30));
        qqn[b] = round_up_f(qn * (1 + 0x1p-21) * (1 + 0x1p-30));
        if (qall[b]) /* the screen passes nothing (-INF or NaN); the scan below does it all */
            qc1[b] = qqn[b] = -INFINITY;
    }
    J.qu8 = qu8;
    J.qt = qt;
    J.qc1 = qc1;
    J.qqn = qqn;
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
    /* a non-finite query under the int8 screen: every item to the exact path (worker 0's list) */
    for (int b = 0; screen == SR__CPU_SCREEN_INT8 && b < B; b++)
        for (int32_t j = first; qall[b] && j < V; j++)
            offer(&J, J.lscore + (size_t)b * k, J.lidx + (size_t)b * k, b, j);

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
