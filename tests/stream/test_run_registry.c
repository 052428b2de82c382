/* test_run_registry.c — `streamrec run` with a Schema Registry, end to end: the suite's broker
 * (kafka.cmake) and its real registry (Apicurio, tests/schemas/registry_fixture.sh). Events
 * are produced Confluent-framed with the id the registry gave their writer schema; the runtime
 * fetches it, registers its output schema under <output.topic>-value and frames every
 * recommendation with that id; events with an id the registry does not know go to the DLQ as
 * unknown_schema_id; the registry counters are on /metrics. Skips without a registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kafka_test_util.h"
#include "sr_schemas.h"

#define N_UNKNOWN 5

static void registry_url(char *url, size_t n)
{
    FILE *f = fopen(SR_REGISTRY_ENV_FILE, "r");
    char line[600];
    url[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "schema.registry.url=", 20)) {
            snprintf(url, n, "%s", line + 20);
            url[strcspn(url, "\r\n")] = 0;
        }
    if (f)
        fclose(f);
}

/* The fixture's valid events re-encoded Confluent-framed with schema id `id`, in order and
 * with their keys, then N_UNKNOWN events framed with an id nobody registered. */
static void framed_fixture(const struct fixture *in, int32_t id, int32_t unknown,
                           struct fixture *out)
{
    struct sr_event_decoder_params p = {.format = SR_FORMAT_JSON};
    sr_event_decoder_t *dec;
    sr_event_encoder_t *enc, *enc_unknown;
    assert_int_equal(sr_event_decoder_new(&p, &dec, NULL), SR_OK);
    assert_int_equal(sr_event_encoder_new(SR_FORMAT_AVRO_CONFLUENT, id, &enc, NULL), SR_OK);
    assert_int_equal(sr_event_encoder_new(SR_FORMAT_AVRO_CONFLUENT, unknown, &enc_unknown, NULL),
                     SR_OK);
    sr_arena_t *arena = sr_arena_new(1 << 16);
    memset(out, 0, sizeof *out);
    out->line = calloc((size_t)in->n + N_UNKNOWN, sizeof *out->line);
    out->len = calloc((size_t)in->n + N_UNKNOWN, sizeof *out->len);
    out->key = calloc((size_t)in->n + N_UNKNOWN, sizeof *out->key);
    struct sr_buf b = {0};
    struct sr_event ev;
    for (int i = 0; i < in->n + N_UNKNOWN; i++) {
        sr_buf_reset(&b);
        sr_arena_reset(arena);
        if (i < in->n) {
            if (sr_event_decode(dec, in->line[i], in->len[i], arena, &ev, NULL, NULL) != SR_OK)
                continue; /* the fixture's invalid lines */
            assert_int_equal(sr_event_encode(enc, &ev, &b, NULL), SR_OK);
        } else {
            ev = (struct sr_event){.session_id = "s-unknown", .session_id_len = 9,
                                   .item_id = "i1", .item_id_len = 2, .event_type = "view",
                                   .event_type_len = 4, .timestamp_ms = 1700000000000};
            assert_int_equal(sr_event_encode(enc_unknown, &ev, &b, NULL), SR_OK);
        }
        out->line[out->n] = malloc(b.len);
        memcpy(out->line[out->n], b.data, b.len);
        out->len[out->n] = b.len;
        out->key[out->n] = strndup(ev.session_id, ev.session_id_len);
        out->n++;
    }
    sr_buf_free(&b);
    sr_arena_destroy(arena);
    sr_event_decoder_destroy(dec);
    sr_event_encoder_destroy(enc);
    sr_event_encoder_destroy(enc_unknown);
}

static void test_run_with_registry(void **state)
{
    struct env *e = *state;
    char url[600];
    registry_url(url, sizeof url);
    if (!*url) {
        printf("# no Schema Registry (%s absent): skipping\n", SR_REGISTRY_ENV_FILE);
        skip();
    }
    topics(e, 2, CLUSTER_ANY);

    /* the producers' writer schema: ours, made unique so that the registry gives a new id */
    struct sr_registry_params rp;
    sr_registry_params_default(&rp);
    rp.url = url;
    sr_registry_t *r;
    struct sr_error err = {0};
    assert_int_equal(sr_registry_new(&rp, &r, &err), SR_OK);
    char schema[4096], subject[160];
    snprintf(schema, sizeof schema, "{\"doc\": \"%s\", %s", e->t_events,
             strchr(sr_schema_user_event_json(), '{') + 1);
    snprintf(subject, sizeof subject, "%s-value", e->t_events);
    int32_t id = -1;
    if (sr_registry_register(r, subject, schema, &id, &err) != SR_OK)
        fail_msg("%s", err.msg);
    sr_registry_destroy(r);

    struct fixture fx;
    framed_fixture(&e->fx, id, 1999999999, &fx);
    assert_int_equal(fx.n, e->fx.n - N_INVALID + N_UNKNOWN);
    assert_int_equal(produce_fixture(e->c.bootstraps, e->t_events, &fx, 0, fx.n, 0), fx.n);
    fixture_free(&fx);

    int port = free_port();
    char extra[1024], cfg[300];
    snprintf(extra, sizeof extra, "metrics.listen=127.0.0.1:%d\ninput.format=avro-confluent\n"
             "output.format=avro-confluent\nschema.registry.url=%s\n", port, url);
    write_config(e, "a", extra, cfg, sizeof cfg);
    pid_t pid = start_run(e, cfg, "a");

    struct msgs ms = {0};
    consume_topic(e->c.bootstraps, e->t_recs, 2, N_VALID_RECS, 90, 1000, &ms);
    if (ms.n != N_VALID_RECS)
        log_tail(e, "a");
    assert_int_equal(ms.n, N_VALID_RECS);

    /* the id the registry holds for <output.topic>-value (registering again finds it) */
    sr_config_t *c = sr_config_new();
    assert_int_equal(sr_config_set(c, "schema.registry.url", url, NULL), SR_OK);
    int32_t out_id = -1;
    assert_int_equal(sr_output_schema_id(c, e->t_recs, &out_id, &err), SR_OK);
    sr_config_destroy(c);
    for (int i = 0; i < ms.n; i++) {
        const unsigned char *v = (const unsigned char *)ms.m[i].value;
        assert_true(ms.m[i].value_len > 5);
        assert_int_equal(v[0], 0);
        int32_t got = (int32_t)((uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 |
                                (uint32_t)v[3] << 8 | v[4]);
        assert_int_equal(got, out_id);
    }
    msgs_free(&ms);

    struct msgs dl = {0};
    consume_topic(e->c.bootstraps, e->t_dlq, 1, N_UNKNOWN, 30, 300, &dl);
    assert_int_equal(dl.n, N_UNKNOWN);
    for (int i = 0; i < dl.n; i++)
        assert_string_equal(dl.m[i].hdr[0], "unknown_schema_id");
    msgs_free(&dl);

    static char body[1 << 16];
    int status = -1;
    for (int i = 0; i < 200; i++) {
        status = http_get(port, "/metrics", body, sizeof body);
        if (status == 200 && strstr(body, "streamrec_dlq_published_total 5"))
            break;
        sleep_ms(50);
    }
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "streamrec_events_invalid_total{reason=\"unknown_schema_id\"} 5"));
    assert_non_null(strstr(body, "streamrec_schema_registry_up 1"));
    assert_non_null(strstr(body, "streamrec_schema_registry_unknown_ids_total 1"));
    assert_non_null(strstr(body, "streamrec_schema_registry_requests_total"));
    assert_int_equal(stop_run(e, pid, "a", 30), 0);
    char log[300];
    snprintf(log, sizeof log, "%s/a.log", e->dir);
    assert_int_equal(grep_count(log, "output schema registered"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_run_with_registry, setup, teardown),
    };
    return sr_run_tests(tests);
}
