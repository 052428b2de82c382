/* model_int.h — private to kernels/: the model's body shared by model.c (life cycle, weight
 * upload, scratch, top-k) and the architectures (gpt2.c, gru4rec.c). Weights and scratch are
 * backend memory; scratch buffers grow as needed and are kept, so steady-state batches
 * allocate nothing. A model is driven by one thread at a time. */
#ifndef SR_MODEL_INT_H
#define SR_MODEL_INT_H

#include "kernels_int.h"

struct sr__gpt2_layer {
    const float *ln1_g, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b;
    const float *ln2_g, *ln2_b, *fc_w, *fc_b, *fc2_w, *fc2_b;
};

struct sr__gru_layer {
    const float *w_ih, *w_hh, *b_ih, *b_hh;
    void *packed; /* backend gru_pack of w_ih, w_hh (owned), or NULL */
};

/* Backend scratch slots. */
enum sr__mbuf {
    SR__MB_X, SR__MB_H, SR__MB_QKV, SR__MB_ATT, SR__MB_FF, SR__MB_XL, SR__MB_AL, SR__MB_GH,
    SR__MB_ITEMS, SR__MB_POS, SR__MB_OFF, SR__MB_LAST, SR__MB_IOTA, SR__MB_VECS,
    SR__MB_EXCL_OFF, SR__MB_EXCL, SR__MB_H0, SR__MB_HS /* gru4rec states in, out */,
    SR__MB_KV_QKV, SR__MB_KV_LN /* gpt2 encode cache: new rows' q|k|v, last new rows */,
    SR__MB_COUNT
};
/* Host scratch slots (int32 unless said). */
enum sr__hbuf {
    SR__HB_ITEMS, SR__HB_POS, SR__HB_OFF, SR__HB_LAST, SR__HB_IOTA, SR__HB_ORDER, SR__HB_LEN,
    SR__HB_TSTART, SR__HB_ZERO /* floats, all zero */,
    SR__HB_RS_IDX, SR__HB_RS_SCORE, SR__HB_RS_Q /* re-scoring: candidates, their scores, queries */,
    SR__HB_FQ, SR__HB_FID, SR__HB_FSC, SR__HB_FVEC, /* FAISS retrieval (retrieval.c) */
    SR__HB_FIRST, SR__HB_GROUP, SR__HB_GSTEPS, SR__HB_H0, /* incremental gru4rec (int32, */
    SR__HB_STATE_IN, SR__HB_STATE_OUT,                     /* then floats) */
    SR__HB_KV /* gpt2 encode cache: per-batch host arrays */,
    SR__HB_COUNT
};

struct sr__buf {
    void *p;
    size_t cap;
};

struct sr_model {
    int refs;                              /* atomic */
    sr_bundle_t *bundle;
    sr_backend_t *be;
    const struct sr_backend_iface *bi;
    void *bctx;
    const struct sr_bundle_info *info;
    int d, V, first, max_len;
    bool in_place;                         /* host backend: bundle tensors used without copy */
    bool pinned;                           /* emb is pinned with the backend (topk_pin) */
    void **owned;                          /* backend allocations holding weights */
    int n_owned, cap_owned;
    const float *emb, *out_bias;           /* [V×d], [V] or NULL */
    const float *filt_bias;                /* output.bias + item rules (-INF: excluded), or NULL */
    const float *host_emb, *host_bias;     /* the bundle's host copies, for re-scoring */
    void *filt_buf;                        /* backend allocation behind filt_bias */
    /* gpt2 */
    const float *wpe, *lnf_g, *lnf_b;
    struct sr__gpt2_layer *gl;
    /* gru4rec */
    struct sr__gru_layer *rl;
    uint64_t state_id;                     /* identity of its encoder states; 0: not computed */
    struct sr__kv *kv;                     /* gpt2 encode cache, or NULL (kvcache.c) */
    /* retrieval (retrieval.c): FAISS when use_faiss, else exact */
    bool use_faiss;
    const struct sr_faiss *faiss;          /* the bundle's index or a borrowed override */
    int nprobe, ef_search;
    const float *hemb, *hbias;             /* host views of the item table and output.bias */
    uint8_t *allowed;                      /* host copy of the item filter [V], or NULL */
    int32_t n_allowed;                     /* allowed items in first..V-1 */
    char rname[96];                        /* sr_model_retrieval_name */
    struct sr__buf mb[SR__MB_COUNT];
    struct sr__buf hb[SR__HB_COUNT];
};

/* Backend scratch slot of at least `bytes` (grown, contents not kept); NULL + err on OOM. */
void *sr__model_buf(sr_model_t *m, enum sr__mbuf slot, size_t bytes, struct sr_error *err);
/* Host scratch slot of at least `bytes` (grown, contents not kept; SR__HB_ZERO is zeroed). */
void *sr__model_host(sr_model_t *m, enum sr__hbuf slot, size_t bytes, struct sr_error *err);
/* A weight tensor in backend memory, checked against the expected shape (ndim dims). */
const float *sr__model_weight(sr_model_t *m, const char *name, int ndim, const int64_t *shape,
                              struct sr_error *err);

/* Exact top-k of host queries (sr_model_topk's contract), whatever the retrieval mode. */
sr_err_t sr__model_topk_exact(sr_model_t *m, int32_t n, const float *vecs, const int32_t *eo,
                              const int32_t *ei, int k, int32_t *out_idx, float *out_score,
                              struct sr_error *err);
/* retrieval.c: top-k through the FAISS index, same contract (host queries). */
sr_err_t sr__model_topk_faiss(sr_model_t *m, int32_t n, const float *vecs, const int32_t *eo,
                              const int32_t *ei, int k, int32_t *out_idx, float *out_score,
                              struct sr_error *err);

/* Returns from the enclosing function when x is not SR_OK (the forward passes chain many ops). */
#define TRY(x)                                                                                     \
    do {                                                                                           \
        sr_err_t rc_ = (x);                                                                        \
        if (rc_ != SR_OK)                                                                          \
            return rc_;                                                                            \
    } while (0)

sr_err_t sr__gpt2_bind(sr_model_t *m, struct sr_error *err);
/* Session vectors into backend memory vecs (B×d). */
sr_err_t sr__gpt2_encode(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                         struct sr_error *err);
double sr__gpt2_flops(const sr_model_t *m, int64_t tokens, int32_t n);

/* sr__gpt2_encode with a capture: after each layer's q|k|v projection (T×3d backend rows,
 * session s at rows ho[s] .. ho[s+1]-1, host offsets) fn sees them; an error stops the encode. */
struct sr__gpt2_capture {
    sr_err_t (*fn)(void *opaque, int layer, const float *qkv, const int32_t *ho,
                   struct sr_error *err);
    void *opaque;
};
sr_err_t sr__gpt2_forward(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                          const struct sr__gpt2_capture *cap, struct sr_error *err);

/* The gpt2 encode cache (kvcache.c, DESIGN §3.1). */
struct sr__kv;
sr_err_t sr__kv_new(sr_model_t *m, size_t bytes, struct sr__kv **out, struct sr_error *err);
void sr__kv_free(sr_model_t *m, struct sr__kv *kv);
void sr__kv_stats(const struct sr__kv *kv, struct sr_encode_cache_stats *out);
/* sr_model_encode through the cache: vecs on the host. */
sr_err_t sr__gpt2_encode_cached(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                                struct sr_error *err);

sr_err_t sr__gru4rec_bind(sr_model_t *m, struct sr_error *err);
sr_err_t sr__gru4rec_encode(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                            struct sr_error *err);
double sr__gru4rec_flops(const sr_model_t *m, int64_t tokens, int32_t n);
/* Incremental encoding (DESIGN §3.1): the size of a session's state (0: not resumable on this
 * backend) and sr_model_encode_resume's body (vecs on the host). */
size_t sr__gru4rec_state_size(const sr_model_t *m);
sr_err_t sr__gru4rec_encode_resume(sr_model_t *m, const struct sr_session_batch *b,
                                   struct sr_encode_states *st, float *vecs,
                                   struct sr_error *err);

#endif /* SR_MODEL_INT_H */
