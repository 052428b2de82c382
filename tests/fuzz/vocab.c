/* vocab.c (fuzz) — items.tsv parsing. Byte 0 picks first_index (1..3), byte 1 the number of
 * items (1..64, V = first_index + items); the rest is the file. Must never crash or read
 * outside the input; a vocabulary that parses must round-trip every index through its id
 * and its 64-bit key. */
#include "bundle_int.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int32_t first = 1 + data[0] % 3;
    int32_t V = first + 1 + data[1] % 64;
    struct sr_bundle b;
    memset(&b, 0, sizeof b);
    b.info.first_index = first;
    b.info.oov_index = first - 1;
    b.info.n_items = V;
    struct sr_error err;
    if (sr__vocab_parse(&b, (const char *)data + 2, size - 2, "items.tsv", V, first, &err) == SR_OK) {
        for (int32_t i = first; i < V; i++) {
            size_t len;
            const char *id = sr_bundle_item_id(&b, i, &len);
            if (!id || sr_bundle_item_index(&b, id, len) != i ||
                sr_bundle_item_index_by_key(&b, sr_hash64(id, len)) != i)
                __builtin_trap();
            for (int a = 0; a < b.n_attrs; a++)
                (void)strlen(sr_bundle_attr(&b, a, i));
        }
        if (sr_bundle_item_id(&b, first - 1, NULL))
            __builtin_trap();
    }
    sr__vocab_free(&b);
    return 0;
}
