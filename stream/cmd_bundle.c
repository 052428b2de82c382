/* cmd_bundle.c — `streamrec bundle <subcommand>`: tools for model bundles (DESIGN §3, §6).
 * `check BUNDLE` loads the bundle with every check and prints a summary (exit 0) or the first
 * problem (exit 1). Subcommands are listed once in the table below; build-index joins it there. */
#include "cli.h"
#include "sr_kernels.h"

#include <inttypes.h>
#include <string.h>

static const char *act_name(sr_act_t a)
{
    switch (a) {
    case SR_ACT_GELU_TANH: return "gelu_tanh";
    case SR_ACT_GELU_ERF: return "gelu";
    case SR_ACT_RELU: return "relu";
    default: return "-";
    }
}

static int bundle_check(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        printf("usage: streamrec bundle check BUNDLE\n"
               "  Loads BUNDLE (a directory with bundle.json, the safetensors weights and\n"
               "  items.tsv), runs every check and prints a summary; exits 1 with the first\n"
               "  problem when the bundle would be refused.\n");
        return 0;
    }
    if (argc != 2)
        return sr__cli_fail("bundle", "check takes exactly one BUNDLE directory (see "
                            "streamrec bundle --help)");
    sr_bundle_t *b;
    struct sr_error err;
    if (sr_bundle_load(argv[1], &b, &err) != SR_OK) {
        /* Messages name the file inside the bundle; add the bundle unless already there. */
        if (!strncmp(err.msg, argv[1], strlen(argv[1])))
            return sr__cli_fail("bundle", "%s", err.msg);
        return sr__cli_fail("bundle", "%s: %s", argv[1], err.msg);
    }
    const struct sr_bundle_info *in = sr_bundle_info(b);
    printf("bundle       %s: ok\n", in->dir);
    printf("version      %s\n", in->version);
    if (in->arch == SR_ARCH_GPT2)
        printf("arch         gpt2: d_model %d, n_layers %d, n_heads %d, d_ff %d, max_len %d, "
               "activation %s, layer_norm_eps %g\n",
               in->d_model, in->n_layers, in->n_heads, in->d_ff, in->max_len,
               act_name(in->activation), (double)in->layer_norm_eps);
    else
        printf("arch         gru4rec: hidden %d, n_layers %d, max_len %d\n", in->d_model,
               in->n_layers, in->max_len);
    printf("items        V %d (%d items at %d..%d), first_index %d, oov_index %d\n", in->n_items,
           in->n_items - in->first_index, in->first_index, in->n_items - 1, in->first_index,
           in->oov_index);
    printf("parameters   %" PRId64 "%s\n", in->n_params, in->has_output_bias ? " (with output.bias)" : "");
    printf("weights      %" PRIu64 " bytes, dtype %s, tensor_prefix \"%s\"\n", in->weights_bytes,
           in->weights_dtype, in->tensor_prefix);
    printf("retrieval    %s%s\n", in->index_path ? "index " : "exact",
           in->index_path ? in->index_path : "");
    sr_bundle_unref(b);
    return 0;
}

static const struct sr__command subcommands[] = {
    {"check", bundle_check, "load a bundle with every check and print its summary"},
};
#define N_SUB (sizeof subcommands / sizeof subcommands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: streamrec bundle <subcommand> BUNDLE [options]\n\nsubcommands:\n");
    for (size_t i = 0; i < N_SUB; i++)
        fprintf(f, "  %-12s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f, "\n`streamrec bundle <subcommand> --help` describes each.\n");
}

int sr__cmd_bundle(int argc, char **argv)
{
    if (argc < 2)
        return sr__cli_fail("bundle", "missing subcommand (see streamrec bundle --help)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_SUB; i++)
        if (!strcmp(argv[1], subcommands[i].name))
            return subcommands[i].main(argc - 1, argv + 1);
    return sr__cli_fail("bundle", "unknown subcommand '%s' (see streamrec bundle --help)", argv[1]);
}
