/* test_registry.c — the Schema Registry client and the avro-confluent decoder against a real
 * registry: Apicurio Registry's Confluent-compatible API, started by the CTest fixture
 * (registry_fixture.sh writes its URL to SR_REGISTRY_ENV_FILE). Without one, every test skips
 * and says why. Basic auth and a registry that is down at start-up go through
 * registry_proxy.py, an auth-checking front that listens only after a delay. One thread. */
#include "sr_schemas.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

static char url[600];
static sr_arena_t *arena;
static char nonce[64];

static int group_setup(void **state)
{
    (void)state;
    FILE *f = fopen(SR_REGISTRY_ENV_FILE, "r");
    char line[600];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "schema.registry.url=", 20)) {
            snprintf(url, sizeof url, "%s", line + 20);
            url[strcspn(url, "\r\n")] = 0;
        }
    if (f)
        fclose(f);
    if (!*url)
        printf("# no Schema Registry (%s absent: registry_fixture.sh did not start one, "
               "see its output): skipping\n", SR_REGISTRY_ENV_FILE);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(nonce, sizeof nonce, "%d-%lld", (int)getpid(), (long long)ts.tv_nsec);
    arena = sr_arena_new(1 << 16);
    return arena ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    sr_arena_destroy(arena);
    return 0;
}

#define NEED_REGISTRY()                                                                      \
    do {                                                                                     \
        if (!*url)                                                                           \
            skip();                                                                          \
    } while (0)

static struct sr_registry_params params(const char *u)
{
    struct sr_registry_params p;
    sr_registry_params_default(&p);
    p.url = u;
    p.backoff_ms = 50;
    p.backoff_max_ms = 400;
    p.retry_timeout_ms = 30000;
    return p;
}

/* Our UserEvent schema made unique with a doc string (a registry dedups equal content). */
static void unique_schema(char *out, size_t n, const char *tag)
{
    const char *s = sr_schema_user_event_json();
    const char *brace = strchr(s, '{');
    snprintf(out, n, "{\"doc\": \"%s-%s\", %s", tag, nonce, brace + 1);
}

static int32_t register_schema(sr_registry_t *r, const char *subject, const char *schema)
{
    int32_t id = -1;
    struct sr_error err = {0};
    sr_err_t rc = sr_registry_register(r, subject, schema, &id, &err);
    if (rc != SR_OK)
        fail_msg("register %s: %s", subject, err.msg);
    assert_true(id >= 0);
    return id;
}

static const struct sr_event ev1 = {
    .session_id = "s1", .session_id_len = 2, .item_id = "i42", .item_id_len = 3,
    .event_type = "view", .event_type_len = 4, .timestamp_ms = 1700000000000,
};

static void framed(int32_t id, struct sr_buf *b)
{
    sr_event_encoder_t *e;
    assert_int_equal(sr_event_encoder_new(SR_FORMAT_AVRO_CONFLUENT, id, &e, NULL), SR_OK);
    sr_buf_reset(b);
    assert_int_equal(sr_event_encode(e, &ev1, b, NULL), SR_OK);
    sr_event_encoder_destroy(e);
}

static enum sr_event_invalid decode_why(sr_event_decoder_t *d, const struct sr_buf *b)
{
    struct sr_event ev;
    enum sr_event_invalid why = SR_EVENT_INVALID_NONE;
    struct sr_error err = {0};
    sr_err_t rc = sr_event_decode(d, b->data, b->len, arena, &ev, &why, &err);
    if (rc == SR_OK)
        assert_int_equal(ev.item_id_len, 3);
    else
        assert_true(strlen(err.msg) > 0);
    return why;
}

static uint64_t requests(void)
{
    struct sr_registry_stats s;
    sr_registry_stats_get(&s);
    return s.requests;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Fetch by id, the cache (no request the second time), an unknown id refused as a DLQ reason
 * and cached negatively, then decoded once the id exists and the negative entry expired. */
static void test_fetch_cache_unknown(void **state)
{
    (void)state;
    NEED_REGISTRY();
    struct sr_registry_params p = params(url);
    /* long enough that registering schema b (a JVM round trip, 0.7 s seen on a loaded 2-core
     * machine) ends well inside it, so "still cached" below is not a race */
    p.negative_cache_ms = 3000;
    sr_registry_t *r;
    struct sr_error err = {0};
    assert_int_equal(sr_registry_new(&p, &r, &err), SR_OK);
    char schema[4096], subject[128];
    unique_schema(schema, sizeof schema, "a");
    snprintf(subject, sizeof subject, "events-%s-value", nonce);
    int32_t a = register_schema(r, subject, schema);

    struct sr_event_decoder_params dp = {.format = SR_FORMAT_AVRO_CONFLUENT, .registry = &p};
    sr_event_decoder_t *d = NULL;
    if (sr_event_decoder_new(&dp, &d, &err) != SR_OK)
        fail_msg("decoder: %s", err.msg);
    struct sr_buf b = {0};
    framed(a, &b);
    uint64_t n0 = requests();
    assert_int_equal(decode_why(d, &b), SR_EVENT_INVALID_NONE);
    assert_int_equal(requests(), n0 + 1);
    assert_int_equal(decode_why(d, &b), SR_EVENT_INVALID_NONE);
    assert_int_equal(requests(), n0 + 1); /* cached */

    /* the next id does not exist yet (registries allocate ids in sequence) */
    framed(a + 1, &b);
    struct sr_registry_stats s0, s1;
    sr_registry_stats_get(&s0);
    assert_int_equal(decode_why(d, &b), SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID);
    assert_int_equal(decode_why(d, &b), SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID);
    sr_registry_stats_get(&s1);
    assert_int_equal(s1.requests, s0.requests + 1); /* negative entry cached */
    assert_int_equal(s1.unknown_ids, s0.unknown_ids + 1);
    assert_string_equal(sr_event_invalid_name(SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID),
                        "unknown_schema_id");

    unique_schema(schema, sizeof schema, "b");
    int32_t bid = register_schema(r, subject, schema);
    assert_int_equal(bid, a + 1);
    assert_int_equal(decode_why(d, &b), SR_EVENT_INVALID_UNKNOWN_SCHEMA_ID); /* still cached */
    sleep_ms(3050);
    assert_int_equal(decode_why(d, &b), SR_EVENT_INVALID_NONE); /* asked again: found */
    sr_event_decoder_destroy(d);
    sr_registry_destroy(r);
    sr_buf_free(&b);
}

/* The output schema registered under <topic>-value: the same id every time, and the registry
 * serves our Recommendation schema under it. */
static void test_register_output(void **state)
{
    (void)state;
    NEED_REGISTRY();
    sr_config_t *cfg = sr_config_new();
    struct sr_error err = {0};
    char topic[128];
    snprintf(topic, sizeof topic, "recs-%s", nonce);
    assert_int_equal(sr_config_set(cfg, "schema.registry.url", url, &err), SR_OK);
    assert_int_equal(sr_config_set(cfg, "output.avro.schema_id", "77", &err), SR_OK);
    int32_t id = -1, id2 = -2;
    if (sr_output_schema_id(cfg, topic, &id, &err) != SR_OK)
        fail_msg("%s", err.msg);
    assert_int_not_equal(id, 77);
    assert_int_equal(sr_output_schema_id(cfg, topic, &id2, &err), SR_OK);
    assert_int_equal(id, id2);

    struct sr_registry_params p = params(url);
    sr_registry_t *r;
    assert_int_equal(sr_registry_new(&p, &r, &err), SR_OK);
    char *text = NULL;
    assert_int_equal(sr_registry_get_schema(r, (uint32_t)id, &text, &err), SR_OK);
    assert_non_null(strstr(text, "Recommendation"));
    free(text);
    /* an id nobody registered */
    assert_int_equal(sr_registry_get_schema(r, 2000000000u, &text, &err), SR_ENOENT);
    assert_non_null(strstr(err.msg, "2000000000"));
    sr_registry_destroy(r);

    /* without a registry the fixed id is used */
    assert_int_equal(sr_config_set(cfg, "schema.registry.url", "", &err), SR_OK);
    assert_int_equal(sr_output_schema_id(cfg, topic, &id, &err), SR_OK);
    assert_int_equal(id, 77);
    sr_config_destroy(cfg);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &n), 0);
    close(s);
    return ntohs(a.sin_port);
}

static pid_t start_proxy(int port, const char *user_info, int delay_ms)
{
    char sport[16], sdelay[16];
    snprintf(sport, sizeof sport, "%d", port);
    snprintf(sdelay, sizeof sdelay, "%d", delay_ms);
    char *argv[] = {"python3", SR_SOURCE_DIR "/tests/schemas/registry_proxy.py", sport, url,
                    (char *)user_info, sdelay, NULL};
    pid_t pid;
    assert_int_equal(posix_spawnp(&pid, "python3", NULL, NULL, argv, environ), 0);
    return pid;
}

static void stop_proxy(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* Down at start-up: the decoder's probe retries with backoff until the registry answers;
 * every request carries the basic auth header (the front refuses any other); wrong
 * credentials are a configuration error; a registry that never answers gives up. */
static void test_down_at_start_and_auth(void **state)
{
    (void)state;
    NEED_REGISTRY();
    int port = free_port();
    char purl[128];
    snprintf(purl, sizeof purl, "http://127.0.0.1:%d", port);
    pid_t pid = start_proxy(port, "alice:s3cret", 1500);
    struct sr_registry_params p = params(purl);
    p.user_info = "alice:s3cret";
    struct sr_registry_stats s0, s1;
    sr_registry_stats_get(&s0);
    struct sr_event_decoder_params dp = {.format = SR_FORMAT_AVRO_CONFLUENT, .registry = &p};
    sr_event_decoder_t *d = NULL;
    struct sr_error err = {0};
    sr_err_t rc = sr_event_decoder_new(&dp, &d, &err);
    if (rc != SR_OK) {
        stop_proxy(pid);
        fail_msg("decoder through the delayed front: %s", err.msg);
    }
    sr_registry_stats_get(&s1);
    assert_true(s1.retries > s0.retries);     /* it was down, then retried */
    assert_true(s1.failures > s0.failures);
    assert_int_equal(s1.up, 1);

    /* a fetch through the authenticating front */
    sr_registry_t *r;
    assert_int_equal(sr_registry_new(&p, &r, &err), SR_OK);
    char schema[4096], subject[128];
    unique_schema(schema, sizeof schema, "auth");
    snprintf(subject, sizeof subject, "auth-%s-value", nonce);
    int32_t id = register_schema(r, subject, schema);
    struct sr_buf b = {0};
    framed(id, &b);
    assert_int_equal(decode_why(d, &b), SR_EVENT_INVALID_NONE);
    sr_event_decoder_destroy(d);
    sr_registry_destroy(r);
    sr_buf_free(&b);

    /* wrong password: refused at once, as a configuration error */
    p.user_info = "alice:wrong";
    d = NULL;
    assert_int_equal(sr_event_decoder_new(&dp, &d, &err), SR_ECONFIG);
    assert_non_null(strstr(err.msg, "401"));
    assert_null(d);
    stop_proxy(pid);

    /* nothing listens: retried for retry_timeout_ms, then a configuration error */
    p.user_info = NULL;
    p.retry_timeout_ms = 300;
    assert_int_equal(sr_event_decoder_new(&dp, &d, &err), SR_ECONFIG);
    assert_non_null(strstr(err.msg, "gave up"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_cache_unknown),
        cmocka_unit_test(test_register_output),
        cmocka_unit_test(test_down_at_start_and_auth),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
