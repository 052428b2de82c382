/* backend.c — the public face of compute backends: device parsing, the auto|cpu|cuda choice,
 * and the reference-counted sr_backend wrapping an iface table + context (cpu always; cuda
 * when the build has SR_HAVE_CUDA). A backend is driven by one thread at a time; ref/unref
 * are atomic so a model on another thread may hold it. */
#include "kernels_int.h"

#include <stdlib.h>
#include <string.h>

sr_err_t sr_device_parse(const char *s, sr_device_t *out, struct sr_error *err)
{
    if (!s || !out)
        return sr_error_set(err, SR_EINVAL, "device: missing value");
    if (!strcmp(s, "auto"))
        *out = SR_DEVICE_AUTO;
    else if (!strcmp(s, "cpu"))
        *out = SR_DEVICE_CPU;
    else if (!strcmp(s, "cuda"))
        *out = SR_DEVICE_CUDA;
    else
        return sr_error_set(err, SR_EINVAL, "device: '%s' is not auto, cpu or cuda", s);
    return SR_OK;
}

bool sr_cuda_available(void)
{
#ifdef SR_HAVE_CUDA
    return sr__cuda_usable();
#else
    return false;
#endif
}

sr_err_t sr_backend_new(const struct sr_backend_params *p, sr_backend_t **out, struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "backend: NULL out");
    *out = NULL;
    struct sr_backend_params def = {.device = SR_DEVICE_AUTO};
    if (!p)
        p = &def;
    const struct sr_backend_iface *iface = NULL;
    void *ctx = NULL;
    sr_err_t rc;
    bool use_cuda = false;
    switch (p->device) {
    case SR_DEVICE_AUTO:
        use_cuda = sr_cuda_available();
        break;
    case SR_DEVICE_CPU:
        break;
    case SR_DEVICE_CUDA:
#ifdef SR_HAVE_CUDA
        if (sr__cuda_device_count() <= 0)
            return sr_error_set(err, SR_EDEVICE, "device=cuda: no CUDA device is present");
        use_cuda = true;
        break;
#else
        return sr_error_set(err, SR_EDEVICE,
                            "device=cuda: this build has no CUDA backend (built with SR_CUDA=OFF "
                            "or without nvcc)");
#endif
    default:
        return sr_error_set(err, SR_EINVAL, "backend: unknown device %d", (int)p->device);
    }
#ifdef SR_HAVE_CUDA
    if (use_cuda) {
        int n = sr__cuda_device_count();
        if (p->cuda_device < 0 || p->cuda_device >= n)
            return sr_error_set(err, SR_EDEVICE, "device=cuda: device ordinal %d out of range (%d present)",
                                p->cuda_device, n);
        rc = sr__backend_cuda_new(p->cuda_device, &iface, &ctx, err);
    } else
#endif
    {
        (void)use_cuda;
        rc = sr__backend_cpu_new(p->threads, &iface, &ctx, err);
    }
    if (rc != SR_OK)
        return rc;
    sr_backend_t *be = calloc(1, sizeof *be);
    if (!be) {
        iface->destroy(ctx);
        return sr_error_set(err, SR_ENOMEM, "backend: out of memory");
    }
    be->refs = 1;
    be->iface = iface;
    be->ctx = ctx;
    *out = be;
    return SR_OK;
}

sr_backend_t *sr_backend_ref(sr_backend_t *be)
{
    if (be)
        __atomic_add_fetch(&be->refs, 1, __ATOMIC_RELAXED);
    return be;
}

void sr_backend_unref(sr_backend_t *be)
{
    if (!be)
        return;
    if (__atomic_sub_fetch(&be->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    be->iface->destroy(be->ctx);
    free(be);
}

const char *sr_backend_name(const sr_backend_t *be) { return be ? be->iface->name : "none"; }

const char *sr_backend_describe(const sr_backend_t *be)
{
    if (!be)
        return "none";
    return be->iface->describe ? be->iface->describe(be->ctx) : be->iface->name;
}

void *sr_backend_alloc(sr_backend_t *be, size_t bytes)
{
    return be ? be->iface->alloc(be->ctx, bytes) : NULL;
}

void sr_backend_free(sr_backend_t *be, void *p)
{
    if (be && p)
        be->iface->free(be->ctx, p);
}

sr_err_t sr_backend_upload(sr_backend_t *be, void *dst, const void *host_src, size_t bytes,
                           struct sr_error *err)
{
    if (!be || !dst || (!host_src && bytes))
        return sr_error_set(err, SR_EINVAL, "backend upload: NULL argument");
    return be->iface->upload(be->ctx, dst, host_src, bytes, err);
}

sr_err_t sr_backend_topk(sr_backend_t *be, const float *q, int B, const float *table,
                         const float *bias, int d, int first, int V, int k, int32_t *host_idx,
                         float *host_score, struct sr_error *err)
{
    if (!be || !q || !table || !host_idx || !host_score)
        return sr_error_set(err, SR_EINVAL, "backend topk: NULL argument");
    if (B < 0 || d <= 0 || first < 0 || first > V || k < 1)
        return sr_error_set(err, SR_EINVAL, "backend topk: bad shape B=%d d=%d first=%d V=%d k=%d",
                            B, d, first, V, k);
    return be->iface->topk(be->ctx, q, B, table, bias, d, first, V, NULL, NULL, k, host_idx,
                           host_score, err);
}

sr_err_t sr_backend_topk_pin(sr_backend_t *be, const float *table, int d, int first, int V,
                             struct sr_error *err)
{
    if (!be || !table)
        return sr_error_set(err, SR_EINVAL, "backend topk_pin: NULL argument");
    return be->iface->topk_pin ? be->iface->topk_pin(be->ctx, table, d, first, V, err) : SR_OK;
}

void sr_backend_topk_unpin(sr_backend_t *be, const float *table, int d, int first, int V)
{
    if (be && table && be->iface->topk_unpin)
        be->iface->topk_unpin(be->ctx, table, d, first, V);
}
