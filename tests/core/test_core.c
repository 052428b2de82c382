/* test_core.c — core/: error context, properties config (file, --set, env, unknown keys with
 * the nearest known one), log lines in both formats, arenas and the pinned item-id hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sr_core.h"

#include <jansson.h>

static void test_error_set_and_prefix(void **state)
{
    (void)state;
    struct sr_error e;
    sr_error_clear(&e);
    assert_int_equal(sr_error_set(&e, SR_EFORMAT, "line %d: bad", 7), SR_EFORMAT);
    sr_error_prefix(&e, "%s", "file.jsonl");
    assert_string_equal(e.msg, "file.jsonl: line 7: bad");
    assert_string_equal(sr_err_name(SR_EFORMAT), "EFORMAT");
    assert_string_equal(sr_err_str(SR_OK), "success");
    assert_int_equal(sr_error_set(NULL, SR_EIO, "ignored"), SR_EIO);
}

static void test_config_defaults_and_set(void **state)
{
    (void)state;
    sr_config_t *c = sr_config_new();
    struct sr_error e;
    assert_string_equal(sr_config_get(c, "recs.k"), "10");
    assert_false(sr_config_is_set(c, "recs.k"));
    assert_int_equal(sr_config_set_kv(c, "recs.k = 25", &e), SR_OK);
    int64_t k;
    assert_int_equal(sr_config_get_int(c, "recs.k", &k, &e), SR_OK);
    assert_int_equal(k, 25);
    assert_int_equal(sr_config_set_kv(c, "kafka.bootstrap.servers=localhost:9092", &e), SR_OK);
    assert_string_equal(sr_config_get(c, "kafka.bootstrap.servers"), "localhost:9092");
    assert_null(sr_config_get(c, "model.bundle"));
    bool b;
    assert_int_equal(sr_config_set(c, "recs.exclude_seen", "maybe", &e), SR_OK);
    assert_int_equal(sr_config_get_bool(c, "recs.exclude_seen", &b, &e), SR_ECONFIG);
    assert_non_null(strstr(e.msg, "recs.exclude_seen"));
    sr_config_destroy(c);
}

static void test_config_unknown_key_names_nearest(void **state)
{
    (void)state;
    sr_config_t *c = sr_config_new();
    struct sr_error e;
    assert_int_equal(sr_config_set(c, "batch.max.event", "3", &e), SR_ECONFIG);
    assert_non_null(strstr(e.msg, "'batch.max.event'"));
    assert_non_null(strstr(e.msg, "batch.max.events"));
    sr_config_destroy(c);
}

static void write_file(char *path, const char *text)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

struct lines {
    int n;
    char line[16][512];
};

static void collect(void *opaque, const char *line)
{
    struct lines *l = opaque;
    if (l->n < 16)
        snprintf(l->line[l->n], sizeof l->line[0], "%s", line);
    l->n++;
}

/* The first collected line containing every needle, or NULL. */
static const char *find_line(const struct lines *l, const char *a, const char *b)
{
    for (int i = 0; i < l->n && i < 16; i++)
        if (strstr(l->line[i], a) && (!b || strstr(l->line[i], b)))
            return l->line[i];
    return NULL;
}

static void test_config_file_and_env(void **state)
{
    (void)state;
    char path[] = "/tmp/sr_cfg_XXXXXX";
    write_file(path, "# comment\nmodel.bundle = /tmp\n\n! also comment\nrecs.k=5\nbogus.key=1\n"
                     "recs.k=6\n");
    sr_config_t *c = sr_config_new();
    struct sr_error e;
    struct sr_config_sources src = {.file = path};
    assert_int_equal(sr_config_load(c, &src, NULL, NULL, &e), SR_ECONFIG);
    assert_non_null(strstr(e.msg, ":6: unknown configuration key 'bogus.key'"));
    /* The load goes on past a bad line: every problem is found in one run. */
    assert_string_equal(sr_config_get(c, "recs.k"), "6");
    char *env[] = {"STREAMREC_RECS_K=7", "STREAMREC_SESSION_EVENT_TYPES=view",
                   "STREAMREC_KAFKA_SECURITY_PROTOCOL=SSL", "PATH=/bin", NULL};
    const char *sets[] = {"session.event_types=click"};
    sr_config_t *c2 = sr_config_new();
    unlink(path);
    char path2[] = "/tmp/sr_cfg_XXXXXX";
    write_file(path2, "model.bundle=/tmp\nrecs.k=5\nsession.event_types=purchase\n");
    struct sr_config_sources all = {.file = path2, .envp = env, .sets = sets, .n_sets = 1};
    assert_int_equal(sr_config_load(c2, &all, NULL, NULL, &e), SR_OK);
    /* file < environment < --set */
    assert_string_equal(sr_config_get(c2, "recs.k"), "7");
    assert_string_equal(sr_config_get(c2, "session.event_types"), "click");
    assert_string_equal(sr_config_get(c2, "kafka.security.protocol"), "SSL");
    assert_string_equal(sr_config_origin(c2, "recs.k"), "STREAMREC_RECS_K");
    assert_string_equal(sr_config_origin(c2, "session.event_types"), "--set");
    sr_config_destroy(c2);
    sr_config_destroy(c);
    unlink(path2);
    assert_true(sr_config_key_is_secret("kafka.sasl.password"));
    assert_false(sr_config_key_is_secret("kafka.bootstrap.servers"));
}

/* Kubernetes injects service links for a Service named streamrec: they cannot be keys and
 * must not stop the process. A key-shaped typo still does. */
static void test_config_env_service_links_and_typos(void **state)
{
    (void)state;
    char *env[] = {"STREAMREC_PORT_9464_TCP=tcp://10.0.0.1:9464",
                   "STREAMREC_PORT_9464_TCP_ADDR=10.0.0.1", "STREAMREC_PORT=tcp://10.0.0.1:9464",
                   "STREAMREC_SERVICE_HOST=10.0.0.1", "STREAMREC_SERVICE_PORT=9464",
                   "STREAMREC_SERVICE_PORT_METRICS=9464", "STREAMREC_KAFKA_SERVICE_HOST=10.0.0.2",
                   "STREAMREC_HOME=/opt/streamrec", "STREAMREC_MODEL_BUNDLE=/tmp", NULL};
    sr_config_t *c = sr_config_new();
    struct sr_error e;
    struct sr_config_sources src = {.envp = env};
    assert_int_equal(sr_config_load(c, &src, NULL, NULL, &e), SR_OK);
    assert_false(sr_config_is_set(c, "kafka.service.host"));
    assert_string_equal(sr_config_get(c, "model.bundle"), "/tmp");
    char *bad[] = {"STREAMREC_RECS_KK=1", "STREAMREC_MODEL_BUNDLE=/tmp", NULL};
    struct sr_config_sources src2 = {.envp = bad};
    assert_int_equal(sr_config_load(c, &src2, NULL, NULL, &e), SR_ECONFIG);
    assert_non_null(strstr(e.msg, "STREAMREC_RECS_KK"));
    assert_non_null(strstr(e.msg, "did you mean STREAMREC_RECS_K?"));
    sr_config_destroy(c);
}

/* java.util.Properties.load(Reader): separators '=', ':' and blanks, continuation lines, '!'
 * and '#' comments, escapes. */
static void test_config_properties_syntax(void **state)
{
    (void)state;
    char path[] = "/tmp/sr_cfg_XXXXXX";
    write_file(path, "model.bundle: /tmp\r\n"
                     "  ! a comment\n"
                     "   # another\n"
                     "input.topic   my-events\n"
                     "session.event_types = view,\\\n"
                     "                      click,\\\n"
                     "    purchase\n"
                     "kafka.client.id=a\\u0042c\\tx\\=y\\:z\\\\w\n"
                     "kafka.trailing=kept\\ \n"
                     "kafka.empty\n"
                     "kafka.key\\ with\\ blanks=1\n"
                     "kafka.odd=ends\\\\\n"
                     "output.topic=recs\n");
    sr_config_t *c = sr_config_new();
    struct sr_error e;
    struct sr_config_sources src = {.file = path};
    assert_int_equal(sr_config_load(c, &src, NULL, NULL, &e), SR_OK);
    assert_string_equal(sr_config_get(c, "model.bundle"), "/tmp");
    assert_string_equal(sr_config_get(c, "input.topic"), "my-events");
    assert_string_equal(sr_config_get(c, "session.event_types"), "view,click,purchase");
    assert_string_equal(sr_config_get(c, "kafka.client.id"), "aBc\tx=y:z\\w");
    assert_string_equal(sr_config_get(c, "kafka.trailing"), "kept ");
    assert_string_equal(sr_config_get(c, "kafka.empty"), "");
    assert_string_equal(sr_config_get(c, "kafka.key with blanks"), "1");
    assert_string_equal(sr_config_get(c, "kafka.odd"), "ends\\");
    assert_string_equal(sr_config_get(c, "output.topic"), "recs");
    char origin[64];
    snprintf(origin, sizeof origin, "%s:5", path);
    assert_string_equal(sr_config_origin(c, "session.event_types"), origin);
    sr_config_destroy(c);
    unlink(path);
    char path2[] = "/tmp/sr_cfg_XXXXXX";
    write_file(path2, "model.bundle=/tmp\nkafka.x=\\u00zz\n");
    c = sr_config_new();
    src.file = path2;
    assert_int_equal(sr_config_load(c, &src, NULL, NULL, &e), SR_ECONFIG);
    assert_non_null(strstr(e.msg, ":2: malformed \\uXXXX"));
    sr_config_destroy(c);
    unlink(path2);
}

/* Every bad value is found at start-up, each as one line naming key, value and what is allowed. */
static void test_config_check_reports_every_problem(void **state)
{
    (void)state;
    char path[] = "/tmp/sr_cfg_XXXXXX";
    write_file(path, "model.bundle=/nonexistent/bundle\n"
                     "recs.k=abc\n"
                     "state.backend=redis\n"
                     "input.format=protobuf\n"
                     "metrics.listen=notaport\n"
                     "batch.max.wait.ms=-1\n"
                     "session.ttl.ms=-5\n"
                     "log.level=verbose\n"
                     "input.topic=a,b\n"
                     "recs.require_available=maybe\n"
                     "device=tpu\n");
    sr_config_t *c = sr_config_new();
    struct sr_error e;
    struct lines l = {0};
    struct sr_config_sources src = {.file = path};
    assert_int_equal(sr_config_load(c, &src, collect, &l, &e), SR_ECONFIG);
    assert_int_equal(l.n, 11);
    assert_non_null(strstr(e.msg, ":1: model.bundle=/nonexistent/bundle: expected an existing "
                                  "directory (No such file or directory)"));
    assert_non_null(find_line(&l, ":2: recs.k=abc: expected an integer in 1..1000", NULL));
    assert_non_null(find_line(&l, ":3: state.backend=redis: expected one of rocksdb, memory", NULL));
    assert_non_null(find_line(&l, "input.format=protobuf: expected one of json, avro, avro-confluent", NULL));
    assert_non_null(find_line(&l, "metrics.listen=notaport: expected host:port", NULL));
    assert_non_null(find_line(&l, "batch.max.wait.ms=-1: expected an integer in 0..60000", NULL));
    assert_non_null(find_line(&l, "session.ttl.ms=-5: expected an integer >= 0", NULL));
    assert_non_null(find_line(&l, "log.level=verbose: expected one of debug, info, warn, error, off", NULL));
    assert_non_null(find_line(&l, "input.topic=a,b: expected one topic name", "comma list"));
    assert_non_null(find_line(&l, "recs.require_available=maybe: expected true or false", NULL));
    assert_non_null(find_line(&l, "device=tpu: expected one of auto, cpu, cuda", NULL));
    for (int i = 0; i < l.n; i++)
        assert_null(strchr(l.line[i], '\n'));
    /* The getters give the same message at first use. */
    int64_t k;
    assert_int_equal(sr_config_get_int(c, "recs.k", &k, &e), SR_ECONFIG);
    assert_non_null(strstr(e.msg, "recs.k=abc: expected an integer in 1..1000"));
    assert_int_equal(sr_config_set(c, "recs.k", "1001", &e), SR_OK);
    assert_int_equal(sr_config_get_int(c, "recs.k", &k, &e), SR_ECONFIG);
    sr_config_destroy(c);
    unlink(path);

    /* A good configuration passes; model.bundle is required. */
    c = sr_config_new();
    assert_int_equal(sr_config_check(c, NULL, NULL, &e), SR_ECONFIG);
    assert_non_null(strstr(e.msg, "model.bundle is not set"));
    const char *sets[] = {"model.bundle=/tmp", "metrics.listen=localhost:9470",
                          "batch.max.wait.ms=0", "input.topic=events.v2_x-y"};
    struct sr_config_sources ok = {.sets = sets, .n_sets = 4};
    assert_int_equal(sr_config_load(c, &ok, NULL, NULL, &e), SR_OK);
    assert_int_equal(sr_config_set(c, "metrics.listen", ":9470", &e), SR_OK);
    assert_int_equal(sr_config_check(c, NULL, NULL, &e), SR_OK);
    assert_int_equal(sr_config_set(c, "metrics.listen", "", &e), SR_OK);
    assert_int_equal(sr_config_check(c, NULL, NULL, &e), SR_OK);
    sr_config_destroy(c);
}

static void test_hostport_parse(void **state)
{
    (void)state;
    char host[64];
    int port;
    struct sr_error e;
    assert_int_equal(sr_hostport_parse("localhost:9470", host, sizeof host, &port, &e), SR_OK);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 9470);
    assert_int_equal(sr_hostport_parse(":9470", host, sizeof host, &port, &e), SR_OK);
    assert_string_equal(host, "");
    assert_int_equal(sr_hostport_parse("[::1]:1", host, sizeof host, &port, &e), SR_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(sr_hostport_parse("notaport", host, sizeof host, &port, &e), SR_ECONFIG);
    assert_int_equal(sr_hostport_parse("h:65536", host, sizeof host, &port, &e), SR_ECONFIG);
    assert_int_equal(sr_hostport_parse("h:-1", host, sizeof host, &port, &e), SR_ECONFIG);
    assert_int_equal(sr_hostport_parse("::1:80", host, sizeof host, &port, &e), SR_ECONFIG);
}

static void test_time_parse(void **state)
{
    (void)state;
    int64_t ms;
    struct sr_error e;
    assert_int_equal(sr_time_parse("1970-01-01T00:00:00Z", &ms, &e), SR_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(sr_time_parse("2026-03-01T12:30:15.250+01:00", &ms, &e), SR_OK);
    assert_int_equal(ms, 1772364615250LL);
    assert_int_equal(sr_time_parse("2024-02-29", &ms, &e), SR_OK);
    assert_int_equal(ms, 1709164800000LL);
    assert_int_equal(sr_time_parse("2026-13-45T99:99:00Z", &ms, &e), SR_EINVAL);
    assert_non_null(strstr(e.msg, "month 13 is not 1..12"));
    assert_int_equal(sr_time_parse("2026-02-29", &ms, &e), SR_EINVAL);
    assert_non_null(strstr(e.msg, "day 29 is not 1..28"));
    assert_int_equal(sr_time_parse("2026-01-01T24:00", &ms, &e), SR_EINVAL);
    assert_int_equal(sr_time_parse("2026-01-01T10:00+25:00", &ms, &e), SR_EINVAL);
    assert_int_equal(sr_time_parse("2026-01-01x", &ms, &e), SR_EINVAL);
}

static void test_split_csv(void **state)
{
    (void)state;
    char buf[64];
    const char *items[4];
    assert_int_equal(sr_split_csv(" view, click,,add_to_cart ", buf, sizeof buf, items, 4), 3);
    assert_string_equal(items[2], "add_to_cart");
    assert_int_equal(sr_split_csv("a,b,c,d,e", buf, sizeof buf, items, 4), -1);
}

static void test_arena(void **state)
{
    (void)state;
    sr_arena_t *a = sr_arena_new(256);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++) {
            size_t align = (size_t)1 << (i % 7);
            unsigned char *p = sr_arena_alloc(a, (size_t)(i * 7 + 1), align);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % align, 0);
            memset(p, 0xAB, (size_t)(i * 7 + 1));
        }
        void *big = sr_arena_alloc(a, 10000, 64);
        assert_non_null(big);
        memset(big, 1, 10000);
        sr_arena_reset(a);
        assert_int_equal(sr_arena_used(a), 0);
    }
    assert_null(sr_arena_alloc(a, 8, 3));
    sr_arena_destroy(a);
    sr_arena_destroy(NULL);
}

static void test_hash_pinned(void **state)
{
    (void)state;
    /* XXH64 reference values (seed 0): stored state depends on them never changing. */
    assert_true(sr_hash64("", 0) == 0xEF46DB3751D8E999ULL);
    assert_true(sr_hash64("abc", 3) == 0x44BC2CF5AD770999ULL);
    const char *longer = "Nobody inspects the spammish repetition";
    assert_true(sr_hash64(longer, strlen(longer)) == 0xFBCEA83C8A378BF1ULL);
}

/* ---- log lines ------------------------------------------------------------------------ */

/* Runs fn with stderr (fd 2) going to a temporary file; returns what was written (malloc'd). */
static char *capture_stderr(void (*fn)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(2);
    assert_true(saved >= 0 && dup2(fileno(tmp), 2) == 2);
    fn();
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    off_t n = lseek(fileno(tmp), 0, SEEK_END);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fileno(tmp), out, (size_t)n, 0), n);
    fclose(tmp);
    return out;
}

static char long_msg[6000];

static void log_some(void)
{
    sr_log(SR_LOG_WARN, "decode", "invalid event", "reason=%s partition=%d offset=%lld error=\"%s\"",
           "invalid_json", 3, 17LL, "bad \"quote\" at 1:2");
    sr_log(SR_LOG_INFO, "x", "tab\there \x01 caf\xc3\xa9 \xff\xc3", "time=%d level=x", 5);
    sr_log(SR_LOG_INFO, "x", "tail", "just words here");
    sr_log(SR_LOG_ERROR, "x", long_msg, "topic=%s", "events");
    sr_log(SR_LOG_DEBUG, "x", "hidden at info", NULL);
    sr_log_always(SR_LOG_ERROR, "run", "no configuration", NULL);
}

/* log.format=json: one object per line, every field a string, nothing lost but what does not
 * fit; log.format=text keeps "ts level component msg k=v". */
static void test_log_formats(void **state)
{
    (void)state;
    memset(long_msg, 'm', sizeof long_msg - 1);
    sr_config_t *c = sr_config_new();
    const char *sets[] = {"log.format=json"};
    struct sr_config_sources src = {.sets = sets, .n_sets = 1, .apply_log_level = true};
    struct sr_error e;
    /* applied even when another key is wrong (here model.bundle is missing): the problems
     * that follow are then logged in the format asked for */
    assert_int_equal(sr_config_load(c, &src, NULL, NULL, &e), SR_ECONFIG);
    sr_config_destroy(c);
    assert_int_equal(sr_log_get_format(), SR_LOG_FORMAT_JSON);
    char *out = capture_stderr(log_some);
    json_t *j[5] = {0};
    char *line = out;
    for (int i = 0; i < 5; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        json_error_t je;
        j[i] = json_loads(line, 0, &je);
        if (!j[i])
            fprintf(stderr, "not JSON (%s): %.200s\n", je.text, line);
        assert_non_null(j[i]);
        line = nl + 1;
    }
    assert_string_equal(line, ""); /* the debug line is not there */
    const char *t = json_string_value(json_object_get(j[0], "time"));
    assert_non_null(t);
    assert_int_equal(strlen(t), 24); /* 2026-01-02T03:04:05.678Z */
    assert_true(t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    assert_string_equal(json_string_value(json_object_get(j[0], "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j[0], "component")), "decode");
    assert_string_equal(json_string_value(json_object_get(j[0], "message")), "invalid event");
    assert_string_equal(json_string_value(json_object_get(j[0], "partition")), "3");
    assert_string_equal(json_string_value(json_object_get(j[0], "offset")), "17");
    assert_string_equal(json_string_value(json_object_get(j[0], "error")), "bad \"quote\" at 1:2");
    /* Control bytes escaped, UTF-8 kept, other bytes U+FFFD; reserved names renamed. */
    assert_string_equal(json_string_value(json_object_get(j[1], "message")),
                        "tab\there \x01 caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j[1], "field_time")), "5");
    assert_string_equal(json_string_value(json_object_get(j[1], "field_level")), "x");
    assert_string_equal(json_string_value(json_object_get(j[2], "detail")), "just words here");
    /* Too long: cut short, still one whole object. */
    assert_true(strlen(json_string_value(json_object_get(j[3], "message"))) > 3000);
    assert_string_equal(json_string_value(json_object_get(j[4], "message")), "no configuration");
    for (int i = 0; i < 5; i++)
        json_decref(j[i]);
    free(out);

    sr_log_set_format(SR_LOG_FORMAT_TEXT);
    out = capture_stderr(log_some);
    assert_non_null(strstr(out, "Z warn decode invalid event reason=invalid_json partition=3 "
                                "offset=17 error=\"bad \"quote\" at 1:2\"\n"));
    assert_non_null(strstr(out, "Z error run no configuration\n"));
    free(out);
    sr_log_format_t f;
    assert_int_equal(sr_log_format_parse("yaml", &f), SR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_set_and_prefix),
        cmocka_unit_test(test_config_defaults_and_set),
        cmocka_unit_test(test_config_unknown_key_names_nearest),
        cmocka_unit_test(test_config_file_and_env),
        cmocka_unit_test(test_config_env_service_links_and_typos),
        cmocka_unit_test(test_config_properties_syntax),
        cmocka_unit_test(test_config_check_reports_every_problem),
        cmocka_unit_test(test_hostport_parse),
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_split_csv),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_hash_pinned),
        cmocka_unit_test(test_log_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
