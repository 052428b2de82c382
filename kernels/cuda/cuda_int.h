/* cuda_int.h — private to kernels/cuda/: the cuda backend's context, error translation and the
 * op entry points each kernel family file provides to the function table in cuda_backend.cu.
 * The first part is plain C (test hooks the parity test calls); the rest is CUDA-only.
 * A context is used by one thread at a time (the compute worker), like every backend. */
#ifndef SR_CUDA_INT_H
#define SR_CUDA_INT_H

#include "kernels_int.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Test hook: fixes the catalogue tile of topk to `rows` rows (0 = automatic), so tests can make
 * k exceed the tile and V straddle tiles. ctx is a cuda backend context. */
void sr__cuda_topk_set_tile(void *ctx, int rows);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#include <cuda_runtime.h>

#include "cublas_dl.h"

/* Per-backend state. Scratch buffers grow on demand and live until destroy. */
struct sr__cuda_ctx {
    int device;
    cudaStream_t stream;
    const struct sr__cublas *cb; /* cuBLAS entry points (cublas_dl.c) */
    sr__cublas_handle_t blas;
    bool async_alloc;        /* device supports stream-ordered allocation */
    size_t smem_optin;       /* max dynamic shared memory per block (opt-in) */
    int n_sms;
    char desc[320];
    /* topk scratch */
    int topk_tile;           /* 0: automatic */
    float *tk_scores;        /* B×tile scores of the current tile */
    unsigned long long *tk_keys; /* B×k running keys, best first */
    int *tk_count;           /* B running counts */
    int32_t *tk_idx;         /* B×k results */
    float *tk_score;
    size_t tk_scores_cap, tk_keys_cap, tk_count_cap, tk_idx_cap, tk_score_cap; /* bytes */
};

/* Makes ctx's device current for the calling thread. */
sr_err_t sr__cuda_enter(struct sr__cuda_ctx *c, struct sr_error *err);
/* Translates a failed CUDA / cuBLAS call into SR_EDEVICE naming `what`; returns SR_OK when
 * e is success (cuBLAS statuses are named through c->cb). */
sr_err_t sr__cuda_check(cudaError_t e, const char *what, struct sr_error *err);
sr_err_t sr__cublas_check(const struct sr__cuda_ctx *c, sr__cublas_status_t s, const char *what,
                          struct sr_error *err);
/* Checks the launch of the kernel just queued (cudaGetLastError). */
sr_err_t sr__cuda_launched(const char *kernel, struct sr_error *err);
/* Stream-ordered release of device memory from cuda alloc / sr__cuda_grow (NULL: no-op). */
void sr__cuda_free_scratch(struct sr__cuda_ctx *c, void *p);
/* Device scratch that grows: (re)allocates *p to hold at least `bytes`. */
sr_err_t sr__cuda_grow(struct sr__cuda_ctx *c, void **p, size_t *cap_bytes, size_t bytes,
                       const char *what, struct sr_error *err);

/* Op entry points with the signatures of struct sr_backend_iface (ctx is sr__cuda_ctx). */
extern "C" {
sr_err_t sr__cuda_embed(void *ctx, const float *table, const float *pos_table,
                        const int32_t *items, const int32_t *pos, int n, int d, float *out,
                        struct sr_error *err);
sr_err_t sr__cuda_layer_norm(void *ctx, const float *x, const float *gamma, const float *beta,
                             int n, int d, float eps, float *out, struct sr_error *err);
sr_err_t sr__cuda_bias_act(void *ctx, float *x, const float *bias, int n, int d, sr_act_t act,
                           struct sr_error *err);
sr_err_t sr__cuda_add(void *ctx, float *x, const float *y, size_t n, struct sr_error *err);
sr_err_t sr__cuda_gru_gates(void *ctx, const float *gi, const float *gh, float *h, int n, int H,
                            struct sr_error *err);
sr_err_t sr__cuda_gather_rows(void *ctx, const float *src, const int32_t *rows, int n, int d,
                              float *out, struct sr_error *err);
sr_err_t sr__cuda_attention(void *ctx, const float *qkv, const int32_t *offsets, int B,
                            int max_len, int n_heads, int d_head, float *out,
                            struct sr_error *err);
sr_err_t sr__cuda_topk(void *ctx, const float *q, int B, const float *table, const float *bias,
                       int d, int first, int V, const int32_t *excl_offsets,
                       const int32_t *excl_items, int k, int32_t *host_idx, float *host_score,
                       struct sr_error *err);
/* Frees topk scratch (destroy). */
void sr__cuda_topk_release(struct sr__cuda_ctx *c);
}
#endif /* __CUDACC__ */

#endif /* SR_CUDA_INT_H */
