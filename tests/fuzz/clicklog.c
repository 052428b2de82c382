/* clicklog.c — libFuzzer harness of the YooChoose / Diginetica click-log reader (stream/tools/gen.c):
 * any bytes as a click-log file read to the end or the first bad row, each event validated
 * (what `gen --from-csv` then encodes), the same bytes prepared (clicklog_prep.c: filters and
 * a split; every prepared event valid), and the same bytes as an ISO-8601 time. */
#include "sr_gen.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t ms;
    (void)sr_gen_parse_iso8601((const char *)data, size, &ms);
    if (size == 0)
        return 0;
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0;
    sr_clicklog_t *c = NULL;
    struct sr_error err;
    if (sr_clicklog_open_fp(f, "fuzz", &c, &err) != SR_OK) {
        fclose(f);
        return 0;
    }
    struct sr_event ev;
    for (int n = 0; n < 100000 && sr_clicklog_next(c, &ev, &err) == SR_OK; n++)
        (void)sr_event_validate(&ev, NULL, NULL);
    sr_clicklog_close(c);
    /* The same bytes through the preprocessing, with a split and filters. */
    if (!(f = fmemopen((void *)data, size, "r")))
        return 0;
    if (sr_clicklog_open_fp(f, "fuzz", &c, &err) != SR_OK) {
        fclose(f);
        return 0;
    }
    sr_clicklog_set_t *s = NULL;
    struct sr_clicklog_prep_params p = {.min_item_support = 2, .min_session_len = 2,
                                        .split_days = 1};
    if (sr_clicklog_prepare(c, &p, &s, &err) == SR_OK) {
        for (int part = 0; part < 2; part++)
            for (int64_t i = 0; i < sr_clicklog_set_count(s, part); i++) {
                const char *cat;
                size_t cl;
                sr_clicklog_set_event(s, part, i, &ev, &cat, &cl);
                (void)sr_event_validate(&ev, NULL, NULL);
            }
        sr_clicklog_set_destroy(s);
    }
    sr_clicklog_close(c);
    return 0;
}
