/* clicklog_prep.c — `gen --from-csv` preprocessing (sr_gen.h): a whole YooChoose or Diginetica
 * click log in memory, its timestamps made right, filtered by item support and session length
 * as the papers do, split by days into training and test, each part in time order.
 * Owns: interned strings (sessions, items, users, categories: each distinct string once) and
 * one 32-byte row per click. Memory is about 32 bytes a row plus the distinct strings (the full
 * YooChoose clicks file, 33 M rows, needs about 1.5 GB). Single-threaded, offline. */
#include "sr_gen.h"

#include <stdlib.h>
#include <string.h>

#define DAY_MS INT64_C(86400000)

/* Distinct strings, by open addressing over sr_hash64. */
struct intern {
    char **s;
    uint32_t *len;
    int32_t n, cap;
    int32_t *slot;
    uint32_t nslot;
};

static void intern_free(struct intern *t)
{
    for (int32_t i = 0; i < t->n; i++)
        free(t->s[i]);
    free(t->s);
    free(t->len);
    free(t->slot);
}

static bool intern_grow(struct intern *t)
{
    uint32_t ns = t->nslot ? t->nslot * 2 : 1024;
    int32_t *slot = malloc(sizeof *slot * ns);
    if (!slot)
        return false;
    for (uint32_t i = 0; i < ns; i++)
        slot[i] = -1;
    for (int32_t i = 0; i < t->n; i++) {
        uint32_t h = (uint32_t)sr_hash64(t->s[i], t->len[i]) & (ns - 1);
        while (slot[h] >= 0)
            h = (h + 1) & (ns - 1);
        slot[h] = i;
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = ns;
    return true;
}

/* The string's number (new ones appended); -1 when out of memory or past 2^31 strings. */
static int32_t intern(struct intern *t, const char *s, size_t len)
{
    if ((uint64_t)(t->n + 1) * 2 > t->nslot && (t->n == INT32_MAX || !intern_grow(t)))
        return -1;
    uint32_t h = (uint32_t)sr_hash64(s, len) & (t->nslot - 1);
    for (; t->slot[h] >= 0; h = (h + 1) & (t->nslot - 1)) {
        int32_t i = t->slot[h];
        if (t->len[i] == len && !memcmp(t->s[i], s, len))
            return i;
    }
    if (t->n == t->cap) {
        int32_t cap = t->cap ? (t->cap > INT32_MAX / 2 ? INT32_MAX : t->cap * 2) : 1024;
        char **a = realloc(t->s, sizeof *a * (size_t)cap);
        if (a)
            t->s = a;
        uint32_t *l = realloc(t->len, sizeof *l * (size_t)cap);
        if (l)
            t->len = l;
        if (!a || !l)
            return -1;
        t->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c)
        return -1;
    memcpy(c, s, len);
    c[len] = '\0';
    t->s[t->n] = c;
    t->len[t->n] = (uint32_t)len;
    t->slot[h] = t->n;
    return t->n++;
}

struct row {
    int64_t ts;    /* Diginetica: timeframe until fixed */
    int64_t line;  /* file order, for ties */
    int32_t sess, item, user; /* user -1: null */
    int32_t day;   /* Diginetica: eventdate in days since 1970 */
};

struct sr_clicklog_set {
    struct intern sess, item, user, cat;
    int32_t *item_cat;   /* [items] category of the item's first row, -1: none */
    int32_t item_cat_cap;
    struct row *rows;
    int64_t n_rows, cap_rows;
    struct row *part[2]; /* into rows, sorted */
    int64_t n_part[2];
    struct sr_clicklog_prep_stats st;
};

void sr_clicklog_set_destroy(sr_clicklog_set_t *s)
{
    if (!s)
        return;
    intern_free(&s->sess);
    intern_free(&s->item);
    intern_free(&s->user);
    intern_free(&s->cat);
    free(s->item_cat);
    free(s->rows);
    free(s->part[0]);
    free(s->part[1]);
    free(s);
}

static int cmp_row(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Drops rows whose keep[] flag is 0, in place; returns the count dropped. */
static int64_t compact(struct row *r, int64_t *n, const uint8_t *keep)
{
    int64_t w = 0, dropped = 0;
    for (int64_t i = 0; i < *n; i++) {
        if (keep[i])
            r[w++] = r[i];
        else
            dropped++;
    }
    *n = w;
    return dropped;
}

/* Drops rows of sessions with fewer than min rows; counts per session in cnt[n_sess]. */
static int64_t drop_short(struct row *r, int64_t *n, int64_t min, int32_t n_sess, int64_t *cnt,
                          uint8_t *keep)
{
    if (min <= 1)
        return 0;
    memset(cnt, 0, sizeof *cnt * (size_t)n_sess);
    for (int64_t i = 0; i < *n; i++)
        cnt[r[i].sess]++;
    for (int64_t i = 0; i < *n; i++)
        keep[i] = cnt[r[i].sess] >= min;
    return compact(r, n, keep);
}

static sr_err_t read_rows(sr_clicklog_set_t *s, sr_clicklog_t *c, struct sr_error *err)
{
    const bool dg = sr_clicklog_layout(c) == SR_CLICKLOG_DIGINETICA;
    for (;;) {
        struct sr_event ev;
        sr_err_t rc = sr_clicklog_next(c, &ev, err);
        if (rc == SR_ENOENT)
            return SR_OK;
        if (rc != SR_OK)
            return rc;
        if (s->n_rows == s->cap_rows) {
            int64_t cap = s->cap_rows ? s->cap_rows * 2 : 4096;
            struct row *r = realloc(s->rows, sizeof *r * (size_t)cap);
            if (!r)
                goto oom;
            s->rows = r;
            s->cap_rows = cap;
        }
        struct row *r = &s->rows[s->n_rows];
        r->line = s->n_rows;
        r->sess = intern(&s->sess, ev.session_id, ev.session_id_len);
        int32_t before = s->item.n;
        r->item = intern(&s->item, ev.item_id, ev.item_id_len);
        r->user = ev.user_id ? intern(&s->user, ev.user_id, ev.user_id_len) : -1;
        if (r->sess < 0 || r->item < 0 || (ev.user_id && r->user < 0))
            goto oom;
        if (r->item == before) { /* a new item: remember its category */
            if (s->item_cat_cap < s->item.cap) { /* grows with the item table */
                int32_t *ic = realloc(s->item_cat, sizeof *ic * (size_t)s->item.cap);
                if (!ic)
                    goto oom;
                s->item_cat = ic;
                s->item_cat_cap = s->item.cap;
            }
            size_t cl;
            const char *cs = sr_clicklog_category(c, &cl);
            s->item_cat[r->item] = cs ? intern(&s->cat, cs, cl) : -1;
            if (cs && s->item_cat[r->item] < 0)
                goto oom;
        }
        if (dg) {
            int64_t day_ms, tf;
            sr_clicklog_diginetica_time(c, &day_ms, &tf);
            r->day = (int32_t)(day_ms / DAY_MS);
            r->ts = tf;
        } else {
            r->ts = ev.timestamp_ms;
            r->day = 0;
        }
        s->n_rows++;
    }
oom:
    return sr_error_set(err, SR_ENOMEM, "click log: out of memory after %lld rows",
                        (long long)s->n_rows);
}

sr_err_t sr_clicklog_prepare(sr_clicklog_t *c, const struct sr_clicklog_prep_params *p,
                             sr_clicklog_set_t **out, struct sr_error *err)
{
    *out = NULL;
    sr_clicklog_set_t *s = calloc(1, sizeof *s);
    if (!s)
        return sr_error_set(err, SR_ENOMEM, "click log: out of memory");
    sr_err_t rc = read_rows(s, c, err);
    int64_t *cnt = NULL, *sess_end = NULL;
    int32_t *first_day = NULL;
    uint8_t *keep = NULL, *in_train = NULL;
    if (rc != SR_OK)
        goto fail;
    s->st.rows = s->n_rows;
    s->st.sessions = s->sess.n;
    s->st.items = s->item.n;
    const int32_t ns = s->sess.n > 0 ? s->sess.n : 1, ni = s->item.n > 0 ? s->item.n : 1;
    cnt = malloc(sizeof *cnt * (size_t)(ns > ni ? ns : ni));
    sess_end = malloc(sizeof *sess_end * (size_t)ns);
    first_day = malloc(sizeof *first_day * (size_t)ns);
    keep = malloc((size_t)(s->n_rows > 0 ? s->n_rows : 1));
    in_train = calloc((size_t)ni, 1);
    if (!cnt || !sess_end || !first_day || !keep || !in_train) {
        rc = sr_error_set(err, SR_ENOMEM, "click log: out of memory");
        goto fail;
    }
    struct row *r = s->rows;
    int64_t n = s->n_rows;

    /* 1. Diginetica: the session's first day + timeframe (DESIGN: gen --from-csv). */
    if (sr_clicklog_layout(c) == SR_CLICKLOG_DIGINETICA) {
        for (int32_t i = 0; i < ns; i++)
            first_day[i] = INT32_MAX;
        for (int64_t i = 0; i < n; i++)
            if (r[i].day < first_day[r[i].sess])
                first_day[r[i].sess] = r[i].day;
        for (int64_t i = 0; i < n; i++)
            r[i].ts += (int64_t)first_day[r[i].sess] * DAY_MS;
    }

    /* 2. Session length, item support, session length again. */
    s->st.dropped_short += drop_short(r, &n, p->min_session_len, ns, cnt, keep);
    if (p->min_item_support > 1) {
        memset(cnt, 0, sizeof *cnt * (size_t)ni);
        for (int64_t i = 0; i < n; i++)
            cnt[r[i].item]++;
        for (int64_t i = 0; i < n; i++)
            keep[i] = cnt[r[i].item] >= p->min_item_support;
        s->st.dropped_rare += compact(r, &n, keep);
    }
    s->st.dropped_short += drop_short(r, &n, p->min_session_len, ns, cnt, keep);

    /* 3. Split by the sessions' last event. */
    int64_t n_test = 0;
    if (p->split_days > 0 && n > 0) {
        int64_t tmax = INT64_MIN;
        for (int32_t i = 0; i < ns; i++)
            sess_end[i] = INT64_MIN;
        for (int64_t i = 0; i < n; i++) {
            if (r[i].ts > sess_end[r[i].sess])
                sess_end[r[i].sess] = r[i].ts;
            if (r[i].ts > tmax)
                tmax = r[i].ts;
        }
        s->st.split_ms = tmax - p->split_days * DAY_MS;
        /* training rows first, test rows after (stable: file order kept) */
        struct row *tmp = malloc(sizeof *tmp * (size_t)(n > 0 ? n : 1));
        if (!tmp) {
            rc = sr_error_set(err, SR_ENOMEM, "click log: out of memory");
            goto fail;
        }
        int64_t w = 0;
        for (int64_t i = 0; i < n; i++)
            if (sess_end[r[i].sess] < s->st.split_ms) {
                tmp[w++] = r[i];
                in_train[r[i].item] = 1;
            }
        int64_t n_train = w;
        for (int64_t i = 0; i < n; i++)
            if (sess_end[r[i].sess] >= s->st.split_ms)
                tmp[w++] = r[i];
        memcpy(r, tmp, sizeof *r * (size_t)n);
        free(tmp);
        struct row *t = r + n_train;
        n_test = n - n_train;
        if (!p->keep_unseen) {
            for (int64_t i = 0; i < n_test; i++)
                keep[i] = in_train[t[i].item];
            s->st.dropped_unseen += compact(t, &n_test, keep);
        }
        s->st.dropped_short += drop_short(t, &n_test, p->min_session_len, ns, cnt, keep);
        n = n_train;
    }

    /* 4. Each part in time order. */
    int64_t np[2] = {n, n_test};
    const struct row *src[2] = {r, r + n}; /* the test rows follow the training rows */
    for (int k = 0; k < 2; k++) {
        s->n_part[k] = np[k];
        s->part[k] = malloc(sizeof(struct row) * (size_t)(np[k] > 0 ? np[k] : 1));
        if (!s->part[k]) {
            rc = sr_error_set(err, SR_ENOMEM, "click log: out of memory");
            goto fail;
        }
        if (np[k])
            memcpy(s->part[k], src[k], sizeof(struct row) * (size_t)np[k]);
        qsort(s->part[k], (size_t)np[k], sizeof(struct row), cmp_row);
        s->st.events[k] = np[k];
        memset(cnt, 0, sizeof *cnt * (size_t)ns);
        for (int64_t i = 0; i < np[k]; i++)
            s->st.out_sessions[k] += !cnt[s->part[k][i].sess]++;
    }
    free(s->rows);
    s->rows = NULL;
    free(cnt);
    free(sess_end);
    free(first_day);
    free(keep);
    free(in_train);
    *out = s;
    return SR_OK;
fail:
    free(cnt);
    free(sess_end);
    free(first_day);
    free(keep);
    free(in_train);
    sr_clicklog_set_destroy(s);
    return rc;
}

int64_t sr_clicklog_set_count(const sr_clicklog_set_t *s, int part)
{
    return part == 0 || part == 1 ? s->n_part[part] : 0;
}

void sr_clicklog_set_event(const sr_clicklog_set_t *s, int part, int64_t i, struct sr_event *ev,
                           const char **category, size_t *category_len)
{
    const struct row *r = &s->part[part][i];
    *ev = (struct sr_event){.session_id = s->sess.s[r->sess], .session_id_len = s->sess.len[r->sess],
                            .item_id = s->item.s[r->item], .item_id_len = s->item.len[r->item],
                            .event_type = "view", .event_type_len = 4, .timestamp_ms = r->ts};
    if (r->user >= 0) {
        ev->user_id = s->user.s[r->user];
        ev->user_id_len = s->user.len[r->user];
    }
    int32_t cat = s->item_cat ? s->item_cat[r->item] : -1;
    *category = cat >= 0 ? s->cat.s[cat] : NULL;
    *category_len = cat >= 0 ? s->cat.len[cat] : 0;
}

const struct sr_clicklog_prep_stats *sr_clicklog_set_stats(const sr_clicklog_set_t *s)
{
    return &s->st;
}
