/* op_sample.c — `sample`, exploration (DESIGN §4.8):
 *   recs.sampling=softmax (Merlin's SoftmaxSampling): from each row's top
 *     recs.sampling.candidates (retrieve returns that many, rules applied), draws recs.k items
 *     without replacement with probability softmax(score / temperature), in draw order;
 *   recs.sampling=epsilon: each of the k slots, with probability recs.sampling.epsilon, holds a
 *     random eligible item instead of the model's (uniform over the catalogue items the static
 *     rules and the row's exclusions allow and the list does not hold; score 0, source random).
 * The random stream of a row is seeded by (session id, event offset, model version), so a
 * replay, a duplicate after a crash and any batching draw the same items. Owns nothing but its
 * parsed settings; runs on the graph's thread. */
#include "ops_int.h"
#include "sr_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sample_ctx {
    bool epsilon_mode;
    double temperature;
    double epsilon;
    const char *version;
};

/* A uniform double in (0, 1) from the stream. */
static double uniform(uint64_t *s);

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t sr__sample_seed(const char *session, uint32_t len, int64_t offset, const char *version)
{
    uint64_t h = sr_hash64(session, len);
    h ^= sr_hash64(version, strlen(version)) * 0x9E3779B97F4A7C15ULL;
    uint64_t o = (uint64_t)offset;
    return h ^ splitmix64(&o);
}

struct keyed {
    double key;
    int32_t pos;
};

static int keyed_cmp(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return x->pos - y->pos;
}

static double uniform(uint64_t *s)
{
    return ((double)(splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
}

void sr__sample_softmax(const float *scores, int32_t n, int32_t k, double temperature,
                        uint64_t seed, int32_t *out)
{
    struct keyed buf[256], *ks = n <= 256 ? buf : malloc(sizeof *ks * (size_t)n);
    if (!ks) { /* no memory for the keys: the top k, unsampled but valid */
        for (int32_t i = 0; i < k && i < n; i++)
            out[i] = i;
        return;
    }
    uint64_t s = seed;
    for (int32_t i = 0; i < n; i++) {
        double u = uniform(&s); /* 53 random bits, never 0 */
        ks[i] = (struct keyed){.key = (double)scores[i] / temperature - log(-log(u)), .pos = i};
    }
    qsort(ks, (size_t)n, sizeof *ks, keyed_cmp);
    for (int32_t i = 0; i < k && i < n; i++)
        out[i] = ks[i].pos;
    if (ks != buf)
        free(ks);
}

sr_err_t sr__cfg_number(const sr_config_t *cfg, const char *key, double lo, double hi,
                        bool lo_open, double *out, struct sr_error *err)
{
    const char *v = sr_config_get(cfg, key);
    char *end = NULL;
    double x = v && *v ? strtod(v, &end) : NAN;
    if (!end || *end || !isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
        return sr_error_set(err, SR_ECONFIG, "%s=%s: expected a number in %s%g, %g]", key,
                            v ? v : "", lo_open ? "(" : "[", lo, hi);
    *out = x;
    return SR_OK;
}

static sr_err_t sample_init(struct sr_op_env *env, const char *prefix, void **ctx,
                            struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct sample_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    const char *mode = sr_config_get(env->cfg, "recs.sampling");
    c->epsilon_mode = mode && !strcmp(mode, "epsilon");
    sr_err_t rc = c->epsilon_mode
                      ? sr__cfg_number(env->cfg, "recs.sampling.epsilon", 0, 1, false, &c->epsilon, err)
                      : sr__cfg_number(env->cfg, "recs.sampling.temperature", 0, 1e9, true,
                               &c->temperature, err);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    c->version = sr_bundle_info(env->bundle)->version;
    *ctx = c;
    sr__port_in(ports, SR_C_SESSION, SR_COL_STR, false);
    sr__port_in(ports, SR_C_REC_ITEMS, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_REC_SCORES, SR_COL_LIST_F32, false);
    sr__port_in(ports, SR_C_EXCLUDE, SR_COL_LIST_I32, true);
    sr__port_out(ports, SR_C_REC_ITEMS, SR_COL_LIST_I32);
    sr__port_out(ports, SR_C_REC_SCORES, SR_COL_LIST_F32);
    if (c->epsilon_mode)
        sr__port_out(ports, SR_C_REC_SOURCES, SR_COL_LIST_I32);
    return SR_OK;
}

/* A random eligible item for one slot: allowed by the static rules, not excluded for the row,
 * not in the list (row[0..n)); -1 after 64 misses (a catalogue nearly all ruled out keeps the
 * model's item). */
static int32_t random_item(const struct sr_op_env *env, uint64_t *s, const int32_t *ex, int32_t nex,
                           const int32_t *row, int32_t n)
{
    const struct sr_bundle_info *bi = sr_bundle_info(env->bundle);
    uint64_t span = (uint64_t)(bi->n_items - bi->first_index);
    for (int t = 0; t < 64 && span; t++) {
        int32_t j = bi->first_index + (int32_t)(splitmix64(s) % span);
        bool ok = !env->item_allowed || env->item_allowed[j];
        for (int32_t q = 0; ok && q < nex; q++)
            ok = ex[q] != j;
        for (int32_t q = 0; ok && q < n; q++)
            ok = row[q] != j;
        if (ok)
            return j;
    }
    return -1;
}

static sr_err_t sample_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                           struct sr_error *err)
{
    struct sample_ctx *c = ctx;
    const int32_t k = env->k;
    struct sr_col *ri = sr_batch_col(b, SR_C_REC_ITEMS), *rs = sr_batch_col(b, SR_C_REC_SCORES);
    struct sr_col *sess = sr_batch_col(b, SR_C_SESSION);
    const int64_t *off = sr_batch_col(b, SR_C_SRC_OFFSET)->data;
    const char **sid = sess->data;
    int32_t rows = 0;
    for (int32_t r = 0; r < b->n; r++)
        rows += ri->offsets[r + 1] > ri->offsets[r];
    struct sr_col *oi, *os, *osrc = NULL, *ex = sr_batch_col(b, SR_C_EXCLUDE);
    sr_err_t rc = sr_batch_add(b, "sample.items", SR_COL_LIST_I32, (int64_t)rows * k, &oi, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, "sample.scores", SR_COL_LIST_F32, (int64_t)rows * k, &os, err);
    if (rc == SR_OK && c->epsilon_mode)
        rc = sr_batch_add(b, SR_C_REC_SOURCES, SR_COL_LIST_I32, (int64_t)rows * k, &osrc, err);
    int32_t *pick = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)k, 16);
    float *pool = sr_arena_alloc(b->arena, sizeof(float) * (size_t)env->k_retrieve, 16);
    int32_t *pidx = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)env->k_retrieve, 16);
    if (rc == SR_OK && (!pick || !pool || !pidx))
        rc = sr_error_set(err, SR_ENOMEM, "sample: out of memory");
    if (rc != SR_OK)
        return rc;
    const int32_t *in_i = ri->data;
    const float *in_s = rs->data;
    int32_t *out_i = oi->data, pos = 0;
    float *out_s = os->data;
    for (int32_t r = 0; r < b->n; r++) {
        int32_t lo = ri->offsets[r], hi = ri->offsets[r + 1];
        oi->offsets[r + 1] = os->offsets[r + 1] = pos;
        if (osrc)
            osrc->offsets[r + 1] = pos;
        if (hi <= lo)
            continue;
        uint64_t seed = sr__sample_seed(sid[r], sess->lens[r], off[r], c->version);
        if (c->epsilon_mode) {
            const int32_t *exr = ex ? (const int32_t *)ex->data + ex->offsets[r] : NULL;
            int32_t nex = ex ? ex->offsets[r + 1] - ex->offsets[r] : 0, base = pos;
            int32_t *src = osrc->data;
            for (int32_t j = lo; j < hi; j++) {
                int32_t it = -1;
                if (uniform(&seed) < c->epsilon) /* this slot explores */
                    it = random_item(env, &seed, exr, nex, in_i + lo, hi - lo);
                if (it >= 0)
                    for (int32_t q = base; q < pos && it >= 0; q++)
                        it = out_i[q] == it ? -1 : it;
                out_i[pos] = it >= 0 ? it : in_i[j];
                out_s[pos] = it >= 0 ? 0.0f : in_s[j];
                src[pos++] = it >= 0 ? SR__REC_RANDOM : SR__REC_MODEL;
            }
            oi->offsets[r + 1] = os->offsets[r + 1] = osrc->offsets[r + 1] = pos;
            continue;
        }
        int32_t m = 0; /* the pool: valid candidates, in rank order */
        for (int32_t j = lo; j < hi; j++)
            if (in_i[j] >= 0) {
                pidx[m] = in_i[j];
                pool[m++] = in_s[j];
            }
        sr__sample_softmax(pool, m, k, c->temperature, seed, pick);
        for (int32_t j = 0; j < k; j++) {
            out_i[pos] = j < m ? pidx[pick[j]] : -1;
            out_s[pos++] = j < m ? pool[pick[j]] : 0;
        }
        oi->offsets[r + 1] = os->offsets[r + 1] = pos;
    }
    /* the draws replace the pool (the columns keep the names later ops read) */
    ri->name = "sample.pool_items";
    rs->name = "sample.pool_scores";
    oi->name = SR_C_REC_ITEMS;
    os->name = SR_C_REC_SCORES;
    return SR_OK;
}

static void sample_fini(void *ctx) { free(ctx); }

const struct sr_op_desc sr__op_sample = {
    .name = "sample",
    .help = "recs.sampling: softmax draws recs.k of the top recs.sampling.candidates by softmax "
            "of score / temperature; epsilon puts random eligible items in a share of slots; "
            "seeded by (session, offset, model version)",
    .init = sample_init,
    .run = sample_run,
    .fini = sample_fini,
};
