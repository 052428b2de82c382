/* clicklog.c — libFuzzer harness of the YooChoose / Diginetica click-log reader (stream/tools/gen.c):
 * any bytes as a click-log file read to the end or the first bad row, each event validated
 * (what `gen --from-csv` then encodes), and the same bytes as an ISO-8601 time. */
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
    return 0;
}
