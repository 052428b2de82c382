/* kvcache.c — the gpt2 encode cache (DESIGN §3.1): per encoded sequence, the q|k|v rows of
 * every layer, so that when a session grows by n items the next encode runs only the n new rows
 * through the projections and MLPs, and attention for them over the cached rows plus the new
 * ones (the backend's attention_rows, reading each entry's rows where they lie).
 *
 * Why the bytes are those of the full forward: every op of the model except attention is per
 * row and row-deterministic on the backends the cache runs on (cpu: cpu_gemm.c, and per-row
 * layer norm, bias/activation, embedding), so a row's bits do not depend on the other rows of
 * the call; attention_rows gives a row the bits `attention` gives it over the same session's
 * rows, so the new rows are those of the full forward — provided every cached row is the row
 * a full forward of the longer sequence computes: per-row ops give that, and the cpu attention
 * is prefix-consistent (row i's bits depend on rows 0..i only, cpu_backend.c), so by
 * induction over the blocks and the events each cached row is. The last block, as in gpt2.c,
 * continues on the last row alone.
 *
 * Entries are keyed by a hash of the item prefix they hold and checked against the items
 * themselves, so a hit is exact; the longest cached prefix of a session wins. An entry found
 * for a session is extended in place (re-keyed to the longer prefix): the shorter prefix is not
 * needed again by a session that grew. Least recently used entries go when the bytes pass the
 * bound, after each batch (a batch may overshoot by its own entries). Sessions longer than
 * max_len slide their window, which shifts every position: they are encoded in full and not
 * cached. Owned by the model; driven by the model's thread (one caller at a time). */
#include "model_int.h"

#include <stdlib.h>
#include <string.h>

struct kv_ent {
    uint64_t key;                 /* prefix hash of items[0..p) */
    int p, cap;                   /* rows held, rows allocated (<= max_len) */
    int32_t *items;               /* [cap] */
    float *vec;                   /* [d]: the session vector of items[0..p) */
    float *qkv;                   /* [n_layers][cap][3d] */
    size_t bytes;
    struct kv_ent *hnext;         /* hash chain */
    struct kv_ent *prev, *next;   /* LRU: head = most recent */
    bool busy;                    /* claimed by a session of the current batch */
};

struct sr__kv {
    size_t cap_bytes, bytes;
    struct kv_ent **buckets;
    size_t nbuckets, count;       /* power of two */
    struct kv_ent *head, *tail;
    struct sr_encode_cache_stats st;
};

sr_err_t sr__kv_new(sr_model_t *m, size_t bytes, struct sr__kv **out, struct sr_error *err)
{
    (void)m;
    struct sr__kv *kv = calloc(1, sizeof *kv);
    if (kv)
        kv->buckets = calloc(kv->nbuckets = 1024, sizeof *kv->buckets);
    if (!kv || !kv->buckets) {
        free(kv);
        return sr_error_set(err, SR_ENOMEM, "encode cache: out of memory");
    }
    kv->cap_bytes = bytes;
    *out = kv;
    return SR_OK;
}

static void ent_free(struct kv_ent *e)
{
    if (e) {
        free(e->items);
        free(e->vec);
        free(e->qkv);
        free(e);
    }
}

void sr__kv_free(sr_model_t *m, struct sr__kv *kv)
{
    (void)m;
    if (!kv)
        return;
    for (struct kv_ent *e = kv->head, *n; e; e = n) {
        n = e->next;
        ent_free(e);
    }
    free(kv->buckets);
    free(kv);
}

void sr__kv_stats(const struct sr__kv *kv, struct sr_encode_cache_stats *out)
{
    *out = kv->st;
    out->bytes = kv->bytes;
    out->entries = kv->count;
}

/* Prefix hashes h[j] of items[0..j), j = 0..n: a chain of the splitmix64 finaliser. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void prefix_hashes(const int32_t *items, int n, uint64_t *h)
{
    h[0] = 0x5352475054324b56ull; /* "SRGPT2KV" */
    for (int j = 0; j < n; j++)
        h[j + 1] = mix64(h[j] ^ (uint32_t)items[j]);
}

static struct kv_ent **bucket(struct sr__kv *kv, uint64_t key)
{
    return &kv->buckets[key & (kv->nbuckets - 1)];
}

static void hash_remove(struct sr__kv *kv, struct kv_ent *e)
{
    struct kv_ent **l = bucket(kv, e->key);
    while (*l != e)
        l = &(*l)->hnext;
    *l = e->hnext;
    kv->count--;
}

static void hash_insert(struct sr__kv *kv, struct kv_ent *e)
{
    if (kv->count + 1 > kv->nbuckets) { /* grow: rehash every chain */
        size_t nb = kv->nbuckets * 2;
        struct kv_ent **b = calloc(nb, sizeof *b);
        if (b) {
            for (size_t i = 0; i < kv->nbuckets; i++)
                for (struct kv_ent *x = kv->buckets[i], *n; x; x = n) {
                    n = x->hnext;
                    x->hnext = b[x->key & (nb - 1)];
                    b[x->key & (nb - 1)] = x;
                }
            free(kv->buckets);
            kv->buckets = b;
            kv->nbuckets = nb;
        } /* on OOM the chains just get longer */
    }
    struct kv_ent **l = bucket(kv, e->key);
    e->hnext = *l;
    *l = e;
    kv->count++;
}

static void lru_unlink(struct sr__kv *kv, struct kv_ent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        kv->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        kv->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(struct sr__kv *kv, struct kv_ent *e)
{
    e->prev = NULL;
    e->next = kv->head;
    if (kv->head)
        kv->head->prev = e;
    kv->head = e;
    if (!kv->tail)
        kv->tail = e;
}

static struct kv_ent *find(struct sr__kv *kv, uint64_t key, int p, const int32_t *items)
{
    for (struct kv_ent *e = *bucket(kv, key); e; e = e->hnext)
        if (e->key == key && e->p == p && !e->busy &&
            memcmp(e->items, items, sizeof(int32_t) * (size_t)p) == 0)
            return e;
    return NULL;
}

/* Grows e to hold `rows` rows (<= max_len); false on OOM (e unchanged). */
static bool ent_reserve(sr_model_t *m, struct sr__kv *kv, struct kv_ent *e, int rows)
{
    if (rows <= e->cap)
        return true;
    int cap = e->cap ? e->cap : 8;
    while (cap < rows)
        cap *= 2;
    if (cap > m->max_len)
        cap = m->max_len;
    size_t d3 = (size_t)3 * m->d, nl = (size_t)m->info->n_layers;
    int32_t *it = realloc(e->items, sizeof(int32_t) * (size_t)cap);
    if (!it)
        return false;
    e->items = it;
    float *q = malloc(sizeof(float) * nl * (size_t)cap * d3);
    if (!q)
        return false;
    for (size_t l = 0; l < nl && e->p; l++)
        memcpy(q + l * cap * d3, e->qkv + l * e->cap * d3, sizeof(float) * (size_t)e->p * d3);
    free(e->qkv);
    e->qkv = q;
    size_t bytes = sizeof *e + sizeof(int32_t) * (size_t)cap + sizeof(float) * (size_t)m->d +
                   sizeof(float) * nl * (size_t)cap * d3;
    kv->bytes += bytes - e->bytes;
    e->bytes = bytes;
    e->cap = cap;
    return true;
}

static struct kv_ent *ent_new(sr_model_t *m, struct sr__kv *kv, int rows)
{
    struct kv_ent *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->vec = malloc(sizeof(float) * (size_t)m->d);
    e->bytes = 0;
    if (!e->vec || !ent_reserve(m, kv, e, rows)) {
        kv->bytes -= e->bytes;
        ent_free(e);
        return NULL;
    }
    return e;
}

static void trim(struct sr__kv *kv)
{
    while (kv->bytes > kv->cap_bytes && kv->tail) {
        struct kv_ent *e = kv->tail;
        lru_unlink(kv, e);
        hash_remove(kv, e);
        kv->bytes -= e->bytes;
        kv->st.evictions++;
        ent_free(e);
    }
}

/* ---- the batch ---------------------------------------------------------------------------- */

enum { K_FULL = 0, K_CAPTURE = 1, K_RESUME = 2, K_DONE = 3 };

struct capture_job {
    sr_model_t *m;
    const int32_t *sub_kind;  /* [n sub-batch sessions] */
    struct kv_ent **sub_ent;  /* [n] */
    int n;
};

/* The full forward's q|k|v rows of the sessions that will be cached, into their entries. */
static sr_err_t capture_fn(void *opaque, int layer, const float *qkv, const int32_t *ho,
                           struct sr_error *err)
{
    struct capture_job *j = opaque;
    size_t d3 = (size_t)3 * j->m->d;
    for (int i = 0; i < j->n; i++) {
        struct kv_ent *e = j->sub_ent[i];
        if (!e)
            continue;
        int L = ho[i + 1] - ho[i];
        TRY(j->m->bi->download(j->m->bctx, e->qkv + (size_t)layer * e->cap * d3,
                               qkv + (size_t)ho[i] * d3, sizeof(float) * (size_t)L * d3, err));
    }
    return SR_OK;
}

/* Host arrays of one batch, carved from one scratch slot. */
struct plan {
    int32_t *kind, *sub_off, *sub_items, *new_items, *new_pos, *last_new, *rsess;
    int32_t *first, *len, *out_row, *last_first, *last_row; /* attention_rows, per resumed */
    struct kv_ent **ent, **sub_ent;
    const float **rows;       /* [nr]: a resumed session's q|k|v rows of the current layer */
    uint64_t *h, *key;        /* prefix hashes of one session; key[s]: hash of all its items */
    float *hv;
};

/* The incremental forward of nr sessions (rsess: their batch indices), each with its entry
 * holding p rows and n = len - p >= 1 new items: see the file comment. Per layer the new
 * rows' q|k|v join their entries (rows past p mean nothing until p moves, on success) and
 * attention_rows reads each session's rows where the entry keeps them, computing the new rows
 * only (the last layer: the last row only, as gpt2.c). */
static sr_err_t resume_forward(sr_model_t *m, const struct sr_session_batch *b,
                               struct plan *P, int nr, float *vecs, struct sr_error *err)
{
    const struct sr_backend_iface *bi = m->bi;
    void *cx = m->bctx;
    const struct sr_bundle_info *in = m->info;
    int d = m->d, ff = in->d_ff, nl = in->n_layers, dh = d / in->n_heads;
    size_t d3 = (size_t)3 * d;
    float eps = in->layer_norm_eps;
    int Tn = 0;
    for (int i = 0; i < nr; i++) {
        int s = P->rsess[i], len = b->offsets[s + 1] - b->offsets[s];
        struct kv_ent *e = P->ent[s];
        const int32_t *W = b->items + b->offsets[s];
        P->first[i] = e->p;
        P->len[i] = len;
        P->out_row[i] = Tn;
        P->last_first[i] = len - 1;
        P->last_row[i] = i;
        for (int t = e->p; t < len; t++, Tn++) {
            P->new_items[Tn] = W[t];
            P->new_pos[Tn] = t;
        }
        P->last_new[i] = Tn - 1;
    }
    int32_t *di = sr__model_buf(m, SR__MB_ITEMS, sizeof(int32_t) * Tn, err);
    int32_t *dp = di ? sr__model_buf(m, SR__MB_POS, sizeof(int32_t) * Tn, err) : NULL;
    int32_t *dln = dp ? sr__model_buf(m, SR__MB_KV_LN, sizeof(int32_t) * nr, err) : NULL;
    float *X = dln ? sr__model_buf(m, SR__MB_X, sizeof(float) * (size_t)Tn * d, err) : NULL;
    float *H = X ? sr__model_buf(m, SR__MB_H, sizeof(float) * (size_t)Tn * d, err) : NULL;
    float *QN = H ? sr__model_buf(m, SR__MB_KV_QKV, sizeof(float) * (size_t)Tn * d3, err) : NULL;
    float *ATT = QN ? sr__model_buf(m, SR__MB_ATT, sizeof(float) * (size_t)Tn * d, err) : NULL;
    float *FF = ATT ? sr__model_buf(m, SR__MB_FF, sizeof(float) * (size_t)Tn * ff, err) : NULL;
    float *XL = FF ? sr__model_buf(m, SR__MB_XL, sizeof(float) * (size_t)nr * d, err) : NULL;
    float *AL = XL ? sr__model_buf(m, SR__MB_AL, sizeof(float) * (size_t)nr * d, err) : NULL;
    float *VO = AL ? sr__model_buf(m, SR__MB_VECS, sizeof(float) * (size_t)nr * d, err) : NULL;
    if (!VO)
        return SR_ENOMEM;
    TRY(bi->upload(cx, di, P->new_items, sizeof(int32_t) * Tn, err));
    TRY(bi->upload(cx, dp, P->new_pos, sizeof(int32_t) * Tn, err));
    TRY(bi->upload(cx, dln, P->last_new, sizeof(int32_t) * nr, err));

    TRY(bi->embed(cx, m->emb, m->wpe, di, dp, Tn, d, X, err));
    float *x = X;
    int n = Tn;
    for (int l = 0; l < nl; l++) {
        const struct sr__gpt2_layer *L = &m->gl[l];
        TRY(bi->layer_norm(cx, x, L->ln1_g, L->ln1_b, n, d, eps, H, err));
        TRY(bi->gemm(cx, false, false, n, 3 * d, d, 1.0f, H, d, L->attn_w, 3 * d, 0.0f, QN,
                     3 * d, err));
        TRY(bi->bias_act(cx, QN, L->attn_b, n, 3 * d, SR_ACT_NONE, err));
        for (int i = 0; i < nr; i++) { /* the new rows join their entries */
            struct kv_ent *e = P->ent[P->rsess[i]];
            float *rows = e->qkv + (size_t)l * e->cap * d3;
            TRY(bi->download(cx, rows + (size_t)e->p * d3, QN + (size_t)P->out_row[i] * d3,
                             sizeof(float) * (size_t)(P->len[i] - e->p) * d3, err));
            P->rows[i] = rows;
        }
        const float *att;
        if (l == nl - 1) {
            TRY(bi->attention_rows(cx, P->rows, P->last_first, P->len, P->last_row, nr,
                                   m->max_len, in->n_heads, dh, AL, err));
            TRY(bi->gather_rows(cx, X, dln, nr, d, XL, err));
            att = AL;
            x = XL;
            n = nr;
        } else {
            TRY(bi->attention_rows(cx, P->rows, P->first, P->len, P->out_row, nr, m->max_len,
                                   in->n_heads, dh, ATT, err));
            att = ATT;
        }
        TRY(bi->gemm(cx, false, false, n, d, d, 1.0f, att, d, L->proj_w, d, 1.0f, x, d, err));
        TRY(bi->bias_act(cx, x, L->proj_b, n, d, SR_ACT_NONE, err));
        TRY(bi->layer_norm(cx, x, L->ln2_g, L->ln2_b, n, d, eps, H, err));
        TRY(bi->gemm(cx, false, false, n, ff, d, 1.0f, H, d, L->fc_w, ff, 0.0f, FF, ff, err));
        TRY(bi->bias_act(cx, FF, L->fc_b, n, ff, in->activation, err));
        TRY(bi->gemm(cx, false, false, n, d, ff, 1.0f, FF, ff, L->fc2_w, d, 1.0f, x, d, err));
        TRY(bi->bias_act(cx, x, L->fc2_b, n, d, SR_ACT_NONE, err));
    }
    TRY(bi->layer_norm(cx, x, m->lnf_g, m->lnf_b, nr, d, eps, VO, err));
    TRY(bi->download(cx, P->hv, VO, sizeof(float) * (size_t)nr * d, err));
    int Ta = 0;
    for (int i = 0; i < nr; i++) {
        memcpy(vecs + (size_t)P->rsess[i] * d, P->hv + (size_t)i * d, sizeof(float) * d);
        Ta += P->len[i];
    }
    m->kv->st.rows_computed += (uint64_t)Tn;
    m->kv->st.rows_reused += (uint64_t)(Ta - Tn);
    return SR_OK;
}

static sr_err_t encode_cached(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                              struct plan *P, struct sr_error *err)
{
    struct sr__kv *kv = m->kv;
    int B = b->n, d = m->d;
    /* 1. what each session needs */
    int nsub = 0, nr = 0, subtok = 0;
    for (int s = 0; s < B; s++) {
        int len = b->offsets[s + 1] - b->offsets[s];
        const int32_t *W = b->items + b->offsets[s];
        P->ent[s] = NULL;
        P->kind[s] = K_FULL;
        if (len <= m->max_len) {
            prefix_hashes(W, len, P->h);
            P->key[s] = P->h[len];
            for (int j = len; j >= 1 && !P->ent[s]; j--)
                P->ent[s] = find(kv, P->h[j], j, W);
            if (P->ent[s]) {
                struct kv_ent *e = P->ent[s];
                e->busy = true;
                if (e->p == len) {
                    P->kind[s] = K_DONE;
                } else if (ent_reserve(m, kv, e, len)) {
                    P->kind[s] = K_RESUME;
                    P->rsess[nr++] = s;
                } else { /* no memory to grow it: encode in full, leave it */
                    e->busy = false;
                    P->ent[s] = NULL;
                }
            }
            if (!P->ent[s])
                P->kind[s] = K_CAPTURE;
        }
        if (P->kind[s] <= K_CAPTURE) {
            kv->st.misses++;
            subtok += len;
            nsub++;
        } else {
            kv->st.hits++;
        }
    }
    /* 2. the misses: one full forward, capturing the rows of those that will be cached */
    if (nsub) {
        int i = 0, t = 0;
        P->sub_off[0] = 0;
        for (int s = 0; s < B; s++) {
            if (P->kind[s] > K_CAPTURE)
                continue;
            int len = b->offsets[s + 1] - b->offsets[s];
            memcpy(P->sub_items + t, b->items + b->offsets[s], sizeof(int32_t) * (size_t)len);
            t += len;
            P->sub_off[++i] = t;
            P->sub_ent[i - 1] = P->kind[s] == K_CAPTURE ? ent_new(m, kv, len) : NULL;
            P->ent[s] = P->sub_ent[i - 1]; /* NULL on OOM: not cached */
        }
        struct sr_session_batch sub = {.n = nsub, .offsets = P->sub_off, .items = P->sub_items};
        struct capture_job cj = {.m = m, .sub_ent = P->sub_ent, .n = nsub};
        struct sr__gpt2_capture cap = {.fn = capture_fn, .opaque = &cj};
        float *dv = sr__model_buf(m, SR__MB_VECS, sizeof(float) * (size_t)nsub * d, err);
        if (!dv)
            return SR_ENOMEM;
        TRY(sr__gpt2_forward(m, &sub, dv, &cap, err));
        TRY(m->bi->download(m->bctx, P->hv, dv, sizeof(float) * (size_t)nsub * d, err));
        i = 0;
        for (int s = 0; s < B; s++) {
            if (P->kind[s] > K_CAPTURE)
                continue;
            memcpy(vecs + (size_t)s * d, P->hv + (size_t)i * d, sizeof(float) * d);
            struct kv_ent *e = P->sub_ent[i++];
            if (!e)
                continue;
            int len = b->offsets[s + 1] - b->offsets[s];
            memcpy(e->items, b->items + b->offsets[s], sizeof(int32_t) * (size_t)len);
            memcpy(e->vec, vecs + (size_t)s * d, sizeof(float) * d);
            e->p = len;
            e->key = P->key[s];
            hash_insert(kv, e);
            lru_front(kv, e);
            kv->st.rows_computed += (uint64_t)len;
        }
    }
    /* 3. the sessions that grew: only their new rows */
    if (nr)
        TRY(resume_forward(m, b, P, nr, vecs, err));
    /* 4. entries: re-keyed to what they now hold, most recent first */
    for (int s = 0; s < B; s++) {
        struct kv_ent *e = P->ent[s];
        if (P->kind[s] == K_DONE) {
            memcpy(vecs + (size_t)s * d, e->vec, sizeof(float) * d);
            kv->st.rows_reused += (uint64_t)e->p;
        } else if (P->kind[s] == K_RESUME) {
            int len = b->offsets[s + 1] - b->offsets[s];
            memcpy(e->items + e->p, b->items + b->offsets[s] + e->p,
                   sizeof(int32_t) * (size_t)(len - e->p));
            memcpy(e->vec, vecs + (size_t)s * d, sizeof(float) * d);
            hash_remove(kv, e);
            e->p = len;
            e->key = P->key[s];
            hash_insert(kv, e);
        } else {
            continue;
        }
        e->busy = false;
        lru_unlink(kv, e);
        lru_front(kv, e);
    }
    trim(kv);
    return SR_OK;
}

sr_err_t sr__gpt2_encode_cached(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                                struct sr_error *err)
{
    int B = b->n, T = b->offsets[B] - b->offsets[0], ml = m->max_len;
    size_t a4 = sizeof(int32_t), ap = sizeof(void *);
    /* one host slot: hashes, keys, 3 pointer arrays of B, vectors, 10 int arrays of B + 1,
     * 3 of T + 1 */
    size_t bytes = sizeof(uint64_t) * (size_t)(ml + 2 + B) + ap * (size_t)(3 * B) +
                   sizeof(float) * (size_t)B * m->d + a4 * (size_t)(10 * (B + 1) + 3 * (T + 1)) +
                   64;
    char *p = sr__model_host(m, SR__HB_KV, bytes, err);
    if (!p)
        return SR_ENOMEM;
    struct plan P;
    P.h = (uint64_t *)p, p += sizeof(uint64_t) * (size_t)(ml + 2);
    P.key = (uint64_t *)p, p += sizeof(uint64_t) * (size_t)B;
    P.ent = (struct kv_ent **)p, p += ap * (size_t)B;
    P.sub_ent = (struct kv_ent **)p, p += ap * (size_t)B;
    P.rows = (const float **)p, p += ap * (size_t)B;
    P.hv = (float *)p, p += sizeof(float) * (size_t)B * m->d;
    int32_t **ints[] = {&P.kind,    &P.sub_off,    &P.last_new, &P.rsess,  &P.first,
                        &P.len,     &P.out_row,    &P.last_first, &P.last_row};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        *ints[i] = (int32_t *)p, p += a4 * (size_t)(B + 1);
    int32_t **toks[] = {&P.sub_items, &P.new_items, &P.new_pos};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++)
        *toks[i] = (int32_t *)p, p += a4 * (size_t)(T + 1);
    for (int s = 0; s < B; s++)
        P.ent[s] = NULL;
    sr_err_t rc = encode_cached(m, b, vecs, &P, err);
    if (rc != SR_OK) {
        /* entries made for this batch and not yet filled go; the others stay valid (an entry's
         * rows past p mean nothing until p moves, which happens only on success) */
        for (int s = 0; s < B; s++) {
            struct kv_ent *e = P.ent[s];
            if (!e)
                continue;
            if (P.kind[s] == K_CAPTURE && e->p == 0) {
                m->kv->bytes -= e->bytes;
                ent_free(e);
            } else {
                e->busy = false;
            }
        }
    }
    return rc;
}
