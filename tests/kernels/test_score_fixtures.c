/* test_score_fixtures.c — `streamrec score` end to end on the committed fixtures
 * (tests/data/{gpt2-small,gru4rec-small} + *.sessions.jsonl vs *.expected.jsonl): scores within
 * 1e-4 relative, order differing only between scores equal within that tolerance (the
 * expected file's next_score covers a swap across the k-th place); --batch 1, --batch 256 and
 * --batch 7 --threads 1 give byte-identical output; bad input lines stop with their line number and exit 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STREAMREC SR_BINARY_DIR "/stream/streamrec"
#define TOL 1e-4

static bool close_rel(double a, double b) { return fabs(a - b) <= TOL * fmax(1.0, fmax(fabs(a), fabs(b))); }

/* Runs `streamrec score args < input`, capturing stdout and stderr into malloc'd strings. */
static int run_score(const char *args, const char *input, char **out, char **errs)
{
    char tmpl_o[] = "/tmp/sr_score_outXXXXXX", tmpl_e[] = "/tmp/sr_score_errXXXXXX";
    int fo = mkstemp(tmpl_o), fe = mkstemp(tmpl_e);
    assert_true(fo >= 0 && fe >= 0);
    close(fo);
    close(fe);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "STREAMREC_LOG_LEVEL=warn %s score %s < '%s' > '%s' 2> '%s'",
             STREAMREC, args, input, tmpl_o, tmpl_e);
    int st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    FILE *f = fopen(tmpl_o, "rb");
    size_t n = 0, cap = 0;
    char *buf = NULL, tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (n + r + 1 > cap) {
            cap = (n + r + 1) * 2;
            buf = realloc(buf, cap);
        }
        memcpy(buf + n, tmp, r);
        n += r;
    }
    fclose(f);
    if (!buf)
        buf = calloc(1, 1);
    buf[n] = 0;
    *out = buf;
    f = fopen(tmpl_e, "rb");
    char *eb = calloc(1, 4096);
    size_t en = fread(eb, 1, 4095, f);
    eb[en] = 0;
    fclose(f);
    *errs = eb;
    unlink(tmpl_o);
    unlink(tmpl_e);
    return WEXITSTATUS(st);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void compare_line(json_t *got, json_t *want, int line)
{
    json_t *gi = json_object_get(got, "items"), *gs = json_object_get(got, "scores");
    json_t *wi = json_object_get(want, "items"), *ws = json_object_get(want, "scores");
    json_t *wn = json_object_get(want, "next_score");
    assert_non_null(gi);
    assert_non_null(gs);
    size_t k = json_array_size(wi);
    if (json_array_size(gi) != k || json_array_size(gs) != k)
        fail_msg("line %d: %zu items, expected %zu", line, json_array_size(gi), k);
    for (size_t r = 0; r < k; r++) {
        double g = json_number_value(json_array_get(gs, r)), w = json_number_value(json_array_get(ws, r));
        if (!close_rel(g, w))
            fail_msg("line %d rank %zu: score %.9g, expected %.9g", line, r, g, w);
        const char *gid = json_string_value(json_array_get(gi, r));
        const char *wid = json_string_value(json_array_get(wi, r));
        if (!strcmp(gid, wid))
            continue;
        /* a different item is fine only where the expected scores tie within tolerance */
        bool ok = false;
        for (size_t r2 = 0; r2 < k && !ok; r2++)
            if (!strcmp(gid, json_string_value(json_array_get(wi, r2))))
                ok = close_rel(json_number_value(json_array_get(ws, r2)), w);
        if (!ok && wn && json_is_number(wn))
            ok = close_rel(json_number_value(wn), w);
        if (!ok)
            fail_msg("line %d rank %zu: item %s, expected %s (score %.9g)", line, r, gid, wid, w);
    }
}

static void check_fixture(const char *name, const char *extra)
{
    char args[1024], input[1024], expected[1024];
    snprintf(args, sizeof args, "%s/%s %s", SR_TEST_DATA, name, extra);
    snprintf(input, sizeof input, "%s/%s.sessions.jsonl", SR_TEST_DATA, name);
    snprintf(expected, sizeof expected, "%s/%s.expected.jsonl", SR_TEST_DATA, name);
    char *out, *errs;
    int rc = run_score(args, input, &out, &errs);
    if (rc != 0)
        fail_msg("streamrec score %s: exit %d: %s", args, rc, errs);
    FILE *f = fopen(expected, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    const char *p = out;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        const char *nl = strchr(p, '\n');
        if (!nl)
            fail_msg("%s: output has %d lines, expected more", name, lineno - 1);
        json_error_t je;
        json_t *got = json_loadb(p, (size_t)(nl - p), 0, &je);
        json_t *want = json_loads(line, 0, &je);
        if (!got)
            fail_msg("%s line %d: output is not JSON: %.*s", name, lineno, (int)(nl - p), p);
        assert_non_null(want);
        compare_line(got, want, lineno);
        json_decref(got);
        json_decref(want);
        p = nl + 1;
    }
    assert_true(lineno > 0);
    assert_string_equal(p, ""); /* no extra output lines */
    free(line);
    fclose(f);
    free(out);
    free(errs);
}

static void test_gpt2_fixture(void **s) { (void)s; check_fixture("gpt2-small", "--device cpu"); }
static void test_gru4rec_fixture(void **s) { (void)s; check_fixture("gru4rec-small", "--device cpu"); }

/* The same bytes whatever the batch size and threads (DESIGN §8): every cpu op computes a
 * session's rows the same way wherever they sit in the batch, and top-k is re-scored on the
 * host. On a mismatch, names the first line that differs. */
static void same_bytes(const char *a, const char *b, const char *what)
{
    assert_int_equal(count_lines(a), count_lines(b));
    if (strcmp(a, b) == 0)
        return;
    int line = 1;
    for (; *a && *a == *b; a++, b++)
        line += *a == '\n';
    const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
    fail_msg("%s: line %d differs: ...%.*s vs ...%.*s", what, line, (int)(ea ? ea - a : 80),
             a, (int)(eb ? eb - b : 80), b);
}

static void test_batch_sizes(void **s)
{
    (void)s;
    const char *names[] = {"gpt2-small", "gru4rec-small"};
    for (int i = 0; i < 2; i++) {
        char a1[512], a2[512], a3[512], input[512];
        snprintf(a1, sizeof a1, "%s/%s --device cpu --batch 1 -k 25", SR_TEST_DATA, names[i]);
        snprintf(a2, sizeof a2, "%s/%s --device cpu --batch 256 -k 25", SR_TEST_DATA, names[i]);
        snprintf(a3, sizeof a3, "%s/%s --device cpu --batch 7 -k 25 --threads 1", SR_TEST_DATA, names[i]);
        snprintf(input, sizeof input, "%s/%s.sessions.jsonl", SR_TEST_DATA, names[i]);
        char *o1, *o2, *o3, *e;
        assert_int_equal(run_score(a1, input, &o1, &e), 0);
        free(e);
        assert_int_equal(run_score(a2, input, &o2, &e), 0);
        free(e);
        assert_int_equal(run_score(a3, input, &o3, &e), 0);
        free(e);
        assert_true(count_lines(o1) > 100);
        same_bytes(o1, o2, "--batch 1 vs --batch 256");
        same_bytes(o1, o3, "--batch 1 vs --batch 7 --threads 1");
        free(o1), free(o2), free(o3);
    }
}

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/sr_score_inXXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void expect_bad(const char *input_text, const char *args_tail, const char *msg, int lines_out)
{
    char *in = write_tmp(input_text);
    char args[512];
    snprintf(args, sizeof args, "%s/gpt2-small %s", SR_TEST_DATA, args_tail);
    char *out, *errs;
    int rc = run_score(args, in, &out, &errs);
    unlink(in);
    if (rc != 1 || !strstr(errs, msg))
        fail_msg("input %s args %s: exit %d, stderr '%s' (want '%s')", input_text, args_tail, rc,
                 errs, msg);
    assert_int_equal(count_lines(errs), 1);
    assert_int_equal(count_lines(out), lines_out);
    free(out);
    free(errs);
}

static void test_bad_input(void **s)
{
    (void)s;
    const char *ok = "{\"items\": [\"sku-3082189\", \"never-seen\"]}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s{\"items\": []}\n", ok, ok);
    expect_bad(buf, "", "line 3: \"items\" is empty", 2);
    snprintf(buf, sizeof buf, "%s{\"items\": [1]}\n", ok);
    expect_bad(buf, "", "line 2: items[0] is not a string", 1);
    expect_bad("{\"items\": [\"a\"\n", "", "line 1: invalid JSON", 0);
    expect_bad("[1]\n", "", "line 1: expected a JSON object", 0);
    expect_bad("{\"item\": [\"a\"]}\n", "", "line 1: missing field \"items\"", 0);
    expect_bad("\n", "", "line 1:", 0);
    expect_bad(ok, "-k 0", "-k", 0);
    expect_bad(ok, "--device tpu", "tpu", 0);
    expect_bad(ok, "--batch x", "--batch", 0);
    expect_bad(ok, "--bogus", "unknown option", 0);
    /* unknown items map to oov and still score; an empty input gives empty output */
    char *in = write_tmp("{\"items\": [\"never-seen\"]}\n");
    char args[512], *out, *errs;
    snprintf(args, sizeof args, "%s/gpt2-small -k 3", SR_TEST_DATA);
    assert_int_equal(run_score(args, in, &out, &errs), 0);
    unlink(in);
    assert_int_equal(count_lines(out), 1);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 3);
    json_decref(j);
    free(out), free(errs);
    in = write_tmp("");
    assert_int_equal(run_score(args, in, &out, &errs), 0);
    unlink(in);
    assert_string_equal(out, "");
    free(out), free(errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_fixture),
        cmocka_unit_test(test_gru4rec_fixture),
        cmocka_unit_test(test_batch_sizes),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
