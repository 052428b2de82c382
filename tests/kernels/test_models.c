/* test_models.c — gpt2 and gru4rec on the cpu backend against a plain per-session reference
 * forward in double precision, written here from DESIGN §3. Each case writes a small random
 * bundle (bundle.json, items.tsv, model.safetensors) to a temporary directory and loads it
 * through the real loader. Covers several heads and layers, relu / erf-gelu / tanh-gelu,
 * output.bias, first_index 3, sessions longer than max_len, one-item sessions, multi-layer
 * GRUs (through the cpu backend's gru_layer and through the generic per-step path that
 * backends without it take); checks that encoding and top-k of a batch equal those of one
 * session at a time (vectors bit for bit, in batches of varying sizes and orders, with 1, 2
 * and 3 threads: check_bitwise), and that exclusions passed to recommend are honoured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernels_int.h" /* the backend table, to hide the optional gru_layer slot */

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x1234567887654321ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* ---- a tiny tensor store and bundle writer ---- */

struct tensor {
    char name[64];
    int ndim;
    int64_t shape[2];
    float *data;
};
struct tstore {
    struct tensor t[64];
    int n;
};

static float *add_tensor(struct tstore *s, const char *name, int64_t r, int64_t c, double scale,
                         double offset)
{
    struct tensor *t = &s->t[s->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    size_t n = (size_t)r * (c ? c : 1);
    t->data = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        t->data[i] = (float)(offset + scale * (2 * urand() - 1));
    return t->data;
}

static const float *get(const struct tstore *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name))
            return s->t[i].data;
    fail_msg("no tensor %s", name);
    return NULL;
}

static void write_bundle(const char *dir, const struct tstore *s, const char *model_json, int V,
                         int first)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bundle.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"format\": \"streamrec-bundle/1\", \"version\": \"test\", \"model\": {%s, "
               "\"weights\": \"model.safetensors\"}, \"items\": {\"vocab\": \"items.tsv\", "
               "\"first_index\": %d, \"oov_index\": %d}}\n", model_json, first, first - 1);
    fclose(f);
    snprintf(path, sizeof path, "%s/items.tsv", dir);
    f = fopen(path, "w");
    fprintf(f, "index\titem_id\n");
    for (int j = first; j < V; j++)
        fprintf(f, "%d\titem-%d\n", j, j);
    fclose(f);
    char hdr[16384];
    size_t hl = 0, off = 0;
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "{");
    for (int i = 0; i < s->n; i++) {
        const struct tensor *t = &s->t[i];
        size_t bytes = (size_t)t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1) * 4;
        if (t->ndim == 2)
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", t->name, (long long)t->shape[0], (long long)t->shape[1], off, off + bytes);
        else
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", t->name, (long long)t->shape[0], off, off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "}");
    while (hl % 8)
        hdr[hl++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    uint64_t h64 = hl;
    fwrite(&h64, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    for (int i = 0; i < s->n; i++) {
        const struct tensor *t = &s->t[i];
        fwrite(t->data, 4, (size_t)t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1), f);
    }
    fclose(f);
}

static void free_store(struct tstore *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->t[i].data);
    s->n = 0;
}

/* ---- reference forwards (double, one session at a time) ---- */

struct cfg {
    bool gru;
    bool stepwise; /* gru4rec through the generic per-step path (backends without gru_layer) */
    int V, first, d, layers, heads, ff, max_len;
    const char *act; /* gpt2 */
    bool bias;
};

static void ref_ln(const double *x, const float *g, const float *b, int d, double eps, double *o)
{
    double mu = 0, var = 0;
    for (int k = 0; k < d; k++)
        mu += x[k];
    mu /= d;
    for (int k = 0; k < d; k++)
        var += (x[k] - mu) * (x[k] - mu);
    var /= d;
    for (int k = 0; k < d; k++)
        o[k] = (x[k] - mu) / sqrt(var + eps) * g[k] + b[k];
}

static double ref_act(double v, const char *a)
{
    if (!strcmp(a, "relu"))
        return v > 0 ? v : 0;
    if (!strcmp(a, "gelu"))
        return 0.5 * v * (1 + erf(v / sqrt(2.0)));
    return 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
}

/* x[n×in] @ W[in×out] + b -> y[n×out] (Conv1D layout) */
static void ref_conv1d(const double *x, int n, int in, const float *W, const float *b, int out, double *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double a = b[o];
            for (int k = 0; k < in; k++)
                a += x[(size_t)i * in + k] * W[(size_t)k * out + o];
            y[(size_t)i * out + o] = a;
        }
}

static void ref_gpt2(const struct cfg *c, const struct tstore *s, const int32_t *items, int len, double *vec)
{
    int d = c->d, L = len < c->max_len ? len : c->max_len, dh = d / c->heads;
    items += len - L;
    double *x = calloc((size_t)L * d, 8), *h = calloc((size_t)L * d, 8), *qkv = calloc((size_t)L * 3 * d, 8);
    double *att = calloc((size_t)L * d, 8), *tmp = calloc((size_t)L * d, 8), *f = calloc((size_t)L * c->ff, 8);
    const float *wte = get(s, "wte.weight"), *wpe = get(s, "wpe.weight");
    for (int p = 0; p < L; p++)
        for (int k = 0; k < d; k++)
            x[p * d + k] = (double)wte[(size_t)items[p] * d + k] + wpe[p * d + k];
    char n1[64], n2[64];
#define W(fmt) (snprintf(n1, sizeof n1, fmt, l), get(s, n1))
    for (int l = 0; l < c->layers; l++) {
        for (int p = 0; p < L; p++)
            ref_ln(x + p * d, W("h.%d.ln_1.weight"), W("h.%d.ln_1.bias"), d, 1e-5, h + p * d);
        snprintf(n2, sizeof n2, "h.%d.attn.c_attn.bias", l);
        ref_conv1d(h, L, d, W("h.%d.attn.c_attn.weight"), get(s, n2), 3 * d, qkv);
        for (int hd = 0; hd < c->heads; hd++)
            for (int i = 0; i < L; i++) {
                double sc[64], mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double a = 0;
                    for (int k = 0; k < dh; k++)
                        a += qkv[i * 3 * d + hd * dh + k] * qkv[j * 3 * d + d + hd * dh + k];
                    sc[j] = a / sqrt((double)dh);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= i; j++)
                    sum += sc[j] = exp(sc[j] - mx);
                for (int k = 0; k < dh; k++) {
                    double a = 0;
                    for (int j = 0; j <= i; j++)
                        a += sc[j] / sum * qkv[j * 3 * d + 2 * d + hd * dh + k];
                    att[i * d + hd * dh + k] = a;
                }
            }
        snprintf(n2, sizeof n2, "h.%d.attn.c_proj.bias", l);
        ref_conv1d(att, L, d, W("h.%d.attn.c_proj.weight"), get(s, n2), d, tmp);
        for (int i = 0; i < L * d; i++)
            x[i] += tmp[i];
        for (int p = 0; p < L; p++)
            ref_ln(x + p * d, W("h.%d.ln_2.weight"), W("h.%d.ln_2.bias"), d, 1e-5, h + p * d);
        snprintf(n2, sizeof n2, "h.%d.mlp.c_fc.bias", l);
        ref_conv1d(h, L, d, W("h.%d.mlp.c_fc.weight"), get(s, n2), c->ff, f);
        for (int i = 0; i < L * c->ff; i++)
            f[i] = ref_act(f[i], c->act);
        snprintf(n2, sizeof n2, "h.%d.mlp.c_proj.bias", l);
        ref_conv1d(f, L, c->ff, W("h.%d.mlp.c_proj.weight"), get(s, n2), d, tmp);
        for (int i = 0; i < L * d; i++)
            x[i] += tmp[i];
    }
#undef W
    ref_ln(x + (L - 1) * d, get(s, "ln_f.weight"), get(s, "ln_f.bias"), d, 1e-5, vec);
    free(x), free(h), free(qkv), free(att), free(tmp), free(f);
}

static void ref_gru(const struct cfg *c, const struct tstore *s, const int32_t *items, int len, double *vec)
{
    int H = c->d, L = len < c->max_len ? len : c->max_len;
    items += len - L;
    double *seq = calloc((size_t)L * H, 8), h[256], gi[768], gh[768];
    const float *emb = get(s, "item_embedding.weight");
    for (int t = 0; t < L; t++)
        for (int k = 0; k < H; k++)
            seq[t * H + k] = emb[(size_t)items[t] * H + k];
    char nm[64];
    for (int l = 0; l < c->layers; l++) {
        snprintf(nm, sizeof nm, "gru.weight_ih_l%d", l);
        const float *wih = get(s, nm);
        snprintf(nm, sizeof nm, "gru.weight_hh_l%d", l);
        const float *whh = get(s, nm);
        snprintf(nm, sizeof nm, "gru.bias_ih_l%d", l);
        const float *bih = get(s, nm);
        snprintf(nm, sizeof nm, "gru.bias_hh_l%d", l);
        const float *bhh = get(s, nm);
        for (int k = 0; k < H; k++)
            h[k] = 0;
        for (int t = 0; t < L; t++) {
            for (int g = 0; g < 3 * H; g++) {
                double a = bih[g], b = bhh[g];
                for (int k = 0; k < H; k++) {
                    a += wih[(size_t)g * H + k] * seq[t * H + k];
                    b += whh[(size_t)g * H + k] * h[k];
                }
                gi[g] = a;
                gh[g] = b;
            }
            for (int k = 0; k < H; k++) {
                double r = 1 / (1 + exp(-(gi[k] + gh[k])));
                double z = 1 / (1 + exp(-(gi[H + k] + gh[H + k])));
                double n = tanh(gi[2 * H + k] + r * gh[2 * H + k]);
                h[k] = (1 - z) * n + z * h[k];
                seq[t * H + k] = h[k];
            }
        }
    }
    for (int k = 0; k < H; k++)
        vec[k] = h[k];
    free(seq);
}

/* ---- the test driver ---- */

static void build(const struct cfg *c, struct tstore *s, char *model_json, size_t mjl)
{
    int d = c->d;
    if (c->gru) {
        add_tensor(s, "item_embedding.weight", c->V, d, 0.5, 0);
        for (int l = 0; l < c->layers; l++) {
            char nm[64];
            snprintf(nm, sizeof nm, "gru.weight_ih_l%d", l);
            add_tensor(s, nm, 3 * d, d, 0.4, 0);
            snprintf(nm, sizeof nm, "gru.weight_hh_l%d", l);
            add_tensor(s, nm, 3 * d, d, 0.4, 0);
            snprintf(nm, sizeof nm, "gru.bias_ih_l%d", l);
            add_tensor(s, nm, 3 * d, 0, 0.2, 0);
            snprintf(nm, sizeof nm, "gru.bias_hh_l%d", l);
            add_tensor(s, nm, 3 * d, 0, 0.2, 0);
        }
        snprintf(model_json, mjl, "\"arch\": \"gru4rec\", \"d_model\": %d, \"n_layers\": %d, "
                 "\"max_len\": %d", d, c->layers, c->max_len);
    } else {
        add_tensor(s, "wte.weight", c->V, d, 0.5, 0);
        add_tensor(s, "wpe.weight", c->max_len, d, 0.2, 0);
        double sc = 1.0 / sqrt((double)d);
        for (int l = 0; l < c->layers; l++) {
            char nm[64];
#define T(fmt, r, cc, scale, off) (snprintf(nm, sizeof nm, fmt, l), add_tensor(s, nm, r, cc, scale, off))
            T("h.%d.ln_1.weight", d, 0, 0.2, 1);
            T("h.%d.ln_1.bias", d, 0, 0.1, 0);
            T("h.%d.attn.c_attn.weight", d, 3 * d, 2 * sc, 0);
            T("h.%d.attn.c_attn.bias", 3 * d, 0, 0.1, 0);
            T("h.%d.attn.c_proj.weight", d, d, sc, 0);
            T("h.%d.attn.c_proj.bias", d, 0, 0.1, 0);
            T("h.%d.ln_2.weight", d, 0, 0.2, 1);
            T("h.%d.ln_2.bias", d, 0, 0.1, 0);
            T("h.%d.mlp.c_fc.weight", d, c->ff, 2 * sc, 0);
            T("h.%d.mlp.c_fc.bias", c->ff, 0, 0.1, 0);
            T("h.%d.mlp.c_proj.weight", c->ff, d, 1.0 / sqrt((double)c->ff), 0);
            T("h.%d.mlp.c_proj.bias", d, 0, 0.1, 0);
#undef T
        }
        add_tensor(s, "ln_f.weight", d, 0, 0.2, 1);
        add_tensor(s, "ln_f.bias", d, 0, 0.1, 0);
        snprintf(model_json, mjl, "\"arch\": \"gpt2\", \"d_model\": %d, \"n_layers\": %d, "
                 "\"n_heads\": %d, \"d_ff\": %d, \"max_len\": %d, \"activation\": \"%s\", "
                 "\"layer_norm_eps\": 1e-5", d, c->layers, c->heads, c->ff, c->max_len, c->act);
    }
    if (c->bias)
        add_tensor(s, "output.bias", c->V, 0, 1.0, 0);
}

/* Bitwise batch invariance (DESIGN §8: the same bytes whatever the batch size): with 1, 2 and
 * 3 threads, each session's vector encoded alone equals, bit for bit, the one it gets inside
 * the whole batch, the batch reversed, and random batches of 2..B+8 sessions (repeats
 * included) in random order, so its rows sit at other positions among other sessions. */
static void check_bitwise(const struct cfg *c, sr_bundle_t *b, const int32_t *off,
                          const int32_t *items, int B)
{
    int d = c->d, cap = B + 8;
    float *alone = malloc(sizeof(float) * (size_t)B * d), *got = malloc(sizeof(float) * (size_t)cap * d);
    int32_t *bo = malloc(sizeof(int32_t) * (size_t)(cap + 1)), *pick = malloc(sizeof(int32_t) * (size_t)cap);
    int32_t *bi = malloc(sizeof(int32_t) * (size_t)cap * (off[B] + 1));
    struct sr_error err;
    for (int th = 1; th <= 3; th++) {
        struct sr_backend_params bp = {.device = SR_DEVICE_CPU, .threads = th};
        sr_backend_t *be = NULL;
        assert_int_equal(sr_backend_new(&bp, &be, &err), SR_OK);
        static struct sr_backend_iface stepwise;
        if (c->stepwise) {
            stepwise = *be->iface;
            stepwise.gru_layer = NULL;
            be->iface = &stepwise;
        }
        sr_model_t *m = NULL;
        if (sr_model_new(b, be, &m, &err) != SR_OK)
            fail_msg("model: %s", err.msg);
        sr_backend_unref(be);
        for (int i = 0; i < B; i++) {
            int32_t o1[2] = {0, off[i + 1] - off[i]};
            struct sr_session_batch one = {.n = 1, .offsets = o1, .items = items + off[i]};
            assert_int_equal(sr_model_encode(m, &one, got, &err), SR_OK);
            if (th == 1)
                memcpy(alone + (size_t)i * d, got, sizeof(float) * d);
            else if (memcmp(alone + (size_t)i * d, got, sizeof(float) * d) != 0)
                fail_msg("session %d alone: %d threads differ from 1 thread", i, th);
        }
        for (int trial = 0; trial < 8; trial++) {
            int n = trial < 2 ? B : 2 + (int)(urand() * (cap - 1));
            bo[0] = 0;
            for (int j = 0; j < n; j++) {
                pick[j] = trial == 0 ? j : trial == 1 ? B - 1 - j : (int)(urand() * B);
                int len = off[pick[j] + 1] - off[pick[j]];
                memcpy(bi + bo[j], items + off[pick[j]], sizeof(int32_t) * len);
                bo[j + 1] = bo[j] + len;
            }
            struct sr_session_batch batch = {.n = n, .offsets = bo, .items = bi};
            assert_int_equal(sr_model_encode(m, &batch, got, &err), SR_OK);
            for (int j = 0; j < n; j++)
                if (memcmp(alone + (size_t)pick[j] * d, got + (size_t)j * d, sizeof(float) * d)) {
                    int k = 0;
                    while (alone[(size_t)pick[j] * d + k] == got[(size_t)j * d + k])
                        k++;
                    fail_msg("session %d (len %d) at %d of a batch of %d, %d threads: dim %d "
                             "%.9g vs %.9g alone", pick[j], off[pick[j] + 1] - off[pick[j]], j, n,
                             th, k, got[(size_t)j * d + k], alone[(size_t)pick[j] * d + k]);
                }
        }
        sr_model_unref(m);
    }
    free(alone), free(got), free(bo), free(pick), free(bi);
}

static void run_case(const struct cfg *c)
{
    struct tstore s = {.n = 0};
    char mj[512];
    build(c, &s, mj, sizeof mj);
    char dir[] = "/tmp/sr_test_modelXXXXXX";
    assert_non_null(mkdtemp(dir));
    write_bundle(dir, &s, mj, c->V, c->first);

    struct sr_error err;
    sr_bundle_t *b = NULL;
    if (sr_bundle_load(dir, &b, &err) != SR_OK)
        fail_msg("load: %s", err.msg);
    struct sr_backend_params bp = {.device = SR_DEVICE_CPU, .threads = 2};
    sr_backend_t *be = NULL;
    assert_int_equal(sr_backend_new(&bp, &be, &err), SR_OK);
    static struct sr_backend_iface stepwise; /* the cpu table without gru_layer */
    if (c->stepwise) {
        stepwise = *be->iface;
        stepwise.gru_layer = NULL;
        be->iface = &stepwise;
    }
    sr_model_t *m = NULL;
    if (sr_model_new(b, be, &m, &err) != SR_OK)
        fail_msg("model: %s", err.msg);
    sr_backend_unref(be); /* the model holds its own reference */
    assert_ptr_equal(sr_model_bundle(m), b);
    assert_ptr_equal(sr_model_backend(m), be);

    /* sessions: lengths 1, 2, max_len, > max_len, random */
    enum { B = 40, K = 8 };
    int32_t off[B + 1], items[B * 64];
    off[0] = 0;
    for (int i = 0; i < B; i++) {
        int len = i == 0 ? 1 : i == 1 ? 2 : i == 2 ? c->max_len : i == 3 ? c->max_len + 7
                                                              : 1 + (int)(urand() * (c->max_len + 3));
        for (int t = 0; t < len; t++)
            items[off[i] + t] = (int32_t)(urand() * c->V); /* reserved indices included */
        off[i + 1] = off[i] + len;
    }
    struct sr_session_batch batch = {.n = B, .offsets = off, .items = items};
    float *vecs = malloc(sizeof(float) * B * c->d);
    assert_int_equal(sr_model_encode(m, &batch, vecs, &err), SR_OK);
    double ref[256];
    for (int i = 0; i < B; i++) {
        if (c->gru)
            ref_gru(c, &s, items + off[i], off[i + 1] - off[i], ref);
        else
            ref_gpt2(c, &s, items + off[i], off[i + 1] - off[i], ref);
        for (int k = 0; k < c->d; k++)
            if (fabs(vecs[i * c->d + k] - ref[k]) > 2e-4 * (1 + fabs(ref[k])))
                fail_msg("session %d (len %d) dim %d: %.7g vs reference %.7g", i,
                         off[i + 1] - off[i], k, vecs[i * c->d + k], ref[k]);
    }
    /* one session at a time gives the same vectors and the same top-k */
    int32_t idx[B * K], idx1[K];
    float sc[B * K], sc1[K], v1[256];
    assert_int_equal(sr_model_recommend(m, &batch, K, idx, sc, &err), SR_OK);
    for (int i = 0; i < B; i++) {
        int32_t o1[2] = {0, off[i + 1] - off[i]};
        struct sr_session_batch one = {.n = 1, .offsets = o1, .items = items + off[i]};
        assert_int_equal(sr_model_encode(m, &one, v1, &err), SR_OK);
        for (int k = 0; k < c->d; k++)
            assert_true(fabsf(v1[k] - vecs[i * c->d + k]) <= 1e-5f * (1 + fabsf(v1[k])));
        assert_int_equal(sr_model_recommend(m, &one, K, idx1, sc1, &err), SR_OK);
        for (int r = 0; r < K; r++) {
            assert_int_equal(idx1[r], idx[i * K + r]);
            assert_true(idx1[r] >= c->first && idx1[r] < c->V);
        }
        /* the top-k equals sr_model_topk on the encoded vector */
        assert_int_equal(sr_model_topk(m, 1, vecs + i * c->d, NULL, NULL, K, idx1, sc1, &err), SR_OK);
        for (int r = 0; r < K; r++)
            assert_int_equal(idx1[r], idx[i * K + r]);
    }
    /* exclusions: drop each session's top 3 and its own items; the rest shifts up */
    int32_t eo[B + 1], ei[B * 70];
    eo[0] = 0;
    for (int i = 0; i < B; i++) {
        int n = 0;
        for (int r = 0; r < 3; r++)
            ei[eo[i] + n++] = idx[i * K + r];
        for (int t = off[i]; t < off[i + 1] && n < 70; t++)
            ei[eo[i] + n++] = items[t];
        eo[i + 1] = eo[i] + n;
    }
    batch.excl_offsets = eo;
    batch.excl_items = ei;
    int32_t idx2[B * K];
    float sc2[B * K];
    assert_int_equal(sr_model_recommend(m, &batch, K, idx2, sc2, &err), SR_OK);
    for (int i = 0; i < B; i++) {
        for (int r = 0; r < K; r++)
            for (int e = eo[i]; e < eo[i + 1]; e++)
                assert_int_not_equal(idx2[i * K + r], ei[e]);
        assert_true(sc2[i * K] <= sc[i * K + 2]);
    }
    /* argument errors */
    int32_t bad_items[1] = {c->V};
    int32_t bo[2] = {0, 1};
    struct sr_session_batch bad = {.n = 1, .offsets = bo, .items = bad_items};
    assert_int_equal(sr_model_encode(m, &bad, v1, &err), SR_ERANGE);
    int32_t eo0[2] = {0, 0};
    bad.offsets = eo0;
    assert_int_equal(sr_model_encode(m, &bad, v1, &err), SR_EINVAL);
    assert_true(sr_model_encode_flops(m, off[B], B) > 0);
    check_bitwise(c, b, off, items, B);
    sr_bundle_unref(b); /* the models held their own references */

    assert_ptr_equal(sr_model_ref(m), m);
    sr_model_unref(m);
    sr_model_unref(m);
    sr_model_unref(NULL);
    free(vecs);
    free_store(&s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_gpt2_tanh(void **st)
{
    (void)st;
    struct cfg c = {.V = 300, .first = 2, .d = 32, .layers = 2, .heads = 2, .ff = 64, .max_len = 12, .act = "gelu_tanh"};
    run_case(&c);
}
static void test_gpt2_relu_bias_first3(void **st)
{
    (void)st;
    struct cfg c = {.V = 500, .first = 3, .d = 16, .layers = 3, .heads = 4, .ff = 48, .max_len = 9, .act = "relu", .bias = true};
    run_case(&c);
}
static void test_gpt2_erf_one_layer(void **st)
{
    (void)st;
    struct cfg c = {.V = 2000, .first = 2, .d = 24, .layers = 1, .heads = 1, .ff = 40, .max_len = 20, .act = "gelu", .bias = true};
    run_case(&c);
}
static void test_gru4rec(void **st)
{
    (void)st;
    struct cfg c = {.gru = true, .V = 400, .first = 2, .d = 24, .layers = 1, .max_len = 15};
    run_case(&c);
}
static void test_gru4rec_2layers_bias_first3(void **st)
{
    (void)st;
    struct cfg c = {.gru = true, .V = 3000, .first = 3, .d = 16, .layers = 2, .max_len = 10, .bias = true};
    run_case(&c);
}

static void test_gru4rec_2layers_stepwise(void **st)
{
    (void)st;
    struct cfg c = {.gru = true, .V = 700, .first = 2, .d = 20, .layers = 2, .max_len = 12,
                    .stepwise = true};
    run_case(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_tanh),
        cmocka_unit_test(test_gpt2_relu_bias_first3),
        cmocka_unit_test(test_gpt2_erf_one_layer),
        cmocka_unit_test(test_gru4rec),
        cmocka_unit_test(test_gru4rec_2layers_bias_first3),
        cmocka_unit_test(test_gru4rec_2layers_stepwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
