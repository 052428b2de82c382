/* cuda_backend.cu — the cuda backend: its context (device, one non-blocking stream, a cuBLAS
 * handle bound to it), memory (stream-ordered where the device allows), transfers, gemm on
 * cublasSgemm, and the function table that points at the kernel families in cuda_*.cu.
 * cuBLAS is dlopened by the first construction (cublas_dl.c), never linked: a machine without
 * it builds and runs the cpu backend, and creating this one then fails with a clear error.
 * Every CUDA/cuBLAS failure becomes SR_EDEVICE naming the call; nothing here aborts.
 * A context is used by one thread at a time; each entry point makes its device current. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_int.h"

/* ---- errors and helpers --------------------------------------------------------------- */

sr_err_t sr__cuda_check(cudaError_t e, const char *what, struct sr_error *err)
{
    if (e == cudaSuccess)
        return SR_OK;
    return sr_error_set(err, SR_EDEVICE, "cuda: %s failed: %s (%s)", what, cudaGetErrorString(e),
                        cudaGetErrorName(e));
}

sr_err_t sr__cublas_check(const struct sr__cuda_ctx *c, sr__cublas_status_t s,
                          const char *what, struct sr_error *err)
{
    if (s == SR__CUBLAS_STATUS_SUCCESS)
        return SR_OK;
    return sr_error_set(err, SR_EDEVICE, "cuda: %s failed: %s (%s)", what,
                        c->cb->status_string(s), c->cb->status_name(s));
}

sr_err_t sr__cuda_launched(const char *kernel, struct sr_error *err)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        return SR_OK;
    return sr_error_set(err, SR_EDEVICE, "cuda: launch of %s failed: %s (%s)", kernel,
                        cudaGetErrorString(e), cudaGetErrorName(e));
}

sr_err_t sr__cuda_enter(struct sr__cuda_ctx *c, struct sr_error *err)
{
    return sr__cuda_check(cudaSetDevice(c->device), "cudaSetDevice", err);
}

static void *cuda_alloc_raw(struct sr__cuda_ctx *c, size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = 1; /* a distinct, freeable pointer like malloc(1) */
    cudaError_t e = c->async_alloc ? cudaMallocAsync(&p, bytes, c->stream) : cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* allocation failures are not sticky; clear the record */
        return NULL;
    }
    return p;
}

void sr__cuda_free_scratch(struct sr__cuda_ctx *c, void *p)
{
    if (!p)
        return;
    /* Stream-ordered free is safe for memory still used by queued work; cudaFree waits. */
    if (c->async_alloc)
        (void)cudaFreeAsync(p, c->stream);
    else
        (void)cudaFree(p);
}

sr_err_t sr__cuda_grow(struct sr__cuda_ctx *c, void **p, size_t *cap_bytes, size_t bytes,
                       const char *what, struct sr_error *err)
{
    if (*p && *cap_bytes >= bytes)
        return SR_OK;
    size_t want = bytes + bytes / 4; /* some headroom: batch shapes vary */
    sr__cuda_free_scratch(c, *p);
    *p = NULL;
    *cap_bytes = 0;
    void *n = cuda_alloc_raw(c, want);
    if (!n)
        return sr_error_set(err, SR_EDEVICE, "cuda: out of device memory for %s (%zu bytes)",
                            what, want);
    *p = n;
    *cap_bytes = want;
    return SR_OK;
}

/* ---- iface: lifetime, memory, transfers ------------------------------------------------- */

static void cuda_destroy(void *ctx)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    if (!c)
        return;
    (void)cudaSetDevice(c->device);
    sr__cuda_topk_release(c);
    if (c->stream)
        (void)cudaStreamSynchronize(c->stream);
    if (c->blas)
        (void)c->cb->destroy(c->blas);
    if (c->stream)
        (void)cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

static const char *cuda_describe(void *ctx)
{
    return ((struct sr__cuda_ctx *)ctx)->desc;
}

static void *cuda_alloc(void *ctx, size_t bytes)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    if (cudaSetDevice(c->device) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return cuda_alloc_raw(c, bytes);
}

static void cuda_free(void *ctx, void *p)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    if (!p)
        return;
    (void)cudaSetDevice(c->device);
    sr__cuda_free_scratch(c, p);
}

/* True when host memory is page-locked: an async copy from it may still be reading after the
 * call returns, so upload waits (pageable sources are staged before cudaMemcpyAsync returns). */
static bool host_is_pinned(const void *p)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return a.type == cudaMemoryTypeHost;
}

/* Returns once host_src may be reused; the device copy is ordered before later calls. */
static sr_err_t cuda_upload(void *ctx, void *dst, const void *host_src, size_t bytes,
                            struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (bytes == 0)
        return SR_OK;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    if ((rc = sr__cuda_check(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice,
                                             c->stream), "cudaMemcpyAsync (upload)", err)))
        return rc;
    if (host_is_pinned(host_src))
        return sr__cuda_check(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize (upload)",
                              err);
    return SR_OK;
}

/* Waits for every queued call, so errors of earlier kernels surface here. */
static sr_err_t cuda_download(void *ctx, void *host_dst, const void *src, size_t bytes,
                              struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    if (bytes > 0 &&
        (rc = sr__cuda_check(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost,
                                             c->stream), "cudaMemcpyAsync (download)", err)))
        return rc;
    return sr__cuda_check(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize (download)",
                          err);
}

/* Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix is its
 * own transpose seen column-major: so swap the operands and keep each one's transpose flag. */
static sr_err_t cuda_gemm(void *ctx, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc, struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (M < 0 || N < 0 || K < 0)
        return sr_error_set(err, SR_EINVAL, "cuda gemm: negative size %dx%dx%d", M, N, K);
    if (M == 0 || N == 0)
        return SR_OK;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    const sr__cublas_op_t op_a = trans_a ? SR__CUBLAS_OP_T : SR__CUBLAS_OP_N;
    const sr__cublas_op_t op_b = trans_b ? SR__CUBLAS_OP_T : SR__CUBLAS_OP_N;
    return sr__cublas_check(c, c->cb->sgemm(c->blas, op_b, op_a, N, M, K, &alpha, B, ldb, A, lda,
                                            &beta, C, ldc),
                            "cublasSgemm", err);
}

static const struct sr_backend_iface sr__cuda_iface = {
    .api_version = SR_BACKEND_API_VERSION,
    .name = "cuda",
    .flags = 0, /* device memory: the model uploads the bundle's tensors */
    .destroy = cuda_destroy,
    .describe = cuda_describe,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .gemm = cuda_gemm,
    .embed = sr__cuda_embed,
    .layer_norm = sr__cuda_layer_norm,
    .bias_act = sr__cuda_bias_act,
    .add = sr__cuda_add,
    .attention = sr__cuda_attention,
    .gru_gates = sr__cuda_gru_gates,
    .gather_rows = sr__cuda_gather_rows,
    .topk = sr__cuda_topk,
    .gru_layer = NULL, /* optional: gru4rec steps through gemm + gru_gates */
    .topk_pin = NULL, /* optional: topk reads the table as it is */
    .topk_unpin = NULL,
    /* no resumable GRU, no row-deterministic kernels: every encode recomputes its sessions
     * (DESIGN §3.1) */
    .gru_layer_h0 = NULL,
    .gru_pack = NULL,
    .numerics = NULL,
    .attention_rows = NULL, /* no gpt2 encode cache (DESIGN §3.1) */
};

/* ---- constructors --------------------------------------------------------------------- */

/* Number of usable CUDA devices; 0 when there is no driver or no device. Never aborts. */
extern "C" int sr__cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

/* True when a device exists and cuBLAS loads: what device=auto needs to choose CUDA (a GPU
 * without cuBLAS falls back to the CPU instead of failing). */
extern "C" bool sr__cuda_usable(void)
{
    const struct sr__cublas *cb = NULL;
    struct sr_error err = {};
    return sr__cuda_device_count() > 0 && sr__cublas_load(&cb, &err) == SR_OK;
}

/* Creates a context on `device`. On success the caller owns *ctx (release with
 * iface->destroy). On failure nothing is left allocated and err says which call failed. */
extern "C" sr_err_t sr__backend_cuda_new(int device, const struct sr_backend_iface **iface,
                                         void **ctx, struct sr_error *err)
{
    *iface = NULL;
    *ctx = NULL;
    int n = sr__cuda_device_count();
    if (n == 0)
        return sr_error_set(err, SR_EDEVICE, "cuda: no CUDA device is available");
    if (device < 0 || device >= n)
        return sr_error_set(err, SR_EDEVICE, "cuda: device %d does not exist (%d device%s)",
                            device, n, n == 1 ? "" : "s");
    const struct sr__cublas *cb;
    sr_err_t rc = sr__cublas_load(&cb, err);
    if (rc)
        return rc;

    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "cuda: out of memory for the backend context");
    c->device = device;
    c->cb = cb;
    cudaDeviceProp prop;
    int pools = 0, optin = 0;
    if ((rc = sr__cuda_check(cudaSetDevice(device), "cudaSetDevice", err)) ||
        (rc = sr__cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties",
                             err)) ||
        (rc = sr__cuda_check(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported,
                                                    device), "cudaDeviceGetAttribute", err)) ||
        (rc = sr__cuda_check(cudaDeviceGetAttribute(&optin,
                                                    cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                                    device), "cudaDeviceGetAttribute", err)) ||
        (rc = sr__cuda_check(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking),
                             "cudaStreamCreateWithFlags", err)))
        goto fail;
    if ((rc = sr__cublas_check(c, c->cb->create(&c->blas), "cublasCreate", err)))
        goto fail;
    /* Plain FP32 (no TF32): parity with the cpu backend is part of the contract. */
    if ((rc = sr__cublas_check(c, c->cb->set_stream(c->blas, c->stream), "cublasSetStream",
                               err)) ||
        (rc = sr__cublas_check(c, c->cb->set_math_mode(c->blas, SR__CUBLAS_DEFAULT_MATH),
                               "cublasSetMathMode", err)))
        goto fail;
    c->async_alloc = pools != 0;
    c->smem_optin = (size_t)(optin > 0 ? optin : prop.sharedMemPerBlock);
    c->n_sms = prop.multiProcessorCount;
    snprintf(c->desc, sizeof c->desc, "cuda (%s, sm_%d%d, cuBLAS)", prop.name, prop.major,
             prop.minor);
    *iface = &sr__cuda_iface;
    *ctx = c;
    return SR_OK;
fail:
    cuda_destroy(c);
    return rc;
}
