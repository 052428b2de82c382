/* cmd_bench.c — `streamrec bench retrieval|model`: reproducible micro-benchmarks of exact top-k
 * and of the sequence encoders (issue 2, Performance). Inputs are random from a seed; every
 * figure is the median over --reps timed runs after one warm-up. Human lines first, then ONE
 * final JSON line that bench/compare.sh parses. Retrieval drives the backend's function table
 * directly (kernels_int.h) on a synthetic table, so no bundle is needed; the table is generated
 * and uploaded in chunks, so host memory stays O(chunk) besides the backend's copy. */
#include "cli.h"
#include "kernels_int.h"
#include "sr_kernels.h"

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
    /* model */
    const char *bundle, *arch, *act;
    int d, layers, heads, d_ff, len;
    bool output_bias;
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

/* "100000", "1e6", "1000000" -> integer in [lo, hi] */
static int parse_int64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v != floor(v) || v < (double)lo || v > (double)hi)
        return sr__cli_fail(CMD, "%s: '%s' is not an integer in %lld..%lld", opt, s, (long long)lo,
                            (long long)hi);
    *out = (int64_t)v;
    return 0;
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    int64_t v;
    if (parse_int64(opt, s, lo, hi, &v))
        return 1;
    *out = (int)v;
    return 0;
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
    const struct sr_backend_iface *ifc = be->iface;
    void *ctx = be->ctx;
    struct sr_error err = {0};
    int rc = 1;
    size_t table_bytes = (size_t)N * (size_t)D * sizeof(float);
    float *table = NULL, *q = NULL;
    float *chunk = malloc((size_t)CHUNK_ROWS * (size_t)D * sizeof(float));
    float *hq = malloc((size_t)B * (size_t)D * sizeof(float));
    int32_t *idx = malloc((size_t)B * (size_t)k * sizeof *idx);
    float *score = malloc((size_t)B * (size_t)k * sizeof *score);
    double *times = calloc((size_t)o->reps, sizeof *times);
    if (!chunk || !hq || !idx || !score || !times) {
        sr__cli_fail(CMD, "out of memory for host buffers");
        goto done;
    }
    table = ifc->alloc(ctx, table_bytes);
    q = ifc->alloc(ctx, (size_t)B * (size_t)D * sizeof(float));
    if (!table || !q) {
        sr__cli_fail(CMD, "%s: cannot allocate the %lld x %d table (%.1f MiB)", sr_backend_name(be),
                     (long long)N, D, (double)table_bytes / 1048576.0);
        goto done;
    }
    for (int64_t r0 = 0; r0 < N; r0 += CHUNK_ROWS) {
        int64_t rows = N - r0 < CHUNK_ROWS ? N - r0 : CHUNK_ROWS;
        for (int64_t i = 0; i < rows * D; i++)
            chunk[i] = rand_at(o->seed, (uint64_t)(r0 * D + i));
        if (ifc->upload(ctx, (char *)table + (size_t)r0 * (size_t)D * sizeof(float), chunk,
                        (size_t)rows * (size_t)D * sizeof(float), &err) != SR_OK) {
            sr__cli_fail(CMD, "upload of the table: %s", err.msg);
            goto done;
        }
    }
    for (int64_t i = 0; i < (int64_t)B * D; i++)
        hq[i] = rand_at(o->seed ^ 0x7175657279ull, (uint64_t)i);
    if (ifc->upload(ctx, q, hq, (size_t)B * (size_t)D * sizeof(float), &err) != SR_OK) {
        sr__cli_fail(CMD, "upload of the queries: %s", err.msg);
        goto done;
    }
    printf("retrieval: %lld items x %d dims, batch %d, k %d on %s\n", (long long)N, D, B, k,
           sr_backend_describe(be));
    for (int rep = -1; rep < o->reps; rep++) { /* rep -1: warm-up */
        uint64_t t0 = sr_now_ns();
        if (ifc->topk(ctx, q, B, table, NULL, D, 0, (int)N, NULL, NULL, k, idx, score, &err) != SR_OK) {
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
    if (table)
        ifc->free(ctx, table);
    if (q)
        ifc->free(ctx, q);
    free(chunk);
    free(hq);
    free(idx);
    free(score);
    free(times);
    sr_backend_unref(be);
    fflush(stdout);
    return rc;
}

/* ---- model ------------------------------------------------------------------------------- */

static int bench_model(const struct bench_opts *o)
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
    for (int rep = -1; rep < o->reps; rep++) {
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

/* ---- command ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: streamrec bench retrieval --items N --dim D --batch B -k K [common]\n"
            "       streamrec bench model (--bundle DIR | --arch gpt2|gru4rec --d 64 --layers 2\n"
            "                             --heads 2 --len 50 [--d-ff F] [--items V]\n"
            "                             [--activation gelu_tanh|gelu|relu] [--output-bias])\n"
            "                             [--batch 256] [-k 10] [common]\n"
            "common: [--device auto|cpu|cuda] [--threads T] [--reps R] [--seed S] [--no-check]\n"
            "\n"
            "retrieval: exact top-k of B random queries over a random N x D table (no bundle).\n"
            "model: encode B random sessions of --len items (synthetic model or a bundle), and\n"
            "       encode + top-k. Defaults: --items 100000 (retrieval) / 10000 (model), --dim 64,\n"
            "       --batch 256, -k 10, --d 64, --layers 2, --heads 2, --d-ff 4*d, --len 50\n"
            "       (bundle: its max_len), --device cpu, --threads 0 (all cores), --reps 5.\n"
            "Prints human lines, then one JSON line with queries_per_s or sessions_per_s,\n"
            "gflops and ms_per_batch (medians after one warm-up). retrieval checks queries 0-1\n"
            "against a naive scan unless --no-check.\n");
}

int sr__cmd_bench(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2)
        return sr__cli_fail(CMD, "missing benchmark: retrieval or model (see --help)");
    const char *what = argv[1];
    bool retrieval = !strcmp(what, "retrieval");
    if (!retrieval && strcmp(what, "model"))
        return sr__cli_fail(CMD, "unknown benchmark '%s' (retrieval or model)", what);
    struct bench_opts o = {.device = "cpu", .threads = 0, .reps = 5, .batch = 256, .k = 10,
                           .seed = 42, .check = true, .items = retrieval ? 100000 : 10000,
                           .dim = 64, .d = 64, .layers = 2, .heads = 2, .len = 0};
    bool items_set = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        int bad = 0;
#define NEEDV()                                                                                   \
    do {                                                                                          \
        if (!v)                                                                                   \
            return sr__cli_fail(CMD, "%s needs a value", a);                                      \
        i++;                                                                                      \
    } while (0)
        if (!strcmp(a, "--device")) {
            NEEDV();
            o.device = v;
        } else if (!strcmp(a, "--threads")) {
            NEEDV();
            bad = parse_int(a, v, 0, 4096, &o.threads);
        } else if (!strcmp(a, "--reps")) {
            NEEDV();
            bad = parse_int(a, v, 1, 100000, &o.reps);
        } else if (!strcmp(a, "--batch")) {
            NEEDV();
            bad = parse_int(a, v, 1, 1 << 20, &o.batch);
        } else if (!strcmp(a, "-k") || !strcmp(a, "--k")) {
            NEEDV();
            bad = parse_int(a, v, 1, 1024, &o.k);
        } else if (!strcmp(a, "--seed")) {
            NEEDV();
            bad = parse_int64(a, v, 0, INT64_MAX / 2, &x);
            o.seed = (uint64_t)x;
        } else if (!strcmp(a, "--no-check")) {
            o.check = false;
        } else if (!strcmp(a, "--items")) {
            NEEDV();
            bad = parse_int64(a, v, 3, INT32_MAX, &o.items);
            items_set = true;
        } else if (retrieval && !strcmp(a, "--dim")) {
            NEEDV();
            bad = parse_int(a, v, 1, 65536, &o.dim);
        } else if (!retrieval && !strcmp(a, "--bundle")) {
            NEEDV();
            o.bundle = v;
        } else if (!retrieval && !strcmp(a, "--arch")) {
            NEEDV();
            o.arch = v;
        } else if (!retrieval && !strcmp(a, "--activation")) {
            NEEDV();
            o.act = v;
        } else if (!retrieval && (!strcmp(a, "--d") || !strcmp(a, "--dim"))) {
            NEEDV();
            bad = parse_int(a, v, 1, 65536, &o.d);
        } else if (!retrieval && !strcmp(a, "--layers")) {
            NEEDV();
            bad = parse_int(a, v, 1, 256, &o.layers);
        } else if (!retrieval && !strcmp(a, "--heads")) {
            NEEDV();
            bad = parse_int(a, v, 1, 65536, &o.heads);
        } else if (!retrieval && !strcmp(a, "--d-ff")) {
            NEEDV();
            bad = parse_int(a, v, 1, 1 << 20, &o.d_ff);
        } else if (!retrieval && !strcmp(a, "--len")) {
            NEEDV();
            bad = parse_int(a, v, 1, 1 << 16, &o.len);
        } else if (!retrieval && !strcmp(a, "--output-bias")) {
            o.output_bias = true;
        } else {
            return sr__cli_fail(CMD, "%s: unknown option '%s' (see --help)", what, a);
        }
#undef NEEDV
        if (bad)
            return 1;
    }
    if (retrieval)
        return bench_retrieval(&o);
    if (o.bundle && (o.arch || items_set))
        return sr__cli_fail(CMD, "model: --bundle excludes --arch and --items");
    if (!o.bundle && o.len == 0)
        o.len = 50;
    return bench_model(&o);
}
