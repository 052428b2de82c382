/* bench_e2e.c — `streamrec bench e2e`: the online runtime end to end. Two processes: a child
 * (forked first, before any client exists) hosts librdkafka's mock cluster (--brokers mock,
 * the default) or creates the bench's topics on a real cluster (--brokers real --bootstrap
 * SERVERS; bench/e2e-real.sh starts deploy/kafka/kafka-local.sh for it), and runs the load
 * generator (synthetic events over the bundle's catalogue, keyed by session id) and does what
 * the parent asks over a pipe; the parent runs the runtime (runtime.c) on a thread. So the
 * parent's CPU time is the runtime's alone; the child's (broker + generator) is reported
 * beside it. Both share the machine's cores.
 *   1. saturation: N events are produced first, then the runtime starts; events/s from the first
 *      consumed to the last committed event, and runtime CPU per event;
 *   2. offered rates (fractions of the saturation rate, or --rates): events are offered at that
 *      rate for --seconds; p50/p99/p999 of consumed → delivered latency (histogram buckets,
 *      interpolated) and the achieved rate;
 *   3. --ingest-only: recs.trigger_types is empty, so decode + session state + commits run and
 *      the model never does; events/s and events per CPU-second of the runtime ("per core").
 * Human lines, then one JSON line. */
#include "cli.h"
#include "sr_mock_broker.h"
#include "sr_state.h"
#include "sr_stream.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD "bench e2e"

struct e2e {
    const char *bundle;
    int partitions, events, seconds, sessions, batch;
    double rates[16];
    int n_rates;
    bool ingest_only;
    const char *device;
    struct sr__cli_list sets; /* --set KEY=VALUE: runtime configuration over the bench's own */
    char **items;
    int n_items;
    char bootstraps[256];
    bool real;                /* --brokers real: topics with a per-run suffix on that cluster */
    char t_events[96], t_ingest[96], t_recs[96], g_model[96], g_ingest[96];
    uint64_t next_event;      /* events produced to the current mode's topic */
    const char *topic;        /* each mode has its own input topic (the mock keeps ~5 MiB per
                               * partition, so a second group could not reread the first's) */
    bool json_sep;
    /* the broker + generator child */
    pid_t child;
    int to_child, from_child;
};

/* Parent → child: produce n events first..first+n-1 to topic at rate (0: as fast as possible).
 * Child → parent: one int32 status per command (0: all acknowledged). */
struct gen_cmd {
    char topic[96];
    uint64_t first, n;
    double rate;
};

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds used so far by process pid (utime + stime from /proc); -1 where unreadable. */
static double proc_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The runtime's CPU by thread group: librdkafka's threads (named rdk:*), the loop thread, the
 * bench's own main thread, and the rest (the graph worker and the compute pool). Linux /proc;
 * zeros elsewhere. */
enum { TG_KAFKA, TG_LOOP, TG_BENCH, TG_COMPUTE, TG_N };
static const char *const tg_name[TG_N] = {"librdkafka", "loop", "bench", "compute"};

struct thread_cpu {
    int n;
    int tid[256];
    int group[256];
    double cpu[256];
};

static void threads_cpu(struct thread_cpu *tc, int loop_tid)
{
    tc->n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL && tc->n < 256) {
        int tid = atoi(de->d_name);
        if (tid <= 0)
            continue;
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        if (!open || !close ||
            sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
            continue;
        int g = !strncmp(open + 1, "rdk:", 4) ? TG_KAFKA
              : tid == loop_tid              ? TG_LOOP
              : tid == (int)getpid()         ? TG_BENCH
                                             : TG_COMPUTE;
        tc->tid[tc->n] = tid;
        tc->group[tc->n] = g;
        tc->cpu[tc->n] = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        tc->n++;
    }
    if (d)
        closedir(d);
}

/* CPU seconds per group between two snapshots (threads born in between count from zero). */
static void threads_cpu_diff(const struct thread_cpu *a, const struct thread_cpu *b,
                             double out[TG_N])
{
    for (int g = 0; g < TG_N; g++)
        out[g] = 0;
    for (int i = 0; i < b->n; i++) {
        double before = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i])
                before = a->cpu[j];
        out[b->group[i]] += b->cpu[i] - before;
    }
}

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static sr_err_t load_items(struct e2e *b, struct sr_error *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/items.tsv", b->bundle);
    char *text;
    size_t len;
    sr_err_t rc = sr_file_read_all(path, &text, &len, err);
    if (rc != SR_OK)
        return rc;
    int cap = 1024;
    b->items = malloc(sizeof *b->items * (size_t)cap);
    char *save = NULL, *line = strtok_r(text, "\n", &save); /* header: index, item_id first */
    while (b->items && (line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        char *end = strpbrk(tab + 1, "\t\r");
        if (end)
            *end = 0;
        if (b->n_items == cap) {
            cap *= 2;
            b->items = realloc(b->items, sizeof *b->items * (size_t)cap);
        }
        b->items[b->n_items++] = strdup(tab + 1);
    }
    free(text);
    if (!b->n_items)
        return sr_error_set(err, SR_EFORMAT, "%s: no items", path);
    return SR_OK;
}

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Event i: session (i mod sessions, rotated), a skewed item, view/click mostly. */
static int make_event(struct e2e *b, uint64_t i, char *buf, size_t cap, char *key, size_t kcap)
{
    uint64_t h = mix(i);
    int s = (int)(mix(i / 8) % (uint64_t)b->sessions);
    uint64_t r = h % 1000000;
    int item = (int)((r * r / 1000000) * (uint64_t)b->n_items / 1000000); /* skew to low ranks */
    static const char *const types[] = {"view", "view", "click", "view", "add_to_cart", "view",
                                        "click", "purchase"};
    snprintf(key, kcap, "s%d", s);
    return snprintf(buf, cap,
                    "{\"session_id\": \"s%d\", \"user_id\": null, \"item_id\": \"%s\", "
                    "\"event_type\": \"%s\", \"timestamp_ms\": %lld}",
                    s, b->items[item % b->n_items], types[(h >> 40) & 7],
                    (long long)(1700000000000LL + (int64_t)i));
}

/* --write-events: the events the saturation phase produces (0..N-1), one JSON object a line. */
static int write_event_file(struct e2e *b, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return sr__cli_fail(CMD, "--write-events %s: %s", path, strerror(errno));
    char buf[512], key[64];
    for (uint64_t i = 0; i < (uint64_t)b->events; i++) {
        int len = make_event(b, i, buf, sizeof buf, key, sizeof key);
        fwrite(buf, 1, (size_t)len, f);
        fputc('\n', f);
    }
    if (fclose(f) != 0)
        return sr__cli_fail(CMD, "--write-events %s: %s", path, strerror(errno));
    return 0;
}

static int produce_events(struct e2e *b, rd_kafka_t *p, const char *topic, uint64_t first,
                          uint64_t n, double rate)
{
    char buf[512], key[64];
    uint64_t t0 = sr_now_ns();
    for (uint64_t k = 0; k < n; k++) {
        if (rate > 0) {
            uint64_t due = t0 + (uint64_t)((double)k * 1e9 / rate);
            uint64_t now;
            while ((now = sr_now_ns()) < due) {
                uint64_t d = due - now;
                struct timespec ts = {0, (long)(d > 200000 ? 200000 : d)};
                nanosleep(&ts, NULL);
            }
        }
        int len = make_event(b, first + k, buf, sizeof buf, key, sizeof key);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                      RD_KAFKA_V_VALUE(buf, (size_t)len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 5);
        if (e)
            return -1;
        rd_kafka_poll(p, 0);
    }
    return rd_kafka_flush(p, 60000) ? -1 : 0;
}

struct rt_thread {
    sr_runtime_t *rt;
    sr_err_t rc;
    struct sr_error err;
    int tid;
};

static void *rt_main(void *arg)
{
    struct rt_thread *t = arg;
    __atomic_store_n(&t->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
    t->rc = sr_runtime_run(t->rt, false, &t->err);
    return NULL;
}

static void hist_sub(struct sr_hist *a, const struct sr_hist *b)
{
    for (int i = 0; i <= a->n; i++)
        a->count[i] -= b->count[i];
    a->total -= b->total;
    a->sum -= b->sum;
}

static rd_kafka_t *make_producer(const char *bootstraps)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_conf_set(c, "bootstrap.servers", bootstraps, errstr, sizeof errstr);
    rd_kafka_conf_set(c, "linger.ms", "2", errstr, sizeof errstr);
    return rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof errstr);
}

/* Creates the bench's topics on a real cluster (Admin API) and waits for the answer; 0 when
 * every one exists. */
static int create_topics(rd_kafka_t *rk, const char *const *names, int n, int partitions)
{
    rd_kafka_NewTopic_t *nt[4];
    char errstr[256];
    for (int i = 0; i < n; i++)
        nt[i] = rd_kafka_NewTopic_new(names[i], partitions, -1, errstr, sizeof errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, (size_t)n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    int rc = res ? 0 : -1;
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            fprintf(stderr, "bench e2e: create topic %s: %s\n", rd_kafka_topic_result_name(tr[i]),
                    rd_kafka_err2str(e));
            rc = -1;
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < n; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    return rc;
}

/* The child: the mock cluster (or a real one's new topics) with the bench's topics, then one generator command at a time
 * until the parent closes the pipe. Never returns. */
static void child_main(struct e2e *b, int cmd_fd, int reply_fd)
{
    char boot[256] = {0};
    sr_mock_broker_t *mb = NULL;
    const char *topics[3] = {b->t_events, b->t_ingest, b->t_recs};
    if (b->real) {
        snprintf(boot, sizeof boot, "%s", b->bootstraps);
        rd_kafka_t *p = make_producer(boot);
        if (!p || create_topics(p, topics, 3, b->partitions) != 0)
            boot[0] = 0;
        if (p)
            rd_kafka_destroy(p);
    } else {
        struct sr_error err = {0};
        if (sr_mock_broker_start(1, &mb, &err) == SR_OK) {
            snprintf(boot, sizeof boot, "%s", sr_mock_broker_bootstraps(mb));
            for (int i = 0; i < 3; i++)
                sr_mock_broker_topic_create(mb, topics[i], b->partitions, 1, &err);
            /* The runtimes' state changelogs (the mock cannot create topics on request). */
            char cl[128];
            snprintf(cl, sizeof cl, "%s-sessions-changelog", b->g_model);
            sr_mock_broker_topic_create(mb, cl, b->partitions, 1, &err);
            snprintf(cl, sizeof cl, "%s-sessions-changelog", b->g_ingest);
            sr_mock_broker_topic_create(mb, cl, b->partitions, 1, &err);
        }
    }
    if (write_full(reply_fd, boot, sizeof boot) != 0 || !boot[0])
        _exit(1);
    rd_kafka_t *p = make_producer(boot);
    struct gen_cmd cmd;
    while (read_full(cmd_fd, &cmd, sizeof cmd) == 0) {
        cmd.topic[sizeof cmd.topic - 1] = 0;
        int32_t rc = p ? produce_events(b, p, cmd.topic, cmd.first, cmd.n, cmd.rate) : -1;
        if (write_full(reply_fd, &rc, sizeof rc) != 0)
            break;
    }
    if (p)
        rd_kafka_destroy(p);
    sr_mock_broker_stop(mb);
    _exit(0); /* no atexit handlers: they belong to the parent (OpenBLAS's pool) */
}

/* Asks the child for n more events of the current mode at rate; waits until all are
 * acknowledged by the mock. */
static int gen(struct e2e *b, uint64_t n, double rate)
{
    struct gen_cmd cmd = {.first = b->next_event, .n = n, .rate = rate};
    snprintf(cmd.topic, sizeof cmd.topic, "%s", b->topic);
    int32_t rc = -1;
    if (write_full(b->to_child, &cmd, sizeof cmd) != 0 || read_full(b->from_child, &rc, sizeof rc) != 0)
        return -1;
    b->next_event += n;
    return rc;
}

static int run_mode(struct e2e *b, bool ingest, FILE *json)
{
    struct sr_error err = {0};
    sr_config_t *cfg = sr_config_new();
    char dir[] = "/tmp/streamrec-bench-e2e.XXXXXX";
    if (!mkdtemp(dir))
        return sr__cli_fail(CMD, "cannot create a temporary state dir");
    char batch[32];
    snprintf(batch, sizeof batch, "%d", b->batch);
    const char *kv[][2] = {
        {"model.bundle", b->bundle}, {"kafka.bootstrap.servers", b->bootstraps},
        {"output.topic", b->t_recs}, {"input.topic", ingest ? b->t_ingest : b->t_events},
        {"state.dir", dir}, {"metrics.listen", ""},
        {"device", b->device}, {"batch.max.events", batch}, {"batch.max.wait.ms", "2"},
        {"kafka.fetch.wait.max.ms", "5"}, {"kafka.session.timeout.ms", "6000"},
        {"kafka.heartbeat.interval.ms", "500"}, {"kafka.linger.ms", "1"},
        {"recs.trigger_types", ingest ? "" : "view,click,add_to_cart"},
        {"kafka.group.id", ingest ? b->g_ingest : b->g_model},
    };
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        if (sr_config_set(cfg, kv[i][0], kv[i][1], &err) != SR_OK) {
            sr_config_destroy(cfg);
            return sr__cli_fail(CMD, "%s", err.msg);
        }
    /* The one loader (no file, no environment: the bench owns its broker): --set, then the
     * start-up checks. */
    int lrc = sr__cli_config_load(CMD, cfg, NULL, false, &b->sets, false);
    if (lrc) {
        sr_config_destroy(cfg);
        return lrc;
    }
    b->topic = ingest ? b->t_ingest : b->t_events;
    b->next_event = 0;
    /* 1. Saturation: a backlog first. */
    if (gen(b, (uint64_t)b->events, 0) != 0) {
        sr_config_destroy(cfg);
        return sr__cli_fail(CMD, "producing the backlog failed");
    }
    struct rt_thread t = {0};
    if (sr_runtime_new(cfg, &t.rt, &err) != SR_OK) {
        sr_config_destroy(cfg);
        return sr__cli_fail(CMD, "%s", err.msg);
    }
    pthread_t th;
    pthread_create(&th, NULL, rt_main, &t);
    uint64_t consumed = 0, committed = 0, published = 0, t_first = 0;
    uint64_t target = b->next_event;
    double cpu0 = 0, bcpu0 = 0;
    static struct thread_cpu tc0, tc1;
    while (committed < target) { /* the whole backlog delivered and committed */
        sr_runtime_counters(t.rt, &consumed, &committed, &published, NULL, NULL);
        if (!t_first && consumed) {
            t_first = sr_now_ns();
            cpu0 = cpu_seconds();
            bcpu0 = proc_cpu_seconds(b->child);
            threads_cpu(&tc0, __atomic_load_n(&t.tid, __ATOMIC_ACQUIRE));
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    double secs = (double)(sr_now_ns() - t_first) / 1e9;
    double cpu = cpu_seconds() - cpu0, bcpu = proc_cpu_seconds(b->child) - bcpu0, tg[TG_N];
    threads_cpu(&tc1, __atomic_load_n(&t.tid, __ATOMIC_ACQUIRE));
    threads_cpu_diff(&tc0, &tc1, tg);
    double sat = (double)target / (secs > 0 ? secs : 1e-9);
    printf("%s saturation: %llu events in %.2f s = %.0f events/s (%llu recommendations, %.0f/s); "
           "runtime CPU %.2f s (%.0f events/cpu-s), broker CPU %.2f s\n",
           ingest ? "ingest-only" : "model", (unsigned long long)target, secs, sat,
           (unsigned long long)published, (double)published / (secs > 0 ? secs : 1e-9), cpu,
           (double)target / (cpu > 0 ? cpu : 1e-9), bcpu);
    printf("  runtime CPU by thread group:");
    for (int g = 0; g < TG_N; g++)
        printf(" %s %.2f s", tg_name[g], tg[g]);
    printf("\n");
    fflush(stdout);
    fprintf(json, "%s\"%s\": {\"saturation_events_per_s\": %.1f, \"recommendations\": %llu, "
                  "\"recommendations_per_s\": %.1f, \"runtime_cpu_s\": %.3f, \"broker_cpu_s\": %.3f",
            b->json_sep ? ", " : "", ingest ? "ingest" : "model", sat, (unsigned long long)published,
            (double)published / (secs > 0 ? secs : 1e-9), cpu, bcpu);
    fprintf(json, ", \"runtime_cpu_by_group_s\": {");
    for (int g = 0; g < TG_N; g++)
        fprintf(json, "%s\"%s\": %.3f", g ? ", " : "", tg_name[g], tg[g]);
    fprintf(json, "}");
    /* 2. Offered rates. */
    double rates[16];
    int nr = b->n_rates;
    if (nr)
        memcpy(rates, b->rates, sizeof rates);
    else {
        static const double f[] = {0.25, 0.5, 0.75};
        for (nr = 0; nr < 3; nr++)
            rates[nr] = sat * f[nr];
    }
    fprintf(json, ", \"rates\": [");
    for (int i = 0; i < nr; i++) {
        struct sr_hist h0, h1, g0, g1;
        uint64_t c0, c1, p0, p1;
        sr_runtime_counters(t.rt, NULL, &c0, &p0, &h0, &g0);
        double cpu_a = cpu_seconds(), ccpu_a = proc_cpu_seconds(b->child);
        uint64_t ta = sr_now_ns();
        uint64_t n = (uint64_t)(rates[i] * b->seconds);
        if (gen(b, n, rates[i]) != 0)
            break;
        do { /* until everything offered is delivered and committed */
            sr_runtime_counters(t.rt, NULL, &c1, &p1, &h1, &g1);
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        } while (c1 < b->next_event && (double)(sr_now_ns() - ta) / 1e9 < b->seconds * 4 + 10);
        double el = (double)(sr_now_ns() - ta) / 1e9, cpu = cpu_seconds() - cpu_a;
        double ccpu = proc_cpu_seconds(b->child) - ccpu_a; /* the generator and the broker */
        hist_sub(&h1, &h0);
        hist_sub(&g1, &g0);
        double got = (double)(c1 - c0) / el, per_cpu = (double)(c1 - c0) / (cpu > 0 ? cpu : 1e-9);
        double q50 = sr_hist_quantile(&h1, 0.5) * 1e3, q99 = sr_hist_quantile(&h1, 0.99) * 1e3,
               q999 = sr_hist_quantile(&h1, 0.999) * 1e3, r50 = sr_hist_quantile(&g1, 0.5) * 1e3,
               r99 = sr_hist_quantile(&g1, 0.99) * 1e3;
        printf("  offered %8.0f/s  achieved %8.0f/s  events/runtime-cpu-s %8.0f  latency ms p50 %.2f  "
               "p99 %.2f  p999 %.2f  (%llu recs); consumed->produced p50 %.2f  p99 %.2f; "
               "cores used: runtime %.2f, generator + broker %.2f\n",
               rates[i], got, per_cpu, q50, q99, q999, (unsigned long long)(p1 - p0), r50, r99,
               cpu / el, ccpu / el);
        fflush(stdout);
        fprintf(json, "%s{\"offered\": %.1f, \"achieved\": %.1f, \"events_per_runtime_cpu_s\": %.1f, "
                      "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, \"recs\": %llu, "
                      "\"produced_p50_ms\": %.3f, \"produced_p99_ms\": %.3f, \"runtime_cores\": %.3f, "
                      "\"generator_broker_cores\": %.3f}",
                i ? ", " : "", rates[i], got, per_cpu, q50, q99, q999,
                (unsigned long long)(p1 - p0), r50, r99, cpu / el, ccpu / el);
    }
    fprintf(json, "]}");
    b->json_sep = true;
    sr_runtime_stop(t.rt);
    pthread_join(th, NULL);
    sr_runtime_destroy(t.rt);
    sr_config_destroy(cfg);
    sr_state_destroy_db(dir, NULL);
    rmdir(dir);
    return t.rc == SR_OK ? 0 : sr__cli_fail(CMD, "%s", t.err.msg);
}

static void usage(void)
{
    printf("usage: streamrec bench e2e --bundle DIR [--events N] [--seconds S] [--rates R,R,..]\n"
           "                           [--partitions P] [--sessions S] [--batch B] [--device D]\n"
           "                           [--set KEY=VALUE]... [--ingest-only | --both]\n"
           "                           [--brokers mock | --brokers real --bootstrap SERVERS]\n"
           "       streamrec bench e2e --bundle DIR [--events N] [--sessions S] --write-events FILE\n"
           "  A child process hosts librdkafka's mock cluster (--brokers mock, the default) or,\n"
           "  with --brokers real, creates the bench's topics (names with a per-run suffix) on\n"
           "  the cluster at SERVERS (bench/e2e-real.sh starts a local Apache Kafka for it), and\n"
           "  runs a producer of synthetic events\n"
           "  over the bundle's catalogue; this process runs the online runtime, so its CPU time\n"
           "  is the runtime's. Saturation: N events (default 50000; the mock keeps about 5 MiB\n"
           "  per partition, ~170 bytes an event) backlogged, then consumed -> committed. Rates\n"
           "  (default 25/50/75%% of saturation) offered for S seconds (default 5): achieved rate\n"
           "  and consumed->delivered latency p50/p99/p999, and consumed->produced p50/p99 (the\n"
           "  runtime's part; the rest is the producer and the broker), and the cores the runtime\n"
           "  and the generator + broker used. --ingest-only skips the model (no trigger types).\n"
           "  --set overrides the runtime's configuration (e.g. kafka.producer.linger.ms=5).\n"
           "  Last line: JSON.\n"
           "  --write-events writes the saturation phase's N events as JSON Lines and exits (to\n"
           "  replay the same stream offline: its model stages are the online run's floor).\n");
}

int sr__bench_e2e(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    struct e2e b = {.partitions = 4, .events = 50000, .seconds = 5, .sessions = 20000,
                    .batch = 256, .device = "cpu"};
    bool both = false;
    const char *brokers = "mock", *bootstrap = NULL, *rates = NULL, *write_events = NULL;
    const struct sr__opt opts[] = {
        SR__STR("--bundle", &b.bundle),
        SR__INT("--events", &b.events, 1, INT32_MAX),
        SR__INT("--seconds", &b.seconds, 1, 86400),
        SR__INT("--partitions", &b.partitions, 1, 10000),
        SR__INT("--sessions", &b.sessions, 1, INT32_MAX),
        SR__INT("--batch", &b.batch, 1, 1 << 20),
        SR__LIST("--set", &b.sets),
        SR__STR("--device", &b.device),
        SR__FLAG("--ingest-only", &b.ingest_only),
        SR__FLAG("--both", &both),
        SR__CHOICE("--brokers", &brokers, "mock|real"),
        SR__STR("--bootstrap", &bootstrap),
        SR__STR("--rates", &rates),
        SR__STR("--write-events", &write_events),
        SR__OPT_END,
    };
    int prc = sr__cli_parse(CMD, opts, argc, argv, NULL, 0, NULL);
    b.real = !strcmp(brokers, "real");
    if (bootstrap)
        snprintf(b.bootstraps, sizeof b.bootstraps, "%s", bootstrap);
    char rates_buf[1024];
    snprintf(rates_buf, sizeof rates_buf, "%s", rates ? rates : "");
    char *save = NULL;
    for (char *t = strtok_r(rates_buf, ",", &save); !prc && t && b.n_rates < 16;
         t = strtok_r(NULL, ",", &save))
        if (!sr__cli_parse_double(t, 0, 1e9, &b.rates[b.n_rates++]))
            prc = sr__cli_bad_number(CMD, "--rates", t, 0, 1e9);
    if (prc) {
        sr__cli_list_free(&b.sets);
        return prc;
    }
    if (!b.bundle)
        return sr__cli_fail(CMD, "--bundle is required (e.g. tests/data/ref/gru4rec_100k)");
    if (b.events < 1000 || b.seconds < 1 || b.partitions < 1 || b.sessions < 1 || b.batch < 1)
        return sr__cli_fail(CMD, "--events >= 1000, --seconds, --partitions, --sessions, --batch >= 1");
    if (b.real && !b.bootstraps[0])
        return sr__cli_fail(CMD, "--brokers real needs --bootstrap SERVERS");
    /* A real cluster keeps earlier runs' topics and groups: this run's names are its own. */
    char sfx[32] = "";
    if (b.real)
        snprintf(sfx, sizeof sfx, "-bench-%ld-%d", (long)time(NULL), (int)getpid());
    snprintf(b.t_events, sizeof b.t_events, "events%s", sfx);
    snprintf(b.t_ingest, sizeof b.t_ingest, "events-ingest%s", sfx);
    snprintf(b.t_recs, sizeof b.t_recs, "recommendations%s", sfx);
    snprintf(b.g_model, sizeof b.g_model, "streamrec-bench-model%s", sfx);
    snprintf(b.g_ingest, sizeof b.g_ingest, "streamrec-bench-ingest%s", sfx);
    struct sr_error err = {0};
    if (load_items(&b, &err) != SR_OK)
        return sr__cli_fail(CMD, "%s", err.msg);
    if (write_events)
        return write_event_file(&b, write_events);
    if (!getenv("STREAMREC_LOG_LEVEL"))
        sr_log_set_level(SR_LOG_ERROR);
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0)
        return sr__cli_fail(CMD, "pipe failed");
    fflush(NULL);
    b.child = fork();
    if (b.child < 0)
        return sr__cli_fail(CMD, "fork failed");
    if (b.child == 0) {
        close(down[1]);
        close(up[0]);
        child_main(&b, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    b.to_child = down[1];
    b.from_child = up[0];
    if (read_full(b.from_child, b.bootstraps, sizeof b.bootstraps) != 0 || !b.bootstraps[0]) {
        close(b.to_child);
        waitpid(b.child, NULL, 0);
        return sr__cli_fail(CMD, b.real ? "cannot create the bench's topics on %s" :
                                          "cannot start the mock cluster", b.bootstraps);
    }
    b.bootstraps[sizeof b.bootstraps - 1] = 0;
    printf("bench e2e: bundle %s (%d items), %d partitions, batch %d, device %s, %d sessions, "
           "broker %s\n", b.bundle, b.n_items, b.partitions, b.batch, b.device, b.sessions,
           b.real ? b.bootstraps : "mock");
    char *jtext = NULL;
    size_t jlen = 0;
    FILE *json = open_memstream(&jtext, &jlen);
    fprintf(json, "{\"bench\": \"e2e\", \"brokers\": \"%s\", \"items\": %d, \"partitions\": %d, "
            "\"batch\": %d, \"runs\": {", b.real ? "real" : "mock", b.n_items, b.partitions, b.batch);
    int rc = 0;
    if (!b.ingest_only || both)
        rc = run_mode(&b, false, json);
    if (!rc && (b.ingest_only || both)) {
        rc = run_mode(&b, true, json);
    }
    fprintf(json, "}}");
    fclose(json);
    if (!rc)
        printf("%s\n", jtext);
    free(jtext);
    close(b.to_child); /* the child leaves its loop, destroys the cluster and exits */
    close(b.from_child);
    waitpid(b.child, NULL, 0);
    for (int i = 0; i < b.n_items; i++)
        free(b.items[i]);
    free(b.items);
    sr__cli_list_free(&b.sets);
    return rc;
}
