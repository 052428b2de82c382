/* kernels_int.h — private to kernels/: the bundle's body, the backend function table every
 * backend fills (ggml iface + context), and the model's body. Backends see only this file. */
#ifndef SR_KERNELS_INT_H
#define SR_KERNELS_INT_H

#include "sr_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- bundle internals ----------------------------------------------------------------- */

struct sr__tensor {
    char *name;        /* full name as stored (with prefix) */
    int ndim;
    int64_t shape[4];
    float *data;       /* F32 view: into the mmap for F32, or an owned widened copy */
    bool owned;
};

struct sr__vocab_slot {
    uint64_t key;  /* sr_hash64(item_id); 0 marks an empty slot only together with index<0 */
    int32_t index;
};

struct sr_faiss;

struct sr_bundle {
    int refs;                     /* atomic */
    struct sr_bundle_info info;
    char *dir, *version, *prefix, *index_path;
    /* weights */
    void *map;                    /* mmap of the safetensors file */
    size_t map_len;
    struct sr__tensor *tensors;
    int n_tensors;
    /* vocabulary: index -> id, open-addressing key -> index */
    char **item_ids;              /* [V]; NULL for reserved indices */
    uint32_t *item_id_len;        /* [V] */
    struct sr__vocab_slot *slots; /* power-of-two table */
    uint32_t slot_mask;
    int n_attrs;
    char **attr_names;            /* [n_attrs] */
    char ***attr_values;          /* [n_attrs][V] ("" for reserved) */
    char *vocab_text;             /* backing storage for ids and attrs */
    /* retrieval.index, loaded and checked with the bundle (retrieval.c); NULL without one or
     * in a build without FAISS. Searched concurrently, never modified after load. */
    struct sr_faiss *faiss;
};

/* Zero columns an index may carry after the bias column (PQ and similar need a multiple). */
#define SR__AUG_MAX_PAD 64

/* bundle_index.c: loads b->index_path into b->faiss and checks it against the bundle (dimension,
 * metric, ntotal = V - first_index, every id in first..V-1 once); a build without FAISS leaves
 * b->faiss NULL. Messages name the index file. */
sr_err_t sr__bundle_index_load(struct sr_bundle *b, struct sr_error *err);
void sr__bundle_index_free(struct sr_bundle *b);
/* The item embedding table [V×d] and output.bias [V] (NULL when absent), host F32 views. */
const float *sr__bundle_item_table(const struct sr_bundle *b, const float **bias);

/* ---- backend function table ------------------------------------------------------------ */

/* 1: the first table. 2: the optional gru_layer slot. 3: the optional gru_layer_h0 and
 * numerics slots (incremental encoding). 4: capability flags. 5: the optional attention_rows
 * slot (the gpt2 encode cache). A table may leave optional slots NULL (designated initializers
 * do); the model checks them before use. */
#define SR_BACKEND_API_VERSION 5

/* Capabilities (struct sr_backend_iface.flags). */
#define SR_BACKEND_HOST_MEMORY 1u /* backend memory is host memory: host pointers serve as is */

/* All pointers to data are backend memory (device memory for cuda; host memory for cpu)
 * obtained from alloc, unless said otherwise. Calls are ordered on one stream: results are
 * visible to later calls; `download` waits for them. Matrices are row-major. */
struct sr_backend_iface {
    int api_version;
    const char *name;
    unsigned flags;                                   /* SR_BACKEND_* capabilities; since 4 */
    void (*destroy)(void *ctx);
    const char *(*describe)(void *ctx);

    void *(*alloc)(void *ctx, size_t bytes);          /* NULL on OOM */
    void (*free)(void *ctx, void *p);
    sr_err_t (*upload)(void *ctx, void *dst, const void *host_src, size_t bytes, struct sr_error *err);
    sr_err_t (*download)(void *ctx, void *host_dst, const void *src, size_t bytes, struct sr_error *err);

    /* C[M×N] = alpha·op(A)·op(B) + beta·C ; op(X) = X or Xᵀ. */
    sr_err_t (*gemm)(void *ctx, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
                     struct sr_error *err);
    /* out[i] = table[items[i]] (+ pos_table[pos[i]] when pos_table != NULL); n rows of d. */
    sr_err_t (*embed)(void *ctx, const float *table, const float *pos_table, const int32_t *items,
                      const int32_t *pos, int n, int d, float *out, struct sr_error *err);
    /* out = (x - mean)/sqrt(var + eps) * gamma + beta per row; out may equal x. */
    sr_err_t (*layer_norm)(void *ctx, const float *x, const float *gamma, const float *beta, int n,
                           int d, float eps, float *out, struct sr_error *err);
    /* x[n×d] = act(x + bias) (bias may be NULL; act may be SR_ACT_NONE). */
    sr_err_t (*bias_act)(void *ctx, float *x, const float *bias, int n, int d, sr_act_t act,
                         struct sr_error *err);
    /* x[i] += y[i] for n floats. */
    sr_err_t (*add)(void *ctx, float *x, const float *y, size_t n, struct sr_error *err);
    /* Causal multi-head self-attention over B packed sessions. qkv is T×3d (q | k | v, heads
     * contiguous inside each, as HF GPT-2 splits c_attn); offsets[B+1] (backend memory) bound
     * each session's rows; out is T×d. Scale 1/sqrt(d_head). max_len bounds any session. */
    sr_err_t (*attention)(void *ctx, const float *qkv, const int32_t *offsets, int B, int max_len,
                          int n_heads, int d_head, float *out, struct sr_error *err);
    /* One GRU step for n rows: gi = x·W_ihᵀ + b_ih, gh = h·W_hhᵀ + b_hh (both n×3H, gates r,z,n);
     * r = σ(gi_r+gh_r), z = σ(gi_z+gh_z), c = tanh(gi_n + r·gh_n), h = (1-z)·c + z·h. */
    sr_err_t (*gru_gates)(void *ctx, const float *gi, const float *gh, float *h, int n, int H,
                          struct sr_error *err);
    /* out[i] = src[rows[i]] for n rows of d. */
    sr_err_t (*gather_rows)(void *ctx, const float *src, const int32_t *rows, int n, int d,
                            float *out, struct sr_error *err);
    /* Exact top-k (see sr_model_topk) of q[B×d] over table[V×d] rows first..V-1, with optional
     * bias[V] and exclusion lists (backend memory, NULL for none). Results to host memory. */
    sr_err_t (*topk)(void *ctx, const float *q, int B, const float *table, const float *bias, int d,
                     int first, int V, const int32_t *excl_offsets, const int32_t *excl_items,
                     int k, int32_t *host_idx, float *host_score, struct sr_error *err);

    /* ---- api_version 2 ---- */
    /* Optional (NULL: the model runs embed, gemm, bias_act and gru_gates step by step). One
     * whole GRU layer over sessions sorted longest first with their tokens time-major: step
     * t's rows are [tstart[t], tstart[t+1]), one per session still running, in the order of the
     * first rows of step t-1. Token i's input is row x_rows[i] of x (x_rows NULL: row i), H
     * floats; w_ih, w_hh (3H×H), b_ih and b_hh (3H) as in PyTorch, gates r, z, n. Writes to out
     * (T×H, not overlapping x) the hidden state after every step, h0 = 0. tstart[L+1] is host
     * memory. Since api_version 2. */
    sr_err_t (*gru_layer)(void *ctx, const float *x, const int32_t *x_rows, const float *w_ih,
                          const float *w_hh, const float *b_ih, const float *b_hh,
                          const int32_t *tstart, int L, int H, float *out, struct sr_error *err);

    /* Optional, both or neither (NULL: topk reads the table as it is). topk_pin declares that
     * table[V×d] (rows first..V-1, backend memory) is the catalogue of topk calls to come and
     * stays unchanged until the matching topk_unpin; the backend may keep it in its own layout
     * (the cpu one packs it into panels once instead of on every call). Pins are counted per
     * (table, d, first, V). A model pins its table at load and unpins it when freed. */
    sr_err_t (*topk_pin)(void *ctx, const float *table, int d, int first, int V,
                         struct sr_error *err);
    void (*topk_unpin)(void *ctx, const float *table, int d, int first, int V);
    /* ---- api_version 3 ---- */
    /* Optional (NULL: the model recomputes every session from h0 = 0; DESIGN §3.1). gru_layer
     * resuming from given states: h0 (tstart[1] rows of H, in step 0's row order) is each
     * session's hidden state before step 0; NULL is gru_layer. A session's rows must get the
     * same bits as the step of the whole recurrence they continue, whatever else the call
     * holds (row-deterministic, the same kernel for step 0 as for later steps). */
    sr_err_t (*gru_layer_h0)(void *ctx, const float *x, const int32_t *x_rows, const float *w_ih,
                             const float *w_hh, const float *b_ih, const float *b_hh,
                             const int32_t *tstart, int L, int H, const float *h0,
                             const void *packed, float *out, struct sr_error *err);
    /* Optional with gru_layer_h0: w_ih and w_hh in the layout its kernels read, made once per
     * model (backend memory, released with free; NULL on OOM) and passed as gru_layer_h0's
     * `packed` (NULL there: packed per call). The same bits either way. */
    void *(*gru_pack)(void *ctx, const float *w_ih, const float *w_hh, int H);
    /* Optional: set only by a backend whose gemm, embed, layer_norm, bias_act and gather_rows
     * are row-deterministic (a row's bits do not depend on the other rows of the call) and whose
     * attention is per session; names what decides the bits of gru_layer_h0 on this machine
     * (the kernel variant), mixed into the identity of stored encoder states so that a state
     * computed with other arithmetic is never resumed. Required with gru_layer_h0 and for the
     * gpt2 encode cache (DESIGN §3.1). */
    const char *(*numerics)(void *ctx);
    /* ---- api_version 5 ---- */
    /* Optional (NULL: no gpt2 encode cache; DESIGN §3.1). `attention` for some rows of B
     * sessions only: session s's q|k|v rows 0..len[s]-1 (3d floats each, contiguous) are at
     * qkv[s]; its rows first[s]..len[s]-1 are written to out from row out_row[s] on (d floats
     * each). Row i must get the bits `attention` gives it in a call over the same session,
     * whatever that call's length (> i): `attention` is prefix-consistent, row i's bits depend
     * on rows 0..i alone. The host arrays qkv, first, len and out_row are read before it
     * returns; the rows qkv[s] point at are backend memory. */
    sr_err_t (*attention_rows)(void *ctx, const float *const *qkv, const int32_t *first,
                               const int32_t *len, const int32_t *out_row, int B, int max_len,
                               int n_heads, int d_head, float *out, struct sr_error *err);
};

struct sr_backend {
    int refs;
    const struct sr_backend_iface *iface;
    void *ctx;
};

/* Backend constructors (cpu always; cuda when built with SR_CUDA). */
sr_err_t sr__backend_cpu_new(int threads, const struct sr_backend_iface **iface, void **ctx,
                             struct sr_error *err);
#ifdef SR_HAVE_CUDA
sr_err_t sr__backend_cuda_new(int device, const struct sr_backend_iface **iface, void **ctx,
                              struct sr_error *err);
int sr__cuda_device_count(void);
bool sr__cuda_usable(void);
#endif

#ifdef __cplusplus
}
#endif
#endif /* SR_KERNELS_INT_H */
