/* cmd_bundle.c — `streamrec bundle <subcommand>`: tools for model bundles (DESIGN §3, §6).
 * `check BUNDLE` loads the bundle with every check and prints a summary (exit 0) or the first
 * problem (exit 1). `build-index BUNDLE --factory F` builds a FAISS index over the bundle's
 * items (kernels/retrieval.c), measures recall@10 against exact top-k on encoded random
 * sessions, then writes BUNDLE/items.faiss and bundle.json's retrieval.index, each through a
 * temporary file and rename(2), so a reader sees the old bundle or the new one, never a mix.
 * `add-items BUNDLE --items F [--embeddings E] --out NEW` writes a new version with items added
 * or updated (kernels/bundle_edit.c).
 * Subcommands are listed once in the table below. */
#include "cli.h"
#include "kernels_int.h"
#include "sr_kernels.h"
#ifdef SR_HAVE_FAISS
#include "sr_faiss.h"
#endif

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    printf("retrieval    %s%s%s%s%s\n", in->index_path ? "index " : "exact",
           in->index_path ? in->index_path : "", in->index_type ? " (" : "",
           in->index_type ? in->index_type : "", in->index_type ? ")" : "");
    sr_bundle_unref(b);
    return 0;
}

/* ---- build-index ------------------------------------------------------------------------- */

#ifdef SR_HAVE_FAISS
static bool parse_long(const char *s, long lo, long hi, long *out)
{
    int64_t v;
    if (!sr__cli_parse_i64(s, lo, hi, &v)) /* accepts 1e5 */
        return false;
    *out = (long)v;
    return true;
}

/* Sets retrieval.index, and the search parameter with the recall it measured, in bundle.json
 * (other fields and their order kept), atomically. */
static int record_index(const char *dir, const char *name, const struct sr_index_tune_result *t,
                        const struct sr_index_tune_params *tp)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/bundle.json", dir);
    snprintf(tmp, sizeof tmp, "%s/.bundle.json.tmp.%ld", dir, (long)getpid());
    json_error_t je;
    json_t *root = json_load_file(path, JSON_DECODE_ANY, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return sr__cli_fail("bundle", "%s: line %d: %s", path, je.line, je.text);
    }
    json_t *r = json_object();
    json_object_set_new(root, "retrieval", r); /* replaces an older index's parameters */
    json_object_set_new(r, "index", json_string(name));
    if (t->param)
        json_object_set_new(r, t->param, json_integer(t->value));
    json_t *rc = json_object();
    for (int i = 0; i < tp->n_ks; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", tp->ks[i]);
        json_object_set_new(rc, k, json_real((double)(int64_t)(t->recall[i] * 1e4 + 0.5) / 1e4));
    }
    json_object_set_new(r, "recall", rc);
    json_object_set_new(r, "target_recall", json_real(tp->target_recall));
    int bad = json_dump_file(root, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(root);
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return sr__cli_fail("bundle", "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}
#endif /* SR_HAVE_FAISS */

static int bundle_build_index(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        printf("usage: streamrec bundle build-index BUNDLE --factory F [--target-recall R] [-k K]\n"
               "                                   [--nprobe N | --ef-search N]\n"
               "                                   [--train-sample N] [--queries Q] [--seed S]\n"
               "  Builds a FAISS index (inner product) over the bundle's items first_index..V-1\n"
               "  (ids are bundle indices; with output.bias the vectors are [E_j, b_j] and queries\n"
               "  [q, 1], so the index ranks by the exact model score), writes BUNDLE/items.faiss\n"
               "  and records it in bundle.json (both atomically: temporary file + rename).\n"
               "  Then picks the search parameter (nprobe for IVF, ef_search for HNSW): the\n"
               "  smallest whose recall@K and recall@50 reach R, measured through the serving\n"
               "  path against exact top-k on Q sessions of random items encoded by the model,\n"
               "  and records it with the recall in bundle.json (retrieval.nprobe|ef_search,\n"
               "  retrieval.recall); run and replay use it unless retrieval.nprobe/ef_search are\n"
               "  set. --nprobe / --ef-search fix the value instead (still measured).\n"
               "  F: an index-factory string, e.g. \"HNSW32\", \"IVF1024,Flat\", \"IVF1024,PQ16\".\n"
               "  Defaults: --target-recall 0.95, -k 10 (recs.k), --train-sample 200000,\n"
               "  --queries 500.\n");
        return 0;
    }
#ifndef SR_HAVE_FAISS
    (void)argc, (void)argv;
    return sr__cli_fail("bundle", "build-index: this build has no FAISS (libfaiss.a was not "
                        "found at configure time; see deploy/install-deps.sh)");
#else
    const char *dir = NULL, *factory = NULL;
    long nprobe = 0, ef = 0, sample = 200000, nq = 500, seed = 42, k = 10;
    double target = 0.95;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *dst = !strcmp(a, "--nprobe") ? &nprobe : !strcmp(a, "--ef-search") ? &ef
                  : !strcmp(a, "--train-sample") ? &sample : !strcmp(a, "--queries") ? &nq
                  : !strcmp(a, "--seed") ? &seed : !strcmp(a, "-k") ? &k : NULL;
        if (dst || !strcmp(a, "--factory") || !strcmp(a, "--target-recall")) {
            if (!v)
                return sr__cli_fail("bundle", "build-index: %s needs a value", a);
            i++;
            char *end;
            if (!strcmp(a, "--target-recall")) {
                target = strtod(v, &end);
                if (end == v || *end || !(target > 0 && target <= 1))
                    return sr__cli_fail("bundle", "build-index: --target-recall: '%s' is not a "
                                        "number in (0, 1]", v);
            } else if (!dst)
                factory = v;
            else if (!parse_long(v, dst == &sample ? 0 : 1, dst == &seed ? (1L << 62) : (1L << 30), dst))
                return sr__cli_fail("bundle", "build-index: %s: '%s' is not a positive integer", a, v);
        } else if (a[0] == '-') {
            return sr__cli_fail("bundle", "build-index: unknown option '%s' (see --help)", a);
        } else if (!dir) {
            dir = a;
        } else {
            return sr__cli_fail("bundle", "build-index: unexpected argument '%s'", a);
        }
    }
    if (!dir || !factory)
        return sr__cli_fail("bundle", "build-index needs BUNDLE and --factory (see --help)");
    if (nprobe && ef)
        return sr__cli_fail("bundle", "build-index: --nprobe and --ef-search: give at most one");
    if (k > 1000)
        return sr__cli_fail("bundle", "build-index: -k %ld is out of range (1..1000)", k);
    struct sr_error err;
    sr_bundle_t *b = NULL;
    /* An existing retrieval.index is not read: building a new one is how a bad one is fixed. */
    if (sr__bundle_load_noindex(dir, &b, &err) != SR_OK)
        return sr__cli_fail("bundle", "%s", err.msg);
    const struct sr_bundle_info *in = sr_bundle_info(b);
    sr_faiss_t *ix = NULL;
    int rc = 1;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/items.faiss", in->dir);
    snprintf(tmp, sizeof tmp, "%s/.items.faiss.tmp.%ld", in->dir, (long)getpid());
    fprintf(stderr, "building %s over %d items x %d dims%s...\n", factory,
            in->n_items - in->first_index, in->d_model, in->has_output_bias ? " (+ bias column)" : "");
    uint64_t t0 = sr_now_ns();
    if (sr_bundle_index_build(b, factory, sample, (uint64_t)seed, &ix, &err) != SR_OK) {
        sr__cli_fail("bundle", "build-index %s: %s", factory, err.msg);
        goto done;
    }
    double build_s = (double)(sr_now_ns() - t0) * 1e-9;
    struct sr_index_tune_params tp = {.target_recall = target, .ks = {(int)k, 50},
                                      .n_ks = k == 50 ? 1 : 2, .queries = (int)nq,
                                      .seed = (uint64_t)seed, .fixed = (int)(nprobe ? nprobe : ef)};
    struct sr_index_tune_result tr;
    if (sr_bundle_index_tune(b, ix, &tp, &tr, &err) != SR_OK) {
        sr__cli_fail("bundle", "build-index: recall check: %s", err.msg);
        goto done;
    }
    if (sr_faiss_write(ix, tmp, &err) != SR_OK) {
        unlink(tmp);
        sr__cli_fail("bundle", "%s", err.msg);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        sr__cli_fail("bundle", "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    if (record_index(in->dir, "items.faiss", &tr, &tp))
        goto done;
    sr_bundle_t *check = NULL;
    if (sr_bundle_load(in->dir, &check, &err) != SR_OK) {
        sr__cli_fail("bundle", "the new index does not load: %s", err.msg);
        goto done;
    }
    sr_bundle_unref(check);
    printf("index        %s (%s, d %d, %lld vectors)\n", path, sr_faiss_describe(ix),
           sr_faiss_d(ix), (long long)sr_faiss_ntotal(ix));
    printf("build        %.2f s\n", build_s);
    if (tr.param)
        printf("%-12s %d (%s; %d values measured)\n", tr.param, tr.value,
               tp.fixed ? "as given" : tr.reached ? "the smallest reaching the target"
                                                  : "the largest tried: the target is NOT reached",
               tr.tried);
    for (int i = 0; i < tp.n_ks; i++)
        printf("recall@%-5d %.4f vs exact on %ld encoded random sessions (target %.2f)\n",
               tp.ks[i], tr.recall[i], nq, target);
    printf("queries/s    faiss %.0f, exact %.0f (batch of %ld, 1 process)\n", tr.faiss_qps,
           tr.exact_qps, nq);
    printf("bundle.json  retrieval.index = \"items.faiss\"%s%s%s\n", tr.param ? ", retrieval." : "",
           tr.param ? tr.param : "", tr.param ? " and its recall" : "");
    if (!tr.reached)
        fprintf(stderr, "streamrec bundle: build-index: recall target %.2f not reached with %s; "
                "the largest value tried is recorded (a finer index may reach it)\n", target,
                factory);
    rc = 0;
done:
    sr_faiss_destroy(ix);
    sr_bundle_unref(b);
    return rc;
#endif
}


/* ---- add-items --------------------------------------------------------------------------- */

static int bundle_add_items(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv)) {
        printf("usage: streamrec bundle add-items BUNDLE --items FILE [--embeddings FILE] --out NEW\n"
               "                                 [--version V] [--factory F]\n"
               "  Writes NEW, a copy of BUNDLE with the items of FILE added or updated, without\n"
               "  retraining (DESIGN 3.2). FILE is tab-separated: a header naming item_id and any\n"
               "  of the bundle's attribute columns (available, category, ...), one row per item.\n"
               "  A new item gets the next index; an existing one keeps its index and takes the\n"
               "  row's attributes (and embedding). --embeddings is a safetensors file holding\n"
               "  `embedding` [rows, d_model] (row r for the r-th item of FILE) and, when the\n"
               "  bundle has output.bias, `bias` [rows]; it may be left out when FILE only updates\n"
               "  existing items. A retrieval.index is rebuilt (factory F, default: the old\n"
               "  index's type). The version becomes V (default: the old one + \"+items1\", or\n"
               "  +itemsN incremented), so recommendations name the new bundle.\n"
               "  Refused with the file and line or row: a dimension mismatch, an item twice in\n"
               "  FILE, a non-finite value, an unknown column. NEW must not exist.\n");
        return 0;
    }
    const char *dir = NULL;
    struct sr_bundle_add_params p = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--items") ? &p.items
                         : !strcmp(a, "--embeddings") ? &p.embeddings
                         : !strcmp(a, "--out") ? &p.out : !strcmp(a, "--version") ? &p.version
                         : !strcmp(a, "--factory") ? &p.factory : NULL;
        if (dst) {
            if (i + 1 >= argc)
                return sr__cli_fail("bundle", "add-items: %s needs a value", a);
            *dst = argv[++i];
        } else if (a[0] == '-') {
            return sr__cli_fail("bundle", "add-items: unknown option '%s' (see --help)", a);
        } else if (!dir) {
            dir = a;
        } else {
            return sr__cli_fail("bundle", "add-items: unexpected argument '%s'", a);
        }
    }
    if (!dir || !p.items || !p.out)
        return sr__cli_fail("bundle", "add-items needs BUNDLE, --items and --out (see --help)");
    struct sr_bundle_add_result res;
    struct sr_error err;
    if (sr_bundle_add_items(dir, &p, &res, &err) != SR_OK)
        return sr__cli_fail("bundle", "add-items: %s", err.msg);
    printf("bundle       %s\n", p.out);
    printf("version      %s\n", res.version);
    printf("items        %d added, %d updated, %d in all\n", res.added, res.updated, res.n_items);
    if (res.index_rebuilt)
        printf("index        items.faiss rebuilt (%s)\n", res.factory);
    return 0;
}

static const struct sr__command subcommands[] = {
    {"check", bundle_check, "load a bundle with every check and print its summary"},
    {"build-index", bundle_build_index, "build a FAISS index over the items (retrieval.index)"},
    {"add-items", bundle_add_items, "add or update items without retraining (a new version)"},
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
