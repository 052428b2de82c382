/* gpt2.c — the GPT-2 session encoder (DESIGN §3: HF GPT2Model, Conv1D weights x·W + b,
 * pre-LN blocks, causal attention scaled 1/sqrt(d_head)). A micro-batch of B sessions is packed
 * into T = Σ min(len, max_len) token rows and every projection and MLP is one GEMM over all
 * rows. In the final block only each session's last row feeds anything, so after attention
 * (which needs every row's keys and values) the block continues on the B last rows alone —
 * exactly the same arithmetic per row, just fewer rows.
 * Thread: the model's driving thread. */
#include "model_int.h"

#include <stdio.h>
#include <stdlib.h>

sr_err_t sr__gpt2_bind(sr_model_t *m, struct sr_error *err)
{
    const struct sr_bundle_info *in = m->info;
    int64_t d = in->d_model, ff = in->d_ff, V = in->n_items;
    if (in->n_heads <= 0 || in->d_model % in->n_heads != 0)
        return sr_error_set(err, SR_EINVAL, "gpt2: n_heads %d does not divide d_model %d",
                            in->n_heads, in->d_model);
    if (ff <= 0)
        return sr_error_set(err, SR_EINVAL, "gpt2: d_ff must be positive, got %d", in->d_ff);
    int64_t s_wte[2] = {V, d}, s_wpe[2] = {in->max_len, d}, s_d[1] = {d};
    m->emb = sr__model_weight(m, "wte.weight", 2, s_wte, err);
    m->wpe = m->emb ? sr__model_weight(m, "wpe.weight", 2, s_wpe, err) : NULL;
    if (!m->wpe)
        return err ? err->code : SR_EFORMAT;
    m->gl = calloc((size_t)(in->n_layers ? in->n_layers : 1), sizeof *m->gl);
    if (!m->gl)
        return sr_error_set(err, SR_ENOMEM, "gpt2: out of memory");
    int64_t s_attn[2] = {d, 3 * d}, s_3d[1] = {3 * d}, s_dd[2] = {d, d}, s_fc[2] = {d, ff},
            s_ff[1] = {ff}, s_fc2[2] = {ff, d};
    for (int l = 0; l < in->n_layers; l++) {
        struct sr__gpt2_layer *L = &m->gl[l];
        struct {
            const float **dst;
            const char *fmt;
            int nd;
            const int64_t *sh;
        } w[] = {
            {&L->ln1_g, "h.%d.ln_1.weight", 1, s_d},         {&L->ln1_b, "h.%d.ln_1.bias", 1, s_d},
            {&L->attn_w, "h.%d.attn.c_attn.weight", 2, s_attn},
            {&L->attn_b, "h.%d.attn.c_attn.bias", 1, s_3d},
            {&L->proj_w, "h.%d.attn.c_proj.weight", 2, s_dd},
            {&L->proj_b, "h.%d.attn.c_proj.bias", 1, s_d},
            {&L->ln2_g, "h.%d.ln_2.weight", 1, s_d},         {&L->ln2_b, "h.%d.ln_2.bias", 1, s_d},
            {&L->fc_w, "h.%d.mlp.c_fc.weight", 2, s_fc},     {&L->fc_b, "h.%d.mlp.c_fc.bias", 1, s_ff},
            {&L->fc2_w, "h.%d.mlp.c_proj.weight", 2, s_fc2}, {&L->fc2_b, "h.%d.mlp.c_proj.bias", 1, s_d},
        };
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
            char name[96];
            snprintf(name, sizeof name, w[i].fmt, l);
            *w[i].dst = sr__model_weight(m, name, w[i].nd, w[i].sh, err);
            if (!*w[i].dst)
                return err ? err->code : SR_EFORMAT;
        }
    }
    m->lnf_g = sr__model_weight(m, "ln_f.weight", 1, s_d, err);
    m->lnf_b = m->lnf_g ? sr__model_weight(m, "ln_f.bias", 1, s_d, err) : NULL;
    if (!m->lnf_b)
        return err ? err->code : SR_EFORMAT;
    return SR_OK;
}

sr_err_t sr__gpt2_encode(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                         struct sr_error *err)
{
    return sr__gpt2_forward(m, b, vecs, NULL, err);
}

sr_err_t sr__gpt2_forward(sr_model_t *m, const struct sr_session_batch *b, float *vecs,
                          const struct sr__gpt2_capture *cap, struct sr_error *err)
{
    const struct sr_backend_iface *bi = m->bi;
    void *cx = m->bctx;
    const struct sr_bundle_info *in = m->info;
    int B = b->n, d = m->d, ff = in->d_ff, nl = in->n_layers;
    float eps = in->layer_norm_eps;

    /* host: pack the last L = min(len, max_len) items of each session at positions 0..L-1 */
    int64_t T64 = 0;
    for (int s = 0; s < B; s++) {
        int len = b->offsets[s + 1] - b->offsets[s];
        T64 += len < m->max_len ? len : m->max_len;
    }
    if (T64 > INT32_MAX / 4)
        return sr_error_set(err, SR_ERANGE, "gpt2: batch of %lld tokens is too large", (long long)T64);
    int T = (int)T64;
    int32_t *hi = sr__model_host(m, SR__HB_ITEMS, sizeof(int32_t) * T, err);
    int32_t *hp = sr__model_host(m, SR__HB_POS, sizeof(int32_t) * T, err);
    int32_t *ho = sr__model_host(m, SR__HB_OFF, sizeof(int32_t) * (B + 1), err);
    int32_t *hl = sr__model_host(m, SR__HB_LAST, sizeof(int32_t) * B, err);
    if (!hi || !hp || !ho || !hl)
        return SR_ENOMEM;
    int t = 0;
    for (int s = 0; s < B; s++) {
        int len = b->offsets[s + 1] - b->offsets[s];
        int L = len < m->max_len ? len : m->max_len;
        const int32_t *src = b->items + b->offsets[s + 1] - L;
        ho[s] = t;
        for (int p = 0; p < L; p++, t++) {
            hi[t] = src[p];
            hp[t] = p;
        }
        hl[s] = t - 1;
    }
    ho[B] = t;

    /* backend buffers */
    int32_t *di = sr__model_buf(m, SR__MB_ITEMS, sizeof(int32_t) * T, err);
    int32_t *dp = di ? sr__model_buf(m, SR__MB_POS, sizeof(int32_t) * T, err) : NULL;
    int32_t *dof = dp ? sr__model_buf(m, SR__MB_OFF, sizeof(int32_t) * (B + 1), err) : NULL;
    int32_t *dl = dof ? sr__model_buf(m, SR__MB_LAST, sizeof(int32_t) * B, err) : NULL;
    float *X = dl ? sr__model_buf(m, SR__MB_X, sizeof(float) * (size_t)T * d, err) : NULL;
    float *H = X ? sr__model_buf(m, SR__MB_H, sizeof(float) * (size_t)T * d, err) : NULL;
    float *QKV = H ? sr__model_buf(m, SR__MB_QKV, sizeof(float) * (size_t)T * 3 * d, err) : NULL;
    float *ATT = QKV ? sr__model_buf(m, SR__MB_ATT, sizeof(float) * (size_t)T * d, err) : NULL;
    float *FF = ATT ? sr__model_buf(m, SR__MB_FF, sizeof(float) * (size_t)T * ff, err) : NULL;
    float *XL = FF ? sr__model_buf(m, SR__MB_XL, sizeof(float) * (size_t)B * d, err) : NULL;
    float *AL = XL ? sr__model_buf(m, SR__MB_AL, sizeof(float) * (size_t)B * d, err) : NULL;
    if (!AL)
        return SR_ENOMEM;
    TRY(bi->upload(cx, di, hi, sizeof(int32_t) * T, err));
    TRY(bi->upload(cx, dp, hp, sizeof(int32_t) * T, err));
    TRY(bi->upload(cx, dof, ho, sizeof(int32_t) * (B + 1), err));
    TRY(bi->upload(cx, dl, hl, sizeof(int32_t) * B, err));

    TRY(bi->embed(cx, m->emb, m->wpe, di, dp, T, d, X, err));
    float *x = X; /* residual stream: T rows, then B rows in the last block */
    int n = T;
    for (int l = 0; l < nl; l++) {
        const struct sr__gpt2_layer *L = &m->gl[l];
        TRY(bi->layer_norm(cx, x, L->ln1_g, L->ln1_b, n, d, eps, H, err));
        TRY(bi->gemm(cx, false, false, n, 3 * d, d, 1.0f, H, d, L->attn_w, 3 * d, 0.0f, QKV,
                     3 * d, err));
        TRY(bi->bias_act(cx, QKV, L->attn_b, n, 3 * d, SR_ACT_NONE, err));
        if (cap) /* every row's q, k, v of this layer, for the encode cache (DESIGN §3.1) */
            TRY(cap->fn(cap->opaque, l, QKV, ho, err));
        TRY(bi->attention(cx, QKV, dof, B, m->max_len, in->n_heads, d / in->n_heads, ATT, err));
        const float *att = ATT;
        if (l == nl - 1) {
            TRY(bi->gather_rows(cx, ATT, dl, B, d, AL, err));
            TRY(bi->gather_rows(cx, X, dl, B, d, XL, err));
            att = AL;
            x = XL;
            n = B;
        }
        /* x += att·W_proj + b_proj (beta = 1 accumulates into the residual) */
        TRY(bi->gemm(cx, false, false, n, d, d, 1.0f, att, d, L->proj_w, d, 1.0f, x, d, err));
        TRY(bi->bias_act(cx, x, L->proj_b, n, d, SR_ACT_NONE, err));
        TRY(bi->layer_norm(cx, x, L->ln2_g, L->ln2_b, n, d, eps, H, err));
        TRY(bi->gemm(cx, false, false, n, ff, d, 1.0f, H, d, L->fc_w, ff, 0.0f, FF, ff, err));
        TRY(bi->bias_act(cx, FF, L->fc_b, n, ff, in->activation, err));
        TRY(bi->gemm(cx, false, false, n, d, ff, 1.0f, FF, ff, L->fc2_w, d, 1.0f, x, d, err));
        TRY(bi->bias_act(cx, x, L->fc2_b, n, d, SR_ACT_NONE, err));
    }
    if (nl == 0) {
        TRY(bi->gather_rows(cx, X, dl, B, d, XL, err));
        x = XL;
    }
    return bi->layer_norm(cx, x, m->lnf_g, m->lnf_b, B, d, eps, vecs, err);
}

double sr__gpt2_flops(const sr_model_t *m, int64_t tokens, int32_t n)
{
    const struct sr_bundle_info *in = m->info;
    double d = in->d_model, ff = in->d_ff, T = (double)tokens, B = n > 0 ? n : 1;
    double L = T / B;
    if (L > in->max_len) {
        L = in->max_len;
        T = L * B;
    }
    double per_layer_all = T * (2 * d * 3 * d) + B * 4 * L * L * d; /* QKV + attention */
    double per_layer_rows = 2 * d * d + 4 * d * ff;                  /* proj + MLP per row */
    double f = 0;
    for (int l = 0; l < in->n_layers; l++)
        f += per_layer_all + (l == in->n_layers - 1 ? B : T) * per_layer_rows;
    return f;
}
