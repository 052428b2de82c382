/* gru4rec.c — the GRU4Rec session encoder (DESIGN §3: PyTorch nn.GRU, gates r, z, n, h0 = 0).
 * Sessions are sorted by length, longest first, and their tokens laid out time-major, so the
 * sessions still running at step t are a prefix of rows [tstart[t], tstart[t] + n_t). A
 * backend with gru_layer runs each whole layer (cpu: each worker all steps of its sessions,
 * both projections fused with the gates). Otherwise each layer computes x·W_ihᵀ for all
 * tokens in one GEMM, then per time step one GEMM h·W_hhᵀ over the active prefix and the gate
 * kernel. The rows of step t hold the hidden states after step t, the next layer's inputs.
 * Thread: the model's driving thread. */
#include "model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sr_err_t sr__gru4rec_bind(sr_model_t *m, struct sr_error *err)
{
    const struct sr_bundle_info *in = m->info;
    int64_t H = in->d_model, V = in->n_items;
    if (in->n_layers <= 0)
        return sr_error_set(err, SR_EINVAL, "gru4rec: n_layers must be positive, got %d",
                            in->n_layers);
    int64_t s_emb[2] = {V, H}, s_w[2] = {3 * H, H}, s_b[1] = {3 * H};
    m->emb = sr__model_weight(m, "item_embedding.weight", 2, s_emb, err);
    if (!m->emb)
        return err ? err->code : SR_EFORMAT;
    m->rl = calloc((size_t)in->n_layers, sizeof *m->rl);
    if (!m->rl)
        return sr_error_set(err, SR_ENOMEM, "gru4rec: out of memory");
    for (int l = 0; l < in->n_layers; l++) {
        struct sr__gru_layer *L = &m->rl[l];
        char name[64];
        snprintf(name, sizeof name, "gru.weight_ih_l%d", l);
        if (!(L->w_ih = sr__model_weight(m, name, 2, s_w, err)))
            return err ? err->code : SR_EFORMAT;
        snprintf(name, sizeof name, "gru.weight_hh_l%d", l);
        if (!(L->w_hh = sr__model_weight(m, name, 2, s_w, err)))
            return err ? err->code : SR_EFORMAT;
        snprintf(name, sizeof name, "gru.bias_ih_l%d", l);
        if (!(L->b_ih = sr__model_weight(m, name, 1, s_b, err)))
            return err ? err->code : SR_EFORMAT;
        snprintf(name, sizeof name, "gru.bias_hh_l%d", l);
        if (!(L->b_hh = sr__model_weight(m, name, 1, s_b, err)))
            return err ? err->code : SR_EFORMAT;
        /* packed once here instead of per call (an event at a time is a one-step call) */
        if (m->bi->gru_layer_h0 && m->bi->gru_pack &&
            !(L->packed = m->bi->gru_pack(m->bctx, L->w_ih, L->w_hh, (int)H)))
            return sr_error_set(err, SR_ENOMEM, "gru4rec: %s backend out of memory for the "
                                "packed weights of layer %d", m->bi->name, l);
    }
    return SR_OK;
}

/* The generic recurrence for backends without gru_layer: per step one GEMM h·W_hhᵀ over the
 * running sessions and the gate kernel. GI (T×3H) holds x·W_ihᵀ; Y's rows of step t receive
 * the hidden states after step t. iota[B0] (host) is 0..B0-1 with B0 = tstart[1]. */
static sr_err_t gru_steps(sr_model_t *m, const struct sr__gru_layer *L, float *GI, float *Y,
                          const int32_t *tstart, int Lmax, const int32_t *iota,
                          struct sr_error *err)
{
    const struct sr_backend_iface *bi = m->bi;
    void *cx = m->bctx;
    int H = m->d, T = tstart[Lmax], B0 = tstart[1];
    int32_t *dio = sr__model_buf(m, SR__MB_IOTA, sizeof(int32_t) * B0, err);
    float *GH = dio ? sr__model_buf(m, SR__MB_GH, sizeof(float) * (size_t)B0 * 3 * H, err) : NULL;
    float *zero = GH ? sr__model_host(m, SR__HB_ZERO, sizeof(float) * (size_t)B0 * H, err) : NULL;
    if (!zero)
        return SR_ENOMEM;
    TRY(bi->upload(cx, dio, iota, sizeof(int32_t) * B0, err));
    TRY(bi->bias_act(cx, GI, L->b_ih, T, 3 * H, SR_ACT_NONE, err));
    for (int t = 0; t < Lmax; t++) {
        int n = tstart[t + 1] - tstart[t];
        float *h = Y + (size_t)tstart[t] * H;
        if (t == 0)
            TRY(bi->upload(cx, h, zero, sizeof(float) * (size_t)n * H, err));
        else /* the running sessions are the first n rows of the previous step */
            TRY(bi->gather_rows(cx, Y + (size_t)tstart[t - 1] * H, dio, n, H, h, err));
        TRY(bi->gemm(cx, false, true, n, 3 * H, H, 1.0f, h, H, L->w_hh, H, 0.0f, GH, 3 * H,
                     err));
        TRY(bi->bias_act(cx, GH, L->b_hh, n, 3 * H, SR_ACT_NONE, err));
        TRY(bi->gru_gates(cx, GI + (size_t)tstart[t] * 3 * H, GH, h, n, H, err));
    }
    return SR_OK;
}

/* One recurrence over n sessions: session s runs steps[s] >= 1 steps over the items
 * items[first[s] ..], from the states h0 (host, n × n_layers × H in session order; NULL:
 * zeros, the whole recurrence). Writes each session's last-layer state to vecs (backend
 * memory, n × H) and, when hs is not NULL, every layer's final state to hs (host, n ×
 * n_layers × H). h0 and hs need the backend's gru_layer_h0. */
static sr_err_t gru_run(sr_model_t *m, int B, const int32_t *b_items, const int32_t *first,
                        const int32_t *steps, const float *h0, float *hs, float *vecs,
                        struct sr_error *err)
{
    const struct sr_backend_iface *bi = m->bi;
    void *cx = m->bctx;
    int H = m->d, nl = m->info->n_layers;
    const int32_t *len = steps;

    int32_t *order = sr__model_host(m, SR__HB_ORDER, sizeof(int32_t) * B, err);
    int32_t *iota = sr__model_host(m, SR__HB_IOTA, sizeof(int32_t) * B, err);
    int32_t *last = sr__model_host(m, SR__HB_LAST, sizeof(int32_t) * B, err);
    if (!order || !iota || !last)
        return SR_ENOMEM;
    int64_t T64 = 0;
    int Lmax = 0;
    /* counting sort by length, longest first, stable in batch order */
    for (int s = 0; s < B; s++) {
        T64 += len[s];
        Lmax = len[s] > Lmax ? len[s] : Lmax;
    }
    if (T64 > INT32_MAX / 4)
        return sr_error_set(err, SR_ERANGE, "gru4rec: batch of %lld tokens is too large",
                            (long long)T64);
    int T = (int)T64;
    int32_t *tstart = sr__model_host(m, SR__HB_TSTART, sizeof(int32_t) * (Lmax + 2), err);
    int32_t *items = sr__model_host(m, SR__HB_ITEMS, sizeof(int32_t) * T, err);
    if (!tstart || !items)
        return SR_ENOMEM;
    /* tstart doubles as the histogram of lengths before it becomes the step offsets */
    memset(tstart, 0, sizeof(int32_t) * (Lmax + 2));
    for (int s = 0; s < B; s++)
        tstart[len[s]]++;
    int pos = 0; /* rank of the first session of each length, longest first */
    for (int L = Lmax; L >= 1; L--) {
        int c = tstart[L];
        tstart[L] = pos;
        pos += c;
    }
    for (int s = 0; s < B; s++)
        order[tstart[len[s]]++] = s;
    /* step offsets: n_t = sessions with len > t */
    int r = B;
    int acc = 0;
    for (int t = 0; t < Lmax; t++) {
        while (r > 0 && len[order[r - 1]] <= t)
            r--;
        tstart[t] = acc;
        acc += r;
    }
    tstart[Lmax] = acc;
    for (int rank = 0; rank < B; rank++) {
        int s = order[rank], L = len[s];
        const int32_t *src = b_items + first[s];
        for (int t = 0; t < L; t++)
            items[tstart[t] + rank] = src[t];
        last[s] = tstart[L - 1] + rank;
        iota[rank] = rank;
    }

    int32_t *di = sr__model_buf(m, SR__MB_ITEMS, sizeof(int32_t) * T, err);
    int32_t *dl = di ? sr__model_buf(m, SR__MB_LAST, sizeof(int32_t) * B, err) : NULL;
    float *X = dl ? sr__model_buf(m, SR__MB_X, sizeof(float) * (size_t)T * H, err) : NULL;
    float *Y = X ? sr__model_buf(m, SR__MB_H, sizeof(float) * (size_t)T * H, err) : NULL;
    if (!Y)
        return SR_ENOMEM;
    TRY(bi->upload(cx, di, items, sizeof(int32_t) * T, err));
    TRY(bi->upload(cx, dl, last, sizeof(int32_t) * B, err));

    if (h0 || hs || bi->gru_layer_h0) { /* gru_layer_h0 (with the weights packed once), the
                                          * states in and out when asked (DESIGN §3.1) */
        size_t rows = (size_t)B * H;
        float *dh0 = sr__model_buf(m, SR__MB_H0, sizeof(float) * rows, err);
        float *hh0 = dh0 ? sr__model_host(m, SR__HB_H0, sizeof(float) * rows, err) : NULL;
        float *dhs = hh0 ? sr__model_buf(m, SR__MB_HS, sizeof(float) * rows, err) : NULL;
        if (!dhs)
            return SR_ENOMEM;
        const float *in = m->emb;
        const int32_t *rows_in = di;
        for (int l = 0; l < nl; l++) {
            const struct sr__gru_layer *L = &m->rl[l];
            float *out = l % 2 ? Y : X;
            const float *lh0 = NULL;
            if (h0) { /* step 0 holds every session, in rank order */
                for (int rank = 0; rank < B; rank++)
                    memcpy(hh0 + (size_t)rank * H, h0 + ((size_t)order[rank] * nl + l) * H,
                           sizeof(float) * H);
                TRY(bi->upload(cx, dh0, hh0, sizeof(float) * rows, err));
                lh0 = dh0;
            }
            TRY(bi->gru_layer_h0(cx, in, rows_in, L->w_ih, L->w_hh, L->b_ih, L->b_hh, tstart,
                                 Lmax, H, lh0, L->packed, out, err));
            if (hs) {
                TRY(bi->gather_rows(cx, out, dl, B, H, dhs, err));
                TRY(bi->download(cx, hh0, dhs, sizeof(float) * rows, err));
                for (int s = 0; s < B; s++)
                    memcpy(hs + ((size_t)s * nl + l) * H, hh0 + (size_t)s * H, sizeof(float) * H);
            }
            in = out;
            rows_in = NULL;
        }
        return bi->gather_rows(cx, in, dl, B, H, vecs, err);
    }

    if (bi->gru_layer) { /* the backend runs whole layers; layer 0 reads the embeddings */
        const float *in = m->emb;
        const int32_t *rows = di;
        for (int l = 0; l < nl; l++) {
            const struct sr__gru_layer *L = &m->rl[l];
            float *out = l % 2 ? Y : X;
            TRY(bi->gru_layer(cx, in, rows, L->w_ih, L->w_hh, L->b_ih, L->b_hh, tstart, Lmax, H,
                              out, err));
            in = out;
            rows = NULL;
        }
        return bi->gather_rows(cx, in, dl, B, H, vecs, err);
    }

    float *GI = sr__model_buf(m, SR__MB_QKV, sizeof(float) * (size_t)T * 3 * H, err);
    if (!GI)
        return SR_ENOMEM;
    TRY(bi->embed(cx, m->emb, NULL, di, NULL, T, H, X, err));
    for (int l = 0; l < nl; l++) {
        const struct sr__gru_layer *L = &m->rl[l];
        TRY(bi->gemm(cx, false, true, T, 3 * H, H, 1.0f, X, H, L->w_ih, H, 0.0f, GI, 3 * H, err));
        TRY(gru_steps(m, L, GI, Y, tstart, Lmax, iota, err));
        float *tmp = X; /* this layer's outputs are the next one's inputs */
        X = Y;
        Y = tmp;
    }
    return bi->gather_rows(cx, X, dl, B, H, vecs, err);
}

sr_err_t sr__gru4rec_encode(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                            struct sr_error *err)
{
    int B = b->n;
    int32_t *len = sr__model_host(m, SR__HB_LEN, sizeof(int32_t) * B, err);
    int32_t *first = sr__model_host(m, SR__HB_FIRST, sizeof(int32_t) * B, err);
    if (!len || !first)
        return SR_ENOMEM;
    for (int s = 0; s < B; s++) { /* the last min(len, max_len) items, from h0 = 0 */
        int n = b->offsets[s + 1] - b->offsets[s];
        len[s] = n < m->max_len ? n : m->max_len;
        first[s] = b->offsets[s + 1] - len[s];
    }
    return gru_run(m, B, b->items, first, len, NULL, NULL, vecs, err);
}

/* ---- incremental encoding (DESIGN §3.1) ---------------------------------------------------
 * A session's encoder state is its hidden state in every layer after its first p items, with
 * what it is a function of: the model (weights and the backend's arithmetic: state_id) and
 * those p bundle indices (an XXH64 of them). A state is resumed only when all of these match
 * and the session has not outgrown max_len (the full encode then runs over the same items
 * from h0 = 0, so resuming after p items runs the very steps p.. of that recurrence — the
 * same kernel on the same bits). Layout (host byte order):
 *   u32 magic "SRG1" | u32 p | u64 state_id | u64 prefix hash | f32 [n_layers][d_model]. */

#define GRU_STATE_MAGIC 0x31475253u /* "SRG1" little-endian */
#define GRU_STATE_HEAD 24

struct gru_state_head {
    uint32_t magic, p;
    uint64_t id, prefix;
};

size_t sr__gru4rec_state_size(const sr_model_t *m)
{
    if (!m->bi->gru_layer_h0 || !m->bi->numerics)
        return 0;
    return GRU_STATE_HEAD + sizeof(float) * (size_t)m->info->n_layers * m->d;
}

/* XXH64 of everything a hidden state depends on besides the items: the weights the recurrence
 * reads (host copies in the bundle), the shape and the backend's arithmetic. Computed once. */
static uint64_t gru_state_id(sr_model_t *m)
{
    if (m->state_id)
        return m->state_id;
    const struct sr_bundle_info *in = m->info;
    uint64_t acc[2];
    char head[160];
    int n = snprintf(head, sizeof head, "gru4rec-state-1 d=%d layers=%d V=%d %s", in->d_model,
                     in->n_layers, (int)in->n_items, m->bi->numerics(m->bctx));
    acc[0] = sr_hash64(head, (size_t)(n > 0 ? n : 0));
    char name[64];
    for (int l = -1; l < in->n_layers; l++)
        for (int w = 0; w < (l < 0 ? 1 : 4); w++) {
            static const char *fmt[4] = {"gru.weight_ih_l%d", "gru.weight_hh_l%d",
                                         "gru.bias_ih_l%d", "gru.bias_hh_l%d"};
            if (l < 0)
                snprintf(name, sizeof name, "item_embedding.weight");
            else
                snprintf(name, sizeof name, fmt[w], l);
            int nd;
            int64_t sh[4], cnt = 1;
            const float *t = sr_bundle_tensor(m->bundle, name, &nd, sh);
            for (int i = 0; t && i < nd; i++)
                cnt *= sh[i];
            acc[1] = t ? sr_hash64(t, sizeof(float) * (size_t)cnt) : 0;
            acc[0] = sr_hash64(acc, sizeof acc);
        }
    m->state_id = acc[0] ? acc[0] : 1; /* 0 means "not computed" */
    return m->state_id;
}

sr_err_t sr__gru4rec_encode_resume(sr_model_t *m, const struct sr_session_batch *b,
                                   struct sr_encode_states *st, float *vecs,
                                   struct sr_error *err)
{
    int B = b->n, H = m->d, nl = m->info->n_layers;
    size_t ssz = sr__gru4rec_state_size(m), fl = (size_t)nl * H;
    uint64_t id = gru_state_id(m);
    /* per session: resume (p > 0) or not, the items to run, and where its results go */
    int32_t *len = sr__model_host(m, SR__HB_LEN, sizeof(int32_t) * B, err);
    int32_t *first = sr__model_host(m, SR__HB_FIRST, sizeof(int32_t) * B, err);
    int32_t *grp = sr__model_host(m, SR__HB_GROUP, sizeof(int32_t) * B, err);
    float *h0 = sr__model_host(m, SR__HB_STATE_IN, sizeof(float) * fl * B, err);
    float *hs = sr__model_host(m, SR__HB_STATE_OUT, sizeof(float) * fl * B, err);
    float *dv = sr__model_buf(m, SR__MB_VECS, sizeof(float) * (size_t)B * H, err);
    if (!len || !first || !grp || !h0 || !hs || !dv)
        return SR_ENOMEM;
    int32_t *gsess = grp; /* the sessions of the group being run */
    int nres = 0;
    st->resumed = 0;
    st->steps = 0;
    /* pass 1: which sessions resume; resumed ones are packed first in gsess */
    uint8_t *resume = st->out_ok; /* scratch until pass 3 sets it */
    for (int s = 0; s < B; s++) {
        int n = b->offsets[s + 1] - b->offsets[s];
        const int32_t *all = b->items + b->offsets[s];
        resume[s] = 0;
        struct gru_state_head hd;
        if (n > m->max_len || !st->in || !st->in[s] || st->in_len[s] != ssz)
            continue;
        memcpy(&hd, st->in[s], sizeof hd);
        if (hd.magic != GRU_STATE_MAGIC || hd.id != id || hd.p < 1 || (int64_t)hd.p > n ||
            hd.prefix != sr_hash64(all, sizeof(int32_t) * hd.p))
            continue;
        resume[s] = 1;
        len[s] = n - (int32_t)hd.p;
        first[s] = b->offsets[s] + (int32_t)hd.p;
        st->resumed++;
    }
    /* group 1: resumed sessions with steps to run, from their states */
    for (int s = 0; s < B; s++)
        if (resume[s] && len[s] > 0) {
            memcpy(h0 + (size_t)nres * fl, st->in[s] + GRU_STATE_HEAD, sizeof(float) * fl);
            gsess[nres++] = s;
        }
    for (int pass = 0; pass < 2; pass++) {
        int ng = 0;
        if (pass == 0) {
            ng = nres;
        } else { /* group 2: everything else that runs, from h0 = 0 */
            for (int s = 0; s < B; s++)
                if (!resume[s]) {
                    int n = b->offsets[s + 1] - b->offsets[s];
                    len[s] = n < m->max_len ? n : m->max_len;
                    first[s] = b->offsets[s + 1] - len[s];
                    gsess[ng++] = s;
                }
        }
        if (!ng)
            continue;
        int32_t *gl = sr__model_host(m, SR__HB_GSTEPS, sizeof(int32_t) * 2 * ng, err);
        if (!gl)
            return SR_ENOMEM;
        int32_t *gf = gl + ng;
        for (int i = 0; i < ng; i++) {
            gl[i] = len[gsess[i]];
            gf[i] = first[gsess[i]];
            st->steps += gl[i];
        }
        /* hs rows: the resumed group (batch order), then the others (batch order); each
         * session's vector is its last layer's state */
        TRY(gru_run(m, ng, b->items, gf, gl, pass ? NULL : h0, hs + (size_t)(pass ? nres : 0) * fl,
                    dv, err));
    }
    /* vectors and states out, in batch order */
    int ir = 0, ifr = 0;
    for (int s = 0; s < B; s++) {
        int n = b->offsets[s + 1] - b->offsets[s];
        const float *state;
        if (resume[s] && len[s] == 0)
            state = (const float *)(st->in[s] + GRU_STATE_HEAD);
        else if (resume[s])
            state = hs + (size_t)(ir++) * fl;
        else
            state = hs + (size_t)(nres + ifr++) * fl;
        uint8_t *o = st->out + (size_t)s * ssz;
        memmove(o + GRU_STATE_HEAD, state, sizeof(float) * fl); /* in may alias out */
        memcpy(vecs + (size_t)s * H, o + GRU_STATE_HEAD + sizeof(float) * (fl - H),
               sizeof(float) * H);
        if (n > m->max_len) {
            st->out_ok[s] = 0;
            continue;
        }
        struct gru_state_head hd = {.magic = GRU_STATE_MAGIC, .p = (uint32_t)n, .id = id,
                                    .prefix = sr_hash64(b->items + b->offsets[s],
                                                        sizeof(int32_t) * (size_t)n)};
        memcpy(o, &hd, sizeof hd);
        st->out_ok[s] = 1;
    }
    return SR_OK;
}

double sr__gru4rec_flops(const sr_model_t *m, int64_t tokens, int32_t n)
{
    (void)n;
    double H = m->info->d_model;
    /* input and hidden GEMMs (2·H·3H each) plus ~12 flops per gate element */
    return (double)m->info->n_layers * (double)tokens * (2 * 2 * H * 3 * H + 12 * H);
}
