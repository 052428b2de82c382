/* retrieval.c — FAISS retrieval for models (issue 6): loading and checking a bundle's
 * retrieval.index, building one over the item table, and top-k through it with sr_model_topk's
 * exact contract.
 *
 * output.bias: FAISS's inner product cannot add a per-item term, so an index of a bundle with
 * output.bias is built over augmented vectors [E_j, b_j] (plus zero columns when the factory
 * needs a dimension multiple, e.g. PQ16) and queried with [q, 1, 0...]: the inner product is
 * then exactly q·E_j + b_j, so the index ranks by the model's score. Every candidate the index
 * returns is then re-scored exactly on the host (q·E_j + b_j in double, as the exact path does), filtered (reserved
 * indices, exclusions, the item filter) and ordered by score descending, ties to the lower index;
 * scores in the output are therefore the exact scores even for a PQ index.
 *
 * Over-fetch: a batch first asks for 2k + (largest exclusion list) candidates, scaled up by the
 * inverse share of items the filter allows; a row left with fewer than k eligible candidates is
 * searched again alone with 4× the fetch, and past FETCH_MAX (or the whole index) it falls back
 * to exact top-k, so no row returns fewer than k items when the catalogue has k eligible.
 * Thread: the bundle's index is read-only after load and searched with per-call parameters, so
 * models on several threads may share a bundle; one model is driven by one thread. */
#include "model_int.h"

#ifdef SR_HAVE_FAISS
#include "sr_faiss.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_MAX 8192     /* past this many candidates for one row, exact top-k is cheaper */

bool sr_faiss_available(void)
{
#ifdef SR_HAVE_FAISS
    return true;
#else
    return false;
#endif
}

sr_err_t sr_retrieval_mode_parse(const char *s, sr_retrieval_mode_t *out, struct sr_error *err)
{
    if (s && !strcmp(s, "auto"))
        *out = SR_RETRIEVAL_AUTO;
    else if (s && !strcmp(s, "exact"))
        *out = SR_RETRIEVAL_EXACT;
    else if (s && !strcmp(s, "faiss"))
        *out = SR_RETRIEVAL_FAISS;
    else
        return sr_error_set(err, SR_ECONFIG, "retrieval.mode: '%s' is not auto, exact or faiss",
                            s ? s : "(null)");
    return SR_OK;
}

#ifdef SR_HAVE_FAISS

/* Index dimension D fits a model of dimension d (see bundle_index.c). */
static bool dim_fits(int D, int d, bool bias)
{
    return bias ? D > d && D <= d + SR__AUG_MAX_PAD : D == d;
}

/* Row r of the index's vectors: [E_j, b_j, 0...] for item j = first + r (D columns). */
static void aug_row(float *dst, const float *emb, const float *bias, int d, int D, int32_t j)
{
    memcpy(dst, emb + (size_t)j * (size_t)d, sizeof(float) * (size_t)d);
    if (D > d) {
        memset(dst + d, 0, sizeof(float) * (size_t)(D - d));
        dst[d] = bias ? bias[j] : 0.0f;
    }
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

sr_err_t sr_bundle_index_build(const sr_bundle_t *b, const char *factory, int64_t train_sample,
                               uint64_t seed, struct sr_faiss **out, struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "build index: NULL out");
    *out = NULL;
    if (!b || !factory)
        return sr_error_set(err, SR_EINVAL, "build index: NULL bundle or factory");
    const float *bias = NULL, *emb = sr__bundle_item_table(b, &bias);
    const int d = b->info.d_model, first = b->info.first_index;
    const int32_t N = b->info.n_items - first;
    if (!emb)
        return sr_error_set(err, SR_EINTERNAL, "build index: no item embedding table");
    /* The bias column makes d+1 dimensions; factories such as PQ16 need a multiple: pad. */
    sr_faiss_t *ix = NULL;
    sr_err_t rc = SR_OK;
    int D = d;
    static const int pads[] = {1, 4, 8, 16, 32, 64};
    for (size_t t = 0; t < (bias ? sizeof pads / sizeof *pads : 1); t++) {
        D = bias ? ((d + 1 + pads[t] - 1) / pads[t]) * pads[t] : d;
        if ((rc = sr_faiss_new(factory, D, &ix, err)) == SR_OK)
            break;
    }
    if (rc != SR_OK)
        return rc;
    const int64_t CH = 65536;
    float *buf = malloc(sizeof(float) * (size_t)D * (size_t)CH);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)CH);
    if (!buf || !ids) {
        rc = sr_error_set(err, SR_ENOMEM, "build index: out of memory");
        goto done;
    }
    if (!sr_faiss_is_trained(ix)) {
        int64_t ns = train_sample > 0 && train_sample < N ? train_sample : N;
        float *tx = malloc(sizeof(float) * (size_t)D * (size_t)ns);
        int32_t *perm = ns < N ? malloc(sizeof(int32_t) * (size_t)N) : NULL;
        if (!tx || (ns < N && !perm)) {
            free(tx);
            free(perm);
            rc = sr_error_set(err, SR_ENOMEM, "build index: out of memory for %lld training rows",
                              (long long)ns);
            goto done;
        }
        if (perm) { /* seeded partial Fisher-Yates: a uniform subset of ns items */
            for (int32_t i = 0; i < N; i++)
                perm[i] = i;
            for (int64_t i = 0; i < ns; i++) {
                int64_t j = i + (int64_t)(mix64(seed ^ mix64((uint64_t)i)) % (uint64_t)(N - i));
                int32_t t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
        }
        for (int64_t i = 0; i < ns; i++)
            aug_row(tx + (size_t)i * (size_t)D, emb, bias, d, D, first + (perm ? perm[i] : (int32_t)i));
        rc = sr_faiss_train(ix, ns, tx, err);
        free(tx);
        free(perm);
        if (rc != SR_OK)
            goto done;
    }
    for (int64_t r0 = 0; r0 < N && rc == SR_OK; r0 += CH) {
        int64_t rows = N - r0 < CH ? N - r0 : CH;
        for (int64_t i = 0; i < rows; i++) {
            ids[i] = first + r0 + i;
            aug_row(buf + (size_t)i * (size_t)D, emb, bias, d, D, (int32_t)ids[i]);
        }
        rc = sr_faiss_add(ix, rows, buf, ids, err);
    }
done:
    free(buf);
    free(ids);
    if (rc != SR_OK) {
        sr_faiss_destroy(ix);
        return rc;
    }
    *out = ix;
    return SR_OK;
}

/* Candidate (j, s) into the row's top list of c entries (capacity k): descending score, ties to
 * the lower index. */
static void top_insert(int32_t *idx, float *sc, int *c, int k, int32_t j, float s)
{
    int n = *c;
    if (n == k && (s < sc[k - 1] || (s == sc[k - 1] && j > idx[k - 1])))
        return;
    int r = n < k ? n : k - 1;
    while (r > 0 && (sc[r - 1] < s || (sc[r - 1] == s && idx[r - 1] > j))) {
        idx[r] = idx[r - 1];
        sc[r] = sc[r - 1];
        r--;
    }
    idx[r] = j;
    sc[r] = s;
    if (n < k)
        *c = n + 1;
}

/* Filters and re-scores one row's candidates; returns how many of k slots were filled. */
static int rank_row(const sr_model_t *m, const float *q, const int64_t *cand, int fetch,
                    const int32_t *ex, int32_t n_ex, int k, int32_t *oi, float *os)
{
    int c = 0;
    const int d = m->d;
    for (int t = 0; t < fetch; t++) {
        int64_t j = cand[t];
        if (j < m->first || j >= m->V || (m->allowed && !m->allowed[j]))
            continue;
        bool skip = false;
        for (int32_t e = 0; e < n_ex && !skip; e++)
            skip = ex[e] == j;
        if (skip)
            continue;
        /* the exact path's re-scoring formula (model.c rescore): identical scores */
        const float *e = m->hemb + (size_t)j * (size_t)d;
        double acc = m->hbias ? (double)m->hbias[j] : 0.0;
        for (int i = 0; i < d; i++)
            acc += (double)q[i] * (double)e[i];
        float s = (float)acc;
        top_insert(oi, os, &c, k, (int32_t)j, s);
    }
    for (int r = c; r < k; r++) {
        oi[r] = -1;
        os[r] = -INFINITY;
    }
    return c;
}

sr_err_t sr__model_topk_faiss(sr_model_t *m, int32_t n, const float *vecs, const int32_t *eo,
                              const int32_t *ei, int k, int32_t *out_idx, float *out_score,
                              struct sr_error *err)
{
    const int d = m->d, D = sr_faiss_d(m->faiss);
    const int64_t nt = sr_faiss_ntotal(m->faiss);
    const struct sr_faiss_search_params sp = {.nprobe = m->nprobe, .ef_search = m->ef_search};
    int32_t max_ex = 0;
    for (int32_t r = 0; eo && r < n; r++)
        max_ex = eo[r + 1] - eo[r] > max_ex ? eo[r + 1] - eo[r] : max_ex;
    double f = 2.0 * k + max_ex;
    if (m->n_allowed < m->V - m->first) /* the filter hides some items: fetch more */
        f *= (double)(m->V - m->first) / (m->n_allowed > 0 ? m->n_allowed : 1);
    int64_t fetch = f > (double)FETCH_MAX ? FETCH_MAX : (int64_t)ceil(f);
    if (fetch > nt)
        fetch = nt;
    if (fetch < 1)
        fetch = 1;
    float *q = sr__model_host(m, SR__HB_FQ, sizeof(float) * (size_t)n * (size_t)D, err);
    int64_t *cid = q ? sr__model_host(m, SR__HB_FID, sizeof(int64_t) * (size_t)n * (size_t)fetch, err)
                     : NULL;
    float *csc = cid ? sr__model_host(m, SR__HB_FSC, sizeof(float) * (size_t)n * (size_t)fetch, err)
                     : NULL;
    if (!csc)
        return SR_ENOMEM;
    for (int32_t r = 0; r < n; r++) {
        float *qr = q + (size_t)r * (size_t)D;
        memcpy(qr, vecs + (size_t)r * (size_t)d, sizeof(float) * (size_t)d);
        if (D > d) {
            memset(qr + d, 0, sizeof(float) * (size_t)(D - d));
            qr[d] = 1.0f; /* meets b_j in the index's augmented column */
        }
    }
    sr_err_t rc = sr_faiss_search(m->faiss, n, q, (int)fetch, &sp, csc, cid, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "retrieve"), rc;
    for (int32_t r = 0; r < n; r++) {
        const int32_t *ex = eo ? ei + eo[r] : NULL;
        int32_t n_ex = eo ? eo[r + 1] - eo[r] : 0;
        const float *qv = vecs + (size_t)r * (size_t)d;
        int32_t *oi = out_idx + (size_t)r * (size_t)k;
        float *os = out_score + (size_t)r * (size_t)k;
        if (rank_row(m, qv, cid + (size_t)r * (size_t)fetch, (int)fetch, ex, n_ex, k, oi, os) >= k)
            continue;
        /* Short row: search it alone with a growing fetch, then exact. */
        bool done = false;
        for (int64_t fr = fetch * 4; !done && fetch < nt && fr / 4 < FETCH_MAX; fr *= 4) {
            int64_t g = fr > nt ? nt : fr;
            g = g > FETCH_MAX ? FETCH_MAX : g;
            int64_t *id1 = sr__model_host(m, SR__HB_FID, sizeof(int64_t) * (size_t)g, err);
            float *sc1 = id1 ? sr__model_host(m, SR__HB_FSC, sizeof(float) * (size_t)g, err) : NULL;
            if (!sc1)
                return SR_ENOMEM;
            /* cid/csc of later rows are not needed past this point only if we restart them:
             * run this row's search into scratch that no longer holds the batch results. */
            if ((rc = sr_faiss_search(m->faiss, 1, q + (size_t)r * (size_t)D, (int)g, &sp, sc1,
                                      id1, err)) != SR_OK)
                return sr_error_prefix(err, "retrieve"), rc;
            done = rank_row(m, qv, id1, (int)g, ex, n_ex, k, oi, os) >= k;
            if (g >= nt || g >= FETCH_MAX)
                break;
        }
        if (!done) {
            int32_t eo1[2] = {eo ? eo[r] : 0, eo ? eo[r + 1] : 0};
            if ((rc = sr__model_topk_exact(m, 1, qv, eo ? eo1 : NULL, ei, k, oi, os, err)) != SR_OK)
                return rc;
        }
        /* The batch's candidates were overwritten by the single-row search: redo the rest. */
        if (r + 1 < n)
            return sr__model_topk_faiss(m, n - r - 1, vecs + (size_t)(r + 1) * (size_t)d,
                                        eo ? eo + r + 1 : NULL, ei, k, oi + k, os + k, err);
    }
    return SR_OK;
}

#else /* !SR_HAVE_FAISS */

sr_err_t sr_bundle_index_build(const sr_bundle_t *b, const char *factory, int64_t train_sample,
                               uint64_t seed, struct sr_faiss **out, struct sr_error *err)
{
    (void)b, (void)factory, (void)train_sample, (void)seed;
    if (out)
        *out = NULL;
    return sr_error_set(err, SR_EUNSUPPORTED, "build index: this build has no FAISS");
}

sr_err_t sr__model_topk_faiss(sr_model_t *m, int32_t n, const float *vecs, const int32_t *eo,
                              const int32_t *ei, int k, int32_t *out_idx, float *out_score,
                              struct sr_error *err)
{
    return sr__model_topk_exact(m, n, vecs, eo, ei, k, out_idx, out_score, err);
}

#endif /* SR_HAVE_FAISS */

sr_err_t sr_model_set_retrieval(sr_model_t *m, const struct sr_retrieval_params *p,
                                struct sr_error *err)
{
    if (!m)
        return sr_error_set(err, SR_EINVAL, "model: NULL model");
    sr_retrieval_mode_t mode = p ? p->mode : SR_RETRIEVAL_AUTO;
    const struct sr_faiss *ix = p && p->index ? p->index : m->bundle->faiss;
    if (p && (p->nprobe < 0 || p->ef_search < 0))
        return sr_error_set(err, SR_ECONFIG, "retrieval: nprobe and ef_search must be >= 0");
    if (mode == SR_RETRIEVAL_FAISS && !sr_faiss_available())
        return sr_error_set(err, SR_EUNSUPPORTED, "retrieval.mode=faiss: this build has no FAISS "
                            "(libfaiss.a was not found at configure time)");
    if (mode == SR_RETRIEVAL_FAISS && !ix)
        return sr_error_set(err, SR_EUNSUPPORTED, "retrieval.mode=faiss: bundle %s has no "
                            "retrieval.index (streamrec bundle build-index)", m->info->dir);
    bool use = mode != SR_RETRIEVAL_EXACT && ix;
#ifdef SR_HAVE_FAISS
    if (use && p && p->index && (!dim_fits(sr_faiss_d(ix), m->d, m->out_bias != NULL) ||
                                 !sr_faiss_is_ip(ix)))
        return sr_error_set(err, SR_EINVAL, "retrieval: index %s of dimension %d does not fit "
                            "the model (d_model %d%s)", sr_faiss_describe(ix), sr_faiss_d(ix),
                            m->d, m->out_bias ? " + bias column" : "");
    if (use)
        snprintf(m->rname, sizeof m->rname, "faiss %s", sr_faiss_describe(ix));
#endif
    m->use_faiss = use;
    m->faiss = use ? ix : NULL;
    m->nprobe = p ? p->nprobe : 0;
    m->ef_search = p ? p->ef_search : 0;
    m->hemb = sr__bundle_item_table(m->bundle, &m->hbias);
    if (!m->info->has_output_bias)
        m->hbias = NULL;
    if (use && !m->hemb)
        return sr_error_set(err, SR_EINTERNAL, "retrieval: no host item table");
    if (!use)
        snprintf(m->rname, sizeof m->rname, "exact");
    return SR_OK;
}

const char *sr_model_retrieval_name(const sr_model_t *m) { return m ? m->rname : ""; }
