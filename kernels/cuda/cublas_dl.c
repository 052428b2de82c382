/* cublas_dl.c — lazy-loads cuBLAS: the cuda backend's first construction dlopens libcublas and
 * resolves the entry points in cublas_dl.h, so the build links no cuBLAS (machines without a GPU
 * have nvcc + cudart only) and a CPU run never keeps cuBLAS resident. Owns the process-wide
 * table and the library handle, which stays open for the life of the process. Any thread may
 * call sr__cublas_load; pthread_once runs the load once and the table is read-only after. */
#include "cublas_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t cublas_once = PTHREAD_ONCE_INIT;
static struct sr__cublas cublas_api;
static bool cublas_ok;
static char cublas_why[512]; /* the load failure, reported by every later call */

/* The _v2 names are the exported symbols behind cublas_v2.h's cublasCreate etc. */
static const struct {
    const char *sym;
    size_t off;
} cublas_syms[] = {
    {"cublasCreate_v2", offsetof(struct sr__cublas, create)},
    {"cublasDestroy_v2", offsetof(struct sr__cublas, destroy)},
    {"cublasSetStream_v2", offsetof(struct sr__cublas, set_stream)},
    {"cublasSetMathMode", offsetof(struct sr__cublas, set_math_mode)},
    {"cublasSgemm_v2", offsetof(struct sr__cublas, sgemm)},
    {"cublasGetStatusName", offsetof(struct sr__cublas, status_name)},
    {"cublasGetStatusString", offsetof(struct sr__cublas, status_string)},
};

/* Fills *api from lib; returns the first missing symbol's name, or NULL when all resolved. */
static const char *cublas_resolve(void *lib, struct sr__cublas *api)
{
    for (size_t i = 0; i < sizeof cublas_syms / sizeof cublas_syms[0]; i++) {
        void *f = dlsym(lib, cublas_syms[i].sym);
        if (!f)
            return cublas_syms[i].sym;
        /* POSIX guarantees a data pointer from dlsym converts to the function's pointer. */
        memcpy((char *)api + cublas_syms[i].off, &f, sizeof f);
    }
    return NULL;
}

static void cublas_load_once(void)
{
    /* Newest ABI first; the unversioned name only exists where the toolkit's dev files are. */
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    /* The first failure that is not plain absence (a library that is there but does not load,
     * or lacks an entry point) is what the user needs to hear about. */
    char detail[256] = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char *e = dlerror();
            if (e && !detail[0] && !strstr(e, "No such file"))
                snprintf(detail, sizeof detail, " (%s)", e);
            continue;
        }
        struct sr__cublas api;
        const char *missing = cublas_resolve(lib, &api);
        if (!missing) {
            cublas_api = api;
            cublas_ok = true;
            return;
        }
        if (!detail[0])
            snprintf(detail, sizeof detail, " (%s has no %s)", names[i], missing);
        dlclose(lib);
    }
    snprintf(cublas_why, sizeof cublas_why,
             "cuda backend: cuBLAS not found (libcublas.so.13/.12): install the CUDA toolkit's "
             "cuBLAS%s", detail);
}

sr_err_t sr__cublas_load(const struct sr__cublas **out, struct sr_error *err)
{
    *out = NULL;
    if (pthread_once(&cublas_once, cublas_load_once) != 0)
        return sr_error_set(err, SR_EDEVICE, "cuda backend: loading cuBLAS failed (pthread_once)");
    if (!cublas_ok)
        return sr_error_set(err, SR_EDEVICE, "%s", cublas_why);
    *out = &cublas_api;
    return SR_OK;
}
