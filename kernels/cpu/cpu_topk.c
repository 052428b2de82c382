/* cpu_topk.c — exact top-k retrieval on the cpu backend. The catalogue rows first..V-1 are
 * scored in tiles: one single-threaded sgemm per (query block × tile) into a small per-worker
 * scratch that stays in L2, bias and exclusions applied in place, then a scan that checks
 * 16 scores at a time against each query's current k-th score and inserts the rare winners
 * into a sorted list. The B×V matrix never exists. Workers take tiles in increasing order,
 * each keeping its own lists (equal scores keep the lower index because a worker sees indices
 * in increasing order); the lists are merged by (score desc, index asc) at the end.
 * Thread: the caller drives; the pool runs tiles (OpenBLAS is single-threaded in each). */
#include "cpu_int.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Scratch budget per worker for the B×tile score block (bytes): half of a 1 MiB L2. */
#define SR_TOPK_SCRATCH_BYTES (384 * 1024)
#define SR_TOPK_QBLOCK 256
#define SR_TOPK_CHUNK 16

struct excl_pair {
    int32_t item, query;
};

struct topk_job {
    struct sr__cpu *c;
    const float *q, *table, *bias;
    int B, d, first, V, k, tile, qblock;
    const struct excl_pair *pairs;
    int n_pairs;
    float *lscore;   /* [threads][B][k] */
    int32_t *lidx;   /* [threads][B][k] */
    bool oom;
};

static int pair_cmp(const void *a, const void *b)
{
    const struct excl_pair *x = a, *y = b;
    if (x->item != y->item)
        return x->item < y->item ? -1 : 1;
    return (x->query > y->query) - (x->query < y->query);
}

/* First pair with item >= v. */
static int pair_lower(const struct excl_pair *p, int n, int32_t v)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (p[mid].item < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Inserts (s, j) into the descending list; s is known to beat sc[k-1]. Equal scores stay
 * ahead of the newcomer, whose index is higher than every index already seen. */
static inline void list_insert(float *sc, int32_t *ix, int k, float s, int32_t j)
{
    int p = k - 1;
    while (p > 0 && sc[p - 1] < s) {
        sc[p] = sc[p - 1];
        ix[p] = ix[p - 1];
        p--;
    }
    sc[p] = s;
    ix[p] = j;
}

static void topk_tile(void *arg, int t, int w)
{
    struct topk_job *J = arg;
    int64_t j0 = (int64_t)J->first + (int64_t)t * J->tile;
    int64_t j1 = j0 + J->tile < J->V ? j0 + J->tile : J->V;
    int tn = (int)(j1 - j0), d = J->d, k = J->k;
    float *S = sr__cpu_scratch(J->c, w, sizeof(float) * (size_t)J->qblock * J->tile);
    if (!S) {
        J->oom = true;
        return;
    }
    float *lscore = J->lscore + (size_t)w * J->B * k;
    int32_t *lidx = J->lidx + (size_t)w * J->B * k;
    int pstart = J->n_pairs ? pair_lower(J->pairs, J->n_pairs, (int32_t)j0) : 0;
    for (int b0 = 0; b0 < J->B; b0 += J->qblock) {
        int bn = J->B - b0 < J->qblock ? J->B - b0 : J->qblock;
        /* with a bias, S starts as the bias rows and the GEMM accumulates onto them */
        if (J->bias)
            for (int r = 0; r < bn; r++)
                memcpy(S + (size_t)r * tn, J->bias + j0, sizeof(float) * tn);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, tn, d, 1.0f,
                    J->q + (size_t)b0 * d, d, J->table + (size_t)j0 * d, d,
                    J->bias ? 1.0f : 0.0f, S, tn);
        for (int p = pstart; p < J->n_pairs && J->pairs[p].item < j1; p++) {
            int qq = J->pairs[p].query;
            if (qq >= b0 && qq < b0 + bn)
                S[(size_t)(qq - b0) * tn + (J->pairs[p].item - j0)] = -INFINITY;
        }
        for (int r = 0; r < bn; r++) {
            const float *row = S + (size_t)r * tn;
            float *sc = lscore + (size_t)(b0 + r) * k;
            int32_t *ix = lidx + (size_t)(b0 + r) * k;
            float thr = sc[k - 1];
            int x = 0;
            for (; x + SR_TOPK_CHUNK <= tn; x += SR_TOPK_CHUNK) {
                v4f m = v4_max(v4_max(v4_load(row + x), v4_load(row + x + 4)),
                               v4_max(v4_load(row + x + 8), v4_load(row + x + 12)));
                v4i gt = m > v4_splat(thr);
                if (!(gt[0] | gt[1] | gt[2] | gt[3]))
                    continue;
                for (int u = 0; u < SR_TOPK_CHUNK; u++)
                    if (row[x + u] > thr) {
                        list_insert(sc, ix, k, row[x + u], (int32_t)(j0 + x + u));
                        thr = sc[k - 1];
                    }
            }
            for (; x < tn; x++)
                if (row[x] > thr) {
                    list_insert(sc, ix, k, row[x], (int32_t)(j0 + x));
                    thr = sc[k - 1];
                }
        }
    }
}

/* a ranks before b: higher score, then lower index; padding (-1) last. */
static inline bool ranks_before(float as, int32_t ai, float bs, int32_t bi)
{
    if (ai < 0)
        return false;
    if (bi < 0)
        return true;
    if (as != bs)
        return as > bs;
    return ai < bi;
}

sr_err_t sr__cpu_topk(void *ctx, const float *q, int B, const float *table, const float *bias,
                      int d, int first, int V, const int32_t *excl_offsets,
                      const int32_t *excl_items, int k, int32_t *host_idx, float *host_score,
                      struct sr_error *err)
{
    struct sr__cpu *c = ctx;
    if (B < 0 || d <= 0 || k < 0 || first < 0 || V < 0)
        return sr_error_set(err, SR_EINVAL, "cpu topk: bad shape B=%d d=%d k=%d first=%d V=%d",
                            B, d, k, first, V);
    if (B == 0 || k == 0)
        return SR_OK;
    for (size_t i = 0; i < (size_t)B * k; i++) {
        host_idx[i] = -1;
        host_score[i] = -INFINITY;
    }
    if (first >= V)
        return SR_OK;

    int threads = c->threads;
    int n_pairs = 0;
    if (excl_offsets) {
        if (excl_offsets[B] < excl_offsets[0])
            return sr_error_set(err, SR_EINVAL, "cpu topk: exclusion offsets decrease");
        for (int b = 0; b < B; b++)
            if (excl_offsets[b + 1] < excl_offsets[b])
                return sr_error_set(err, SR_EINVAL,
                                    "cpu topk: exclusion offsets decrease at session %d", b);
        n_pairs = excl_offsets[B] - excl_offsets[0];
    }
    size_t lists = (size_t)threads * B * k;
    size_t need = lists * (sizeof(float) + sizeof(int32_t)) + (size_t)n_pairs * sizeof(struct excl_pair);
    if (need > c->topk_cap) {
        void *p = realloc(c->topk_buf, need);
        if (!p)
            return sr_error_set(err, SR_ENOMEM, "cpu topk: out of memory for %zu bytes", need);
        c->topk_buf = p;
        c->topk_cap = need;
    }
    struct topk_job J = {.c = c, .q = q, .table = table, .bias = bias, .B = B, .d = d,
                         .first = first, .V = V, .k = k};
    J.lscore = c->topk_buf;
    J.lidx = (int32_t *)(J.lscore + lists);
    struct excl_pair *pairs = (struct excl_pair *)(J.lidx + lists);
    for (size_t i = 0; i < lists; i++) {
        J.lscore[i] = -INFINITY;
        J.lidx[i] = -1;
    }
    if (n_pairs) {
        int np = 0;
        for (int b = 0; b < B; b++)
            for (int32_t e = excl_offsets[b]; e < excl_offsets[b + 1]; e++) {
                int32_t it = excl_items[e];
                if (it >= first && it < V)
                    pairs[np++] = (struct excl_pair){it, b};
            }
        qsort(pairs, (size_t)np, sizeof *pairs, pair_cmp);
        n_pairs = np;
    }
    J.pairs = pairs;
    J.n_pairs = n_pairs;

    /* Tile: the score block qblock×tile fits the scratch budget; a multiple of the chunk. */
    J.qblock = B < SR_TOPK_QBLOCK ? B : SR_TOPK_QBLOCK;
    int tile = (int)(SR_TOPK_SCRATCH_BYTES / sizeof(float) / (size_t)J.qblock);
    tile = tile / 64 * 64;
    if (tile < 64)
        tile = 64;
    if (tile > 16384)
        tile = 16384;
    int64_t n = (int64_t)V - first;
    /* enough tiles to keep every worker busy */
    while (tile > 64 && (n + tile - 1) / tile < threads * 4)
        tile /= 2;
    J.tile = tile;
    int n_tiles = (int)((n + tile - 1) / tile);

    sr__cpu_parallel(c, n_tiles, topk_tile, &J);
    if (J.oom)
        return sr_error_set(err, SR_ENOMEM, "cpu topk: out of memory for a %d×%d tile",
                            J.qblock, tile);

    /* merge the per-worker lists */
    for (int b = 0; b < B; b++) {
        int pos[256];
        int nw = threads < 256 ? threads : 256;
        for (int w = 0; w < nw; w++)
            pos[w] = 0;
        for (int r = 0; r < k; r++) {
            int best = -1;
            float bs = -INFINITY;
            int32_t bi = -1;
            for (int w = 0; w < nw; w++) {
                if (pos[w] >= k)
                    continue;
                size_t o = ((size_t)w * B + b) * k + pos[w];
                if (best < 0 || ranks_before(J.lscore[o], J.lidx[o], bs, bi)) {
                    best = w;
                    bs = J.lscore[o];
                    bi = J.lidx[o];
                }
            }
            if (best < 0 || bi < 0)
                break;
            pos[best]++;
            host_idx[(size_t)b * k + r] = bi;
            host_score[(size_t)b * k + r] = bs;
        }
    }
    return SR_OK;
}
