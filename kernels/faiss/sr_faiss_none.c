/* sr_faiss_none.c — sr_faiss.h in a build without FAISS (kernels/CMakeLists.txt compiles it
 * instead of sr_faiss.cpp): every constructor fails with SR_EUNSUPPORTED and a message saying
 * so, so callers (bundle build-index, bench retrieval --mode faiss) need no #ifdef and refuse
 * cleanly at run time; sr_faiss_available() tells them beforehand. No handle can exist, so the
 * accessors are never reached with one. */
#include "sr_faiss.h"

#include <stddef.h>

#define NO_FAISS "this build has no FAISS (libfaiss.a was not found at configure time)"

sr_err_t sr_faiss_new(const char *factory, int d, sr_faiss_t **out, struct sr_error *err)
{
    (void)d;
    if (out)
        *out = NULL;
    return sr_error_set(err, SR_EUNSUPPORTED, "faiss index %s: " NO_FAISS, factory ? factory : "");
}

sr_err_t sr_faiss_read(const char *path, sr_faiss_t **out, struct sr_error *err)
{
    if (out)
        *out = NULL;
    return sr_error_set(err, SR_EUNSUPPORTED, "%s: " NO_FAISS, path ? path : "");
}

void sr_faiss_destroy(sr_faiss_t *ix) { (void)ix; }

bool sr_faiss_is_trained(const sr_faiss_t *ix)
{
    (void)ix;
    return false;
}

sr_err_t sr_faiss_train(sr_faiss_t *ix, int64_t n, const float *x, struct sr_error *err)
{
    (void)ix, (void)n, (void)x;
    return sr_error_set(err, SR_EUNSUPPORTED, "faiss train: " NO_FAISS);
}

sr_err_t sr_faiss_add(sr_faiss_t *ix, int64_t n, const float *x, const int64_t *ids,
                      struct sr_error *err)
{
    (void)ix, (void)n, (void)x, (void)ids;
    return sr_error_set(err, SR_EUNSUPPORTED, "faiss add: " NO_FAISS);
}

sr_err_t sr_faiss_search(const sr_faiss_t *ix, int64_t n, const float *q, int k,
                         const struct sr_faiss_search_params *p, float *scores, int64_t *ids,
                         struct sr_error *err)
{
    (void)ix, (void)n, (void)q, (void)k, (void)p, (void)scores, (void)ids;
    return sr_error_set(err, SR_EUNSUPPORTED, "faiss search: " NO_FAISS);
}

sr_err_t sr_faiss_write(const sr_faiss_t *ix, const char *path, struct sr_error *err)
{
    (void)ix;
    return sr_error_set(err, SR_EUNSUPPORTED, "%s: " NO_FAISS, path ? path : "");
}

int64_t sr_faiss_ntotal(const sr_faiss_t *ix)
{
    (void)ix;
    return 0;
}

int sr_faiss_d(const sr_faiss_t *ix)
{
    (void)ix;
    return 0;
}

bool sr_faiss_is_ip(const sr_faiss_t *ix)
{
    (void)ix;
    return false;
}

sr_err_t sr_faiss_ids(const sr_faiss_t *ix, int64_t *ids, struct sr_error *err)
{
    (void)ix, (void)ids;
    return sr_error_set(err, SR_EUNSUPPORTED, "faiss ids: " NO_FAISS);
}

const char *sr_faiss_describe(const sr_faiss_t *ix)
{
    (void)ix;
    return "none";
}
