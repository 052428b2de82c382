/* sr_faiss.h — a C ABI over the FAISS C++ library (Debian ships libfaiss.a but no libfaiss_c).
 * Only what streamrec needs: inner-product indexes from an index-factory string, train, add
 * with ids, batch search with per-call parameters, write/read index files (the format of
 * faiss.write_index in Python), ntotal/d/id accessors. Every C++ exception is caught inside
 * sr_faiss.cpp and returned as an sr_err_t with FAISS's message; none crosses this boundary.
 * Thread: a handle is built (train/add) by one thread; afterwards sr_faiss_search may be called
 * from several threads at once: IVF's nprobe travels with the call; HNSW's efSearch is set on
 * the index under the handle's mutex (FAISS 1.7.3 ignores it as a search parameter), so HNSW
 * searches with ef_search on one handle run one at a time. */
#ifndef SR_FAISS_H
#define SR_FAISS_H

#include "sr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sr_faiss sr_faiss_t;

/* Search parameters; 0 keeps the index's own setting. nprobe applies to IVF indexes,
 * ef_search to HNSW ones; a parameter the index has no use for is ignored. */
struct sr_faiss_search_params {
    int nprobe;
    int ef_search;
};

/* A new empty index of dimension d with the inner-product metric from a factory string
 * ("HNSW32", "IVF1024,Flat", "IVF1024,PQ16", "Flat", ...). Indexes that cannot add with ids
 * (HNSW, Flat) are wrapped in an IndexIDMap. The caller owns *out (sr_faiss_destroy). */
sr_err_t sr_faiss_new(const char *factory, int d, sr_faiss_t **out, struct sr_error *err);
/* NULL is a no-op. */
void sr_faiss_destroy(sr_faiss_t *ix);

bool sr_faiss_is_trained(const sr_faiss_t *ix);
/* Trains on n vectors x[n×d] (a no-op for indexes that need no training). */
sr_err_t sr_faiss_train(sr_faiss_t *ix, int64_t n, const float *x, struct sr_error *err);
/* Adds n vectors x[n×d] with ids[n] (ids may be NULL: sequential from ntotal). */
sr_err_t sr_faiss_add(sr_faiss_t *ix, int64_t n, const float *x, const int64_t *ids,
                      struct sr_error *err);
/* k nearest by inner product for n queries q[n×d]: scores and ids are n×k, best first; a row
 * with fewer than k results is padded with id -1 (score -INFINITY). p may be NULL. */
sr_err_t sr_faiss_search(const sr_faiss_t *ix, int64_t n, const float *q, int k,
                         const struct sr_faiss_search_params *p, float *scores, int64_t *ids,
                         struct sr_error *err);

/* Writes the index to path (faiss::write_index; loadable by faiss.read_index). */
sr_err_t sr_faiss_write(const sr_faiss_t *ix, const char *path, struct sr_error *err);
/* Reads an index file (any written by faiss.write_index). Corrupt or truncated bytes are an
 * SR_EFORMAT error naming the path. The caller owns *out. */
sr_err_t sr_faiss_read(const char *path, sr_faiss_t **out, struct sr_error *err);

int64_t sr_faiss_ntotal(const sr_faiss_t *ix);
int sr_faiss_d(const sr_faiss_t *ix);
/* True when the index ranks by inner product (METRIC_INNER_PRODUCT). */
bool sr_faiss_is_ip(const sr_faiss_t *ix);
/* Copies the ntotal stored ids into ids[] (IndexIDMap's map, the IVF inverted lists in list
 * order, else 0..ntotal-1), so a loader can check them. */
sr_err_t sr_faiss_ids(const sr_faiss_t *ix, int64_t *ids, struct sr_error *err);
/* A short description of the index type ("IDMap,HNSW32", "IVF1024,Flat"), owned by ix. */
const char *sr_faiss_describe(const sr_faiss_t *ix);

#ifdef __cplusplus
}
#endif
#endif /* SR_FAISS_H */
