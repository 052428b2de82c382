/* sr_kernels.h — the model engine: model bundles (DESIGN §3), compute backends (cpu, cuda),
 * the sequence models (gpt2, gru4rec) and exact top-k retrieval.
 * Bundles, backends and models are reference counted: a hot reload swaps a model while a
 * batch still holds the old one. A model is used by one thread at a time (the compute
 * worker); bundles are immutable after load and may be read from any thread. */
#ifndef SR_KERNELS_H
#define SR_KERNELS_H

#include "sr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- bundles -------------------------------------------------------------------------- */

typedef struct sr_bundle sr_bundle_t;

typedef enum sr_arch { SR_ARCH_GPT2 = 0, SR_ARCH_GRU4REC = 1 } sr_arch_t;
typedef enum sr_act {
    SR_ACT_NONE = 0,
    SR_ACT_GELU_TANH = 1, /* "gelu_tanh": HF gelu_new */
    SR_ACT_GELU_ERF = 2,  /* "gelu": exact erf form */
    SR_ACT_RELU = 3
} sr_act_t;

/* Read-only description of a loaded bundle; owned by the bundle. */
struct sr_bundle_info {
    const char *dir;
    const char *version;      /* copied into every recommendation as model_version */
    sr_arch_t arch;
    const char *arch_name;    /* "gpt2" | "gru4rec" */
    int d_model, n_layers, n_heads, d_ff, max_len;
    sr_act_t activation;
    float layer_norm_eps;
    int32_t n_items;          /* V: rows of the item embedding table */
    int32_t first_index;      /* indices below are reserved */
    int32_t oov_index;        /* unknown item ids map here */
    bool has_output_bias;
    int64_t n_params;         /* scalars over all model tensors */
    uint64_t weights_bytes;   /* size of the safetensors file */
    const char *weights_dtype;/* "F32", "F16", "BF16" or "mixed" */
    const char *tensor_prefix;
    const char *index_path;   /* absolute path of retrieval.index, or NULL */
    const char *index_type;   /* loaded index, e.g. "IDMap,HNSW32"; NULL when none is loaded */
    int index_nprobe;         /* retrieval.nprobe / .ef_search chosen by `bundle build-index`
                               * for its recall target; 0: not recorded */
    int index_ef_search;
};

/* Loads and checks a bundle directory (every check of DESIGN §3). On failure *out is NULL and
 * err names the file and the first problem (tensor with expected vs actual shape, vocab line,
 * JSON path). On success the caller owns one reference. */
sr_err_t sr_bundle_load(const char *dir, sr_bundle_t **out, struct sr_error *err);
/* sr_bundle_load without reading retrieval.index: what `bundle build-index` and benchmarks
 * that build their own index load (building a new index is how a bad one is replaced). */
sr_err_t sr_bundle_load_noindex(const char *dir, sr_bundle_t **out, struct sr_error *err);
sr_bundle_t *sr_bundle_ref(sr_bundle_t *b);
/* Drops one reference; frees at zero. NULL is a no-op. */
void sr_bundle_unref(sr_bundle_t *b);
const struct sr_bundle_info *sr_bundle_info(const sr_bundle_t *b);

/* F32 view of a tensor by its bundle-relative name (tensor_prefix is added internally), or
 * NULL when absent. F16/BF16 weights are widened at load; the memory is owned by the bundle.
 * shape has room for 4 dimensions; *ndim receives their count. */
const float *sr_bundle_tensor(const sr_bundle_t *b, const char *name, int *ndim, int64_t shape[4]);

/* Vocabulary. Item keys are sr_hash64 of the raw id (state stores keys, not indices). */
int32_t sr_bundle_item_index(const sr_bundle_t *b, const char *item_id, size_t len); /* oov if unknown */
int32_t sr_bundle_item_index_by_key(const sr_bundle_t *b, uint64_t key);             /* oov if unknown */
/* Raw id of an index (not NUL-terminated beyond *len... it is NUL-terminated), NULL when reserved. */
const char *sr_bundle_item_id(const sr_bundle_t *b, int32_t index, size_t *len);
/* Attribute columns of items.tsv beyond index and item_id: column number or -1. */
int sr_bundle_attr_column(const sr_bundle_t *b, const char *name);
/* Attribute value of an item ("" for reserved indices), owned by the bundle. */
const char *sr_bundle_attr(const sr_bundle_t *b, int column, int32_t index);

/* ---- backends ------------------------------------------------------------------------- */

typedef struct sr_backend sr_backend_t;

typedef enum sr_device { SR_DEVICE_AUTO = 0, SR_DEVICE_CPU = 1, SR_DEVICE_CUDA = 2 } sr_device_t;

struct sr_backend_params {
    sr_device_t device;
    int threads;     /* cpu: worker threads, 0 = all cores */
    int cuda_device; /* cuda: device ordinal */
};

/* "auto" | "cpu" | "cuda" */
sr_err_t sr_device_parse(const char *s, sr_device_t *out, struct sr_error *err);
/* True when this build has the CUDA backend and a CUDA device is present. */
bool sr_cuda_available(void);
/* Creates a backend. device=auto takes CUDA when a device exists; device=cuda without one is
 * SR_EDEVICE saying so. The caller owns one reference. */
sr_err_t sr_backend_new(const struct sr_backend_params *p, sr_backend_t **out, struct sr_error *err);
sr_backend_t *sr_backend_ref(sr_backend_t *be);
void sr_backend_unref(sr_backend_t *be);
const char *sr_backend_name(const sr_backend_t *be); /* "cpu" | "cuda" */
/* Human description: "cpu (OpenBLAS, 2 threads)", "cuda (NVIDIA H100, sm_90)". */
const char *sr_backend_describe(const sr_backend_t *be);

/* Backend memory and exact top-k over a raw table, for benchmarks (`bench retrieval`): what a
 * model does inside, without a bundle. Memory from sr_backend_alloc is the backend's (device
 * memory on cuda); the table and query pointers below are such memory. Calls are ordered on
 * the backend's stream; one thread drives a backend. */
void *sr_backend_alloc(sr_backend_t *be, size_t bytes); /* NULL when out of memory */
void sr_backend_free(sr_backend_t *be, void *p);          /* p NULL: no-op */
sr_err_t sr_backend_upload(sr_backend_t *be, void *dst, const void *host_src, size_t bytes,
                           struct sr_error *err);
/* Exact top-k of q[B×d] over table[V×d] rows first..V-1, with optional bias[V] (NULL: none),
 * as sr_model_topk orders it; k indices and scores per query to host memory. */
sr_err_t sr_backend_topk(sr_backend_t *be, const float *q, int B, const float *table,
                         const float *bias, int d, int first, int V, int k, int32_t *host_idx,
                         float *host_score, struct sr_error *err);
/* Declares table the catalogue of the topk calls to come until the matching unpin: the backend
 * may keep it in its own layout, as a model's table is at load. SR_OK and nothing done on a
 * backend without pinning. */
sr_err_t sr_backend_topk_pin(sr_backend_t *be, const float *table, int d, int first, int V,
                             struct sr_error *err);
void sr_backend_topk_unpin(sr_backend_t *be, const float *table, int d, int first, int V);

/* ---- models --------------------------------------------------------------------------- */

typedef struct sr_model sr_model_t;

/* A micro-batch of B variable-length sessions in bundle indices, oldest item first, packed:
 * session b is items[offsets[b] .. offsets[b+1]). Only the last max_len items are used. Every
 * session must hold at least one item. Optional exclusion lists (excl_offsets == NULL: none)
 * name bundle indices never to return for that session. */
struct sr_session_batch {
    int32_t n;
    const int32_t *offsets;
    const int32_t *items;
    const int32_t *excl_offsets;
    const int32_t *excl_items;
};

/* Uploads the bundle's weights to the backend. Takes a reference on both. */
sr_err_t sr_model_new(sr_bundle_t *bundle, sr_backend_t *be, sr_model_t **out, struct sr_error *err);
sr_model_t *sr_model_ref(sr_model_t *m);
void sr_model_unref(sr_model_t *m);
sr_bundle_t *sr_model_bundle(const sr_model_t *m); /* borrowed */
sr_backend_t *sr_model_backend(const sr_model_t *m); /* borrowed */

/* Session vectors: vecs is B×d_model on the host, row-major. */
sr_err_t sr_model_encode(sr_model_t *m, const struct sr_session_batch *batch, float *vecs,
                         struct sr_error *err);
/* ---- incremental encoding (DESIGN §3.1) ---------------------------------------------------
 * A session's vector is a function of the model and its last max_len items. A recurrent model
 * can keep a session's state after its items and, on the next event, run only the new items
 * from it; the vector is byte-identical to sr_model_encode's. */

/* Bytes of one session's encoder state, 0 when this model on this backend cannot resume one
 * (gpt2; a backend without gru_layer_h0, e.g. cuda): gru4rec keeps n_layers × d_model floats
 * plus a 24-byte header naming the model (weights, shape, backend arithmetic) and the items. */
size_t sr_model_state_size(const sr_model_t *m);

/* The states a batch starts from and those it leaves (host memory). */
struct sr_encode_states {
    const uint8_t *const *in;  /* [n]: the state an earlier call left for this session, or NULL
                                * (in == NULL: none at all). A state of another model, of other
                                * items or of a session past max_len is ignored, never wrong. */
    const uint32_t *in_len;    /* [n] bytes of each */
    uint8_t *out;              /* n × sr_model_state_size(m) bytes: each session's new state */
    uint8_t *out_ok;           /* [n]: 1 when out's row is a state to keep; 0 when the session is
                                * longer than max_len (the window slides: nothing to resume) */
    int32_t resumed;           /* out: sessions resumed from their state */
    int64_t steps;             /* out: recurrence steps run (sr_model_encode: Σ min(len, max_len)) */
};

/* sr_model_encode that resumes each session from its state where that is valid and leaves the
 * new states; vecs are the same bytes. SR_EUNSUPPORTED when sr_model_state_size is 0. */
sr_err_t sr_model_encode_resume(sr_model_t *m, const struct sr_session_batch *batch,
                                struct sr_encode_states *st, float *vecs, struct sr_error *err);

/* GPT-2: keep, in memory, each encoded session's q, k and v rows of every layer (up to `bytes`
 * in all, least recently used out first; 0 turns the cache off), so that the next encode of a
 * session that grew by a few items computes only their rows and runs attention over the cached
 * ones: sr_model_encode gives the same bytes, hit or miss. Entries are found by the items
 * themselves (an exact comparison), so the cache, which dies with the model, can never serve
 * another model or another sequence. Sessions longer than max_len (the window slides) are
 * encoded in full. SR_EUNSUPPORTED for gru4rec (it keeps states, above) and on a backend
 * without row-deterministic, prefix-consistent kernels (cuda: it encodes in full). */
sr_err_t sr_model_set_encode_cache(sr_model_t *m, size_t bytes, struct sr_error *err);

struct sr_encode_cache_stats {
    uint64_t hits, misses, evictions; /* sessions found (in part), not found; entries dropped */
    uint64_t rows_computed, rows_reused; /* token rows run through the layers, rows reused */
    size_t bytes, entries;
};
/* Counters of the encode cache (all zero when it is off). */
void sr_model_encode_cache_stats(const sr_model_t *m, struct sr_encode_cache_stats *out);

/* Exact top-k of host query vectors (B×d) over the catalogue: score = q·E[j] (+ output.bias[j])
 * for j in first_index..V-1, minus exclusions; descending score, ties to the lower index. The
 * B×V matrix is never materialised. Rows with fewer than k eligible items are padded with
 * index -1 and score -INFINITY. excl_* as in sr_session_batch (NULL: none). */
sr_err_t sr_model_topk(sr_model_t *m, int32_t n, const float *vecs, const int32_t *excl_offsets,
                       const int32_t *excl_items, int k, int32_t *out_idx, float *out_score,
                       struct sr_error *err);
/* encode + topk without leaving the device: out_* are B×k on the host. */
sr_err_t sr_model_recommend(sr_model_t *m, const struct sr_session_batch *batch, int k,
                            int32_t *out_idx, float *out_score, struct sr_error *err);

/* Static item rules: allowed[j] == 0 means item j is never returned by topk/recommend (for
 * every session). allowed has V entries (copied); NULL removes the filter. */
sr_err_t sr_model_set_item_filter(sr_model_t *m, const uint8_t *allowed, struct sr_error *err);

/* ---- retrieval: exact or through the bundle's FAISS index (issue 6) -------------------- */

typedef enum sr_retrieval_mode {
    SR_RETRIEVAL_AUTO = 0,  /* FAISS when the bundle has an index (and the build has FAISS) */
    SR_RETRIEVAL_EXACT = 1,
    SR_RETRIEVAL_FAISS = 2  /* an error when there is no index to use */
} sr_retrieval_mode_t;

struct sr_faiss; /* kernels/faiss/sr_faiss.h */

struct sr_retrieval_params {
    sr_retrieval_mode_t mode;
    int nprobe;               /* IVF lists probed per query; 0: the index's own */
    int ef_search;            /* HNSW search depth; 0: the index's own */
    const struct sr_faiss *index; /* borrowed override of the bundle's index (benchmarks), or
                                   * NULL; must outlive its use by the model */
};

/* "auto" | "exact" | "faiss" */
sr_err_t sr_retrieval_mode_parse(const char *s, sr_retrieval_mode_t *out, struct sr_error *err);
/* True when this build can use FAISS indexes. */
bool sr_faiss_available(void);

/* Chooses how sr_model_topk / sr_model_recommend retrieve (p == NULL: auto, index defaults).
 * FAISS retrieval keeps the exact contract: B×k, descending exact scores (q·E[j] + bias[j],
 * recomputed for every candidate), ties to the lower index, exclusions and the item filter
 * honoured. It over-fetches candidates (2k + exclusions, scaled by the share of items the filter
 * allows), grows the fetch geometrically for a row left short and falls back to exact top-k for
 * that row, so a row has fewer than k items only when the catalogue has fewer eligible.
 * mode=faiss without an index, or in a build without FAISS, is SR_EUNSUPPORTED. */
sr_err_t sr_model_set_retrieval(sr_model_t *m, const struct sr_retrieval_params *p,
                                struct sr_error *err);
/* "exact" or "faiss <index type>" (owned by the model or the index). */
const char *sr_model_retrieval_name(const sr_model_t *m);

/* Builds a FAISS index (inner product) over the bundle's items first..V-1 with ids = bundle
 * indices, from an index-factory string ("HNSW32", "IVF1024,Flat", "IVF1024,PQ16"). With
 * output.bias the indexed vectors are [E_j, b_j] (zero-padded when the factory needs a
 * dimension multiple; queries are [q, 1, 0...]), so inner product is the exact model score.
 * Trains on at most train_sample rows (0: all, else a seeded random subset). The caller owns
 * *out (sr_faiss_destroy). SR_EUNSUPPORTED in a build without FAISS. */
sr_err_t sr_bundle_index_build(const sr_bundle_t *b, const char *factory, int64_t train_sample,
                               uint64_t seed, struct sr_faiss **out, struct sr_error *err);

/* The FAISS search parameter that keeps a recall promise (index_tune.c, DESIGN §3): recall@k
 * of the serving path against exact top-k on `queries` sessions of random items encoded by the
 * bundle's model, at every k in ks. Unless `fixed` > 0 (then that value is only measured), the
 * smallest nprobe (IVF) or ef_search (HNSW) whose recall reaches target_recall at every k, or
 * the largest tried (reached = false). An index without a search parameter is only measured
 * (param NULL). SR_EUNSUPPORTED in a build without FAISS. */
#define SR_INDEX_TUNE_MAX_KS 4
struct sr_index_tune_params {
    double target_recall;
    int ks[SR_INDEX_TUNE_MAX_KS];
    int n_ks;
    int queries;
    uint64_t seed;
    int fixed;
};
struct sr_index_tune_result {
    const char *param;          /* "nprobe", "ef_search", or NULL */
    int value;
    bool reached;
    double recall[SR_INDEX_TUNE_MAX_KS];
    double faiss_qps, exact_qps;
    int tried;                  /* values measured */
};
sr_err_t sr_bundle_index_tune(const sr_bundle_t *b, const struct sr_faiss *ix,
                              const struct sr_index_tune_params *p,
                              struct sr_index_tune_result *out, struct sr_error *err);

/* ---- catalogue updates (bundle_edit.c, DESIGN §3.2) ------------------------------------ */

struct sr_bundle_add_params {
    const char *items;      /* TSV: `item_id` + attribute columns of the bundle; required */
    const char *embeddings; /* safetensors: `embedding` [rows, d_model] (+ `bias` [rows] exactly
                             * when the bundle has output.bias), row r = data line r of items;
                             * NULL when every item in `items` already exists */
    const char *out;        /* the new bundle directory; must not exist */
    const char *version;    /* NULL: the source's + "+items1" (or "+itemsN" incremented) */
    const char *factory;    /* index rebuild; NULL: the source index's type */
    int64_t train_sample;   /* 0: 200000 */
    uint64_t seed;          /* 0: 42 */
};

struct sr_bundle_add_result {
    int32_t added, updated, n_items;
    bool index_rebuilt;
    char version[256];
    char factory[128];
};

/* Writes p->out: a copy of the bundle in dir with new items appended (index V, V+1, ... in
 * file order, with their embedding rows and bias) and existing items updated in place
 * (attributes named in the file; the embedding row when --embeddings is given); bundle.json
 * gets the new version; a retrieval.index is rebuilt. Refuses, naming file and line or row:
 * a dimension mismatch, a duplicate id in the file, a non-finite value, an `index` column, an
 * attribute the bundle lacks. Writes through a temporary directory and checks the result loads;
 * on failure nothing is left at p->out. */
sr_err_t sr_bundle_add_items(const char *dir, const struct sr_bundle_add_params *p,
                             struct sr_bundle_add_result *res, struct sr_error *err);

/* Floating-point operations of one encode of `tokens` total items in `n` sessions (for GFLOP/s). */
double sr_model_encode_flops(const sr_model_t *m, int64_t tokens, int32_t n);

/* ---- synthetic bundles (benchmarks, tests) ---------------------------------------------- */

/* A random in-memory bundle of the given shape, for `streamrec bench model` and tests that need
 * a model of a size no fixture has. */
struct sr_synth_params {
    sr_arch_t arch;
    int d_model, n_layers, n_heads, d_ff, max_len; /* n_heads, d_ff: gpt2 only */
    sr_act_t activation;                           /* gpt2 only; SR_ACT_NONE means gelu_tanh */
    int32_t n_items;                               /* V, including the 2 reserved indices */
    bool output_bias;
    uint64_t seed;                                 /* same seed, same weights */
};

/* Builds a bundle with random, finite weights (F32, owned), first_index 2, oov_index 1 and item
 * ids "i<index>" for indices 2..V-1; info.dir is "(synthetic)". Shapes are checked as a loaded
 * bundle's are (heads must divide d_model, V > 2, ...). On success the caller owns one
 * reference (sr_bundle_unref frees it); on failure *out is NULL and err says why. */
sr_err_t sr_bundle_synthetic(const struct sr_synth_params *p, sr_bundle_t **out,
                             struct sr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SR_KERNELS_H */
