/* gen.c — the synthetic event generator (model described in sr_gen.h) and the YooChoose /
 * Diginetica click-log reader.
 *
 * Owns: the catalogue (ids, categories, popularity CDFs), the successor table, the per-session
 * lengths and a min-heap of open sessions keyed by (next event time, session number), which
 * merges the sessions into one time-ordered stream. All randomness comes from one xoshiro256**
 * stream seeded by splitmix64(seed), consumed in a fixed order, so output depends only on the
 * parameters. Single-threaded. */
#include "sr_gen.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers --------------------------------------------------------------------- */

struct rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_u64(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static double rng_unit(struct rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }

/* Uniform in [0, n), n > 0 (Lemire's multiply; the tiny bias is irrelevant here). */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_u64(r) * n) >> 64);
}

/* Exponential with mean 1. */
static double rng_exp(struct rng *r) { return -log1p(-rng_unit(r)); }

/* Index i in [0, n) with cdf[i-1] <= u*cdf[n-1] < cdf[i] (cdf strictly cumulative). */
static int64_t cdf_pick(const double *cdf, int64_t n, double u)
{
    double x = u * cdf[n - 1];
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- the generator ---------------------------------------------------------------------- */

enum next_kind { NEXT_STEP = 0, NEXT_CART, NEXT_PURCHASE, NEXT_WISHLIST };

struct session {
    int64_t time_ms; /* time of its next event */
    int64_t num;     /* session number (arrival order) */
    int64_t user;    /* -1: anonymous */
    int64_t item;    /* current item (-1 before the first event) */
    int64_t left;    /* events still to emit */
    int32_t interest; /* category of the first item */
    int32_t next;     /* enum next_kind */
};

struct sr_gen {
    struct sr_gen_params p;
    char prefix[32];
    struct rng rng;
    int64_t M, N, E;
    int32_t C, K;
    /* catalogue */
    char *id_block;       /* "i0\0i1\0..." */
    int64_t *id_off;      /* [M] */
    char *cat_block;      /* "c0\0c1\0..." */
    int32_t *cat_off;     /* [C] */
    int32_t *cat;         /* [M] category of each item */
    uint8_t *avail;       /* [M] */
    double *cdf;          /* [M] global popularity CDF (item order) */
    int64_t *cat_start;   /* [C+1] */
    int64_t *cat_items;   /* [M] items grouped by category */
    double *cat_cdf;      /* [M] CDF within each category group */
    int64_t *succ;        /* [M*K] */
    double *succ_p;       /* [K] probability of successor rank r (same for every item) */
    double *succ_cdf;     /* [K] */
    /* sessions */
    int32_t *len;         /* [N] events per session */
    int64_t opened, emitted;
    double arrival_ms, arrival_mean_ms;
    int64_t n_users;
    struct session *heap;
    size_t heap_n, heap_cap;
    char sid[64], uid[32];
};

void sr_gen_params_default(struct sr_gen_params *p)
{
    *p = (struct sr_gen_params){
        .seed = 1,
        .n_sessions = 1000,
        .n_items = 1000,
        .n_events = 10000,
        .n_categories = 0,
        .successors = 4,
        .zipf_s = 1.0,
        .p_same_category = 0.75,
        .p_restart = 0.10,
        .p_click = 0.25,
        .p_cart = 0.05,
        .p_purchase = 0.40,
        .p_wishlist = 0.02,
        .p_unavailable = 0.02,
        .p_anonymous = 0.20,
        .start_ms = INT64_C(1767225600000),
        .gap_mean_ms = 20000.0,
        .concurrency = 200,
        .session_prefix = "s",
    };
}

static bool prob_ok(double p) { return p >= 0.0 && p <= 1.0; }

static sr_err_t check_params(const struct sr_gen_params *p, struct sr_error *err)
{
    if (p->n_items < 2 || p->n_items > INT64_C(100000000))
        return sr_error_set(err, SR_EINVAL, "items: %" PRId64 " is outside 2..100000000",
                            p->n_items);
    if (p->n_sessions < 1 || p->n_sessions > INT64_C(1000000000))
        return sr_error_set(err, SR_EINVAL, "sessions: %" PRId64 " is outside 1..1000000000",
                            p->n_sessions);
    if (p->n_events < p->n_sessions)
        return sr_error_set(err, SR_EINVAL,
                            "events: %" PRId64 " is fewer than sessions (%" PRId64
                            "); every session has at least one event",
                            p->n_events, p->n_sessions);
    if (p->n_events / p->n_sessions > INT32_MAX)
        return sr_error_set(err, SR_EINVAL, "events: too many per session");
    if (p->successors < 1 || p->successors >= p->n_items || p->successors > 64)
        return sr_error_set(err, SR_EINVAL, "successors: %d must be in 1..min(64, items-1)",
                            p->successors);
    if (p->n_categories < 0 || p->n_categories > p->n_items)
        return sr_error_set(err, SR_EINVAL, "categories: %d is outside 0..items", p->n_categories);
    if (!(p->zipf_s >= 0.0 && p->zipf_s <= 5.0))
        return sr_error_set(err, SR_EINVAL, "zipf exponent %g is outside 0..5", p->zipf_s);
    const struct {
        const char *name;
        double v;
    } probs[] = {{"p_same_category", p->p_same_category}, {"p_restart", p->p_restart},
                 {"p_click", p->p_click},                 {"p_cart", p->p_cart},
                 {"p_purchase", p->p_purchase},           {"p_wishlist", p->p_wishlist},
                 {"p_unavailable", p->p_unavailable},     {"p_anonymous", p->p_anonymous}};
    for (size_t i = 0; i < sizeof probs / sizeof probs[0]; i++)
        if (!prob_ok(probs[i].v))
            return sr_error_set(err, SR_EINVAL, "%s: %g is not a probability", probs[i].name,
                                probs[i].v);
    if (p->p_cart + p->p_wishlist > 1.0)
        return sr_error_set(err, SR_EINVAL, "p_cart + p_wishlist exceeds 1");
    if (!(p->gap_mean_ms >= 1.0 && p->gap_mean_ms <= 3.6e6))
        return sr_error_set(err, SR_EINVAL, "gap_mean_ms: %g is outside 1..3600000",
                            p->gap_mean_ms);
    if (p->concurrency < 1)
        return sr_error_set(err, SR_EINVAL, "concurrency: %d must be positive", p->concurrency);
    if (p->start_ms < 0)
        return sr_error_set(err, SR_EINVAL, "start_ms: negative");
    const char *pre = p->session_prefix ? p->session_prefix : "s";
    if (strlen(pre) >= 32)
        return sr_error_set(err, SR_EINVAL, "session prefix longer than 31 bytes");
    return SR_OK;
}

void sr_gen_destroy(sr_gen_t *g)
{
    if (!g)
        return;
    free(g->id_block);
    free(g->id_off);
    free(g->cat_block);
    free(g->cat_off);
    free(g->cat);
    free(g->avail);
    free(g->cdf);
    free(g->cat_start);
    free(g->cat_items);
    free(g->cat_cdf);
    free(g->succ);
    free(g->succ_p);
    free(g->succ_cdf);
    free(g->len);
    free(g->heap);
    free(g);
}

/* A popular item: within category c (c >= 0 and not empty) or over the catalogue. */
static int64_t pick_popular(sr_gen_t *g, int32_t c)
{
    double u = rng_unit(&g->rng);
    if (c >= 0) {
        int64_t a = g->cat_start[c], n = g->cat_start[c + 1] - a;
        if (n > 0)
            return g->cat_items[a + cdf_pick(g->cat_cdf + a, n, u)];
    }
    return cdf_pick(g->cdf, g->M, u);
}

static sr_err_t build_catalogue(sr_gen_t *g, struct sr_error *err)
{
    int64_t M = g->M;
    int32_t C = g->C;
    g->id_off = malloc((size_t)M * sizeof *g->id_off);
    g->id_block = malloc((size_t)M * 12);
    g->cat_off = malloc((size_t)C * sizeof *g->cat_off);
    g->cat_block = malloc((size_t)C * 12);
    g->cat = malloc((size_t)M * sizeof *g->cat);
    g->avail = malloc((size_t)M);
    g->cdf = malloc((size_t)M * sizeof *g->cdf);
    g->cat_start = calloc((size_t)C + 1, sizeof *g->cat_start);
    g->cat_items = malloc((size_t)M * sizeof *g->cat_items);
    g->cat_cdf = malloc((size_t)M * sizeof *g->cat_cdf);
    g->succ = malloc((size_t)M * g->K * sizeof *g->succ);
    g->succ_p = malloc((size_t)g->K * sizeof *g->succ_p);
    g->succ_cdf = malloc((size_t)g->K * sizeof *g->succ_cdf);
    int64_t *perm = malloc((size_t)M * sizeof *perm);
    double *w = malloc((size_t)M * sizeof *w);
    if (!g->id_off || !g->id_block || !g->cat_off || !g->cat_block || !g->cat || !g->avail ||
        !g->cdf || !g->cat_start || !g->cat_items || !g->cat_cdf || !g->succ || !g->succ_p ||
        !g->succ_cdf || !perm || !w) {
        free(perm);
        free(w);
        return sr_error_set(err, SR_ENOMEM, "gen: out of memory for %" PRId64 " items", M);
    }
    size_t o = 0;
    for (int64_t n = 0; n < M; n++) {
        g->id_off[n] = (int64_t)o;
        o += (size_t)sprintf(g->id_block + o, "i%" PRId64, n) + 1;
    }
    o = 0;
    for (int32_t c = 0; c < C; c++) {
        g->cat_off[c] = (int32_t)o;
        o += (size_t)sprintf(g->cat_block + o, "c%d", c) + 1;
    }
    /* Popularity: Zipf over a random permutation (perm[rank] = item). */
    for (int64_t n = 0; n < M; n++)
        perm[n] = n;
    for (int64_t i = M - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&g->rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t r = 0; r < M; r++)
        w[perm[r]] = pow((double)(r + 1), -g->p.zipf_s);
    free(perm);
    double acc = 0;
    for (int64_t n = 0; n < M; n++)
        g->cdf[n] = (acc += w[n]);
    /* Categories and availability. */
    for (int64_t n = 0; n < M; n++) {
        g->cat[n] = (int32_t)rng_below(&g->rng, (uint64_t)C);
        g->avail[n] = rng_unit(&g->rng) >= g->p.p_unavailable;
        g->cat_start[g->cat[n] + 1]++;
    }
    for (int32_t c = 0; c < C; c++)
        g->cat_start[c + 1] += g->cat_start[c];
    int64_t *fill = malloc((size_t)C * sizeof *fill);
    if (!fill) {
        free(w);
        return sr_error_set(err, SR_ENOMEM, "gen: out of memory");
    }
    memcpy(fill, g->cat_start, (size_t)C * sizeof *fill);
    for (int64_t n = 0; n < M; n++)
        g->cat_items[fill[g->cat[n]]++] = n;
    free(fill);
    for (int32_t c = 0; c < C; c++) {
        acc = 0;
        for (int64_t i = g->cat_start[c]; i < g->cat_start[c + 1]; i++)
            g->cat_cdf[i] = (acc += w[g->cat_items[i]]);
    }
    free(w);
    /* Successor ranks: weight 1/(r+1). */
    acc = 0;
    for (int32_t r = 0; r < g->K; r++)
        acc += 1.0 / (r + 1);
    double c2 = 0;
    for (int32_t r = 0; r < g->K; r++) {
        g->succ_p[r] = (1.0 / (r + 1)) / acc;
        g->succ_cdf[r] = (c2 += g->succ_p[r]);
    }
    /* The chain: K distinct successors per item, never the item itself. */
    for (int64_t n = 0; n < M; n++) {
        int64_t *s = g->succ + n * g->K;
        for (int32_t r = 0; r < g->K; r++) {
            int64_t pick = -1;
            for (int tries = 0; tries < 64 && pick < 0; tries++) {
                bool same = rng_unit(&g->rng) < g->p.p_same_category && tries < 32;
                int64_t cand = pick_popular(g, same ? g->cat[n] : -1);
                bool dup = cand == n;
                for (int32_t q = 0; q < r && !dup; q++)
                    dup = s[q] == cand;
                if (!dup)
                    pick = cand;
            }
            /* Tiny catalogues: take the next unused item after n. */
            for (int64_t cand = (n + 1) % M; pick < 0; cand = (cand + 1) % M) {
                bool dup = cand == n;
                for (int32_t q = 0; q < r && !dup; q++)
                    dup = s[q] == cand;
                if (!dup)
                    pick = cand;
            }
            s[r] = pick;
        }
    }
    return SR_OK;
}

/* Session lengths: 1 + a share of the remaining E - N events in proportion to Exp(1) weights,
 * rounded systematically so that the total is exactly E. */
static sr_err_t build_lengths(sr_gen_t *g, struct sr_error *err)
{
    int64_t N = g->N, R = g->E - g->N;
    g->len = malloc((size_t)N * sizeof *g->len);
    double *cw = malloc((size_t)N * sizeof *cw);
    if (!g->len || !cw) {
        free(cw);
        return sr_error_set(err, SR_ENOMEM, "gen: out of memory for %" PRId64 " sessions", N);
    }
    double acc = 0;
    for (int64_t i = 0; i < N; i++)
        cw[i] = (acc += rng_exp(&g->rng));
    int64_t prev = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t cum = i == N - 1 ? R : (int64_t)floor(cw[i] / acc * (double)R);
        if (cum < prev)
            cum = prev;
        if (cum > R)
            cum = R;
        g->len[i] = (int32_t)(1 + cum - prev);
        prev = cum;
    }
    free(cw);
    return SR_OK;
}

sr_err_t sr_gen_new(const struct sr_gen_params *p, sr_gen_t **out, struct sr_error *err)
{
    if (!p || !out)
        return sr_error_set(err, SR_EINVAL, "gen: NULL argument");
    sr_err_t rc = check_params(p, err);
    if (rc != SR_OK)
        return rc;
    sr_gen_t *g = calloc(1, sizeof *g);
    if (!g)
        return sr_error_set(err, SR_ENOMEM, "gen: out of memory");
    g->p = *p;
    snprintf(g->prefix, sizeof g->prefix, "%s", p->session_prefix ? p->session_prefix : "s");
    g->p.session_prefix = g->prefix;
    rng_seed(&g->rng, p->seed);
    g->M = p->n_items;
    g->N = p->n_sessions;
    g->E = p->n_events;
    g->K = p->successors;
    g->C = p->n_categories ? p->n_categories
                           : (int32_t)fmax(1.0, round(sqrt((double)p->n_items) / 2.0));
    if ((rc = build_catalogue(g, err)) != SR_OK || (rc = build_lengths(g, err)) != SR_OK) {
        sr_gen_destroy(g);
        return rc;
    }
    g->n_users = g->N / 3 > 0 ? g->N / 3 : 1;
    double mean_len = (double)g->E / (double)g->N;
    double dur = fmax((mean_len - 1.0) * p->gap_mean_ms, p->gap_mean_ms);
    g->arrival_mean_ms = dur / p->concurrency;
    g->arrival_ms = 0;
    *out = g;
    return SR_OK;
}

/* ---- the session heap ------------------------------------------------------------------- */

static bool before(const struct session *a, const struct session *b)
{
    return a->time_ms < b->time_ms || (a->time_ms == b->time_ms && a->num < b->num);
}

static void sift_down(sr_gen_t *g, size_t i)
{
    struct session *h = g->heap;
    size_t n = g->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && before(&h[l], &h[m]))
            m = l;
        if (r < n && before(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct session t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static bool heap_push(sr_gen_t *g, const struct session *s)
{
    if (g->heap_n == g->heap_cap) {
        size_t cap = g->heap_cap ? g->heap_cap * 2 : 256;
        struct session *h = realloc(g->heap, cap * sizeof *h);
        if (!h)
            return false;
        g->heap = h;
        g->heap_cap = cap;
    }
    size_t i = g->heap_n++;
    g->heap[i] = *s;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&g->heap[i], &g->heap[up]))
            break;
        struct session t = g->heap[i];
        g->heap[i] = g->heap[up];
        g->heap[up] = t;
        i = up;
    }
    return true;
}

static int64_t gap_ms(sr_gen_t *g)
{
    double v = rng_exp(&g->rng) * g->p.gap_mean_ms;
    if (v < 1000.0)
        v = 1000.0;
    if (v > 600000.0)
        v = 600000.0;
    return (int64_t)v;
}

static bool open_session(sr_gen_t *g)
{
    struct session s = {
        .time_ms = g->p.start_ms + (int64_t)g->arrival_ms,
        .num = g->opened,
        .item = -1,
        .left = g->len[g->opened],
        .next = NEXT_STEP,
    };
    s.user = rng_unit(&g->rng) < g->p.p_anonymous ? -1
                                                  : (int64_t)rng_below(&g->rng, (uint64_t)g->n_users);
    if (!heap_push(g, &s))
        return false;
    g->opened++;
    g->arrival_ms += rng_exp(&g->rng) * g->arrival_mean_ms;
    return true;
}

static const char *const step_types[] = {"view", "click"};

bool sr_gen_next(sr_gen_t *g, struct sr_event *ev)
{
    if (g->emitted >= g->E)
        return false;
    while (g->opened < g->N &&
           (g->heap_n == 0 || g->p.start_ms + (int64_t)g->arrival_ms <= g->heap[0].time_ms))
        if (!open_session(g))
            return false; /* out of memory while growing the heap: the stream ends early */
    struct session *s = &g->heap[0];
    const char *type;
    switch (s->next) {
    case NEXT_CART:
        type = "add_to_cart";
        break;
    case NEXT_PURCHASE:
        type = "purchase";
        break;
    case NEXT_WISHLIST:
        type = "wishlist";
        break;
    default:
        if (s->item < 0) {
            s->item = pick_popular(g, -1);
            s->interest = g->cat[s->item];
        } else if (rng_unit(&g->rng) < g->p.p_restart) {
            s->item = pick_popular(g, rng_unit(&g->rng) < 0.5 ? s->interest : -1);
        } else {
            int64_t r = cdf_pick(g->succ_cdf, g->K, rng_unit(&g->rng));
            s->item = g->succ[s->item * g->K + r];
        }
        type = step_types[rng_unit(&g->rng) < g->p.p_click];
        break;
    }
    /* What follows this event. */
    int32_t next = NEXT_STEP;
    double u = rng_unit(&g->rng);
    if (s->next == NEXT_STEP) {
        if (u < g->p.p_cart)
            next = NEXT_CART;
        else if (u < g->p.p_cart + g->p.p_wishlist)
            next = NEXT_WISHLIST;
    } else if (s->next == NEXT_CART && u < g->p.p_purchase) {
        next = NEXT_PURCHASE;
    }
    int sl = snprintf(g->sid, sizeof g->sid, "%s%" PRId64, g->prefix, s->num);
    *ev = (struct sr_event){
        .session_id = g->sid,
        .session_id_len = (size_t)sl,
        .item_id = sr_gen_item_id(g, s->item),
        .event_type = type,
        .event_type_len = strlen(type),
        .timestamp_ms = s->time_ms,
    };
    ev->item_id_len = strlen(ev->item_id);
    if (s->user >= 0) {
        int ul = snprintf(g->uid, sizeof g->uid, "u%" PRId64, s->user);
        ev->user_id = g->uid;
        ev->user_id_len = (size_t)ul;
    }
    g->emitted++;
    if (--s->left == 0) {
        g->heap[0] = g->heap[--g->heap_n];
    } else {
        s->next = next;
        s->time_ms += gap_ms(g);
    }
    if (g->heap_n)
        sift_down(g, 0);
    return true;
}

int64_t sr_gen_emitted(const sr_gen_t *g) { return g->emitted; }
int64_t sr_gen_item_count(const sr_gen_t *g) { return g->M; }
const char *sr_gen_item_id(const sr_gen_t *g, int64_t n) { return g->id_block + g->id_off[n]; }
const char *sr_gen_item_category(const sr_gen_t *g, int64_t n)
{
    return g->cat_block + g->cat_off[g->cat[n]];
}
bool sr_gen_item_available(const sr_gen_t *g, int64_t n) { return g->avail[n] != 0; }

int32_t sr_gen_item_successors(const sr_gen_t *g, int64_t n, const int64_t **succ,
                               const double **prob)
{
    if (succ)
        *succ = g->succ + n * g->K;
    if (prob)
        *prob = g->succ_p;
    return g->K;
}

sr_err_t sr_gen_write_items_tsv(const sr_gen_t *g, const char *path, int32_t first_index,
                                struct sr_error *err)
{
    if (first_index < 0)
        return sr_error_set(err, SR_EINVAL, "items.tsv: first_index %d is negative", first_index);
    FILE *f = fopen(path, "w");
    if (!f)
        return sr_error_set(err, SR_EIO, "%s: %s", path, strerror(errno));
    fputs("index\titem_id\tcategory\tavailable\n", f);
    for (int64_t n = 0; n < g->M; n++)
        fprintf(f, "%" PRId64 "\t%s\t%s\t%d\n", first_index + n, sr_gen_item_id(g, n),
                sr_gen_item_category(g, n), g->avail[n] ? 1 : 0);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad)
        return sr_error_set(err, SR_EIO, "%s: write failed: %s", path, strerror(errno));
    return SR_OK;
}

/* ---- ISO-8601 --------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, size_t len, size_t at, int n, int *out)
{
    if (at + (size_t)n > len)
        return false;
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = s[at + i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

bool sr_gen_parse_iso8601(const char *s, size_t len, int64_t *out_ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    size_t i = 0;
    if (!digits(s, len, 0, 4, &y) || len < 10 || s[4] != '-' || !digits(s, len, 5, 2, &mo) ||
        s[7] != '-' || !digits(s, len, 8, 2, &d))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    i = 10;
    if (i < len && (s[i] == 'T' || s[i] == ' ')) {
        if (!digits(s, len, i + 1, 2, &h) || i + 3 >= len || s[i + 3] != ':' ||
            !digits(s, len, i + 4, 2, &mi))
            return false;
        i += 6;
        if (i < len && s[i] == ':') {
            if (!digits(s, len, i + 1, 2, &sec))
                return false;
            i += 3;
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                i++;
                int nd = 0, frac = 0;
                while (i < len && s[i] >= '0' && s[i] <= '9') {
                    if (nd < 3) {
                        frac = frac * 10 + (s[i] - '0');
                        nd++;
                    }
                    i++;
                }
                if (nd == 0)
                    return false;
                while (nd++ < 3)
                    frac *= 10;
                ms = frac;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return false;
    }
    int64_t off_min = 0;
    if (i < len && s[i] == 'Z') {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int oh, om = 0;
        int sign = s[i] == '-' ? -1 : 1;
        if (!digits(s, len, i + 1, 2, &oh))
            return false;
        i += 3;
        if (i < len && s[i] == ':')
            i++;
        if (i < len) {
            if (!digits(s, len, i, 2, &om))
                return false;
            i += 2;
        }
        off_min = sign * (oh * 60 + om);
    }
    if (i != len)
        return false;
    int64_t days = days_from_civil(y, mo, d);
    *out_ms = (((days * 24 + h) * 60 + mi) * 60 + sec) * 1000 + ms - off_min * 60000;
    return true;
}

/* ---- click logs ------------------------------------------------------------------------- */

struct sr_clicklog {
    FILE *f;
    char *path;
    enum sr_clicklog_layout layout;
    char *line;
    size_t cap;
    int64_t lineno;
    bool pending; /* the first line (read for detection) is a data row not yet returned */
    size_t pending_len;
    const char *category; /* of the last row; NULL when the layout has none */
    size_t category_len;
    int64_t dg_day_ms, dg_timeframe; /* Diginetica: the last row's eventdate and timeframe */
};

void sr_clicklog_close(sr_clicklog_t *c)
{
    if (!c)
        return;
    if (c->f)
        fclose(c->f);
    free(c->line);
    free(c->path);
    free(c);
}

/* Reads the next non-blank line into c->line without its "\r\n"; false at end of file. */
static bool read_line(sr_clicklog_t *c, size_t *len)
{
    for (;;) {
        ssize_t n = getline(&c->line, &c->cap, c->f);
        if (n < 0)
            return false;
        c->lineno++;
        while (n > 0 && (c->line[n - 1] == '\n' || c->line[n - 1] == '\r'))
            c->line[--n] = '\0';
        if (n > 0) {
            *len = (size_t)n;
            return true;
        }
    }
}

static size_t count_char(const char *s, char ch)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == ch;
    return n;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static sr_err_t detect(sr_clicklog_t *c, struct sr_error *err);

sr_err_t sr_clicklog_open_fp(FILE *f, const char *name, sr_clicklog_t **out,
                             struct sr_error *err)
{
    sr_clicklog_t *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(name))) {
        free(c);
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory", name);
    }
    c->f = f;
    sr_err_t rc = detect(c, err);
    if (rc != SR_OK) {
        free(c->line);
        free(c->path);
        free(c);
        return rc;
    }
    *out = c;
    return SR_OK;
}

sr_err_t sr_clicklog_open(const char *path, sr_clicklog_t **out, struct sr_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sr_error_set(err, SR_EIO, "%s: %s", path, strerror(errno));
    sr_err_t rc = sr_clicklog_open_fp(f, path, out, err);
    if (rc != SR_OK)
        fclose(f);
    return rc;
}

/* Reads the first line and detects the layout and a header. */
static sr_err_t detect(sr_clicklog_t *c, struct sr_error *err)
{
    const char *path = c->path;
    size_t len;
    if (!read_line(c, &len))
        return sr_error_set(err, SR_EFORMAT, "%s: empty file (no click-log rows)", path);
    if (count_char(c->line, ';') == 4)
        c->layout = SR_CLICKLOG_DIGINETICA;
    else if (count_char(c->line, ',') == 3 && !strchr(c->line, ';'))
        c->layout = SR_CLICKLOG_YOOCHOOSE;
    else
        return sr_error_set(err, SR_EFORMAT,
                            "%s:%" PRId64 ": neither YooChoose (session_id,timestamp,item_id,category) nor "
                            "Diginetica (sessionId;userId;itemId;timeframe;eventdate)",
                            path, c->lineno);
    /* A first line whose first field is not a number is a header. */
    size_t f0 = strcspn(c->line, c->layout == SR_CLICKLOG_DIGINETICA ? ";" : ",");
    c->pending = all_digits(c->line, f0);
    c->pending_len = len;
    return SR_OK;
}

enum sr_clicklog_layout sr_clicklog_layout(const sr_clicklog_t *c) { return c->layout; }

void sr_clicklog_diginetica_time(const sr_clicklog_t *c, int64_t *day_ms, int64_t *timeframe_ms)
{
    *day_ms = c->dg_day_ms;
    *timeframe_ms = c->dg_timeframe;
}

const char *sr_clicklog_category(const sr_clicklog_t *c, size_t *len)
{
    if (len)
        *len = c->category_len;
    return c->category;
}

sr_err_t sr_clicklog_next(sr_clicklog_t *c, struct sr_event *ev, struct sr_error *err)
{
    size_t len;
    if (c->pending) {
        c->pending = false;
        len = c->pending_len;
    } else if (!read_line(c, &len)) {
        return SR_ENOENT;
    }
    if (memchr(c->line, '\0', len) || strlen(c->line) != len)
        return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": NUL byte in the line", c->path,
                            c->lineno);
    char sep = c->layout == SR_CLICKLOG_DIGINETICA ? ';' : ',';
    int want = c->layout == SR_CLICKLOG_DIGINETICA ? 5 : 4;
    char *field[5];
    size_t flen[5];
    int nf = 0;
    char *p = c->line, *end = c->line + len;
    for (;;) {
        char *q = memchr(p, sep, (size_t)(end - p));
        if (nf == 5)
            return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": more than %d fields", c->path,
                                c->lineno, want);
        field[nf] = p;
        flen[nf++] = (size_t)((q ? q : end) - p);
        if (!q)
            break;
        *q = '\0';
        p = q + 1;
    }
    if (nf != want)
        return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": %d fields, expected %d", c->path,
                            c->lineno, nf, want);
    *ev = (struct sr_event){.event_type = "view", .event_type_len = 4};
    c->category = NULL;
    c->category_len = 0;
    if (c->layout == SR_CLICKLOG_YOOCHOOSE) {
        ev->session_id = field[0];
        ev->session_id_len = flen[0];
        ev->item_id = field[2];
        ev->item_id_len = flen[2];
        c->category = field[3];
        c->category_len = flen[3];
        if (!sr_gen_parse_iso8601(field[1], flen[1], &ev->timestamp_ms))
            return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": timestamp '%.*s' is not ISO-8601",
                                c->path, c->lineno, (int)(flen[1] > 64 ? 64 : flen[1]), field[1]);
    } else {
        ev->session_id = field[0];
        ev->session_id_len = flen[0];
        if (flen[1] && !(flen[1] == 2 && !memcmp(field[1], "NA", 2))) {
            ev->user_id = field[1];
            ev->user_id_len = flen[1];
        }
        ev->item_id = field[2];
        ev->item_id_len = flen[2];
        int64_t day_ms;
        errno = 0;
        long long tf = strtoll(field[3], NULL, 10);
        if (!all_digits(field[3], flen[3]) || errno || tf > INT64_C(1000000000000000))
            return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": timeframe '%.*s' is not a number",
                                c->path, c->lineno, (int)(flen[3] > 64 ? 64 : flen[3]), field[3]);
        if (flen[4] != 10 || !sr_gen_parse_iso8601(field[4], flen[4], &day_ms))
            return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": eventdate '%.*s' is not YYYY-MM-DD",
                                c->path, c->lineno, (int)(flen[4] > 64 ? 64 : flen[4]), field[4]);
        ev->timestamp_ms = day_ms + tf;
        c->dg_day_ms = day_ms;
        c->dg_timeframe = tf;
    }
    if (ev->session_id_len == 0 || ev->item_id_len == 0)
        return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": empty %s", c->path, c->lineno,
                            ev->session_id_len == 0 ? "session id" : "item id");
    if (ev->timestamp_ms < 0)
        return sr_error_set(err, SR_EFORMAT, "%s:%" PRId64 ": timestamp before 1970", c->path,
                            c->lineno);
    return SR_OK;
}
