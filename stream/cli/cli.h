/* cli.h — private to stream/: the `streamrec <command>` table and the helpers commands share.
 * Each command lives in its own cmd_<name>.c and is listed once in main.c's table. */
#ifndef SR_CLI_H
#define SR_CLI_H

#include "args.h"
#include "sr_core.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct sr__command {
    const char *name;
    int (*main)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
    const char *summary;
};

/* Prints "streamrec <cmd>: <reason>" on one line to stderr and returns 1 (the exit code). */
int sr__cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv holds -h or --help. */
int sr__cli_wants_help(int argc, char **argv);
/* True when stderr is a terminal (progress lines are shown only then). */
int sr__cli_tty(void);

/* The one configuration loader of every command (DESIGN §5): properties file (NULL: none),
 * then STREAMREC_* variables (when use_env), then the `--set key=value` values (sets, in order;
 * NULL: none), then the start-up checks of core (sr_config_check) and of the
 * graph's keys (sr_graph_config_check). Sets the process log level from log.level. With
 * all_problems every problem is printed as "streamrec <cmd>: <problem>" and the count returned;
 * otherwise the first is printed (the command refuses to start). Returns 0 when the
 * configuration is good. */
int sr__cli_config_load(const char *cmd, sr_config_t *cfg, const char *file, bool use_env,
                        const struct sr__cli_list *sets, bool all_problems);

/* Commands. */
int sr__cmd_config(int argc, char **argv);
int sr__cmd_bundle(int argc, char **argv);
int sr__cmd_score(int argc, char **argv);
int sr__cmd_bench(int argc, char **argv);
int sr__cmd_replay(int argc, char **argv);
int sr__cmd_run(int argc, char **argv);
/* `bench e2e` (bench_e2e.c), dispatched by cmd_bench.c; argv[0] is "e2e". */
int sr__bench_e2e(int argc, char **argv);
int sr__cmd_gen(int argc, char **argv);
int sr__cmd_broker(int argc, char **argv);
int sr__cmd_demo(int argc, char **argv);

#endif /* SR_CLI_H */
