/* cmd_broker.c — `streamrec broker [--brokers N] [--topic NAME:PARTITIONS]...`: librdkafka's
 * mock cluster in its own process, for demos and tests.
 *
 * The cluster lives on a producer handle that sends nothing. Topics named on the command line
 * are created (rd_kafka_mock_topic_create, which waits for the mock thread) before the first
 * stdout line, `bootstrap.servers=HOST:PORT[,...]`, is written and flushed; then the process
 * waits for SIGINT/SIGTERM (blocked before librdkafka starts its threads and taken with
 * sigwait, so no handler runs inside librdkafka) and exits 0.
 *
 * Limits are librdkafka's (2.0): listeners bind 127.0.0.1 on ephemeral ports; data is kept in
 * memory only, about 5 MiB per partition (older messages are dropped); a topic auto-created by
 * a client gets 4 partitions and replication min(3, brokers); offsets_for_times answers -1;
 * transactions are accepted but not enforced. */
#include "cli.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

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
            "\n"
            "Memory only, with librdkafka's limits: about 5 MiB kept per partition, listeners on\n"
            "127.0.0.1, a topic auto-created by a client gets 4 partitions, offsets_for_times\n"
            "answers -1, transactions are accepted but not enforced.\n");
    return f == stdout ? 0 : 2;
}

/* librdkafka logs go to stderr as one line each, warnings and worse only. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4)
        fprintf(stderr, "streamrec broker: %s: %s\n", fac, buf);
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

int sr__cmd_broker(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv))
        return usage(stdout);
    long brokers = 3;
    bool quiet = false;
    struct topic_arg *topics = calloc((size_t)argc, sizeof *topics);
    int n_topics = 0;
    if (!topics)
        return sr__cli_fail("broker", "out of memory");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
            char *end;
            errno = 0;
            brokers = strtol(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || brokers < 1 || brokers > 32) {
                free(topics);
                return sr__cli_fail("broker", "--brokers %s: expected 1..32", argv[i]);
            }
        } else if (!strcmp(argv[i], "--topic") && i + 1 < argc) {
            if (!parse_topic(argv[++i], &topics[n_topics])) {
                free(topics);
                return sr__cli_fail("broker",
                                    "--topic %s: expected NAME:PARTITIONS (name of [A-Za-z0-9._-], "
                                    "1..10000 partitions)",
                                    argv[i]);
            }
            n_topics++;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = true;
        } else {
            free(topics);
            return sr__cli_fail("broker", "%s '%s' (see --help)",
                                (!strcmp(argv[i], "--brokers") || !strcmp(argv[i], "--topic"))
                                    ? "missing value after"
                                    : "unknown argument",
                                argv[i]);
        }
    }

    /* Block the stop signals in every thread (librdkafka's inherit this mask). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        free(topics);
        return sr__cli_fail("broker", "creating the client handle: %s", errstr);
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
    if (!mc) {
        rd_kafka_destroy(rk);
        free(topics);
        return sr__cli_fail("broker", "could not start the mock cluster (listeners on 127.0.0.1)");
    }
    int rf = brokers < 3 ? (int)brokers : 3;
    for (int i = 0; i < n_topics; i++) {
        rd_kafka_resp_err_t e =
            rd_kafka_mock_topic_create(mc, topics[i].name, topics[i].partitions, rf);
        if (e) {
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            int rc = sr__cli_fail("broker", "creating topic %s: %s", topics[i].name,
                                  rd_kafka_err2str(e));
            free(topics);
            return rc;
        }
    }
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    printf("bootstrap.servers=%s\n", bs);
    fflush(stdout);
    if (!quiet && sr__cli_tty())
        fprintf(stderr, "streamrec broker: %ld broker(s), %d topic(s) created; Ctrl-C stops it\n",
                brokers, n_topics);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    free(topics);
    return 0;
}
