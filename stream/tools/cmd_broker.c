/* cmd_broker.c — `streamrec broker [--brokers N] [--topic NAME:PARTITIONS]...`: librdkafka's
 * mock cluster in its own process, for demos and tests.
 *
 * The cluster lives on a producer handle that sends nothing. Topics named on the command line
 * are created (rd_kafka_mock_topic_create, which waits for the mock thread) before the first
 * stdout line, `bootstrap.servers=HOST:PORT[,...]`, is written and flushed; then the main
 * thread waits for SIGINT/SIGTERM, destroys the cluster and exits 0. The signals are caught by
 * a handler that writes a byte to a pipe the main thread reads (self-pipe): whichever thread
 * the kernel picks runs it, including threads started before main (OpenBLAS's pool), which
 * leave the signals unblocked, so a mask + sigwait alone would race with their default
 * action.
 *
 * With --control, a thread reads commands on stdin (one per line, each answered by one stdout line, "ok" or
 * "error: reason") drive librdkafka's fault injection: `down ID`, `up ID`, `rtt ID MS`,
 * `errors API ERR[,ERR...]` (push request errors for an API key, by name or number; errors by
 * librdkafka name, e.g. NOT_LEADER_FOR_PARTITION, or number), `clear API`, `topic NAME:PARTS`.
 *
 * Limits are librdkafka's (2.0): listeners bind 127.0.0.1 on ephemeral ports; data is kept in
 * memory only, about 5 MiB per partition (older messages are dropped); a topic auto-created by
 * a client gets 4 partitions and replication min(3, brokers); offsets_for_times answers -1;
 * transactions are accepted but not enforced. */
#include "cli.h"
#include "sr_mock_broker.h"
#include "sr_stream.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int usage(FILE *f)
{
    fprintf(f,
            "usage: streamrec broker [--brokers N] [--topic NAME:PARTITIONS]...\n"
            "\n"
            "Runs a local Kafka-protocol cluster (librdkafka's mock cluster) until SIGINT or\n"
            "SIGTERM. The first line on stdout is `bootstrap.servers=HOST:PORT[,HOST:PORT...]`;\n"
            "the topics given are created before it is written.\n"
            "\n"
            "  --brokers N               brokers in the cluster (default 3, at most 32)\n"
            "  --topic NAME:PARTITIONS   create a topic (repeatable); replication is min(3, N)\n"
            "  --quiet                   no status line on stderr\n"
            "  --control                 read fault-injection commands on stdin, one per line,\n"
            "                            each answered on stdout by `ok` or `error: reason`:\n"
            "                              down ID | up ID       take broker ID (1..N) down / up\n"
            "                              rtt ID MS             add MS of latency to broker ID\n"
            "                              errors API ERR[,ERR]  next requests of API (Produce,\n"
            "                                                    Fetch, ... or a key number) fail\n"
            "                                                    with ERR (librdkafka name, e.g.\n"
            "                                                    NOT_LEADER_FOR_PARTITION, or code)\n"
            "                              clear API             drop pushed errors of API\n"
            "                              topic NAME:PARTITIONS create a topic\n"
            "\n"
            "Memory only, with librdkafka's limits: about 5 MiB kept per partition, listeners on\n"
            "127.0.0.1, a topic auto-created by a client gets 4 partitions, offsets_for_times\n"
            "answers -1, transactions are accepted but not enforced.\n");
    return f == stdout ? 0 : 2;
}

static int stop_pipe[2] = {-1, -1};

static void on_stop(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t n = write(stop_pipe[1], "x", 1);
    (void)n;
    errno = saved;
}

struct topic_arg {
    char name[250];
    int partitions;
};

static bool parse_topic(const char *s, struct topic_arg *t)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof t->name)
        return false;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 1 || p > 10000)
        return false;
    memcpy(t->name, s, (size_t)(colon - s));
    t->name[colon - s] = '\0';
    for (const char *c = t->name; *c; c++)
        if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            return false;
    t->partitions = (int)p;
    return true;
}

/* --topic, repeatable: appended to a list with room for one per argument. */
struct topic_list {
    struct topic_arg *t;
    int n;
};

static bool add_topic(const char *v, void *dst)
{
    struct topic_list *l = dst;
    if (!parse_topic(v, &l->t[l->n]))
        return false;
    l->n++;
    return true;
}

/* ---- --control: fault injection from stdin ---------------------------------------------- */

static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},          {"Fetch", 1},          {"ListOffsets", 2},
    {"Metadata", 3},         {"OffsetCommit", 8},   {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},     {"Heartbeat", 12},
    {"LeaveGroup", 13},      {"SyncGroup", 14},     {"DescribeGroups", 15},
    {"ListGroups", 16},      {"ApiVersions", 18},   {"CreateTopics", 19},
    {"InitProducerId", 22},  {"AddPartitionsToTxn", 24}, {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},          {"TxnOffsetCommit", 28},
};

static bool parse_api(const char *s, int16_t *out)
{
    for (size_t i = 0; i < sizeof api_keys / sizeof api_keys[0]; i++)
        if (!strcasecmp(s, api_keys[i].name)) {
            *out = api_keys[i].key;
            return true;
        }
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 1000)
        return false;
    *out = (int16_t)v;
    return true;
}

static bool parse_kafka_err(const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *d;
    size_t n;
    rd_kafka_get_err_descs(&d, &n);
    for (size_t i = 0; i < n; i++)
        if (d[i].name && !strcasecmp(s, d[i].name)) { /* local ones start with '_' */
            *out = d[i].code;
            return true;
        }
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < -200 || v > 1000)
        return false;
    *out = (rd_kafka_resp_err_t)v;
    return true;
}

static bool parse_id(const char *s, int brokers, int32_t *id)
{
    char *end;
    long v = strtol(s ? s : "", &end, 10);
    if (!s || end == s || *end || v < 1 || v > brokers)
        return false;
    *id = (int32_t)v;
    return true;
}

/* Runs one command line; writes the reason to why (or leaves it empty for "ok"). */
static void run_command(rd_kafka_mock_cluster_t *mc, int brokers, char *line, char *why,
                        size_t whylen)
{
    char *save = NULL, *cmd = strtok_r(line, " \t", &save), *a1 = strtok_r(NULL, " \t", &save),
         *a2 = strtok_r(NULL, " \t", &save);
    int32_t id;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    why[0] = '\0';
    if (!cmd) {
        snprintf(why, whylen, "empty command");
    } else if (!strcmp(cmd, "down") || !strcmp(cmd, "up")) {
        if (!parse_id(a1, brokers, &id))
            snprintf(why, whylen, "%s: expected a broker id 1..%d", cmd, brokers);
        else
            e = cmd[0] == 'd' ? rd_kafka_mock_broker_set_down(mc, id)
                              : rd_kafka_mock_broker_set_up(mc, id);
    } else if (!strcmp(cmd, "rtt")) {
        char *end;
        long ms = a2 ? strtol(a2, &end, 10) : -1;
        if (!parse_id(a1, brokers, &id) || !a2 || *end || ms < 0 || ms > 600000)
            snprintf(why, whylen, "rtt: expected `rtt ID MS`");
        else
            e = rd_kafka_mock_broker_set_rtt(mc, id, (int)ms);
    } else if (!strcmp(cmd, "errors") || !strcmp(cmd, "clear")) {
        int16_t api;
        if (!a1 || !parse_api(a1, &api)) {
            snprintf(why, whylen, "%s: unknown API '%s'", cmd, a1 ? a1 : "");
        } else if (cmd[0] == 'c') {
            rd_kafka_mock_clear_request_errors(mc, api);
        } else {
            rd_kafka_resp_err_t errs[64];
            size_t n = 0;
            char *s2 = NULL;
            for (char *t = a2 ? strtok_r(a2, ",", &s2) : NULL; t && !why[0];
                 t = strtok_r(NULL, ",", &s2)) {
                if (n == 64)
                    snprintf(why, whylen, "errors: at most 64 at once");
                else if (!parse_kafka_err(t, &errs[n++]))
                    snprintf(why, whylen, "errors: unknown error '%s'", t);
            }
            if (!why[0] && n == 0)
                snprintf(why, whylen, "errors: expected `errors API ERR[,ERR...]`");
            if (!why[0])
                rd_kafka_mock_push_request_errors_array(mc, api, n, errs);
        }
    } else if (!strcmp(cmd, "topic")) {
        struct topic_arg t;
        if (!a1 || !parse_topic(a1, &t))
            snprintf(why, whylen, "topic: expected NAME:PARTITIONS");
        else
            e = rd_kafka_mock_topic_create(mc, t.name, t.partitions, brokers < 3 ? brokers : 3);
    } else {
        snprintf(why, whylen, "unknown command '%s' (down, up, rtt, errors, clear, topic)", cmd);
    }
    if (!why[0] && e)
        snprintf(why, whylen, "%s", rd_kafka_err2str(e));
}

/* The control thread: reads commands on stdin until its end; the main thread, woken by the
 * stop pipe,, under the lock, sets `stopping` before it destroys the cluster. */
struct control {
    rd_kafka_mock_cluster_t *mc;
    int brokers;
    pthread_mutex_t lock;
    bool stopping;
};

/* One line of fd 0 into *line (grown as needed, newline kept, '\0'-terminated), like getline;
 * -1 at the end of input, on a read error or out of memory. read(2) a byte at a time rather
 * than getline(stdin): a thread blocked in getline holds stdin's FILE lock, and glibc 2.41's
 * exit() (trixie) takes every stream's lock to flush it, so the main thread's exit would wait
 * for a next command forever (2.36, bookworm, flushed without locks). Commands are a few short
 * lines, so no buffering is needed, and nothing is left behind in a FILE buffer. */
static ssize_t read_line(char **line, size_t *cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(STDIN_FILENO, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (n == 0)
                return -1;
            break;
        }
        if (n + 2 > *cap) {
            size_t ncap = *cap ? 2 * *cap : 128;
            char *p = realloc(*line, ncap);
            if (!p)
                return -1;
            *line = p;
            *cap = ncap;
        }
        (*line)[n++] = ch;
        if (ch == '\n')
            break;
    }
    (*line)[n] = '\0';
    return (ssize_t)n;
}

static void *control_main(void *arg)
{
    struct control *c = arg;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = read_line(&line, &cap)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char why[256];
        pthread_mutex_lock(&c->lock);
        if (c->stopping) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        run_command(c->mc, c->brokers, line, why, sizeof why);
        if (why[0])
            printf("error: %s\n", why);
        else
            printf("ok\n");
        fflush(stdout);
        pthread_mutex_unlock(&c->lock);
    }
    free(line);
    return NULL;
}

int sr__cmd_broker(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv))
        return usage(stdout);
    int brokers = 3;
    bool quiet = false, control = false;
    struct topic_arg *topics = calloc((size_t)argc, sizeof *topics);
    struct topic_list tl = {.t = topics};
    if (!topics)
        return sr__cli_fail("broker", "out of memory");
    const struct sr__opt opts[] = {
        SR__INT("--brokers", &brokers, 1, 32),
        SR__FN("--topic", &tl, add_topic, "NAME:PARTITIONS (a name of [A-Za-z0-9._-], 1..10000 "
                                           "partitions)"),
        SR__FLAG("--quiet", &quiet),
        SR__FLAG("--control", &control),
        SR__OPT_END,
    };
    if (sr__cli_parse("broker", opts, argc, argv, NULL, 0, NULL)) {
        free(topics);
        return 1;
    }
    int n_topics = tl.n;

    /* Stop signals: a handler in whichever thread gets them writes to the stop pipe. */
    if (pipe(stop_pipe) != 0) {
        free(topics);
        return sr__cli_fail("broker", "pipe: %s", strerror(errno));
    }
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct sr_error err = {0};
    sr_mock_broker_t *mb = NULL;
    if (sr_mock_broker_start(brokers, &mb, &err) != SR_OK) {
        free(topics);
        return sr__cli_fail("broker", "%s", err.msg);
    }
    rd_kafka_mock_cluster_t *mc = sr_mock_broker_cluster(mb);
    for (int i = 0; i < n_topics; i++) {
        if (sr_mock_broker_topic_create(mb, topics[i].name, topics[i].partitions, 0, &err) != SR_OK) {
            sr_mock_broker_stop(mb);
            free(topics);
            return sr__cli_fail("broker", "%s", err.msg);
        }
    }
    const char *bs = sr_mock_broker_bootstraps(mb);
    printf("bootstrap.servers=%s\n", bs);
    fflush(stdout);
    if (!quiet && sr__cli_tty())
        fprintf(stderr, "streamrec broker: %d broker(s), %d topic(s) created; Ctrl-C stops it\n",
                brokers, n_topics);

    /* Static: the detached thread may outlive this frame until exit. */
    static struct control ctl = {.lock = PTHREAD_MUTEX_INITIALIZER};
    ctl.mc = mc;
    ctl.brokers = (int)brokers;
    pthread_t thr;
    bool thr_started = control && pthread_create(&thr, NULL, control_main, &ctl) == 0;
    if (control && !thr_started)
        fprintf(stderr, "streamrec broker: could not start the --control thread\n");
    char b;
    while (read(stop_pipe[0], &b, 1) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&ctl.lock);
    ctl.stopping = true;
    pthread_mutex_unlock(&ctl.lock);
    if (thr_started)
        pthread_detach(thr); /* may sit in read on stdin; exit ends it */
    sr_mock_broker_stop(mb);
    free(topics);
    return 0;
}
