/* event_confluent.c — fuzzes the Confluent-framed decoder against a registry directory made at
 * start-up (id 1: our schema, id 2: an evolved one, id 3: incompatible, id 4: not JSON). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr_schemas.h"

static void put(const char *dir, int id, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%d.avsc", dir, id);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

/* Avro C packs generic values without alignment, so pointers inside them sit at unaligned
 * offsets; LeakSanitizer must scan those too or it reports live values as leaked. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "use_unaligned=1"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sr_event_decoder_t *d;
    static sr_arena_t *arena;
    static char dir[64];
    if (!d) {
        snprintf(dir, sizeof dir, "/tmp/sr_fuzz_registry_%d", (int)getpid());
        char cmd[128];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        if (system(cmd) != 0)
            abort();
        put(dir, 1, sr_schema_user_event_json());
        put(dir, 2, "{\"type\": \"record\", \"name\": \"E\", \"fields\": ["
                    "{\"name\": \"event_type\", \"type\": \"string\"},"
                    "{\"name\": \"x\", \"type\": [\"null\", {\"type\": \"array\", \"items\": \"long\"}]},"
                    "{\"name\": \"item_id\", \"type\": \"string\"},"
                    "{\"name\": \"session_id\", \"type\": \"string\"},"
                    "{\"name\": \"timestamp_ms\", \"type\": \"long\"}]}");
        put(dir, 3, "{\"type\": \"record\", \"name\": \"E\", \"fields\": []}");
        put(dir, 4, "not json");
        struct sr_event_decoder_params p = {.format = SR_FORMAT_AVRO_CONFLUENT, .registry_dir = dir};
        if (sr_event_decoder_new(&p, &d, NULL) || !(arena = sr_arena_new(1 << 16)))
            abort();
    }
    sr_arena_reset(arena);
    struct sr_event ev;
    enum sr_event_invalid why;
    struct sr_error err;
    sr_err_t rc = sr_event_decode(d, data, size, arena, &ev, &why, &err);
    if (rc != SR_OK && (rc != SR_EFORMAT || why == SR_EVENT_INVALID_NONE ||
                        why >= SR_EVENT_INVALID__COUNT))
        abort();
    if (rc == SR_OK && (ev.session_id_len == 0 || ev.timestamp_ms < 0))
        abort();
    return 0;
}
