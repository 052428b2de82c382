/* args.h — private to stream/: the one argument parser of every `streamrec` command (DESIGN §6).
 * A command describes its options in a table (name with aliases, type, destination, range)
 * and sr__cli_parse walks argv once: values are checked as they are read, and every problem is
 * one line in one wording for all commands:
 *   streamrec CMD: unknown option '--x' (see streamrec CMD --help)
 *   streamrec CMD: option '--x' needs a value (see streamrec CMD --help)
 *   streamrec CMD: --x: 'abc' is not an integer in 1..100000
 *   streamrec CMD: unexpected argument 'abc' (see streamrec CMD --help)
 * An option's value is the next argument, whatever it starts with; an argument starting with
 * '-' (other than "-" alone) is an option; everything else is positional. Main thread. */
#ifndef SR_CLI_ARGS_H
#define SR_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

enum sr__opt_type {
    SR__OPT_FLAG,   /* bool *: set to true; takes no value */
    SR__OPT_STR,    /* const char **: the value (the last one given wins) */
    SR__OPT_LIST,   /* struct sr__cli_list *: every value in order (repeatable) */
    SR__OPT_INT,    /* int *: an integer in [min, max] ("1e6" accepted when exact) */
    SR__OPT_I64,    /* int64_t *: likewise */
    SR__OPT_U64,    /* uint64_t *: unsigned, decimal, 0x-hex or 0-octal (strtoull base 0) */
    SR__OPT_DOUBLE, /* double *: a number in [fmin, fmax] */
    SR__OPT_CHOICE, /* const char **: one of `choices` ("rocksdb|memory") */
    SR__OPT_FN,     /* parse(value, dst); false: "'value' is not <expect>" */
};

struct sr__opt {
    const char *name;              /* "--items"; aliases separated by '|': "-b|--brokers" */
    enum sr__opt_type type;
    void *dst;
    int64_t min, max;              /* INT, I64 */
    double fmin, fmax;             /* DOUBLE */
    const char *choices;           /* CHOICE */
    bool (*parse)(const char *value, void *dst); /* FN */
    const char *expect;            /* FN: what a value must be, for the error line */
    bool *given;                   /* optional: set to true when the option appears */
};

/* Table rows (designated initializers: a row names only what its type uses). */
#define SR__FLAG(n, d) {.name = (n), .type = SR__OPT_FLAG, .dst = (d)}
#define SR__STR(n, d) {.name = (n), .type = SR__OPT_STR, .dst = (d)}
#define SR__LIST(n, d) {.name = (n), .type = SR__OPT_LIST, .dst = (d)}
#define SR__INT(n, d, lo, hi) {.name = (n), .type = SR__OPT_INT, .dst = (d), .min = (lo), .max = (hi)}
#define SR__I64(n, d, lo, hi) {.name = (n), .type = SR__OPT_I64, .dst = (d), .min = (lo), .max = (hi)}
#define SR__U64(n, d) {.name = (n), .type = SR__OPT_U64, .dst = (d)}
#define SR__DOUBLE(n, d, lo, hi)                                                                  \
    {.name = (n), .type = SR__OPT_DOUBLE, .dst = (d), .fmin = (lo), .fmax = (hi)}
#define SR__CHOICE(n, d, list) {.name = (n), .type = SR__OPT_CHOICE, .dst = (d), .choices = (list)}
#define SR__FN(n, d, fn, what)                                                                    \
    {.name = (n), .type = SR__OPT_FN, .dst = (d), .parse = (fn), .expect = (what)}
#define SR__OPT_END {.name = NULL}

/* The values of a repeatable option (SR__OPT_LIST), pointing into argv. Zero-initialise; the
 * parser allocates v; sr__cli_list_free releases it. */
struct sr__cli_list {
    const char **v;
    int n;
};
void sr__cli_list_free(struct sr__cli_list *l);

/* Parses argv[1..argc) (argv[0] is the command's name) against opts, a table ended by an entry
 * with name NULL. Positional arguments go to pos[0..max_pos) in order, their count to *n_pos
 * (pos and n_pos may be NULL when max_pos is 0). Returns 0, or prints the first problem as
 * "streamrec <cmd>: ..." and returns 1 (the exit code); LIST destinations are then still to be
 * freed by the caller. */
int sr__cli_parse(const char *cmd, const struct sr__opt *opts, int argc, char **argv,
                  const char **pos, int max_pos, int *n_pos);

/* Number options: the whole string must parse and lie in [lo, hi]. Integers also accept an
 * exact scientific form ("1e6"). Return false otherwise (the caller names the option). */
bool sr__cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool sr__cli_parse_double(const char *s, double lo, double hi, double *out);
/* Prints "streamrec <cmd>: <opt>: '<value>' is not a number in LO..HI" and returns 1: the
 * wording of a bad number inside a value the command splits itself (a list of rates). */
int sr__cli_bad_number(const char *cmd, const char *opt, const char *value, double lo, double hi);

#endif /* SR_CLI_ARGS_H */
