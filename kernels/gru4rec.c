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

sr_err_t sr__gru4rec_encode(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                            struct sr_error *err)
{
    const struct sr_backend_iface *bi = m->bi;
    void *cx = m->bctx;
    int B = b->n, H = m->d, nl = m->info->n_layers;

    int32_t *len = sr__model_host(m, SR__HB_LEN, sizeof(int32_t) * B, err);
    int32_t *order = sr__model_host(m, SR__HB_ORDER, sizeof(int32_t) * B, err);
    int32_t *iota = sr__model_host(m, SR__HB_IOTA, sizeof(int32_t) * B, err);
    int32_t *last = sr__model_host(m, SR__HB_LAST, sizeof(int32_t) * B, err);
    if (!len || !order || !iota || !last)
        return SR_ENOMEM;
    int64_t T64 = 0;
    int Lmax = 0;
    /* counting sort by length, longest first, stable in batch order */
    for (int s = 0; s < B; s++) {
        int n = b->offsets[s + 1] - b->offsets[s];
        len[s] = n < m->max_len ? n : m->max_len;
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
        const int32_t *src = b->items + b->offsets[s + 1] - L;
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

double sr__gru4rec_flops(const sr_model_t *m, int64_t tokens, int32_t n)
{
    (void)n;
    double H = m->info->d_model;
    /* input and hidden GEMMs (2·H·3H each) plus ~12 flops per gate element */
    return (double)m->info->n_layers * (double)tokens * (2 * 2 * H * 3 * H + 12 * H);
}
