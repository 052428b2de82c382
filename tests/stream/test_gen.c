/* test_gen.c — the event generator (stream/gen.c) and the click-log reader:
 * determinism by seed, exact sizes, time order, the event-type mix, the Markov structure being
 * learnable (a first-order successor counter beats most-popular by far on held-out sessions),
 * the catalogue (items.tsv), parameter refusals, ISO-8601 parsing, YooChoose and Diginetica
 * samples (tests/data/clicklogs), and the `streamrec gen` command's bytes (file, Avro container).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sr_gen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Encodes every event of a generator as JSON lines into one malloc'd string. */
static char *gen_all(const struct sr_gen_params *p, size_t *len_out)
{
    sr_gen_t *g = NULL;
    struct sr_error err;
    assert_int_equal(sr_gen_new(p, &g, &err), SR_OK);
    sr_event_encoder_t *enc = NULL;
    assert_int_equal(sr_event_encoder_new(SR_FORMAT_JSON, 0, &enc, &err), SR_OK);
    struct sr_buf buf = {0};
    struct sr_event ev;
    while (sr_gen_next(g, &ev)) {
        assert_int_equal(sr_event_encode(enc, &ev, &buf, &err), SR_OK);
        assert_int_equal(sr_buf_append(&buf, "\n", 1), SR_OK);
    }
    assert_int_equal(sr_gen_emitted(g), p->n_events);
    sr_event_encoder_destroy(enc);
    sr_gen_destroy(g);
    *len_out = buf.len;
    return buf.data;
}

static void params(struct sr_gen_params *p, int64_t sessions, int64_t items, int64_t events,
                   uint64_t seed)
{
    sr_gen_params_default(p);
    p->n_sessions = sessions;
    p->n_items = items;
    p->n_events = events;
    p->seed = seed;
}

static void test_determinism(void **state)
{
    (void)state;
    struct sr_gen_params p;
    params(&p, 200, 300, 3000, 42);
    size_t la, lb, lc;
    char *a = gen_all(&p, &la), *b = gen_all(&p, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    p.seed = 43;
    char *c = gen_all(&p, &lc);
    assert_true(la != lc || memcmp(a, c, la) != 0);
    free(a);
    free(b);
    free(c);
}

/* Per-session bookkeeping for the structure tests. */
struct sess {
    int64_t last_ts;
    int64_t first_ts;
    int n;
    int32_t *items; /* appended items (session.event_types) */
    int n_items, cap;
};

static int64_t item_num(const struct sr_event *ev)
{
    assert_true(ev->item_id_len >= 2 && ev->item_id[0] == 'i');
    return strtoll(ev->item_id + 1, NULL, 10);
}

static int64_t session_num(const struct sr_event *ev)
{
    assert_true(ev->session_id_len >= 2 && ev->session_id[0] == 's');
    return strtoll(ev->session_id + 1, NULL, 10);
}

static void test_sizes_order_types(void **state)
{
    (void)state;
    struct sr_gen_params p;
    params(&p, 500, 400, 6000, 7);
    sr_gen_t *g = NULL;
    struct sr_error err;
    assert_int_equal(sr_gen_new(&p, &g, &err), SR_OK);
    struct sess *s = calloc((size_t)p.n_sessions, sizeof *s);
    int64_t prev_ts = INT64_MIN, types[5] = {0}, anon = 0, n = 0;
    const char *names[5] = {"view", "click", "add_to_cart", "purchase", "wishlist"};
    int64_t last_item[500];
    struct sr_event ev;
    while (sr_gen_next(g, &ev)) {
        n++;
        assert_int_equal(sr_event_validate(&ev, NULL, &err), SR_OK);
        assert_true(ev.timestamp_ms >= prev_ts); /* the merged stream never goes back */
        prev_ts = ev.timestamp_ms;
        int64_t k = session_num(&ev);
        assert_true(k >= 0 && k < p.n_sessions);
        if (s[k].n)
            assert_true(ev.timestamp_ms >= s[k].last_ts + 1000); /* gaps of at least 1 s */
        else
            s[k].first_ts = ev.timestamp_ms;
        s[k].last_ts = ev.timestamp_ms;
        s[k].n++;
        int t = -1;
        for (int i = 0; i < 5; i++)
            if (ev.event_type_len == strlen(names[i]) && !memcmp(ev.event_type, names[i], ev.event_type_len))
                t = i;
        assert_true(t >= 0);
        types[t]++;
        int64_t it = item_num(&ev);
        assert_true(it >= 0 && it < p.n_items);
        if (t >= 2) /* cart, purchase, wishlist repeat the item just seen */
            assert_int_equal(it, last_item[k]);
        last_item[k] = it;
        anon += ev.user_id == NULL;
        if (ev.user_id)
            assert_true(ev.user_id[0] == 'u');
    }
    assert_int_equal(n, p.n_events);
    for (int64_t k = 0; k < p.n_sessions; k++)
        assert_true(s[k].n >= 1); /* every session exists */
    /* Interleaving: count sessions whose time span overlaps another's start. */
    int64_t overlapping = 0;
    for (int64_t k = 1; k < p.n_sessions; k++)
        overlapping += s[k].first_ts < s[k - 1].last_ts;
    assert_true(overlapping > p.n_sessions / 2);
    /* The mix: views dominate; every type occurs. */
    for (int i = 0; i < 5; i++)
        assert_true(types[i] > 0);
    assert_true(types[0] > types[1] && types[1] > types[2] && types[2] > types[3]);
    assert_true(anon > 0 && anon < n);
    sr_gen_destroy(g);
    free(s);
}

/* Issue 5's demo needs learnable structure: fit "most frequent successor" counts on the first
 * half of the sessions, then on the second half compare HitRate@10 of that predictor with the
 * ten most popular items. */
static void test_markov_learnable(void **state)
{
    (void)state;
    struct sr_gen_params p;
    params(&p, 4000, 2000, 60000, 3);
    sr_gen_t *g = NULL;
    struct sr_error err;
    assert_int_equal(sr_gen_new(&p, &g, &err), SR_OK);
    int64_t M = p.n_items, N = p.n_sessions;
    struct sess *s = calloc((size_t)N, sizeof *s);
    struct sr_event ev;
    while (sr_gen_next(g, &ev)) {
        if (!strncmp(ev.event_type, "wishlist", ev.event_type_len))
            continue; /* not in session.event_types */
        struct sess *x = &s[session_num(&ev)];
        if (x->n_items == x->cap) {
            x->cap = x->cap ? 2 * x->cap : 16;
            x->items = realloc(x->items, (size_t)x->cap * sizeof *x->items);
        }
        x->items[x->n_items++] = (int32_t)item_num(&ev);
    }
    /* Successor counts (dense M x M is 16 MB of int32 for M = 2000: fine for a test). */
    int32_t *cnt = calloc((size_t)(M * M), sizeof *cnt);
    int64_t *pop = calloc((size_t)M, sizeof *pop);
    for (int64_t k = 0; k < N / 2; k++)
        for (int i = 1; i < s[k].n_items; i++) {
            cnt[(int64_t)s[k].items[i - 1] * M + s[k].items[i]]++;
            pop[s[k].items[i]]++;
        }
    int64_t top[10];
    for (int r = 0; r < 10; r++) {
        int64_t best = -1;
        for (int64_t j = 0; j < M; j++) {
            bool used = false;
            for (int q = 0; q < r; q++)
                used |= top[q] == j;
            if (!used && (best < 0 || pop[j] > pop[best]))
                best = j;
        }
        top[r] = best;
    }
    int64_t n = 0, hit_markov = 0, hit_pop = 0;
    for (int64_t k = N / 2; k < N; k++)
        for (int i = 1; i < s[k].n_items; i++) {
            int64_t a = s[k].items[i - 1], b = s[k].items[i];
            n++;
            for (int q = 0; q < 10; q++)
                hit_pop += top[q] == b;
            /* b is in a's top 10 successors when fewer than 10 items beat it (ties favour lower
             * index, as the model's top-k does) and it was seen at all. */
            const int32_t *row = cnt + a * M;
            if (row[b] > 0) {
                int64_t better = 0;
                for (int64_t j = 0; j < M; j++)
                    better += row[j] > row[b] || (row[j] == row[b] && j < b);
                hit_markov += better < 10;
            }
        }
    double hr_markov = (double)hit_markov / n, hr_pop = (double)hit_pop / n;
    print_message("held-out transitions %" PRId64 ": first-order HitRate@10 %.3f, most-popular %.3f\n",
                  n, hr_markov, hr_pop);
    assert_true(hr_markov > 0.6);
    assert_true(hr_markov > 2.5 * hr_pop);
    for (int64_t k = 0; k < N; k++)
        free(s[k].items);
    free(s);
    free(cnt);
    free(pop);
    sr_gen_destroy(g);
}

static void test_catalogue(void **state)
{
    (void)state;
    struct sr_gen_params p;
    params(&p, 10, 100, 20, 5);
    sr_gen_t *g = NULL;
    struct sr_error err;
    assert_int_equal(sr_gen_new(&p, &g, &err), SR_OK);
    assert_int_equal(sr_gen_item_count(g), 100);
    for (int64_t n = 0; n < 100; n++) {
        char id[16];
        snprintf(id, sizeof id, "i%" PRId64, n);
        assert_string_equal(sr_gen_item_id(g, n), id);
        assert_true(sr_gen_item_category(g, n)[0] == 'c');
        const int64_t *succ;
        const double *prob;
        int32_t k = sr_gen_item_successors(g, n, &succ, &prob);
        assert_int_equal(k, 4);
        double sum = 0;
        for (int32_t r = 0; r < k; r++) {
            assert_true(succ[r] != n && succ[r] >= 0 && succ[r] < 100);
            for (int32_t q = 0; q < r; q++)
                assert_true(succ[q] != succ[r]);
            if (r)
                assert_true(prob[r] < prob[r - 1]);
            sum += prob[r];
        }
        assert_true(sum > 0.999999 && sum < 1.000001);
    }
    char path[] = "/tmp/sr_test_items_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sr_gen_write_items_tsv(g, path, 2, &err), SR_OK);
    FILE *f = fopen(path, "r");
    char line[256];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "index\titem_id\tcategory\tavailable\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        int64_t idx;
        char id[32], cat[32];
        int av;
        assert_int_equal(sscanf(line, "%" SCNd64 "\t%31s\t%31s\t%d", &idx, id, cat, &av), 4);
        assert_int_equal(idx, 2 + rows);
        assert_string_equal(id, sr_gen_item_id(g, rows));
        assert_string_equal(cat, sr_gen_item_category(g, rows));
        assert_int_equal(av, sr_gen_item_available(g, rows) ? 1 : 0);
        rows++;
    }
    assert_int_equal(rows, 100);
    fclose(f);
    unlink(path);
    assert_int_equal(sr_gen_write_items_tsv(g, "/nonexistent-dir/items.tsv", 2, &err), SR_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/items.tsv"));
    sr_gen_destroy(g);
}

static void test_refusals(void **state)
{
    (void)state;
    struct sr_gen_params p;
    struct sr_error err;
    sr_gen_t *g = NULL;
    params(&p, 100, 50, 99, 1);
    assert_int_equal(sr_gen_new(&p, &g, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "events"));
    params(&p, 10, 4, 100, 1);
    assert_int_equal(sr_gen_new(&p, &g, &err), SR_EINVAL); /* successors >= items */
    assert_non_null(strstr(err.msg, "successors"));
    params(&p, 10, 100, 100, 1);
    p.p_restart = 1.5;
    assert_int_equal(sr_gen_new(&p, &g, &err), SR_EINVAL);
    assert_non_null(strstr(err.msg, "p_restart"));
    assert_null(g);
    /* Smallest legal catalogue and one event per session still work. */
    params(&p, 5, 2, 5, 1);
    p.successors = 1;
    size_t len;
    char *all = gen_all(&p, &len);
    assert_true(len > 0);
    free(all);
    sr_gen_destroy(NULL);
}

static void test_iso8601(void **state)
{
    (void)state;
    int64_t ms;
    assert_true(sr_gen_parse_iso8601("2014-04-07T10:51:09.277Z", 24, &ms));
    assert_int_equal(ms, INT64_C(1396867869277));
    assert_true(sr_gen_parse_iso8601("1970-01-01", 10, &ms));
    assert_int_equal(ms, 0);
    assert_true(sr_gen_parse_iso8601("2016-02-29T00:00:00+01:00", 25, &ms));
    assert_int_equal(ms, INT64_C(1456700400000));
    assert_true(sr_gen_parse_iso8601("2000-03-01 12:00", 16, &ms));
    assert_int_equal(ms, INT64_C(951912000000));
    assert_true(sr_gen_parse_iso8601("2014-04-07T10:51:09.5", 21, &ms));
    assert_int_equal(ms % 1000, 500);
    const char *bad[] = {"", "2014-04-07T", "2014-13-01", "2014-04-07T10:51:09.Z",
                         "yesterday", "2014-04-07T25:00", "2014-04-07Zjunk"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(sr_gen_parse_iso8601(bad[i], strlen(bad[i]), &ms));
}

/* Reads every event of a click log as JSON lines and compares with the expected file. */
static void check_clicklog(const char *name, enum sr_clicklog_layout layout, const char *expected)
{
    char path[1024], exp_path[1024];
    snprintf(path, sizeof path, "%s/clicklogs/%s", SR_TEST_DATA, name);
    snprintf(exp_path, sizeof exp_path, "%s/clicklogs/%s", SR_TEST_DATA, expected);
    sr_clicklog_t *c = NULL;
    struct sr_error err;
    assert_int_equal(sr_clicklog_open(path, &c, &err), SR_OK);
    assert_int_equal(sr_clicklog_layout(c), layout);
    sr_event_encoder_t *enc = NULL;
    assert_int_equal(sr_event_encoder_new(SR_FORMAT_JSON, 0, &enc, &err), SR_OK);
    struct sr_buf buf = {0};
    struct sr_event ev;
    sr_err_t rc;
    while ((rc = sr_clicklog_next(c, &ev, &err)) == SR_OK) {
        assert_int_equal(sr_event_encode(enc, &ev, &buf, &err), SR_OK);
        sr_buf_append(&buf, "\n", 1);
    }
    assert_int_equal(rc, SR_ENOENT);
    char *want = NULL;
    size_t want_len = 0;
    assert_int_equal(sr_file_read_all(exp_path, &want, &want_len, &err), SR_OK);
    assert_int_equal(buf.len, want_len);
    assert_memory_equal(buf.data, want, want_len);
    free(want);
    sr_buf_free(&buf);
    sr_event_encoder_destroy(enc);
    sr_clicklog_close(c);
}

static void test_clicklog_yoochoose(void **state)
{
    (void)state;
    /* No header; a blank line, a category "S", a CRLF line with a +02:00 offset. */
    check_clicklog("yoochoose-sample.dat", SR_CLICKLOG_YOOCHOOSE,
                   "yoochoose-sample.expected.jsonl");
}

static void test_clicklog_diginetica(void **state)
{
    (void)state;
    /* Header; userId NA and empty are null; timeframe added to the eventdate's midnight. */
    check_clicklog("diginetica-sample.csv", SR_CLICKLOG_DIGINETICA,
                   "diginetica-sample.expected.jsonl");
}

/* ---- click-log preprocessing ---------------------------------------------------------------- */

static sr_clicklog_set_t *prepare(const char *name, struct sr_clicklog_prep_params p)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/clicklogs/%s", SR_TEST_DATA, name);
    sr_clicklog_t *c = NULL;
    sr_clicklog_set_t *s = NULL;
    struct sr_error err = {0};
    assert_int_equal(sr_clicklog_open(path, &c, &err), SR_OK);
    if (sr_clicklog_prepare(c, &p, &s, &err) != SR_OK)
        fail_msg("prepare %s: %s", name, err.msg);
    sr_clicklog_close(c);
    return s;
}

/* "session:item@ts" of every event of a part, ';'-separated. */
static const char *part_str(const sr_clicklog_set_t *s, int part, char *buf, size_t cap)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < sr_clicklog_set_count(s, part); i++) {
        struct sr_event ev;
        const char *cat;
        size_t cl;
        sr_clicklog_set_event(s, part, i, &ev, &cat, &cl);
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%.*s:%.*s@%" PRId64, i ? ";" : "",
                                (int)ev.session_id_len, ev.session_id, (int)ev.item_id_len,
                                ev.item_id, ev.timestamp_ms);
    }
    return buf;
}

#define MAY1 INT64_C(1462060800000) /* 2016-05-01T00:00:00Z */
#define DAY INT64_C(86400000)

static void test_clicklog_prepare(void **state)
{
    (void)state;
    char buf[2048], want[2048];
    /* No option: every row, in time order; session 10 starts on May 1 and its row dated May 2
     * (after midnight) is 90 s after the start, not a day and 90 s. */
    sr_clicklog_set_t *s = prepare("diginetica-midnight.csv", (struct sr_clicklog_prep_params){0});
    const struct sr_clicklog_prep_stats *st = sr_clicklog_set_stats(s);
    assert_int_equal(st->rows, 13);
    assert_int_equal(st->sessions, 6);
    assert_int_equal(st->items, 7);
    assert_int_equal(sr_clicklog_set_count(s, 0), 13);
    assert_int_equal(sr_clicklog_set_count(s, 1), 0);
    part_str(s, 0, buf, sizeof buf);
    snprintf(want, sizeof want, "10:102@%" PRId64 ";10:103@%" PRId64 ";10:101@%" PRId64 ";",
             MAY1, MAY1 + 30000, MAY1 + 90000);
    assert_true(!strncmp(buf, want, strlen(want)));
    /* every part in time order */
    int64_t prev = INT64_MIN;
    for (int64_t i = 0; i < 13; i++) {
        struct sr_event ev;
        const char *cat;
        size_t cl;
        sr_clicklog_set_event(s, 0, i, &ev, &cat, &cl);
        assert_true(ev.timestamp_ms >= prev);
        assert_null(cat); /* Diginetica has no category */
        prev = ev.timestamp_ms;
    }
    sr_clicklog_set_destroy(s);

    /* Support and length: session 12 is too short; items 105-107 occur once; without 107,
     * session 14 is too short. */
    s = prepare("diginetica-midnight.csv",
                (struct sr_clicklog_prep_params){.min_item_support = 2, .min_session_len = 2});
    st = sr_clicklog_set_stats(s);
    assert_int_equal(st->dropped_short, 1 + 1);
    assert_int_equal(st->dropped_rare, 2);
    assert_int_equal(sr_clicklog_set_count(s, 0), 9);
    assert_int_equal(st->out_sessions[0], 4);
    sr_clicklog_set_destroy(s);

    /* Split by days: sessions ending in the last 2 days are the test part; item 106 and 107
     * are unseen in training: dropped, and session 14 with them. */
    s = prepare("diginetica-midnight.csv",
                (struct sr_clicklog_prep_params){.min_session_len = 2, .split_days = 2});
    st = sr_clicklog_set_stats(s);
    assert_int_equal(st->split_ms, MAY1 + 9 * DAY + 1000 - 2 * DAY); /* session 14 ends last */
    snprintf(want, sizeof want, "10:102@%" PRId64 ";10:103@%" PRId64 ";10:101@%" PRId64
             ";11:104@%" PRId64 ";11:101@%" PRId64, MAY1, MAY1 + 30000, MAY1 + 90000,
             MAY1 + 2 * DAY, MAY1 + 2 * DAY + 5000);
    assert_string_equal(part_str(s, 0, buf, sizeof buf), want);
    snprintf(want, sizeof want, "13:102@%" PRId64 ";13:101@%" PRId64 ";15:104@%" PRId64
             ";15:101@%" PRId64, MAY1 + 8 * DAY, MAY1 + 8 * DAY + 60000, MAY1 + 9 * DAY,
             MAY1 + 9 * DAY + 500);
    assert_string_equal(part_str(s, 1, buf, sizeof buf), want);
    assert_int_equal(st->dropped_unseen, 2);
    assert_int_equal(st->out_sessions[1], 2);
    sr_clicklog_set_destroy(s);

    /* ... or kept. */
    s = prepare("diginetica-midnight.csv", (struct sr_clicklog_prep_params){
                    .min_session_len = 2, .split_days = 2, .keep_unseen = true});
    snprintf(want, sizeof want, "13:102@%" PRId64 ";13:106@%" PRId64 ";13:101@%" PRId64
             ";14:107@%" PRId64 ";15:104@%" PRId64 ";15:101@%" PRId64 ";14:103@%" PRId64,
             MAY1 + 8 * DAY, MAY1 + 8 * DAY + 20000, MAY1 + 8 * DAY + 60000, MAY1 + 9 * DAY,
             MAY1 + 9 * DAY, MAY1 + 9 * DAY + 500, MAY1 + 9 * DAY + 1000);
    assert_string_equal(part_str(s, 1, buf, sizeof buf), want);
    sr_clicklog_set_destroy(s);

    /* YooChoose out of file order: each session in time order (a zone offset honoured), equal
     * times in file order; categories from the item's first row. */
    s = prepare("yoochoose-unordered.dat", (struct sr_clicklog_prep_params){0});
    assert_string_equal(part_str(s, 0, buf, sizeof buf),
                        "8:303@1396515599999;8:300@1396515600000;8:301@1396515600000;"
                        "7:301@1396519260000;7:302@1396519380000;7:300@1396519500000");
    struct sr_event ev;
    const char *cat;
    size_t cl;
    sr_clicklog_set_event(s, 0, 1, &ev, &cat, &cl);
    assert_int_equal(cl, 1);
    assert_memory_equal(cat, "0", 1); /* 300's first row (session 7) says 0 */
    sr_clicklog_set_destroy(s);
}

static void test_clicklog_bad(void **state)
{
    (void)state;
    char path[1024];
    sr_clicklog_t *c = NULL;
    struct sr_error err;
    snprintf(path, sizeof path, "%s/clicklogs/bad-sample.csv", SR_TEST_DATA);
    assert_int_equal(sr_clicklog_open(path, &c, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "bad-sample.csv:1"));
    snprintf(path, sizeof path, "%s/clicklogs/yoochoose-bad-time.dat", SR_TEST_DATA);
    assert_int_equal(sr_clicklog_open(path, &c, &err), SR_OK); /* header line skipped */
    struct sr_event ev;
    assert_int_equal(sr_clicklog_next(c, &ev, &err), SR_OK);
    assert_int_equal(ev.timestamp_ms, INT64_C(1396867869277));
    assert_int_equal(sr_clicklog_next(c, &ev, &err), SR_EFORMAT);
    assert_non_null(strstr(err.msg, "yoochoose-bad-time.dat:3"));
    sr_clicklog_close(c);
    assert_int_equal(sr_clicklog_open("/nonexistent/clicks.dat", &c, &err), SR_EIO);
}

/* The command: same arguments, same bytes; another seed, other bytes; an Avro container holds
 * the same events as the JSON Lines file; --from-csv writes the expected lines. */
static int run(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path, size_t *len)
{
    char *d = NULL;
    struct sr_error err;
    assert_int_equal(sr_file_read_all(path, &d, len, &err), SR_OK);
    return d;
}

static void test_command(void **state)
{
    (void)state;
    char dir[] = "/tmp/sr_test_gen_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[4096];
    const char *bin = SR_BINARY_DIR "/stream/streamrec";
    const char *args = "--sessions 50 --items 80 --events 700";
    snprintf(cmd, sizeof cmd,
             "%s gen %s --seed 9 --output %s/a.jsonl --items-out %s/items.tsv && "
             "%s gen %s --seed 9 --output %s/b.jsonl && %s gen %s --seed 10 --output %s/c.jsonl && "
             "%s gen %s --seed 9 --output %s/a.avro",
             bin, args, dir, dir, bin, args, dir, bin, args, dir, bin, args, dir);
    assert_int_equal(run(cmd), 0);
    char p[1200];
    size_t la, lb, lc;
    snprintf(p, sizeof p, "%s/a.jsonl", dir);
    char *a = slurp(p, &la);
    snprintf(p, sizeof p, "%s/b.jsonl", dir);
    char *b = slurp(p, &lb);
    snprintf(p, sizeof p, "%s/c.jsonl", dir);
    char *c = slurp(p, &lc);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_true(la != lc || memcmp(a, c, la));
    /* The library gives the same bytes as the command. */
    struct sr_gen_params gp;
    params(&gp, 50, 80, 700, 9);
    size_t ll;
    char *lib = gen_all(&gp, &ll);
    assert_int_equal(ll, la);
    assert_memory_equal(lib, a, la);
    /* Avro container: the same events. */
    snprintf(p, sizeof p, "%s/a.avro", dir);
    sr_avro_file_reader_t *r = NULL;
    struct sr_error err;
    assert_int_equal(sr_avro_file_reader_open(p, &r, &err), SR_OK);
    sr_arena_t *arena = sr_arena_new(1 << 16);
    sr_event_encoder_t *enc = NULL;
    assert_int_equal(sr_event_encoder_new(SR_FORMAT_JSON, 0, &enc, &err), SR_OK);
    struct sr_buf buf = {0};
    struct sr_event ev;
    sr_err_t rc;
    while ((rc = sr_avro_file_reader_next(r, arena, &ev, NULL, &err)) == SR_OK) {
        assert_int_equal(sr_event_encode(enc, &ev, &buf, &err), SR_OK);
        sr_buf_append(&buf, "\n", 1);
        sr_arena_reset(arena);
    }
    assert_int_equal(rc, SR_ENOENT);
    assert_int_equal(buf.len, la);
    assert_memory_equal(buf.data, a, la);
    sr_avro_file_reader_close(r);
    sr_arena_destroy(arena);
    sr_buf_free(&buf);
    sr_event_encoder_destroy(enc);
    /* items.tsv: header + 80 rows. */
    snprintf(p, sizeof p, "%s/items.tsv", dir);
    size_t li;
    char *items = slurp(p, &li);
    int lines = 0;
    for (size_t i = 0; i < li; i++)
        lines += items[i] == '\n';
    assert_int_equal(lines, 81);
    assert_true(!strncmp(items, "index\titem_id\tcategory\tavailable\n2\ti0\t", 37));
    /* --from-csv through the command. */
    snprintf(cmd, sizeof cmd,
             "%s gen --from-csv %s/clicklogs/diginetica-sample.csv --output %s/d.jsonl && "
             "cmp -s %s/d.jsonl %s/clicklogs/diginetica-sample.gen.jsonl",
             bin, SR_TEST_DATA, dir, dir, SR_TEST_DATA);
    assert_int_equal(run(cmd), 0);
    /* The preprocessing through the command: a Diginetica log out of order with a session
     * across midnight, filtered and split into two files (tests/data/clicklogs). */
    snprintf(cmd, sizeof cmd,
             "%s gen --from-csv %s/clicklogs/diginetica-midnight.csv --min-session-len 2 "
             "--split-days 2 --output %s/tr.jsonl --test-output %s/te.jsonl 2>/dev/null && "
             "cmp -s %s/tr.jsonl %s/clicklogs/diginetica-midnight.train.jsonl && "
             "cmp -s %s/te.jsonl %s/clicklogs/diginetica-midnight.test.jsonl && "
             "%s gen --from-csv %s/clicklogs/yoochoose-unordered.dat --output %s/yu.jsonl "
             "2>/dev/null && cmp -s %s/yu.jsonl %s/clicklogs/yoochoose-unordered.expected.jsonl",
             bin, SR_TEST_DATA, dir, dir, dir, SR_TEST_DATA, dir, SR_TEST_DATA,
             bin, SR_TEST_DATA, dir, dir, SR_TEST_DATA);
    assert_int_equal(run(cmd), 0);
    /* --split-days without --test-output, and preprocessing without --from-csv, are refused. */
    snprintf(cmd, sizeof cmd, "%s gen --from-csv %s/clicklogs/diginetica-midnight.csv "
             "--split-days 2 --output %s/x.jsonl 2>/dev/null", bin, SR_TEST_DATA, dir);
    assert_int_not_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s gen --min-session-len 2 --output %s/x.jsonl 2>/dev/null",
             bin, dir);
    assert_int_not_equal(run(cmd), 0);
    /* --items-out of a click log: distinct items in order of first appearance. */
    snprintf(cmd, sizeof cmd,
             "%s gen --from-csv %s/clicklogs/yoochoose-sample.dat --output /dev/null "
             "--items-out %s/y.tsv && cmp -s %s/y.tsv %s/clicklogs/yoochoose-sample.items.tsv && "
             "%s gen --from-csv %s/clicklogs/diginetica-sample.csv --output /dev/null "
             "--items-out %s/d.tsv && cmp -s %s/d.tsv %s/clicklogs/diginetica-sample.items.tsv",
             bin, SR_TEST_DATA, dir, dir, SR_TEST_DATA, bin, SR_TEST_DATA, dir, dir, SR_TEST_DATA);
    assert_int_equal(run(cmd), 0);
    /* Bad input: one-line reason, non-zero exit. */
    snprintf(cmd, sizeof cmd, "%s gen --sessions 10 --events 5 --output %s/x.jsonl 2>/dev/null",
             bin, dir);
    assert_int_not_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s gen --sessions 10 2>/dev/null", bin);
    assert_int_not_equal(run(cmd), 0);
    /* --rate paces: 300 events at 1000/s take at least 0.29 s. */
    snprintf(cmd, sizeof cmd, "%s gen --sessions 30 --events 300 --rate 1000 --output %s/r.jsonl",
             bin, dir);
    uint64_t t0 = sr_now_ns();
    assert_int_equal(run(cmd), 0);
    assert_true(sr_now_ns() - t0 >= 290000000u);
    snprintf(cmd, sizeof cmd, "%s gen --help | grep -q -- --from-csv", bin);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(run(cmd), 0);
    free(a);
    free(b);
    free(c);
    free(lib);
    free(items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),        cmocka_unit_test(test_sizes_order_types),
        cmocka_unit_test(test_markov_learnable),   cmocka_unit_test(test_catalogue),
        cmocka_unit_test(test_refusals),           cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_clicklog_yoochoose), cmocka_unit_test(test_clicklog_diginetica),
        cmocka_unit_test(test_clicklog_bad),       cmocka_unit_test(test_clicklog_prepare),       cmocka_unit_test(test_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
