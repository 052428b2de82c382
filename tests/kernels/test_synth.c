/* test_synth.c — sr_bundle_synthetic builds bundles that read like loaded ones: every §3 tensor
 * with its shape, finite values, vocabulary "i<index>" both ways, same seed -> same weights,
 * bad shapes refused with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sr_kernels.h"

static const struct sr_synth_params gpt2_p = {.arch = SR_ARCH_GPT2, .d_model = 16, .n_layers = 3,
                                              .n_heads = 4, .d_ff = 40, .max_len = 7,
                                              .n_items = 1000, .output_bias = true, .seed = 9};
static const struct sr_synth_params gru_p = {.arch = SR_ARCH_GRU4REC, .d_model = 12, .n_layers = 2,
                                             .max_len = 5, .n_items = 300, .seed = 9};

static void expect_tensor(const sr_bundle_t *b, const char *name, int ndim, int64_t d0, int64_t d1)
{
    int nd = -1;
    int64_t shape[4] = {0};
    const float *t = sr_bundle_tensor(b, name, &nd, shape);
    if (!t)
        fail_msg("tensor %s missing", name);
    assert_int_equal(nd, ndim);
    assert_int_equal(shape[0], d0);
    if (ndim > 1)
        assert_int_equal(shape[1], d1);
    int64_t n = ndim > 1 ? d0 * d1 : d0;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(t[i]) || fabsf(t[i]) > 2.0f)
            fail_msg("%s[%lld] = %g", name, (long long)i, t[i]);
}

static void test_gpt2_shapes(void **state)
{
    (void)state;
    sr_bundle_t *b = NULL;
    struct sr_error err = {0};
    assert_int_equal(sr_bundle_synthetic(&gpt2_p, &b, &err), SR_OK);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    assert_int_equal(in->arch, SR_ARCH_GPT2);
    assert_string_equal(in->arch_name, "gpt2");
    assert_int_equal(in->n_items, 1000);
    assert_int_equal(in->first_index, 2);
    assert_int_equal(in->oov_index, 1);
    assert_int_equal(in->activation, SR_ACT_GELU_TANH);
    assert_true(in->has_output_bias);
    const int64_t d = 16, ff = 40;
    expect_tensor(b, "wte.weight", 2, 1000, d);
    expect_tensor(b, "wpe.weight", 2, 7, d);
    char n[64];
    int64_t params = 1000 * d + 7 * d + 2 * d + 1000;
    for (int i = 0; i < 3; i++) {
#define T(suffix, nd, a, c)                                                                     \
    do {                                                                                    \
        snprintf(n, sizeof n, "h.%d.%s", i, suffix);                                        \
        expect_tensor(b, n, nd, a, c);                                                      \
        params += (nd) > 1 ? (int64_t)(a) * (c) : (a);                                      \
    } while (0)
        T("ln_1.weight", 1, d, 0);
        T("ln_1.bias", 1, d, 0);
        T("attn.c_attn.weight", 2, d, 3 * d);
        T("attn.c_attn.bias", 1, 3 * d, 0);
        T("attn.c_proj.weight", 2, d, d);
        T("attn.c_proj.bias", 1, d, 0);
        T("ln_2.weight", 1, d, 0);
        T("ln_2.bias", 1, d, 0);
        T("mlp.c_fc.weight", 2, d, ff);
        T("mlp.c_fc.bias", 1, ff, 0);
        T("mlp.c_proj.weight", 2, ff, d);
        T("mlp.c_proj.bias", 1, d, 0);
#undef T
    }
    expect_tensor(b, "ln_f.weight", 1, d, 0);
    expect_tensor(b, "ln_f.bias", 1, d, 0);
    expect_tensor(b, "output.bias", 1, 1000, 0);
    assert_int_equal(in->n_params, params);
    assert_null(sr_bundle_tensor(b, "h.3.ln_1.weight", NULL, NULL));
    sr_bundle_unref(b);
}

static void test_gru_shapes(void **state)
{
    (void)state;
    sr_bundle_t *b = NULL;
    struct sr_error err = {0};
    assert_int_equal(sr_bundle_synthetic(&gru_p, &b, &err), SR_OK);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    assert_int_equal(in->arch, SR_ARCH_GRU4REC);
    assert_false(in->has_output_bias);
    expect_tensor(b, "item_embedding.weight", 2, 300, 12);
    expect_tensor(b, "gru.weight_ih_l1", 2, 36, 12);
    expect_tensor(b, "gru.weight_hh_l1", 2, 36, 12);
    expect_tensor(b, "gru.bias_ih_l1", 1, 36, 0);
    expect_tensor(b, "gru.bias_hh_l0", 1, 36, 0);
    assert_null(sr_bundle_tensor(b, "output.bias", NULL, NULL));
    assert_null(sr_bundle_tensor(b, "wte.weight", NULL, NULL));
    sr_bundle_unref(b);
}

static void test_vocab(void **state)
{
    (void)state;
    sr_bundle_t *b = NULL;
    struct sr_error err = {0};
    assert_int_equal(sr_bundle_synthetic(&gpt2_p, &b, &err), SR_OK);
    char id[32];
    for (int32_t j = 2; j < 1000; j++) {
        int len = snprintf(id, sizeof id, "i%d", (int)j);
        assert_int_equal(sr_bundle_item_index(b, id, (size_t)len), j);
        assert_int_equal(sr_bundle_item_index_by_key(b, sr_hash64(id, (size_t)len)), j);
        size_t got = 0;
        const char *s = sr_bundle_item_id(b, j, &got);
        assert_non_null(s);
        assert_int_equal(got, (size_t)len);
        assert_memory_equal(s, id, (size_t)len);
    }
    assert_int_equal(sr_bundle_item_index(b, "i1000", 5), 1);
    assert_int_equal(sr_bundle_item_index(b, "i1", 2), 1);
    assert_int_equal(sr_bundle_item_index(b, "x5", 2), 1);
    assert_null(sr_bundle_item_id(b, 0, NULL));
    assert_null(sr_bundle_item_id(b, 1, NULL));
    assert_int_equal(sr_bundle_attr_column(b, "available"), -1);
    sr_bundle_unref(b);
}

static void test_deterministic(void **state)
{
    (void)state;
    sr_bundle_t *a = NULL, *b = NULL, *c = NULL;
    struct sr_error err = {0};
    struct sr_synth_params p = gru_p;
    assert_int_equal(sr_bundle_synthetic(&p, &a, &err), SR_OK);
    assert_int_equal(sr_bundle_synthetic(&p, &b, &err), SR_OK);
    p.seed = 10;
    assert_int_equal(sr_bundle_synthetic(&p, &c, &err), SR_OK);
    const float *ta = sr_bundle_tensor(a, "gru.weight_hh_l1", NULL, NULL);
    const float *tb = sr_bundle_tensor(b, "gru.weight_hh_l1", NULL, NULL);
    const float *tc = sr_bundle_tensor(c, "gru.weight_hh_l1", NULL, NULL);
    assert_memory_equal(ta, tb, 36 * 12 * sizeof(float));
    assert_memory_not_equal(ta, tc, 36 * 12 * sizeof(float));
    sr_bundle_t *r = sr_bundle_ref(a);
    assert_ptr_equal(r, a);
    sr_bundle_unref(r);
    sr_bundle_unref(a);
    sr_bundle_unref(b);
    sr_bundle_unref(c);
}

static void test_refusals(void **state)
{
    (void)state;
    sr_bundle_t *b = (sr_bundle_t *)&b; /* must be reset to NULL */
    struct sr_error err = {0};
    struct sr_synth_params p = gpt2_p;
    p.n_heads = 3;
    assert_int_equal(sr_bundle_synthetic(&p, &b, &err), SR_EINVAL);
    assert_null(b);
    assert_non_null(strstr(err.msg, "n_heads 3 does not divide d_model 16"));
    p = gpt2_p;
    p.n_items = 2;
    assert_int_equal(sr_bundle_synthetic(&p, &b, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "n_items"));
    p = gru_p;
    p.d_model = 0;
    assert_int_equal(sr_bundle_synthetic(&p, &b, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "d_model"));
    p = gru_p;
    p.arch = (sr_arch_t)7;
    assert_int_equal(sr_bundle_synthetic(&p, &b, &err), SR_EINVAL);
    assert_int_equal(sr_bundle_synthetic(NULL, &b, &err), SR_EINVAL);
    assert_int_equal(sr_bundle_synthetic(&gru_p, NULL, &err), SR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_shapes),   cmocka_unit_test(test_gru_shapes),
        cmocka_unit_test(test_vocab),         cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
