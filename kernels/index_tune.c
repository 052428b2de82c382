/* index_tune.c — the search parameter that makes a FAISS index keep a recall promise
 * (`bundle build-index --target-recall`, DESIGN §3): recall@k of what the serving path ranks
 * (the model's FAISS retrieval fetches 2k candidates and re-scores them exactly, so its top-k is
 * the exact top-k of those candidates) against exact top-k, on sessions of random catalogue
 * items encoded by the bundle's own model, for growing nprobe (IVF) or ef_search (HNSW) until
 * every k reaches the target; then a bisection down to the smallest value that still does.
 * The serving path's fallback (a row whose candidates hold fewer than k items is searched again
 * wider, then exactly) is left out on purpose: it would report a perfect recall for a setting
 * that sends most rows to the slow path. Owns nothing past the call. Runs on the caller's
 * thread. */
#include "sr_kernels.h"

#ifdef SR_HAVE_FAISS
#include "faiss/sr_faiss.h"
#endif

#include <stdlib.h>
#include <string.h>

#ifdef SR_HAVE_FAISS
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct tune {
    const struct sr_index_tune_params *p;
    const sr_faiss_t *ix;
    int nq, kmax, D;
    const float *q;       /* nq × D: the queries as the index takes them ([v, 1, 0...]) */
    const int32_t *exact; /* nq × kmax */
    bool ivf;
};

/* recall[i] at p->ks[i] with the parameter set to v; SR_OK or FAISS's error. */
static sr_err_t measure(struct tune *t, int v, double *recall, double *qps, struct sr_error *err)
{
    const struct sr_faiss_search_params sp = {.nprobe = t->ivf ? v : 0, .ef_search = t->ivf ? 0 : v};
    const int64_t fmax = 2 * (int64_t)t->kmax;
    float *sc = malloc(sizeof(float) * (size_t)t->nq * (size_t)fmax);
    int64_t *id = malloc(sizeof(int64_t) * (size_t)t->nq * (size_t)fmax);
    sr_err_t rc = sc && id ? SR_OK : sr_error_set(err, SR_ENOMEM, "out of memory");
    for (int i = 0; rc == SR_OK && i < t->p->n_ks; i++) {
        const int k = t->p->ks[i], fetch = 2 * k; /* the serving path's fetch without exclusions */
        uint64_t t0 = sr_now_ns();
        if ((rc = sr_faiss_search(t->ix, t->nq, t->q, fetch, &sp, sc, id, err)) != SR_OK)
            break;
        if (k == t->kmax)
            *qps = t->nq / ((double)(sr_now_ns() - t0) * 1e-9 + 1e-12);
        long hit = 0, tot = 0;
        for (int q = 0; q < t->nq; q++) {
            const int32_t *e = t->exact + (size_t)q * (size_t)t->kmax;
            const int64_t *g = id + (size_t)q * (size_t)fetch;
            for (int a = 0; a < k; a++) {
                if (e[a] < 0)
                    continue;
                tot++;
                for (int c = 0; c < fetch; c++)
                    if (g[c] == e[a]) {
                        hit++;
                        break;
                    }
            }
        }
        recall[i] = tot ? (double)hit / (double)tot : 1.0;
    }
    free(sc);
    free(id);
    return rc;
}

static bool reaches(const struct tune *t, const double *recall)
{
    for (int i = 0; i < t->p->n_ks; i++)
        if (recall[i] < t->p->target_recall)
            return false;
    return true;
}

/* nlist of an "IVF<n>,..." index description, else 0. */
static int ivf_lists(const char *desc)
{
    const char *s = strstr(desc, "IVF");
    return s ? atoi(s + 3) : 0;
}
#endif

sr_err_t sr_bundle_index_tune(const sr_bundle_t *b, const struct sr_faiss *ix,
                              const struct sr_index_tune_params *p,
                              struct sr_index_tune_result *out, struct sr_error *err)
{
    memset(out, 0, sizeof *out);
#ifndef SR_HAVE_FAISS
    (void)b, (void)ix, (void)p;
    return sr_error_set(err, SR_EUNSUPPORTED, "this build has no FAISS");
#else
    if (!p || p->n_ks < 1 || p->n_ks > SR_INDEX_TUNE_MAX_KS || p->queries < 1 ||
        !(p->target_recall > 0 && p->target_recall <= 1))
        return sr_error_set(err, SR_EINVAL, "index tune: 1..%d k values, queries >= 1 and a "
                            "target recall in (0, 1]", SR_INDEX_TUNE_MAX_KS);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    const char *desc = sr_faiss_describe(ix);
    int nlist = ivf_lists(desc);
    bool hnsw = strstr(desc, "HNSW") != NULL;
    struct tune t = {.p = p, .ix = ix, .nq = p->queries, .ivf = nlist > 0, .D = sr_faiss_d(ix)};
    sr_model_t *m = NULL;
    for (int i = 0; i < p->n_ks; i++) {
        if (p->ks[i] < 1 || p->ks[i] > 1000)
            return sr_error_set(err, SR_EINVAL, "index tune: k %d out of range (1..1000)", p->ks[i]);
        t.kmax = p->ks[i] > t.kmax ? p->ks[i] : t.kmax;
    }
    const int nq = t.nq, d = in->d_model;
    struct sr_backend_params bp = {.device = SR_DEVICE_CPU};
    sr_backend_t *be = NULL;
    int32_t *off = malloc(sizeof(int32_t) * ((size_t)nq + 1));
    int32_t *items = malloc(sizeof(int32_t) * (size_t)nq * 10);
    float *vecs = malloc(sizeof(float) * (size_t)nq * (size_t)d);
    int32_t *exact = malloc(sizeof(int32_t) * (size_t)nq * (size_t)t.kmax);
    float *es = malloc(sizeof(float) * (size_t)nq * (size_t)t.kmax);
    float *qd = malloc(sizeof(float) * (size_t)nq * (size_t)t.D);
    sr_err_t rc = SR_OK;
    if (!off || !items || !vecs || !exact || !es || !qd) {
        rc = sr_error_set(err, SR_ENOMEM, "out of memory");
        goto done;
    }
    /* sessions of 1..10 random catalogue items: queries shaped like the serving path's */
    off[0] = 0;
    const uint64_t span = (uint64_t)(in->n_items - in->first_index);
    for (int q = 0, n = 0; q < nq; q++) {
        int len = 1 + (int)(mix64(p->seed ^ (uint64_t)q * 7919u) % 10);
        for (int i = 0; i < len; i++, n++)
            items[n] = in->first_index + (int32_t)(mix64(p->seed + (uint64_t)n * 131u + 1) % span);
        off[q + 1] = n;
    }
    struct sr_session_batch sb = {.n = nq, .offsets = off, .items = items};
    struct sr_retrieval_params ex = {.mode = SR_RETRIEVAL_EXACT};
    if ((rc = sr_backend_new(&bp, &be, err)) != SR_OK ||
        (rc = sr_model_new((sr_bundle_t *)b, be, &m, err)) != SR_OK ||
        (rc = sr_model_encode(m, &sb, vecs, err)) != SR_OK ||
        (rc = sr_model_set_retrieval(m, &ex, err)) != SR_OK)
        goto done;
    uint64_t t0 = sr_now_ns();
    if ((rc = sr_model_topk(m, nq, vecs, NULL, NULL, t.kmax, exact, es, err)) != SR_OK)
        goto done;
    out->exact_qps = nq / ((double)(sr_now_ns() - t0) * 1e-9 + 1e-12);
    /* the index's query form (sr_bundle_index_build): [v, 1] meets [E_j, b_j], zero-padded */
    if (t.D < d) {
        rc = sr_error_set(err, SR_EINVAL, "index tune: index dimension %d below d_model %d", t.D, d);
        goto done;
    }
    for (int q = 0; q < nq; q++) {
        float *r = qd + (size_t)q * (size_t)t.D;
        memcpy(r, vecs + (size_t)q * (size_t)d, sizeof(float) * (size_t)d);
        if (t.D > d) {
            memset(r + d, 0, sizeof(float) * (size_t)(t.D - d));
            r[d] = 1.0f;
        }
    }
    t.q = qd;
    t.exact = exact;
    double rec[SR_INDEX_TUNE_MAX_KS], qps = 0;
    if (p->fixed > 0 || (!t.ivf && !hnsw)) {
        /* a value the caller chose, or an index without a search parameter (Flat, PQ) */
        out->param = t.ivf ? "nprobe" : hnsw ? "ef_search" : NULL;
        out->value = out->param ? p->fixed : 0;
        if ((rc = measure(&t, out->value, out->recall, &out->faiss_qps, err)) != SR_OK)
            goto done;
        out->tried = 1;
        out->reached = reaches(&t, out->recall);
        goto done;
    }
    out->param = t.ivf ? "nprobe" : "ef_search";
    /* doubling from the smallest sensible value up to the index's limit ... */
    int lo = 0, hi = t.ivf ? 1 : (t.kmax < 16 ? 16 : t.kmax);
    const int top = t.ivf ? nlist : 1 << 14;
    for (;;) {
        if ((rc = measure(&t, hi, rec, &qps, err)) != SR_OK)
            goto done;
        out->tried++;
        if (reaches(&t, rec) || hi >= top)
            break;
        lo = hi;
        hi = hi * 2 < top ? hi * 2 : top;
    }
    out->value = hi;
    out->reached = reaches(&t, rec);
    memcpy(out->recall, rec, sizeof rec);
    out->faiss_qps = qps;
    /* ... then the smallest value in (lo, hi] that still reaches the target */
    while (out->reached && hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if ((rc = measure(&t, mid, rec, &qps, err)) != SR_OK)
            goto done;
        out->tried++;
        if (reaches(&t, rec)) {
            hi = mid;
            out->value = mid;
            memcpy(out->recall, rec, sizeof rec);
            out->faiss_qps = qps;
        } else {
            lo = mid;
        }
    }
done:
    free(off);
    free(items);
    free(vecs);
    free(exact);
    free(es);
    free(qd);
    sr_model_unref(m);
    sr_backend_unref(be);
    return rc;
#endif
}
