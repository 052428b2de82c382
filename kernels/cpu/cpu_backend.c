/* cpu_backend.c — the `cpu` backend: fills struct sr_backend_iface with host-memory kernels.
 * Owns a small thread pool (the caller plus threads-1 workers) used by the GEMMs (cpu_gemm.c,
 * blocks of rows), the row-parallel element-wise ops, attention (one task per session) and
 * top-k (cpu_topk.c: packed panels, fused screen, exact re-scoring). Every op computes a row of a session the same way
 * wherever the row sits in the batch, so encodings do not depend on the batch (DESIGN §8).
 * OpenBLAS is set to one thread (a process-wide setting) and runs inside the pool's tasks, so
 * no second set of spinning threads competes for cores. Backend memory is ordinary host
 * memory, so upload/download are copies and every call completes before it returns.
 * Thread: one caller at a time (the compute worker); workers run only tasks it hands out. */
#include "cpu_int.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Below this many scalars an element-wise op runs on the caller alone. */
#define SR_CPU_PAR_MIN 32768

/* ---- thread pool ------------------------------------------------------------------------ */

struct worker_arg {
    struct sr__cpu *c;
    int w;
};

static void run_tasks_locked(struct sr__cpu *c, int w)
{
    while (c->next_task < c->n_tasks) {
        int t = c->next_task++;
        sr__cpu_task_fn fn = c->fn;
        void *arg = c->arg;
        pthread_mutex_unlock(&c->mu);
        fn(arg, t, w);
        pthread_mutex_lock(&c->mu);
    }
}

static void *worker_main(void *p)
{
    struct worker_arg *wa = p;
    struct sr__cpu *c = wa->c;
    uint64_t seen = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && c->generation == seen)
            pthread_cond_wait(&c->cv_work, &c->mu);
        if (c->stop)
            break;
        seen = c->generation;
        run_tasks_locked(c, wa->w);
        if (--c->busy == 0)
            pthread_cond_signal(&c->cv_done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void sr__cpu_parallel(struct sr__cpu *c, int n_tasks, sr__cpu_task_fn fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (c->threads <= 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->fn = fn;
    c->arg = arg;
    c->n_tasks = n_tasks;
    c->next_task = 0;
    c->busy = c->threads - 1;
    c->generation++;
    pthread_cond_broadcast(&c->cv_work);
    run_tasks_locked(c, 0);
    while (c->busy > 0)
        pthread_cond_wait(&c->cv_done, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

float *sr__cpu_scratch(struct sr__cpu *c, int w, size_t bytes)
{
    if (bytes <= c->wscratch_cap[w])
        return c->wscratch[w];
    size_t cap = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, cap);
    if (!p)
        return NULL;
    free(c->wscratch[w]);
    c->wscratch[w] = p;
    c->wscratch_cap[w] = cap;
    return p;
}

/* ---- memory ----------------------------------------------------------------------------- */

static void cpu_destroy(void *ctx)
{
    struct sr__cpu *c = ctx;
    if (!c)
        return;
    if (c->tids) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_broadcast(&c->cv_work);
        pthread_mutex_unlock(&c->mu);
        for (int i = 0; i < c->threads - 1; i++)
            pthread_join(c->tids[i], NULL);
        free(c->tids);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv_work);
    pthread_cond_destroy(&c->cv_done);
    for (int i = 0; c->wscratch && i < c->threads; i++) /* NULL when its calloc failed */
        free(c->wscratch[i]);
    free(c->wscratch);
    free(c->wscratch_cap);
    sr__cpu_topk_free(c);
    free(c->gru_panels);
    free(c->gemm_pack);
    free(c->wargs);
    free(c);
}

static const char *cpu_describe(void *ctx) { return ((struct sr__cpu *)ctx)->desc; }

static void *cpu_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    size_t cap = bytes ? (bytes + 63) & ~(size_t)63 : 64;
    return aligned_alloc(64, cap);
}

static void cpu_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static sr_err_t cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, struct sr_error *err)
{
    (void)ctx;
    (void)err;
    if (bytes)
        memmove(dst, src, bytes);
    return SR_OK;
}

/* ---- row-parallel helper ------------------------------------------------------------------ */

/* Splits n rows into chunks for the pool when the op is large enough. */
struct rows_job {
    void (*fn)(struct rows_job *j, int r0, int r1);
    int n, chunk;
    const float *a, *b, *c;
    float *out;
    int d;
    float eps;
    sr_act_t act;
    const int32_t *idx, *idx2;
};

static void rows_task(void *arg, int t, int w)
{
    (void)w;
    struct rows_job *j = arg;
    int r0 = t * j->chunk, r1 = r0 + j->chunk;
    if (r1 > j->n)
        r1 = j->n;
    j->fn(j, r0, r1);
}

static void rows_run(struct sr__cpu *c, struct rows_job *j, size_t work)
{
    int tasks = 1;
    if (work >= SR_CPU_PAR_MIN && c->threads > 1 && j->n > 1)
        tasks = j->n < c->threads * 4 ? j->n : c->threads * 4;
    j->chunk = (j->n + tasks - 1) / tasks;
    if (j->chunk == 0)
        return;
    tasks = (j->n + j->chunk - 1) / j->chunk;
    sr__cpu_parallel(c, tasks, rows_task, j);
}

/* ---- embed, layer norm, activations, add, gather ----------------------------------------- */

static void embed_rows(struct rows_job *j, int r0, int r1)
{
    int d = j->d;
    for (int i = r0; i < r1; i++) {
        const float *e = j->a + (size_t)j->idx[i] * d;
        float *o = j->out + (size_t)i * d;
        if (j->b) {
            const float *p = j->b + (size_t)j->idx2[i] * d;
            for (int x = 0; x < d; x++)
                o[x] = e[x] + p[x];
        } else {
            memcpy(o, e, sizeof(float) * d);
        }
    }
}

static sr_err_t cpu_embed(void *ctx, const float *table, const float *pos_table,
                          const int32_t *items, const int32_t *pos, int n, int d, float *out,
                          struct sr_error *err)
{
    (void)err;
    struct rows_job j = {.fn = embed_rows, .n = n, .a = table, .b = pos_table, .out = out,
                         .d = d, .idx = items, .idx2 = pos};
    rows_run(ctx, &j, (size_t)n * d);
    return SR_OK;
}

static inline float v4_hsum(v4f v) { return (v[0] + v[1]) + (v[2] + v[3]); }

static void ln_rows(struct rows_job *j, int r0, int r1)
{
    int d = j->d, d4 = d & ~3;
    const float *g = j->b, *be = j->c;
    for (int i = r0; i < r1; i++) {
        const float *x = j->a + (size_t)i * d;
        float *o = j->out + (size_t)i * d;
        v4f acc = v4_splat(0.f);
        for (int k = 0; k < d4; k += 4)
            acc += v4_load(x + k);
        float s = v4_hsum(acc);
        for (int k = d4; k < d; k++)
            s += x[k];
        float mean = s / (float)d;
        v4f vm = v4_splat(mean);
        acc = v4_splat(0.f);
        for (int k = 0; k < d4; k += 4) {
            v4f t = v4_load(x + k) - vm;
            acc += t * t;
        }
        float v = v4_hsum(acc);
        for (int k = d4; k < d; k++)
            v += (x[k] - mean) * (x[k] - mean);
        float rstd = 1.0f / sqrtf(v / (float)d + j->eps);
        v4f vr = v4_splat(rstd);
        for (int k = 0; k < d4; k += 4)
            v4_store(o + k, (v4_load(x + k) - vm) * vr * v4_load(g + k) + v4_load(be + k));
        for (int k = d4; k < d; k++)
            o[k] = (x[k] - mean) * rstd * g[k] + be[k];
    }
}

static sr_err_t cpu_layer_norm(void *ctx, const float *x, const float *gamma, const float *beta,
                               int n, int d, float eps, float *out, struct sr_error *err)
{
    (void)err;
    struct rows_job j = {.fn = ln_rows, .n = n, .a = x, .b = gamma, .c = beta, .out = out,
                         .d = d, .eps = eps};
    rows_run(ctx, &j, (size_t)n * d * 3);
    return SR_OK;
}

/* Transcendental row kernels: a portable 4-wide build, an AVX2+FMA 8-wide and an AVX-512
 * 16-wide build of the same template, chosen once at backend creation (same machine, same path,
 * same bytes; the element-wise kernels give the same bits at every width). */
#define VM_W 4
#define VM_R 2
#define VM_SUF sse
#define VM_ATTR
#include "cpu_vecmath.h"
#undef VM_R
#undef VM_W
#undef VM_SUF
#undef VM_ATTR
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SR_CPU_HAVE_AVX2 1
#include <immintrin.h>
#define VM_W 8
#define VM_R 2
#define VM_SUF avx2
#define VM_ATTR __attribute__((target("avx2,fma")))
#include "cpu_vecmath.h"
#undef VM_R
#undef VM_W
#undef VM_SUF
#undef VM_ATTR
#define VM_W 16
#define VM_R 4 /* 16 accumulators of the 32 registers */
#define VM_SUF avx512
#define VM_ATTR __attribute__((target("avx512f,avx2,fma")))
#include "cpu_vecmath.h"
#undef VM_R
#undef VM_W
#undef VM_SUF
#undef VM_ATTR
#endif

/* Set once (pthread_once) before any backend runs: */
static bool cpu_wide;    /* AVX2+FMA present */
static bool cpu_wide512; /* and AVX-512F */
static pthread_once_t cpu_wide_once = PTHREAD_ONCE_INIT;

static void cpu_detect(void)
{
#ifdef SR_CPU_HAVE_AVX2
    __builtin_cpu_init();
    cpu_wide = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    cpu_wide512 = cpu_wide && __builtin_cpu_supports("avx512f");
#endif
}

/* Scalar tails go through one padded portable vector: the same formulas as the bodies. */
static inline float s_tanh(float u) { return tanh_sse(splat_sse(u))[0]; }
static inline float s_exp(float x) { return exp_sse(splat_sse(x))[0]; }
static inline float s_sigmoid(float x) { return sigmoid_sse(splat_sse(x))[0]; }

static void gelu_tanh_row(float *x, int d)
{
    int k = 0;
#ifdef SR_CPU_HAVE_AVX2
    if (cpu_wide512)
        k = gelu_tanh_row_avx512(x, d, k);
    if (cpu_wide)
        k = gelu_tanh_row_avx2(x, d, k);
#endif
    k = gelu_tanh_row_sse(x, d, k);
    const float k0 = 0.7978845608028654f;
    for (; k < d; k++) {
        float v = x[k];
        x[k] = 0.5f * v * (1.0f + s_tanh(k0 * (v + 0.044715f * v * v * v)));
    }
}

static void bias_act_rows(struct rows_job *j, int r0, int r1)
{
    int d = j->d;
    const float *bias = j->a;
    for (int i = r0; i < r1; i++) {
        float *x = j->out + (size_t)i * d;
        if (bias) {
            int k = 0;
            for (; k + 4 <= d; k += 4)
                v4_store(x + k, v4_load(x + k) + v4_load(bias + k));
            for (; k < d; k++)
                x[k] += bias[k];
        }
        switch (j->act) {
        case SR_ACT_NONE:
            break;
        case SR_ACT_GELU_TANH:
            gelu_tanh_row(x, d);
            break;
        case SR_ACT_GELU_ERF:
            for (int k = 0; k < d; k++) {
                float v = x[k];
                x[k] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
            }
            break;
        case SR_ACT_RELU: {
            int k = 0;
            for (; k + 4 <= d; k += 4)
                v4_store(x + k, v4_max(v4_load(x + k), v4_splat(0.f)));
            for (; k < d; k++)
                x[k] = x[k] > 0.f ? x[k] : 0.f;
            break;
        }
        }
    }
}

static sr_err_t cpu_bias_act(void *ctx, float *x, const float *bias, int n, int d, sr_act_t act,
                             struct sr_error *err)
{
    if (act < SR_ACT_NONE || act > SR_ACT_RELU)
        return sr_error_set(err, SR_EINVAL, "cpu bias_act: unknown activation %d", (int)act);
    if (!bias && act == SR_ACT_NONE)
        return SR_OK;
    struct rows_job j = {.fn = bias_act_rows, .n = n, .a = bias, .out = x, .d = d, .act = act};
    rows_run(ctx, &j, (size_t)n * d * (act == SR_ACT_NONE || act == SR_ACT_RELU ? 1 : 8));
    return SR_OK;
}

static void add_rows(struct rows_job *j, int r0, int r1)
{
    /* a "row" here is a block of 4096 scalars; the caller adds the tail */
    size_t lo = (size_t)r0 * 4096, hi = (size_t)r1 * 4096;
    float *x = j->out;
    const float *y = j->a;
    for (size_t i = lo; i < hi; i++)
        x[i] += y[i];
}

static sr_err_t cpu_add(void *ctx, float *x, const float *y, size_t n, struct sr_error *err)
{
    (void)err;
    size_t blocks = n / 4096;
    if (blocks) {
        struct rows_job j = {.fn = add_rows, .n = (int)blocks, .a = y, .out = x};
        rows_run(ctx, &j, blocks * 4096);
    }
    for (size_t i = blocks * 4096; i < n; i++)
        x[i] += y[i];
    return SR_OK;
}

static void gather_rows_fn(struct rows_job *j, int r0, int r1)
{
    int d = j->d;
    for (int i = r0; i < r1; i++)
        memmove(j->out + (size_t)i * d, j->a + (size_t)j->idx[i] * d, sizeof(float) * d);
}

static sr_err_t cpu_gather_rows(void *ctx, const float *src, const int32_t *rows, int n, int d,
                                float *out, struct sr_error *err)
{
    (void)err;
    struct rows_job j = {.fn = gather_rows_fn, .n = n, .a = src, .out = out, .d = d, .idx = rows};
    rows_run(ctx, &j, (size_t)n * d);
    return SR_OK;
}

/* ---- GRU gates ---------------------------------------------------------------------------- */

static void gru_rows(struct rows_job *j, int r0, int r1)
{
    int H = j->d;
    for (int i = r0; i < r1; i++) {
        const float *gi = j->a + (size_t)i * 3 * H, *gh = j->b + (size_t)i * 3 * H;
        float *h = j->out + (size_t)i * H;
        int k = 0;
#ifdef SR_CPU_HAVE_AVX2
        if (cpu_wide512)
            k = gru_row_avx512(gi, gh, h, H, k);
        if (cpu_wide)
            k = gru_row_avx2(gi, gh, h, H, k);
#endif
        k = gru_row_sse(gi, gh, h, H, k);
        for (; k < H; k++) {
            float r = s_sigmoid(gi[k] + gh[k]);
            float z = s_sigmoid(gi[H + k] + gh[H + k]);
            float c = s_tanh(gi[2 * H + k] + r * gh[2 * H + k]);
            h[k] = (1.0f - z) * c + z * h[k];
        }
    }
}

static sr_err_t cpu_gru_gates(void *ctx, const float *gi, const float *gh, float *h, int n, int H,
                              struct sr_error *err)
{
    (void)err;
    struct rows_job j = {.fn = gru_rows, .n = n, .a = gi, .b = gh, .out = h, .d = H};
    rows_run(ctx, &j, (size_t)n * H * 8);
    return SR_OK;
}

/* ---- GRU layer ---------------------------------------------------------------------------- */

/* The sessions are split across the pool once: task j takes the blocks of 4 rows j, j + tasks,
 * ... of every step (the sessions of a block keep their rank, so a task's rows stay its own
 * for the whole recurrence) and runs all L steps without synchronising with the others. A few
 * tasks per thread let a worker that the OS runs late leave its share to the others. W_ih and
 * W_hh are packed once per call (for units u.., input k: the r, z, n weights of the unit block
 * side by side) for the fused step kernel (cpu_vecmath.h: both GEMMs, gates and update), run
 * per block of rows and units: 16 units with AVX-512, 8 with AVX2+FMA, then 4, then scalar
 * tails. Neither x·W_ihᵀ nor h·W_hhᵀ leaves the registers. */
struct gru_job {
    const float *x, *wi, *wh, *b_ih, *b_hh; /* wi, wh: packed panels */
    const float *h0;                        /* step 0's initial states in its row order, or
                                             * NULL: zeros (the h·W_hhᵀ term is skipped) */
    const int32_t *x_rows, *tstart;
    int L, H, tasks;
    float *out;
};

/* The width of the unit block the step kernels take next, with `left` units to go. */
static int gru_width(int left)
{
    return left >= 16 && cpu_wide512 ? 16 : left >= 8 && cpu_wide ? 8 : left >= 4 ? 4 : 1;
}

/* Panel layout: units [u, u+w) start at u·3H; inside, element [k][g][j] is W[g·H+u+j][k]. */
static void gru_pack(const float *w, int H, float *wp)
{
    for (int u = 0, n; u < H; u += n) {
        n = gru_width(H - u);
        float *p = wp + (size_t)u * 3 * H;
        for (int k = 0; k < H; k++)
            for (int g = 0; g < 3; g++)
                for (int j = 0; j < n; j++)
                    *p++ = w[((size_t)g * H + u + j) * H + k];
    }
}

/* gru_step for one unit u (panels of width 1), rows one at a time. */
static void gru_step_unit(const float *const *xp, const float *const *hp, float *const *hn,
                          int nr, const float *wi, const float *wh, const float *b_ih,
                          const float *b_hh, int H, int u)
{
    for (int i = 0; i < nr; i++) {
        float ar = 0.f, az = 0.f, ai = 0.f, ah = 0.f;
        for (int k = 0; k < H; k++) {
            float a = xp[i][k];
            ar += a * wi[3 * k], az += a * wi[3 * k + 1], ai += a * wi[3 * k + 2];
        }
        if (hp[0])
            for (int k = 0; k < H; k++) {
                float a = hp[i][k];
                ar += a * wh[3 * k], az += a * wh[3 * k + 1], ah += a * wh[3 * k + 2];
            }
        float r = s_sigmoid(ar + (b_ih[u] + b_hh[u]));
        float z = s_sigmoid(az + (b_ih[H + u] + b_hh[H + u]));
        float c = s_tanh((ai + b_ih[2 * H + u]) + r * (ah + b_hh[2 * H + u]));
        float h = hp[0] ? hp[i][u] : 0.f;
        hn[i][u] = (1.0f - z) * c + z * h;
    }
}

static void gru_task(void *arg, int task, int w)
{
    (void)w;
    struct gru_job *j = arg;
    int H = j->H;
    const float *wi = j->wi, *wh = j->wh, *bi = j->b_ih, *bh = j->b_hh;
    for (int t = 0; t < j->L; t++) {
        int t0 = j->tstart[t], n = j->tstart[t + 1] - t0;
        /* a resumed recurrence (h0) runs step 0 exactly as a later step of the whole one:
         * the same kernel over the same bits, so the state it continues from gives the same
         * results as recomputing it (DESIGN §3.1) */
        const float *prev = t ? j->out + (size_t)j->tstart[t - 1] * H : j->h0;
        float *cur = j->out + (size_t)t0 * H;
        for (int i0 = task * 4; i0 < n; i0 += j->tasks * 4) {
            int nr = n - i0 < 4 ? n - i0 : 4;
            const float *xp[4], *hp[4];
            float *hn[4];
            for (int i = 0; i < 4; i++) {
                int row = i0 + (i < nr ? i : 0), tok = t0 + row;
                xp[i] = j->x + (size_t)(j->x_rows ? j->x_rows[tok] : tok) * H;
                hp[i] = prev ? prev + (size_t)row * H : NULL;
                hn[i] = cur + (size_t)row * H;
            }
            /* gathered inputs (embedding rows) miss the caches: fetch this block's rows of
             * the next step, a step of this task's blocks ahead */
            if (j->x_rows && t + 1 < j->L) {
                int t1 = j->tstart[t + 1], n1 = j->tstart[t + 2] - t1;
                for (int i = 0; i < nr && i0 + i < n1; i++) {
                    const char *nx = (const char *)(j->x + (size_t)j->x_rows[t1 + i0 + i] * H);
                    for (size_t b = 0; b < sizeof(float) * (size_t)H; b += 64)
                        __builtin_prefetch(nx + b);
                }
            }
            int nr2 = nr > 2 ? nr - 2 : 0; /* the 2-row kernels take rows 0-1, then 2-3 */
            for (int u = 0, wu; u < H; u += wu) {
                size_t o = (size_t)u * 3 * H;
                switch ((wu = gru_width(H - u))) {
#ifdef SR_CPU_HAVE_AVX2
                case 16:
                    gru_step_avx512(xp, hp, hn, nr, wi + o, wh + o, bi, bh, H, u);
                    break;
                case 8:
                    gru_step_avx2(xp, hp, hn, nr, wi + o, wh + o, bi, bh, H, u);
                    if (nr2)
                        gru_step_avx2(xp + 2, hp + 2, hn + 2, nr2, wi + o, wh + o,
                                      bi, bh, H, u);
                    break;
#endif
                case 4:
                    gru_step_sse(xp, hp, hn, nr, wi + o, wh + o, bi, bh, H, u);
                    if (nr2)
                        gru_step_sse(xp + 2, hp + 2, hn + 2, nr2, wi + o, wh + o, bi,
                                     bh, H, u);
                    break;
                default:
                    gru_step_unit(xp, hp, hn, nr, wi + o, wh + o, bi, bh, H, u);
                }
            }
        }
    }
}

/* Both panels, W_ih's then W_hh's, into wp (2 × 3H × H floats). */
static void gru_pack_both(const float *w_ih, const float *w_hh, int H, float *wp)
{
    gru_pack(w_ih, H, wp);
    gru_pack(w_hh, H, wp + (size_t)3 * H * H);
}

static void *cpu_gru_pack(void *ctx, const float *w_ih, const float *w_hh, int H)
{
    float *p = cpu_alloc(ctx, sizeof(float) * 2 * (size_t)3 * H * H);
    if (p)
        gru_pack_both(w_ih, w_hh, H, p);
    return p;
}

static sr_err_t cpu_gru_layer_h0(void *ctx, const float *x, const int32_t *x_rows,
                                 const float *w_ih, const float *w_hh, const float *b_ih,
                                 const float *b_hh, const int32_t *tstart, int L, int H,
                                 const float *h0, const void *packed, float *out,
                                 struct sr_error *err)
{
    struct sr__cpu *c = ctx;
    if (L < 0 || H <= 0)
        return sr_error_set(err, SR_EINVAL, "cpu gru_layer: bad shape L=%d H=%d", L, H);
    if (L == 0)
        return SR_OK;
    for (int t = 0; t < L; t++) {
        int n = tstart[t + 1] - tstart[t];
        if (n < 0 || (t && n > tstart[t] - tstart[t - 1]))
            return sr_error_set(err, SR_EINVAL,
                                "cpu gru_layer: step %d has %d rows (previous step %d)", t, n,
                                t ? tstart[t] - tstart[t - 1] : 0);
    }
    size_t panel = (size_t)3 * H * H, bytes = sizeof(float) * 2 * panel;
    if (!packed && bytes > c->gru_cap) {
        float *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!p)
            return sr_error_set(err, SR_ENOMEM, "cpu gru_layer: out of memory for %d×%d panels",
                                3 * H, H);
        free(c->gru_panels);
    free(c->gemm_pack);
        c->gru_panels = p;
        c->gru_cap = bytes;
    }
    const float *wp = packed;
    if (!wp) {
        gru_pack_both(w_ih, w_hh, H, c->gru_panels);
        wp = c->gru_panels;
    }
    int blocks = (tstart[1] - tstart[0] + 3) / 4, tasks = c->threads > 1 ? 4 * c->threads : 1;
    struct gru_job j = {.x = x, .x_rows = x_rows, .wi = wp, .wh = wp + panel, .b_ih = b_ih, .b_hh = b_hh, .h0 = h0,
                        .tstart = tstart, .L = L, .H = H, .out = out};
    j.tasks = blocks < tasks ? blocks : tasks;
    sr__cpu_parallel(c, j.tasks, gru_task, &j);
    return SR_OK;
}

static sr_err_t cpu_gru_layer(void *ctx, const float *x, const int32_t *x_rows, const float *w_ih,
                              const float *w_hh, const float *b_ih, const float *b_hh,
                              const int32_t *tstart, int L, int H, float *out, struct sr_error *err)
{
    return cpu_gru_layer_h0(ctx, x, x_rows, w_ih, w_hh, b_ih, b_hh, tstart, L, H, NULL, NULL, out,
                            err);
}

/* The unit block widths gru_width picks (FMA or not) decide the bits of a GRU step. */
static const char *cpu_numerics(void *ctx)
{
    (void)ctx;
    pthread_once(&cpu_wide_once, cpu_detect);
    return cpu_wide512 ? "cpu gru avx512+fma" : cpu_wide ? "cpu gru avx2+fma" : "cpu gru sse";
}

/* ---- attention ---------------------------------------------------------------------------- */

/* Row i of one head: s_t = scale·(q_i·k_t) for t <= i, a softmax over them, o_i = Σ_t p_t·v_t.
 * Prefix-consistent (DESIGN §3.1): every value is computed in one fixed order that depends on
 * d_head and on i alone, so row i's bits depend on rows 0..i only, not on how many rows the
 * call holds or where the session sits (what lets the gpt2 encode cache reuse earlier rows):
 *   q·k  eight partial sums, lane j a chain of fused multiply-adds over the dims ≡ j mod 8 in
 *        order (a last group of four dims into lanes 0..3), then (l_j + l_{j+4}) for j < 4,
 *        then (a0 + a1) + (a2 + a3), then fused multiply-adds of the dims past the last four,
 *        then times scale — the same operations whether a key goes alone or four at a time;
 *   the softmax: max, exps four at a time from t = 0, their sum, times 1/sum;
 *   o    one chain of fused multiply-adds over t = 0..i per dim.
 * Two variants give the same bits (fused multiply-adds round once either way): AVX2+FMA where
 * the gemm runs AVX2 or AVX-512, fmaf() elsewhere. (OpenBLAS sgemm, used here before, gave row
 * i other bits in an L-row call than in an (i+1)-row one, and others again under another
 * OPENBLAS_CORETYPE.) Q, K, V: the head's columns of rows 0..i, row stride ld; S: i + 4 floats
 * of scratch; o: d_head floats. */
static float attn_dot_generic(const float *q, const float *k, int dh)
{
    float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int c = 0;
    for (; c + 8 <= dh; c += 8)
        for (int j = 0; j < 8; j++)
            l[j] = fmaf(q[c + j], k[c + j], l[j]);
    if (c + 4 <= dh) {
        for (int j = 0; j < 4; j++)
            l[j] = fmaf(q[c + j], k[c + j], l[j]);
        c += 4;
    }
    float a0 = l[0] + l[4], a1 = l[1] + l[5], a2 = l[2] + l[6], a3 = l[3] + l[7];
    float acc = (a0 + a1) + (a2 + a3);
    for (; c < dh; c++)
        acc = fmaf(q[c], k[c], acc);
    return acc;
}

static void attn_scores_generic(const float *q, const float *K, int ld, int i, int dh,
                                float scale, float *row)
{
    for (int t = 0; t <= i; t++)
        row[t] = attn_dot_generic(q, K + (size_t)t * ld, dh) * scale;
}

static void attn_out_generic(const float *p, const float *V, int ld, int i, int dh, float *o)
{
    for (int c = 0; c < dh; c++) {
        float acc = 0.f;
        for (int t = 0; t <= i; t++)
            acc = fmaf(p[t], V[(size_t)t * ld + c], acc);
        o[c] = acc;
    }
}

#ifdef SR_CPU_HAVE_AVX2
/* The lanes (l_j + l_{j+4}), j < 4, of one key; *c_out: the first dim not yet summed. */
__attribute__((target("avx2,fma"))) static inline __m128 attn_dot8_avx2(const float *q,
                                                                         const float *k, int dh,
                                                                         int *c_out)
{
    __m256 acc = _mm256_setzero_ps();
    int c = 0;
    for (; c + 8 <= dh; c += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(k + c), acc);
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    if (c + 4 <= dh) {
        lo = _mm_fmadd_ps(_mm_loadu_ps(q + c), _mm_loadu_ps(k + c), lo);
        c += 4;
    }
    *c_out = c;
    return _mm_add_ps(lo, hi);
}

__attribute__((target("avx2,fma"))) static void attn_scores_avx2(const float *q, const float *K,
                                                                  int ld, int i, int dh,
                                                                  float scale, float *row)
{
    int t = 0, c = 0;
    __m128 vs = _mm_set1_ps(scale);
    for (; t + 4 <= i + 1; t += 4) { /* four keys: the two pairwise rounds across registers */
        const float *k0 = K + (size_t)t * ld;
        __m128 v0 = attn_dot8_avx2(q, k0, dh, &c), v1 = attn_dot8_avx2(q, k0 + ld, dh, &c),
               v2 = attn_dot8_avx2(q, k0 + 2 * ld, dh, &c),
               v3 = attn_dot8_avx2(q, k0 + 3 * ld, dh, &c);
        __m128 x = _mm_add_ps(_mm_shuffle_ps(v0, v1, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm_shuffle_ps(v0, v1, _MM_SHUFFLE(3, 1, 3, 1)));
        __m128 y = _mm_add_ps(_mm_shuffle_ps(v2, v3, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm_shuffle_ps(v2, v3, _MM_SHUFFLE(3, 1, 3, 1)));
        __m128 r = _mm_add_ps(_mm_shuffle_ps(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm_shuffle_ps(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
        for (int cc = c; cc < dh; cc++)
            r = _mm_fmadd_ps(_mm_set1_ps(q[cc]),
                             _mm_setr_ps(k0[cc], k0[ld + cc], k0[2 * ld + cc], k0[3 * ld + cc]), r);
        _mm_storeu_ps(row + t, _mm_mul_ps(r, vs));
    }
    for (; t <= i; t++) {
        const float *kt = K + (size_t)t * ld;
        __m128 a = attn_dot8_avx2(q, kt, dh, &c);
        float l[4];
        _mm_storeu_ps(l, a);
        float acc = (l[0] + l[1]) + (l[2] + l[3]);
        for (int cc = c; cc < dh; cc++)
            acc = fmaf(q[cc], kt[cc], acc);
        row[t] = acc * scale;
    }
}

__attribute__((target("avx2,fma"))) static void attn_out_avx2(const float *p, const float *V,
                                                               int ld, int i, int dh, float *o)
{
    int c = 0;
    for (; c + 16 <= dh; c += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (int t = 0; t <= i; t++) {
            const float *v = V + (size_t)t * ld + c;
            __m256 pt = _mm256_set1_ps(p[t]);
            a0 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(v), a0);
            a1 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(v + 8), a1);
        }
        _mm256_storeu_ps(o + c, a0);
        _mm256_storeu_ps(o + c + 8, a1);
    }
    for (; c + 8 <= dh; c += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int t = 0; t <= i; t++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[t]), _mm256_loadu_ps(V + (size_t)t * ld + c), a0);
        _mm256_storeu_ps(o + c, a0);
    }
    for (; c < dh; c++) {
        float acc = 0.f;
        for (int t = 0; t <= i; t++)
            acc = fmaf(p[t], V[(size_t)t * ld + c], acc);
        o[c] = acc;
    }
}
#endif

static void attn_row(int isa, const float *Q, const float *K, const float *V, int ld, int i,
                     int dh, float scale, float *S, float *o)
{
    const float *q = Q + (size_t)i * ld;
    float *row = S;
#ifdef SR_CPU_HAVE_AVX2
    if (isa != SR__CPU_ISA_GENERIC)
        attn_scores_avx2(q, K, ld, i, dh, scale, row);
    else
#endif
        attn_scores_generic(q, K, ld, i, dh, scale, row);
    float mx = row[0];
    int t;
    for (t = 1; t <= i; t++)
        mx = row[t] > mx ? row[t] : mx;
    float sum = 0.f;
    t = 0;
    v4f vmx = v4_splat(mx), vs = v4_splat(0.f);
    for (; t + 4 <= i + 1; t += 4) {
        v4f e = exp_sse(v4_load(row + t) - vmx);
        v4_store(row + t, e);
        vs += e;
    }
    sum = v4_hsum(vs);
    for (; t <= i; t++) {
        row[t] = s_exp(row[t] - mx);
        sum += row[t];
    }
    float inv = 1.0f / sum;
    for (t = 0; t <= i; t++)
        row[t] *= inv;
#ifdef SR_CPU_HAVE_AVX2
    if (isa != SR__CPU_ISA_GENERIC) {
        attn_out_avx2(row, V, ld, i, dh, o);
        return;
    }
#endif
    attn_out_generic(row, V, ld, i, dh, o);
}

struct attn_job {
    struct sr__cpu *c;
    const float *qkv;            /* attention: packed sessions */
    const int32_t *offsets;
    const float *const *rows;    /* attention_rows: each session's rows */
    const int32_t *first, *len, *out_off;
    int n_heads, d_head, max_len;
    float *out;
    bool oom;
};

/* Rows r0..L-1 of one session (q|k|v rows at base, stride 3d) into out (row r at out + (r -
 * r0)·d): every head of every row through attn_row. */
static bool attn_session(struct sr__cpu *c, int w, const float *base, int r0, int L, int n_heads,
                         int dh, float *out)
{
    int d = dh * n_heads, ld = 3 * d;
    float *S = sr__cpu_scratch(c, w, sizeof(float) * (size_t)(L + 4));
    if (!S)
        return false;
    float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < n_heads; h++) {
        const float *Q = base + h * dh, *K = base + d + h * dh, *V = base + 2 * d + h * dh;
        for (int i = r0; i < L; i++)
            attn_row(c->gemm_isa, Q, K, V, ld, i, dh, scale, S,
                     out + (size_t)(i - r0) * d + h * dh);
    }
    return true;
}

/* One task per session. */
static void attn_task(void *arg, int s, int w)
{
    struct attn_job *j = arg;
    int o0 = j->offsets[s], L = j->offsets[s + 1] - o0, d = j->d_head * j->n_heads;
    if (L > 0 && !attn_session(j->c, w, j->qkv + (size_t)o0 * 3 * d, 0, L, j->n_heads, j->d_head,
                               j->out + (size_t)o0 * d))
        j->oom = true;
}

static void attn_rows_task(void *arg, int s, int w)
{
    struct attn_job *j = arg;
    int d = j->d_head * j->n_heads;
    if (j->len[s] > j->first[s] &&
        !attn_session(j->c, w, j->rows[s], j->first[s], j->len[s], j->n_heads, j->d_head,
                      j->out + (size_t)j->out_off[s] * d))
        j->oom = true;
}

static sr_err_t cpu_attention(void *ctx, const float *qkv, const int32_t *offsets, int B,
                              int max_len, int n_heads, int d_head, float *out,
                              struct sr_error *err)
{
    struct sr__cpu *c = ctx;
    for (int s = 0; s < B; s++) {
        int L = offsets[s + 1] - offsets[s];
        if (L < 0 || L > max_len)
            return sr_error_set(err, SR_EINVAL, "cpu attention: session %d has %d rows (max %d)",
                                s, L, max_len);
    }
    struct attn_job j = {.c = c, .qkv = qkv, .offsets = offsets, .n_heads = n_heads,
                         .d_head = d_head, .max_len = max_len, .out = out};
    /* the pool splits sessions */
    sr__cpu_parallel(c, B, attn_task, &j);
    if (j.oom)
        return sr_error_set(err, SR_ENOMEM, "cpu attention: out of memory for %d scores",
                            max_len);
    return SR_OK;
}

/* attention_rows: the rows attn_task would give, only first[s]..len[s]-1 of each session. */
static sr_err_t cpu_attention_rows(void *ctx, const float *const *qkv, const int32_t *first,
                                   const int32_t *len, const int32_t *out_row, int B,
                                   int max_len, int n_heads, int d_head, float *out,
                                   struct sr_error *err)
{
    struct sr__cpu *c = ctx;
    for (int s = 0; s < B; s++)
        if (len[s] < 0 || len[s] > max_len || first[s] < 0 || first[s] > len[s])
            return sr_error_set(err, SR_EINVAL, "cpu attention: session %d asks rows %d..%d "
                                "(max %d)", s, first[s], len[s], max_len);
    struct attn_job j = {.c = c, .rows = qkv, .first = first, .len = len, .out_off = out_row,
                         .n_heads = n_heads, .d_head = d_head, .max_len = max_len, .out = out};
    sr__cpu_parallel(c, B, attn_rows_task, &j);
    if (j.oom)
        return sr_error_set(err, SR_ENOMEM, "cpu attention: out of memory for %d scores",
                            max_len);
    return SR_OK;
}

/* ---- table and constructor ------------------------------------------------------------------ */

static const struct sr_backend_iface cpu_iface = {
    .api_version = SR_BACKEND_API_VERSION,
    .name = "cpu",
    .flags = SR_BACKEND_HOST_MEMORY,
    .destroy = cpu_destroy,
    .describe = cpu_describe,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .gemm = sr__cpu_gemm,
    .embed = cpu_embed,
    .layer_norm = cpu_layer_norm,
    .bias_act = cpu_bias_act,
    .add = cpu_add,
    .attention = cpu_attention,
    .attention_rows = cpu_attention_rows,
    .gru_gates = cpu_gru_gates,
    .gather_rows = cpu_gather_rows,
    .topk = sr__cpu_topk,
    .gru_layer = cpu_gru_layer,
    .topk_pin = sr__cpu_topk_pin,
    .topk_unpin = sr__cpu_topk_unpin,
    .gru_layer_h0 = cpu_gru_layer_h0,
    .gru_pack = cpu_gru_pack,
    .numerics = cpu_numerics,
};

sr_err_t sr__backend_cpu_new(int threads, const struct sr_backend_iface **iface, void **ctx,
                             struct sr_error *err)
{
    if (threads < 0)
        return sr_error_set(err, SR_EINVAL, "cpu backend: threads must be >= 0, got %d", threads);
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > 256)
        threads = 256;
    struct sr__cpu *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "cpu backend: out of memory");
    c->threads = threads;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv_work, NULL);
    pthread_cond_init(&c->cv_done, NULL);
    c->wscratch = calloc((size_t)threads, sizeof *c->wscratch);
    c->wscratch_cap = calloc((size_t)threads, sizeof *c->wscratch_cap);
    struct worker_arg *wargs = NULL;
    if (!c->wscratch || !c->wscratch_cap)
        goto oom;
    if (threads > 1) {
        c->tids = calloc((size_t)threads - 1, sizeof *c->tids);
        wargs = calloc((size_t)threads - 1, sizeof *wargs);
        if (!c->tids || !wargs)
            goto oom;
        for (int i = 0; i < threads - 1; i++) {
            wargs[i].c = c;
            wargs[i].w = i + 1;
            if (pthread_create(&c->tids[i], NULL, worker_main, &wargs[i]) != 0) {
                c->threads = i + 1; /* join only those started */
                c->wargs = wargs;
                cpu_destroy(c);
                return sr_error_set(err, SR_EDEVICE, "cpu backend: cannot start worker thread");
            }
        }
    }
    pthread_once(&cpu_wide_once, cpu_detect);
    c->gemm_isa = sr__cpu_gemm_isa_best();
    c->topk_screen = SR__CPU_SCREEN_INT8;
    /* the pool does the threading; OpenBLAS runs single-threaded inside each task */
    openblas_set_num_threads(1);
    snprintf(c->desc, sizeof c->desc, "cpu (OpenBLAS %s, %d thread%s)", openblas_get_corename(),
             threads, threads == 1 ? "" : "s");
    c->wargs = wargs; /* the workers point into it: released at destroy */
    *iface = &cpu_iface;
    *ctx = c;
    return SR_OK;
oom:
    free(wargs);
    free(c->tids);
    c->tids = NULL;
    cpu_destroy(c);
    return sr_error_set(err, SR_ENOMEM, "cpu backend: out of memory");
}
