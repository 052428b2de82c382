/* safetensors.c (fuzz) — any bytes as a safetensors file: the header parser, the F32 view and
 * F16/BF16 widening of every entry, then the tensor-set checks for a tiny gpt2 and gru4rec
 * (d_model 2, one layer). Must never crash or read outside the input. */
#include "bundle_int.h"

#include <stdlib.h>
#include <string.h>

static volatile float sink;

static void check_arch(const struct sr__st_dir *d, sr_arch_t arch)
{
    struct sr__bundle_conf c = {0};
    c.arch = arch;
    c.prefix = (char *)"";
    c.weights = (char *)"fuzz.safetensors";
    c.d_model = 2;
    c.n_layers = 1;
    c.n_heads = 1;
    c.d_ff = 2;
    c.max_len = 2;
    c.first_index = 2;
    c.oov_index = 1;
    struct sr_bundle b;
    memset(&b, 0, sizeof b);
    struct sr_error err;
    sr__bundle_load_tensors(&b, &c, d, &err);
    sr__bundle_free_tensors(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sr__st_dir d;
    struct sr_error err;
    if (sr__st_parse(data, size, "fuzz.safetensors", &d, &err) != SR_OK)
        return 0;
    for (int i = 0; i < d.n; i++) {
        struct sr__tensor t;
        if (sr__st_materialize(&d.e[i], "fuzz.safetensors", &t, &err) != SR_OK)
            continue;
        float sum = 0;
        for (int64_t k = 0; k < d.e[i].count; k++)
            sum += t.data[k]; /* reads every widened value */
        sink = sum;
        sr__tensor_free(&t);
    }
    check_arch(&d, SR_ARCH_GPT2);
    check_arch(&d, SR_ARCH_GRU4REC);
    sr__st_dir_free(&d);
    return 0;
}
