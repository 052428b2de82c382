/* test_bundle.c — the model bundle loader: both fixtures load with the right dimensions,
 * vocabulary and attributes; F16/BF16 weights widen exactly; tensor_prefix and the
 * first_index 3 / oov_index 2 layout work; and every corruption of DESIGN §3 is refused with a
 * message naming the file and the first problem. Corrupted bundles are built per test in a
 * fresh temporary directory: bundle.json edited through jansson, safetensors files rewritten
 * by a small writer below, items.tsv edited as text. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr_kernels.h"

/* ---- files -------------------------------------------------------------------------------- */

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *pathf(const char *dir, const char *name)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Copies fixture `name` into dir. */
static void copy_fixture(const char *dir, const char *name)
{
    static const char *files[] = {"bundle.json", "items.tsv", "model.safetensors"};
    char src[1024];
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s/%s", SR_TEST_DATA, name, files[i]);
        size_t len;
        unsigned char *b = read_file(src, &len);
        write_file(pathf(dir, files[i]), b, len);
        free(b);
    }
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    char *dir = strdup("/tmp/sr_test_bundle_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    nftw(*state, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

/* ---- bundle.json edits ---------------------------------------------------------------------- */

/* Sets obj[section][key] (section NULL: top level) to v (stolen; NULL deletes). */
static void json_edit(const char *dir, const char *section, const char *key, json_t *v)
{
    json_error_t je;
    json_t *root = json_load_file(pathf(dir, "bundle.json"), 0, &je);
    assert_non_null(root);
    json_t *obj = root;
    if (section) {
        obj = json_object_get(root, section);
        if (!obj) {
            obj = json_object();
            json_object_set_new(root, section, obj);
        }
    }
    if (v)
        json_object_set_new(obj, key, v);
    else
        json_object_del(obj, key);
    assert_int_equal(json_dump_file(root, pathf(dir, "bundle.json"), JSON_INDENT(2)), 0);
    json_decref(root);
}

/* ---- a tiny safetensors reader/writer ------------------------------------------------------ */

struct tt {
    char name[128];
    char dtype[8];
    int ndim;
    int64_t shape[4];
    unsigned char *data;
    size_t nbytes;
};

struct st {
    struct tt t[80];
    int n;
};

static void st_read(const char *path, struct st *s)
{
    size_t len;
    unsigned char *b = read_file(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | b[i];
    json_error_t je;
    json_t *h = json_loadb((char *)b + 8, hl, 0, &je);
    assert_non_null(h);
    const char *key;
    json_t *v;
    s->n = 0;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__"))
            continue;
        struct tt *t = &s->t[s->n++];
        snprintf(t->name, sizeof t->name, "%s", key);
        snprintf(t->dtype, sizeof t->dtype, "%s", json_string_value(json_object_get(v, "dtype")));
        json_t *sh = json_object_get(v, "shape");
        t->ndim = (int)json_array_size(sh);
        for (int i = 0; i < t->ndim; i++)
            t->shape[i] = json_integer_value(json_array_get(sh, (size_t)i));
        json_t *o = json_object_get(v, "data_offsets");
        size_t a = (size_t)json_integer_value(json_array_get(o, 0));
        size_t e = (size_t)json_integer_value(json_array_get(o, 1));
        t->nbytes = e - a;
        t->data = malloc(t->nbytes + 1);
        memcpy(t->data, b + 8 + hl + a, t->nbytes);
    }
    json_decref(h);
    free(b);
}

static void st_free(struct st *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->t[i].data);
    s->n = 0;
}

static struct tt *st_get(struct st *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name))
            return &s->t[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

static void st_remove(struct st *s, const char *name)
{
    struct tt *t = st_get(s, name);
    free(t->data);
    int i = (int)(t - s->t);
    memmove(&s->t[i], &s->t[i + 1], sizeof *t * (size_t)(s->n - i - 1));
    s->n--;
}

/* Appends a tensor (data copied). */
static struct tt *st_add(struct st *s, const char *name, const char *dtype, int ndim,
                         const int64_t *shape, const void *data, size_t nbytes)
{
    struct tt *t = &s->t[s->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->data = malloc(nbytes + 1);
    memcpy(t->data, data, nbytes);
    t->nbytes = nbytes;
    return t;
}

/* Writes s as a safetensors file with sequential offsets; patch (optional) may edit the header
 * before it is written. */
static void st_write(const char *path, const struct st *s, void (*patch)(json_t *h))
{
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < s->n; i++) {
        const struct tt *t = &s->t[i];
        json_t *sh = json_array();
        for (int k = 0; k < t->ndim; k++)
            json_array_append_new(sh, json_integer(t->shape[k]));
        json_object_set_new(h, t->name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", t->dtype, "shape", sh,
                                      "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + t->nbytes)));
        off += t->nbytes;
    }
    if (patch)
        patch(h);
    char *hs = json_dumps(h, JSON_COMPACT);
    size_t hl = strlen(hs), pad = (8 - hl % 8) % 8;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)(hl + pad) >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(hs, 1, hl, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    for (int i = 0; i < s->n; i++)
        fwrite(s->t[i].data, 1, s->t[i].nbytes, f);
    assert_int_equal(fclose(f), 0);
    free(hs);
    json_decref(h);
}

static void set_f32(struct tt *t, size_t i, float v) { memcpy(t->data + 4 * i, &v, 4); }

/* ---- assertions ------------------------------------------------------------------------------ */

static void expect_fail(const char *dir, sr_err_t code, const char *needle)
{
    sr_bundle_t *b = (sr_bundle_t *)0x1;
    struct sr_error err = {0};
    sr_err_t rc = sr_bundle_load(dir, &b, &err);
    assert_null(b);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("expected %s containing \"%s\", got %s \"%s\"", sr_err_name(code), needle,
                 sr_err_name(rc), err.msg);
}

static sr_bundle_t *expect_load(const char *dir)
{
    sr_bundle_t *b = NULL;
    struct sr_error err = {0};
    if (sr_bundle_load(dir, &b, &err) != SR_OK)
        fail_msg("load %s: %s", dir, err.msg);
    assert_non_null(b);
    return b;
}

/* ---- fixtures load ------------------------------------------------------------------------- */

static void check_item(sr_bundle_t *b, const char *id, int32_t idx, const char *cat)
{
    assert_int_equal(sr_bundle_item_index(b, id, strlen(id)), idx);
    assert_int_equal(sr_bundle_item_index_by_key(b, sr_hash64_str(id)), idx);
    size_t len = 0;
    const char *got = sr_bundle_item_id(b, idx, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(id));
    assert_memory_equal(got, id, len);
    int cc = sr_bundle_attr_column(b, "category"), ac = sr_bundle_attr_column(b, "available");
    assert_true(cc >= 0 && ac >= 0 && cc != ac);
    assert_string_equal(sr_bundle_attr(b, cc, idx), cat);
    assert_string_equal(sr_bundle_attr(b, ac, idx), "1");
}

static void test_load_gpt2(void **state)
{
    (void)state;
    sr_bundle_t *b = expect_load(SR_TEST_DATA "/gpt2-small");
    const struct sr_bundle_info *in = sr_bundle_info(b);
    assert_int_equal(in->arch, SR_ARCH_GPT2);
    assert_string_equal(in->arch_name, "gpt2");
    assert_string_equal(in->version, "gpt2-small-v1");
    assert_int_equal(in->d_model, 32);
    assert_int_equal(in->n_layers, 2);
    assert_int_equal(in->n_heads, 2);
    assert_int_equal(in->d_ff, 128);
    assert_int_equal(in->max_len, 20);
    assert_int_equal(in->activation, SR_ACT_GELU_TANH);
    assert_float_equal(in->layer_norm_eps, 1e-5f, 1e-12);
    assert_int_equal(in->n_items, 1002);
    assert_int_equal(in->first_index, 2);
    assert_int_equal(in->oov_index, 1);
    assert_false(in->has_output_bias);
    assert_int_equal(in->n_params, (235016 - 8 - 2304) / 4);
    assert_int_equal(in->weights_bytes, 235016);
    assert_string_equal(in->weights_dtype, "F32");
    assert_string_equal(in->tensor_prefix, "");
    assert_null(in->index_path);
    assert_true(in->dir[0] == '/');

    check_item(b, "sku-5666141", 276, "c3");
    assert_int_equal(sr_bundle_item_index(b, "no-such-item", 12), 1);
    assert_int_equal(sr_bundle_item_index(b, "sku-566614", 10), 1); /* prefix of a real id */
    assert_int_equal(sr_bundle_item_index_by_key(b, 12345), 1);
    assert_null(sr_bundle_item_id(b, 0, NULL));
    assert_null(sr_bundle_item_id(b, 1, NULL));
    assert_null(sr_bundle_item_id(b, 1002, NULL));
    assert_string_equal(sr_bundle_attr(b, sr_bundle_attr_column(b, "category"), 1), "");
    assert_int_equal(sr_bundle_attr_column(b, "item_id"), -1);
    assert_int_equal(sr_bundle_attr_column(b, "nope"), -1);

    int nd = 0;
    int64_t sh[4];
    const float *wte = sr_bundle_tensor(b, "wte.weight", &nd, sh);
    assert_non_null(wte);
    assert_int_equal(nd, 2);
    assert_int_equal(sh[0], 1002);
    assert_int_equal(sh[1], 32);
    struct st s;
    st_read(SR_TEST_DATA "/gpt2-small/model.safetensors", &s);
    assert_memory_equal(wte, st_get(&s, "wte.weight")->data, 1002 * 32 * 4);
    const float *w = sr_bundle_tensor(b, "h.1.mlp.c_fc.weight", &nd, sh);
    assert_non_null(w);
    assert_int_equal(sh[0], 32);
    assert_int_equal(sh[1], 128);
    assert_memory_equal(w, st_get(&s, "h.1.mlp.c_fc.weight")->data, 32 * 128 * 4);
    st_free(&s);
    assert_null(sr_bundle_tensor(b, "output.bias", &nd, sh));
    assert_null(sr_bundle_tensor(b, "h.2.ln_1.weight", &nd, sh));

    /* references: the bundle lives until the last unref */
    assert_ptr_equal(sr_bundle_ref(b), b);
    sr_bundle_unref(b);
    assert_int_equal(sr_bundle_info(b)->n_items, 1002);
    sr_bundle_unref(b);
    sr_bundle_unref(NULL);
}

static void test_load_gru4rec(void **state)
{
    (void)state;
    sr_bundle_t *b = expect_load(SR_TEST_DATA "/gru4rec-small");
    const struct sr_bundle_info *in = sr_bundle_info(b);
    assert_int_equal(in->arch, SR_ARCH_GRU4REC);
    assert_string_equal(in->arch_name, "gru4rec");
    assert_string_equal(in->version, "gru4rec-small-v1");
    assert_int_equal(in->d_model, 24);
    assert_int_equal(in->n_layers, 1);
    assert_int_equal(in->max_len, 20);
    assert_int_equal(in->n_items, 502);
    assert_int_equal(in->n_params, 502 * 24 + 2 * 72 * 24 + 2 * 72);
    assert_int_equal(in->weights_bytes, 63024);
    check_item(b, "sku-2204577", 330, "c1");
    check_item(b, "sku-6845439", 332, "c3");
    int nd;
    int64_t sh[4];
    const float *w = sr_bundle_tensor(b, "gru.weight_ih_l0", &nd, sh);
    assert_non_null(w);
    assert_int_equal(sh[0], 72);
    assert_int_equal(sh[1], 24);
    assert_non_null(sr_bundle_tensor(b, "gru.bias_hh_l0", &nd, sh));
    assert_int_equal(nd, 1);
    assert_int_equal(sh[0], 72);
    sr_bundle_unref(b);
}

/* ---- weights corruptions ------------------------------------------------------------------- */

static void rewrite(const char *dir, void (*edit)(struct st *s), void (*patch)(json_t *h))
{
    struct st s;
    st_read(pathf(dir, "model.safetensors"), &s);
    if (edit)
        edit(&s);
    st_write(pathf(dir, "model.safetensors"), &s, patch);
    st_free(&s);
}

static void ed_none(struct st *s) { (void)s; }

static void test_roundtrip_writer(void **state)
{
    /* the test's writer produces a file the loader accepts: the corruptions below are the only
     * difference */
    copy_fixture(*state, "gpt2-small");
    rewrite(*state, ed_none, NULL);
    sr_bundle_unref(expect_load(*state));
}

static void ed_missing(struct st *s) { st_remove(s, "h.1.ln_2.bias"); }
static void test_missing_tensor(void **state)
{
    copy_fixture(*state, "gpt2-small");
    rewrite(*state, ed_missing, NULL);
    expect_fail(*state, SR_EFORMAT, "model.safetensors: missing tensor 'h.1.ln_2.bias'");
}

static void ed_shape(struct st *s)
{
    struct tt *t = st_get(s, "h.0.attn.c_attn.weight");
    t->shape[1] = 64;
    t->nbytes = 32 * 64 * 4;
}
static void test_wrong_shape(void **state)
{
    copy_fixture(*state, "gpt2-small");
    rewrite(*state, ed_shape, NULL);
    expect_fail(*state, SR_EFORMAT,
                "model.safetensors: tensor 'h.0.attn.c_attn.weight': expected shape [32,96], got "
                "[32,64]");
}

static void ed_nan(struct st *s) { set_f32(st_get(s, "wte.weight"), 70, NAN); }
static void ed_inf(struct st *s) { set_f32(st_get(s, "h.1.mlp.c_fc.bias"), 5, -INFINITY); }
static void test_nan_inf(void **state)
{
    copy_fixture(*state, "gpt2-small");
    rewrite(*state, ed_nan, NULL);
    expect_fail(*state, SR_EFORMAT,
                "model.safetensors: tensor 'wte.weight': non-finite value NaN at element 70 (row 2, "
                "column 6)");
    copy_fixture(*state, "gpt2-small");
    rewrite(*state, ed_inf, NULL);
    expect_fail(*state, SR_EFORMAT,
                "model.safetensors: tensor 'h.1.mlp.c_fc.bias': non-finite value -Inf at element 5");
}

static void test_truncated(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gpt2-small");
    size_t len;
    unsigned char *b = read_file(pathf(dir, "model.safetensors"), &len);
    write_file(pathf(dir, "model.safetensors"), b, len / 2);
    expect_fail(dir, SR_EFORMAT, "run past the end of the data");
    write_file(pathf(dir, "model.safetensors"), b, len - 1);
    expect_fail(dir, SR_EFORMAT, "tensor 'ln_f.bias': data_offsets [232576,232704] run past the "
                                 "end of the data (232703 bytes; file truncated?)");
    write_file(pathf(dir, "model.safetensors"), b, 100); /* inside the header */
    expect_fail(dir, SR_EFORMAT, "model.safetensors: header length 2304 runs past the end of the "
                                 "file (100 bytes");
    write_file(pathf(dir, "model.safetensors"), b, 5);
    expect_fail(dir, SR_EFORMAT, "model.safetensors: truncated: 5 bytes");
    write_file(pathf(dir, "model.safetensors"), b, 0);
    expect_fail(dir, SR_EFORMAT, "model.safetensors: truncated: 0 bytes");
    free(b);
}

static void test_lying_header_length(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gpt2-small");
    size_t len;
    unsigned char *b = read_file(pathf(dir, "model.safetensors"), &len);
    uint64_t lie = len; /* one past the whole file */
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(lie >> (8 * i));
    write_file(pathf(dir, "model.safetensors"), b, len);
    expect_fail(dir, SR_EFORMAT, "model.safetensors: header length 235016 runs past the end");
    lie = UINT64_MAX - 3; /* absurd: must not wrap around */
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(lie >> (8 * i));
    write_file(pathf(dir, "model.safetensors"), b, len);
    expect_fail(dir, SR_EFORMAT, "is absurd");
    lie = 2000; /* shorter: the JSON is cut */
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(lie >> (8 * i));
    write_file(pathf(dir, "model.safetensors"), b, len);
    expect_fail(dir, SR_EFORMAT, "model.safetensors: header is not valid JSON");
    free(b);
}

static void pa_beyond(json_t *h)
{
    json_t *o = json_object_get(json_object_get(h, "ln_f.weight"), "data_offsets");
    json_array_set_new(o, 0, json_integer(232448 + 4096));
    json_array_set_new(o, 1, json_integer(232576 + 4096));
}
static void pa_overlap(json_t *h)
{
    json_t *o = json_object_get(json_object_get(h, "wpe.weight"), "data_offsets");
    json_array_set_new(o, 0, json_integer(128256 - 4));
    json_array_set_new(o, 1, json_integer(130816 - 4));
}
static void pa_mismatch(json_t *h)
{
    json_t *o = json_object_get(json_object_get(h, "ln_f.bias"), "data_offsets");
    json_array_set_new(o, 1, json_integer(232704 - 4));
}
static void pa_dtype(json_t *h)
{
    json_object_set_new(json_object_get(h, "h.0.ln_1.bias"), "dtype", json_string("F64"));
}
static void pa_backwards(json_t *h)
{
    json_t *o = json_object_get(json_object_get(h, "ln_f.bias"), "data_offsets");
    json_array_set_new(o, 0, json_integer(232704));
    json_array_set_new(o, 1, json_integer(232576));
}
static void test_bad_offsets(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_none, pa_beyond);
    expect_fail(dir, SR_EFORMAT,
                "model.safetensors: tensor 'ln_f.weight': data_offsets [236544,236672] run past "
                "the end of the data (232704 bytes");
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_none, pa_overlap);
    expect_fail(dir, SR_EFORMAT, "model.safetensors: tensors 'wte.weight' [0,128256) and "
                                 "'wpe.weight' [128252,130812) overlap");
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_none, pa_mismatch);
    expect_fail(dir, SR_EFORMAT, "tensor 'ln_f.bias': data_offsets [232576,232700] hold 124 "
                                 "bytes, but F32 [32] needs 128");
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_none, pa_backwards);
    expect_fail(dir, SR_EFORMAT, "not an ascending pair");
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_none, pa_dtype);
    expect_fail(dir, SR_EUNSUPPORTED,
                "model.safetensors: tensor 'h.0.ln_1.bias': unsupported dtype 'F64'");
}

static void ed_extra_layer(struct st *s)
{
    struct tt *t = st_get(s, "h.1.ln_1.weight");
    char nm[] = "h.2.ln_1.weight";
    st_add(s, nm, "F32", 1, t->shape, t->data, t->nbytes);
}
static void ed_wpe_longer(struct st *s)
{
    struct tt *t = st_get(s, "wpe.weight");
    t->shape[0] = 30;
    t->data = realloc(t->data, 30 * 32 * 4);
    memset(t->data + t->nbytes, 0, 30 * 32 * 4 - t->nbytes);
    t->nbytes = 30 * 32 * 4;
}
static void test_tensor_set(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_extra_layer, NULL);
    expect_fail(dir, SR_EFORMAT,
                "model.safetensors: unexpected tensor 'h.2.ln_1.weight' (not part of gpt2 with "
                "model.n_layers 2)");
    /* n_layers in bundle.json lower than the checkpoint's */
    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "n_layers", json_integer(1));
    expect_fail(dir, SR_EFORMAT, "unexpected tensor 'h.1.");
    /* wpe may hold more positions than max_len, never fewer */
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_wpe_longer, NULL);
    sr_bundle_unref(expect_load(dir));
    json_edit(dir, "model", "max_len", json_integer(31));
    expect_fail(dir, SR_EFORMAT, "tensor 'wpe.weight': expected shape [>=31,32] (at least "
                                 "model.max_len rows), got [30,32]");
    /* d_ff disagreeing with the checkpoint */
    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "d_ff", json_integer(64));
    expect_fail(dir, SR_EFORMAT, "tensor 'h.0.mlp.c_fc.weight': expected shape [32,64], got "
                                 "[32,128]");
    /* d_model disagreeing: the embedding is named first */
    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "d_model", json_integer(16));
    expect_fail(dir, SR_EFORMAT, "tensor 'wte.weight': expected shape [1002,16], got [1002,32]");
}

static float g_bias_val(int i) { return (float)i * 0.25f - 3.0f; }
static void ed_output_bias(struct st *s)
{
    float v[1002];
    for (int i = 0; i < 1002; i++)
        v[i] = g_bias_val(i);
    int64_t sh[1] = {1002};
    st_add(s, "output.bias", "F32", 1, sh, v, sizeof v);
}
static void ed_output_bias_bad(struct st *s)
{
    float v[1001] = {0};
    int64_t sh[1] = {1001};
    st_add(s, "output.bias", "F32", 1, sh, v, sizeof v);
}
static void test_output_bias(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_output_bias, NULL);
    sr_bundle_t *b = expect_load(dir);
    assert_true(sr_bundle_info(b)->has_output_bias);
    assert_int_equal(sr_bundle_info(b)->n_params, 58176 + 1002);
    int nd;
    int64_t sh[4];
    const float *ob = sr_bundle_tensor(b, "output.bias", &nd, sh);
    assert_non_null(ob);
    assert_int_equal(sh[0], 1002);
    assert_float_equal(ob[7], g_bias_val(7), 0);
    sr_bundle_unref(b);
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_output_bias_bad, NULL);
    expect_fail(dir, SR_EFORMAT, "tensor 'output.bias': expected shape [1002], got [1001]");
}

/* F16 bit patterns and their exact values (normal, subnormal, signed zero, max). */
static const struct {
    uint16_t bits;
    float val;
} f16_cases[] = {{0x3800, 0.5f},     {0xC000, -2.0f},         {0x3D00, 1.25f},
                 {0x7BFF, 65504.0f}, {0x0001, 0x1p-24f},      {0x8000, -0.0f},
                 {0x4248, 3.140625f}, {0x0200, 0x1p-15f},     {0x3555, 0.333251953125f},
                 {0x0400, 0x1p-14f}, {0x83FF, -0x1.ff8p-15f}, {0x0000, 0.0f}};
#define N_F16 (sizeof f16_cases / sizeof f16_cases[0])

static void to_f16_pattern(struct tt *t)
{
    size_t n = t->nbytes / 4;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = f16_cases[i % N_F16].bits;
        t->data[2 * i] = (unsigned char)h;
        t->data[2 * i + 1] = (unsigned char)(h >> 8);
    }
    t->nbytes = n * 2;
    strcpy(t->dtype, "F16");
}

static void to_bf16(struct tt *t)
{
    size_t n = t->nbytes / 4;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, t->data + 4 * i, 4);
        uint16_t h = (uint16_t)(u >> 16);
        t->data[2 * i] = (unsigned char)h;
        t->data[2 * i + 1] = (unsigned char)(h >> 8);
    }
    t->nbytes = n * 2;
    strcpy(t->dtype, "BF16");
}

static void ed_mixed(struct st *s)
{
    to_f16_pattern(st_get(s, "gru.bias_ih_l0"));
    to_bf16(st_get(s, "item_embedding.weight"));
}
static void ed_all_bf16(struct st *s)
{
    for (int i = 0; i < s->n; i++)
        to_bf16(&s->t[i]);
}
static void ed_f16_nan(struct st *s)
{
    struct tt *t = st_get(s, "gru.bias_hh_l0");
    to_f16_pattern(t);
    t->data[2 * 9] = 0x00;
    t->data[2 * 9 + 1] = 0x7E; /* F16 NaN */
}

static void test_f16_bf16(void **state)
{
    const char *dir = *state;
    struct st orig;
    st_read(SR_TEST_DATA "/gru4rec-small/model.safetensors", &orig);
    copy_fixture(dir, "gru4rec-small");
    rewrite(dir, ed_mixed, NULL);
    sr_bundle_t *b = expect_load(dir);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    assert_string_equal(in->weights_dtype, "mixed");
    assert_int_equal(in->n_params, 502 * 24 + 2 * 72 * 24 + 2 * 72);
    int nd;
    int64_t sh[4];
    const float *bi = sr_bundle_tensor(b, "gru.bias_ih_l0", &nd, sh);
    assert_non_null(bi);
    assert_int_equal(sh[0], 72);
    for (int i = 0; i < 72; i++) {
        float want = f16_cases[(size_t)i % N_F16].val;
        if (memcmp(&bi[i], &want, 4))
            fail_msg("F16 element %d: got %a, want %a", i, (double)bi[i], (double)want);
    }
    const float *emb = sr_bundle_tensor(b, "item_embedding.weight", &nd, sh);
    const unsigned char *src = st_get(&orig, "item_embedding.weight")->data;
    for (int i = 0; i < 502 * 24; i++) {
        uint32_t u;
        memcpy(&u, src + 4 * i, 4);
        u &= 0xffff0000u;
        float want;
        memcpy(&want, &u, 4);
        if (memcmp(&emb[i], &want, 4))
            fail_msg("BF16 element %d: got %a, want %a", i, (double)emb[i], (double)want);
    }
    /* an F32 tensor in the same file is untouched */
    assert_memory_equal(sr_bundle_tensor(b, "gru.weight_hh_l0", &nd, sh),
                        st_get(&orig, "gru.weight_hh_l0")->data, 72 * 24 * 4);
    sr_bundle_unref(b);

    copy_fixture(dir, "gru4rec-small");
    rewrite(dir, ed_all_bf16, NULL);
    b = expect_load(dir);
    assert_string_equal(sr_bundle_info(b)->weights_dtype, "BF16");
    sr_bundle_unref(b);

    copy_fixture(dir, "gru4rec-small");
    rewrite(dir, ed_f16_nan, NULL);
    expect_fail(dir, SR_EFORMAT, "tensor 'gru.bias_hh_l0': non-finite value NaN at element 9");
    st_free(&orig);
}

static void ed_prefix(struct st *s)
{
    for (int i = 0; i < s->n; i++) {
        char nm[128];
        /* checked, not just bounded: gcc's -Wformat-truncation (Debug/sanitizer builds, gcc 12
         * and 14) flags an unchecked snprintf that may cut the name */
        if (snprintf(nm, sizeof nm, "transformer.%s", s->t[i].name) >= (int)sizeof nm)
            fail_msg("tensor name '%s' too long to prefix", s->t[i].name);
        strcpy(s->t[i].name, nm);
    }
    /* a head outside the prefix and an old causal-mask buffer are ignored */
    float v[4] = {1, 2, 3, 4};
    int64_t sh[2] = {2, 2};
    st_add(s, "lm_head.weight", "F32", 2, sh, v, sizeof v);
    st_add(s, "transformer.h.0.attn.bias", "F32", 2, sh, v, sizeof v);
}
static void ed_prefix_missing(struct st *s) { st_remove(s, "transformer.ln_f.bias"); }
static void test_tensor_prefix(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gpt2-small");
    rewrite(dir, ed_prefix, NULL);
    expect_fail(dir, SR_EFORMAT, "model.safetensors: missing tensor 'wte.weight'");
    json_edit(dir, "model", "tensor_prefix", json_string("transformer."));
    sr_bundle_t *b = expect_load(dir);
    assert_string_equal(sr_bundle_info(b)->tensor_prefix, "transformer.");
    assert_int_equal(sr_bundle_info(b)->n_params, 58176);
    int nd;
    int64_t sh[4];
    assert_non_null(sr_bundle_tensor(b, "wte.weight", &nd, sh));
    assert_int_equal(sh[0], 1002);
    assert_non_null(sr_bundle_tensor(b, "ln_f.bias", &nd, sh));
    assert_null(sr_bundle_tensor(b, "transformer.wte.weight", &nd, sh));
    assert_null(sr_bundle_tensor(b, "lm_head.weight", &nd, sh));
    sr_bundle_unref(b);
    rewrite(dir, ed_prefix_missing, NULL); /* reads the prefixed file again */
    expect_fail(dir, SR_EFORMAT, "model.safetensors: missing tensor 'transformer.ln_f.bias'");
}

/* ---- bundle.json ---------------------------------------------------------------------------- */

static void test_bundle_json(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gpt2-small");
    write_file(pathf(dir, "bundle.json"), "{\n  \"format\": \"streamrec-bundle/1\",\n  \"version\" 1\n}",
               50);
    expect_fail(dir, SR_EFORMAT, "bundle.json: invalid JSON at line 3, column");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "arch", json_string("bert"));
    expect_fail(dir, SR_EFORMAT,
                "bundle.json: model.arch: unknown architecture 'bert' (expected gpt2 or gru4rec)");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "n_heads", json_integer(3));
    expect_fail(dir, SR_EFORMAT, "bundle.json: model.n_heads: 3 does not divide model.d_model 32");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "d_model", json_string("32"));
    expect_fail(dir, SR_EFORMAT, "bundle.json: model.d_model: expected integer, got string");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "d_model", json_real(32.0));
    expect_fail(dir, SR_EFORMAT, "bundle.json: model.d_model: expected integer, got real");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "d_model", json_integer(0));
    expect_fail(dir, SR_EFORMAT, "bundle.json: model.d_model: 0 is below the minimum 1");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "max_len", NULL);
    expect_fail(dir, SR_EFORMAT, "bundle.json: model.max_len: missing (expected integer)");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, NULL, "format", json_string("streamrec-bundle/2"));
    expect_fail(dir, SR_EFORMAT,
                "bundle.json: format: expected \"streamrec-bundle/1\", got \"streamrec-bundle/2\"");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, NULL, "items", json_string("items.tsv"));
    expect_fail(dir, SR_EFORMAT, "bundle.json: items: expected object, got string");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "activation", json_string("swish"));
    expect_fail(dir, SR_EFORMAT, "bundle.json: model.activation: unknown activation 'swish'");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "items", "oov_index", json_integer(2));
    expect_fail(dir, SR_EFORMAT, "bundle.json: items.oov_index: 2 must be below items.first_index 2");

    copy_fixture(dir, "gpt2-small");
    write_file(pathf(dir, "bundle.json"), "[1, 2]", 6);
    expect_fail(dir, SR_EFORMAT, "bundle.json: top level: expected object, got array");

    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "weights", json_string("nope.safetensors"));
    expect_fail(dir, SR_ENOENT, "nope.safetensors: cannot open");

    unlink(pathf(dir, "bundle.json"));
    expect_fail(dir, SR_ENOENT, "bundle.json: cannot open");
    expect_fail("/nonexistent/bundle/dir", SR_ENOENT, "/nonexistent/bundle/dir");

    /* defaults and optional fields */
    copy_fixture(dir, "gpt2-small");
    json_edit(dir, "model", "activation", json_string("relu"));
    json_edit(dir, "model", "layer_norm_eps", json_real(1e-6));
    json_edit(dir, "retrieval", "index", json_string("items.faiss"));
#ifdef SR_HAVE_FAISS
    /* With FAISS the index is read with the bundle: a missing one refuses it (tests/kernels/
     * test_faiss.c covers real indexes). */
    expect_fail(dir, SR_ENOENT, "items.faiss: cannot open");
    json_edit(dir, "retrieval", "index", NULL);
#endif
    sr_bundle_t *b = expect_load(dir);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    assert_int_equal(in->activation, SR_ACT_RELU);
    assert_float_equal(in->layer_norm_eps, 1e-6f, 1e-12);
#ifndef SR_HAVE_FAISS
    assert_non_null(in->index_path);
    assert_true(in->index_path[0] == '/');
    assert_non_null(strstr(in->index_path, "/items.faiss"));
#endif
    sr_bundle_unref(b);
    json_edit(dir, "model", "activation", NULL);
    json_edit(dir, "model", "layer_norm_eps", NULL);
    json_edit(dir, "model", "tensor_prefix", NULL);
    b = expect_load(dir);
    assert_int_equal(sr_bundle_info(b)->activation, SR_ACT_GELU_TANH);
    assert_float_equal(sr_bundle_info(b)->layer_norm_eps, 1e-5f, 1e-12);
    sr_bundle_unref(b);
    json_edit(dir, "model", "activation", json_string("gelu"));
    b = expect_load(dir);
    assert_int_equal(sr_bundle_info(b)->activation, SR_ACT_GELU_ERF);
    sr_bundle_unref(b);
}

/* ---- items.tsv ------------------------------------------------------------------------------ */

/* Replaces the first occurrence of `from` in items.tsv with `to`. */
static void tsv_replace(const char *dir, const char *from, const char *to)
{
    size_t len;
    char *t = (char *)read_file(pathf(dir, "items.tsv"), &len);
    char *p = strstr(t, from);
    assert_non_null(p);
    size_t fl = strlen(from), tl = strlen(to);
    char *o = malloc(len - fl + tl + 1);
    memcpy(o, t, (size_t)(p - t));
    memcpy(o + (p - t), to, tl);
    memcpy(o + (p - t) + tl, p + fl, len - (size_t)(p - t) - fl);
    write_file(pathf(dir, "items.tsv"), o, len - fl + tl);
    free(o);
    free(t);
}

static void test_vocab(void **state)
{
    const char *dir = *state;
    /* line 2 is "276\tsku-5666141\tc3\t1", line 3 "348\tsku-1476646\tc5\t1" */
    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "\n348\t", "\n276\t");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: duplicate index 276 (first on line 2)");

    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "348\tsku-1476646\tc5\t1\n", "");
    expect_fail(dir, SR_EFORMAT, "items.tsv: index 348 missing (every index 2..1001 must appear "
                                 "exactly once");

    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "\n348\t", "\n1002\t");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: index 1002 out of range: items occupy 2..1001");
    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "\n348\t", "\n1\t");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: index 1 out of range");
    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "\n348\t", "\n99999999999999999999\t");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: index 99999999999999999999 out of range");

    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "\n348\t", "\n3x8\t");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: index '3x8' is not a non-negative integer");
    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "\n348\t", "\n-348\t");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: index '-348' is not a non-negative integer");

    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "sku-1476646", "sku-5666141");
    expect_fail(dir, SR_EFORMAT,
                "items.tsv: line 3: duplicate item_id 'sku-5666141' (first on line 2)");

    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "sku-1476646\tc5\t1", "sku-1476646\tc5");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: 3 tab-separated columns, the header has 4");

    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "index\titem_id", "idx\titem_id");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 1: header must name the columns 'index' and "
                                 "'item_id' (tab-separated); 'index' is missing");

    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "\tsku-1476646", "\t");
    expect_fail(dir, SR_EFORMAT, "items.tsv: line 3: empty item_id");

    copy_fixture(dir, "gpt2-small");
    unlink(pathf(dir, "items.tsv"));
    expect_fail(dir, SR_ENOENT, "items.tsv: cannot open");

    /* CRLF line ends, columns in another order, blank lines and a byte order mark are fine */
    copy_fixture(dir, "gpt2-small");
    tsv_replace(dir, "348\tsku-1476646\tc5\t1\n", "348\tsku-1476646\tc5\t0\n");
    size_t len;
    char *t = (char *)read_file(pathf(dir, "items.tsv"), &len);
    char *o = malloc(2 * len + 16), *w = o;
    w += sprintf(w, "\xEF\xBB\xBF");
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        char *f[4] = {line, NULL, NULL, NULL};
        for (int k = 1; k < 4; k++) {
            f[k] = strchr(f[k - 1], '\t');
            assert_non_null(f[k]);
            *f[k]++ = '\0';
        }
        w += sprintf(w, "%s\t%s\t%s\t%s\r\n\r\n", f[2], f[1], f[0], f[3]);
    }
    write_file(pathf(dir, "items.tsv"), o, (size_t)(w - o));
    free(o);
    free(t);
    sr_bundle_t *b = expect_load(dir);
    check_item(b, "sku-5666141", 276, "c3");
    assert_int_equal(sr_bundle_item_index(b, "sku-1476646", 11), 348);
    assert_string_equal(sr_bundle_attr(b, sr_bundle_attr_column(b, "available"), 348), "0");
    assert_string_equal(sr_bundle_attr(b, sr_bundle_attr_column(b, "category"), 348), "c5");
    sr_bundle_unref(b);
}

static void test_first_index_3(void **state)
{
    const char *dir = *state;
    copy_fixture(dir, "gru4rec-small");
    size_t len;
    char *t = (char *)read_file(pathf(dir, "items.tsv"), &len);
    char *p = strstr(t, "\n2\t");
    assert_non_null(p);
    char *id = p + 3, *tab = strchr(id, '\t');
    char removed[64];
    snprintf(removed, sizeof removed, "%.*s", (int)(tab - id), id);
    char line[128];
    char *nl = strchr(p + 1, '\n');
    snprintf(line, sizeof line, "%.*s", (int)(nl - p), p + 1); /* "2\t...\n" */
    free(t);
    tsv_replace(dir, line, "");
    expect_fail(dir, SR_EFORMAT, "items.tsv: index 2 missing");
    json_edit(dir, "items", "first_index", json_integer(3));
    json_edit(dir, "items", "oov_index", json_integer(2));
    sr_bundle_t *b = expect_load(dir);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    assert_int_equal(in->first_index, 3);
    assert_int_equal(in->oov_index, 2);
    assert_int_equal(in->n_items, 502);
    assert_int_equal(sr_bundle_item_index(b, removed, strlen(removed)), 2);
    assert_int_equal(sr_bundle_item_index(b, "unknown", 7), 2);
    assert_null(sr_bundle_item_id(b, 2, NULL));
    assert_non_null(sr_bundle_item_id(b, 3, NULL));
    assert_int_equal(sr_bundle_item_index(b, "sku-2204577", 11), 330);
    sr_bundle_unref(b);
    /* an item at a reserved index is refused */
    tsv_replace(dir, "\n330\t", "\n2\t");
    expect_fail(dir, SR_EFORMAT, "index 2 out of range: items occupy 3..501");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_gpt2),
        cmocka_unit_test(test_load_gru4rec),
        cmocka_unit_test_setup_teardown(test_roundtrip_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_tensor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_inf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lying_header_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tensor_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_bias, setup, teardown),
        cmocka_unit_test_setup_teardown(test_f16_bf16, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tensor_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vocab, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_index_3, setup, teardown),
    };
    return cmocka_run_group_tests_name("bundle", tests, NULL, NULL);
}
