/* event_json.c — fuzzes the JSON event decoder. Whatever the bytes: no crash, no leak, a reason
 * for every refusal; a decoded event re-encodes and decodes to the same event. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sr_schemas.h"

static void same(const char *a, size_t an, const char *b, size_t bn)
{
    if ((a == NULL) != (b == NULL) || an != bn || (a && memcmp(a, b, an) != 0))
        abort();
}

/* Avro C packs generic values without alignment, so pointers inside them sit at unaligned
 * offsets; LeakSanitizer must scan those too or it reports live values as leaked. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "use_unaligned=1"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sr_event_decoder_t *d;
    static sr_event_encoder_t *e;
    static sr_arena_t *arena;
    if (!d) {
        struct sr_event_decoder_params p = {.format = SR_FORMAT_JSON};
        if (sr_event_decoder_new(&p, &d, NULL) || sr_event_encoder_new(SR_FORMAT_JSON, 0, &e, NULL) ||
            !(arena = sr_arena_new(1 << 16)))
            abort();
    }
    sr_arena_reset(arena);
    struct sr_event ev, back;
    enum sr_event_invalid why;
    struct sr_error err;
    sr_err_t rc = sr_event_decode(d, data, size, arena, &ev, &why, &err);
    if (rc != SR_OK) {
        if (rc != SR_EFORMAT || why == SR_EVENT_INVALID_NONE || why >= SR_EVENT_INVALID__COUNT)
            abort();
        return 0;
    }
    struct sr_buf b = {0};
    if (sr_event_encode(e, &ev, &b, NULL) != SR_OK ||
        sr_event_decode(d, b.data, b.len, arena, &back, &why, &err) != SR_OK)
        abort();
    same(ev.session_id, ev.session_id_len, back.session_id, back.session_id_len);
    same(ev.user_id, ev.user_id_len, back.user_id, back.user_id_len);
    same(ev.item_id, ev.item_id_len, back.item_id, back.item_id_len);
    same(ev.event_type, ev.event_type_len, back.event_type, back.event_type_len);
    if (ev.timestamp_ms != back.timestamp_ms)
        abort();
    sr_buf_free(&b);
    return 0;
}
