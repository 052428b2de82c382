/* cmd_bench.c — `streamrec bench retrieval|model`: reproducible micro-benchmarks of exact top-k
 * and of the sequence encoders (DESIGN §6; figures in BENCHMARKS.md); `model --incremental`
 * times the encode of one new event against session length, full recompute vs resumed from the
 * state (gru4rec) or through the encode cache (gpt2; DESIGN §3.1). Inputs are random from a
 * seed; every figure is the median over --reps timed runs after at least 0.5 s of warm-up.
 * Human lines, then ONE final JSON line that bench/compare.sh parses. Retrieval drives a
 * backend's top-k directly (sr_backend_topk) on a synthetic table, so no bundle is needed; the
 * table is generated and uploaded in chunks, so host memory stays O(chunk) besides the
 * backend's copy. Thread: the command's. */
#include "cli.h"
#include "sr_faiss.h"
#include "sr_kernels.h"

#define WARMUP_NS 500000000ULL /* warm-up before the timed runs: pool threads, caches, clocks */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CMD "bench"
#define CHUNK_ROWS 65536

struct bench_opts {
    /* shared */
    const char *device;
    int threads, reps, batch, k;
    uint64_t seed;
    bool check;
    /* retrieval */
    int64_t items;
    int dim;
    const char *mode, *factory; /* --mode exact|faiss, --factory F */
    int nprobe, ef_search, clusters;
    int64_t train_sample;
    /* model */
    const char *bundle, *arch, *act;
    int d, layers, heads, d_ff, len;
    bool output_bias;
    bool incremental; /* model --incremental */
};

/* ---- small helpers ----------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Deterministic N(0,1)-ish value (sum of 4 uniforms, rescaled) for stream position i. */
static float rand_at(uint64_t seed, uint64_t i)
{
    uint64_t a = mix64(seed ^ mix64(i)), b = mix64(a);
    double u = (double)(a >> 32) + (double)(a & 0xffffffffu) + (double)(b >> 32) +
               (double)(b & 0xffffffffu);
    return (float)((u / 4294967296.0 - 2.0) * 1.7320508075688772); /* var of sum(U)-2 is 1/3 */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* JSON string body: the backend description is ours, but quote it properly anyway. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static int make_backend(const struct bench_opts *o, sr_backend_t **be)
{
    struct sr_backend_params bp = {.device = SR_DEVICE_AUTO, .threads = o->threads};
    struct sr_error err;
    if (sr_device_parse(o->device, &bp.device, &err) != SR_OK)
        return sr__cli_fail(CMD, "--device: %s", err.msg);
    if (sr_backend_new(&bp, be, &err) != SR_OK)
        return sr__cli_fail(CMD, "%s", err.msg);
    return 0;
}

/* ---- retrieval --------------------------------------------------------------------------- */

/* Naive double-precision top-k scores of query q over the regenerated table (sorted desc). */
static void naive_topk(const struct bench_opts *o, const float *q, double *top)
{
    const int D = o->dim, k = o->k;
    for (int r = 0; r < k; r++)
        top[r] = -INFINITY;
    for (int64_t j = 0; j < o->items; j++) {
        double s = 0;
        for (int c = 0; c < D; c++)
            s += (double)q[c] * rand_at(o->seed, (uint64_t)(j * D + c));
        if (s <= top[k - 1])
            continue;
        int r = k - 1;
        while (r > 0 && top[r - 1] < s) {
            top[r] = top[r - 1];
            r--;
        }
        top[r] = s;
    }
}

static int bench_retrieval(const struct bench_opts *o)
{
    const int64_t N = o->items;
    const int D = o->dim, B = o->batch, k = o->k;
    if (k > N)
        return sr__cli_fail(CMD, "-k %d exceeds --items %lld", k, (long long)N);
    if (N > INT32_MAX)
        return sr__cli_fail(CMD, "--items %lld exceeds 2^31-1", (long long)N);
    sr_backend_t *be = NULL;
    if (make_backend(o, &be))
        return 1;
    struct sr_error err = {0};
    int rc = 1;
    size_t table_bytes = (size_t)N * (size_t)D * sizeof(float);
    float *table = NULL, *q = NULL;
    bool pinned = false;
    float *chunk = malloc((size_t)CHUNK_ROWS * (size_t)D * sizeof(float));
    float *hq = malloc((size_t)B * (size_t)D * sizeof(float));
    int32_t *idx = malloc((size_t)B * (size_t)k * sizeof *idx);
    float *score = malloc((size_t)B * (size_t)k * sizeof *score);
    double *times = calloc((size_t)o->reps, sizeof *times);
    if (!chunk || !hq || !idx || !score || !times) {
        sr__cli_fail(CMD, "out of memory for host buffers");
        goto done;
    }
    table = sr_backend_alloc(be, table_bytes);
    q = sr_backend_alloc(be, (size_t)B * (size_t)D * sizeof(float));
    if (!table || !q) {
        sr__cli_fail(CMD, "%s: cannot allocate the %lld x %d table (%.1f MiB)", sr_backend_name(be),
                     (long long)N, D, (double)table_bytes / 1048576.0);
        goto done;
    }
    for (int64_t r0 = 0; r0 < N; r0 += CHUNK_ROWS) {
        int64_t rows = N - r0 < CHUNK_ROWS ? N - r0 : CHUNK_ROWS;
        for (int64_t i = 0; i < rows * D; i++)
            chunk[i] = rand_at(o->seed, (uint64_t)(r0 * D + i));
        if (sr_backend_upload(be, (char *)table + (size_t)r0 * (size_t)D * sizeof(float), chunk,
                        (size_t)rows * (size_t)D * sizeof(float), &err) != SR_OK) {
            sr__cli_fail(CMD, "upload of the table: %s", err.msg);
            goto done;
        }
    }
    for (int64_t i = 0; i < (int64_t)B * D; i++)
        hq[i] = rand_at(o->seed ^ 0x7175657279ull, (uint64_t)i);
    if (sr_backend_upload(be, q, hq, (size_t)B * (size_t)D * sizeof(float), &err) != SR_OK) {
        sr__cli_fail(CMD, "upload of the queries: %s", err.msg);
        goto done;
    }
    /* as a model does at load: the backend may keep the table in its own layout */
    if (sr_backend_topk_pin(be, table, D, 0, (int)N, &err) != SR_OK) {
        sr__cli_fail(CMD, "topk_pin: %s", err.msg);
        goto done;
    }
    pinned = true;
    printf("retrieval: %lld items x %d dims, batch %d, k %d on %s\n", (long long)N, D, B, k,
           sr_backend_describe(be));
    for (uint64_t w0 = sr_now_ns(), wn = 0; wn < 1 || sr_now_ns() - w0 < WARMUP_NS; wn++) {
        if (sr_backend_topk(be, q, B, table, NULL, D, 0, (int)N, k, idx, score, &err) != SR_OK) {
            sr__cli_fail(CMD, "topk: %s", err.msg);
            goto done;
        }
    }
    for (int rep = 0; rep < o->reps; rep++) {
        uint64_t t0 = sr_now_ns();
        if (sr_backend_topk(be, q, B, table, NULL, D, 0, (int)N, k, idx, score, &err) != SR_OK) {
            sr__cli_fail(CMD, "topk: %s", err.msg);
            goto done;
        }
        if (rep >= 0)
            times[rep] = (double)(sr_now_ns() - t0) * 1e-9;
    }
    if (o->check) {
        double top[1024];
        for (int b = 0; b < 2 && b < B; b++) {
            naive_topk(o, hq + (size_t)b * (size_t)D, top);
            for (int r = 0; r < k; r++) {
                double a = score[(size_t)b * (size_t)k + (size_t)r];
                if (fabs(a - top[r]) > 1e-3 * fmax(1.0, fabs(top[r]))) {
                    sr__cli_fail(CMD, "check: query %d rank %d score %.6g, a naive scan gives %.6g",
                                 b, r, a, top[r]);
                    goto done;
                }
            }
        }
        printf("check: top-%d scores of queries 0-1 match a naive double-precision scan\n", k);
    }
    double t = median(times, o->reps);
    double qps = B / t, gflops = 2.0 * B * (double)N * D / t * 1e-9;
    printf("median %.3f ms per batch (min %.3f, max %.3f over %d reps): %.0f queries/s, %.1f GFLOP/s\n",
           t * 1e3, times[0] * 1e3, times[o->reps - 1] * 1e3, o->reps, qps, gflops);
    printf("{\"bench\":\"retrieval\",\"items\":%lld,\"dim\":%d,\"batch\":%d,\"k\":%d,\"device\":",
           (long long)N, D, B, k);
    json_str(sr_backend_name(be));
    printf(",\"backend\":");
    json_str(sr_backend_describe(be));
    printf(",\"reps\":%d,\"queries_per_s\":%.1f,\"gflops\":%.2f,\"ms_per_batch\":%.4f}\n", o->reps,
           qps, gflops, t * 1e3);
    rc = 0;
done:
    if (pinned)
        sr_backend_topk_unpin(be, table, D, 0, (int)N);
    sr_backend_free(be, table);
    sr_backend_free(be, q);
    free(chunk);
    free(hq);
    free(idx);
    free(score);
    free(times);
    sr_backend_unref(be);
    fflush(stdout);
    return rc;
}

/* ---- retrieval through FAISS -------------------------------------------------------------- */

/* Recall@k of got against want (B×k each; -1 entries of want are not counted). */
static double recall_at(const int64_t *got, const int32_t *want, int B, int k)
{
    long hit = 0, tot = 0;
    for (int b = 0; b < B; b++)
        for (int a = 0; a < k; a++) {
            if (want[b * k + a] < 0)
                continue;
            tot++;
            for (int c = 0; c < k; c++)
                hit += got[b * k + c] == want[b * k + a];
        }
    return tot ? (double)hit / (double)tot : 1.0;
}

static void print_faiss_json(const struct bench_opts *o, const char *data, int64_t N, int D,
                             double build_s, double recall, double eq, double fq)
{
    printf("{\"bench\":\"retrieval\",\"mode\":\"faiss\",\"data\":");
    json_str(data);
    printf(",\"factory\":");
    json_str(o->factory);
    printf(",\"items\":%lld,\"dim\":%d,\"batch\":%d,\"k\":%d,\"nprobe\":%d,\"ef_search\":%d,"
           "\"build_s\":%.2f,\"recall\":%.4f,\"exact_queries_per_s\":%.1f,"
           "\"faiss_queries_per_s\":%.1f,\"speedup\":%.2f}\n", (long long)N, D, o->batch, o->k,
           o->nprobe, o->ef_search, build_s, recall, eq, fq, fq / eq);
}

/* Synthetic: a mixture of Gaussians (clusters centres, unit spread around each, scaled like the
 * random table of the exact bench); queries are catalogue items plus noise, like sessions that
 * sit near items they saw. Exact = the backend's top-k; FAISS = sr_faiss_search of the raw
 * index (no re-ranking), recall@k against exact. */
static int bench_faiss_synth(const struct bench_opts *o)
{
    const int64_t N = o->items;
    const int D = o->dim, B = o->batch, k = o->k, C = o->clusters;
    sr_backend_t *be = NULL;
    if (make_backend(o, &be))
        return 1;
    struct sr_error err = {0};
    int rc = 1;
    size_t tb = (size_t)N * (size_t)D * sizeof(float);
    float *X = malloc(tb), *cent = malloc(sizeof(float) * (size_t)C * D);
    float *hq = malloc(sizeof(float) * (size_t)B * D), *sc = malloc(sizeof(float) * (size_t)B * k);
    int32_t *ei = malloc(sizeof(int32_t) * (size_t)B * k);
    int64_t *fi = malloc(sizeof(int64_t) * (size_t)B * k), *ids = malloc(sizeof(int64_t) * (size_t)N);
    double *et = calloc((size_t)o->reps, sizeof(double)), *ft = calloc((size_t)o->reps, sizeof(double));
    float *table = NULL, *q = NULL;
    sr_faiss_t *ix = NULL;
    if (!X || !cent || !hq || !sc || !ei || !fi || !ids || !et || !ft) {
        sr__cli_fail(CMD, "out of memory for a %lld x %d table", (long long)N, D);
        goto done;
    }
    for (int64_t i = 0; i < (int64_t)C * D; i++)
        cent[i] = rand_at(o->seed ^ 0xce47, (uint64_t)i);
    for (int64_t j = 0; j < N; j++) {
        int64_t c = (int64_t)(mix64(o->seed ^ 0xc1u ^ mix64((uint64_t)j)) % (uint64_t)C);
        for (int t = 0; t < D; t++)
            X[j * D + t] = cent[c * D + t] + 0.5f * rand_at(o->seed, (uint64_t)(j * D + t));
        ids[j] = j;
    }
    for (int b = 0; b < B; b++) {
        int64_t j = (int64_t)(mix64(o->seed ^ 0x9e11u ^ (uint64_t)b) % (uint64_t)N);
        for (int t = 0; t < D; t++)
            hq[b * D + t] = X[j * D + t] + 0.5f * rand_at(o->seed ^ 0x7175657279ull, (uint64_t)(b * D + t));
    }
    table = sr_backend_alloc(be, tb);
    q = sr_backend_alloc(be, sizeof(float) * (size_t)B * D);
    if (!table || !q || sr_backend_upload(be, table, X, tb, &err) != SR_OK ||
        sr_backend_upload(be, q, hq, sizeof(float) * (size_t)B * D, &err) != SR_OK) {
        sr__cli_fail(CMD, "backend table: %s", err.msg[0] ? err.msg : "out of memory");
        goto done;
    }
    printf("retrieval faiss: %s over %lld clustered items (%d Gaussians) x %d dims, batch %d, "
           "k %d, nprobe %d, ef_search %d; exact on %s\n", o->factory, (long long)N, C, D, B, k,
           o->nprobe, o->ef_search, sr_backend_describe(be));
    fflush(stdout);
    uint64_t t0 = sr_now_ns();
    if (sr_faiss_new(o->factory, D, &ix, &err) != SR_OK)
        goto ferr;
    if (!sr_faiss_is_trained(ix)) {
        int64_t ns = o->train_sample > 0 && o->train_sample < N ? o->train_sample : N;
        /* a strided subset: items are i.i.d., so any subset is a random one */
        float *tx = malloc(sizeof(float) * (size_t)ns * D);
        if (!tx) {
            sr__cli_fail(CMD, "out of memory for the training sample");
            goto done;
        }
        for (int64_t i = 0; i < ns; i++)
            memcpy(tx + i * D, X + (i * (N / ns)) * D, sizeof(float) * (size_t)D);
        sr_err_t trc = sr_faiss_train(ix, ns, tx, &err);
        free(tx);
        if (trc != SR_OK)
            goto ferr;
    }
    if (sr_faiss_add(ix, N, X, ids, &err) != SR_OK)
        goto ferr;
    double build_s = (double)(sr_now_ns() - t0) * 1e-9;
    struct sr_faiss_search_params sp = {.nprobe = o->nprobe, .ef_search = o->ef_search};
    for (int rep = -1; rep < o->reps; rep++) {
        uint64_t a = sr_now_ns();
        if (sr_backend_topk(be, q, B, table, NULL, D, 0, (int)N, k, ei, sc, &err) != SR_OK) {
            sr__cli_fail(CMD, "topk: %s", err.msg);
            goto done;
        }
        uint64_t m = sr_now_ns();
        if (sr_faiss_search(ix, B, hq, k, &sp, sc, fi, &err) != SR_OK)
            goto ferr;
        if (rep >= 0) {
            et[rep] = (double)(m - a) * 1e-9;
            ft[rep] = (double)(sr_now_ns() - m) * 1e-9;
        }
    }
    double recall = recall_at(fi, ei, B, k);
    double eq = B / median(et, o->reps), fq = B / median(ft, o->reps);
    printf("build %.2f s; recall@%d %.4f; exact %.0f queries/s, faiss %.0f queries/s (%.1fx)\n",
           build_s, k, recall, eq, fq, fq / eq);
    print_faiss_json(o, "clustered", N, D, build_s, recall, eq, fq);
    rc = 0;
    goto done;
ferr:
    sr__cli_fail(CMD, "%s", err.msg);
done:
    sr_backend_free(be, table);
    sr_backend_free(be, q);
    sr_faiss_destroy(ix);
    free(X), free(cent), free(hq), free(sc), free(ei), free(fi), free(ids), free(et), free(ft);
    sr_backend_unref(be);
    fflush(stdout);
    return rc;
}

/* A trained bundle: queries are B random sessions (1..10 items) encoded by the model; exact and
 * FAISS are the model's two retrieval modes (FAISS with its exact re-scoring), over the
 * bundle's own index or, with --factory, one built here in memory. */
static int bench_faiss_bundle(const struct bench_opts *o)
{
    struct sr_error err = {0};
    sr_bundle_t *b = NULL;
    sr_backend_t *be = NULL;
    sr_model_t *m = NULL;
    sr_faiss_t *ix = NULL;
    int rc = 1;
    const int B = o->batch, k = o->k;
    int32_t *off = malloc(sizeof(int32_t) * ((size_t)B + 1)), *items = malloc(sizeof(int32_t) * (size_t)B * 10);
    int32_t *ei = malloc(sizeof(int32_t) * (size_t)B * k), *fi32 = malloc(sizeof(int32_t) * (size_t)B * k);
    int64_t *fi = malloc(sizeof(int64_t) * (size_t)B * k);
    float *sc = malloc(sizeof(float) * (size_t)B * k), *vecs = NULL;
    double *et = calloc((size_t)o->reps, sizeof(double)), *ft = calloc((size_t)o->reps, sizeof(double));
    double build_s = 0;
    if (!off || !items || !ei || !fi32 || !fi || !sc || !et || !ft) {
        sr__cli_fail(CMD, "out of memory");
        goto done;
    }
    if ((o->factory ? sr_bundle_load_noindex(o->bundle, &b, &err)
                    : sr_bundle_load(o->bundle, &b, &err)) != SR_OK)
        goto ferr;
    const struct sr_bundle_info *in = sr_bundle_info(b);
    if (!(vecs = malloc(sizeof(float) * (size_t)B * (size_t)in->d_model))) {
        sr__cli_fail(CMD, "out of memory");
        goto done;
    }
    if (o->factory) {
        uint64_t t0 = sr_now_ns();
        if (sr_bundle_index_build(b, o->factory, o->train_sample, o->seed, &ix, &err) != SR_OK)
            goto ferr;
        build_s = (double)(sr_now_ns() - t0) * 1e-9;
    }
    if (make_backend(o, &be))
        goto done;
    if (sr_model_new(b, be, &m, &err) != SR_OK)
        goto ferr;
    const uint64_t span = (uint64_t)(in->n_items - in->first_index);
    off[0] = 0;
    for (int s = 0, t = 0; s < B; s++) {
        int len = 1 + (int)(mix64(o->seed ^ (uint64_t)s * 7919u) % 10);
        for (int i = 0; i < len; i++, t++)
            items[t] = in->first_index + (int32_t)(mix64(o->seed + (uint64_t)t * 131u + 1) % span);
        off[s + 1] = t;
    }
    struct sr_session_batch sb = {.n = B, .offsets = off, .items = items};
    if (sr_model_encode(m, &sb, vecs, &err) != SR_OK)
        goto ferr;
    struct sr_retrieval_params xp = {.mode = SR_RETRIEVAL_EXACT};
    struct sr_retrieval_params fp = {.mode = SR_RETRIEVAL_FAISS, .nprobe = o->nprobe,
                                     .ef_search = o->ef_search, .index = ix};
    for (int rep = -1; rep < o->reps; rep++) {
        uint64_t a = sr_now_ns();
        if (sr_model_set_retrieval(m, &xp, &err) != SR_OK ||
            sr_model_topk(m, B, vecs, NULL, NULL, k, ei, sc, &err) != SR_OK)
            goto ferr;
        uint64_t mid = sr_now_ns();
        if (sr_model_set_retrieval(m, &fp, &err) != SR_OK ||
            sr_model_topk(m, B, vecs, NULL, NULL, k, fi32, sc, &err) != SR_OK)
            goto ferr;
        if (rep >= 0) {
            et[rep] = (double)(mid - a) * 1e-9;
            ft[rep] = (double)(sr_now_ns() - mid) * 1e-9;
        }
    }
    for (int i = 0; i < B * k; i++)
        fi[i] = fi32[i];
    double recall = recall_at(fi, ei, B, k);
    double eq = B / median(et, o->reps), fq = B / median(ft, o->reps);
    printf("retrieval faiss: bundle %s (%d items x %d dims), %s, batch %d, k %d, nprobe %d, "
           "ef_search %d on %s\n", o->bundle, in->n_items - in->first_index, in->d_model,
           sr_model_retrieval_name(m), B, k, o->nprobe, o->ef_search, sr_backend_describe(be));
    printf("build %.2f s; recall@%d %.4f; exact %.0f queries/s, faiss %.0f queries/s (%.1fx)\n",
           build_s, k, recall, eq, fq, fq / eq);
    struct bench_opts o2 = *o;
    o2.factory = ix ? o->factory : (in->index_type ? in->index_type : "");
    print_faiss_json(&o2, "bundle", in->n_items - in->first_index, in->d_model, build_s, recall,
                     eq, fq);
    rc = 0;
    goto done;
ferr:
    sr__cli_fail(CMD, "%s", err.msg);
done:
    sr_model_unref(m);
    sr_backend_unref(be);
    sr_faiss_destroy(ix);
    sr_bundle_unref(b);
    free(off), free(items), free(ei), free(fi32), free(fi), free(sc), free(vecs), free(et), free(ft);
    fflush(stdout);
    return rc;
}

static int bench_retrieval_faiss(const struct bench_opts *o)
{
    if (!sr_faiss_available())
        return sr__cli_fail(CMD, "retrieval --mode faiss: this build has no FAISS");
    if (o->bundle)
        return bench_faiss_bundle(o);
    if (!o->factory)
        return sr__cli_fail(CMD, "retrieval --mode faiss needs --factory (or --bundle DIR with "
                            "an index)");
    return bench_faiss_synth(o);
}

/* ---- model ------------------------------------------------------------------------------- */

/* The bundle of `bench model`: --bundle DIR, or a synthetic one of the given shape. */
static int model_bundle(const struct bench_opts *o, sr_bundle_t **out)
{
    struct sr_error err = {0};
    sr_bundle_t *bundle = NULL;
    if (o->bundle) {
        if (sr_bundle_load(o->bundle, &bundle, &err) != SR_OK)
            return sr__cli_fail(CMD, "%s", err.msg);
    } else {
        struct sr_synth_params sp = {
            .d_model = o->d, .n_layers = o->layers, .n_heads = o->heads,
            .d_ff = o->d_ff > 0 ? o->d_ff : 4 * o->d, .max_len = o->len,
            .n_items = (int32_t)o->items, .output_bias = o->output_bias, .seed = o->seed};
        if (!o->arch)
            return sr__cli_fail(CMD, "model: give --bundle DIR or --arch gpt2|gru4rec");
        if (!strcmp(o->arch, "gpt2"))
            sp.arch = SR_ARCH_GPT2;
        else if (!strcmp(o->arch, "gru4rec"))
            sp.arch = SR_ARCH_GRU4REC;
        else
            return sr__cli_fail(CMD, "--arch: '%s' is not gpt2 or gru4rec", o->arch);
        if (!o->act || !strcmp(o->act, "gelu_tanh"))
            sp.activation = SR_ACT_GELU_TANH;
        else if (!strcmp(o->act, "gelu"))
            sp.activation = SR_ACT_GELU_ERF;
        else if (!strcmp(o->act, "relu"))
            sp.activation = SR_ACT_RELU;
        else
            return sr__cli_fail(CMD, "--activation: '%s' is not gelu_tanh, gelu or relu", o->act);
        if (sr_bundle_synthetic(&sp, &bundle, &err) != SR_OK)
            return sr__cli_fail(CMD, "%s", err.msg);
    }
    *out = bundle;
    return 0;
}

static int bench_model(const struct bench_opts *o)
{
    struct sr_error err = {0};
    sr_bundle_t *bundle = NULL;
    if (model_bundle(o, &bundle))
        return 1;
    const struct sr_bundle_info *in = sr_bundle_info(bundle);
    sr_backend_t *be = NULL;
    sr_model_t *m = NULL;
    int rc = 1;
    const int B = o->batch, len = o->len > 0 ? o->len : in->max_len;
    const int eff = len < in->max_len ? len : in->max_len;
    const int k = o->k;
    int32_t *offsets = NULL, *items = NULL, *idx = NULL;
    float *vecs = NULL, *score = NULL;
    double *times = NULL, *rtimes = NULL;
    if (make_backend(o, &be))
        goto done;
    if (k > in->n_items - in->first_index) {
        sr__cli_fail(CMD, "-k %d exceeds the %d recommendable items", k,
                     (int)(in->n_items - in->first_index));
        goto done;
    }
    if (sr_model_new(bundle, be, &m, &err) != SR_OK) {
        sr__cli_fail(CMD, "%s", err.msg);
        goto done;
    }
    offsets = malloc(((size_t)B + 1) * sizeof *offsets);
    items = malloc((size_t)B * (size_t)len * sizeof *items);
    vecs = malloc((size_t)B * (size_t)in->d_model * sizeof *vecs);
    idx = malloc((size_t)B * (size_t)k * sizeof *idx);
    score = malloc((size_t)B * (size_t)k * sizeof *score);
    times = calloc((size_t)o->reps, sizeof *times);
    rtimes = calloc((size_t)o->reps, sizeof *rtimes);
    if (!offsets || !items || !vecs || !idx || !score || !times || !rtimes) {
        sr__cli_fail(CMD, "out of memory for host buffers");
        goto done;
    }
    const uint64_t span = (uint64_t)(in->n_items - in->first_index);
    for (int b = 0; b <= B; b++)
        offsets[b] = b * len;
    for (int64_t i = 0; i < (int64_t)B * len; i++)
        items[i] = in->first_index + (int32_t)(mix64(o->seed ^ mix64((uint64_t)i)) % span);
    struct sr_session_batch batch = {.n = B, .offsets = offsets, .items = items};
    printf("model: %s %s d=%d layers=%d", in->arch_name, o->bundle ? o->bundle : "(synthetic)",
           in->d_model, in->n_layers);
    if (in->arch == SR_ARCH_GPT2)
        printf(" heads=%d d_ff=%d", in->n_heads, in->d_ff);
    printf(" V=%d, batch %d x %d items (%d used, max_len %d) on %s\n", (int)in->n_items, B, len,
           eff, in->max_len, sr_backend_describe(be));
    /* Warm up for at least WARMUP_NS (thread pool, caches, clocks), then time --reps runs. */
    for (uint64_t w0 = sr_now_ns(), wn = 0; wn < 1 || sr_now_ns() - w0 < WARMUP_NS; wn++) {
        if (sr_model_encode(m, &batch, vecs, &err) != SR_OK ||
            sr_model_recommend(m, &batch, k, idx, score, &err) != SR_OK) {
            sr__cli_fail(CMD, "warm-up: %s", err.msg);
            goto done;
        }
    }
    for (int rep = 0; rep < o->reps; rep++) {
        uint64_t t0 = sr_now_ns();
        if (sr_model_encode(m, &batch, vecs, &err) != SR_OK) {
            sr__cli_fail(CMD, "encode: %s", err.msg);
            goto done;
        }
        uint64_t t1 = sr_now_ns();
        if (sr_model_recommend(m, &batch, k, idx, score, &err) != SR_OK) {
            sr__cli_fail(CMD, "recommend: %s", err.msg);
            goto done;
        }
        if (rep >= 0) {
            times[rep] = (double)(t1 - t0) * 1e-9;
            rtimes[rep] = (double)(sr_now_ns() - t1) * 1e-9;
        }
    }
    for (int64_t i = 0; i < (int64_t)B * in->d_model; i++)
        if (!isfinite(vecs[i])) {
            sr__cli_fail(CMD, "encode produced a non-finite value (session %lld)",
                         (long long)(i / in->d_model));
            goto done;
        }
    double t = median(times, o->reps), rt = median(rtimes, o->reps);
    double flops = sr_model_encode_flops(m, (int64_t)B * eff, B);
    double sps = B / t, gflops = flops / t * 1e-9;
    printf("encode: median %.3f ms per batch (min %.3f, max %.3f over %d reps): %.0f sessions/s, "
           "%.1f GFLOP/s\n", t * 1e3, times[0] * 1e3, times[o->reps - 1] * 1e3, o->reps, sps, gflops);
    printf("encode + top-%d over %d items: median %.3f ms per batch: %.0f sessions/s\n", k,
           (int)(in->n_items - in->first_index), rt * 1e3, B / rt);
    printf("{\"bench\":\"model\",\"arch\":\"%s\",\"d\":%d,\"layers\":%d,", in->arch_name,
           in->d_model, in->n_layers);
    if (in->arch == SR_ARCH_GPT2)
        printf("\"heads\":%d,\"d_ff\":%d,", in->n_heads, in->d_ff);
    printf("\"len\":%d,\"items\":%d,\"batch\":%d,\"k\":%d,\"bundle\":", eff, (int)in->n_items, B, k);
    json_str(o->bundle ? o->bundle : "(synthetic)");
    printf(",\"device\":");
    json_str(sr_backend_name(be));
    printf(",\"backend\":");
    json_str(sr_backend_describe(be));
    printf(",\"reps\":%d,\"sessions_per_s\":%.1f,\"gflops\":%.2f,\"ms_per_batch\":%.4f,"
           "\"recommend_sessions_per_s\":%.1f}\n", o->reps, sps, gflops, t * 1e3, B / rt);
    rc = 0;
done:
    free(offsets);
    free(items);
    free(vecs);
    free(idx);
    free(score);
    free(times);
    free(rtimes);
    sr_model_unref(m);
    sr_backend_unref(be);
    sr_bundle_unref(bundle);
    fflush(stdout);
    return rc;
}

/* ---- incremental encoding ---------------------------------------------------------------- */

/* One timed sample of gpt2's cached path: `iters` times, an empty cache, the previous event's
 * encode (pre: the L-1 prefixes, untimed; NULL for L = 1) leaving its rows in the cache, then
 * the timed encode of the L-item batch. ns: the timed part only. The rows are warm in the CPU
 * caches (just written): a lower bound for a cache whose entries were written long ago. */
static sr_err_t cached_sample(sr_model_t *mc, size_t cbytes, const struct sr_session_batch *pre,
                              const struct sr_session_batch *full, float *vp, float *vc,
                              int iters, uint64_t *ns, struct sr_error *err)
{
    uint64_t t = 0;
    for (int i = 0; i < iters; i++) {
        sr_err_t e = sr_model_set_encode_cache(mc, cbytes, err);
        if (e == SR_OK && pre)
            e = sr_model_encode(mc, pre, vp, err);
        if (e != SR_OK)
            return e;
        uint64_t t0 = sr_now_ns();
        e = sr_model_encode(mc, full, vc, err);
        t += sr_now_ns() - t0;
        if (e != SR_OK)
            return e;
    }
    *ns = t;
    return SR_OK;
}

/* Per-event encode cost against session length: B sessions of L items, each the previous L-1
 * items plus one new event, encoded (a) from scratch as today (sr_model_encode) and (b) resumed
 * from the state the L-1 prefix left (gru4rec: sr_model_encode_resume) or through the encode
 * cache holding the L-1 prefix's rows (gpt2: a second model with sr_model_set_encode_cache);
 * the two must give the same bytes. Each timed sample repeats the call until a full-encode
 * sample lasts >= 2 ms; medians over --reps. */
static int bench_incremental(const struct bench_opts *o)
{
    struct sr_error err = {0};
    sr_bundle_t *bundle = NULL;
    if (model_bundle(o, &bundle))
        return 1;
    const struct sr_bundle_info *in = sr_bundle_info(bundle);
    sr_backend_t *be = NULL;
    sr_model_t *m = NULL, *mc = NULL;
    int rc = 1;
    const int B = o->batch, maxl = in->max_len, d = in->d_model;
    const bool gpt2 = in->arch == SR_ARCH_GPT2;
    /* the last length is past max_len (the window slides: a full encode either way) */
    const int lens[] = {1, 5, 10, 20, 50, gpt2 ? maxl + 1 : 100};
    int32_t *offs = NULL, *items = NULL, *poffs = NULL, *pit = NULL;
    float *vf = NULL, *vi = NULL;
    uint8_t *pst = NULL, *ost = NULL, *ok = NULL;
    const uint8_t **inp = NULL;
    uint32_t *inl = NULL;
    double *tf = NULL, *ti = NULL;
    if (make_backend(o, &be))
        goto done;
    if (sr_model_new(bundle, be, &m, &err) != SR_OK) {
        sr__cli_fail(CMD, "%s", err.msg);
        goto done;
    }
    size_t ssz = sr_model_state_size(m);
    /* gpt2: the cache holds every session of the batch at every length (3 × d floats per row
     * per layer), twice over */
    size_t cbytes = (size_t)2 * B * (size_t)(maxl + 1) * 3 * d * sizeof(float) *
                    (size_t)(in->n_layers ? in->n_layers : 1) + (64u << 10) * (size_t)B;
    if (gpt2) {
        if (sr_model_new(bundle, be, &mc, &err) != SR_OK ||
            sr_model_set_encode_cache(mc, cbytes, &err) != SR_OK) {
            sr__cli_fail(CMD, "%s", err.msg);
            goto done;
        }
    }
    const bool inc = ssz || mc;
    int Lmax = maxl + 1 > 100 ? maxl + 1 : 100;
    offs = malloc(sizeof *offs * (size_t)(B + 1));
    poffs = malloc(sizeof *poffs * (size_t)(B + 1));
    items = malloc(sizeof *items * (size_t)B * Lmax);
    vf = malloc(sizeof *vf * (size_t)B * d);
    vi = malloc(sizeof *vi * (size_t)B * d);
    pit = malloc(sizeof *pit * (size_t)B * Lmax);
    pst = malloc(ssz * (size_t)B + 1);
    ost = malloc(ssz * (size_t)B + 1);
    ok = malloc((size_t)B);
    inp = malloc(sizeof *inp * (size_t)B);
    inl = malloc(sizeof *inl * (size_t)B);
    tf = calloc((size_t)o->reps, sizeof *tf);
    ti = calloc((size_t)o->reps, sizeof *ti);
    if (!offs || !poffs || !items || !pit || !vf || !vi || !pst || !ost || !ok || !inp || !inl ||
        !tf || !ti) {
        sr__cli_fail(CMD, "out of memory for host buffers");
        goto done;
    }
    if (mc)
        printf("incremental: %s d=%d layers=%d heads=%d max_len %d, batch %d on %s; encode cache "
               "%zu bytes\n", in->arch_name, d, in->n_layers, in->n_heads, maxl, B,
               sr_backend_describe(be), cbytes);
    else
        printf("incremental: %s d=%d layers=%d max_len %d, batch %d on %s; state %zu "
               "bytes/session%s\n", in->arch_name, d, in->n_layers, maxl, B,
               sr_backend_describe(be), ssz, ssz ? "" : " (none: full recompute only)");
    printf("%6s %14s %14s %8s\n", "len", "full ns/event", mc ? "cached ns/ev" : "resumed ns/ev",
           "ratio");
    enum { NL = sizeof lens / sizeof lens[0] };
    double rf[NL], rr[NL];
    int32_t rres[NL];
    const uint64_t span = (uint64_t)(in->n_items - in->first_index);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int L = lens[li];
        for (int b = 0; b <= B; b++) {
            offs[b] = b * L;
            poffs[b] = b * L + (b ? -1 : 0); /* not used for L == 1 */
        }
        for (int64_t i = 0; i < (int64_t)B * L; i++)
            items[i] = in->first_index + (int32_t)(mix64(o->seed ^ mix64((uint64_t)i)) % span);
        struct sr_session_batch full = {.n = B, .offsets = offs, .items = items};
        /* the previous event: the first L-1 items of each session */
        for (int b = 0; b <= B; b++)
            poffs[b] = b * (L - 1);
        for (int b = 0; b < B && L > 1; b++)
            memcpy(pit + (size_t)b * (L - 1), items + (size_t)b * L, sizeof *pit * (L - 1));
        struct sr_session_batch pre = {.n = B, .offsets = poffs, .items = pit};
        /* gru4rec: the states it left */
        for (int b = 0; b < B; b++)
            inp[b] = NULL, inl[b] = 0;
        if (ssz && L > 1) {
            struct sr_encode_states ps = {.out = pst, .out_ok = ok};
            sr_err_t e = sr_model_encode_resume(m, &pre, &ps, vi, &err);
            if (e != SR_OK) {
                sr__cli_fail(CMD, "prefix: %s", err.msg);
                goto done;
            }
            for (int b = 0; b < B; b++)
                if (ok[b])
                    inp[b] = pst + (size_t)b * ssz, inl[b] = (uint32_t)ssz;
        }
        struct sr_encode_states st = {.in = inp, .in_len = inl, .out = ost, .out_ok = ok};
        /* calibrate: calls per sample so that one full-encode sample lasts >= 2 ms */
        int iters = 1;
        for (;;) {
            uint64_t t0 = sr_now_ns();
            for (int i = 0; i < iters; i++)
                if (sr_model_encode(m, &full, vf, &err) != SR_OK) {
                    sr__cli_fail(CMD, "encode: %s", err.msg);
                    goto done;
                }
            if (sr_now_ns() - t0 >= 2000000 || iters >= 1 << 20)
                break;
            iters *= 2;
        }
        int32_t resumed = 0;
        for (int rep = 0; rep < o->reps; rep++) {
            uint64_t t0 = sr_now_ns();
            for (int i = 0; i < iters; i++)
                sr_model_encode(m, &full, vf, &err);
            uint64_t t1 = sr_now_ns();
            if (ssz)
                for (int i = 0; i < iters; i++)
                    if (sr_model_encode_resume(m, &full, &st, vi, &err) != SR_OK) {
                        sr__cli_fail(CMD, "resume: %s", err.msg);
                        goto done;
                    }
            uint64_t t2 = sr_now_ns(), tc = t2 - t1;
            if (mc && cached_sample(mc, cbytes, L > 1 ? &pre : NULL, &full, vi, vi, iters, &tc,
                                    &err) != SR_OK) {
                sr__cli_fail(CMD, "cached encode: %s", err.msg);
                goto done;
            }
            tf[rep] = (double)(t1 - t0) / iters / B;
            ti[rep] = (double)tc / iters / B;
            resumed = st.resumed;
            if (mc) { /* sessions the timed call found in the cache */
                struct sr_encode_cache_stats cs;
                sr_model_encode_cache_stats(mc, &cs);
                resumed = (int32_t)cs.hits;
            }
        }
        if (inc && memcmp(vf, vi, sizeof *vf * (size_t)B * d) != 0) {
            sr__cli_fail(CMD, "len %d: %s vectors differ from the full encode", L,
                         mc ? "cached" : "resumed");
            goto done;
        }
        double f = median(tf, o->reps), r = inc ? median(ti, o->reps) : f;
        printf("%6d %14.0f %14.0f %7.1fx  (%d of %d %s%s)\n", L, f, r, f / r, resumed, B,
               mc ? "cached" : "resumed", L > maxl ? ", past max_len: recomputed" : "");
        rf[li] = f, rr[li] = r, rres[li] = resumed;
    }
    printf("{\"bench\":\"incremental\",\"arch\":\"%s\",\"d\":%d,\"layers\":%d,\"max_len\":%d,"
           "\"batch\":%d,\"backend\":", in->arch_name, d, in->n_layers, maxl, B);
    json_str(sr_backend_describe(be));
    printf(",\"reps\":%d,\"rows\":[", o->reps);
    for (int li = 0; li < NL; li++)
        printf("%s{\"len\":%d,\"full_ns\":%.0f,\"%s_ns\":%.0f,\"%s\":%d}", li ? "," : "",
               lens[li], rf[li], mc ? "cached" : "resumed", rr[li], mc ? "cached" : "resumed",
               rres[li]);
    printf("]}\n");
    rc = 0;
done:
    free(offs), free(poffs), free(items), free(pit), free(vf), free(vi), free(pst), free(ost);
    free(ok), free(inp), free(inl), free(tf), free(ti);
    sr_model_unref(mc);
    sr_model_unref(m);
    sr_backend_unref(be);
    sr_bundle_unref(bundle);
    fflush(stdout);
    return rc;
}

/* ---- command ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: streamrec bench retrieval --items N --dim D --batch B -k K [common]\n"
            "       streamrec bench e2e --bundle DIR ...   (online runtime end to end; e2e --help)\n"
            "       streamrec bench retrieval --mode faiss --factory F [--nprobe N] [--ef-search N]\n"
            "                             [--clusters C] [--train-sample N] (--items N --dim D |\n"
            "                             --bundle DIR) [--batch B] [-k K] [common]\n"
            "       streamrec bench model (--bundle DIR | --arch gpt2|gru4rec --d 64 --layers 2\n"
            "                             --heads 2 --len 50 [--d-ff F] [--items V]\n"
            "                             [--activation gelu_tanh|gelu|relu] [--output-bias])\n"
            "                             [--batch 256] [-k 10] [--incremental] [common]\n"
            "common: [--device auto|cpu|cuda] [--threads T] [--reps R] [--seed S] [--no-check]\n"
            "\n"
            "retrieval: exact top-k of B random queries over a random N x D table (no bundle).\n"
            "model: encode B random sessions of --len items (synthetic model or a bundle), and\n"
            "       encode + top-k. Defaults: --items 100000 (retrieval) / 10000 (model), --dim 64,\n"
            "       --batch 256, -k 10, --d 64, --layers 2, --heads 2, --d-ff 4*d, --len 50\n"
            "       (bundle: its max_len), --device cpu, --threads 0 (all cores), --reps 5.\n"
            "model --incremental: per-event encode cost (ns) at session lengths 1..50 and one\n"
            "       past max_len (gru4rec: 100), full recompute vs resumed from the previous\n"
            "       event's state (gru4rec) or through the encode cache holding the previous\n"
            "       event's rows (gpt2), cpu, checked byte for byte; --batch 1: an event at a time.\n"
            "Prints human lines, then one JSON line with queries_per_s or sessions_per_s,\n"
            "gflops and ms_per_batch (medians after one warm-up). retrieval checks queries 0-1\n"
            "against a naive scan unless --no-check.\n"
            "retrieval --mode faiss: recall@k against exact and queries/s of both, on a mixture of\n"
            "       --clusters Gaussians (default 1000; queries are items plus noise) or on a\n"
            "       bundle (queries: random sessions encoded by the model; its own index, or one\n"
            "       built with --factory). Defaults --nprobe 16, --ef-search 64, --train-sample\n"
            "       100000.\n");
}

int sr__cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "e2e")) /* its own options and help */
        return sr__bench_e2e(argc - 1, argv + 1);
    if (sr__cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2)
        return sr__cli_fail(CMD, "missing benchmark: retrieval or model (see --help)");
    const char *what = argv[1];
    bool retrieval = !strcmp(what, "retrieval");
    if (!retrieval && strcmp(what, "model"))
        return sr__cli_fail(CMD, "unknown benchmark '%s' (retrieval, model or e2e)", what);
    struct bench_opts o = {.device = "cpu", .threads = 0, .reps = 5, .batch = 256, .k = 10,
                           .seed = 42, .check = true, .items = retrieval ? 100000 : 10000,
                           .dim = 64, .d = 64, .layers = 2, .heads = 2, .len = 0,
                           .mode = "exact", .nprobe = 16, .ef_search = 64, .clusters = 1000,
                           .train_sample = 100000};
    bool items_set = false;
    int64_t seed = (int64_t)o.seed;
#define COMMON_OPTS                                                                                \
    SR__STR("--device", &o.device),                                                                \
    SR__INT("--threads", &o.threads, 0, 4096),                                                     \
    SR__INT("--reps", &o.reps, 1, 100000),                                                         \
    SR__INT("--batch", &o.batch, 1, 1 << 20),                                                      \
    SR__INT("-k|--k", &o.k, 1, 1024),                                                              \
    SR__I64("--seed", &seed, 0, INT64_MAX / 2),                                                    \
    SR__FLAG("--no-check", &no_check),                                                             \
    {.name = "--items", .type = SR__OPT_I64, .dst = &o.items, .min = 3, .max = INT32_MAX,          \
     .given = &items_set},                                                                         \
    SR__STR("--bundle", &o.bundle)
    bool no_check = false;
    const struct sr__opt retrieval_opts[] = {
        COMMON_OPTS,
        SR__INT("--dim", &o.dim, 1, 65536),
        SR__STR("--mode", &o.mode),
        SR__STR("--factory", &o.factory),
        SR__INT("--nprobe", &o.nprobe, 1, 1 << 20),
        SR__INT("--ef-search", &o.ef_search, 1, 1 << 20),
        SR__INT("--clusters", &o.clusters, 1, 1 << 24),
        SR__I64("--train-sample", &o.train_sample, 0, INT32_MAX),
        SR__OPT_END,
    };
    const struct sr__opt model_opts[] = {
        COMMON_OPTS,
        SR__STR("--arch", &o.arch),
        SR__STR("--activation", &o.act),
        SR__INT("--d|--dim", &o.d, 1, 65536),
        SR__INT("--layers", &o.layers, 1, 256),
        SR__INT("--heads", &o.heads, 1, 65536),
        SR__INT("--d-ff", &o.d_ff, 1, 1 << 20),
        SR__INT("--len", &o.len, 1, 1 << 16),
        SR__FLAG("--output-bias", &o.output_bias),
        SR__FLAG("--incremental", &o.incremental),
        SR__OPT_END,
    };
#undef COMMON_OPTS
    if (sr__cli_parse(retrieval ? CMD " retrieval" : CMD " model",
                      retrieval ? retrieval_opts : model_opts, argc - 1, argv + 1, NULL, 0, NULL))
        return 1;
    o.seed = (uint64_t)seed;
    o.check = !no_check;
    if (retrieval && !strcmp(o.mode, "faiss"))
        return bench_retrieval_faiss(&o);
    if (retrieval && strcmp(o.mode, "exact"))
        return sr__cli_fail(CMD, "--mode: '%s' is not exact or faiss", o.mode);
    if (retrieval && (o.bundle || o.factory))
        return sr__cli_fail(CMD, "--bundle / --factory need --mode faiss");
    if (retrieval)
        return bench_retrieval(&o);
    if (o.bundle && (o.arch || items_set))
        return sr__cli_fail(CMD, "model: --bundle excludes --arch and --items");
    if (!o.bundle && o.len == 0)
        o.len = 50;
    return o.incremental ? bench_incremental(&o) : bench_model(&o);
}
