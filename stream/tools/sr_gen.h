/* sr_gen.h — private to stream/: the synthetic event generator behind `streamrec gen` and the
 * demo, and the click-log reader behind `gen --from-csv`.
 *
 * The generator model (deterministic by seed; same params => same events, byte for byte):
 * - Catalogue: n_items items "i0".."i<M-1>", each in one of n_categories categories "c0"..,
 *   a few marked unavailable. Popularity is Zipf(zipf_s) over a seeded random permutation of
 *   the items (so popular items are scattered over the ids).
 * - A sparse Markov chain: every item has `successors` distinct likely next items (none is the
 *   item itself), drawn by popularity, from the item's own category with p_same_category, else
 *   from the whole catalogue. Successor r (0-based) has weight 1/(r+1), normalised.
 * - A session starts at a popular item (Zipf) and walks the chain: each step follows the chain
 *   from the current item, except with p_restart, when it jumps to a popular item (half of the
 *   time within the category the session started in, half over the catalogue).
 * - Event types: each chain step is a `view` (or a `click` with p_click). After a step, the same
 *   item may get an `add_to_cart` (p_cart), then a `purchase` (p_purchase of carts), or a
 *   `wishlist` (p_wishlist); these repeat the item and do not advance the chain.
 * - Sizes: exactly n_sessions sessions and n_events events (n_events >= n_sessions): every
 *   session has 1 event plus a share of the rest in proportion to an Exp(1) weight, so lengths
 *   are roughly geometric with mean n_events / n_sessions.
 * - Time: sessions arrive as a Poisson process from start_ms; gaps inside a session are
 *   exponential with mean gap_mean_ms (at least 1 s, at most 10 min); the arrival rate is set so
 *   that about `concurrency` sessions are open at once. Events of all sessions are merged by
 *   timestamp (ties: earlier-opened session first), so the stream is interleaved and its
 *   timestamps never decrease.
 * - Ids: session "<session_prefix><n>" (n from 0, in order of arrival); user "u<k>" with
 *   n_users = max(1, n_sessions / 3) users, or null for anonymous sessions (p_anonymous).
 *
 * Memory: O(n_items * successors + n_sessions) at creation; no allocation per event.
 * Threads: one generator is used by one thread at a time. */
#ifndef SR_GEN_H
#define SR_GEN_H

#include "sr_core.h"
#include "sr_schemas.h"

#include <stdint.h>
#include <stdio.h>

struct sr_gen_params {
    uint64_t seed;
    int64_t n_sessions;      /* default 1000 */
    int64_t n_items;         /* default 1000 */
    int64_t n_events;        /* default 10000 */
    int32_t n_categories;    /* 0: max(1, round(sqrt(n_items) / 2)) */
    int32_t successors;      /* default 4 */
    double zipf_s;           /* default 1.0 */
    double p_same_category;  /* default 0.75 */
    double p_restart;        /* default 0.10 */
    double p_click;          /* default 0.25 */
    double p_cart;           /* default 0.05 */
    double p_purchase;       /* default 0.40 (of carts) */
    double p_wishlist;       /* default 0.02 */
    double p_unavailable;    /* default 0.02 (items.tsv available = 0) */
    double p_anonymous;      /* default 0.20 (user_id null) */
    int64_t start_ms;        /* default 1767225600000 (2026-01-01T00:00:00Z) */
    double gap_mean_ms;      /* default 20000 */
    int32_t concurrency;     /* default 200 */
    const char *session_prefix; /* default "s"; copied by sr_gen_new */
};

/* Fills p with the defaults above. */
void sr_gen_params_default(struct sr_gen_params *p);

typedef struct sr_gen sr_gen_t;

/* Builds the catalogue and the chain. Bad params (n_events < n_sessions, a probability outside
 * [0,1], successors >= n_items, ...) are SR_EINVAL naming the parameter. Caller owns *out. */
sr_err_t sr_gen_new(const struct sr_gen_params *p, sr_gen_t **out, struct sr_error *err);
void sr_gen_destroy(sr_gen_t *g);

/* The next event in stream order. Returns false when all n_events are out. The strings of *ev
 * stay valid until the next call (they live in the generator). */
bool sr_gen_next(sr_gen_t *g, struct sr_event *ev);
/* Events produced so far. */
int64_t sr_gen_emitted(const sr_gen_t *g);

/* ---- the catalogue and the chain (items.tsv, tests, the demo's baselines) ------------- */

int64_t sr_gen_item_count(const sr_gen_t *g);
/* Item n (0 <= n < count): its id "i<n>", category and availability. Static per generator. */
const char *sr_gen_item_id(const sr_gen_t *g, int64_t n);
const char *sr_gen_item_category(const sr_gen_t *g, int64_t n);
bool sr_gen_item_available(const sr_gen_t *g, int64_t n);
/* Item n's successors (item numbers) and their probabilities, most likely first; returns the
 * count. The arrays belong to the generator. */
int32_t sr_gen_item_successors(const sr_gen_t *g, int64_t n, const int64_t **succ,
                               const double **prob);

/* Writes items.tsv for a bundle: header "index\titem_id\tcategory\tavailable", then item n at
 * index first_index + n. SR_EIO naming the path on failure. */
sr_err_t sr_gen_write_items_tsv(const sr_gen_t *g, const char *path, int32_t first_index,
                                struct sr_error *err);

/* ---- public click logs ------------------------------------------------------------------ */

/* Reads a YooChoose or a Diginetica click log, detected from the first line:
 * - YooChoose (yoochoose-clicks.dat): comma-separated `session_id,timestamp,item_id,category`
 *   with an ISO-8601 timestamp ("2014-04-07T10:51:09.277Z"; a zone offset is honoured, none
 *   means UTC); no header, or a header whose first field is not a number (skipped).
 * - Diginetica (train-item-views.csv): semicolon-separated
 *   `sessionId;userId;itemId;timeframe;eventdate` with a header; timestamp_ms is the UTC
 *   midnight of the row's eventdate (YYYY-MM-DD) plus timeframe (ms); userId "NA" or empty is
 *   null. timeframe counts from the session's start, so a row dated after the session's first
 *   day is a day late here: sr_clicklog_prepare corrects it from the whole session.
 * Every row becomes an event of type `view` with the ids copied as written, in file order.
 * Blank lines and a trailing "\r" are ignored. */
typedef struct sr_clicklog sr_clicklog_t;

enum sr_clicklog_layout { SR_CLICKLOG_YOOCHOOSE = 1, SR_CLICKLOG_DIGINETICA = 2 };

/* Opens path and detects the layout (SR_EFORMAT naming the file when it is neither). */
sr_err_t sr_clicklog_open(const char *path, sr_clicklog_t **out, struct sr_error *err);
/* The same over an open stream; name is used in messages. Takes ownership of f (closed by
 * sr_clicklog_close) on success only. */
sr_err_t sr_clicklog_open_fp(FILE *f, const char *name, sr_clicklog_t **out,
                             struct sr_error *err);
enum sr_clicklog_layout sr_clicklog_layout(const sr_clicklog_t *c);
/* Next row: SR_OK with *ev filled (strings valid until the next call), SR_ENOENT at the end,
 * SR_EFORMAT naming the file and line for a bad row (reading stops). */
sr_err_t sr_clicklog_next(sr_clicklog_t *c, struct sr_event *ev, struct sr_error *err);
/* The category of the row last returned (YooChoose's 4th column), valid until the next call;
 * NULL for Diginetica, whose click log has none. */
const char *sr_clicklog_category(const sr_clicklog_t *c, size_t *len);
/* Diginetica: the row last returned's eventdate (UTC midnight, ms) and timeframe (ms). */
void sr_clicklog_diginetica_time(const sr_clicklog_t *c, int64_t *day_ms, int64_t *timeframe_ms);

/* ---- click-log preprocessing (clicklog_prep.c) ------------------------------------------- */

/* The preprocessing the session-based recommendation papers apply (GRU4Rec on YooChoose,
 * NARM/SR-GNN on Diginetica), on a whole click log held in memory:
 * 1. timestamps: Diginetica's are the session's first eventdate + timeframe (timeframe counts
 *    from the session's start, so a session that crosses midnight keeps counting from its first
 *    day); YooChoose's as written;
 * 2. sessions shorter than min_session_len events are dropped, then items with fewer than
 *    min_item_support events, then again sessions that became too short;
 * 3. with split_days > 0: sessions whose last event is within split_days days of the log's
 *    last event form the test part, the others the training part; test events whose item is
 *    not in the training part are dropped (unless keep_unseen), then test sessions shorter than
 *    min_session_len;
 * 4. each part in time order (ties in file order), so every session's events are in time
 *    order whatever the file's order. */
struct sr_clicklog_prep_params {
    int64_t min_item_support; /* <= 1: keep every item */
    int64_t min_session_len;  /* <= 1: keep every session */
    int64_t split_days;       /* 0: one part */
    bool keep_unseen;
};

struct sr_clicklog_prep_stats {
    int64_t rows, sessions, items;     /* read */
    int64_t dropped_short, dropped_rare, dropped_unseen; /* events */
    int64_t events[2], out_sessions[2]; /* per part: 0 training (or all), 1 test */
    int64_t split_ms;                  /* test sessions end at or after this time */
};

typedef struct sr_clicklog_set sr_clicklog_set_t;

/* Reads every remaining row of c and prepares the parts. SR_EFORMAT naming file and line for a
 * bad row, SR_ENOMEM. The caller owns *out (sr_clicklog_set_destroy); c may be closed after. */
sr_err_t sr_clicklog_prepare(sr_clicklog_t *c, const struct sr_clicklog_prep_params *p,
                             sr_clicklog_set_t **out, struct sr_error *err);
/* Events of part 0 or 1. */
int64_t sr_clicklog_set_count(const sr_clicklog_set_t *s, int part);
/* The i-th event of a part (strings owned by the set) and its item's category (first row's;
 * NULL for Diginetica). */
void sr_clicklog_set_event(const sr_clicklog_set_t *s, int part, int64_t i, struct sr_event *ev,
                           const char **category, size_t *category_len);
const struct sr_clicklog_prep_stats *sr_clicklog_set_stats(const sr_clicklog_set_t *s);
void sr_clicklog_set_destroy(sr_clicklog_set_t *s);
void sr_clicklog_close(sr_clicklog_t *c);

/* Parses an ISO-8601 UTC time "YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|+hh:mm|-hh:mm]" (a space may
 * stand for T) into epoch milliseconds. Returns false when it is not one. */
bool sr_gen_parse_iso8601(const char *s, size_t len, int64_t *out_ms);

#endif /* SR_GEN_H */
