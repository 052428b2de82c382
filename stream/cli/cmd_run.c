/* cmd_run.c — `streamrec run -c FILE [--set k=v]...`: the online runtime (runtime.c) until
 * SIGTERM/SIGINT drains it (exit 0) or a failure stops it (exit 1, nothing uncommitted lost). */
#include "cli.h"
#include "sr_stream.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    printf("usage: streamrec run -c FILE [--set key=value]...\n"
           "  Consumes input.topic in consumer group kafka.group.id, runs the graph and publishes\n"
           "  recommendations to output.topic (undecodable events to dlq.topic when set).\n"
           "  -c FILE      properties file (model.bundle, kafka.bootstrap.servers, ...)\n"
           "  --set k=v    override a key (after the file and STREAMREC_* variables)\n"
           "  SIGHUP, POST /admin/reload (metrics listener, loopback peers) or a new target of\n"
           "  the model.bundle symlink reloads the bundle between batches; a bundle that fails a\n"
           "  check is refused and the running one keeps serving. Under systemd, READY=1 is sent\n"
           "  once the group is joined and WATCHDOG=1 from the loop (WatchdogSec).\n"
           "  SIGTERM/SIGINT drain: in-flight batches finish, state and offsets are committed,\n"
           "  exit 0; a second signal exits at once. Metrics: metrics.listen (/metrics, /healthz,\n"
           "  /readyz).\n");
}

static int log_key(void *opaque, const char *key, const char *value)
{
    (void)opaque;
    const char *v = sr_config_key_is_secret(key) ? "***" : value;
    /* JSON: fields "key" and "value", not one field per configuration key (an indexer would
     * map "kafka" as an object and "kafka.x" under it, key by key) */
    if (sr_log_get_format() == SR_LOG_FORMAT_JSON)
        sr_log(SR_LOG_INFO, "run", "configuration", "key=%s value=\"%s\"", key, v);
    else
        sr_log(SR_LOG_INFO, "run", "configuration", "%s=%s", key, v);
    return 0;
}

int sr__cmd_run(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    struct sr_error err = {0};
    const char *cfg_file = NULL;
    struct sr__cli_list sets = {0};
    const struct sr__opt opts[] = {
        SR__STR("-c", &cfg_file),
        SR__LIST("--set", &sets),
        SR__OPT_END,
    };
    int rc = sr__cli_parse("run", opts, argc, argv, NULL, 0, NULL);
    sr_config_t *cfg = sr_config_new();
    /* Without -c the environment and --set may still configure everything (a container);
     * what is missing is said in one line. */
    if (!rc && !cfg_file && !sr_config_is_set(cfg, "model.bundle") && !getenv("STREAMREC_MODEL_BUNDLE")) {
        bool set = false;
        for (int i = 0; i < sets.n; i++)
            set = set || !strncmp(sets.v[i], "model.bundle", 12);
        if (!set)
            rc = sr__cli_fail("run", "no configuration: give -c FILE (a properties file with at "
                              "least model.bundle and kafka.bootstrap.servers), STREAMREC_* "
                              "variables or --set key=value");
    }
    if (!rc)
        rc = sr__cli_config_load("run", cfg, cfg_file, true, &sets, false);
    if (!rc) /* the effective configuration, secrets masked: what this process runs with */
        sr_config_foreach(cfg, "", log_key, NULL);
    signal(SIGPIPE, SIG_IGN);
    sr_runtime_t *rt = NULL;
    if (!rc && sr_runtime_new(cfg, &rt, &err) != SR_OK)
        rc = sr__cli_fail("run", "%s", err.msg);
    if (!rc && sr_runtime_run(rt, true, &err) != SR_OK)
        rc = sr__cli_fail("run", "%s", err.msg);
    sr_runtime_destroy(rt);
    sr_config_destroy(cfg);
    sr__cli_list_free(&sets);
    return rc;
}
