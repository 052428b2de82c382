/* cuda_elementwise.cu — the cuda backend's row and element kernels: embedding + position
 * gather, layer norm (one warp per row, two-pass in float), bias + activation, residual add,
 * row gather and the GRU gates. Rows of floats are read coalesced and, where the width and
 * the pointers allow, as float4. All launches go on the context's stream. */
#include <math.h>
#include <stdint.h>

#include "cuda_int.h"

#define EW_THREADS 256

static bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

/* Blocks for `work` items at EW_THREADS each, capped; kernels stride over the rest. */
static unsigned ew_blocks(size_t work)
{
    size_t b = (work + EW_THREADS - 1) / EW_THREADS;
    if (b < 1)
        b = 1;
    if (b > 65535u * 8u)
        b = 65535u * 8u;
    return (unsigned)b;
}

/* ---- embed / gather ------------------------------------------------------------------- */

/* out[i, :] = table[items[i], :] (+ pos_table[pos[i], :]); works in units of T (float/float4)
 * with dv units per row. */
template <typename T>
__global__ void embed_kernel(const T *__restrict__ table, const T *__restrict__ pos_table,
                             const int32_t *__restrict__ items, const int32_t *__restrict__ pos,
                             int n, int dv, T *__restrict__ out)
{
    size_t total = (size_t)n * dv;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e / dv), c = (int)(e % dv);
        T v = table[(size_t)items[i] * dv + c];
        if (pos_table) {
            T p = pos_table[(size_t)pos[i] * dv + c];
            if constexpr (sizeof(T) == sizeof(float4)) {
                v.x += p.x;
                v.y += p.y;
                v.z += p.z;
                v.w += p.w;
            } else {
                v += p;
            }
        }
        out[e] = v;
    }
}

extern "C" sr_err_t sr__cuda_embed(void *ctx, const float *table, const float *pos_table,
                                   const int32_t *items, const int32_t *pos, int n, int d,
                                   float *out, struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (n < 0 || d < 0 || (pos_table && !pos))
        return sr_error_set(err, SR_EINVAL, "cuda embed: bad arguments (n=%d d=%d)", n, d);
    if (n == 0 || d == 0)
        return SR_OK;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    bool vec = d % 4 == 0 && aligned16(table) && aligned16(out) &&
               (!pos_table || aligned16(pos_table));
    if (vec) {
        int dv = d / 4;
        embed_kernel<float4><<<ew_blocks((size_t)n * dv), EW_THREADS, 0, c->stream>>>(
            (const float4 *)table, (const float4 *)pos_table, items, pos, n, dv, (float4 *)out);
    } else {
        embed_kernel<float><<<ew_blocks((size_t)n * d), EW_THREADS, 0, c->stream>>>(
            table, pos_table, items, pos, n, d, out);
    }
    return sr__cuda_launched("embed_kernel", err);
}

extern "C" sr_err_t sr__cuda_gather_rows(void *ctx, const float *src, const int32_t *rows, int n,
                                         int d, float *out, struct sr_error *err)
{
    /* A gather without a position table is exactly embed. */
    return sr__cuda_embed(ctx, src, NULL, rows, NULL, n, d, out, err);
}

/* ---- layer norm ----------------------------------------------------------------------- */

#define LN_WARPS 4

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One warp per row: mean, then the variance about it (two passes over the row, which stays in
 * L1), then the normalised write. Each element is read and written by the same lane after
 * both reductions, so out may alias x. */
__global__ void layer_norm_kernel(const float *x, const float *__restrict__ gamma,
                                  const float *__restrict__ beta, int n, int d, float eps,
                                  float *out, bool vec)
{
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n)
        return;
    const float *xr = x + (size_t)row * d;
    float *orow = out + (size_t)row * d;
    float s = 0.f;
    if (vec) {
        const float4 *x4 = (const float4 *)xr;
        for (int c = lane; c < d / 4; c += 32) {
            float4 v = x4[c];
            s += (v.x + v.y) + (v.z + v.w);
        }
    } else {
        for (int c = lane; c < d; c += 32)
            s += xr[c];
    }
    float mean = warp_sum(s) / (float)d;
    float q = 0.f;
    if (vec) {
        const float4 *x4 = (const float4 *)xr;
        for (int c = lane; c < d / 4; c += 32) {
            float4 v = x4[c];
            float a = v.x - mean, b = v.y - mean, e = v.z - mean, f = v.w - mean;
            q += (a * a + b * b) + (e * e + f * f);
        }
    } else {
        for (int c = lane; c < d; c += 32) {
            float a = xr[c] - mean;
            q += a * a;
        }
    }
    float rstd = 1.0f / sqrtf(warp_sum(q) / (float)d + eps);
    if (vec) {
        const float4 *x4 = (const float4 *)xr;
        const float4 *g4 = (const float4 *)gamma, *b4 = (const float4 *)beta;
        float4 *o4 = (float4 *)orow;
        for (int c = lane; c < d / 4; c += 32) {
            float4 v = x4[c], g = g4[c], b = b4[c], r;
            r.x = (v.x - mean) * rstd * g.x + b.x;
            r.y = (v.y - mean) * rstd * g.y + b.y;
            r.z = (v.z - mean) * rstd * g.z + b.z;
            r.w = (v.w - mean) * rstd * g.w + b.w;
            o4[c] = r;
        }
    } else {
        for (int c = lane; c < d; c += 32)
            orow[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    }
}

extern "C" sr_err_t sr__cuda_layer_norm(void *ctx, const float *x, const float *gamma,
                                        const float *beta, int n, int d, float eps, float *out,
                                        struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (n < 0 || d <= 0)
        return sr_error_set(err, SR_EINVAL, "cuda layer_norm: bad shape %dx%d", n, d);
    if (n == 0)
        return SR_OK;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    bool vec = d % 4 == 0 && aligned16(x) && aligned16(out) && aligned16(gamma) &&
               aligned16(beta);
    unsigned blocks = (unsigned)((n + LN_WARPS - 1) / LN_WARPS);
    layer_norm_kernel<<<blocks, LN_WARPS * 32, 0, c->stream>>>(x, gamma, beta, n, d, eps, out,
                                                                vec);
    return sr__cuda_launched("layer_norm_kernel", err);
}

/* ---- bias + activation, add ----------------------------------------------------------- */

__device__ __forceinline__ float act_apply(float v, int act)
{
    switch (act) {
    case SR_ACT_GELU_TANH: {
        const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
        return 0.5f * v * (1.0f + tanhf(k0 * (v + 0.044715f * v * v * v)));
    }
    case SR_ACT_GELU_ERF:
        return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    case SR_ACT_RELU:
        return v > 0.f ? v : 0.f;
    default:
        return v;
    }
}

template <int ACT>
__global__ void bias_act_kernel(float *x, const float *__restrict__ bias, int n, int d)
{
    size_t total = (size_t)n * d;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        float v = x[e];
        if (bias)
            v += bias[e % d];
        x[e] = act_apply(v, ACT);
    }
}

template <int ACT>
__global__ void bias_act_kernel4(float4 *x, const float4 *__restrict__ bias, int n, int dv)
{
    size_t total = (size_t)n * dv;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        float4 v = x[e];
        if (bias) {
            float4 b = bias[e % dv];
            v.x += b.x;
            v.y += b.y;
            v.z += b.z;
            v.w += b.w;
        }
        v.x = act_apply(v.x, ACT);
        v.y = act_apply(v.y, ACT);
        v.z = act_apply(v.z, ACT);
        v.w = act_apply(v.w, ACT);
        x[e] = v;
    }
}

template <int ACT>
static void bias_act_launch(cudaStream_t s, float *x, const float *bias, int n, int d, bool vec)
{
    if (vec)
        bias_act_kernel4<ACT><<<ew_blocks((size_t)n * (d / 4)), EW_THREADS, 0, s>>>(
            (float4 *)x, (const float4 *)bias, n, d / 4);
    else
        bias_act_kernel<ACT><<<ew_blocks((size_t)n * d), EW_THREADS, 0, s>>>(x, bias, n, d);
}

extern "C" sr_err_t sr__cuda_bias_act(void *ctx, float *x, const float *bias, int n, int d,
                                      sr_act_t act, struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (n < 0 || d < 0)
        return sr_error_set(err, SR_EINVAL, "cuda bias_act: bad shape %dx%d", n, d);
    if (n == 0 || d == 0 || (!bias && act == SR_ACT_NONE))
        return SR_OK;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    bool vec = d % 4 == 0 && aligned16(x) && (!bias || aligned16(bias));
    switch (act) {
    case SR_ACT_NONE:
        bias_act_launch<SR_ACT_NONE>(c->stream, x, bias, n, d, vec);
        break;
    case SR_ACT_GELU_TANH:
        bias_act_launch<SR_ACT_GELU_TANH>(c->stream, x, bias, n, d, vec);
        break;
    case SR_ACT_GELU_ERF:
        bias_act_launch<SR_ACT_GELU_ERF>(c->stream, x, bias, n, d, vec);
        break;
    case SR_ACT_RELU:
        bias_act_launch<SR_ACT_RELU>(c->stream, x, bias, n, d, vec);
        break;
    default:
        return sr_error_set(err, SR_EINVAL, "cuda bias_act: unknown activation %d", (int)act);
    }
    return sr__cuda_launched("bias_act_kernel", err);
}

__global__ void add_kernel(float *x, const float *y, size_t n)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x)
        x[e] += y[e];
}

__global__ void add_kernel4(float4 *x, const float4 *y, size_t n4)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n4;
         e += (size_t)gridDim.x * blockDim.x) {
        float4 a = x[e], b = y[e];
        a.x += b.x;
        a.y += b.y;
        a.z += b.z;
        a.w += b.w;
        x[e] = a;
    }
}

extern "C" sr_err_t sr__cuda_add(void *ctx, float *x, const float *y, size_t n,
                                 struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (n == 0)
        return SR_OK;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    if (aligned16(x) && aligned16(y)) {
        size_t n4 = n / 4;
        if (n4)
            add_kernel4<<<ew_blocks(n4), EW_THREADS, 0, c->stream>>>((float4 *)x,
                                                                     (const float4 *)y, n4);
        if (n % 4)
            add_kernel<<<1, 32, 0, c->stream>>>(x + n4 * 4, y + n4 * 4, n % 4);
    } else {
        add_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(x, y, n);
    }
    return sr__cuda_launched("add_kernel", err);
}

/* ---- GRU gates ------------------------------------------------------------------------ */

__device__ __forceinline__ float sigmoidf_(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

/* gi, gh: n×3H (r | z | n); h: n×H updated in place. */
__global__ void gru_gates_kernel(const float *__restrict__ gi, const float *__restrict__ gh,
                                 float *h, int n, int H)
{
    size_t total = (size_t)n * H;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t i = e / H, j = e % H, g = i * 3 * (size_t)H + j;
        float r = sigmoidf_(gi[g] + gh[g]);
        float z = sigmoidf_(gi[g + H] + gh[g + H]);
        float cn = tanhf(gi[g + 2 * (size_t)H] + r * gh[g + 2 * (size_t)H]);
        h[e] = (1.0f - z) * cn + z * h[e];
    }
}

extern "C" sr_err_t sr__cuda_gru_gates(void *ctx, const float *gi, const float *gh, float *h,
                                       int n, int H, struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (n < 0 || H < 0)
        return sr_error_set(err, SR_EINVAL, "cuda gru_gates: bad shape %dx%d", n, H);
    if (n == 0 || H == 0)
        return SR_OK;
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    gru_gates_kernel<<<ew_blocks((size_t)n * H), EW_THREADS, 0, c->stream>>>(gi, gh, h, n, H);
    return sr__cuda_launched("gru_gates_kernel", err);
}
