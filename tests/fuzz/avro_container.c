/* avro_container.c — fuzzes the Avro container-file reader: the input is written to a file
 * and read to the end. No crash, no leak; records are either events or refused with a reason;
 * a damaged block stops the reader with SR_EIO. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr_schemas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sr_arena_t *arena;
    static char path[64];
    if (!arena) {
        snprintf(path, sizeof path, "/tmp/sr_fuzz_container_%d.avro", (int)getpid());
        if (!(arena = sr_arena_new(1 << 16)))
            abort();
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    sr_avro_file_reader_t *r;
    struct sr_error err;
    if (sr_avro_file_reader_open(path, &r, &err) != SR_OK)
        return 0;
    for (int i = 0; i < 100000; i++) {
        sr_arena_reset(arena);
        struct sr_event ev;
        enum sr_event_invalid why;
        sr_err_t rc = sr_avro_file_reader_next(r, arena, &ev, &why, &err);
        if (rc == SR_ENOENT || rc == SR_EIO)
            break;
        if (rc == SR_EFORMAT && (why == SR_EVENT_INVALID_NONE || why >= SR_EVENT_INVALID__COUNT))
            abort();
    }
    sr_avro_file_reader_close(r);
    return 0;
}
