/* cmd_config.c — `streamrec config --list`: every known key with default and meaning (the user
 * guide's table is this output); `streamrec config -c FILE [--set k=v]` validates a config. */
#include "cli.h"

#include <string.h>

int sr__cmd_config(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        printf("usage: streamrec config --list | [-c FILE] [--set key=value]...\n"
               "  --list     print every configuration key, its default and meaning\n"
               "  -c FILE    check a properties file, then STREAMREC_* variables, then --set overrides:\n"
               "             every problem is one line naming key, value and allowed values\n"
               "             (exit 1), else \"configuration ok\"\n");
        return 0;
    }
    const char *file = NULL;
    bool list = false;
    struct sr__cli_list sets = {0};
    const struct sr__opt opts[] = {
        SR__FLAG("--list", &list),
        SR__STR("-c", &file),
        SR__LIST("--set", &sets),
        SR__OPT_END,
    };
    if (sr__cli_parse("config", opts, argc, argv, NULL, 0, NULL)) {
        sr__cli_list_free(&sets);
        return 1;
    }
    if (list) {
        /* Columns as wide as their longest entry plus two spaces, so a reader may split on
         * two or more spaces whatever a key's length. */
        int kw = 0, dw = 0;
        for (int i = 0; i < sr_config_known_count(); i++) {
            const char *k, *d, *h;
            sr_config_known_at(i, &k, &d, &h);
            const char *dv = d ? (*d ? d : "(empty)") : "(none)";
            kw = (int)strlen(k) > kw ? (int)strlen(k) : kw;
            dw = (int)strlen(dv) > dw ? (int)strlen(dv) : dw;
        }
        for (int i = 0; i < sr_config_known_count(); i++) {
            const char *k, *d, *h;
            sr_config_known_at(i, &k, &d, &h);
            printf("%-*s  %-*s  %s\n", kw, k, dw, d ? (*d ? d : "(empty)") : "(none)", h);
        }
        sr__cli_list_free(&sets);
        return 0;
    }
    sr_config_t *cfg = sr_config_new();
    int n = sr__cli_config_load("config", cfg, file, true, &sets, true);
    sr_config_destroy(cfg);
    sr__cli_list_free(&sets);
    if (n)
        return 1;
    printf("configuration ok\n");
    return 0;
}
