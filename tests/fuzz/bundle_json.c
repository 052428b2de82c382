/* bundle_json.c (fuzz) — any bytes as bundle.json: jansson plus every field check. Must never
 * crash, leak or read outside the input; a parse that succeeds holds sane values. */
#include "bundle_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sr__bundle_conf c;
    struct sr_error err;
    if (sr__bundle_conf_parse((const char *)data, size, "bundle.json", &c, &err) != SR_OK)
        return 0;
    if (c.d_model < 1 || c.n_layers < 1 || c.max_len < 1 || c.oov_index >= c.first_index ||
        !c.version || !c.weights || !c.prefix || !c.vocab ||
        (c.arch == SR_ARCH_GPT2 && (c.n_heads < 1 || c.d_model % c.n_heads || c.d_ff < 1)))
        __builtin_trap();
    sr__bundle_conf_free(&c);
    return 0;
}
