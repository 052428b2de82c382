/* cublas_dl.h — private to kernels/cuda/: the few cuBLAS entry points the cuda backend calls,
 * as a table of function pointers filled by dlopen at run time (cublas_dl.c), so the build
 * needs no cuBLAS (CI has only nvcc + cudart) and a CPU run never maps libcublas. The types
 * and values below are cuBLAS's stable C ABI (cublas_api.h: handle = pointer to an opaque
 * struct, enums = int, CUBLAS_STATUS_SUCCESS 0, CUBLAS_OP_N 0 / _T 1, CUBLAS_DEFAULT_MATH 0);
 * cublas_v2.h is never included. Plain C, shared by the .c loader and the .cu callers. */
#ifndef SR_CUBLAS_DL_H
#define SR_CUBLAS_DL_H

#include "sr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sr__cublas_context *sr__cublas_handle_t; /* cublasHandle_t */
typedef int sr__cublas_status_t;                        /* cublasStatus_t */
typedef int sr__cublas_op_t;                            /* cublasOperation_t */
typedef int sr__cublas_math_t;                          /* cublasMath_t */
enum {
    SR__CUBLAS_STATUS_SUCCESS = 0,
    SR__CUBLAS_OP_N = 0,
    SR__CUBLAS_OP_T = 1,
    SR__CUBLAS_DEFAULT_MATH = 0,
};
struct CUstream_st; /* cudaStream_t is struct CUstream_st * */

/* The resolved entry points; the comment names the symbol each is loaded from. */
struct sr__cublas {
    /* cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2, cublasSetMathMode */
    sr__cublas_status_t (*create)(sr__cublas_handle_t *handle);
    sr__cublas_status_t (*destroy)(sr__cublas_handle_t handle);
    sr__cublas_status_t (*set_stream)(sr__cublas_handle_t handle, struct CUstream_st *stream);
    sr__cublas_status_t (*set_math_mode)(sr__cublas_handle_t handle, sr__cublas_math_t mode);
    /* cublasSgemm_v2 (column-major, 32-bit sizes) */
    sr__cublas_status_t (*sgemm)(sr__cublas_handle_t handle, sr__cublas_op_t transa,
                                 sr__cublas_op_t transb, int m, int n, int k, const float *alpha,
                                 const float *A, int lda, const float *B, int ldb,
                                 const float *beta, float *C, int ldc);
    /* cublasGetStatusName, cublasGetStatusString */
    const char *(*status_name)(sr__cublas_status_t s);
    const char *(*status_string)(sr__cublas_status_t s);
};

/* Loads cuBLAS on first call (libcublas.so.13, .12, then libcublas.so); thread-safe, the
 * outcome is cached for the process. On success *out points at the process-wide table (never
 * freed; the library stays mapped). On failure returns SR_EDEVICE with the reason in err. */
sr_err_t sr__cublas_load(const struct sr__cublas **out, struct sr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SR_CUBLAS_DL_H */
