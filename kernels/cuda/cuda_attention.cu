/* cuda_attention.cu — causal multi-head self-attention over B variable-length sessions packed
 * in one T×3d qkv buffer (q | k | v, heads contiguous in each, as HF GPT-2 splits c_attn).
 *
 * Grid: (session, head, chunk of ATT_QB queries). A block walks the session's keys in tiles of
 * ATT_KT rows held in shared memory (K padded against bank conflicts, V, and the block's
 * queries pre-scaled by 1/sqrt(d_head)), and keeps an online softmax per query: each warp owns
 * ATT_QPW queries; a lane scores one key per 32 of the tile, the warp reduces the tile max and
 * sum, and lanes accumulate the output columns c ≡ lane (mod 32). Only keys ≤ the block's last
 * query are loaded (causal), so the work of a chunk is bounded by its position. */
#include <math.h>

#include "cuda_int.h"

#define ATT_WARPS 4
#define ATT_QPW 4                       /* queries per warp */
#define ATT_QB (ATT_WARPS * ATT_QPW)    /* queries per block */
#define ATT_KPL 2                       /* keys per lane per tile */
#define ATT_KT (32 * ATT_KPL)           /* keys per tile */
#define ATT_MAX_DHEAD 256

static size_t att_smem_bytes(int dh)
{
    return sizeof(float) * ((size_t)ATT_KT * (dh + 1) + (size_t)ATT_KT * dh + (size_t)ATT_QB * dh);
}

/* NT: output columns per lane (d_head ≤ 32·NT). */
template <int NT>
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_kernel(const float *__restrict__ qkv, const int32_t *__restrict__ offsets, int n_heads,
                 int dh, float scale, float *__restrict__ out)
{
    extern __shared__ float att_smem[];
    const int b = blockIdx.x, h = blockIdx.y;
    const int start = offsets[b], L = offsets[b + 1] - start;
    const int d = n_heads * dh, ld = 3 * d;
    const int kst = dh + 1;             /* padded K row stride */
    float *Ks = att_smem;               /* [ATT_KT][dh+1] */
    float *Vs = Ks + ATT_KT * kst;      /* [ATT_KT][dh] */
    float *Qs = Vs + ATT_KT * dh;       /* [ATT_QB][dh] */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float *base = qkv + (size_t)start * ld + (size_t)h * dh;

    /* Normally one chunk per block (gridDim.z covers max_len); the stride keeps a session
     * longer than max_len correct instead of leaving rows unwritten. */
    for (int q0 = blockIdx.z * ATT_QB; q0 < L; q0 += gridDim.z * ATT_QB) {
        const int q1 = min(L, q0 + ATT_QB); /* queries [q0, q1); keys needed: [0, q1) */
        __syncthreads(); /* Qs of a previous chunk consumed */
        /* Queries of the block, scaled. Local query slot s ↔ position q0 + s. */
        for (int e = threadIdx.x; e < ATT_QB * dh; e += blockDim.x) {
            int s = e / dh, c = e % dh;
            Qs[e] = (q0 + s < q1) ? base[(size_t)(q0 + s) * ld + c] * scale : 0.f;
        }
        /* Warp w owns slots w, w + ATT_WARPS, ... (interleaved: causal work stays balanced). */
        float acc[ATT_QPW][NT], m[ATT_QPW], l[ATT_QPW];
#pragma unroll
        for (int u = 0; u < ATT_QPW; u++) {
            m[u] = -INFINITY;
            l[u] = 0.f;
#pragma unroll
            for (int t = 0; t < NT; t++)
                acc[u][t] = 0.f;
        }

        for (int k0 = 0; k0 < q1; k0 += ATT_KT) {
            const int kn = min(ATT_KT, q1 - k0);
            __syncthreads(); /* previous tile consumed (and Qs written, first time) */
            for (int e = threadIdx.x; e < kn * dh; e += blockDim.x) {
                int r = e / dh, c = e % dh;
                const float *row = base + (size_t)(k0 + r) * ld;
                Ks[r * kst + c] = row[d + c];
                Vs[r * dh + c] = row[2 * d + c];
            }
            __syncthreads();
#pragma unroll
            for (int u = 0; u < ATT_QPW; u++) {
                const int s = warp + u * ATT_WARPS, qi = q0 + s;
                if (qi >= q1 || k0 > qi)
                    continue; /* warp-uniform */
                const float *qv = Qs + s * dh;
                const int last = min(kn - 1, qi - k0); /* last visible key of this tile */
                float sc[ATT_KPL];
                float tmax = -INFINITY;
#pragma unroll
                for (int p = 0; p < ATT_KPL; p++) {
                    int j = lane + 32 * p;
                    float v = -INFINITY;
                    if (j <= last) {
                        const float *kr = Ks + j * kst;
                        float a = 0.f;
                        for (int c = 0; c < dh; c++)
                            a = fmaf(qv[c], kr[c], a);
                        v = a;
                    }
                    sc[p] = v;
                    tmax = fmaxf(tmax, v);
                }
                for (int o = 16; o > 0; o >>= 1)
                    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
                const float mnew = fmaxf(m[u], tmax); /* finite: key k0 ≤ qi is visible */
                const float corr = expf(m[u] - mnew);
                float psum = 0.f;
#pragma unroll
                for (int p = 0; p < ATT_KPL; p++) {
                    sc[p] = (lane + 32 * p <= last) ? expf(sc[p] - mnew) : 0.f;
                    psum += sc[p];
                }
                for (int o = 16; o > 0; o >>= 1)
                    psum += __shfl_xor_sync(0xffffffffu, psum, o);
                l[u] = l[u] * corr + psum;
                m[u] = mnew;
#pragma unroll
                for (int t = 0; t < NT; t++)
                    acc[u][t] *= corr;
#pragma unroll
                for (int p = 0; p < ATT_KPL; p++) {
                    const int jmax = min(31, last - 32 * p);
                    for (int jj = 0; jj <= jmax; jj++) {
                        const float pj = __shfl_sync(0xffffffffu, sc[p], jj);
                        const float *vr = Vs + (32 * p + jj) * dh;
#pragma unroll
                        for (int t = 0; t < NT; t++) {
                            int c = lane + 32 * t;
                            if (c < dh)
                                acc[u][t] = fmaf(pj, vr[c], acc[u][t]);
                        }
                    }
                }
            }
        }

#pragma unroll
        for (int u = 0; u < ATT_QPW; u++) {
            const int qi = q0 + warp + u * ATT_WARPS;
            if (qi >= q1)
                continue;
            const float inv = 1.0f / l[u];
            float *orow = out + (size_t)(start + qi) * d + (size_t)h * dh;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                int c = lane + 32 * t;
                if (c < dh)
                    orow[c] = acc[u][t] * inv;
            }
        }
    }
}

template <int NT>
static sr_err_t att_launch(struct sr__cuda_ctx *c, dim3 grid, size_t smem, const float *qkv,
                           const int32_t *offsets, int n_heads, int dh, float scale, float *out,
                           struct sr_error *err)
{
    sr_err_t rc;
    if (smem > 48 * 1024 &&
        (rc = sr__cuda_check(cudaFuncSetAttribute(attention_kernel<NT>,
                                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  (int)smem),
                             "cudaFuncSetAttribute (attention)", err)))
        return rc;
    attention_kernel<NT><<<grid, ATT_WARPS * 32, smem, c->stream>>>(qkv, offsets, n_heads, dh,
                                                                   scale, out);
    return sr__cuda_launched("attention_kernel", err);
}

extern "C" sr_err_t sr__cuda_attention(void *ctx, const float *qkv, const int32_t *offsets,
                                       int B, int max_len, int n_heads, int d_head, float *out,
                                       struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (B < 0 || max_len < 0 || n_heads <= 0 || d_head <= 0)
        return sr_error_set(err, SR_EINVAL,
                            "cuda attention: bad shape B=%d max_len=%d heads=%d d_head=%d", B,
                            max_len, n_heads, d_head);
    if (d_head > ATT_MAX_DHEAD)
        return sr_error_set(err, SR_EUNSUPPORTED,
                            "cuda attention: d_head %d exceeds the supported %d", d_head,
                            ATT_MAX_DHEAD);
    if (B == 0 || max_len == 0)
        return SR_OK;
    if (n_heads > 65535)
        return sr_error_set(err, SR_EUNSUPPORTED, "cuda attention: %d heads is too many",
                            n_heads);
    if ((rc = sr__cuda_enter(c, err)))
        return rc;
    size_t smem = att_smem_bytes(d_head);
    if (smem > c->smem_optin)
        return sr_error_set(err, SR_EUNSUPPORTED,
                            "cuda attention: d_head %d needs %zu bytes of shared memory (%zu)",
                            d_head, smem, c->smem_optin);
    unsigned chunks = (unsigned)((max_len + ATT_QB - 1) / ATT_QB);
    if (chunks > 65535)
        return sr_error_set(err, SR_EUNSUPPORTED, "cuda attention: max_len %d is too long",
                            max_len);
    dim3 grid((unsigned)B, (unsigned)n_heads, chunks);
    float scale = 1.0f / sqrtf((float)d_head);
    if (d_head <= 32)
        return att_launch<1>(c, grid, smem, qkv, offsets, n_heads, d_head, scale, out, err);
    if (d_head <= 64)
        return att_launch<2>(c, grid, smem, qkv, offsets, n_heads, d_head, scale, out, err);
    if (d_head <= 128)
        return att_launch<4>(c, grid, smem, qkv, offsets, n_heads, d_head, scale, out, err);
    return att_launch<8>(c, grid, smem, qkv, offsets, n_heads, d_head, scale, out, err);
}
