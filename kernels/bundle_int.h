/* bundle_int.h — private to the bundle loader (bundle.c, safetensors.c, vocab.c) and its fuzz
 * harnesses: the parsed bundle.json, the raw safetensors directory and the vocabulary parser.
 * Each reader works on a memory buffer so that a fuzzer can drive it without files. */
#ifndef SR_BUNDLE_INT_H
#define SR_BUNDLE_INT_H

#include "kernels_int.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- bundle.json ---------------------------------------------------------------------- */

/* bundle.json after every field check; strings are owned (sr__bundle_conf_free). */
struct sr__bundle_conf {
    char *version;
    sr_arch_t arch;
    char *weights;     /* path relative to the bundle directory (or absolute) */
    char *prefix;      /* tensor_prefix, "" by default */
    int d_model, n_layers, n_heads, d_ff, max_len; /* gru4rec: n_heads = d_ff = 0 */
    sr_act_t activation; /* gru4rec: SR_ACT_NONE */
    float layer_norm_eps;
    char *vocab;
    int32_t first_index, oov_index;
    char *index;       /* retrieval.index as written, or NULL */
    int64_t nprobe, ef_search; /* retrieval.nprobe / .ef_search as tuned by build-index; 0: none */
};

/* Parses and checks bundle.json text (len bytes, need not be NUL-terminated). Messages start
 * with `fname` and name the JSON path ("bundle.json: model.d_model: expected integer"). On
 * failure *c holds nothing to free. */
sr_err_t sr__bundle_conf_parse(const char *text, size_t len, const char *fname,
                               struct sr__bundle_conf *c, struct sr_error *err);
void sr__bundle_conf_free(struct sr__bundle_conf *c);

struct sr__st_dir;
/* Checks a parsed safetensors directory against c (the exact tensor set of the architecture,
 * shapes, V from the item embedding) and materialises the model's tensors into b->tensors,
 * filling b->info.n_items, n_params, weights_dtype and has_output_bias. On failure b may hold
 * some tensors: sr__bundle_free_tensors releases them either way. */
sr_err_t sr__bundle_load_tensors(struct sr_bundle *b, const struct sr__bundle_conf *c,
                                 const struct sr__st_dir *dir, struct sr_error *err);
void sr__bundle_free_tensors(struct sr_bundle *b);

/* ---- safetensors ---------------------------------------------------------------------- */

typedef enum sr__dtype { SR__DT_F32 = 0, SR__DT_F16 = 1, SR__DT_BF16 = 2 } sr__dtype_t;

/* One entry of a safetensors header; raw points into the caller's buffer. */
struct sr__st_entry {
    char *name;            /* owned */
    sr__dtype_t dtype;
    int ndim;
    int64_t shape[4];
    int64_t count;         /* elements */
    const unsigned char *raw; /* little-endian data, count * dtype size bytes */
};

struct sr__st_dir {
    struct sr__st_entry *e; /* in header order */
    int n;
};

/* Parses a whole safetensors file held in buf[0..len): header length, JSON header, every
 * entry's dtype, shape and data_offsets (within the data section, matching dtype x shape, not
 * overlapping). `__metadata__` is ignored. Never reads outside buf. Messages start with fname.
 * On success the caller frees *dir with sr__st_dir_free; entries borrow buf. */
sr_err_t sr__st_parse(const void *buf, size_t len, const char *fname, struct sr__st_dir *dir,
                      struct sr_error *err);
void sr__st_dir_free(struct sr__st_dir *dir);
/* Index of the entry named `name`, or -1. */
int sr__st_find(const struct sr__st_dir *dir, const char *name);
/* Makes the F32 view of an entry into *t: points into the buffer when the data is F32, aligned
 * and the host little-endian, otherwise an owned widened copy. Checks every value is finite
 * (the message names the tensor and the element). t->name is a copy of e->name. On failure
 * t holds nothing to free. */
sr_err_t sr__st_materialize(const struct sr__st_entry *e, const char *fname, struct sr__tensor *t,
                            struct sr_error *err);
void sr__tensor_free(struct sr__tensor *t);
const char *sr__dtype_name(sr__dtype_t dt);

/* ---- items.tsv ------------------------------------------------------------------------ */

/* Parses items.tsv text into b's vocabulary fields (item_ids, item_id_len, slots, slot_mask,
 * n_attrs, attr_names, attr_values, vocab_text) for a table of V rows whose items occupy
 * first_index..V-1. Copies the text. Messages start with fname and name the line. On failure
 * those fields are left empty; sr__vocab_free releases them either way. */
sr_err_t sr__vocab_parse(struct sr_bundle *b, const char *text, size_t len, const char *fname,
                         int32_t V, int32_t first_index, struct sr_error *err);
void sr__vocab_free(struct sr_bundle *b);

#ifdef __cplusplus
}
#endif
#endif /* SR_BUNDLE_INT_H */
