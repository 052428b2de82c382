/* test_incremental.c — incremental encoding (DESIGN §3.1): sr_model_encode_resume gives the
 * same bytes as sr_model_encode over random sessions that grow event by event in random
 * batches (resumed, fresh and zero-step sessions mixed in one call), through the model's window
 * slide and the session store's; states of another model, of other items or damaged ones are
 * ignored; gpt2 keeps no state but its encode cache gives the same bytes as no cache, and
 * recommend the same items and scores (1 to 3 layers, 1 to 5 heads, with and without
 * output.bias; sessions growing by 1..n items, repeated, restarted, sliding in the store's and
 * the model's window; a cache small enough to evict). Runs on the cpu backend with 1 and 2
 * threads and on unit widths that take every step kernel (16/8/4-wide and scalar tails). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sr_kernels.h"

static uint64_t rng(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static sr_model_t *make_model(const struct sr_synth_params *p, int threads)
{
    struct sr_error err = {0};
    sr_bundle_t *b = NULL;
    if (sr_bundle_synthetic(p, &b, &err))
        fail_msg("synthetic: %s", err.msg);
    sr_backend_t *be = NULL;
    struct sr_backend_params bp = {.device = SR_DEVICE_CPU, .threads = threads};
    if (sr_backend_new(&bp, &be, &err))
        fail_msg("backend: %s", err.msg);
    sr_model_t *m = NULL;
    if (sr_model_new(b, be, &m, &err))
        fail_msg("model: %s", err.msg);
    sr_bundle_unref(b);
    sr_backend_unref(be);
    return m;
}

#define NS 24    /* sessions */
#define CAP 64   /* items a session can reach */

struct sess {
    int32_t items[CAP];
    int len;
    uint8_t *state; /* the last state kept, or NULL */
};

/* One model, NS sessions, `rounds` batches: each picks a random subset, appends 0..3 items to
 * each (0: a trigger without a new item), keeps at most `keep` items (the session store's
 * max_len) and encodes the batch both ways. */
static void run_equality(const struct sr_synth_params *p, int threads, int keep, int rounds,
                         uint64_t seed)
{
    sr_model_t *m = make_model(p, threads);
    struct sr_error err = {0};
    size_t ssz = sr_model_state_size(m);
    assert_true(ssz == 24 + sizeof(float) * (size_t)p->n_layers * p->d_model);
    struct sess *S = calloc(NS, sizeof *S);
    int32_t *offs = malloc(sizeof(int32_t) * (NS + 1)), *items = malloc(sizeof(int32_t) * NS * CAP);
    int32_t *which = malloc(sizeof(int32_t) * NS);
    float *full = malloc(sizeof(float) * NS * p->d_model), *inc = malloc(sizeof(float) * NS * p->d_model);
    const uint8_t **in = malloc(sizeof(*in) * NS);
    uint32_t *in_len = malloc(sizeof(uint32_t) * NS);
    uint8_t *out = malloc(ssz * NS), *ok = malloc(NS);
    int64_t resumed = 0, slid = 0, zero_steps = 0, store_slides = 0;
    for (int r = 0; r < rounds; r++) {
        int n = 0;
        offs[0] = 0;
        for (int s = 0; s < NS; s++) {
            if (rng(&seed) % 3 == 0)
                continue;
            struct sess *x = &S[s];
            int add = (int)(rng(&seed) % 4);
            if (x->len == 0 && add == 0)
                add = 1;
            zero_steps += add == 0;
            for (int a = 0; a < add; a++) {
                if (x->len == keep) { /* the store slides */
                    memmove(x->items, x->items + 1, sizeof(int32_t) * (keep - 1));
                    x->len--;
                    store_slides++;
                }
                /* small alphabet: prefixes repeat across sessions; index 1 = oov */
                x->items[x->len++] = 1 + (int32_t)(rng(&seed) % 40);
            }
            memcpy(items + offs[n], x->items, sizeof(int32_t) * x->len);
            offs[n + 1] = offs[n] + x->len;
            in[n] = x->state;
            in_len[n] = x->state ? (uint32_t)ssz : 0;
            which[n++] = s;
        }
        if (!n)
            continue;
        struct sr_session_batch sb = {.n = n, .offsets = offs, .items = items};
        assert_int_equal(sr_model_encode(m, &sb, full, &err), SR_OK);
        struct sr_encode_states st = {.in = in, .in_len = in_len, .out = out, .out_ok = ok};
        if (sr_model_encode_resume(m, &sb, &st, inc, &err))
            fail_msg("resume: %s", err.msg);
        assert_memory_equal(full, inc, sizeof(float) * (size_t)n * p->d_model);
        resumed += st.resumed;
        for (int i = 0; i < n; i++) {
            struct sess *x = &S[which[i]];
            int len = offs[i + 1] - offs[i];
            assert_int_equal(ok[i], len <= p->max_len);
            slid += !ok[i];
            if (ok[i]) {
                if (!x->state)
                    x->state = malloc(ssz);
                memcpy(x->state, out + (size_t)i * ssz, ssz);
            } else {
                free(x->state);
                x->state = NULL;
            }
        }
    }
    /* the test must exercise what it claims */
    assert_true(resumed > rounds);
    assert_true(keep > p->max_len ? slid > 0 : store_slides > 0);
    assert_true(zero_steps > 0);
    for (int s = 0; s < NS; s++)
        free(S[s].state);
    free(S), free(offs), free(items), free(which), free(full), free(inc), free(in), free(in_len);
    free(out), free(ok);
    sr_model_unref(m);
}

static struct sr_synth_params gru(int d, int layers, int max_len, uint64_t seed)
{
    return (struct sr_synth_params){.arch = SR_ARCH_GRU4REC, .d_model = d, .n_layers = layers,
                                    .max_len = max_len, .n_items = 60, .seed = seed};
}

static void test_gru_equal_random(void **u)
{
    (void)u;
    int widths[] = {64, 12, 19, 3};
    for (int i = 0; i < 4; i++)
        for (int th = 1; th <= 2; th++) {
            struct sr_synth_params p = gru(widths[i], i % 2 ? 1 : 2, 10, 5 + (uint64_t)i);
            run_equality(&p, th, 30, 40, 77 + (uint64_t)(i * 2 + th)); /* model window slides */
            run_equality(&p, th, 6, 40, 91 + (uint64_t)(i * 2 + th));  /* store window slides */
        }
}

/* States of another model or of other items, and damaged ones, are never resumed. */
static void test_gru_state_mismatch(void **u)
{
    (void)u;
    struct sr_synth_params pa = gru(16, 2, 8, 1), pb = gru(16, 2, 8, 2);
    sr_model_t *a = make_model(&pa, 2), *b = make_model(&pb, 2);
    struct sr_error err = {0};
    size_t ssz = sr_model_state_size(a);
    assert_int_equal(ssz, sr_model_state_size(b));
    int32_t items[5] = {3, 4, 5, 6, 7}, offs[2] = {0, 4};
    struct sr_session_batch s4 = {.n = 1, .offsets = offs, .items = items};
    uint8_t st4[512], out[512], ok;
    float va[16], vb[16], vf[16];
    struct sr_encode_states st = {.out = st4, .out_ok = &ok};
    assert_int_equal(sr_model_encode_resume(a, &s4, &st, va, &err), SR_OK);
    assert_int_equal(st.resumed, 0);
    assert_int_equal(st.steps, 4);
    assert_int_equal(ok, 1);
    offs[1] = 5;
    const uint8_t *in[1] = {st4};
    uint32_t in_len[1] = {(uint32_t)ssz};
    /* the same model resumes: one step */
    struct sr_encode_states r = {.in = in, .in_len = in_len, .out = out, .out_ok = &ok};
    assert_int_equal(sr_model_encode_resume(a, &s4, &r, va, &err), SR_OK);
    assert_int_equal(r.resumed, 1);
    assert_int_equal(r.steps, 1);
    assert_int_equal(sr_model_encode(a, &s4, vf, &err), SR_OK);
    assert_memory_equal(va, vf, sizeof va);
    /* another model (same shape, other weights) recomputes */
    assert_int_equal(sr_model_encode_resume(b, &s4, &r, vb, &err), SR_OK);
    assert_int_equal(r.resumed, 0);
    assert_int_equal(r.steps, 5);
    assert_int_equal(sr_model_encode(b, &s4, vf, &err), SR_OK);
    assert_memory_equal(vb, vf, sizeof vb);
    /* other items before the new one (a session restarted after its TTL, say) */
    items[1] = 9;
    assert_int_equal(sr_model_encode_resume(a, &s4, &r, va, &err), SR_OK);
    assert_int_equal(r.resumed, 0);
    assert_int_equal(sr_model_encode(a, &s4, vf, &err), SR_OK);
    assert_memory_equal(va, vf, sizeof va);
    items[1] = 4;
    /* damaged: wrong length, wrong magic, a flipped bit of the identity */
    in_len[0] = (uint32_t)ssz - 1;
    assert_int_equal(sr_model_encode_resume(a, &s4, &r, va, &err), SR_OK);
    assert_int_equal(r.resumed, 0);
    in_len[0] = (uint32_t)ssz;
    uint8_t bad[512];
    memcpy(bad, st4, ssz);
    bad[0] ^= 1;
    in[0] = bad;
    assert_int_equal(sr_model_encode_resume(a, &s4, &r, va, &err), SR_OK);
    assert_int_equal(r.resumed, 0);
    memcpy(bad, st4, ssz);
    bad[9] ^= 0x10;
    assert_int_equal(sr_model_encode_resume(a, &s4, &r, va, &err), SR_OK);
    assert_int_equal(r.resumed, 0);
    /* a state longer than the session (p > len) */
    in[0] = st4;
    offs[1] = 3;
    assert_int_equal(sr_model_encode_resume(a, &s4, &r, va, &err), SR_OK);
    assert_int_equal(r.resumed, 0);
    assert_int_equal(sr_model_encode(a, &s4, vf, &err), SR_OK);
    assert_memory_equal(va, vf, sizeof(float) * 16);
    sr_model_unref(a);
    sr_model_unref(b);
}

/* gpt2 through its encode cache vs without, byte for byte (memcmp of the session vectors and
 * of recommend's indices and scores): NS sessions start with 1..max_add items and grow by
 * 1..max_add per batch they join (one in eight joins with no new item: the same sequence
 * again), start over now and then, and are kept at most `keep` items (the session store's
 * window: keep <= max_len slides it, so the prefix shifts and the cache misses; keep > max_len
 * lets sessions pass max_len, where the model's window slides and they are encoded in full).
 * Identical sessions share batches (a small alphabet). A small cache_bytes evicts all along. */
struct cache_case {
    struct sr_synth_params p;
    int threads, keep, max_add, rounds;
    size_t cache_bytes;
    uint64_t seed;
    bool expect_evictions;
};

static void run_gpt2_cache(const struct cache_case *c)
{
    const struct sr_synth_params *p = &c->p;
    sr_model_t *plain = make_model(p, c->threads), *cached = make_model(p, c->threads);
    struct sr_error err = {0};
    assert_int_equal(sr_model_set_encode_cache(cached, c->cache_bytes, &err), SR_OK);
    uint64_t seed = c->seed;
    int d = p->d_model, K = 5;
    struct sess *S = calloc(NS, sizeof *S);
    int32_t *offs = malloc(sizeof(int32_t) * (NS + 1)), *items = malloc(sizeof(int32_t) * NS * CAP);
    float *full = malloc(sizeof(float) * NS * d), *inc = malloc(sizeof(float) * NS * d);
    int32_t *ia = malloc(sizeof(int32_t) * NS * K), *ib = malloc(sizeof(int32_t) * NS * K);
    float *sa = malloc(sizeof(float) * NS * K), *sb_ = malloc(sizeof(float) * NS * K);
    int64_t past_max = 0, store_slides = 0, restarts = 0, big_steps = 0;
    assert_true(c->keep <= CAP);
    for (int r = 0; r < c->rounds; r++) {
        int n = 0;
        offs[0] = 0;
        for (int s = 0; s < NS; s++) {
            if (rng(&seed) % 3 == 0)
                continue;
            struct sess *x = &S[s];
            if (x->len && rng(&seed) % 16 == 0) {
                x->len = 0; /* the session starts again */
                restarts++;
            }
            int add = 1 + (int)(rng(&seed) % (uint64_t)c->max_add);
            if (x->len && rng(&seed) % 8 == 0)
                add = 0;
            big_steps += add > 1;
            for (int a = 0; a < add; a++) {
                if (x->len == c->keep) { /* the store slides */
                    memmove(x->items, x->items + 1, sizeof(int32_t) * (size_t)(c->keep - 1));
                    x->len--;
                    store_slides++;
                }
                x->items[x->len++] = 2 + (int32_t)(rng(&seed) % 5); /* prefixes repeat */
            }
            past_max += x->len > p->max_len;
            memcpy(items + offs[n], x->items, sizeof(int32_t) * x->len);
            offs[n + 1] = offs[n] + x->len;
            n++;
        }
        if (!n)
            continue;
        struct sr_session_batch sb = {.n = n, .offsets = offs, .items = items};
        assert_int_equal(sr_model_encode(plain, &sb, full, &err), SR_OK);
        if (sr_model_encode(cached, &sb, inc, &err))
            fail_msg("cached encode: %s", err.msg);
        for (int i = 0; i < n; i++)
            if (memcmp(full + (size_t)i * d, inc + (size_t)i * d, sizeof(float) * d))
                fail_msg("round %d session %d (len %d, max_len %d, %d layers, %d heads): cached "
                         "encode differs", r, i, offs[i + 1] - offs[i], p->max_len, p->n_layers,
                         p->n_heads);
        if (r % 4 == 0) { /* encode + top-k (output.bias where the bundle has one) */
            assert_int_equal(sr_model_recommend(plain, &sb, K, ia, sa, &err), SR_OK);
            assert_int_equal(sr_model_recommend(cached, &sb, K, ib, sb_, &err), SR_OK);
            assert_memory_equal(ia, ib, sizeof(int32_t) * (size_t)n * K);
            assert_memory_equal(sa, sb_, sizeof(float) * (size_t)n * K);
        }
    }
    struct sr_encode_cache_stats st;
    sr_model_encode_cache_stats(cached, &st);
    /* the run must exercise what it claims */
    if (st.hits < (uint64_t)c->rounds || !st.misses || st.rows_reused <= st.rows_computed / 8)
        fail_msg("seed %llu: %llu hits, %llu misses, %llu evictions, rows %llu reused %llu "
                 "computed in %d rounds", (unsigned long long)c->seed,
                 (unsigned long long)st.hits, (unsigned long long)st.misses,
                 (unsigned long long)st.evictions, (unsigned long long)st.rows_reused,
                 (unsigned long long)st.rows_computed, c->rounds);
    print_message("gpt2 cache, %d layers %d heads, keep %d, max_len %d: %llu hits, %llu misses, "
                  "%llu evictions, %lld past max_len, %lld store slides\n", p->n_layers,
                  p->n_heads, c->keep, p->max_len, (unsigned long long)st.hits,
                  (unsigned long long)st.misses, (unsigned long long)st.evictions,
                  (long long)past_max, (long long)store_slides);
    assert_true(restarts > 0);
    assert_true(c->max_add == 1 || big_steps > 0);
    assert_true(c->keep > p->max_len ? past_max > 0 : store_slides > 0);
    if (c->expect_evictions) {
        assert_true(st.evictions > 0);
        assert_true(st.bytes <= c->cache_bytes);
    }
    free(S), free(offs), free(items), free(full), free(inc);
    free(ia), free(ib), free(sa), free(sb_);
    sr_model_unref(plain);
    sr_model_unref(cached);
}

static void test_gpt2_cache_equal_random(void **u)
{
    (void)u;
    const size_t big = 64u << 20;
    const struct cache_case cases[] = {
        /* depth 1..3, heads 1..5 (head widths 32, 8, 9, 16, 12: the attention's bodies and
         * tails), gelu_tanh / gelu_erf / relu, with and without output.bias */
        {{.arch = SR_ARCH_GPT2, .d_model = 32, .n_layers = 2, .n_heads = 4, .d_ff = 48,
          .max_len = 12, .n_items = 50, .seed = 4}, 2, 30, 3, 60, big, 5, false},
        {{.arch = SR_ARCH_GPT2, .d_model = 36, .n_layers = 3, .n_heads = 4, .d_ff = 40,
          .max_len = 12, .n_items = 50, .seed = 14, .output_bias = true}, 2, 12, 5, 60, big, 15,
         false},
        {{.arch = SR_ARCH_GPT2, .d_model = 32, .n_layers = 2, .n_heads = 1, .d_ff = 48,
          .max_len = 16, .n_items = 50, .seed = 5}, 1, 40, 2, 60, big, 6, false},
        {{.arch = SR_ARCH_GPT2, .d_model = 24, .n_layers = 1, .n_heads = 2, .d_ff = 40,
          .max_len = 40, .n_items = 30, .seed = 8, .activation = SR_ACT_GELU_ERF}, 2, 60, 8, 40,
         big, 9, false},
        {{.arch = SR_ARCH_GPT2, .d_model = 48, .n_layers = 3, .n_heads = 3, .d_ff = 64,
          .max_len = 30, .n_items = 40, .seed = 21, .activation = SR_ACT_RELU,
          .output_bias = true}, 2, 64, 10, 60, big, 22, false},
        /* a cache of a few entries: evictions all along, store and model windows */
        {{.arch = SR_ARCH_GPT2, .d_model = 32, .n_layers = 2, .n_heads = 4, .d_ff = 48,
          .max_len = 12, .n_items = 50, .seed = 4}, 2, 30, 3, 60, 40000, 7, true},
        {{.arch = SR_ARCH_GPT2, .d_model = 40, .n_layers = 3, .n_heads = 5, .d_ff = 32,
          .max_len = 16, .n_items = 50, .seed = 31, .output_bias = true}, 2, 16, 3, 60, 250000, 32,
         true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_gpt2_cache(&cases[i]);
}

static void test_gpt2_keeps_no_state(void **u)
{
    (void)u;
    struct sr_synth_params p = {.arch = SR_ARCH_GPT2, .d_model = 16, .n_layers = 1, .n_heads = 2,
                                .d_ff = 32, .max_len = 8, .n_items = 50, .seed = 3};
    sr_model_t *m = make_model(&p, 1);
    assert_int_equal(sr_model_state_size(m), 0);
    int32_t items[2] = {3, 4}, offs[2] = {0, 2};
    struct sr_session_batch sb = {.n = 1, .offsets = offs, .items = items};
    uint8_t out[8], ok;
    float v[16];
    struct sr_encode_states st = {.out = out, .out_ok = &ok};
    struct sr_error err = {0};
    assert_int_equal(sr_model_encode_resume(m, &sb, &st, v, &err), SR_EUNSUPPORTED);
    sr_model_unref(m);
    /* and gru4rec keeps no cache */
    struct sr_synth_params g = gru(8, 1, 4, 1);
    m = make_model(&g, 1);
    assert_int_equal(sr_model_set_encode_cache(m, 1 << 20, &err), SR_EUNSUPPORTED);
    assert_int_equal(sr_model_set_encode_cache(m, 0, &err), SR_OK);
    sr_model_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gru_equal_random),
        cmocka_unit_test(test_gru_state_mismatch),
        cmocka_unit_test(test_gpt2_cache_equal_random),
        cmocka_unit_test(test_gpt2_keeps_no_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
