/* test_bundle_edit.c — catalogue updates without retraining (kernels/bundle_edit.c, DESIGN
 * §3.1): add-items output loads, has a new version, and a session recommends a new item whose
 * embedding is the session's best item scaled up (so it must rank first), exact and through a
 * rebuilt FAISS index; an attribute update keeps every index; each refusal (dimension
 * mismatch, duplicate, non-finite value, unknown column, existing --out) names file and line
 * or row and leaves nothing at --out. Bundles are built per test in a temporary directory from
 * the gpt2-small fixture. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "sr_kernels.h"
#ifdef SR_HAVE_FAISS
#include "sr_faiss.h"
#endif

static char *pathf(const char *dir, const char *name)
{
    static char buf[4][2048];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%.900s/%.900s", dir, name);
    return buf[k];
}

static void copy_file(const char *src, const char *dst)
{
    char *text = NULL;
    size_t len = 0;
    struct sr_error err;
    assert_int_equal(sr_file_read_all(src, &text, &len, &err), SR_OK);
    FILE *f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(text);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

/* state: a temporary directory holding src/ (a copy of gpt2-small). */
static int setup(void **state)
{
    char *dir = strdup("/tmp/sr_test_bundle_edit_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char src[1100];
    snprintf(src, sizeof src, "%s/src", dir);
    mkdir(src, 0755);
    static const char *files[] = {"bundle.json", "items.tsv", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char from[1024];
        snprintf(from, sizeof from, "%s/gpt2-small/%s", SR_TEST_DATA, files[i]);
        copy_file(from, pathf(src, files[i]));
    }
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    nftw(*state, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

/* A safetensors file of F32 tensors (name, ndim, shape, data), offsets contiguous. */
struct tens {
    const char *name;
    int ndim;
    int64_t shape[2];
    const float *data;
};

static void st_write(const char *path, const struct tens *t, int n)
{
    json_t *h = json_object();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = sizeof(float) * (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        json_t *sh = t[i].ndim == 2 ? json_pack("[I,I]", (json_int_t)t[i].shape[0], (json_int_t)t[i].shape[1])
                                    : json_pack("[I]", (json_int_t)t[i].shape[0]);
        json_object_set_new(h, t[i].name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape",
                                                     sh, "data_offsets", (json_int_t)off,
                                                     (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *hs = json_dumps(h, JSON_COMPACT);
    size_t hl = strlen(hs);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(le, 1, 8, f);
    fwrite(hs, 1, hl, f);
    for (int i = 0; i < n; i++)
        fwrite(t[i].data, sizeof(float),
               (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1), f);
    assert_int_equal(fclose(f), 0);
    free(hs);
    json_decref(h);
}

static sr_bundle_t *load(const char *dir)
{
    sr_bundle_t *b = NULL;
    struct sr_error err = {0};
    if (sr_bundle_load(dir, &b, &err) != SR_OK)
        fail_msg("load %s: %s", dir, err.msg);
    return b;
}

/* Top-k of one session (items by id) on bundle b, retrieval exact or auto (index if any). */
static void recommend(sr_bundle_t *b, bool exact, const char **ids, int n, int k, int32_t *out,
                      float *score)
{
    struct sr_backend_params bp = {.device = SR_DEVICE_CPU};
    sr_backend_t *be = NULL;
    sr_model_t *m = NULL;
    struct sr_error err = {0};
    int32_t items[16], off[2] = {0, n};
    for (int i = 0; i < n; i++)
        items[i] = sr_bundle_item_index(b, ids[i], strlen(ids[i]));
    struct sr_session_batch sb = {.n = 1, .offsets = off, .items = items};
    struct sr_retrieval_params rp = {.mode = exact ? SR_RETRIEVAL_EXACT : SR_RETRIEVAL_AUTO};
    if (sr_backend_new(&bp, &be, &err) != SR_OK || sr_model_new(b, be, &m, &err) != SR_OK ||
        sr_model_set_retrieval(m, &rp, &err) != SR_OK ||
        sr_model_recommend(m, &sb, k, out, score, &err) != SR_OK)
        fail_msg("recommend: %s", err.msg);
    sr_model_unref(m);
    sr_backend_unref(be);
}

static const char *g_session[] = {"sku-5666141"};

/* Writes items + embeddings where the new item's row is the session's best item x 10 and the
 * existing item `upd` keeps its own row; returns the best item's index. */
static int32_t make_update(const char *dir, sr_bundle_t *b, const char *upd)
{
    int32_t top[1];
    float sc[1];
    recommend(b, true, g_session, 1, 1, top, sc);
    assert_true(sc[0] > 0); /* scaling a positive score up puts it first */
    const struct sr_bundle_info *in = sr_bundle_info(b);
    const int d = in->d_model;
    const float *E = sr_bundle_tensor(b, "wte.weight", NULL, NULL);
    float *emb = malloc(sizeof(float) * 2 * (size_t)d);
    int32_t ui = sr_bundle_item_index(b, upd, strlen(upd));
    for (int j = 0; j < d; j++) {
        emb[j] = 10.0f * E[(size_t)top[0] * (size_t)d + (size_t)j];
        emb[d + j] = E[(size_t)ui * (size_t)d + (size_t)j];
    }
    char tsv[256];
    snprintf(tsv, sizeof tsv, "item_id\tavailable\tcategory\nnew-1\t1\tc9\n%s\t0\tc3\n", upd);
    write_text(pathf(dir, "new.tsv"), tsv);
    struct tens t = {"embedding", 2, {2, d}, emb};
    st_write(pathf(dir, "new.safetensors"), &t, 1);
    free(emb);
    return top[0];
}

static void run_add(const char *dir, struct sr_bundle_add_result *res)
{
    struct sr_bundle_add_params p = {.items = pathf(dir, "new.tsv"),
                                     .embeddings = pathf(dir, "new.safetensors"),
                                     .out = pathf(dir, "out")};
    struct sr_error err = {0};
    if (sr_bundle_add_items(pathf(dir, "src"), &p, res, &err) != SR_OK)
        fail_msg("add-items: %s", err.msg);
}

static void test_add_recommends_new_item(void **state)
{
    const char *dir = *state;
    sr_bundle_t *b = load(pathf(dir, "src"));
    const int32_t V = sr_bundle_info(b)->n_items;
    const char *upd = "sku-5666141";
    int32_t ui = sr_bundle_item_index(b, upd, strlen(upd));
    int32_t best = make_update(dir, b, upd);
    struct sr_bundle_add_result res;
    run_add(dir, &res);
    assert_int_equal(res.added, 1);
    assert_int_equal(res.updated, 1);
    assert_string_equal(res.version, "gpt2-small-v1+items1");
    sr_bundle_t *nb = load(pathf(dir, "out"));
    const struct sr_bundle_info *in = sr_bundle_info(nb);
    assert_string_equal(in->version, "gpt2-small-v1+items1");
    assert_int_equal(in->n_items, V + 1);
    assert_int_equal(sr_bundle_item_index(nb, "new-1", 5), V);
    assert_int_equal(sr_bundle_item_index(nb, upd, strlen(upd)), ui); /* index kept */
    int ac = sr_bundle_attr_column(nb, "available"), cc = sr_bundle_attr_column(nb, "category");
    assert_string_equal(sr_bundle_attr(nb, ac, ui), "0");
    assert_string_equal(sr_bundle_attr(nb, ac, V), "1");
    assert_string_equal(sr_bundle_attr(nb, cc, V), "c9");
    /* Every other item keeps its index, id and attributes. */
    for (int32_t i = in->first_index; i < V; i++) {
        size_t l1, l2;
        const char *a = sr_bundle_item_id(b, i, &l1), *c = sr_bundle_item_id(nb, i, &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(a, c, l1);
        if (i != ui)
            assert_string_equal(sr_bundle_attr(b, ac, i), sr_bundle_attr(nb, ac, i));
    }
    int32_t top[2];
    float sc[2];
    recommend(nb, true, g_session, 1, 2, top, sc);
    assert_int_equal(top[0], V);
    assert_int_equal(top[1], best);
    sr_bundle_unref(nb);
    sr_bundle_unref(b);
    /* A second update of the output counts the version on. */
    struct sr_bundle_add_params p = {.items = pathf(dir, "upd2.tsv"), .out = pathf(dir, "out2")};
    write_text(p.items, "item_id\tavailable\nnew-1\t0\n");
    struct sr_error err = {0};
    if (sr_bundle_add_items(pathf(dir, "out"), &p, &res, &err) != SR_OK)
        fail_msg("add-items (attributes only): %s", err.msg);
    assert_string_equal(res.version, "gpt2-small-v1+items2");
    assert_int_equal(res.added, 0);
    nb = load(pathf(dir, "out2"));
    assert_int_equal(sr_bundle_info(nb)->n_items, V + 1);
    assert_string_equal(sr_bundle_attr(nb, ac, V), "0");
    assert_int_equal(sr_bundle_item_index(nb, "new-1", 5), V);
    sr_bundle_unref(nb);
}

static void test_add_rebuilds_index(void **state)
{
#ifndef SR_HAVE_FAISS
    (void)state;
    skip();
#else
    const char *dir = *state;
    char src[1024];
    snprintf(src, sizeof src, "%s", pathf(dir, "src"));
    sr_bundle_t *b = load(src);
    sr_faiss_t *ix = NULL;
    struct sr_error err = {0};
    assert_int_equal(sr_bundle_index_build(b, "Flat", 0, 1, &ix, &err), SR_OK);
    assert_int_equal(sr_faiss_write(ix, pathf(src, "items.faiss"), &err), SR_OK);
    sr_faiss_destroy(ix);
    json_error_t je;
    json_t *root = json_load_file(pathf(src, "bundle.json"), 0, &je);
    json_object_set_new(root, "retrieval", json_pack("{s:s}", "index", "items.faiss"));
    assert_int_equal(json_dump_file(root, pathf(src, "bundle.json"), JSON_INDENT(2)), 0);
    json_decref(root);
    sr_bundle_unref(b);
    b = load(src);
    const int32_t V = sr_bundle_info(b)->n_items;
    make_update(dir, b, "sku-5666141");
    struct sr_bundle_add_result res;
    run_add(dir, &res);
    assert_true(res.index_rebuilt);
    assert_string_equal(res.factory, "Flat");
    sr_bundle_t *nb = load(pathf(dir, "out")); /* checks ntotal = V+1-first and the ids */
    assert_non_null(sr_bundle_info(nb)->index_type);
    int32_t top[1];
    float sc[1];
    recommend(nb, false, g_session, 1, 1, top, sc);
    assert_int_equal(top[0], V);
    sr_bundle_unref(nb);
    sr_bundle_unref(b);
#endif
}

/* Runs add-items expecting failure with a message containing needle; nothing at --out. */
static void expect_refused(const char *dir, const char *tsv, const struct tens *t, int nt,
                           const char *needle)
{
    write_text(pathf(dir, "bad.tsv"), tsv);
    if (t)
        st_write(pathf(dir, "bad.safetensors"), t, nt);
    struct sr_bundle_add_params p = {.items = pathf(dir, "bad.tsv"),
                                     .embeddings = t ? pathf(dir, "bad.safetensors") : NULL,
                                     .out = pathf(dir, "out")};
    struct sr_bundle_add_result res;
    struct sr_error err = {0};
    sr_err_t rc = sr_bundle_add_items(pathf(dir, "src"), &p, &res, &err);
    if (rc == SR_OK || !strstr(err.msg, needle))
        fail_msg("expected an error containing \"%s\", got %s \"%s\"", needle, sr_err_name(rc),
                 err.msg);
    struct stat st;
    assert_int_not_equal(stat(p.out, &st), 0);
}

static void test_add_refusals(void **state)
{
    const char *dir = *state;
    float e2[2 * 32], e3[2 * 31];
    for (int i = 0; i < 64; i++)
        e2[i] = 0.01f * (float)i;
    for (int i = 0; i < 62; i++)
        e3[i] = 0.5f;
    struct tens ok = {"embedding", 2, {2, 32}, e2};
    struct tens narrow = {"embedding", 2, {2, 31}, e3};
    const char *two = "item_id\tavailable\nn1\t1\nn2\t1\n";
    expect_refused(dir, two, &narrow, 1, "dimension mismatch: 31 columns, the bundle's d_model is 32");
    expect_refused(dir, "item_id\tavailable\nn1\t1\nn1\t0\n", &ok, 1,
                   "bad.tsv: line 3: duplicate item_id 'n1' (first on line 2)");
    e2[32 + 5] = NAN;
    expect_refused(dir, two, &ok, 1, "bad.safetensors: tensor 'embedding': non-finite value NaN at "
                   "element 37 (row 1, column 5)");
    e2[32 + 5] = INFINITY;
    expect_refused(dir, two, &ok, 1, "non-finite value +Inf");
    e2[32 + 5] = 0;
    expect_refused(dir, "item_id\tcolour\nn1\tred\nn2\tblue\n", &ok, 1,
                   "bad.tsv: line 1: column 'colour' is not an attribute");
    expect_refused(dir, "index\titem_id\n400\tn1\n401\tn2\n", &ok, 1, "an 'index' column is not allowed");
    expect_refused(dir, "item_id\tavailable\nn1\t1\n", &ok, 1, "2 rows, the items file has 1");
    expect_refused(dir, "item_id\tavailable\nn1\t1\textra\nn2\t1\n", &ok, 1,
                   "bad.tsv: line 2: 3 tab-separated columns, the header has 2");
    expect_refused(dir, two, NULL, 0, "bad.tsv: line 2: item 'n1' is new and needs an embedding row");
    float b2[2] = {0, 0};
    struct tens withbias[2] = {ok, {"bias", 1, {2, 0}, b2}};
    expect_refused(dir, two, withbias, 2, "tensor 'bias' given, but the bundle has no output.bias");
    mkdir(pathf(dir, "out"), 0755);
    struct sr_bundle_add_params p = {.items = pathf(dir, "bad.tsv"), .out = pathf(dir, "out")};
    struct sr_bundle_add_result res;
    struct sr_error err = {0};
    assert_int_not_equal(sr_bundle_add_items(pathf(dir, "src"), &p, &res, &err), SR_OK);
    assert_non_null(strstr(err.msg, "already exists"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_recommends_new_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_rebuilds_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
