/* args.c — the one argument parser of the `streamrec` commands (args.h): a table of options
 * per command, one pass over argv, one wording for every problem. Owns nothing but the arrays
 * of repeatable options (struct sr__cli_list). Main thread. */
#include "args.h"
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sr__cli_list_free(struct sr__cli_list *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
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

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

int sr__cli_bad_number(const char *cmd, const char *opt, const char *value, double lo, double hi)
{
    return sr__cli_fail(cmd, "%s: '%s' is not a number in %.15g..%.15g", opt, value, lo, hi);
}

/* True when name is one of the '|'-separated aliases of o. */
static bool opt_matches(const struct sr__opt *o, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = o->name; p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && !memcmp(p, name, n))
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static bool in_choices(const char *choices, const char *v)
{
    size_t len = strlen(v);
    for (const char *p = choices; p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && !memcmp(p, v, n))
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* Stores value v of option o (given as a); 0 or the exit code after the error line. */
static int store(const char *cmd, const struct sr__opt *o, const char *a, const char *v, int argc)
{
    int64_t x;
    switch (o->type) {
    case SR__OPT_FLAG:
        *(bool *)o->dst = true;
        return 0;
    case SR__OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case SR__OPT_LIST: {
        struct sr__cli_list *l = o->dst;
        if (!l->v && !(l->v = calloc((size_t)argc, sizeof *l->v)))
            return sr__cli_fail(cmd, "out of memory");
        l->v[l->n++] = v; /* at most argc values: each takes an argument */
        return 0;
    }
    case SR__OPT_INT:
    case SR__OPT_I64:
        if (!sr__cli_parse_i64(v, o->min, o->max, &x)) {
            if (o->max == INT64_MAX)
                return sr__cli_fail(cmd, "%s: '%s' is not an integer >= %" PRId64, a, v, o->min);
            return sr__cli_fail(cmd, "%s: '%s' is not an integer in %" PRId64 "..%" PRId64, a, v,
                                o->min, o->max);
        }
        if (o->type == SR__OPT_INT)
            *(int *)o->dst = (int)x;
        else
            *(int64_t *)o->dst = x;
        return 0;
    case SR__OPT_U64:
        if (!parse_u64(v, o->dst))
            return sr__cli_fail(cmd, "%s: '%s' is not an unsigned integer", a, v);
        return 0;
    case SR__OPT_DOUBLE:
        if (!sr__cli_parse_double(v, o->fmin, o->fmax, o->dst))
            return sr__cli_bad_number(cmd, a, v, o->fmin, o->fmax);
        return 0;
    case SR__OPT_CHOICE:
        if (!in_choices(o->choices, v)) {
            char list[256];
            size_t n = 0;
            for (const char *p = o->choices; *p && n + 3 < sizeof list; p++) {
                if (*p == '|') {
                    list[n++] = ',';
                    list[n++] = ' ';
                } else {
                    list[n++] = *p;
                }
            }
            list[n] = '\0';
            return sr__cli_fail(cmd, "%s: '%s' is not one of %s", a, v, list);
        }
        *(const char **)o->dst = v;
        return 0;
    case SR__OPT_FN:
        if (!o->parse(v, o->dst))
            return sr__cli_fail(cmd, "%s: '%s' is not %s", a, v, o->expect);
        return 0;
    }
    return sr__cli_fail(cmd, "%s: internal error (option type %d)", a, (int)o->type);
}

int sr__cli_parse(const char *cmd, const struct sr__opt *opts, int argc, char **argv,
                  const char **pos, int max_pos, int *n_pos)
{
    int np = 0;
    if (n_pos)
        *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (np >= max_pos)
                return sr__cli_fail(cmd, "unexpected argument '%s' (see streamrec %s --help)", a,
                                    cmd);
            pos[np++] = a;
            if (n_pos)
                *n_pos = np;
            continue;
        }
        const struct sr__opt *o = opts;
        while (o->name && !opt_matches(o, a))
            o++;
        if (!o->name)
            return sr__cli_fail(cmd, "unknown option '%s' (see streamrec %s --help)", a, cmd);
        if (o->given)
            *o->given = true;
        const char *v = NULL;
        if (o->type != SR__OPT_FLAG) {
            if (i + 1 >= argc)
                return sr__cli_fail(cmd, "option '%s' needs a value (see streamrec %s --help)", a,
                                    cmd);
            v = argv[++i];
        }
        int rc = store(cmd, o, a, v, argc);
        if (rc)
            return rc;
    }
    return 0;
}
