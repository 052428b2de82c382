/* main.c — `streamrec <command>`: dispatches to the command table. Every command answers
 * --help and exits non-zero with a one-line reason on bad input. */
#include "cli.h"
#include "sr_ops.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct sr__command commands[] = {
    {"config", sr__cmd_config, "list every configuration key with its default and meaning"},
    {"bundle", sr__cmd_bundle, "bundle check BUNDLE, bundle build-index, bundle add-items: check, index, extend a bundle"},
    {"score", sr__cmd_score, "score sessions (JSON lines on stdin) with a bundle: raw model top-k"},
    {"replay", sr__cmd_replay, "offline runtime: replay an event file through the graph (--eval)"},
    {"run", sr__cmd_run, "online runtime: consumer group in, recommendations to a topic"},
    {"gen", sr__cmd_gen, "synthetic sessions (or a YooChoose/Diginetica log) to a file or topic"},
    {"broker", sr__cmd_broker, "a local Kafka-protocol broker (librdkafka mock cluster)"},
    {"demo", sr__cmd_demo, "everything embedded, zero set-up: broker, events, runtime, live hit rate"},
    {"bench", sr__cmd_bench, "benchmarks: bench retrieval, bench model (encoders), bench e2e (the online runtime)"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

extern char **environ;

struct config_report {
    const char *cmd;
    int n;
};

/* A command's error line: "streamrec CMD: msg", or a JSON log line under log.format=json. */
static void cli_line(const char *cmd, const char *msg)
{
    if (sr_log_get_format() == SR_LOG_FORMAT_JSON)
        sr_log_always(SR_LOG_ERROR, cmd, msg, NULL);
    else
        fprintf(stderr, "streamrec %s: %s\n", cmd, msg);
}

static void print_problem(void *opaque, const char *line)
{
    struct config_report *r = opaque;
    r->n++;
    cli_line(r->cmd, line);
}

int sr__cli_config_load(const char *cmd, sr_config_t *cfg, const char *file, bool use_env,
                        int argc, char **argv, bool all_problems)
{
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets)
        return sr__cli_fail(cmd, "out of memory");
    int n_sets = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--set"))
            sets[n_sets++] = argv[++i];
    struct sr_config_sources src = {.file = file, .envp = use_env ? environ : NULL,
                                    .sets = sets, .n_sets = n_sets, .apply_log_level = true};
    struct config_report r = {.cmd = cmd};
    struct sr_error err = {0};
    sr_err_t rc = sr_config_load(cfg, &src, all_problems ? print_problem : NULL, &r, &err);
    free(sets);
    if (rc == SR_OK || rc == SR_ECONFIG) {
        sr_err_t grc = sr_graph_config_check(cfg, all_problems ? print_problem : NULL, &r,
                                             rc == SR_OK ? &err : NULL);
        rc = rc == SR_OK ? grc : rc;
    }
    if (rc == SR_OK)
        return 0;
    if (all_problems)
        return r.n ? r.n : 1;
    return sr__cli_fail(cmd, "%s", err.msg);
}

int sr__cli_fail(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    cli_line(cmd, msg);
    return 1;
}

int sr__cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

bool sr__cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end != s && *end && !errno) { /* "1e6": exact integers in scientific form */
        double d = strtod(s, &end);
        if (errno || *end || d != floor(d) || d < -9.2e18 || d > 9.2e18)
            return false;
        v = (long long)d;
    }
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool sr__cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

int sr__cli_tty(void) { return isatty(STDERR_FILENO); }

static void usage(FILE *f)
{
    fprintf(f, "usage: streamrec <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`streamrec <command> --help` describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("streamrec 0.1.0\n");
        return 0;
    }
    const char *lvl = getenv("STREAMREC_LOG_LEVEL");
    sr_log_level_t level;
    if (lvl && sr_log_level_parse(lvl, &level) == SR_OK)
        sr_log_set_level(level);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "streamrec: unknown command '%s' (see streamrec --help)\n", argv[1]);
    return 2;
}
