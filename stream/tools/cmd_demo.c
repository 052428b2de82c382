/* cmd_demo.c — `streamrec demo`: the whole pipeline in one process, with no set-up.
 *
 *   producer thread ── gen (--seed 1 --items 1000: the chain the demo bundle learned) at --rate
 *        │              events/s, JSON, key = session_id
 *        ▼
 *   embedded broker (librdkafka's mock cluster: topics `events` and `recommendations`)
 *        │
 *        ▼
 *   runtime thread ── the online runtime of `streamrec run` (runtime.c): consumer group,
 *        │             RocksDB state in a temporary directory, the demo bundle
 *        ▼
 *   main thread ──── a consumer of `recommendations` (assign, no group) that matches each
 *                    recommendation to its event, scores it against the session's next stored
 *                    event beside a most-popular baseline, and draws the status line.
 *
 * Evaluation (the definition of replay --eval, ops/op_eval.c): a recommendation's target is the
 * item of the same session's next event whose type is in session.event_types; HitRate/MRR/NDCG
 * at recs.k over the recommendations whose target has arrived. The baseline answers the same
 * events with the recs.k most frequent stored items so far, minus the session's items. The
 * producer hands every event it produces to the main thread (a mutex-guarded vector) before
 * producing it, so an event is always known before its recommendation can arrive; a
 * recommendation is matched to its event by session_id and event_timestamp_ms, in session
 * order (one session stays on one partition of both topics).
 *
 * Volume: the mock keeps about 5 MiB per partition and drops the oldest messages beyond, so
 * both topics get enough partitions for the whole run's recommendations (~550 B each) even if
 * nothing were consumed.
 *
 * Threads: main (viewer, status, signals by flag), the producer, the runtime's loop + worker,
 * librdkafka's. Exit 0 after the summary; 1 with a one-line reason when a part fails. */
#include "cli.h"
#include "sr_gen.h"
#include "sr_mock_broker.h"
#include "sr_ops.h"
#include "sr_state.h"
#include "sr_stream.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD "demo"
#define KMAX 100              /* recs.k cap for the evaluation */
#define LAT_WINDOW 4096       /* latencies behind the live p50/p99 */
#define REC_BYTES 550         /* a JSON recommendation with 10 items, rounded up */
#define MOCK_PART_BYTES (4u << 20) /* under the mock's 5 MiB per partition */

enum { EV_STORED = 1, EV_TRIGGER = 2, EV_WARMUP = 4 };

/* One produced event, producer → main. */
struct ev_rec {
    int64_t session;   /* n of "s<n>" */
    int64_t ts;        /* timestamp_ms */
    uint64_t t_prod;   /* sr_now_ns() just before produce */
    int32_t item;      /* n of "i<n>" */
    uint8_t flags;
};

/* A trigger event waiting for its recommendation and/or its target. */
struct trig {
    struct trig *next;
    int64_t ts;
    uint64_t t_prod;
    int32_t target;    /* -1: not yet; -2: none (replaced before a stored event came) */
    int32_t n_seen_at; /* session items when it was produced (sample display) */
    bool has_rec;
    bool warmup;       /* the warm-up event: not in the latency figures */
    int32_t nb, nm;
    int32_t *base, *model; /* k slots each, after the struct */
};

struct dsess {
    struct trig *head, *tail;
    int32_t *seen;
    int32_t n_seen, cap_seen;
};

struct demo {
    /* options */
    const char *bundle;
    double rate;
    double duration;   /* 0: none */
    int64_t events;    /* 0: none */
    uint64_t seed;
    int32_t concurrency;
    int partitions;
    const char *state;
    struct sr__cli_list sets; /* --set: applied after the demo's own settings */
    bool tty;
    /* parts */
    sr_config_t *cfg;
    sr_mock_broker_t *broker;
    char bootstraps[256];
    char state_dir[PATH_MAX];
    sr_gen_t *gen;
    int64_t gen_total;
    rd_kafka_t *prod, *viewer;
    sr_runtime_t *rt;
    int32_t k;
    char types_buf[512], trig_buf[512];
    const char *stored_types[32], *trigger_types[32];
    int n_stored_types, n_trigger_types;
    /* producer thread → main */
    pthread_mutex_t qmu;
    struct ev_rec *q;
    size_t qn, qcap;
    int stop_producing;      /* atomic */
    int64_t produced;        /* atomic */
    int producer_done;       /* atomic */
    char producer_err[SR_ERROR_MSG_MAX + 64];
    uint64_t t_start, t_prod_end; /* ns */
    uint64_t t_pace;         /* producer: the pacing origin after the warm-up event */
    /* runtime thread */
    int rt_done;             /* atomic */
    sr_err_t rt_rc;
    struct sr_error rt_err;
    /* main thread: evaluation */
    struct ev_rec *work;
    size_t wcap;
    struct dsess *sess;
    int64_t n_sess;
    int64_t n_items;
    uint64_t *pop_cnt;
    int32_t *pop_order, *pop_pos;
    struct trig *free_trigs;
    struct sr_eval_report model, base; /* scored by sr_eval_score, as replay --eval */
    uint64_t triggers, recs, unmatched, evaluated_unresolved;
    float *lat;              /* ms, every recommendation */
    size_t n_lat, cap_lat;
    float lat_ring[LAT_WINDOW];
    size_t n_ring;
    char model_version[128];
    sr_arena_t *arena;
    uint64_t last_sample;
    int samples;
};

static volatile sig_atomic_t g_interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void usage(void)
{
    printf("usage: streamrec demo [--duration S] [--events N] [--rate R] [--bundle DIR]\n"
           "                      [--seed S] [--concurrency C] [--partitions P]\n"
           "                      [--state rocksdb|memory] [--set key=value]...\n"
           "  Everything in one process, nothing to set up: an embedded Kafka-protocol broker\n"
           "  (librdkafka's mock cluster), synthetic sessions (`streamrec gen --seed 1 --items\n"
           "  1000`, the chain the demo bundle was trained on) produced at a steady rate, the\n"
           "  online runtime of `streamrec run` with the demo bundle and RocksDB state in a\n"
           "  temporary directory, and a consumer of the recommendations.\n"
           "  On a terminal: a live status line (events/s, end-to-end latency p50/p99 from event\n"
           "  produced to recommendation consumed, consumer lag, HitRate@K so far beside a\n"
           "  most-popular baseline) and sample recommendations; elsewhere a progress line every\n"
           "  5 s. Ends with a summary (events, recommendations, latency, HitRate/MRR/NDCG@K of the\n"
           "  model and of the baseline) when --duration or --events is reached, or on Ctrl-C.\n"
           "  The target of a recommendation is the session's next stored event (as replay\n"
           "  --eval); the baseline recommends the K most frequent items so far, minus the\n"
           "  session's items.\n"
           "  --duration S    seconds of events (default 20 without --events; 0: no limit)\n"
           "  --events N      stop after N events\n"
           "  --rate R        events per second (default 2000)\n"
           "  --bundle DIR    model bundle (default: the demo bundle, found next to the program:\n"
           "                  <prefix>/share/streamrec/demo-bundle or the source tree's\n"
           "                  deploy/demo-bundle)\n"
           "  --seed S        generator seed (default 1; another seed is a chain the demo bundle\n"
           "                  never saw)\n"
           "  --concurrency C sessions open at once (default 200)\n"
           "  --partitions P  partitions of both topics (default: 4, more for long runs)\n"
           "  --state B       session store: rocksdb (default, temporary directory) or memory\n"
           "  --set k=v       any configuration key of `streamrec run` (e.g. device=cpu)\n");
}

/* ---- finding the demo bundle ------------------------------------------------------------ */

static bool is_bundle(const char *dir)
{
    char p[PATH_MAX];
    struct stat st;
    if (snprintf(p, sizeof p, "%s/bundle.json", dir) >= (int)sizeof p)
        return false;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* --bundle, else next to the executable (installed: <prefix>/bin/streamrec and
 * <prefix>/share/streamrec/demo-bundle; build tree: <src>/build/stream/streamrec), else the
 * paths known at build time (install prefix, source tree). */
static const char *find_bundle(char *buf, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            static const char *const rel[] = {"/../share/streamrec/demo-bundle",
                                              "/../../deploy/demo-bundle",
                                              "/../deploy/demo-bundle"};
            for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
                snprintf(buf, cap, "%s%s", exe, rel[i]);
                if (is_bundle(buf)) {
                    char *real = realpath(buf, NULL);
                    if (real) {
                        snprintf(buf, cap, "%s", real);
                        free(real);
                    }
                    return buf;
                }
            }
        }
    }
#ifdef SR_DEMO_BUNDLE_INSTALLED
    if (is_bundle(SR_DEMO_BUNDLE_INSTALLED))
        return SR_DEMO_BUNDLE_INSTALLED;
#endif
#ifdef SR_DEMO_BUNDLE_SOURCE
    if (is_bundle(SR_DEMO_BUNDLE_SOURCE))
        return SR_DEMO_BUNDLE_SOURCE;
#endif
    return NULL;
}

/* ---- small parsers ---------------------------------------------------------------------- */

/* n of "<prefix><n>" (prefix one character), or -1. */
static int64_t id_number(const char *s, size_t len, char prefix)
{
    if (len < 2 || len > 19 || s[0] != prefix)
        return -1;
    int64_t v = 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static bool in_list(const char *const *list, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(list[i]) == len && !memcmp(list[i], s, len))
            return true;
    return false;
}

/* ---- producer thread --------------------------------------------------------------------- */

static void queue_push(struct demo *d, const struct ev_rec *e)
{
    pthread_mutex_lock(&d->qmu);
    if (d->qn == d->qcap) {
        size_t cap = d->qcap ? d->qcap * 2 : 4096;
        struct ev_rec *q = realloc(d->q, cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&d->qmu);
            return; /* the event goes unevaluated; its recommendation counts as unmatched */
        }
        d->q = q;
        d->qcap = cap;
    }
    d->q[d->qn++] = *e;
    pthread_mutex_unlock(&d->qmu);
}

static void sleep_until(uint64_t due)
{
    uint64_t now;
    while ((now = sr_now_ns()) < due) {
        uint64_t left = due - now;
        struct timespec ts = {0, (long)(left > 1000000 ? 1000000 : left)};
        nanosleep(&ts, NULL);
    }
}

static void *producer_main(void *arg)
{
    struct demo *d = arg;
    struct sr_error err = {0};
    sr_event_encoder_t *enc = NULL;
    struct sr_buf buf = {0};
    if (sr_event_encoder_new(SR_FORMAT_JSON, 0, &enc, &err) != SR_OK) {
        snprintf(d->producer_err, sizeof d->producer_err, "%s", err.msg);
        goto out;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(d->prod, "events", NULL);
    if (!rkt) {
        snprintf(d->producer_err, sizeof d->producer_err, "topic events: %s",
                 rd_kafka_err2str(rd_kafka_last_error()));
        goto out;
    }
    uint64_t t0 = d->t_start; /* pacing origin: event n is due at t0 + n / rate */
    for (int64_t n = 0; !__atomic_load_n(&d->stop_producing, __ATOMIC_ACQUIRE); n++) {
        if (n == 1) {
            /* Event 0 warmed the path (producer metadata, the processor's first fetch, its
             * producer, the viewer): ~150 ms once, then steady. Pace from when it is through. */
            uint64_t committed = 0, t_w = sr_now_ns();
            while (!committed && !__atomic_load_n(&d->stop_producing, __ATOMIC_ACQUIRE) &&
                   sr_now_ns() - t_w < 10000000000ull) {
                rd_kafka_poll(d->prod, 1);
                sr_runtime_counters(d->rt, NULL, &committed, NULL, NULL, NULL);
            }
            t0 = sr_now_ns() - (uint64_t)(1e9 / d->rate);
            __atomic_store_n(&d->t_pace, t0, __ATOMIC_RELEASE);
        }
        sleep_until(t0 + (uint64_t)((double)n * 1e9 / d->rate));
        if (__atomic_load_n(&d->stop_producing, __ATOMIC_ACQUIRE))
            break;
        struct sr_event ev;
        if (!sr_gen_next(d->gen, &ev))
            break;
        sr_buf_reset(&buf);
        if (sr_event_encode(enc, &ev, &buf, &err) != SR_OK) {
            snprintf(d->producer_err, sizeof d->producer_err, "event %lld: %s", (long long)n,
                     err.msg);
            break;
        }
        struct ev_rec e = {
            .session = id_number(ev.session_id, ev.session_id_len, 's'),
            .ts = ev.timestamp_ms,
            .item = (int32_t)id_number(ev.item_id, ev.item_id_len, 'i'),
            .flags = (uint8_t)((in_list(d->stored_types, d->n_stored_types, ev.event_type,
                                        ev.event_type_len) ? EV_STORED : 0) |
                               (in_list(d->trigger_types, d->n_trigger_types, ev.event_type,
                                        ev.event_type_len) ? EV_TRIGGER : 0) |
                               (n == 0 ? EV_WARMUP : 0)),
        };
        e.t_prod = sr_now_ns();
        queue_push(d, &e);
        rd_kafka_resp_err_t ke;
        while ((ke = rd_kafka_producev(d->prod, RD_KAFKA_V_RKT(rkt),
                                      RD_KAFKA_V_KEY(ev.session_id, ev.session_id_len),
                                      RD_KAFKA_V_VALUE(buf.data, buf.len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(d->prod, 5);
        if (ke) {
            snprintf(d->producer_err, sizeof d->producer_err, "produce to events: %s",
                     rd_kafka_err2str(ke));
            break;
        }
        rd_kafka_poll(d->prod, 0);
        __atomic_store_n(&d->produced, n + 1, __ATOMIC_RELEASE);
    }
    d->t_prod_end = sr_now_ns();
    if (rd_kafka_flush(d->prod, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR && !d->producer_err[0])
        snprintf(d->producer_err, sizeof d->producer_err, "events not delivered to the broker");
    rd_kafka_topic_destroy(rkt);
out:
    sr_event_encoder_destroy(enc);
    sr_buf_free(&buf);
    __atomic_store_n(&d->producer_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* When event 1 was due minus one interval: the run's start, the warm-up event aside. */
static uint64_t pace_origin(struct demo *d)
{
    uint64_t t = __atomic_load_n(&d->t_pace, __ATOMIC_ACQUIRE);
    return t ? t : d->t_start;
}

/* ---- runtime thread ---------------------------------------------------------------------- */

static void *runtime_main(void *arg)
{
    struct demo *d = arg;
    d->rt_rc = sr_runtime_run(d->rt, false, &d->rt_err);
    __atomic_store_n(&d->rt_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* ---- evaluation (main thread) -------------------------------------------------------------- */

static struct dsess *session_at(struct demo *d, int64_t n)
{
    if (n < 0 || n > INT32_MAX)
        return NULL;
    if (n >= d->n_sess) {
        int64_t cap = d->n_sess ? d->n_sess : 1024;
        while (cap <= n)
            cap *= 2;
        struct dsess *s = realloc(d->sess, (size_t)cap * sizeof *s);
        if (!s)
            return NULL;
        memset(s + d->n_sess, 0, (size_t)(cap - d->n_sess) * sizeof *s);
        d->sess = s;
        d->n_sess = cap;
    }
    return &d->sess[n];
}

static struct trig *trig_new(struct demo *d)
{
    struct trig *t = d->free_trigs;
    if (t) {
        d->free_trigs = t->next;
    } else {
        t = malloc(sizeof *t + 2 * sizeof(int32_t) * (size_t)d->k);
        if (!t)
            return NULL;
        t->base = (int32_t *)(t + 1);
        t->model = t->base + d->k;
    }
    t->next = NULL;
    t->target = -1;
    t->has_rec = false;
    t->nb = t->nm = 0;
    return t;
}

static int32_t rank_of(const int32_t *list, int32_t n, int32_t target)
{
    for (int32_t j = 0; j < n; j++)
        if (list[j] == target)
            return j + 1;
    return 0;
}

static void status_clear(struct demo *d)
{
    if (d->tty)
        fputs("\r\033[K", stderr);
}

static void print_sample(struct demo *d, int64_t sn, const struct dsess *s, const struct trig *t)
{
    char last[128], top[160];
    int n = 0, m = 0;
    int32_t from = t->n_seen_at > 3 ? t->n_seen_at - 3 : 0;
    last[0] = top[0] = 0;
    if (from > 0)
        n += snprintf(last + n, sizeof last - (size_t)n, "... ");
    for (int32_t i = from; i < t->n_seen_at; i++)
        n += snprintf(last + n, sizeof last - (size_t)n, "i%d ", (int)s->seen[i]);
    for (int32_t j = 0; j < t->nm && j < 5; j++)
        m += snprintf(top + m, sizeof top - (size_t)m, "i%d ", (int)t->model[j]);
    int32_t r = rank_of(t->model, t->nm, t->target), rb = rank_of(t->base, t->nb, t->target);
    char rs[32] = "miss", rbs[32] = "miss";
    if (r)
        snprintf(rs, sizeof rs, "hit at %d", (int)r);
    if (rb)
        snprintf(rbs, sizeof rbs, "hit at %d", (int)rb);
    status_clear(d);
    fprintf(stderr, "  s%-6lld %-20s->  top-5 %-24s next i%d: %s (most-popular: %s)\n",
            (long long)sn, last, top, (int)t->target, rs, rbs);
}

/* Scores t (rec and target known) and releases it; prev is its predecessor in s's list. */
static void trig_finish(struct demo *d, int64_t sn, struct dsess *s, struct trig *prev,
                        struct trig *t)
{
    if (t->target >= 0 && t->nm > 0) {
        sr_eval_score(&d->model, t->model, t->nm, t->target);
        sr_eval_score(&d->base, t->base, t->nb, t->target);
        uint64_t now = sr_now_ns();
        if (d->tty && (d->samples < 3 || now - d->last_sample > 3000000000ull)) {
            d->last_sample = now;
            d->samples++;
            print_sample(d, sn, s, t);
        }
    } else if (t->target == -2) {
        d->evaluated_unresolved++;
    }
    if (prev)
        prev->next = t->next;
    else
        s->head = t->next;
    if (s->tail == t)
        s->tail = prev;
    t->next = d->free_trigs;
    d->free_trigs = t;
}

static void pop_increment(struct demo *d, int32_t item)
{
    uint64_t c = ++d->pop_cnt[item];
    int32_t p = d->pop_pos[item];
    while (p > 0 && d->pop_cnt[d->pop_order[p - 1]] < c) {
        int32_t other = d->pop_order[p - 1];
        d->pop_order[p] = other;
        d->pop_pos[other] = p;
        p--;
    }
    d->pop_order[p] = item;
    d->pop_pos[item] = p;
}

static bool seen_has(const struct dsess *s, int32_t item)
{
    for (int32_t i = 0; i < s->n_seen; i++)
        if (s->seen[i] == item)
            return true;
    return false;
}

/* One produced event, in production order. */
static void on_event(struct demo *d, const struct ev_rec *e)
{
    struct dsess *s = session_at(d, e->session);
    bool known = e->item >= 0 && e->item < d->n_items;
    if (!s)
        return;
    if (e->flags & EV_STORED) {
        /* The session's pending trigger (always the newest) gets its target. */
        if (s->tail && s->tail->target == -1) {
            struct trig *t = s->tail;
            t->target = known ? e->item : INT32_MAX; /* an unknown item is a miss */
            if (t->has_rec) {
                struct trig *prev = NULL;
                for (struct trig *x = s->head; x != t; x = x->next)
                    prev = x;
                trig_finish(d, e->session, s, prev, t);
            }
        }
        if (known) {
            if (s->n_seen == s->cap_seen) {
                int32_t cap = s->cap_seen ? s->cap_seen * 2 : 8;
                int32_t *v = realloc(s->seen, sizeof *v * (size_t)cap);
                if (!v)
                    return;
                s->seen = v;
                s->cap_seen = cap;
            }
            s->seen[s->n_seen++] = e->item;
            pop_increment(d, e->item);
        }
    } else if ((e->flags & EV_TRIGGER) && s->tail && s->tail->target == -1) {
        s->tail->target = -2; /* replaced before a stored event (op_eval: unresolved) */
    }
    if (e->flags & EV_TRIGGER) {
        struct trig *t = trig_new(d);
        if (!t)
            return;
        d->triggers++;
        t->ts = e->ts;
        t->t_prod = e->t_prod;
        t->warmup = e->flags & EV_WARMUP;
        t->n_seen_at = s->n_seen;
        for (int32_t p = 0; p < d->n_items && t->nb < d->k; p++) {
            int32_t item = d->pop_order[p];
            if (!seen_has(s, item))
                t->base[t->nb++] = item;
        }
        if (s->tail)
            s->tail->next = t;
        else
            s->head = t;
        s->tail = t;
    }
}

static void drain_events(struct demo *d)
{
    pthread_mutex_lock(&d->qmu);
    struct ev_rec *q = d->q;
    size_t n = d->qn, cap = d->qcap;
    d->q = d->work;
    d->qcap = d->wcap;
    d->qn = 0;
    pthread_mutex_unlock(&d->qmu);
    for (size_t i = 0; i < n; i++)
        on_event(d, &q[i]);
    d->work = q;
    d->wcap = cap;
}

static void lat_add(struct demo *d, float ms)
{
    d->lat_ring[d->n_ring++ % LAT_WINDOW] = ms;
    if (d->n_lat == d->cap_lat) {
        size_t cap = d->cap_lat ? d->cap_lat * 2 : 65536;
        float *v = realloc(d->lat, cap * sizeof *v);
        if (!v)
            return;
        d->lat = v;
        d->cap_lat = cap;
    }
    d->lat[d->n_lat++] = ms;
}

/* Finds the trigger of (session, ts): the oldest one without a recommendation, or a later one
 * with that timestamp. */
static struct trig *trig_find(struct dsess *s, int64_t ts, struct trig **prev_out)
{
    struct trig *prev = NULL;
    for (struct trig *t = s->head; t; prev = t, t = t->next)
        if (!t->has_rec && t->ts == ts) {
            *prev_out = prev;
            return t;
        }
    return NULL;
}

static void on_rec(struct demo *d, const rd_kafka_message_t *m)
{
    struct sr_error err = {0};
    struct sr_rec rec;
    sr_arena_reset(d->arena);
    if (sr_rec_decode_json(m->payload, m->len, d->arena, &rec, &err) != SR_OK) {
        d->unmatched++;
        return;
    }
    uint64_t now = sr_now_ns();
    d->recs++;
    if (!d->model_version[0])
        snprintf(d->model_version, sizeof d->model_version, "%.*s",
                 (int)rec.model_version_len, rec.model_version);
    int64_t sn = id_number(rec.session_id, rec.session_id_len, 's');
    struct dsess *s = session_at(d, sn);
    struct trig *prev = NULL, *t = s ? trig_find(s, rec.event_timestamp_ms, &prev) : NULL;
    if (!t && s) {
        drain_events(d); /* its event may still be in the queue */
        t = trig_find(s, rec.event_timestamp_ms, &prev);
    }
    if (!t) {
        d->unmatched++;
        return;
    }
    t->has_rec = true;
    for (size_t j = 0; j < rec.n_items && t->nm < d->k; j++) {
        int64_t it = id_number(rec.items[j].item_id, rec.items[j].item_id_len, 'i');
        t->model[t->nm++] = it >= 0 && it < d->n_items ? (int32_t)it : -1;
    }
    if (!t->warmup)
        lat_add(d, (float)((double)(now - t->t_prod) / 1e6));
    if (t->target != -1)
        trig_finish(d, sn, s, prev, t);
}

/* ---- status and summary -------------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Quantile q of v[0..n) (sorted in place), nearest rank. */
static double quantile(float *v, size_t n, double q)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_float);
    size_t i = (size_t)ceil(q * (double)n);
    return v[i ? i - 1 : 0];
}

static double rate_of(const struct sr_eval_report *r)
{
    double hit, mrr, ndcg;
    sr_eval_rates(r, &hit, &mrr, &ndcg);
    return hit;
}

struct snap {
    uint64_t t, consumed;
};

static void status_line(struct demo *d, double ev_per_s, bool progress_line)
{
    uint64_t consumed = 0;
    sr_runtime_counters(d->rt, &consumed, NULL, NULL, NULL, NULL);
    int64_t produced = __atomic_load_n(&d->produced, __ATOMIC_ACQUIRE);
    size_t n = d->n_ring < LAT_WINDOW ? d->n_ring : LAT_WINDOW;
    float w[LAT_WINDOW];
    memcpy(w, d->lat_ring, n * sizeof *w);
    double p99 = quantile(w, n, 0.99), p50 = quantile(w, n, 0.50);
    int64_t lag = produced - (int64_t)consumed;
    char line[256];
    int len = snprintf(line, sizeof line,
                       "%5.1fs %5.0f ev/s  p50 %.1f p99 %.1f ms  lag %lld  hit rate %.3f "
                       "(popular %.3f)",
                       (double)(sr_now_ns() - d->t_start) / 1e9, ev_per_s, p50, p99,
                       (long long)(lag > 0 ? lag : 0), rate_of(&d->model), rate_of(&d->base));
    if (progress_line) {
        fprintf(stderr, "demo: %s  (%llu recommendations)\n", line, (unsigned long long)d->recs);
        return;
    }
    struct winsize ws;
    int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10 ? ws.ws_col - 1 : 79;
    if (len > cols)
        line[cols] = 0;
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
}

static void summary(struct demo *d, const char *why, uint64_t t_end)
{
    uint64_t consumed = 0, published = 0;
    struct sr_hist h;
    sr_runtime_counters(d->rt, &consumed, NULL, &published, &h, NULL);
    int64_t produced = __atomic_load_n(&d->produced, __ATOMIC_ACQUIRE);
    uint64_t prod_end = d->t_prod_end ? d->t_prod_end : t_end;
    uint64_t prod_start = pace_origin(d);
    double secs = (double)(prod_end - prod_start) / 1e9;
    double p50 = quantile(d->lat, d->n_lat, 0.50), p99 = quantile(d->lat, d->n_lat, 0.99);
    double pmax = d->n_lat ? d->lat[d->n_lat - 1] : 0;
    int k = (int)d->k;
    printf("streamrec demo: summary (%s)\n", why);
    printf("  events            %lld produced in %.1f s, %llu processed: %.0f events/s\n",
           (long long)produced, secs, (unsigned long long)consumed,
           secs > 0 ? (double)consumed / secs : 0.0);
    printf("  recommendations   %llu received for %llu trigger events (model %s)",
           (unsigned long long)d->recs, (unsigned long long)d->triggers,
           d->model_version[0] ? d->model_version : "?");
    if (d->unmatched)
        printf(", %llu not matched to an event", (unsigned long long)d->unmatched);
    printf("\n");
    printf("  latency           p50 %.1f ms  p99 %.1f ms  max %.1f ms  (event produced -> "
           "recommendation consumed)\n", p50, p99, pmax);
    printf("                    p50 %.1f ms  p99 %.1f ms  in the processor (event consumed -> "
           "recommendation delivered)\n",
           sr_hist_quantile(&h, 0.5) * 1e3, sr_hist_quantile(&h, 0.99) * 1e3);
    double mh, mm, mn, bh, bm, bn;
    sr_eval_rates(&d->model, &mh, &mm, &mn);
    sr_eval_rates(&d->base, &bh, &bm, &bn);
    printf("  evaluated         %llu recommendations whose session's next event arrived\n",
           (unsigned long long)d->model.evaluated);
    printf("                    %-10s %s\n", "model", "most-popular");
    printf("  HitRate@%-2d        %-10.4f %.4f\n", k, mh, bh);
    printf("  MRR@%-2d            %-10.4f %.4f\n", k, mm, bm);
    printf("  NDCG@%-2d           %-10.4f %.4f\n", k, mn, bn);
    if (d->base.hits)
        printf("  the model finds the next item %.1fx as often as the most-popular baseline\n",
               rate_of(&d->model) / rate_of(&d->base));
    fflush(stdout);
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static rd_kafka_t *client_new(struct demo *d, rd_kafka_type_t type, char *errstr, size_t cap)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(c, sr_kafka_log_cb);
    static const char *const prod_kv[][2] = {{"linger.ms", "1"}, {"enable.idempotence", "true"}};
    /* The viewer assigns partitions (no group join); librdkafka still wants a group.id. */
    static const char *const cons_kv[][2] = {{"group.id", "streamrec-demo-viewer"},
                                             {"fetch.wait.max.ms", "5"},
                                             {"enable.partition.eof", "false"},
                                             {"enable.auto.commit", "false"}};
    if (rd_kafka_conf_set(c, "bootstrap.servers", d->bootstraps, errstr, cap) != RD_KAFKA_CONF_OK)
        goto bad;
    if (type == RD_KAFKA_PRODUCER) {
        for (size_t i = 0; i < sizeof prod_kv / sizeof *prod_kv; i++)
            if (rd_kafka_conf_set(c, prod_kv[i][0], prod_kv[i][1], errstr, cap) != RD_KAFKA_CONF_OK)
                goto bad;
    } else {
        for (size_t i = 0; i < sizeof cons_kv / sizeof *cons_kv; i++)
            if (rd_kafka_conf_set(c, cons_kv[i][0], cons_kv[i][1], errstr, cap) != RD_KAFKA_CONF_OK)
                goto bad;
    }
    rd_kafka_t *rk = rd_kafka_new(type, c, errstr, cap);
    if (rk)
        return rk;
bad:
    rd_kafka_conf_destroy(c);
    return NULL;
}

static int configure(struct demo *d)
{
    struct sr_error err = {0};
    const char *kv[][2] = {
        {"model.bundle", d->bundle},
        {"kafka.bootstrap.servers", d->bootstraps},
        {"input.topic", "events"},
        {"output.topic", "recommendations"},
        {"kafka.group.id", "streamrec-demo"},
        {"state.backend", d->state},
        {"state.dir", d->state_dir[0] ? d->state_dir : "./streamrec-state"},
        {"metrics.listen", ""},
        /* the mock cluster: fast fetches, quick group join (see tests/stream) */
        {"kafka.fetch.wait.max.ms", "5"},
        {"kafka.session.timeout.ms", "6000"},
        {"kafka.heartbeat.interval.ms", "500"},
        {"kafka.producer.linger.ms", "1"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        if (sr_config_set(d->cfg, kv[i][0], kv[i][1], &err) != SR_OK)
            return sr__cli_fail(CMD, "%s", err.msg);
    /* The one loader: no file and no environment (the demo owns its broker), --set, checks. */
    int lrc = sr__cli_config_load(CMD, d->cfg, NULL, false, &d->sets, false);
    if (lrc)
        return lrc;
    int64_t k;
    if (sr_config_get_int(d->cfg, "recs.k", &k, &err) != SR_OK)
        return sr__cli_fail(CMD, "%s", err.msg);
    d->k = (int32_t)(k < 1 ? 1 : k > KMAX ? KMAX : k);
    d->n_stored_types = sr_split_csv(sr_config_get(d->cfg, "session.event_types"), d->types_buf,
                                     sizeof d->types_buf, d->stored_types, 32);
    d->n_trigger_types = sr_split_csv(sr_config_get(d->cfg, "recs.trigger_types"), d->trig_buf,
                                      sizeof d->trig_buf, d->trigger_types, 32);
    if (d->n_stored_types < 0 || d->n_trigger_types < 0)
        return sr__cli_fail(CMD, "session.event_types / recs.trigger_types: too long");
    return 0;
}

static void demo_free(struct demo *d)
{
    for (int64_t i = 0; i < d->n_sess; i++) {
        for (struct trig *t = d->sess[i].head, *n; t; t = n) {
            n = t->next;
            free(t);
        }
        free(d->sess[i].seen);
    }
    free(d->sess);
    for (struct trig *t = d->free_trigs, *n; t; t = n) {
        n = t->next;
        free(t);
    }
    free(d->q);
    free(d->work);
    free(d->lat);
    free(d->pop_cnt);
    free(d->pop_order);
    free(d->pop_pos);
    sr_arena_destroy(d->arena);
    sr_gen_destroy(d->gen);
    sr_config_destroy(d->cfg);
}

/* Runs the demo once everything is parsed; returns the exit code. */
static int run_demo(struct demo *d)
{
    struct sr_error err = {0};
    char errstr[512];
    int rc = 0;

    /* The generator: the demo bundle's chain, sessions about 10 events long. */
    struct sr_gen_params gp;
    sr_gen_params_default(&gp);
    gp.seed = d->seed;
    gp.n_items = 1000;
    gp.concurrency = d->concurrency;
    d->gen_total = d->events ? d->events : (int64_t)ceil(d->rate * d->duration);
    if (d->events && d->duration > 0 && (int64_t)ceil(d->rate * d->duration) < d->events)
        d->gen_total = (int64_t)ceil(d->rate * d->duration);
    if (d->gen_total < 1)
        d->gen_total = 1;
    gp.n_events = d->gen_total;
    gp.n_sessions = d->gen_total / 10 > 0 ? d->gen_total / 10 : 1;
    if (sr_gen_new(&gp, &d->gen, &err) != SR_OK)
        return sr__cli_fail(CMD, "%s", err.msg);
    d->n_items = sr_gen_item_count(d->gen);
    d->pop_cnt = calloc((size_t)d->n_items, sizeof *d->pop_cnt);
    d->pop_order = malloc((size_t)d->n_items * sizeof *d->pop_order);
    d->pop_pos = malloc((size_t)d->n_items * sizeof *d->pop_pos);
    d->arena = sr_arena_new(1 << 16);
    if (!d->pop_cnt || !d->pop_order || !d->pop_pos || !d->arena)
        return sr__cli_fail(CMD, "out of memory");
    for (int32_t i = 0; i < d->n_items; i++)
        d->pop_order[i] = d->pop_pos[i] = i;

    if (!d->partitions) {
        uint64_t bytes = (uint64_t)d->gen_total * REC_BYTES;
        uint64_t p = (bytes + MOCK_PART_BYTES - 1) / MOCK_PART_BYTES;
        d->partitions = p < 4 ? 4 : p > 64 ? 64 : (int)p;
    }

    /* State directory. */
    if (!strcmp(d->state, "rocksdb")) {
        const char *tmp = getenv("TMPDIR");
        snprintf(d->state_dir, sizeof d->state_dir, "%s/streamrec-demo.XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(d->state_dir)) {
            d->state_dir[0] = 0;
            return sr__cli_fail(CMD, "cannot create a temporary state directory: %s",
                                strerror(errno));
        }
    }

    /* The embedded broker, its topics created before any client touches them. The runtime's
     * state changelog too: librdkafka 2.0's mock cannot create topics on request. */
    static const char *const topics[] = {"events", "recommendations",
                                         "streamrec-demo-sessions-changelog"};
    if (sr_mock_broker_start(1, &d->broker, &err) != SR_OK) {
        rc = sr__cli_fail(CMD, "%s", err.msg);
        goto out;
    }
    snprintf(d->bootstraps, sizeof d->bootstraps, "%s", sr_mock_broker_bootstraps(d->broker));
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++)
        if (sr_mock_broker_topic_create(d->broker, topics[i], d->partitions, 1, &err) != SR_OK) {
            rc = sr__cli_fail(CMD, "cannot create the demo topics on the embedded broker");
            goto out;
        }

    /* The processor. */
    d->cfg = sr_config_new();
    if ((rc = configure(d)) != 0)
        goto out;
    if (sr_runtime_new(d->cfg, &d->rt, &err) != SR_OK) {
        rc = sr__cli_fail(CMD, "%s", err.msg);
        goto out;
    }
    d->prod = client_new(d, RD_KAFKA_PRODUCER, errstr, sizeof errstr);
    d->viewer = d->prod ? client_new(d, RD_KAFKA_CONSUMER, errstr, sizeof errstr) : NULL;
    if (!d->viewer) {
        rc = sr__cli_fail(CMD, "kafka client: %s", errstr);
        goto out;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(d->partitions);
    for (int p = 0; p < d->partitions; p++)
        rd_kafka_topic_partition_list_add(l, "recommendations", p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t ke = rd_kafka_assign(d->viewer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (ke) {
        rc = sr__cli_fail(CMD, "assign recommendations: %s", rd_kafka_err2str(ke));
        goto out;
    }

    printf("streamrec demo: an embedded broker (topics events and recommendations, %d "
           "partitions each),\n"
           "  `streamrec gen --seed %llu --items 1000` sessions (%d open at once) at %.0f events/s,\n"
           "  the online runtime with %s (state: %s%s%s),\n"
           "  a consumer of the recommendations scoring each against the session's next event.\n",
           d->partitions, (unsigned long long)d->seed, (int)d->concurrency, d->rate, d->bundle,
           d->state, d->state_dir[0] ? " in " : "", d->state_dir);
    if (d->duration > 0 && d->gen_total == (int64_t)ceil(d->rate * d->duration))
        printf("  Runs for %.0f s (%lld events)", d->duration, (long long)d->gen_total);
    else
        printf("  Runs for %lld events", (long long)d->gen_total);
    printf("; Ctrl-C stops early. Then a summary.\n");
    if (d->tty)
        printf("  Status: elapsed, events/s processed, end-to-end latency (event produced -> "
               "recommendation\n  consumed), consumer lag (events), hit rate (HitRate@%d) so far "
               "of the model and of the most-\n  popular items. Samples: a session's last items -> "
               "the model's top-5, the session's next item.\n", (int)d->k);
    fflush(stdout);

    pthread_t rt_th, prod_th;
    if (pthread_create(&rt_th, NULL, runtime_main, d) != 0) {
        rc = sr__cli_fail(CMD, "cannot start the runtime thread");
        goto out;
    }
    /* Events are offered once the processor holds its partitions (the mock's group join takes
     * a moment): the latency shown is the pipeline's, not the join's. */
    uint64_t t_wait = sr_now_ns();
    if (d->tty)
        fprintf(stderr, "waiting for the processor to join its consumer group (the embedded "
                        "broker waits 3 s for members)...");
    while (!sr_runtime_assigned(d->rt) && !__atomic_load_n(&d->rt_done, __ATOMIC_ACQUIRE) &&
           !g_interrupted && sr_now_ns() - t_wait < 30000000000ull) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    status_clear(d);
    bool producer_started = false;
    if (sr_runtime_assigned(d->rt) && !g_interrupted) {
        d->t_start = sr_now_ns();
        if (pthread_create(&prod_th, NULL, producer_main, d) == 0)
            producer_started = true;
        else
            rc = sr__cli_fail(CMD, "cannot start the producer thread");
    } else if (!g_interrupted && !__atomic_load_n(&d->rt_done, __ATOMIC_ACQUIRE)) {
        rc = sr__cli_fail(CMD, "the processor did not join its consumer group within 30 s");
    }

    /* The viewer loop: recommendations in, status out, until the end condition. */
    const char *why = "interrupted";
    uint64_t last_status = 0, last_progress = sr_now_ns(), drain_start = 0;
    struct snap s_prev = {d->t_start, 0}, s_cur = s_prev;
    double ev_rate = 0;
    bool draining = false;
    while (d->t_start && !rc) {
        drain_events(d);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->viewer, 20);
        if (m) {
            if (!m->err)
                on_rec(d, m);
            else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sr_log(SR_LOG_WARN, CMD, "recommendations consumer", "error=\"%s\"",
                       rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (d->recs & 63)
                continue; /* keep up with the flow; the checks below run often enough */
        }
        uint64_t now = sr_now_ns();
        if (now - s_cur.t >= 1000000000ull) { /* events/s over the last second */
            s_prev = s_cur;
            s_cur.t = now;
            sr_runtime_counters(d->rt, &s_cur.consumed, NULL, NULL, NULL, NULL);
            ev_rate = (double)(s_cur.consumed - s_prev.consumed) /
                      ((double)(s_cur.t - s_prev.t) / 1e9);
        } else if (s_cur.consumed == 0 && now - d->t_start > 100000000ull) { /* first second */
            uint64_t c = 0;
            sr_runtime_counters(d->rt, &c, NULL, NULL, NULL, NULL);
            ev_rate = (double)c / ((double)(now - d->t_start) / 1e9);
        }
        if (d->tty && now - last_status >= 250000000ull) {
            last_status = now;
            status_line(d, ev_rate, false);
        } else if (!d->tty && now - last_progress >= 5000000000ull) {
            last_progress = now;
            status_line(d, ev_rate, true);
        }
        if (__atomic_load_n(&d->rt_done, __ATOMIC_ACQUIRE)) {
            status_clear(d);
            __atomic_store_n(&d->stop_producing, 1, __ATOMIC_RELEASE);
            pthread_join(prod_th, NULL);
            producer_started = false;
            rc = sr__cli_fail(CMD, "the processor stopped: %s",
                              d->rt_rc != SR_OK ? d->rt_err.msg : "unexpectedly");
            break;
        }
        if (!draining) {
            bool done = __atomic_load_n(&d->producer_done, __ATOMIC_ACQUIRE);
            if (g_interrupted) {
                why = "interrupted";
            } else if (done) {
                why = d->producer_err[0]                  ? "producer failed"
                      : d->events && d->gen_total == d->events ? "events reached"
                                                                : "duration reached";
            } else if (d->duration > 0 && now > pace_origin(d) &&
                       now - pace_origin(d) >= (uint64_t)(d->duration * 1e9)) {
                why = "duration reached"; /* the producer fell behind its rate */
            } else {
                continue;
            }
            __atomic_store_n(&d->stop_producing, 1, __ATOMIC_RELEASE);
            pthread_join(prod_th, NULL);
            producer_started = false;
            if (d->producer_err[0]) {
                status_clear(d);
                rc = sr__cli_fail(CMD, "producing events: %s", d->producer_err);
                break;
            }
            draining = true;
            drain_start = now;
            continue;
        }
        /* Draining: every produced event processed and committed, every recommendation in. */
        uint64_t committed = 0, published = 0;
        sr_runtime_counters(d->rt, NULL, &committed, &published, NULL, NULL);
        int64_t produced = __atomic_load_n(&d->produced, __ATOMIC_ACQUIRE);
        if ((int64_t)committed >= produced && d->recs >= published) {
            drain_events(d);
            break;
        }
        if (now - drain_start > 20000000000ull) {
            status_clear(d);
            fprintf(stderr, "streamrec demo: %lld events produced, %llu committed, %llu of %llu "
                            "recommendations received after 20 s of draining\n",
                    (long long)produced, (unsigned long long)committed,
                    (unsigned long long)d->recs, (unsigned long long)published);
            rc = 1;
            break;
        }
    }
    if (producer_started) { /* a failure above left it running */
        __atomic_store_n(&d->stop_producing, 1, __ATOMIC_RELEASE);
        pthread_join(prod_th, NULL);
    }
    uint64_t t_end = sr_now_ns();
    status_clear(d);
    if (d->t_start)
        summary(d, why, t_end);
    else if (g_interrupted)
        printf("streamrec demo: interrupted before the first event\n");
    sr_runtime_stop(d->rt);
    pthread_join(rt_th, NULL);
    if (!rc && d->rt_rc != SR_OK)
        rc = sr__cli_fail(CMD, "the processor: %s", d->rt_err.msg);

out:
    if (d->viewer) {
        rd_kafka_consumer_close(d->viewer);
        rd_kafka_destroy(d->viewer);
    }
    if (d->prod)
        rd_kafka_destroy(d->prod);
    sr_runtime_destroy(d->rt);
    sr_mock_broker_stop(d->broker);
    if (d->state_dir[0]) {
        sr_state_destroy_db(d->state_dir, NULL);
        rmdir(d->state_dir);
    }
    return rc;
}

int sr__cmd_demo(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    struct demo d = {.rate = 2000, .seed = 1, .concurrency = 200, .state = "rocksdb"};
    bool have_duration = false;
    char bundle_buf[PATH_MAX];
    int64_t seed = 1;
    const struct sr__opt opts[] = {
        {.name = "--duration", .type = SR__OPT_DOUBLE, .dst = &d.duration, .fmin = 0,
         .fmax = 86400, .given = &have_duration},
        SR__I64("--events", &d.events, 1, 1000000000),
        SR__DOUBLE("--rate", &d.rate, 1, 1e6),
        SR__I64("--seed", &seed, 0, INT64_C(1000000000000000000)),
        SR__INT("--concurrency", &d.concurrency, 1, 1000000),
        SR__INT("--partitions", &d.partitions, 1, 1000),
        SR__STR("--bundle", &d.bundle),
        SR__CHOICE("--state", &d.state, "rocksdb|memory"),
        SR__LIST("--set", &d.sets),
        SR__OPT_END,
    };
    if (sr__cli_parse(CMD, opts, argc, argv, NULL, 0, NULL)) {
        sr__cli_list_free(&d.sets);
        return 1;
    }
    d.seed = (uint64_t)seed;
    if (!have_duration && !d.events)
        d.duration = 20;
    if (d.duration <= 0 && !d.events)
        return sr__cli_fail(CMD, "--duration 0 needs --events N (the generator sizes its "
                                 "sessions up front)");
    if (d.duration > 0 && d.rate * d.duration > 1e9)
        return sr__cli_fail(CMD, "--rate x --duration: at most 1e9 events");
    if (!d.bundle && !(d.bundle = find_bundle(bundle_buf, sizeof bundle_buf)))
        return sr__cli_fail(CMD, "cannot find the demo bundle (share/streamrec/demo-bundle next to "
                                 "the program, or deploy/demo-bundle in the source tree): give "
                                 "--bundle DIR");
    if (!is_bundle(d.bundle))
        return sr__cli_fail(CMD, "--bundle %s: no bundle.json there", d.bundle);
    d.tty = sr__cli_tty();
    if (!getenv("STREAMREC_LOG_LEVEL"))
        sr_log_set_level(SR_LOG_WARN);
    pthread_mutex_init(&d.qmu, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESETHAND | SA_RESTART; /* a second Ctrl-C ends the process at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = run_demo(&d);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    demo_free(&d);
    sr__cli_list_free(&d.sets);
    pthread_mutex_destroy(&d.qmu);
    return rc;
}
