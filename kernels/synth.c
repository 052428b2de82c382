/* synth.c — random in-memory bundles (sr_bundle_synthetic) for `streamrec bench model` and for
 * tests that need a model shape no fixture has. It fills struct sr_bundle (kernels_int.h) the
 * way the loader does, so sr_bundle_unref, sr_model_new and the vocabulary lookups treat it like
 * a loaded bundle: every tensor owns its F32 data (no mmap), item ids live in vocab_text, the
 * key -> index table is open addressing with linear probing from sr_hash64(id) & slot_mask.
 * Weights come from a seeded splitmix64 stream: the same params give the same bundle. */
#include "kernels_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct synth_rng {
    uint64_t s;
};

static uint64_t rng_next(struct synth_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-a, a) */
static float rng_uniform(struct synth_rng *r, float a)
{
    return (float)((double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0) * a;
}

/* Frees what synth_build allocated so far (the failure path; success is sr_bundle_unref's). */
static void synth_free(struct sr_bundle *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n_tensors; i++) {
        free(b->tensors[i].name);
        free(b->tensors[i].data);
    }
    free(b->tensors);
    free(b->item_ids);
    free(b->item_id_len);
    free(b->slots);
    free(b->vocab_text);
    free(b->dir);
    free(b->version);
    free(b->prefix);
    free(b);
}

/* Appends a tensor of the given shape filled with base + U(-a, a). */
static sr_err_t add_tensor(struct sr_bundle *b, int cap, struct synth_rng *r, const char *name,
                           int ndim, int64_t d0, int64_t d1, float base, float a,
                           struct sr_error *err)
{
    if (b->n_tensors >= cap)
        return sr_error_set(err, SR_EINTERNAL, "synthetic bundle: tensor table full at %s", name);
    int64_t n = ndim == 1 ? d0 : d0 * d1;
    if (n <= 0 || (uint64_t)n > SIZE_MAX / sizeof(float))
        return sr_error_set(err, SR_ERANGE, "synthetic bundle: tensor %s has %lld elements",
                            name, (long long)n);
    struct sr__tensor *t = &b->tensors[b->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc((size_t)n * sizeof(float));
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        t->name = NULL;
        t->data = NULL;
        return sr_error_set(err, SR_ENOMEM, "synthetic bundle: out of memory for %s (%lld floats)",
                            name, (long long)n);
    }
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim > 1 ? d1 : 0;
    t->owned = true;
    for (int64_t i = 0; i < n; i++)
        t->data[i] = base + rng_uniform(r, a);
    b->n_tensors++;
    b->info.n_params += n;
    return SR_OK;
}

static sr_err_t check_params(const struct sr_synth_params *p, struct sr_error *err)
{
    if (p->arch != SR_ARCH_GPT2 && p->arch != SR_ARCH_GRU4REC)
        return sr_error_set(err, SR_EINVAL, "synthetic bundle: unknown arch %d", (int)p->arch);
    if (p->d_model < 1 || p->d_model > 65536)
        return sr_error_set(err, SR_EINVAL, "synthetic bundle: d_model %d out of range 1..65536",
                            p->d_model);
    if (p->n_layers < 1 || p->n_layers > 256)
        return sr_error_set(err, SR_EINVAL, "synthetic bundle: n_layers %d out of range 1..256",
                            p->n_layers);
    if (p->max_len < 1 || p->max_len > 1 << 20)
        return sr_error_set(err, SR_EINVAL, "synthetic bundle: max_len %d out of range", p->max_len);
    if (p->n_items < 3 || p->n_items > 1 << 30)
        return sr_error_set(err, SR_EINVAL, "synthetic bundle: n_items %d out of range 3..2^30",
                            (int)p->n_items);
    if (p->arch == SR_ARCH_GPT2) {
        if (p->n_heads < 1 || p->d_model % p->n_heads)
            return sr_error_set(err, SR_EINVAL, "synthetic bundle: n_heads %d does not divide "
                                "d_model %d", p->n_heads, p->d_model);
        if (p->d_ff < 1 || p->d_ff > 1 << 20)
            return sr_error_set(err, SR_EINVAL, "synthetic bundle: d_ff %d out of range", p->d_ff);
    }
    return SR_OK;
}

static sr_err_t build_weights(struct sr_bundle *b, const struct sr_synth_params *p,
                              struct synth_rng *r, struct sr_error *err)
{
    const int64_t V = p->n_items, d = p->d_model, L = p->n_layers;
    int cap = 2 + (p->arch == SR_ARCH_GPT2 ? 12 * (int)L + 3 : 4 * (int)L);
    b->tensors = calloc((size_t)cap, sizeof *b->tensors);
    if (!b->tensors)
        return sr_error_set(err, SR_ENOMEM, "synthetic bundle: out of memory");
    char name[96];
    sr_err_t rc;
#define ADD(nd, a0, a1, base, amp)                                                                  \
    do {                                                                                        \
        if ((rc = add_tensor(b, cap, r, name, nd, a0, a1, base, amp, err)) != SR_OK)            \
            return rc;                                                                          \
    } while (0)
    if (p->arch == SR_ARCH_GPT2) {
        const int64_t ff = p->d_ff;
        const float sd = 1.0f / sqrtf((float)d), sff = 1.0f / sqrtf((float)ff);
        snprintf(name, sizeof name, "wte.weight");
        ADD(2, V, d, 0.0f, 0.5f);
        snprintf(name, sizeof name, "wpe.weight");
        ADD(2, p->max_len, d, 0.0f, 0.2f);
        for (int64_t i = 0; i < L; i++) {
            snprintf(name, sizeof name, "h.%lld.ln_1.weight", (long long)i);
            ADD(1, d, 0, 1.0f, 0.1f);
            snprintf(name, sizeof name, "h.%lld.ln_1.bias", (long long)i);
            ADD(1, d, 0, 0.0f, 0.05f);
            snprintf(name, sizeof name, "h.%lld.attn.c_attn.weight", (long long)i);
            ADD(2, d, 3 * d, 0.0f, sd);
            snprintf(name, sizeof name, "h.%lld.attn.c_attn.bias", (long long)i);
            ADD(1, 3 * d, 0, 0.0f, 0.05f);
            snprintf(name, sizeof name, "h.%lld.attn.c_proj.weight", (long long)i);
            ADD(2, d, d, 0.0f, sd);
            snprintf(name, sizeof name, "h.%lld.attn.c_proj.bias", (long long)i);
            ADD(1, d, 0, 0.0f, 0.05f);
            snprintf(name, sizeof name, "h.%lld.ln_2.weight", (long long)i);
            ADD(1, d, 0, 1.0f, 0.1f);
            snprintf(name, sizeof name, "h.%lld.ln_2.bias", (long long)i);
            ADD(1, d, 0, 0.0f, 0.05f);
            snprintf(name, sizeof name, "h.%lld.mlp.c_fc.weight", (long long)i);
            ADD(2, d, ff, 0.0f, sd);
            snprintf(name, sizeof name, "h.%lld.mlp.c_fc.bias", (long long)i);
            ADD(1, ff, 0, 0.0f, 0.05f);
            snprintf(name, sizeof name, "h.%lld.mlp.c_proj.weight", (long long)i);
            ADD(2, ff, d, 0.0f, sff);
            snprintf(name, sizeof name, "h.%lld.mlp.c_proj.bias", (long long)i);
            ADD(1, d, 0, 0.0f, 0.05f);
        }
        snprintf(name, sizeof name, "ln_f.weight");
        ADD(1, d, 0, 1.0f, 0.1f);
        snprintf(name, sizeof name, "ln_f.bias");
        ADD(1, d, 0, 0.0f, 0.05f);
    } else {
        const float s = 1.0f / sqrtf((float)d);
        snprintf(name, sizeof name, "item_embedding.weight");
        ADD(2, V, d, 0.0f, 0.5f);
        for (int64_t k = 0; k < L; k++) {
            snprintf(name, sizeof name, "gru.weight_ih_l%lld", (long long)k);
            ADD(2, 3 * d, d, 0.0f, s);
            snprintf(name, sizeof name, "gru.weight_hh_l%lld", (long long)k);
            ADD(2, 3 * d, d, 0.0f, s);
            snprintf(name, sizeof name, "gru.bias_ih_l%lld", (long long)k);
            ADD(1, 3 * d, 0, 0.0f, s);
            snprintf(name, sizeof name, "gru.bias_hh_l%lld", (long long)k);
            ADD(1, 3 * d, 0, 0.0f, s);
        }
    }
    if (p->output_bias) {
        snprintf(name, sizeof name, "output.bias");
        ADD(1, V, 0, 0.0f, 0.5f);
    }
#undef ADD
    return SR_OK;
}

/* Ids "i<index>" in one NUL-separated buffer, and the key -> index table (load <= 1/2). */
static sr_err_t build_vocab(struct sr_bundle *b, int32_t V, int32_t first, struct sr_error *err)
{
    size_t text = 0;
    char tmp[24];
    for (int32_t j = first; j < V; j++)
        text += (size_t)snprintf(tmp, sizeof tmp, "i%d", (int)j) + 1;
    uint32_t nslots = 16;
    while (nslots < 2u * (uint32_t)V)
        nslots <<= 1;
    b->vocab_text = malloc(text);
    b->item_ids = calloc((size_t)V, sizeof *b->item_ids);
    b->item_id_len = calloc((size_t)V, sizeof *b->item_id_len);
    b->slots = malloc((size_t)nslots * sizeof *b->slots);
    if (!b->vocab_text || !b->item_ids || !b->item_id_len || !b->slots)
        return sr_error_set(err, SR_ENOMEM, "synthetic bundle: out of memory for %d item ids",
                            (int)V);
    b->slot_mask = nslots - 1;
    for (uint32_t s = 0; s < nslots; s++) {
        b->slots[s].key = 0;
        b->slots[s].index = -1;
    }
    char *w = b->vocab_text;
    for (int32_t j = first; j < V; j++) {
        int len = snprintf(w, text - (size_t)(w - b->vocab_text), "i%d", (int)j);
        b->item_ids[j] = w;
        b->item_id_len[j] = (uint32_t)len;
        uint64_t key = sr_hash64(w, (size_t)len);
        uint32_t s = (uint32_t)key & b->slot_mask;
        while (b->slots[s].index >= 0)
            s = (s + 1) & b->slot_mask;
        b->slots[s].key = key;
        b->slots[s].index = j;
        w += len + 1;
    }
    return SR_OK;
}

sr_err_t sr_bundle_synthetic(const struct sr_synth_params *p, sr_bundle_t **out,
                             struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "sr_bundle_synthetic: out is NULL");
    *out = NULL;
    if (!p)
        return sr_error_set(err, SR_EINVAL, "sr_bundle_synthetic: params are NULL");
    sr_err_t rc = check_params(p, err);
    if (rc != SR_OK)
        return rc;
    struct sr_bundle *b = calloc(1, sizeof *b);
    if (!b)
        return sr_error_set(err, SR_ENOMEM, "synthetic bundle: out of memory");
    b->refs = 1;
    b->dir = strdup("(synthetic)");
    b->version = strdup("synthetic");
    b->prefix = strdup("");
    if (!b->dir || !b->version || !b->prefix) {
        synth_free(b);
        return sr_error_set(err, SR_ENOMEM, "synthetic bundle: out of memory");
    }
    struct synth_rng r = {p->seed ^ 0x5eed5eed5eed5eedull};
    struct sr_bundle_info *in = &b->info;
    in->dir = b->dir;
    in->version = b->version;
    in->arch = p->arch;
    in->arch_name = p->arch == SR_ARCH_GPT2 ? "gpt2" : "gru4rec";
    in->d_model = p->d_model;
    in->n_layers = p->n_layers;
    in->max_len = p->max_len;
    if (p->arch == SR_ARCH_GPT2) {
        in->n_heads = p->n_heads;
        in->d_ff = p->d_ff;
        in->activation = p->activation == SR_ACT_NONE ? SR_ACT_GELU_TANH : p->activation;
    } else {
        in->n_heads = 0; /* as the loader leaves them for gru4rec */
        in->d_ff = 0;
        in->activation = SR_ACT_NONE;
    }
    in->layer_norm_eps = 1e-5f;
    in->n_items = p->n_items;
    in->first_index = 2;
    in->oov_index = 1;
    in->has_output_bias = p->output_bias;
    in->weights_dtype = "F32";
    in->tensor_prefix = b->prefix;
    in->index_path = NULL;
    if ((rc = build_weights(b, p, &r, err)) != SR_OK ||
        (rc = build_vocab(b, p->n_items, in->first_index, err)) != SR_OK) {
        synth_free(b);
        return rc;
    }
    in->weights_bytes = (uint64_t)in->n_params * sizeof(float);
    *out = b;
    return SR_OK;
}
