/* cmd_score.c — `streamrec score BUNDLE [-k K] [--batch N] [--device D] [--threads N]
 * [--retrieval auto|exact|faiss] [--nprobe N] [--ef-search N]`:
 * JSON lines {"items": [...]} (oldest first) on stdin, one {"items": [...], "scores": [...]}
 * per line on stdout, the raw model top-k (nothing excluded), in input order. Sessions are
 * scored in micro-batches of N; unknown item ids map to the bundle's oov_index. A bad line
 * stops the command with "line N: reason" and exit 1, after the lines before it are written. */
#include "cli.h"
#include "sr_kernels.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f)
{
    fprintf(f,
            "usage: streamrec score BUNDLE [-k K] [--batch N] [--device auto|cpu|cuda] [--threads N]\n"
            "\n"
            "Reads JSON lines {\"items\": [\"id\", ...]} (oldest first) on stdin and writes one line\n"
            "{\"items\": [...], \"scores\": [...]} per session: the model's top-K items.\n"
            "\n"
            "  -k K             items per session (default 10)\n"
            "  --batch N        sessions per micro-batch (default 256)\n"
            "  --device D       auto (CUDA when present), cpu or cuda (default auto)\n"
            "  --threads N      cpu worker threads (default: all cores)\n"
            "  --retrieval M    auto (the bundle's FAISS index when it has one), exact or faiss\n"
            "                   (default auto)\n"
            "  --nprobe N       FAISS IVF lists probed per query (default 16)\n"
            "  --ef-search N    FAISS HNSW search depth (default 64)\n");
    return f == stdout ? 0 : 2;
}

/* Growable buffers reused across batches. */
struct score_buf {
    int32_t *offsets, *items;
    size_t cap_off, cap_items;
    int32_t n;
    int32_t *idx;
    float *score;
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

static void put_json_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static int flush_batch(sr_model_t *m, const sr_bundle_t *b, struct score_buf *buf, int k, FILE *out)
{
    if (buf->n == 0)
        return 0;
    struct sr_session_batch batch = {.n = buf->n, .offsets = buf->offsets, .items = buf->items};
    struct sr_error err;
    if (sr_model_recommend(m, &batch, k, buf->idx, buf->score, &err) != SR_OK)
        return sr__cli_fail("score", "%s", err.msg);
    for (int32_t s = 0; s < buf->n; s++) {
        const int32_t *ix = buf->idx + (size_t)s * k;
        const float *sc = buf->score + (size_t)s * k;
        int n = 0;
        while (n < k && ix[n] >= 0)
            n++;
        fputs("{\"items\": [", out);
        for (int r = 0; r < n; r++) {
            size_t len = 0;
            const char *id = sr_bundle_item_id(b, ix[r], &len);
            if (r)
                fputs(", ", out);
            put_json_string(out, id ? id : "", id ? len : 0);
        }
        fputs("], \"scores\": [", out);
        for (int r = 0; r < n; r++)
            fprintf(out, "%s%.9g", r ? ", " : "", (double)sc[r]);
        fputs("]}\n", out);
    }
    buf->n = 0;
    if (ferror(out))
        return sr__cli_fail("score", "writing output: %s", strerror(errno));
    return 0;
}

/* Parses one input line into the batch; returns NULL or a static reason. */
static const char *parse_line(const sr_bundle_t *b, const char *line, size_t len,
                              struct score_buf *buf, char *why, size_t whylen)
{
    json_error_t je;
    json_t *root = json_loadb(line, len, 0, &je);
    if (!root) {
        snprintf(why, whylen, "invalid JSON: %s (column %d)", je.text, je.column);
        return why;
    }
    const char *r = NULL;
    json_t *items = json_object_get(root, "items");
    if (!json_is_object(root))
        r = "expected a JSON object";
    else if (!items)
        r = "missing field \"items\"";
    else if (!json_is_array(items))
        r = "\"items\" must be an array of strings";
    else if (json_array_size(items) == 0)
        r = "\"items\" is empty";
    if (r) {
        json_decref(root);
        return r;
    }
    size_t n = json_array_size(items);
    size_t base = buf->n ? (size_t)buf->offsets[buf->n] : 0;
    if (base + n > INT32_MAX || !grow((void **)&buf->items, &buf->cap_items, base + n, sizeof(int32_t)) ||
        !grow((void **)&buf->offsets, &buf->cap_off, (size_t)buf->n + 2, sizeof(int32_t))) {
        json_decref(root);
        return "out of memory";
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        if (!json_is_string(it)) {
            snprintf(why, whylen, "items[%zu] is not a string", i);
            json_decref(root);
            return why;
        }
        buf->items[base + i] = sr_bundle_item_index(b, json_string_value(it), json_string_length(it));
    }
    buf->offsets[buf->n] = (int32_t)base;
    buf->offsets[buf->n + 1] = (int32_t)(base + n);
    buf->n++;
    json_decref(root);
    return NULL;
}

int sr__cmd_score(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv))
        return usage(stdout);
    const char *dir = NULL, *device = "auto";
    const char *retrieval = "auto";
    int k = 10, batch = 256, threads = 0, nprobe = 16, ef_search = 64, n_pos = 0;
    const struct sr__opt opts[] = {
        SR__INT("-k", &k, 1, 100000),
        SR__INT("--batch", &batch, 1, 1000000),
        SR__INT("--threads", &threads, 0, 256),
        SR__INT("--nprobe", &nprobe, 1, 1 << 20),
        SR__INT("--ef-search", &ef_search, 1, 1 << 20),
        SR__STR("--device", &device),
        SR__STR("--retrieval", &retrieval),
        SR__OPT_END,
    };
    if (sr__cli_parse("score", opts, argc, argv, &dir, 1, &n_pos))
        return 1;
    if (!dir)
        return sr__cli_fail("score", "missing BUNDLE (see streamrec score --help)");

    struct sr_error err;
    struct sr_backend_params bp = {.threads = threads};
    if (sr_device_parse(device, &bp.device, &err) != SR_OK)
        return sr__cli_fail("score", "%s", err.msg);
    struct sr_retrieval_params rp = {.nprobe = nprobe, .ef_search = ef_search};
    if (sr_retrieval_mode_parse(retrieval, &rp.mode, &err) != SR_OK)
        return sr__cli_fail("score", "--retrieval: %s", err.msg);
    sr_bundle_t *b = NULL;
    sr_backend_t *be = NULL;
    sr_model_t *m = NULL;
    if (sr_bundle_load(dir, &b, &err) != SR_OK)
        return sr__cli_fail("score", "%s", err.msg);
    int rc = 0;
    if (sr_backend_new(&bp, &be, &err) != SR_OK || sr_model_new(b, be, &m, &err) != SR_OK ||
        sr_model_set_retrieval(m, &rp, &err) != SR_OK) {
        rc = sr__cli_fail("score", "%s", err.msg);
        goto out;
    }
    sr_log(SR_LOG_INFO, "score", "model loaded", "bundle=%s version=%s backend=\"%s\" retrieval=\"%s\"",
           dir, sr_bundle_info(b)->version, sr_backend_describe(be), sr_model_retrieval_name(m));

    struct score_buf buf = {0};
    buf.idx = malloc(sizeof(int32_t) * (size_t)batch * k);
    buf.score = malloc(sizeof(float) * (size_t)batch * k);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    if (!buf.idx || !buf.score) {
        rc = sr__cli_fail("score", "out of memory for a batch of %d×%d", batch, k);
        goto done;
    }
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        char why[256];
        const char *bad = parse_line(b, line, (size_t)len, &buf, why, sizeof why);
        if (bad) {
            if ((rc = flush_batch(m, b, &buf, (int)k, stdout)) == 0) {
                fflush(stdout);
                rc = sr__cli_fail("score", "line %ld: %s", lineno, bad);
            }
            goto done;
        }
        if (buf.n == batch && (rc = flush_batch(m, b, &buf, (int)k, stdout)) != 0)
            goto done;
    }
    rc = flush_batch(m, b, &buf, (int)k, stdout);
    if (rc == 0 && fflush(stdout) != 0)
        rc = sr__cli_fail("score", "writing output: %s", strerror(errno));
done:
    free(line);
    free(buf.offsets);
    free(buf.items);
    free(buf.idx);
    free(buf.score);
out:
    sr_model_unref(m);
    sr_backend_unref(be);
    sr_bundle_unref(b);
    return rc;
}
