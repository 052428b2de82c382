/* cpu_int.h — private to kernels/cpu/: the cpu backend's context (thread pool, scratch) shared
 * by cpu_backend.c (element-wise ops, gemm, attention) and cpu_topk.c (tiled exact top-k).
 * One caller thread at a time drives a context; the pool's workers only run tasks it hands out. */
#ifndef SR_CPU_INT_H
#define SR_CPU_INT_H

#include "kernels_int.h"

#include <pthread.h>
#include <string.h>

/* 4-float GCC vectors (one SSE register; portable C) for the cpu kernels' inner loops. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_splat(float x) { return (v4f){x, x, x, x}; }
static inline v4f v4_select(v4i m, v4f a, v4f b)
{
    return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}
static inline v4f v4_min(v4f a, v4f b) { return v4_select(a < b, a, b); }
static inline v4f v4_max(v4f a, v4f b) { return v4_select(a > b, a, b); }

static inline v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v4_store(float *p, v4f v) { memcpy(p, &v, sizeof v); }


/* An item table packed for the top-k kernel (cpu_topk.c): rows first..V-1 of src in panels of
 * 16 items, an upper bound of each row's norm, and the layout of the screen in use, packed on
 * first use (a run packs one: the int8 screen's on AVX2, the FP32 one elsewhere). */
struct sr__cpu_table {
    const float *src;
    int d, first, V, pins;
    int n_panels;
    float *norm;                /* [n_panels·PW]: |e_j| rounded up; 0 past V */
    float *panels;              /* FP32 screen: [n_panels][d][PW] */
    int8_t *q8;                 /* int8 screen: [n_panels][d4][PW][4], qe = round(e/s) in ±63 */
    float *s8, *a8, *r8;        /* [n_panels·PW]: s_j; s_j·|qe_j| and |e_j - s_j·qe_j| + 8u·|e_j|, rounded up */
    int32_t *c8;                /* [n_panels·PW]: 128·Σ qe_j (the unsigned query's offset) */
    size_t cap_items, cap_f32, cap_q8; /* allocated: items (norm, s8..c8), panel floats, q8 bytes */
    bool have_f32, have_i8;     /* packed from src's current contents */
};

/* The top-k screen (cpu_topk.c): FP32 register tiles, or int8 ones where AVX2 runs them. */
enum { SR__CPU_SCREEN_FP32 = 0, SR__CPU_SCREEN_INT8 = 1 };

/* A task runs fn(arg, task, worker) with worker in 0..threads-1 (0 is the calling thread). */
typedef void (*sr__cpu_task_fn)(void *arg, int task, int worker);

struct sr__cpu {
    int threads;               /* pool size including the caller */
    char desc[128];
    /* pool */
    pthread_t *tids;           /* [threads-1] */
    void *wargs;               /* [threads-1] worker arguments */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    uint64_t generation;       /* bumped per parallel call */
    int busy;                  /* workers still inside the current call */
    bool stop;
    sr__cpu_task_fn fn;
    void *arg;
    int n_tasks;
    int next_task;             /* guarded by mu */
    /* per-worker scratch, grown as needed (attention S matrices, top-k tiles and heaps) */
    float **wscratch;          /* [threads] */
    size_t *wscratch_cap;      /* bytes */
    /* GRU layer: W_ih and W_hh packed into the step kernels' panels, shared by the tasks */
    float *gru_panels;
    size_t gru_cap;            /* bytes */
    /* gemm: instruction set of the kernels (SR__CPU_ISA_*), op(B) packed per call */
    int gemm_isa;
    float *gemm_pack;
    size_t gemm_cap;           /* bytes */
    /* top-k: per-worker running lists, per-query bounds and sorted exclusions (topk_buf);
     * pinned tables, packed once (tables); the per-call packing of an unpinned one (topk_tmp) */
    void *topk_buf;
    size_t topk_cap;
    int topk_screen;           /* SR__CPU_SCREEN_*: int8 by default */
    struct sr__cpu_table *tables;
    int n_tables;
    struct sr__cpu_table topk_tmp;
};

/* Runs n_tasks tasks on the pool (the caller takes part) and returns when all are done. */
void sr__cpu_parallel(struct sr__cpu *c, int n_tasks, sr__cpu_task_fn fn, void *arg);
/* Worker w's scratch of at least `bytes`, 64-byte aligned; NULL on OOM. Valid until the next
 * call for the same worker with a larger size. */
float *sr__cpu_scratch(struct sr__cpu *c, int w, size_t bytes);

/* GEMM variants, all giving the same bits (cpu_gemm.c). */
enum { SR__CPU_ISA_GENERIC = 0, SR__CPU_ISA_AVX2 = 1, SR__CPU_ISA_AVX512 = 2 };
/* The widest variant this CPU runs. */
int sr__cpu_gemm_isa_best(void);
/* The `gemm` slot (struct sr_backend_iface): row-deterministic, see cpu_gemm.c. */
sr_err_t sr__cpu_gemm(void *ctx, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc, struct sr_error *err);
/* Tests: makes a cpu backend context's gemm use variant isa when this CPU has it; returns the
 * variant used before. */
int sr__cpu_gemm_set_isa(void *ctx, int isa);
/* Tests: the top-k screen (SR__CPU_SCREEN_*); returns the previous one. The answer is the same. */
int sr__cpu_topk_set_screen(void *ctx, int screen);

sr_err_t sr__cpu_topk(void *ctx, const float *q, int B, const float *table, const float *bias,
                      int d, int first, int V, const int32_t *excl_offsets,
                      const int32_t *excl_items, int k, int32_t *host_idx, float *host_score,
                      struct sr_error *err);
/* The topk_pin / topk_unpin slots (counted pins of one table), and freeing at destroy. */
sr_err_t sr__cpu_topk_pin(void *ctx, const float *table, int d, int first, int V,
                          struct sr_error *err);
void sr__cpu_topk_unpin(void *ctx, const float *table, int d, int first, int V);
void sr__cpu_topk_free(struct sr__cpu *c);

#endif /* SR_CPU_INT_H */
