/* cuda_topk.cu — exact top-k of B query vectors over the catalogue rows first..V-1 without the
 * B×V score matrix: the catalogue is scored in tiles (cublasSgemm Q·E_tileᵀ into a B×tile
 * scratch) and one block per query row folds each tile into that row's running top-k.
 *
 * Ordering: every candidate is a 64-bit key (order-preserving bits of the score << 32 |
 * ~index), so "score descending, ties to the lower index" is plain unsigned order and all keys
 * are distinct. Per tile and row: exclusions are marked NaN in the scratch; keys above the
 * row's current k-th key are compacted into shared memory; if more than fit, a radix select
 * over the tile finds the k-th best key and compaction is redone above it; the survivors are
 * bitonic-sorted and merged with the running list by rank. A final kernel turns keys into
 * (index, score), padding with -1 / -INF. Scratch lives in the context and grows on demand. */
#include <math.h>
#include <stdint.h>

#include "cuda_int.h"

typedef unsigned long long u64;

#define TK_THREADS 256
#define TK_SCRATCH_FLOATS ((size_t)16 << 20) /* 64 MiB of tile scores, split over B rows */
#define TK_TILE_MIN 2048
#define TK_TILE_MAX 65536

extern "C" void sr__cuda_topk_set_tile(void *ctx, int rows)
{
    ((struct sr__cuda_ctx *)ctx)->topk_tile = rows > 0 ? rows : 0;
}

extern "C" void sr__cuda_topk_release(struct sr__cuda_ctx *c)
{
    void *p[] = {c->tk_scores, c->tk_keys, c->tk_count, c->tk_idx, c->tk_score};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        sr__cuda_free_scratch(c, p[i]);
    c->tk_scores = NULL;
    c->tk_keys = NULL;
    c->tk_count = NULL;
    c->tk_idx = NULL;
    c->tk_score = NULL;
    c->tk_scores_cap = c->tk_keys_cap = c->tk_count_cap = c->tk_idx_cap = c->tk_score_cap = 0;
}

/* ---- keys ----------------------------------------------------------------------------- */

__device__ __forceinline__ uint32_t f2ord(float f)
{
    uint32_t b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float ord2f(uint32_t u)
{
    uint32_t b = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
    return __uint_as_float(b);
}

/* Key of score s at catalogue index j; 0 never occurs for a real (non-NaN) score. */
__device__ __forceinline__ u64 make_key(float s, int j)
{
    if (s == 0.0f)
        s = 0.0f; /* -0 and +0 are equal scores: tie on index, not on sign */
    return ((u64)f2ord(s) << 32) | (u64)(0xffffffffu - (uint32_t)j);
}

/* Key of tile element t, or 0 when not eligible: excluded (NaN mark) or scoring -INF (the
 * item filter's mark, sr_model_set_item_filter; the cpu backend never returns -INF either). */
__device__ __forceinline__ u64 tile_key(const float *srow, const float *bias, int j0, int t)
{
    float s = srow[t];
    if (isnan(s))
        return 0;
    if (bias)
        s += bias[j0 + t];
    if (s == -INFINITY || isnan(s))
        return 0;
    return make_key(s, j0 + t);
}

/* ---- per-row selection ---------------------------------------------------------------- */

struct tk_shared {
    int nc;         /* candidates seen by the compaction */
    int rem;        /* radix select: rank still wanted inside the current bucket */
    int done;
    u64 prefix;
    int hist[256];
};

/* Appends every tile key with key > gt and key >= ge to cand[] (up to cap; s->nc counts all).
 * Warp-aggregated atomics; the loop trip count is block-uniform so ballots see full warps. */
__device__ void tk_compact(const float *srow, const float *bias, int j0, int n, u64 gt, u64 ge,
                           u64 *cand, int cap, tk_shared *s)
{
    const int lane = threadIdx.x % 32;
    for (int base = 0; base < n; base += blockDim.x) {
        int t = base + threadIdx.x;
        u64 key = t < n ? tile_key(srow, bias, j0, t) : 0;
        bool take = key != 0 && key > gt && key >= ge;
        unsigned mask = __ballot_sync(0xffffffffu, take);
        if (!mask)
            continue;
        int leader = __ffs(mask) - 1, slot0 = 0;
        if (lane == leader)
            slot0 = atomicAdd(&s->nc, __popc(mask));
        slot0 = __shfl_sync(0xffffffffu, slot0, leader);
        if (take) {
            int slot = slot0 + __popc(mask & ((1u << lane) - 1u));
            if (slot < cap)
                cand[slot] = key;
        }
    }
}

/* Smallest key K such that exactly `k` tile keys above `gt` are >= K (needs at least k of
 * them). MSB-first radix select on 8-bit digits; stops as soon as a whole bucket is taken. */
__device__ u64 tk_radix_select(const float *srow, const float *bias, int j0, int n, u64 gt, int k,
                               tk_shared *s)
{
    if (threadIdx.x == 0) {
        s->prefix = 0;
        s->rem = k;
        s->done = 0;
    }
    u64 mask = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x)
            s->hist[i] = 0;
        __syncthreads();
        const u64 prefix = s->prefix;
        for (int t = threadIdx.x; t < n; t += blockDim.x) {
            u64 key = tile_key(srow, bias, j0, t);
            if (key != 0 && key > gt && (key & mask) == prefix)
                atomicAdd(&s->hist[(key >> shift) & 255u], 1);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int cum = 0;
            for (int dg = 255; dg >= 0; dg--) {
                int h = s->hist[dg];
                if (cum + h >= s->rem) {
                    s->prefix = prefix | ((u64)dg << shift);
                    s->rem -= cum;
                    s->done = h == s->rem;
                    break;
                }
                cum += h;
            }
        }
        __syncthreads();
        mask |= (u64)255u << shift;
        if (s->done)
            break;
    }
    return s->prefix;
}

/* Number of keys in a[0..n) (descending) greater than x. */
__device__ __forceinline__ int count_greater(const u64 *a, int n, u64 x)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (a[mid] > x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* One block per query row: folds tile scores srow[0..n) (catalogue rows j0..j0+n) into the
 * row's running top-k keys[row][0..count) (descending). Shared memory: cand[cap] | run[k]. */
__global__ void __launch_bounds__(TK_THREADS)
topk_select_kernel(float *scores, int n, int j0, const float *__restrict__ bias,
                   const int32_t *__restrict__ excl_offsets, const int32_t *__restrict__ excl_items,
                   u64 *keys, int *counts, int k, int cap)
{
    extern __shared__ u64 tk_smem[];
    __shared__ tk_shared s;
    u64 *cand = tk_smem, *run = tk_smem + cap;
    const int row = blockIdx.x;
    float *srow = scores + (size_t)row * n;
    u64 *krow = keys + (size_t)row * k;

    if (excl_offsets) {
        for (int e = excl_offsets[row] + threadIdx.x; e < excl_offsets[row + 1]; e += blockDim.x) {
            int j = excl_items[e];
            if (j >= j0 && j - j0 < n)
                srow[j - j0] = __int_as_float(0x7fc00000); /* NaN: not eligible */
        }
    }
    if (threadIdx.x == 0)
        s.nc = 0;
    __syncthreads(); /* exclusion marks visible; nc zeroed */

    const int nr = counts[row];
    const u64 thr = nr == k ? krow[k - 1] : 0;
    tk_compact(srow, bias, j0, n, thr, 0, cand, cap, &s);
    __syncthreads();
    int nc = s.nc;
    if (nc > cap) {
        u64 kth = tk_radix_select(srow, bias, j0, n, thr, k, &s);
        if (threadIdx.x == 0)
            s.nc = 0;
        __syncthreads();
        tk_compact(srow, bias, j0, n, thr, kth, cand, cap, &s);
        __syncthreads();
        nc = s.nc; /* == k */
    }
    if (nc == 0)
        return; /* block-uniform */

    for (int i = threadIdx.x; i < nr; i += blockDim.x)
        run[i] = krow[i];
    int P = 1;
    while (P < nc)
        P <<= 1;
    for (int i = nc + threadIdx.x; i < P; i += blockDim.x)
        cand[i] = 0;
    __syncthreads();

    /* Bitonic sort, descending overall. */
    for (int size = 2; size <= P; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < (P >> 1); i += blockDim.x) {
                int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                bool desc = (lo & size) == 0;
                u64 a = cand[lo], b = cand[hi];
                if ((a < b) == desc) {
                    cand[lo] = b;
                    cand[hi] = a;
                }
            }
            __syncthreads();
        }
    }

    /* Merge by rank: keys are distinct, so every survivor gets its own slot. */
    const int nc2 = min(nc, k);
    for (int i = threadIdx.x; i < nc2; i += blockDim.x) {
        int pos = i + count_greater(run, nr, cand[i]);
        if (pos < k)
            krow[pos] = cand[i];
    }
    for (int r = threadIdx.x; r < nr; r += blockDim.x) {
        int pos = r + count_greater(cand, nc2, run[r]);
        if (pos < k)
            krow[pos] = run[r];
    }
    if (threadIdx.x == 0)
        counts[row] = min(k, nr + nc2);
}

__global__ void topk_finish_kernel(const u64 *__restrict__ keys, const int *__restrict__ counts,
                                   int k, int32_t *idx, float *score)
{
    const int row = blockIdx.x, cnt = counts[row];
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        size_t o = (size_t)row * k + i;
        if (i < cnt) {
            u64 key = keys[o];
            idx[o] = (int32_t)(0xffffffffu - (uint32_t)(key & 0xffffffffu));
            score[o] = ord2f((uint32_t)(key >> 32));
        } else {
            idx[o] = -1;
            score[o] = -INFINITY;
        }
    }
}

/* ---- entry point ---------------------------------------------------------------------- */

static size_t tk_cap(int k)
{
    size_t cap = 1024;
    while (cap < 2 * (size_t)k)
        cap <<= 1;
    return cap;
}

extern "C" sr_err_t sr__cuda_topk(void *ctx, const float *q, int B, const float *table,
                                  const float *bias, int d, int first, int V,
                                  const int32_t *excl_offsets, const int32_t *excl_items, int k,
                                  int32_t *host_idx, float *host_score, struct sr_error *err)
{
    struct sr__cuda_ctx *c = (struct sr__cuda_ctx *)ctx;
    sr_err_t rc;
    if (B < 0 || d < 0 || k < 0 || first < 0 || V < 0)
        return sr_error_set(err, SR_EINVAL,
                            "cuda topk: bad arguments B=%d d=%d k=%d first=%d V=%d", B, d, k,
                            first, V);
    if (B == 0 || k == 0)
        return SR_OK;
    if (first >= V) { /* nothing eligible */
        for (size_t i = 0; i < (size_t)B * k; i++) {
            host_idx[i] = -1;
            host_score[i] = -INFINITY;
        }
        return SR_OK;
    }
    const size_t cap = tk_cap(k);
    const size_t smem = (cap + (size_t)k) * sizeof(u64);
    if (smem + sizeof(tk_shared) > c->smem_optin)
        return sr_error_set(err, SR_EUNSUPPORTED,
                            "cuda topk: k=%d needs %zu bytes of shared memory per block, the "
                            "device has %zu",
                            k, smem + sizeof(tk_shared), c->smem_optin);
    if ((rc = sr__cuda_enter(c, err)))
        return rc;

    const int span = V - first;
    size_t tile = (size_t)c->topk_tile;
    if (tile == 0) {
        tile = TK_SCRATCH_FLOATS / (size_t)B;
        tile = tile < TK_TILE_MIN ? TK_TILE_MIN : tile > TK_TILE_MAX ? TK_TILE_MAX : tile;
        tile &= ~(size_t)31;
    }
    if (tile > (size_t)span)
        tile = (size_t)span;

    const size_t nbk = (size_t)B * k;
    if ((rc = sr__cuda_grow(c, (void **)&c->tk_scores, &c->tk_scores_cap,
                            (size_t)B * tile * sizeof(float), "topk tile scores", err)) ||
        (rc = sr__cuda_grow(c, (void **)&c->tk_keys, &c->tk_keys_cap, nbk * sizeof(u64),
                            "topk running keys", err)) ||
        (rc = sr__cuda_grow(c, (void **)&c->tk_count, &c->tk_count_cap, (size_t)B * sizeof(int),
                            "topk counts", err)) ||
        (rc = sr__cuda_grow(c, (void **)&c->tk_idx, &c->tk_idx_cap, nbk * sizeof(int32_t),
                            "topk indices", err)) ||
        (rc = sr__cuda_grow(c, (void **)&c->tk_score, &c->tk_score_cap, nbk * sizeof(float),
                            "topk scores", err)))
        return rc;
    /* The 48 KiB default covers static + dynamic shared memory together. */
    if (smem + sizeof(tk_shared) > 48 * 1024 &&
        (rc = sr__cuda_check(cudaFuncSetAttribute(topk_select_kernel,
                                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  (int)smem),
                             "cudaFuncSetAttribute (topk)", err)))
        return rc;
    if ((rc = sr__cuda_check(cudaMemsetAsync(c->tk_count, 0, (size_t)B * sizeof(int), c->stream),
                             "cudaMemsetAsync (topk counts)", err)))
        return rc;

    const bool excl = excl_offsets && excl_items;
    const float one = 1.0f, zero = 0.0f;
    const int ldd = d > 0 ? d : 1; /* d = 0: all dot products are 0; cuBLAS wants ld >= 1 */
    for (int j0 = first; j0 < V; j0 += (int)tile) {
        const int n = (int)((size_t)(V - j0) < tile ? (size_t)(V - j0) : tile);
        /* scores[B×n] = Q[B×d] · E[j0..j0+n)ᵀ, row-major; column-major that is E_tile·Qᵀ. */
        if ((rc = sr__cublas_check(c, c->cb->sgemm(c->blas, SR__CUBLAS_OP_T, SR__CUBLAS_OP_N, n,
                                                   B, d, &one, table + (size_t)j0 * d, ldd, q,
                                                   ldd, &zero, c->tk_scores, n),
                                   "cublasSgemm (topk tile)", err)))
            return rc;
        topk_select_kernel<<<B, TK_THREADS, smem, c->stream>>>(
            c->tk_scores, n, j0, bias, excl ? excl_offsets : NULL, excl ? excl_items : NULL,
            c->tk_keys, c->tk_count, k, (int)cap);
        if ((rc = sr__cuda_launched("topk_select_kernel", err)))
            return rc;
    }
    topk_finish_kernel<<<B, 128, 0, c->stream>>>(c->tk_keys, c->tk_count, k, c->tk_idx,
                                                  c->tk_score);
    if ((rc = sr__cuda_launched("topk_finish_kernel", err)))
        return rc;
    if ((rc = sr__cuda_check(cudaMemcpyAsync(host_idx, c->tk_idx, nbk * sizeof(int32_t),
                                             cudaMemcpyDeviceToHost, c->stream),
                             "cudaMemcpyAsync (topk indices)", err)) ||
        (rc = sr__cuda_check(cudaMemcpyAsync(host_score, c->tk_score, nbk * sizeof(float),
                                             cudaMemcpyDeviceToHost, c->stream),
                             "cudaMemcpyAsync (topk scores)", err)))
        return rc;
    return sr__cuda_check(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize (topk)", err);
}
