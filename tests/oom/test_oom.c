/* test_oom.c — out-of-memory fault injection over the library paths, SQLite's malloc tests
 * habit (DESIGN §9.1). Each path (config load; bundle load of gpt2 and gru4rec; bundle
 * add-items, which must leave nothing at its output when it fails; models with the gpt2
 * encode cache, gru4rec resumed states and FAISS retrieval; graph build + two batches on the
 * memory and the RocksDB store and with A/B variants; the state store's put/get/stage/commit/
 * apply/foreach/drop/reopen; JSON, Avro and Confluent event decode; the recommendation
 * encoders; Avro container files) is
 * a function that acquires everything it needs, runs, releases everything and folds what it
 * observed into a digest. A clean run counts its allocations K; then for each N of a schedule
 * the Nth allocation fails (once, and "persistently": the Nth and every later one). The path
 * must then return SR_ENOMEM with a message, or succeed with the clean run's digest (the
 * allocation was optional, e.g. a cache entry); it must not crash, and in an ASan build
 * LeakSanitizer checks that nothing leaked (after each path; after every run with
 * SR_OOM_LEAK_EACH=1). The schedule is every N when K <= SR_OOM_FULL (today every K is below
 * 200), else the first and last 200 plus an even stride between, so the test stays fast; the
 * persistent failures are ~50 points per path.
 *
 * Covered: the allocations of sr_core, sr_schemas, sr_state, sr_kernels and sr_ops (linked
 * with ld --wrap, tests/support/failalloc.c). Not covered: RocksDB (C++ new), OpenBLAS, libcurl
 * and libc's internal allocations (stdio buffers, fopen), nor allocations on other threads.
 * Avro C 1.11.1 and Jansson 2.14 crash on some of their own failed allocations, so theirs are
 * not failed unless SR_OOM_FOREIGN=1 (see main). Single-threaded: the test runs on one thread,
 * the cpu backend with device.threads=1. Debugging: SR_OOM_PATH, SR_OOM_N, SR_OOM_TRACE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failalloc.h"
#include "sr_kernels.h"
#ifdef SR_HAVE_FAISS
#include "sr_faiss.h"
#endif
#include "sr_ops.h"
#include "sr_schemas.h"
#include "sr_state.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define SR_OOM_LEAK_CHECK() __lsan_do_recoverable_leak_check()
#else
#define SR_OOM_LEAK_CHECK() 0
#endif

#define SR_OOM_FULL 3000 /* every N up to this K; above it, a schedule (see the top) */
#define SR_OOM_EDGE 200
#define SR_OOM_PERSIST_POINTS 50

/* ---- digest: FNV-1a over what a path observed (no allocation) ----------------------------- */

static void dg(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ c[i]) * 0x100000001b3ull;
}
static void dg_i64(uint64_t *h, int64_t v) { dg(h, &v, sizeof v); }
static void dg_str(uint64_t *h, const char *s, size_t n)
{
    dg_i64(h, s ? (int64_t)n : -1);
    if (s)
        dg(h, s, n);
}

/* A path: returns SR_OK with *digest, or an error with err filled. Must release everything. */
typedef sr_err_t (*oom_path_fn)(void *ctx, uint64_t *digest, struct sr_error *err);

/* Runs fn once unarmed (lazy one-time initialisations happen here), counts a clean run, then
 * fails each scheduled allocation. */
static void oom_run(const char *name, oom_path_fn fn, void *ctx)
{
    /* Debugging: SR_OOM_PATH=substring runs only matching paths, SR_OOM_N=n only that run. */
    const char *only = getenv("SR_OOM_PATH"), *only_n = getenv("SR_OOM_N");
    if (only && !strstr(name, only))
        return;
    struct sr_error err = {0};
    uint64_t clean = 0xcbf29ce484222325ull, d, t0 = sr_now_ns();
    if (fn(ctx, &clean, &err) != SR_OK)
        fail_msg("%s: warm-up run failed: %s", name, err.msg);
    clean = 0xcbf29ce484222325ull;
    sr_failalloc_arm(0, false);
    sr_err_t rc = fn(ctx, &clean, &err);
    long k = sr_failalloc_disarm();
    if (rc != SR_OK)
        fail_msg("%s: clean run failed: %s", name, err.msg);
    if (SR_OOM_LEAK_CHECK())
        fail_msg("%s: the clean run leaked", name);
    assert_true(k > 0);

    /* LeakSanitizer's check stops the world (~0.1 s with RocksDB's and BLAS's threads about):
     * once per path by default, after every run with SR_OOM_LEAK_EACH=1. */
    bool leak_each = getenv("SR_OOM_LEAK_EACH") != NULL;
    long runs = 0, errors = 0, benign = 0;
    long stride = k <= SR_OOM_FULL ? 1 : (k - 2 * SR_OOM_EDGE) / (SR_OOM_FULL - 2 * SR_OOM_EDGE);
    long pstride = (k + SR_OOM_PERSIST_POINTS - 1) / SR_OOM_PERSIST_POINTS;
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1; n <= k; n++) {
            bool edge = n <= SR_OOM_EDGE || n > k - SR_OOM_EDGE;
            if (persist ? (n % pstride != 0 && n != 1 && n != k)
                        : (!edge && (n - SR_OOM_EDGE) % stride != 0))
                continue;
            if (only_n && atol(only_n) != n)
                continue;
            d = 0xcbf29ce484222325ull;
            memset(&err, 0, sizeof err);
            if (getenv("SR_OOM_TRACE")) /* which run crashed: the last line printed */
                fprintf(stderr, "%s: failing allocation %ld%s\n", name, n, persist ? "+" : "");
            sr_failalloc_arm(n, persist);
            rc = fn(ctx, &d, &err);
            sr_failalloc_disarm();
            long failed = sr_failalloc_failed();
            if (getenv("SR_OOM_TRACE"))
                fprintf(stderr, "  -> %s %s\n", sr_err_name(rc), err.msg);
            runs++;
            if (rc == SR_OK) {
                if (d != clean)
                    fail_msg("%s: allocation %ld of %ld failed%s, the path succeeded with a "
                             "different result", name, n, k, persist ? " (and every later)" : "");
                if (failed > 0)
                    benign++;
            } else {
                if (failed == 0)
                    fail_msg("%s: run %ld failed without an injected failure: %s", name, n,
                             err.msg);
                if (rc != SR_ENOMEM || err.msg[0] == 0) /* an operator must see the cause */
                    fail_msg("%s: allocation %ld of %ld failed%s: error %s (%s), expected ENOMEM "
                             "with a message", name, n, k, persist ? " (and every later)" : "",
                             sr_err_name(rc), err.msg);
                errors++;
            }
            if (leak_each && SR_OOM_LEAK_CHECK())
                fail_msg("%s: allocation %ld of %ld failed%s: leak (report above)", name, n, k,
                         persist ? " (and every later)" : "");
        }
    }
    if (SR_OOM_LEAK_CHECK())
        fail_msg("%s: a run leaked (report above; SR_OOM_LEAK_EACH=1 names the run)", name);
    print_message("%s: %ld allocations; %ld runs: %ld errors, %ld succeeded (optional "
                  "allocation); %.2f s\n", name, k, runs, errors, benign,
                  (double)(sr_now_ns() - t0) / 1e9);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

#define BUNDLE_GPT2 SR_TEST_DATA "/gpt2-small"
#define BUNDLE_GRU SR_TEST_DATA "/gru4rec-small"
#define EVENTS SR_TEST_DATA "/gpt2-small.events.jsonl"

/* The first n lines of the golden events (each malloc'd, not counted: read before arming). */
static int read_lines(const char *path, char **lines, int n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    int got = 0;
    size_t cap = 0;
    char *line = NULL;
    ssize_t len;
    while (got < n && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        lines[got++] = strdup(line);
    }
    free(line);
    fclose(f);
    return got;
}

/* RocksDB directories go to tmpfs where there is one: a store is opened hundreds of times and
 * its fsyncs (MANIFEST, CURRENT, OPTIONS at every open) on a busy disk dominate the time. */
static void make_tmpdir(char *buf, size_t n, const char *what)
{
    snprintf(buf, n, "%s/sr_oom_%s_XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             what);
    assert_non_null(mkdtemp(buf));
}

/* ---- path: configuration ------------------------------------------------------------------ */

struct config_ctx {
    char file[64];
};

static int dg_kv(void *opaque, const char *key, const char *value)
{
    dg_str(opaque, key, strlen(key));
    dg_str(opaque, value, strlen(value));
    return 0;
}

static sr_err_t path_config(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct config_ctx *c = vctx;
    char *envp[] = {"STREAMREC_DEVICE=cpu", "STREAMREC_RECS_K=7", "STREAMREC_NOT_A_KEY=1", NULL};
    const char *sets[] = {"log.level=error", "kafka.linger.ms=5", "session.event_types=view,cart"};
    struct sr_config_sources src = {.file = c->file, .envp = envp, .sets = sets, .n_sets = 3};
    sr_config_t *cfg = sr_config_new(), *dup = NULL;
    if (!cfg)
        return sr_error_set(err, SR_ENOMEM, "config: out of memory");
    sr_err_t rc = sr_config_load(cfg, &src, NULL, NULL, err);
    if (rc == SR_OK) {
        dup = sr_config_dup(cfg);
        if (!dup)
            rc = sr_error_set(err, SR_ENOMEM, "config dup: out of memory");
    }
    int64_t k = 0;
    if (rc == SR_OK)
        rc = sr_config_get_int(dup, "recs.k", &k, err);
    if (rc == SR_OK) {
        sr_config_foreach(dup, "", dg_kv, d);
        dg_i64(d, k);
        const char *o = sr_config_origin(dup, "model.bundle");
        dg_str(d, o, o ? strlen(o) : 0);
    }
    sr_config_destroy(dup);
    sr_config_destroy(cfg);
    return rc;
}

static void test_oom_config(void **state)
{
    (void)state;
    struct config_ctx c;
    snprintf(c.file, sizeof c.file, "/tmp/sr_oom_cfg_XXXXXX");
    int fd = mkstemp(c.file);
    assert_true(fd >= 0);
    const char text[] = "# streamrec\nmodel.bundle = " BUNDLE_GPT2 "\nstate.backend: memory\n"
                        "input.topic events\\\n  -in\nkafka.bootstrap.servers=localhost:9092\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    oom_run("config load", path_config, &c);
    unlink(c.file);
}

/* ---- path: bundle load -------------------------------------------------------------------- */

static sr_err_t path_bundle(void *vctx, uint64_t *d, struct sr_error *err)
{
    sr_bundle_t *b = NULL;
    sr_err_t rc = sr_bundle_load(vctx, &b, err);
    if (rc != SR_OK)
        return rc;
    const struct sr_bundle_info *in = sr_bundle_info(b);
    dg_str(d, in->version, strlen(in->version));
    dg_i64(d, in->n_items);
    dg_i64(d, in->n_params);
    int ndim;
    int64_t shape[4];
    const float *e = sr_bundle_tensor(b, "item_embedding.weight", &ndim, shape);
    if (!e)
        e = sr_bundle_tensor(b, "embedding.weight", &ndim, shape);
    if (e)
        dg(d, e, sizeof(float) * (size_t)shape[ndim - 1]);
    for (int32_t i = in->first_index; i < in->n_items; i += 97) {
        size_t len;
        const char *id = sr_bundle_item_id(b, i, &len);
        dg_str(d, id, len);
        dg_i64(d, sr_bundle_item_index(b, id, len));
    }
    sr_bundle_unref(b);
    return SR_OK;
}

static void test_oom_bundle_gpt2(void **state)
{
    (void)state;
    oom_run("bundle load gpt2", path_bundle, BUNDLE_GPT2);
}

static void test_oom_bundle_gru4rec(void **state)
{
    (void)state;
    oom_run("bundle load gru4rec", path_bundle, BUNDLE_GRU);
}

/* ---- path: catalogue update (bundle add-items) ---------------------------------------------- */

struct add_ctx {
    char dir[64]; /* new.tsv, new.safetensors; the path writes out/ (and a temporary beside) */
    char items[96], emb[96], out[96];
};

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void rm_bundle_dir(const char *dir)
{
    static const char *const files[] = {"bundle.json", "items.tsv", "model.safetensors",
                                        "items.faiss"};
    char path[160];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* One new item and one updated; on failure nothing may be left at out, nor a temporary. */
static sr_err_t path_add_items(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct add_ctx *c = vctx;
    struct sr_bundle_add_params p = {.items = c->items, .embeddings = c->emb, .out = c->out};
    struct sr_bundle_add_result res;
    sr_err_t rc = sr_bundle_add_items(BUNDLE_GRU, &p, &res, err);
    if (rc == SR_OK) {
        dg_i64(d, res.added * 1000 + res.updated);
        dg_i64(d, res.n_items);
        dg_str(d, res.version, strlen(res.version));
        char path[160], buf[4096];
        snprintf(path, sizeof path, "%s/items.tsv", c->out);
        FILE *f = fopen(path, "rb"); /* stdio: libc's own allocations are not counted */
        for (size_t n; f && (n = fread(buf, 1, sizeof buf, f)) > 0;)
            dg(d, buf, n);
        if (f)
            fclose(f);
        rm_bundle_dir(c->out);
    } else if (access(c->out, F_OK) == 0 || dir_entries(c->dir) != 2) {
        fail_msg("add-items failed (%s) but left %s or a temporary in %s", err->msg, c->out,
                 c->dir);
    }
    return rc;
}

static void test_oom_add_items(void **state)
{
    (void)state;
    struct add_ctx c;
    make_tmpdir(c.dir, sizeof c.dir, "add");
    snprintf(c.items, sizeof c.items, "%s/new.tsv", c.dir);
    snprintf(c.emb, sizeof c.emb, "%s/new.safetensors", c.dir);
    snprintf(c.out, sizeof c.out, "%s/out", c.dir);
    sr_bundle_t *b = NULL;
    struct sr_error err;
    assert_int_equal(sr_bundle_load(BUNDLE_GRU, &b, &err), SR_OK);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    size_t dm = (size_t)in->d_model, len;
    const char *upd = sr_bundle_item_id(b, in->first_index + 5, &len);
    FILE *f = fopen(c.items, "w");
    assert_non_null(f);
    fprintf(f, "item_id\tcategory\tavailable\nnew-1\tc9\t1\n%.*s\tc3\t0\n", (int)len, upd);
    fclose(f);
    /* safetensors: `embedding` [2, d] (+ `bias` [2] when the bundle has an output bias) */
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "{\"embedding\":{\"dtype\":\"F32\",\"shape\":[2,%zu],\"data_offsets\":"
                      "[0,%zu]}%s", dm, 8 * dm, in->has_output_bias ? "" : "}");
    if (in->has_output_bias)
        hl += snprintf(head + hl, sizeof head - (size_t)hl, ",\"bias\":{\"dtype\":\"F32\","
                       "\"shape\":[2],\"data_offsets\":[%zu,%zu]}}", 8 * dm, 8 * dm + 8);
    f = fopen(c.emb, "wb");
    assert_non_null(f);
    uint64_t hlen = (uint64_t)hl; /* little-endian on every platform we build for */
    fwrite(&hlen, 8, 1, f);
    fwrite(head, 1, (size_t)hl, f);
    for (size_t i = 0; i < 2 * dm + (in->has_output_bias ? 2 : 0); i++) {
        float v = (float)(i % 7) * 0.125f - 0.25f;
        fwrite(&v, sizeof v, 1, f);
    }
    fclose(f);
    sr_bundle_unref(b);
    oom_run("bundle add-items gru4rec", path_add_items, &c);
    unlink(c.items);
    unlink(c.emb);
    rmdir(c.dir);
}

/* ---- path: models (backend, upload, encode, top-k, the encode cache, resumed states) -------- */

struct model_ctx {
    sr_bundle_t *bundle; /* loaded or made outside the armed runs */
    uint64_t reused;     /* cache hits or resumed sessions of the last successful run */
};

/* Three sessions encoded, recommended, then grown by two items and encoded again: with the
 * gpt2 encode cache the second pass reuses rows; gru4rec resumes from states. */
static sr_err_t path_model(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct model_ctx *c = vctx;
    const struct sr_bundle_info *in = sr_bundle_info(c->bundle);
    struct sr_backend_params bp = {.device = SR_DEVICE_CPU, .threads = 1};
    sr_backend_t *be = NULL;
    sr_model_t *m = NULL;
    float *vecs = NULL;
    uint8_t *states = NULL;
    sr_err_t rc = sr_backend_new(&bp, &be, err);
    rc = rc ? rc : sr_model_new(c->bundle, be, &m, err);
    if (rc == SR_OK && in->arch == SR_ARCH_GPT2)
        rc = sr_model_set_encode_cache(m, 1 << 20, err);
    size_t ssz = rc == SR_OK ? sr_model_state_size(m) : 0;
    enum { B = 3, K = 5 };
    int32_t items[B * 8], offsets[B + 1], excl_off[B + 1] = {0, 1, 1, 2}, excl[2];
    int32_t idx[B * K];
    float score[B * K];
    if (rc == SR_OK) {
        vecs = malloc(sizeof *vecs * B * (size_t)in->d_model);
        states = ssz ? malloc(ssz * B * 2) : NULL; /* this pass's states, then the last's */
        if (!vecs || (ssz && !states))
            rc = sr_error_set(err, SR_ENOMEM, "test: out of memory");
    }
    uint64_t reused = 0;
    const uint8_t *st_in[B] = {0};
    uint32_t st_len[B] = {0};
    uint8_t st_ok[B] = {0};
    for (int pass = 0; rc == SR_OK && pass < 2; pass++) {
        int n = 0;
        for (int b = 0; b < B; b++) {
            offsets[b] = n;
            for (int j = 0; j < 3 + b + 2 * pass; j++)
                items[n++] = in->first_index + (b * 7 + j * 3) % (in->n_items - in->first_index);
        }
        offsets[B] = n;
        excl[0] = items[0];
        excl[1] = items[offsets[2]];
        struct sr_session_batch sb = {.n = B, .offsets = offsets, .items = items,
                                      .excl_offsets = excl_off, .excl_items = excl};
        if (ssz) {
            struct sr_encode_states es = {.in = pass ? st_in : NULL, .in_len = st_len,
                                          .out = states, .out_ok = st_ok};
            rc = sr_model_encode_resume(m, &sb, &es, vecs, err);
            if (rc == SR_OK && pass == 0) /* the next pass resumes from a copy */
                memcpy(states + ssz * B, states, ssz * B);
            for (int b = 0; rc == SR_OK && b < B; b++) {
                st_in[b] = st_ok[b] ? states + ssz * (B + b) : NULL;
                st_len[b] = (uint32_t)ssz;
            }
            if (rc == SR_OK)
                reused = (uint64_t)es.resumed;
        } else {
            rc = sr_model_encode(m, &sb, vecs, err);
        }
        if (rc == SR_OK)
            dg(d, vecs, sizeof *vecs * B * (size_t)in->d_model);
        rc = rc ? rc : sr_model_topk(m, B, vecs, excl_off, excl, K, idx, score, err);
        if (rc == SR_OK) {
            dg(d, idx, sizeof idx);
            dg(d, score, sizeof score);
        }
        rc = rc ? rc : sr_model_recommend(m, &sb, K, idx, score, err);
        if (rc == SR_OK) {
            dg(d, idx, sizeof idx);
            dg(d, score, sizeof score);
        }
    }
    if (rc == SR_OK && !ssz) {
        struct sr_encode_cache_stats cs;
        sr_model_encode_cache_stats(m, &cs);
        reused = cs.hits;
    }
    if (rc == SR_OK)
        c->reused = reused;
    free(states);
    free(vecs);
    sr_model_unref(m);
    sr_backend_unref(be);
    return rc;
}

static void test_oom_model_gpt2(void **state)
{
    (void)state;
    /* two layers: the cache's later blocks read earlier blocks' cached rows (DESIGN §3.1) */
    struct sr_synth_params p = {.arch = SR_ARCH_GPT2, .d_model = 16, .n_layers = 2, .n_heads = 2,
                                .d_ff = 32, .max_len = 12, .n_items = 300, .output_bias = true,
                                .seed = 7};
    struct model_ctx c = {0};
    struct sr_error err;
    assert_int_equal(sr_bundle_synthetic(&p, &c.bundle, &err), SR_OK);
    oom_run("model gpt2 (encode cache)", path_model, &c);
    assert_true(c.reused > 0 || getenv("SR_OOM_PATH")); /* the clean runs reused work */
    sr_bundle_unref(c.bundle);
}

static void test_oom_model_gru4rec(void **state)
{
    (void)state;
    struct model_ctx c = {0};
    struct sr_error err;
    assert_int_equal(sr_bundle_load(BUNDLE_GRU, &c.bundle, &err), SR_OK);
    oom_run("model gru4rec (resumed states)", path_model, &c);
    assert_true(c.reused > 0 || getenv("SR_OOM_PATH")); /* the clean runs reused work */
    sr_bundle_unref(c.bundle);
}

#ifdef SR_HAVE_FAISS
/* FAISS retrieval: an index built inside the run, an item filter, exclusions (FAISS's own C++
 * allocations are not counted; the wrapper's and the model's are). */
static sr_err_t path_model_faiss(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct model_ctx *c = vctx;
    const struct sr_bundle_info *in = sr_bundle_info(c->bundle);
    struct sr_backend_params bp = {.device = SR_DEVICE_CPU, .threads = 1};
    sr_backend_t *be = NULL;
    sr_model_t *m = NULL;
    struct sr_faiss *ix = NULL;
    uint8_t *allowed = NULL;
    enum { B = 2, K = 6 };
    int32_t items[] = {5, 9, 11, 40, 41}, offsets[B + 1] = {0, 3, 5}, excl_off[B + 1] = {0, 1, 1};
    int32_t excl[] = {12}, idx[B * K];
    float score[B * K];
    sr_err_t rc = sr_bundle_index_build(c->bundle, "HNSW16", 0, 1, &ix, err);
    rc = rc ? rc : sr_backend_new(&bp, &be, err);
    rc = rc ? rc : sr_model_new(c->bundle, be, &m, err);
    struct sr_retrieval_params rp = {.mode = SR_RETRIEVAL_FAISS, .ef_search = 32, .index = ix};
    rc = rc ? rc : sr_model_set_retrieval(m, &rp, err);
    if (rc == SR_OK && !(allowed = malloc((size_t)in->n_items)))
        rc = sr_error_set(err, SR_ENOMEM, "test: out of memory");
    if (rc == SR_OK) {
        for (int32_t j = 0; j < in->n_items; j++)
            allowed[j] = j % 3 != 0;
        rc = sr_model_set_item_filter(m, allowed, err);
    }
    struct sr_session_batch sb = {.n = B, .offsets = offsets, .items = items,
                                  .excl_offsets = excl_off, .excl_items = excl};
    rc = rc ? rc : sr_model_recommend(m, &sb, K, idx, score, err);
    if (rc == SR_OK) {
        dg(d, idx, sizeof idx);
        dg(d, score, sizeof score);
    }
    free(allowed);
    sr_model_unref(m); /* before the index it borrows */
    sr_backend_unref(be);
    sr_faiss_destroy(ix);
    return rc;
}

static void test_oom_model_faiss(void **state)
{
    (void)state;
    struct sr_synth_params p = {.arch = SR_ARCH_GPT2, .d_model = 16, .n_layers = 1, .n_heads = 2,
                                .d_ff = 32, .max_len = 12, .n_items = 300, .output_bias = true,
                                .seed = 7};
    struct model_ctx c = {0};
    struct sr_error err;
    assert_int_equal(sr_bundle_synthetic(&p, &c.bundle, &err), SR_OK);
    oom_run("model gpt2 FAISS retrieval", path_model_faiss, &c);
    sr_bundle_unref(c.bundle);
}
#else
static void test_oom_model_faiss(void **state)
{
    (void)state;
    skip(); /* a build without FAISS */
}
#endif

/* ---- path: graph build + two batches -------------------------------------------------------- */

#define GRAPH_EVENTS 32

struct graph_ctx {
    sr_config_t *cfg;
    sr_bundle_t *bundle; /* loaded outside the armed runs: bundle load has its own path */
    char dir[64];        /* rocksdb: the store's directory */
    sr_state_t *store;   /* rocksdb: one store open across the runs (opening one is the state
                          * path's), each run on a partition of its own: an empty state */
    int32_t partition;
    char *lines[GRAPH_EVENTS];
    int n_lines;
    uint64_t recs; /* recommendations of the last successful run */
    bool eval;     /* the evaluator (not with model.variants) */
};

static sr_err_t dg_emit(void *opaque, const struct sr_batch *b, int32_t row,
                        const struct sr_rec *rec, struct sr_error *err)
{
    (void)b;
    (void)err;
    uint64_t *d = opaque;
    dg_i64(d, row);
    dg_str(d, rec->session_id, rec->session_id_len);
    for (size_t i = 0; i < rec->n_items; i++) {
        dg_str(d, rec->items[i].item_id, rec->items[i].item_id_len);
        dg(d, &rec->items[i].score, sizeof rec->items[i].score);
    }
    return SR_OK;
}

static sr_err_t dg_dead_letter(void *opaque, const struct sr_batch *b, int32_t row,
                               const char *reason, struct sr_error *err)
{
    (void)b;
    (void)err;
    dg_i64(opaque, row);
    dg_str(opaque, reason, strlen(reason));
    return SR_OK;
}

static sr_err_t path_graph(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct graph_ctx *c = vctx;
    struct sr_stats stats = {0};
    struct sr_sink sink = {.emit = dg_emit, .dead_letter = dg_dead_letter, .opaque = d};
    sr_state_t *st = c->store;
    sr_graph_t *g = NULL;
    sr_arena_t *arena = NULL;
    int32_t part = st ? ++c->partition : 0;
    sr_err_t rc = st ? SR_OK : sr_session_store_open(c->cfg, c->bundle, "oom test", false, &st,
                                                     err);
    if (rc != SR_OK)
        goto out;
    struct sr_graph_params p = {.cfg = c->cfg, .runtime = "offline", .stats = &stats,
                                .sink = &sink, .source_topic = "events", .eval = c->eval,
                                .state = st, .bundle = c->bundle};
    rc = sr_graph_new(&p, &g, err);
    if (rc != SR_OK)
        goto out;
    arena = sr_arena_new(64 << 10);
    if (!arena) {
        rc = sr_error_set(err, SR_ENOMEM, "arena: out of memory");
        goto out;
    }
    for (int at = 0; at < c->n_lines && rc == SR_OK; at += GRAPH_EVENTS / 2) {
        sr_arena_reset(arena);
        int n = c->n_lines - at < GRAPH_EVENTS / 2 ? c->n_lines - at : GRAPH_EVENTS / 2;
        struct sr_batch b;
        struct sr_source_cols src;
        rc = sr_batch_init_source(&b, arena, n, &src, err);
        if (rc != SR_OK)
            break;
        for (int i = 0; i < n; i++) {
            src.raw[i] = c->lines[at + i];
            src.raw_len[i] = (uint32_t)strlen(c->lines[at + i]);
            src.partition[i] = part;
            src.offset[i] = at + i;
            src.timestamp[i] = 1763856000000 + at + i;
        }
        rc = sr_graph_run(g, &b, err);
        if (rc == SR_OK && b.has_state)
            rc = sr_state_commit(st, b.state_id, err);
    }
    if (rc == SR_OK) {
        struct sr_eval_report r;
        sr_graph_eval_report(g, &r);
        dg_i64(d, (int64_t)r.evaluated);
        dg_i64(d, (int64_t)r.hits);
        dg_i64(d, (int64_t)stats.recommendations);
        dg_i64(d, (int64_t)stats.invalid);
        dg_i64(d, sr_state_applied_offset(st, part));
        c->recs = stats.recommendations;
    }
out:
    sr_arena_destroy(arena);
    sr_graph_destroy(g);
    if (st != c->store)
        sr_state_close(st);
    else if (rc != SR_OK)
        sr_state_discard(st, 0); /* what a failed batch staged, as a runtime does */
    return rc;
}

static void graph_case(const char *name, const char *bundle, const char *backend,
                       const char *const *kv)
{
    struct graph_ctx c = {0};
    struct sr_error err = {0};
    c.cfg = sr_config_new();
    assert_non_null(c.cfg);
    const char *base[] = {"model.bundle", bundle, "state.backend", backend, "device", "cpu",
                          "device.threads", "1", "log.level", "error", NULL};
    for (int i = 0; base[i]; i += 2)
        assert_int_equal(sr_config_set(c.cfg, base[i], base[i + 1], &err), SR_OK);
    c.eval = true;
    for (int i = 0; kv && kv[i]; i += 2) {
        assert_int_equal(sr_config_set(c.cfg, kv[i], kv[i + 1], &err), SR_OK);
        c.eval &= strcmp(kv[i], "model.variants") != 0;
    }
    if (strcmp(backend, "rocksdb") == 0) {
        make_tmpdir(c.dir, sizeof c.dir, "graph");
        assert_int_equal(sr_config_set(c.cfg, "state.dir", c.dir, &err), SR_OK);
    }
    assert_int_equal(sr_bundle_load(bundle, &c.bundle, &err), SR_OK);
    if (c.dir[0])
        assert_int_equal(sr_session_store_open(c.cfg, c.bundle, "oom test", false, &c.store,
                                               &err), SR_OK);
    c.n_lines = read_lines(EVENTS, c.lines, GRAPH_EVENTS);
    c.lines[3][0] = '['; /* one malformed record: a dead letter */
    oom_run(name, path_graph, &c);
    assert_true(c.recs > 0 || getenv("SR_OOM_PATH")); /* the clean runs recommended */
    for (int i = 0; i < c.n_lines; i++)
        free(c.lines[i]);
    sr_state_close(c.store);
    sr_bundle_unref(c.bundle);
    sr_config_destroy(c.cfg);
    if (c.dir[0]) {
        assert_int_equal(sr_state_destroy_db(c.dir, &err), SR_OK);
        rmdir(c.dir);
    }
}

static void test_oom_graph_memory(void **state)
{
    (void)state;
    const char *kv[] = {"graph.ops", "r", "graph.op.r.type", "drop_items",
                        "graph.op.r.attribute", "category", "graph.op.r.values", "c3", NULL};
    graph_case("graph gpt2 memory", BUNDLE_GPT2, "memory", kv);
}

static void test_oom_graph_variants(void **state)
{
    (void)state;
    /* A/B (DESIGN §4.5): b loads its own bundle inside the run, each arm its sub-graph */
    const char *kv[] = {"model.variants", "a,b", "model.variant.a.share", "50",
                        "model.variant.b.bundle", BUNDLE_GPT2, NULL};
    graph_case("graph gpt2 A/B variants", BUNDLE_GPT2, "memory", kv);
}

static void test_oom_graph_rocksdb(void **state)
{
    (void)state;
    graph_case("graph gru4rec rocksdb", BUNDLE_GRU, "rocksdb", NULL);
}

/* ---- path: the session store ---------------------------------------------------------------- */

struct state_ctx {
    const char *backend;
    char dir[64];
};

static int dg_visit(void *opaque, const struct sr_state_key *key, const struct sr_session *s)
{
    dg_str(opaque, key->id, key->len);
    dg(opaque, s->items, sizeof *s->items * s->len);
    dg_i64(opaque, s->last_ts);
    dg_i64(opaque, s->aux_len);
    return 0;
}

static int dg_change(void *opaque, const struct sr_state_key *key, const struct sr_session *s,
                     int64_t applied)
{
    dg_i64(opaque, applied);
    return s ? dg_visit(opaque, key, s) : (dg_str(opaque, key->id, key->len), 0);
}

static void dg_sessions(uint64_t *d, const struct sr_session *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dg_i64(d, s[i].found * 2 + s[i].expired);
        dg_i64(d, s[i].len);
        if (s[i].len)
            dg(d, s[i].items, sizeof *s[i].items * s[i].len);
        if (s[i].types)
            dg(d, s[i].types, sizeof *s[i].types * s[i].len);
        dg_i64(d, s[i].last_ts);
        dg_i64(d, s[i].aux_len);
        if (s[i].aux_len)
            dg(d, s[i].aux, s[i].aux_len);
    }
}

/* Puts sessions "s<i>" of partition p (i in [from, to)) with a few items each. */
static sr_err_t put_range(sr_state_batch_t *b, int32_t p, int from, int to, int64_t ts,
                          struct sr_error *err)
{
    char id[16];
    uint64_t items[6];
    uint32_t types[6];
    uint8_t aux[40];
    for (int i = from; i < to; i++) {
        snprintf(id, sizeof id, "s%d", i);
        for (int j = 0; j < 6; j++) {
            items[j] = (uint64_t)(i * 31 + j) * 0x9e3779b97f4a7c15ull;
            types[j] = sr_session_type_code(j & 1 ? "view" : "cart", 4);
        }
        memset(aux, i, sizeof aux);
        struct sr_state_key k = {p, (uint32_t)strlen(id), id};
        struct sr_session s = {.items = items, .types = types, .len = (uint32_t)(3 + i % 4),
                               .last_ts = ts + i, .found = true, .aux = i % 2 ? aux : NULL,
                               .aux_len = i % 2 ? sizeof aux : 0};
        sr_err_t rc = sr_state_batch_put(b, &k, &s, err);
        if (rc != SR_OK)
            return rc;
    }
    return SR_OK;
}

static sr_err_t read_back(sr_state_t *st, uint64_t *d, sr_arena_t *a, struct sr_error *err)
{
    enum { N = 12 };
    struct sr_state_key keys[N];
    char ids[N][16];
    int64_t ts[N];
    struct sr_session out[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "s%d", i);
        keys[i] = (struct sr_state_key){i % 2, (uint32_t)strlen(ids[i]), ids[i]};
        ts[i] = 1000000 + i;
    }
    sr_err_t rc = sr_state_multi_get(st, N, keys, ts, out, a, err);
    if (rc == SR_OK)
        dg_sessions(d, out, N);
    return rc;
}

static sr_err_t path_state(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct state_ctx *c = vctx;
    bool rocks = strcmp(c->backend, "rocksdb") == 0;
    if (rocks && sr_state_destroy_db(c->dir, err) != SR_OK)
        return err->code;
    struct sr_state_params p;
    sr_state_params_init(&p);
    p.backend = c->backend;
    p.dir = c->dir;
    p.max_len = 5;
    p.ttl_ms = 100000;
    p.cache_sessions = 4; /* smaller than the working set: eviction runs too */
    p.identity = "oom test";
    sr_state_t *st = NULL;
    sr_state_batch_t *b = NULL;
    sr_arena_t *a = sr_arena_new(4096);
    if (!a)
        return sr_error_set(err, SR_ENOMEM, "arena: out of memory");
    uint64_t id1 = 0, id2 = 0;
    sr_err_t rc = sr_state_open(&p, &st, err);
    for (int round = 0; rc == SR_OK && round < (rocks ? 2 : 1); round++) {
        if (round == 1) { /* rocksdb: reopen and read what was committed */
            sr_state_close(st);
            st = NULL;
            rc = sr_state_open(&p, &st, err);
            if (rc == SR_OK)
                rc = read_back(st, d, a, err);
            if (rc == SR_OK)
                rc = sr_state_partition_foreach(st, 0, dg_visit, d, err);
            dg_i64(d, rc == SR_OK ? sr_state_applied_offset(st, 0) : 0);
            break;
        }
        /* batch 1: stage, read through the overlay, commit */
        if (!(b = sr_state_batch_new(st)))
            rc = sr_error_set(err, SR_ENOMEM, "state batch: out of memory");
        rc = rc ? rc : put_range(b, 0, 0, 8, 1000000, err);
        rc = rc ? rc : put_range(b, 1, 4, 12, 1000000, err);
        rc = rc ? rc : sr_state_batch_set_offset(b, 0, 41, err);
        rc = rc ? rc : sr_state_batch_set_checkpoint(b, 1, 7, err);
        rc = rc ? rc : sr_state_stage(st, b, &id1, err);
        if (rc != SR_OK)
            break;
        b = NULL;
        rc = sr_state_stage_set_aux(st, id1, &(struct sr_state_key){0, 2, "s2"}, "aux!", 4, err);
        rc = rc ? rc : read_back(st, d, a, err);
        /* batch 2: staged on top, deletes one key; both committed at once */
        if (rc == SR_OK && !(b = sr_state_batch_new(st)))
            rc = sr_error_set(err, SR_ENOMEM, "state batch: out of memory");
        rc = rc ? rc : put_range(b, 0, 6, 10, 1000100, err);
        rc = rc ? rc : sr_state_batch_delete(b, &(struct sr_state_key){1, 2, "s5"}, err);
        rc = rc ? rc : sr_state_batch_set_offset(b, 0, 57, err);
        rc = rc ? rc : sr_state_stage(st, b, &id2, err);
        if (rc != SR_OK)
            break;
        b = NULL;
        rc = sr_state_staged_foreach(st, id2, dg_change, d, err);
        rc = rc ? rc : sr_state_commit(st, id2, err);
        sr_arena_reset(a);
        rc = rc ? rc : read_back(st, d, a, err);
        /* a restore: one batch written alone */
        if (rc == SR_OK && !(b = sr_state_batch_new(st)))
            rc = sr_error_set(err, SR_ENOMEM, "state batch: out of memory");
        rc = rc ? rc : put_range(b, 1, 0, 3, 1000200, err);
        if (rc == SR_OK) {
            rc = sr_state_batch_apply(st, b, err); /* takes b, also on failure */
            b = NULL;
        }
        rc = rc ? rc : sr_state_partition_foreach(st, 1, dg_visit, d, err);
        rc = rc ? rc : sr_state_partition_drop(st, 1, err);
        rc = rc ? rc : sr_state_expire(st, 1000000 + 100000 + 5, err);
        sr_arena_reset(a);
        rc = rc ? rc : read_back(st, d, a, err);
        if (rc == SR_OK) {
            dg_i64(d, sr_state_applied_offset(st, 0));
            dg_i64(d, sr_state_checkpoint(st, 1));
            dg_i64(d, sr_state_watermark(st));
        }
    }
    sr_state_batch_destroy(b);
    sr_state_close(st);
    sr_arena_destroy(a);
    return rc;
}

static void state_case(const char *name, const char *backend)
{
    struct state_ctx c = {.backend = backend};
    if (strcmp(backend, "rocksdb") == 0)
        make_tmpdir(c.dir, sizeof c.dir, "state");
    oom_run(name, path_state, &c);
    if (c.dir[0]) {
        struct sr_error err;
        assert_int_equal(sr_state_destroy_db(c.dir, &err), SR_OK);
        rmdir(c.dir);
    }
}

static void test_oom_state_memory(void **state)
{
    (void)state;
    state_case("state memory", "memory");
}

static void test_oom_state_rocksdb(void **state)
{
    (void)state;
    state_case("state rocksdb", "rocksdb");
}

/* ---- path: event decode (JSON, Avro, Avro container files) ---------------------------------- */

#define DECODE_EVENTS 24

struct decode_ctx {
    enum sr_format format;
    char *msg[DECODE_EVENTS + 4]; /* valid events, then a few invalid messages */
    size_t len[DECODE_EVENTS + 4];
    int n;
    char file[64];                /* Avro container: written and read back by the path */
    char regdir[64];              /* Confluent: the writer schemas by id (<id>.avsc) */
    int valid;                    /* events decoded by the last successful run */
};

static void dg_event(uint64_t *d, const struct sr_event *ev)
{
    dg_str(d, ev->session_id, ev->session_id_len);
    dg_str(d, ev->user_id, ev->user_id_len);
    dg_str(d, ev->item_id, ev->item_id_len);
    dg_str(d, ev->event_type, ev->event_type_len);
    dg_i64(d, ev->timestamp_ms);
}

static sr_err_t path_decode(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct decode_ctx *c = vctx;
    sr_event_decoder_t *dec = NULL;
    sr_arena_t *a = sr_arena_new(4096);
    if (!a)
        return sr_error_set(err, SR_ENOMEM, "arena: out of memory");
    struct sr_event_decoder_params p = {.format = c->format,
                                        .registry_dir = c->regdir[0] ? c->regdir : NULL};
    sr_err_t rc = sr_event_decoder_new(&p, &dec, err);
    int valid = 0;
    for (int i = 0; rc == SR_OK && i < c->n; i++) {
        struct sr_event ev;
        enum sr_event_invalid why;
        struct sr_error e = {0};
        sr_err_t drc = sr_event_decode(dec, c->msg[i], c->len[i], a, &ev, &why, &e);
        if (drc == SR_OK)
            dg_event(d, &ev), valid++;
        else if (drc == SR_EFORMAT) { /* invalid input: part of the result */
            dg_i64(d, 1000 + why);
            if (getenv("SR_OOM_TRACE"))
                fprintf(stderr, "  event %d refused: %s\n", i, e.msg);
        }
        else
            rc = sr_error_set(err, drc, "event %d: %s", i, e.msg);
    }
    sr_event_decoder_destroy(dec);
    sr_arena_destroy(a);
    if (rc == SR_OK)
        c->valid = valid;
    return rc;
}

/* Writes the events to an Avro container file and reads them back. */
static sr_err_t path_avro_file(void *vctx, uint64_t *d, struct sr_error *err)
{
    struct decode_ctx *c = vctx;
    sr_event_decoder_t *dec = NULL;
    sr_avro_file_writer_t *w = NULL;
    sr_avro_file_reader_t *r = NULL;
    sr_arena_t *a = sr_arena_new(4096);
    if (!a)
        return sr_error_set(err, SR_ENOMEM, "arena: out of memory");
    struct sr_event_decoder_params p = {.format = SR_FORMAT_JSON};
    sr_err_t rc = sr_event_decoder_new(&p, &dec, err);
    rc = rc ? rc : sr_avro_file_writer_create(c->file, SR_AVRO_FILE_EVENTS, &w, err);
    for (int i = 0; rc == SR_OK && i < c->n; i++) {
        struct sr_event ev;
        struct sr_error e;
        sr_err_t drc = sr_event_decode(dec, c->msg[i], c->len[i], a, &ev, NULL, &e);
        if (drc == SR_OK)
            rc = sr_avro_file_writer_append_event(w, &ev, err);
        else if (drc != SR_EFORMAT) /* an invalid message is skipped, anything else fails */
            rc = sr_error_set(err, drc, "event %d: %s", i, e.msg);
    }
    sr_err_t crc = sr_avro_file_writer_close(w, err);
    rc = rc ? rc : crc;
    rc = rc ? rc : sr_avro_file_reader_open(c->file, &r, err);
    while (rc == SR_OK) {
        struct sr_event ev;
        enum sr_event_invalid why;
        sr_arena_reset(a);
        rc = sr_avro_file_reader_next(r, a, &ev, &why, err);
        if (rc == SR_OK)
            dg_event(d, &ev);
        else if (rc == SR_ENOENT) {
            rc = SR_OK;
            break;
        }
    }
    sr_avro_file_reader_close(r);
    sr_event_decoder_destroy(dec);
    sr_arena_destroy(a);
    return rc;
}

/* The golden events in `format` plus invalid messages of that format. */
static void decode_ctx_init(struct decode_ctx *c, enum sr_format format)
{
    memset(c, 0, sizeof *c);
    c->format = format;
    char *lines[DECODE_EVENTS];
    int n = read_lines(EVENTS, lines, DECODE_EVENTS);
    struct sr_error err = {0};
    sr_event_decoder_t *jd = NULL;
    sr_event_encoder_t *enc = NULL;
    struct sr_event_decoder_params jp = {.format = SR_FORMAT_JSON};
    assert_int_equal(sr_event_decoder_new(&jp, &jd, &err), SR_OK);
    if (format != SR_FORMAT_JSON)
        assert_int_equal(sr_event_encoder_new(format, 7, &enc, &err), SR_OK);
    sr_arena_t *a = sr_arena_new(4096);
    for (int i = 0; i < n; i++) {
        if (format == SR_FORMAT_JSON) {
            c->len[c->n] = strlen(lines[i]);
            c->msg[c->n++] = lines[i];
            continue;
        }
        struct sr_event ev;
        if (sr_event_decode(jd, lines[i], strlen(lines[i]), a, &ev, NULL, &err) == SR_OK) {
            struct sr_buf out = {0};
            assert_int_equal(sr_event_encode(enc, &ev, &out, &err), SR_OK);
            c->len[c->n] = out.len;
            c->msg[c->n++] = out.data;
        }
        free(lines[i]);
    }
    static const char *const bad_json[] = {"{\"session_id\": 1}", "not json", "[1,2]", ""};
    static const char bad_avro[][4] = {{2, 'x'}, {(char)0xff}, {0}, {0}};
    if (format == SR_FORMAT_AVRO_CONFLUENT) { /* schema id 7 known, 9 not */
        make_tmpdir(c->regdir, sizeof c->regdir, "registry");
        char path[96];
        snprintf(path, sizeof path, "%s/7.avsc", c->regdir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(sr_schema_user_event_json(), f);
        fclose(f);
        c->msg[c->n] = calloc(1, 8);
        memcpy(c->msg[c->n], "\0\0\0\0\x09\x02x", 7);
        c->len[c->n++] = 7;
    }
    for (int i = 0; i < 4; i++) {
        size_t len = format == SR_FORMAT_JSON ? strlen(bad_json[i]) : (size_t)(i < 2 ? 2 : 1);
        c->msg[c->n] = malloc(len + 1);
        memcpy(c->msg[c->n], format == SR_FORMAT_JSON ? bad_json[i] : bad_avro[i], len + 1);
        c->len[c->n++] = len;
    }
    sr_arena_destroy(a);
    sr_event_encoder_destroy(enc);
    sr_event_decoder_destroy(jd);
}

static void decode_ctx_free(struct decode_ctx *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->msg[i]);
    if (c->regdir[0]) {
        char path[96];
        snprintf(path, sizeof path, "%s/7.avsc", c->regdir);
        unlink(path);
        rmdir(c->regdir);
    }
}

static void test_oom_decode_json(void **state)
{
    (void)state;
    struct decode_ctx c;
    decode_ctx_init(&c, SR_FORMAT_JSON);
    oom_run("decode json", path_decode, &c);
    assert_true(c.valid > DECODE_EVENTS / 2 || getenv("SR_OOM_PATH"));
    decode_ctx_free(&c);
}

static void test_oom_decode_avro(void **state)
{
    (void)state;
    struct decode_ctx c;
    decode_ctx_init(&c, SR_FORMAT_AVRO);
    oom_run("decode avro", path_decode, &c);
    assert_true(c.valid > DECODE_EVENTS / 2 || getenv("SR_OOM_PATH"));
    decode_ctx_free(&c);
}

static void test_oom_decode_confluent(void **state)
{
    (void)state;
    struct decode_ctx c;
    decode_ctx_init(&c, SR_FORMAT_AVRO_CONFLUENT);
    oom_run("decode avro-confluent", path_decode, &c);
    assert_true(c.valid > DECODE_EVENTS / 2 || getenv("SR_OOM_PATH"));
    decode_ctx_free(&c);
}

/* ---- path: recommendation encoders (JSON, Avro, Confluent) and the JSON decoder ------------ */

static sr_err_t path_rec_encode(void *vctx, uint64_t *d, struct sr_error *err)
{
    (void)vctx;
    struct sr_scored_item items[3] = {{"sku-1", 5, 3.25, NULL}, {"caf\xc3\xa9 \"q\"", 9, -0.5, NULL},
                                      {"sku-3", 5, 1e-7, "trending"}};
    struct sr_rec rec = {.session_id = "s1", .session_id_len = 2, .event_timestamp_ms = 17,
                         .model_version = "v1", .model_version_len = 2, .items = items,
                         .n_items = 3, .source_topic = "events", .source_topic_len = 6,
                         .source_partition = 2, .source_offset = 99, .item_sources = true,
                         .variant = "b", .variant_len = 1}; /* schema version 2 */
    struct sr_buf out = {0};
    sr_rec_encoder_t *e = NULL;
    sr_arena_t *a = sr_arena_new(1024);
    sr_err_t rc = a ? SR_OK : sr_error_set(err, SR_ENOMEM, "arena: out of memory");
    for (int f = SR_FORMAT_JSON; rc == SR_OK && f <= SR_FORMAT_AVRO_CONFLUENT; f++) {
        rc = sr_rec_encoder_new((enum sr_format)f, 5, &e, err);
        for (int i = 0; rc == SR_OK && i < 2; i++) {
            rec.user_id = i ? "u1" : NULL;
            rec.user_id_len = i ? 2 : 0;
            sr_buf_reset(&out);
            rc = sr_rec_encode(e, &rec, &out, err);
            if (rc == SR_OK)
                dg(d, out.data, out.len);
            struct sr_rec back;
            if (rc == SR_OK && f == SR_FORMAT_JSON &&
                (rc = sr_rec_decode_json(out.data, out.len, a, &back, err)) == SR_OK) {
                dg_str(d, back.session_id, back.session_id_len);
                for (size_t j = 0; j < back.n_items; j++)
                    dg_str(d, back.items[j].item_id, back.items[j].item_id_len);
            }
        }
        sr_rec_encoder_destroy(e);
        e = NULL;
    }
    sr_buf_free(&out);
    sr_arena_destroy(a);
    return rc;
}

static void test_oom_rec_encode(void **state)
{
    (void)state;
    oom_run("recommendation encode", path_rec_encode, NULL);
}

static void test_oom_avro_file(void **state)
{
    (void)state;
    struct decode_ctx c;
    decode_ctx_init(&c, SR_FORMAT_JSON);
    snprintf(c.file, sizeof c.file, "/tmp/sr_oom_avro_%d.avro", (int)getpid());
    oom_run("avro container file", path_avro_file, &c);
    unlink(c.file);
    decode_ctx_free(&c);
}

int main(void)
{
    sr_log_set_level(SR_LOG_OFF);
    /* Jansson 2.14 and Avro C 1.11.1 themselves crash on some failed allocations (json_loadb,
     * avro_schema_from_json dereference them), so by default their allocations are not failed;
     * SR_OOM_FOREIGN=1 fails them too, to look at that again with newer versions. */
    if (getenv("SR_OOM_FOREIGN")) {
        sr_failalloc_hook_jansson();
    } else {
        sr_event_encoder_t *e = NULL;
        struct sr_error err;
        if (sr_event_encoder_new(SR_FORMAT_AVRO, 1, &e, &err) != SR_OK) /* installs schemas/'s */
            return 1;
        sr_event_encoder_destroy(e);
        sr_failalloc_exempt_avro();
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom_config),
        cmocka_unit_test(test_oom_bundle_gpt2),
        cmocka_unit_test(test_oom_bundle_gru4rec),
        cmocka_unit_test(test_oom_add_items),
        cmocka_unit_test(test_oom_state_memory),
        cmocka_unit_test(test_oom_state_rocksdb),
        cmocka_unit_test(test_oom_decode_json),
        cmocka_unit_test(test_oom_decode_avro),
        cmocka_unit_test(test_oom_decode_confluent),
        cmocka_unit_test(test_oom_rec_encode),
        cmocka_unit_test(test_oom_avro_file),
        cmocka_unit_test(test_oom_model_gpt2),
        cmocka_unit_test(test_oom_model_gru4rec),
        cmocka_unit_test(test_oom_model_faiss),
        cmocka_unit_test(test_oom_graph_memory),
        cmocka_unit_test(test_oom_graph_variants),
        cmocka_unit_test(test_oom_graph_rocksdb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
