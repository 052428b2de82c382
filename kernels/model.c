/* model.c — a bundle bound to a backend: weight upload (or in-place use on a host backend),
 * per-model scratch that grows and is kept (no allocation per batch in steady state), the
 * public encode / top-k / recommend entry points and their argument checks. The arithmetic
 * of each architecture lives in gpt2.c and gru4rec.c.
 * Thread: a model is driven by one thread at a time; ref/unref are atomic. */
#include "model_int.h"

#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void *sr__model_buf(sr_model_t *m, enum sr__mbuf slot, size_t bytes, struct sr_error *err)
{
    struct sr__buf *b = &m->mb[slot];
    if (bytes <= b->cap && b->p)
        return b->p;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < bytes)
        cap *= 2;
    void *p = m->bi->alloc(m->bctx, cap);
    if (!p) {
        sr_error_set(err, SR_ENOMEM, "model: %s backend out of memory for %zu bytes of scratch",
                     m->bi->name, cap);
        return NULL;
    }
    if (b->p)
        m->bi->free(m->bctx, b->p);
    b->p = p;
    b->cap = cap;
    return p;
}

void *sr__model_host(sr_model_t *m, enum sr__hbuf slot, size_t bytes, struct sr_error *err)
{
    struct sr__buf *b = &m->hb[slot];
    if (bytes <= b->cap && b->p)
        return b->p;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < bytes)
        cap *= 2;
    void *p = slot == SR__HB_ZERO ? calloc(1, cap) : malloc(cap);
    if (!p) {
        sr_error_set(err, SR_ENOMEM, "model: out of memory for %zu bytes of host scratch", cap);
        return NULL;
    }
    free(b->p);
    b->p = p;
    b->cap = cap;
    return p;
}

const float *sr__model_weight(sr_model_t *m, const char *name, int ndim, const int64_t *shape,
                              struct sr_error *err)
{
    int nd = 0;
    int64_t sh[4] = {0};
    const float *t = sr_bundle_tensor(m->bundle, name, &nd, sh);
    if (!t) {
        sr_error_set(err, SR_ENOENT, "model: tensor '%s%s' is missing", m->info->tensor_prefix ?
                     m->info->tensor_prefix : "", name);
        return NULL;
    }
    bool ok = nd == ndim;
    size_t n = 1;
    for (int i = 0; ok && i < ndim; i++) {
        ok = sh[i] == shape[i];
        n *= (size_t)shape[i];
    }
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "",
                     (long long)shape[i]);
        for (int i = 0; i < nd && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "",
                     (long long)sh[i]);
        sr_error_set(err, SR_EFORMAT, "model: tensor '%s' has shape [%s], expected [%s]", name,
                     got, want);
        return NULL;
    }
    if (m->in_place)
        return t;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 32;
        void **o = realloc(m->owned, sizeof *o * (size_t)cap);
        if (!o) {
            sr_error_set(err, SR_ENOMEM, "model: out of memory");
            return NULL;
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    float *dst = m->bi->alloc(m->bctx, n * sizeof(float));
    if (!dst) {
        sr_error_set(err, SR_ENOMEM, "model: %s backend out of memory for tensor '%s' (%zu bytes)",
                     m->bi->name, name, n * sizeof(float));
        return NULL;
    }
    m->owned[m->n_owned++] = dst;
    if (m->bi->upload(m->bctx, dst, t, n * sizeof(float), err) != SR_OK) {
        sr_error_prefix(err, "model: uploading '%s'", name);
        return NULL;
    }
    return dst;
}

static void model_free(sr_model_t *m)
{
    if (m->pinned)
        m->bi->topk_unpin(m->bctx, m->emb, m->d, m->first, m->V);
    if (m->filt_buf)
        m->bi->free(m->bctx, m->filt_buf);
    for (int i = 0; i < m->n_owned; i++)
        m->bi->free(m->bctx, m->owned[i]);
    free(m->owned);
    sr__kv_free(m, m->kv);
    for (int l = 0; m->rl && l < m->info->n_layers; l++)
        if (m->rl[l].packed)
            m->bi->free(m->bctx, m->rl[l].packed);
    for (int i = 0; i < SR__MB_COUNT; i++)
        if (m->mb[i].p)
            m->bi->free(m->bctx, m->mb[i].p);
    for (int i = 0; i < SR__HB_COUNT; i++)
        free(m->hb[i].p);
    free(m->gl);
    free(m->rl);
    free(m->allowed);
    sr_backend_unref(m->be);
    sr_bundle_unref(m->bundle);
    free(m);
}

sr_err_t sr_model_new(sr_bundle_t *bundle, sr_backend_t *be, sr_model_t **out, struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "model: NULL out");
    *out = NULL;
    if (!bundle || !be)
        return sr_error_set(err, SR_EINVAL, "model: NULL bundle or backend");
    sr_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return sr_error_set(err, SR_ENOMEM, "model: out of memory");
    m->refs = 1;
    m->bundle = sr_bundle_ref(bundle);
    m->be = sr_backend_ref(be);
    m->bi = be->iface;
    m->bctx = be->ctx;
    m->info = sr_bundle_info(bundle);
    m->d = m->info->d_model;
    m->V = m->info->n_items;
    m->first = m->info->first_index;
    m->max_len = m->info->max_len;
    /* A backend whose memory is host memory (cpu) uses the bundle's F32 views (mmap or widened
     * copies, alive as long as our bundle reference) directly: a 10^6-row table is not copied. */
    m->in_place = (m->bi->flags & SR_BACKEND_HOST_MEMORY) != 0;
    if (m->bi->api_version < SR_BACKEND_API_VERSION) {
        model_free(m);
        return sr_error_set(err, SR_EDEVICE, "model: backend '%s' has api_version %d, need %d",
                            be->iface->name, be->iface->api_version, SR_BACKEND_API_VERSION);
    }
    sr_err_t rc;
    if (m->d <= 0 || m->V <= 0 || m->max_len <= 0 || m->info->n_layers < 0)
        rc = sr_error_set(err, SR_EINVAL, "model: bad dimensions d_model=%d V=%d max_len=%d",
                          m->d, m->V, m->max_len);
    else if (m->info->arch == SR_ARCH_GPT2)
        rc = sr__gpt2_bind(m, err);
    else if (m->info->arch == SR_ARCH_GRU4REC)
        rc = sr__gru4rec_bind(m, err);
    else
        rc = sr_error_set(err, SR_EUNSUPPORTED, "model: unknown arch %d", (int)m->info->arch);
    if (rc == SR_OK && m->info->has_output_bias) {
        int64_t sh[1] = {m->V};
        m->out_bias = sr__model_weight(m, "output.bias", 1, sh, err);
        if (!m->out_bias)
            rc = err ? err->code : SR_EFORMAT;
    }
    if (rc == SR_OK) {
        m->host_emb = sr_bundle_tensor(bundle, m->info->arch == SR_ARCH_GPT2 ? "wte.weight"
                                                                          : "item_embedding.weight",
                                       NULL, NULL);
        m->host_bias = m->info->has_output_bias ? sr_bundle_tensor(bundle, "output.bias", NULL, NULL)
                                                : NULL;
        if (!m->host_emb)
            rc = sr_error_set(err, SR_EINTERNAL, "model: item embedding table not in the bundle");
    }
    /* the catalogue stays put while the model lives: the backend may pack it once (DESIGN §8) */
    if (rc == SR_OK && m->bi->topk_pin &&
        (rc = m->bi->topk_pin(m->bctx, m->emb, m->d, m->first, m->V, err)) == SR_OK)
        m->pinned = true;
    m->n_allowed = m->V - m->first;
    /* retrieval.mode=auto by default: the bundle's FAISS index when it has one. */
    if (rc == SR_OK)
        rc = sr_model_set_retrieval(m, NULL, err);
    if (rc != SR_OK) {
        model_free(m);
        return rc;
    }
    *out = m;
    return SR_OK;
}

sr_model_t *sr_model_ref(sr_model_t *m)
{
    if (m)
        __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void sr_model_unref(sr_model_t *m)
{
    if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        model_free(m);
}

sr_bundle_t *sr_model_bundle(const sr_model_t *m) { return m ? m->bundle : NULL; }
sr_backend_t *sr_model_backend(const sr_model_t *m) { return m ? m->be : NULL; }

static sr_err_t check_excl(const sr_model_t *m, int32_t n, const int32_t *eo, const int32_t *ei,
                           struct sr_error *err)
{
    if (!eo)
        return SR_OK;
    if (eo[0] < 0 || (eo[n] > eo[0] && !ei))
        return sr_error_set(err, SR_EINVAL, "model: bad exclusion list");
    for (int32_t b = 0; b < n; b++)
        if (eo[b + 1] < eo[b])
            return sr_error_set(err, SR_EINVAL, "model: exclusion offsets decrease at session %d", b);
    (void)m;
    return SR_OK;
}

static sr_err_t check_batch(const sr_model_t *m, const struct sr_session_batch *b,
                            struct sr_error *err)
{
    if (!b || b->n < 0 || (b->n > 0 && (!b->offsets || !b->items)))
        return sr_error_set(err, SR_EINVAL, "model: bad session batch");
    if (b->n > 0 && b->offsets[0] < 0)
        return sr_error_set(err, SR_EINVAL, "model: session batch offsets[0] < 0");
    for (int32_t s = 0; s < b->n; s++) {
        if (b->offsets[s + 1] <= b->offsets[s])
            return sr_error_set(err, SR_EINVAL, "model: session %d of the batch has no items", s);
        for (int32_t i = b->offsets[s]; i < b->offsets[s + 1]; i++)
            if (b->items[i] < 0 || b->items[i] >= m->V)
                return sr_error_set(err, SR_ERANGE,
                                    "model: session %d item %d is index %d, outside 0..%d", s,
                                    i - b->offsets[s], b->items[i], m->V - 1);
    }
    return check_excl(m, b->n, b->excl_offsets, b->excl_items, err);
}

static sr_err_t encode_dev(sr_model_t *m, const struct sr_session_batch *b, float **dvecs,
                           struct sr_error *err)
{
    sr_err_t rc = check_batch(m, b, err);
    if (rc != SR_OK)
        return rc;
    float *v = sr__model_buf(m, SR__MB_VECS, sizeof(float) * (size_t)(b->n ? b->n : 1) * m->d, err);
    if (!v)
        return SR_ENOMEM;
    *dvecs = v;
    if (b->n == 0)
        return SR_OK;
    return m->info->arch == SR_ARCH_GPT2 ? sr__gpt2_encode(m, b, v, err)
                                         : sr__gru4rec_encode(m, b, v, err);
}

sr_err_t sr_model_encode(sr_model_t *m, const struct sr_session_batch *batch, float *vecs,
                         struct sr_error *err)
{
    if (!m || !vecs)
        return sr_error_set(err, SR_EINVAL, "model encode: NULL argument");
    if (m->kv) { /* gpt2 through its encode cache (kvcache.c) */
        sr_err_t rc = check_batch(m, batch, err);
        if (rc != SR_OK || batch->n == 0)
            return rc;
        return sr__gpt2_encode_cached(m, batch, vecs, err);
    }
    float *dv;
    sr_err_t rc = encode_dev(m, batch, &dv, err);
    if (rc != SR_OK || batch->n == 0)
        return rc;
    return m->bi->download(m->bctx, vecs, dv, sizeof(float) * (size_t)batch->n * m->d, err);
}

sr_err_t sr_model_set_encode_cache(sr_model_t *m, size_t bytes, struct sr_error *err)
{
    if (!m)
        return sr_error_set(err, SR_EINVAL, "model encode cache: NULL model");
    /* the cache hands its host rows to attention_rows as backend memory: host memory only */
    if (bytes && (m->info->arch != SR_ARCH_GPT2 || m->info->n_layers < 1 || !m->bi->numerics ||
                  !m->bi->attention_rows || !(m->bi->flags & SR_BACKEND_HOST_MEMORY)))
        return sr_error_set(err, SR_EUNSUPPORTED, "model encode cache: %s on backend %s keeps "
                            "no cache (gpt2 on a row-deterministic, prefix-consistent backend "
                            "only: see DESIGN §3.1)", m->info->arch_name, m->bi->name);
    sr__kv_free(m, m->kv);
    m->kv = NULL;
    return bytes ? sr__kv_new(m, bytes, &m->kv, err) : SR_OK;
}

void sr_model_encode_cache_stats(const sr_model_t *m, struct sr_encode_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (m && m->kv)
        sr__kv_stats(m->kv, out);
}

size_t sr_model_state_size(const sr_model_t *m)
{
    return m && m->info->arch == SR_ARCH_GRU4REC ? sr__gru4rec_state_size(m) : 0;
}

sr_err_t sr_model_encode_resume(sr_model_t *m, const struct sr_session_batch *batch,
                                struct sr_encode_states *st, float *vecs, struct sr_error *err)
{
    if (!m || !vecs || !st || (batch && batch->n > 0 && (!st->out || !st->out_ok)))
        return sr_error_set(err, SR_EINVAL, "model encode resume: NULL argument");
    if (!sr_model_state_size(m))
        return sr_error_set(err, SR_EUNSUPPORTED, "model encode resume: %s on backend %s keeps "
                            "no encoder state", m->info->arch_name, m->bi->name);
    sr_err_t rc = check_batch(m, batch, err);
    if (rc != SR_OK || batch->n == 0)
        return rc;
    return sr__gru4rec_encode_resume(m, batch, st, vecs, err);
}

/* Candidates fetched beyond k for re-scoring (see rescore()). */
#define SR_RESCORE_MARGIN 8

/* The backends' fast scores depend, in their last bits, on how a GEMM was blocked, which
 * depends on the batch. DESIGN §8 wants the same bytes whatever the batch: the backend picks
 * k + SR_RESCORE_MARGIN candidates, and each is re-scored on the host in double precision in a
 * fixed order (q·E[j] + bias[j]), then sorted (score descending, index ascending). The answer
 * can differ from a full exact ranking only if the fast scores mis-order items across the
 * margin, i.e. nine near-equal scores; the output no longer depends on the batch at all. */
static void rescore(const sr_model_t *m, int32_t n, const float *hq, int k2, const int32_t *cidx,
                    const float *cscore, int k, int32_t *out_idx, float *out_score)
{
    (void)cscore;
    const int d = m->d;
    for (int32_t b = 0; b < n; b++) {
        int32_t *oi = out_idx + (size_t)b * k;
        float *os = out_score + (size_t)b * k;
        int cnt = 0;
        for (int i = 0; i < k2; i++) {
            int32_t j = cidx[(size_t)b * k2 + i];
            if (j < 0)
                continue;
            const float *q = hq + (size_t)b * d, *e = m->host_emb + (size_t)j * d;
            double acc = m->host_bias ? (double)m->host_bias[j] : 0.0;
            for (int c = 0; c < d; c++)
                acc += (double)q[c] * (double)e[c];
            float s = (float)acc;
            /* insertion into the first min(cnt, k) slots: descending score, ascending index */
            int p = cnt < k ? cnt : k;
            if (p == k && !(s > os[k - 1] || (s == os[k - 1] && j < oi[k - 1])))
                continue;
            if (p == k)
                p--;
            while (p > 0 && (os[p - 1] < s || (os[p - 1] == s && oi[p - 1] > j))) {
                os[p] = os[p - 1];
                oi[p] = oi[p - 1];
                p--;
            }
            os[p] = s;
            oi[p] = j;
            if (cnt < k)
                cnt++;
        }
        for (int i = cnt; i < k; i++) {
            oi[i] = -1;
            os[i] = -INFINITY;
        }
    }
}

/* Uploads the exclusion lists (when any), runs the backend's top-k on device queries dq and
 * re-scores its candidates with the host queries hq. */
static sr_err_t topk_dev(sr_model_t *m, int32_t n, const float *dq, const float *hq,
                         const int32_t *eo, const int32_t *ei, int k, int32_t *out_idx,
                         float *out_score, struct sr_error *err)
{
    const int32_t *deo = NULL, *dei = NULL;
    if (eo) {
        size_t ne = (size_t)eo[n];
        int32_t *a = sr__model_buf(m, SR__MB_EXCL_OFF, sizeof(int32_t) * ((size_t)n + 1), err);
        int32_t *c = a ? sr__model_buf(m, SR__MB_EXCL, sizeof(int32_t) * (ne ? ne : 1), err) : NULL;
        if (!a || !c)
            return SR_ENOMEM;
        sr_err_t rc = m->bi->upload(m->bctx, a, eo, sizeof(int32_t) * ((size_t)n + 1), err);
        if (rc == SR_OK && ne)
            rc = m->bi->upload(m->bctx, c, ei, sizeof(int32_t) * ne, err);
        if (rc != SR_OK)
            return rc;
        deo = a;
        dei = c;
    }
    const int k2 = k + SR_RESCORE_MARGIN;
    int32_t *cidx = sr__model_host(m, SR__HB_RS_IDX, sizeof(int32_t) * (size_t)n * k2, err);
    float *cscore = cidx ? sr__model_host(m, SR__HB_RS_SCORE, sizeof(float) * (size_t)n * k2, err) : NULL;
    if (!cscore)
        return SR_ENOMEM;
    sr_err_t rc = m->bi->topk(m->bctx, dq, n, m->emb, m->filt_bias ? m->filt_bias : m->out_bias,
                              m->d, m->first, m->V, deo, dei, k2, cidx, cscore, err);
    if (rc != SR_OK)
        return rc;
    rescore(m, n, hq, k2, cidx, cscore, k, out_idx, out_score);
    return SR_OK;
}

sr_err_t sr_model_set_item_filter(sr_model_t *m, const uint8_t *allowed, struct sr_error *err)
{
    if (!m)
        return sr_error_set(err, SR_EINVAL, "model: NULL model");
    if (m->filt_buf) {
        m->bi->free(m->bctx, m->filt_buf);
        m->filt_buf = NULL;
        m->filt_bias = NULL;
    }
    free(m->allowed);
    m->allowed = NULL;
    m->n_allowed = m->V - m->first;
    if (!allowed)
        return SR_OK;
    /* FAISS retrieval filters its candidates on the host: keep a copy there. */
    if (!(m->allowed = malloc((size_t)m->V)))
        return sr_error_set(err, SR_ENOMEM, "model: out of memory for the item filter");
    memcpy(m->allowed, allowed, (size_t)m->V);
    m->n_allowed = 0;
    for (int j = m->first; j < m->V; j++)
        m->n_allowed += allowed[j] != 0;
    /* bias[j] = output.bias[j] (or 0), -INF for a disallowed item: the backends never return
     * an item scoring -INF, so rules cost one add per score, already paid for the bias. */
    float *host = malloc(sizeof(float) * (size_t)m->V);
    if (!host)
        return sr_error_set(err, SR_ENOMEM, "model: out of memory for the item filter");
    const float *bias = m->out_bias ? sr_bundle_tensor(m->bundle, "output.bias", NULL, NULL) : NULL;
    for (int j = 0; j < m->V; j++)
        host[j] = allowed[j] ? (bias ? bias[j] : 0.0f) : -INFINITY;
    sr_err_t rc = SR_OK;
    m->filt_buf = m->bi->alloc(m->bctx, sizeof(float) * (size_t)m->V);
    if (!m->filt_buf)
        rc = sr_error_set(err, SR_ENOMEM, "model: out of backend memory for the item filter");
    else
        rc = m->bi->upload(m->bctx, m->filt_buf, host, sizeof(float) * (size_t)m->V, err);
    free(host);
    if (rc != SR_OK) {
        if (m->filt_buf)
            m->bi->free(m->bctx, m->filt_buf);
        m->filt_buf = NULL;
        return rc;
    }
    m->filt_bias = m->filt_buf;
    return SR_OK;
}

sr_err_t sr_model_topk(sr_model_t *m, int32_t n, const float *vecs, const int32_t *excl_offsets,
                       const int32_t *excl_items, int k, int32_t *out_idx, float *out_score,
                       struct sr_error *err)
{
    if (!m || n < 0 || k < 0 || (n > 0 && k > 0 && (!vecs || !out_idx || !out_score)))
        return sr_error_set(err, SR_EINVAL, "model topk: bad argument");
    if (n == 0 || k == 0)
        return SR_OK;
    sr_err_t rc = check_excl(m, n, excl_offsets, excl_items, err);
    if (rc != SR_OK)
        return rc;
    if (m->use_faiss)
        return sr__model_topk_faiss(m, n, vecs, excl_offsets, excl_items, k, out_idx, out_score,
                                    err);
    return sr__model_topk_exact(m, n, vecs, excl_offsets, excl_items, k, out_idx, out_score, err);
}

sr_err_t sr__model_topk_exact(sr_model_t *m, int32_t n, const float *vecs,
                              const int32_t *excl_offsets, const int32_t *excl_items, int k,
                              int32_t *out_idx, float *out_score, struct sr_error *err)
{
    sr_err_t rc;
    size_t bytes = sizeof(float) * (size_t)n * m->d;
    float *dq = sr__model_buf(m, SR__MB_VECS, bytes, err);
    if (!dq)
        return SR_ENOMEM;
    if ((rc = m->bi->upload(m->bctx, dq, vecs, bytes, err)) != SR_OK)
        return rc;
    return topk_dev(m, n, dq, vecs, excl_offsets, excl_items, k, out_idx, out_score, err);
}

sr_err_t sr_model_recommend(sr_model_t *m, const struct sr_session_batch *batch, int k,
                            int32_t *out_idx, float *out_score, struct sr_error *err)
{
    if (!m || !batch || k < 0 || (batch->n > 0 && k > 0 && (!out_idx || !out_score)))
        return sr_error_set(err, SR_EINVAL, "model recommend: bad argument");
    float *dv;
    sr_err_t rc = encode_dev(m, batch, &dv, err);
    if (rc != SR_OK || batch->n == 0 || k == 0)
        return rc;
    if (m->use_faiss) {
        /* FAISS searches host memory: bring the session vectors back first. */
        size_t bytes = sizeof(float) * (size_t)batch->n * m->d;
        float *hv = sr__model_host(m, SR__HB_FVEC, bytes, err);
        if (!hv)
            return SR_ENOMEM;
        if ((rc = m->bi->download(m->bctx, hv, dv, bytes, err)) != SR_OK)
            return rc;
        return sr__model_topk_faiss(m, batch->n, hv, batch->excl_offsets, batch->excl_items, k,
                                    out_idx, out_score, err);
    }
    size_t bytes = sizeof(float) * (size_t)batch->n * m->d;
    float *hq = sr__model_host(m, SR__HB_RS_Q, bytes, err);
    if (!hq)
        return SR_ENOMEM;
    if ((rc = m->bi->download(m->bctx, hq, dv, bytes, err)) != SR_OK)
        return rc;
    return topk_dev(m, batch->n, dv, hq, batch->excl_offsets, batch->excl_items, k, out_idx,
                    out_score, err);
}

double sr_model_encode_flops(const sr_model_t *m, int64_t tokens, int32_t n)
{
    if (!m)
        return 0;
    return m->info->arch == SR_ARCH_GPT2 ? sr__gpt2_flops(m, tokens, n)
                                         : sr__gru4rec_flops(m, tokens, n);
}
