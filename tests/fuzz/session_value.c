/* session_value.c — fuzzes the stored session value decoder (sr_session_decode: the bytes in
 * RocksDB and in changelog records). Whatever the bytes: no crash, no over-read, SR_EFORMAT
 * with a message for every refusal; a decoded value re-encodes to a value that decodes to the
 * same session, byte-identical to the input when the input used the minimal varint (a
 * version-1 input re-encodes as version 2, with type codes 0). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sr_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sr_arena_t *arena;
    if (!arena && !(arena = sr_arena_new(1 << 16)))
        abort();
    sr_arena_reset(arena);
    struct sr_session s, back;
    struct sr_error err = {0};
    sr_err_t rc = sr_session_decode(data, size, arena, &s, &err);
    if (rc != SR_OK) {
        if ((rc != SR_EFORMAT && rc != SR_ENOMEM) || !err.msg[0])
            abort();
        return 0;
    }
    if (!s.found || s.expired || (s.len && !s.items))
        abort();
    size_t need = sr_session_value_size(&s), got = 0;
    uint8_t *buf = malloc(need);
    /* A version-1 value re-encodes as version 2: 4 bytes of type code more per item. */
    size_t want = size + (data[0] == 1 ? 4u * s.len : 0);
    if (!buf || sr_session_encode(&s, buf, need, &got, &err) != SR_OK || got != need ||
        got > want)
        abort();
    if (got == want && data[0] != 1 && memcmp(buf, data, size) != 0)
        abort();
    if (sr_session_decode(buf, got, arena, &back, &err) != SR_OK || back.len != s.len ||
        back.last_ts != s.last_ts ||
        (s.len && memcmp(back.items, s.items, sizeof(uint64_t) * s.len) != 0) ||
        (s.len && !back.types) ||
        (s.len && s.types && memcmp(back.types, s.types, sizeof(uint32_t) * s.len) != 0) ||
        back.aux_len != s.aux_len || (s.aux_len && memcmp(back.aux, s.aux, s.aux_len) != 0))
        abort();
    free(buf);
    return 0;
}
