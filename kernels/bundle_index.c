/* bundle_index.c — the bundle's retrieval.index: read with the bundle (sr_bundle_load) and
 * checked against it — inner-product metric, dimension (d_model, or d_model+1.. with a zero
 * padding when output.bias is folded into the index as [E_j, b_j]; see retrieval.c), ntotal =
 * V - first_index, every id a bundle index in first..V-1 exactly once. FAISS exceptions on
 * corrupt bytes come back as errors from sr_faiss_read. A failing index refuses the bundle, so
 * a bad index never replaces a good one. Without FAISS in the build the index is not read and
 * retrieval stays exact. Kept apart from retrieval.c so the bundle fuzzers link it alone. */
#include "kernels_int.h"

#ifdef SR_HAVE_FAISS
#include "sr_faiss.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const float *sr__bundle_item_table(const struct sr_bundle *b, const float **bias)
{
    const char *name = b->info.arch == SR_ARCH_GPT2 ? "wte.weight" : "item_embedding.weight";
    if (bias)
        *bias = sr_bundle_tensor(b, "output.bias", NULL, NULL);
    return sr_bundle_tensor(b, name, NULL, NULL);
}

#ifdef SR_HAVE_FAISS

/* Index dimension D fits a model of dimension d: D == d without bias, d+1..d+SR__AUG_MAX_PAD with. */
static bool dim_fits(int D, int d, bool bias)
{
    return bias ? D > d && D <= d + SR__AUG_MAX_PAD : D == d;
}

sr_err_t sr__bundle_index_load(struct sr_bundle *b, struct sr_error *err)
{
    const char *path = b->index_path;
    const struct sr_bundle_info *in = &b->info;
    sr_faiss_t *ix = NULL;
    struct stat st;
    errno = 0;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return sr_error_set(err, errno == ENOENT ? SR_ENOENT : SR_EIO, "retrieval.index %s: "
                            "cannot open: %s", path, errno ? strerror(errno) : "not a file");
    sr_err_t rc = sr_faiss_read(path, &ix, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "retrieval.index"), rc;
    const bool bias = in->has_output_bias;
    const int D = sr_faiss_d(ix);
    const int64_t want = (int64_t)in->n_items - in->first_index, nt = sr_faiss_ntotal(ix);
    int64_t *ids = NULL;
    uint8_t *seen = NULL;
    if (!sr_faiss_is_ip(ix)) {
        rc = sr_error_set(err, SR_EFORMAT, "retrieval.index %s: the index does not use the inner "
                          "product metric (scores are q·E[j]); rebuild it with METRIC_INNER_PRODUCT",
                          path);
    } else if (!dim_fits(D, in->d_model, bias)) {
        rc = sr_error_set(err, SR_EFORMAT, "retrieval.index %s: index dimension %d does not match "
                          "the item embeddings (d_model %d%s)", path, D, in->d_model,
                          bias ? "; with output.bias the index holds [E_j, b_j]: d_model+1" : "");
    } else if (nt != want) {
        rc = sr_error_set(err, SR_EFORMAT, "retrieval.index %s: index holds %lld vectors, the "
                          "bundle has %lld items (V %d - first_index %d)", path, (long long)nt,
                          (long long)want, in->n_items, in->first_index);
    } else if (!(ids = malloc(sizeof *ids * (size_t)(nt ? nt : 1))) ||
               !(seen = calloc((size_t)in->n_items, 1))) {
        rc = sr_error_set(err, SR_ENOMEM, "retrieval.index %s: out of memory", path);
    } else if ((rc = sr_faiss_ids(ix, ids, err)) != SR_OK) {
        sr_error_prefix(err, "retrieval.index %s", path);
    } else {
        for (int64_t i = 0; i < nt; i++) {
            int64_t id = ids[i];
            if (id < in->first_index || id >= in->n_items) {
                rc = sr_error_set(err, SR_EFORMAT, "retrieval.index %s: id %lld is outside the "
                                  "items %d..%d (ids are bundle indices)", path, (long long)id,
                                  in->first_index, in->n_items - 1);
                break;
            }
            if (seen[id]++) {
                rc = sr_error_set(err, SR_EFORMAT, "retrieval.index %s: id %lld appears twice",
                                  path, (long long)id);
                break;
            }
        }
    }
    free(ids);
    free(seen);
    if (rc != SR_OK) {
        sr_faiss_destroy(ix);
        return rc;
    }
    b->faiss = ix;
    b->info.index_type = sr_faiss_describe(ix);
    return SR_OK;
}

void sr__bundle_index_free(struct sr_bundle *b)
{
    sr_faiss_destroy(b->faiss);
    b->faiss = NULL;
}

#else /* !SR_HAVE_FAISS */

sr_err_t sr__bundle_index_load(struct sr_bundle *b, struct sr_error *err)
{
    (void)b, (void)err; /* kept as index_path only: retrieval stays exact */
    return SR_OK;
}

void sr__bundle_index_free(struct sr_bundle *b) { (void)b; }

#endif /* SR_HAVE_FAISS */
