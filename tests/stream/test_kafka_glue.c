/* test_kafka_glue.c — stream/runtime/kafka.c without a broker: the one wording of offsets in
 * log lines, and a broker failure that librdkafka reports twice (FAIL log line, then the
 * error_cb) logged once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sr_stream.h"

static void test_offset_wording(void **state)
{
    (void)state;
    char b[SR_KAFKA_OFFSET_STR];
    assert_string_equal(sr_kafka_offset_str(0, b), "0");
    assert_string_equal(sr_kafka_offset_str(12345678901LL, b), "12345678901");
    assert_string_equal(sr_kafka_offset_str(RD_KAFKA_OFFSET_BEGINNING, b), "beginning");
    assert_string_equal(sr_kafka_offset_str(RD_KAFKA_OFFSET_END, b), "end");
    assert_string_equal(sr_kafka_offset_str(RD_KAFKA_OFFSET_STORED, b), "stored");
    assert_string_equal(sr_kafka_offset_str(RD_KAFKA_OFFSET_INVALID, b), "(none)");
    assert_string_equal(sr_kafka_offset_str(RD_KAFKA_OFFSET_TAIL(5), b), "end-5");
    assert_string_equal(sr_kafka_offset_str(-7, b), "(logical -7)");
}

/* Counts the lines fn writes to stderr that contain needle. */
static int count_lines(void (*fn)(rd_kafka_t *, rd_kafka_t *), rd_kafka_t *a, rd_kafka_t *b,
                       const char *needle)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    assert_true(tmp && saved >= 0 && dup2(fileno(tmp), 2) == 2);
    fn(a, b);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    rewind(tmp);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, tmp))
        n += strstr(line, needle) != NULL;
    fclose(tmp);
    return n;
}

#define REFUSED "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused " \
                "(after 0ms in state CONNECT)"

static void fail_then_error(rd_kafka_t *a, rd_kafka_t *b)
{
    /* as librdkafka does it: the FAIL line (with the thread prefix), then the error */
    sr_kafka_log_cb(a, 3, "FAIL", "[thrd:127.0.0.1:1/bootstrap]: " REFUSED);
    sr_kafka_error_log(a, RD_KAFKA_RESP_ERR__TRANSPORT, REFUSED);
    /* another client's error of the same text was not logged by a FAIL line of its own */
    sr_kafka_error_log(b, RD_KAFKA_RESP_ERR__TRANSPORT, REFUSED);
    /* a second occurrence on the first client: both paths again, one line again */
    sr_kafka_log_cb(a, 3, "FAIL", "[thrd:127.0.0.1:1/bootstrap]: " REFUSED);
    sr_kafka_error_log(a, RD_KAFKA_RESP_ERR__TRANSPORT, REFUSED);
    /* an error with no FAIL line before it */
    sr_kafka_error_log(a, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "1/1 brokers are down");
}

static void quiet(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

static rd_kafka_t *offline_client(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet);
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    return rk;
}

static void test_broker_failure_logged_once(void **state)
{
    (void)state;
    rd_kafka_t *a = offline_client(), *b = offline_client();
    assert_int_equal(count_lines(fail_then_error, a, b, "Connection refused"), 3);
    assert_int_equal(count_lines(fail_then_error, a, b, "brokers are down"), 1);
    rd_kafka_destroy(a);
    rd_kafka_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offset_wording),
        cmocka_unit_test(test_broker_failure_logged_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
