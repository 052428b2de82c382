/* bundle.c — the model bundle (DESIGN §3): bundle.json through jansson, the safetensors weights
 * (mmap, safetensors.c), the vocabulary (items.tsv, vocab.c) and every cross-check between
 * them: the exact tensor set and shapes of the architecture, finite values, V = rows of the
 * item embedding table. The first problem found is reported, naming the file and what is
 * wrong (JSON path, tensor with expected vs actual shape, vocab line).
 * Owns: the mmap, the widened tensor copies, the vocabulary and the strings of its info. A
 * bundle is immutable after load and reference counted (atomic), so a hot reload can swap it
 * while a batch on another thread still holds the old one. */
#define _GNU_SOURCE
#include "bundle_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SR__BUNDLE_FORMAT "streamrec-bundle/1"

/* ---- bundle.json ---------------------------------------------------------------------- */

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* Context for field errors: "<fname>: <path>.<key>: ..." */
struct jctx {
    const char *fname;
    struct sr_error *err;
};

static sr_err_t field_err(const struct jctx *j, const char *path, const char *key, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static sr_err_t field_err(const struct jctx *j, const char *path, const char *key, const char *fmt,
                          ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sr_error_set(j->err, SR_EFORMAT, "%s: %s%s%s: %s", j->fname, path, *path ? "." : "", key,
                        what);
}

/* *out = obj[key] checked for type (JSON_OBJECT, JSON_STRING, JSON_INTEGER or JSON_REAL for
 * "number"); *out = NULL when absent and not required. */
static sr_err_t get_field(const struct jctx *j, json_t *obj, const char *path, const char *key,
                          json_type type, bool required, json_t **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    const char *want = type == JSON_OBJECT ? "object" : type == JSON_STRING ? "string"
                       : type == JSON_INTEGER ? "integer" : "number";
    if (!v) {
        if (required)
            return field_err(j, path, key, "missing (expected %s)", want);
        return SR_OK;
    }
    bool ok = type == JSON_REAL ? json_is_number(v) : json_typeof(v) == type;
    if (!ok)
        return field_err(j, path, key, "expected %s, got %s", want, json_type_name(v));
    *out = v;
    return SR_OK;
}

static sr_err_t get_int(const struct jctx *j, json_t *obj, const char *path, const char *key,
                        bool required, int64_t def, int64_t min, int64_t max, int64_t *out)
{
    json_t *v;
    sr_err_t rc = get_field(j, obj, path, key, JSON_INTEGER, required, &v);
    if (rc != SR_OK)
        return rc;
    *out = v ? (int64_t)json_integer_value(v) : def;
    if (*out < min)
        return field_err(j, path, key, "%" PRId64 " is below the minimum %" PRId64, *out, min);
    if (*out > max)
        return field_err(j, path, key, "%" PRId64 " is above the maximum %" PRId64, *out, max);
    return SR_OK;
}

static sr_err_t get_str(const struct jctx *j, json_t *obj, const char *path, const char *key,
                        bool required, bool nonempty, const char *def, char **out)
{
    json_t *v;
    sr_err_t rc = get_field(j, obj, path, key, JSON_STRING, required, &v);
    if (rc != SR_OK)
        return rc;
    const char *s = v ? json_string_value(v) : def;
    if (v && nonempty && !*s)
        return field_err(j, path, key, "must not be empty");
    if (v && strlen(s) != json_string_length(v))
        return field_err(j, path, key, "contains a NUL character");
    if (!s) {
        *out = NULL;
        return SR_OK;
    }
    *out = strdup(s);
    if (!*out)
        return sr_error_set(j->err, SR_ENOMEM, "%s: out of memory", j->fname);
    return SR_OK;
}

void sr__bundle_conf_free(struct sr__bundle_conf *c)
{
    if (!c)
        return;
    free(c->version);
    free(c->weights);
    free(c->prefix);
    free(c->vocab);
    free(c->index);
    memset(c, 0, sizeof *c);
}

#define TRY(expr)                                                                              \
    do {                                                                                       \
        if ((rc = (expr)) != SR_OK)                                                            \
            goto out;                                                                          \
    } while (0)

/* Keys the contract does not name are ignored, so training may add its own metadata. */
sr_err_t sr__bundle_conf_parse(const char *text, size_t len, const char *fname,
                               struct sr__bundle_conf *c, struct sr_error *err)
{
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return sr_error_set(err, SR_EFORMAT, "%s: invalid JSON at line %d, column %d: %s", fname,
                            je.line, je.column, je.text);
    struct jctx j = {fname, err};
    sr_err_t rc = SR_OK;
    json_t *v, *model, *items, *retr;
    int64_t x;
    char *s = NULL;
    if (!json_is_object(root)) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: top level: expected object, got %s", fname,
                          json_type_name(root));
        goto out;
    }
    TRY(get_field(&j, root, "", "format", JSON_STRING, true, &v));
    if (strcmp(json_string_value(v), SR__BUNDLE_FORMAT)) {
        rc = field_err(&j, "", "format", "expected \"%s\", got \"%.64s\"", SR__BUNDLE_FORMAT,
                       json_string_value(v));
        goto out;
    }
    TRY(get_str(&j, root, "", "version", true, false, NULL, &c->version));

    TRY(get_field(&j, root, "", "model", JSON_OBJECT, true, &model));
    TRY(get_str(&j, model, "model", "arch", true, false, NULL, &s));
    if (!strcmp(s, "gpt2")) {
        c->arch = SR_ARCH_GPT2;
    } else if (!strcmp(s, "gru4rec")) {
        c->arch = SR_ARCH_GRU4REC;
    } else {
        rc = field_err(&j, "model", "arch", "unknown architecture '%.64s' (expected gpt2 or gru4rec)",
                       s);
        goto out;
    }
    free(s);
    s = NULL;
    TRY(get_str(&j, model, "model", "weights", true, true, NULL, &c->weights));
    TRY(get_str(&j, model, "model", "tensor_prefix", false, false, "", &c->prefix));
    TRY(get_int(&j, model, "model", "d_model", true, 0, 1, 1 << 16, &x));
    c->d_model = (int)x;
    TRY(get_int(&j, model, "model", "n_layers", true, 0, 1, 1024, &x));
    c->n_layers = (int)x;
    TRY(get_int(&j, model, "model", "max_len", true, 0, 1, 1 << 20, &x));
    c->max_len = (int)x;
    c->layer_norm_eps = 1e-5f;
    if (c->arch == SR_ARCH_GPT2) {
        TRY(get_int(&j, model, "model", "n_heads", true, 0, 1, c->d_model, &x));
        c->n_heads = (int)x;
        if (c->d_model % c->n_heads) {
            rc = field_err(&j, "model", "n_heads", "%d does not divide model.d_model %d",
                           c->n_heads, c->d_model);
            goto out;
        }
        TRY(get_int(&j, model, "model", "d_ff", true, 0, 1, 1 << 20, &x));
        c->d_ff = (int)x;
        TRY(get_str(&j, model, "model", "activation", false, false, "gelu_tanh", &s));
        if (!strcmp(s, "gelu_tanh")) {
            c->activation = SR_ACT_GELU_TANH;
        } else if (!strcmp(s, "gelu")) {
            c->activation = SR_ACT_GELU_ERF;
        } else if (!strcmp(s, "relu")) {
            c->activation = SR_ACT_RELU;
        } else {
            rc = field_err(&j, "model", "activation",
                           "unknown activation '%.64s' (expected gelu_tanh, gelu or relu)", s);
            goto out;
        }
        free(s);
        s = NULL;
        TRY(get_field(&j, model, "model", "layer_norm_eps", JSON_REAL, false, &v));
        if (v) {
            double e = json_number_value(v);
            if (!(e > 0 && e < 1)) {
                rc = field_err(&j, "model", "layer_norm_eps", "%g is not in (0, 1)", e);
                goto out;
            }
            c->layer_norm_eps = (float)e;
        }
    } else {
        c->activation = SR_ACT_NONE; /* gru4rec ignores n_heads, d_ff, activation */
    }

    TRY(get_field(&j, root, "", "items", JSON_OBJECT, true, &items));
    TRY(get_str(&j, items, "items", "vocab", true, true, NULL, &c->vocab));
    TRY(get_int(&j, items, "items", "first_index", false, 2, 1, INT32_MAX - 1, &x));
    c->first_index = (int32_t)x;
    TRY(get_int(&j, items, "items", "oov_index", false, 1, 0, INT32_MAX - 1, &x));
    c->oov_index = (int32_t)x;
    if (c->oov_index >= c->first_index) {
        rc = field_err(&j, "items", "oov_index", "%d must be below items.first_index %d",
                       c->oov_index, c->first_index);
        goto out;
    }

    TRY(get_field(&j, root, "", "retrieval", JSON_OBJECT, false, &retr));
    if (retr) {
        TRY(get_str(&j, retr, "retrieval", "index", false, true, NULL, &c->index));
        TRY(get_int(&j, retr, "retrieval", "nprobe", false, 0, 0, 1 << 20, &c->nprobe));
        TRY(get_int(&j, retr, "retrieval", "ef_search", false, 0, 0, 1 << 20, &c->ef_search));
    }
out:
    free(s);
    json_decref(root);
    if (rc != SR_OK)
        sr__bundle_conf_free(c);
    return rc;
}

/* ---- the expected tensor set ------------------------------------------------------------ */

struct spec {
    char name[64];   /* logical name, without tensor_prefix */
    int ndim;
    int64_t shape[2];
    bool min_rows;   /* shape[0] is a lower bound (wpe: at least max_len positions) */
    bool optional;
};

/* Fills specs (room for 4 + 12 * n_layers + 2 entries); the item embedding is first, with
 * shape[0] = V. Returns the count. */
static int build_specs(const struct sr__bundle_conf *c, int64_t V, struct spec *sp)
{
    int n = 0;
    int64_t d = c->d_model;
#define SPEC1(nm, a) (snprintf(sp[n].name, sizeof sp[n].name, "%s", nm), sp[n].ndim = 1, \
                      sp[n].shape[0] = (a), n++)
#define SPEC2(nm, a, b) (snprintf(sp[n].name, sizeof sp[n].name, "%s", nm), sp[n].ndim = 2, \
                         sp[n].shape[0] = (a), sp[n].shape[1] = (b), n++)
    char nm[64];
    memset(sp, 0, sizeof *sp * (size_t)(5 + 12 * c->n_layers));
    if (c->arch == SR_ARCH_GPT2) {
        SPEC2("wte.weight", V, d);
        SPEC2("wpe.weight", c->max_len, d);
        sp[n - 1].min_rows = true;
        static const struct {
            const char *sfx;
            int kind; /* 0: [d]  1: [d,3d] 2: [3d] 3: [d,d] 4: [d,ff] 5: [ff] 6: [ff,d] */
        } L[] = {{"ln_1.weight", 0},     {"ln_1.bias", 0},      {"attn.c_attn.weight", 1},
                 {"attn.c_attn.bias", 2}, {"attn.c_proj.weight", 3}, {"attn.c_proj.bias", 0},
                 {"ln_2.weight", 0},     {"ln_2.bias", 0},      {"mlp.c_fc.weight", 4},
                 {"mlp.c_fc.bias", 5},   {"mlp.c_proj.weight", 6}, {"mlp.c_proj.bias", 0}};
        int64_t ff = c->d_ff;
        for (int i = 0; i < c->n_layers; i++)
            for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
                snprintf(nm, sizeof nm, "h.%d.%s", i, L[k].sfx);
                switch (L[k].kind) {
                case 0: SPEC1(nm, d); break;
                case 1: SPEC2(nm, d, 3 * d); break;
                case 2: SPEC1(nm, 3 * d); break;
                case 3: SPEC2(nm, d, d); break;
                case 4: SPEC2(nm, d, ff); break;
                case 5: SPEC1(nm, ff); break;
                default: SPEC2(nm, ff, d); break;
                }
            }
        SPEC1("ln_f.weight", d);
        SPEC1("ln_f.bias", d);
    } else {
        SPEC2("item_embedding.weight", V, d);
        for (int k = 0; k < c->n_layers; k++) {
            snprintf(nm, sizeof nm, "gru.weight_ih_l%d", k);
            SPEC2(nm, 3 * d, d); /* layer 0's input is the H-wide item embedding */
            snprintf(nm, sizeof nm, "gru.weight_hh_l%d", k);
            SPEC2(nm, 3 * d, d);
            snprintf(nm, sizeof nm, "gru.bias_ih_l%d", k);
            SPEC1(nm, 3 * d);
            snprintf(nm, sizeof nm, "gru.bias_hh_l%d", k);
            SPEC1(nm, 3 * d);
        }
    }
    SPEC1("output.bias", V);
    sp[n - 1].optional = true;
#undef SPEC1
#undef SPEC2
    return n;
}

static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape, bool min_rows)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s%" PRId64, i ? "," : "",
                              i == 0 && min_rows ? ">=" : "", shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

/* GPT-2 checkpoints from older transformers versions carry the causal-mask buffers; they are
 * not parameters and are ignored. */
static bool ignorable(const char *logical)
{
    int layer, used = 0;
    if (sscanf(logical, "h.%d.attn.bias%n", &layer, &used) == 1 && !logical[used])
        return true;
    used = 0;
    if (sscanf(logical, "h.%d.attn.masked_bias%n", &layer, &used) == 1 && !logical[used])
        return true;
    return false;
}

static char *join_path(const char *dir, const char *rel)
{
    char *p = NULL;
    if (rel[0] == '/')
        return strdup(rel);
    if (asprintf(&p, "%s/%s", dir, rel) < 0)
        return NULL;
    return p;
}

sr_err_t sr__bundle_load_tensors(struct sr_bundle *b, const struct sr__bundle_conf *c,
                                 const struct sr__st_dir *dir, struct sr_error *err)
{
    const char *fn = c->weights;
    size_t plen = strlen(c->prefix);
    char sa[128], sb[128];
    sr_err_t rc = SR_OK;
    char *full = malloc(plen + 64);
    struct spec *sp = malloc(sizeof *sp * (size_t)(5 + 12 * c->n_layers));
    int *found = NULL;
    if (!full || !sp)
        goto oom;
    memcpy(full, c->prefix, plen);

    /* The item embedding gives V. */
    const char *emb = c->arch == SR_ARCH_GPT2 ? "wte.weight" : "item_embedding.weight";
    snprintf(full + plen, 64, "%s", emb);
    int ei = sr__st_find(dir, full);
    if (ei < 0) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: missing tensor '%s'", fn, full);
        goto out;
    }
    const struct sr__st_entry *E = &dir->e[ei];
    if (E->ndim != 2 || E->shape[1] != c->d_model) {
        int64_t want[2] = {E->ndim >= 1 ? E->shape[0] : 0, c->d_model};
        rc = sr_error_set(err, SR_EFORMAT, "%s: tensor '%s': expected shape %s, got %s", fn, full,
                          shape_str(sa, sizeof sa, 2, want, false),
                          shape_str(sb, sizeof sb, E->ndim, E->shape, false));
        goto out;
    }
    int64_t V = E->shape[0];
    if (V <= c->first_index || V > (1 << 30)) {
        rc = sr_error_set(err, SR_EFORMAT,
                          "%s: tensor '%s': %" PRId64 " rows; the catalogue needs more than "
                          "items.first_index %d and at most %d",
                          fn, full, V, c->first_index, 1 << 30);
        goto out;
    }
    int ns = build_specs(c, V, sp);
    found = malloc(sizeof *found * (size_t)ns);
    if (!found)
        goto oom;
    for (int i = 0; i < ns; i++) {
        snprintf(full + plen, 64, "%s", sp[i].name);
        found[i] = sr__st_find(dir, full);
        if (found[i] < 0) {
            if (sp[i].optional)
                continue;
            rc = sr_error_set(err, SR_EFORMAT, "%s: missing tensor '%s'", fn, full);
            goto out;
        }
        const struct sr__st_entry *e = &dir->e[found[i]];
        bool ok = e->ndim == sp[i].ndim;
        for (int k = 0; ok && k < sp[i].ndim; k++)
            ok = sp[i].min_rows && k == 0 ? e->shape[k] >= sp[i].shape[k]
                                          : e->shape[k] == sp[i].shape[k];
        if (!ok) {
            rc = sr_error_set(err, SR_EFORMAT, "%s: tensor '%s': expected shape %s%s, got %s", fn,
                              full, shape_str(sa, sizeof sa, sp[i].ndim, sp[i].shape, sp[i].min_rows),
                              sp[i].min_rows ? " (at least model.max_len rows)" : "",
                              shape_str(sb, sizeof sb, e->ndim, e->shape, false));
            goto out;
        }
    }
    /* Nothing else under the prefix: a stray tensor means the config and checkpoint disagree. */
    for (int t = 0; t < dir->n; t++) {
        const char *nm = dir->e[t].name;
        if (strncmp(nm, c->prefix, plen) || ignorable(nm + plen))
            continue;
        bool known = false;
        for (int i = 0; i < ns && !known; i++)
            known = found[i] == t;
        if (!known) {
            rc = sr_error_set(err, SR_EFORMAT,
                              "%s: unexpected tensor '%s' (not part of %s with model.n_layers %d)",
                              fn, nm, c->arch == SR_ARCH_GPT2 ? "gpt2" : "gru4rec", c->n_layers);
            goto out;
        }
    }
    b->tensors = calloc((size_t)ns, sizeof *b->tensors);
    if (!b->tensors)
        goto oom;
    int dt = -1;
    b->info.n_params = 0;
    for (int i = 0; i < ns; i++) {
        if (found[i] < 0)
            continue;
        const struct sr__st_entry *e = &dir->e[found[i]];
        rc = sr__st_materialize(e, fn, &b->tensors[b->n_tensors], err);
        if (rc != SR_OK)
            goto out;
        b->n_tensors++;
        b->info.n_params += e->count;
        dt = dt < 0 ? (int)e->dtype : dt == (int)e->dtype ? dt : 99;
        if (!strcmp(sp[i].name, "output.bias"))
            b->info.has_output_bias = true;
    }
    b->info.n_items = (int32_t)V;
    b->info.weights_dtype = dt == 99 ? "mixed" : sr__dtype_name((sr__dtype_t)dt);
    goto out;
oom:
    rc = sr_error_set(err, SR_ENOMEM, "%s: out of memory", fn);
out:
    free(full);
    free(sp);
    free(found);
    return rc;
}

/* Maps path read-only; an empty file maps to (NULL, 0). */
static sr_err_t map_file(const char *path, const char *fname, void **map, size_t *len,
                         struct sr_error *err)
{
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sr_error_set(err, errno == ENOENT ? SR_ENOENT : SR_EIO, "%s: cannot open %s: %s",
                            fname, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sr_error_set(err, SR_EIO, "%s: %s is not a regular file", fname, path);
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return sr_error_set(err, SR_EIO, "%s: cannot map %s: %s", fname, path, strerror(e));
        }
        *map = m;
        *len = (size_t)st.st_size;
    }
    close(fd);
    return SR_OK;
}

static sr_err_t read_text(const char *dir, const char *rel, char **text, size_t *len,
                          struct sr_error *err)
{
    char *path = join_path(dir, rel);
    if (!path)
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory", rel);
    struct stat st;
    sr_err_t rc;
    if (stat(path, &st) != 0)
        rc = sr_error_set(err, errno == ENOENT ? SR_ENOENT : SR_EIO, "%s: cannot open %s: %s", rel,
                          path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = sr_error_set(err, SR_EIO, "%s: %s is not a regular file", rel, path);
    else if ((rc = sr_file_read_all(path, text, len, err)) != SR_OK)
        sr_error_prefix(err, "%s", rel);
    free(path);
    return rc;
}

void sr__bundle_free_tensors(struct sr_bundle *b)
{
    for (int i = 0; i < b->n_tensors; i++)
        sr__tensor_free(&b->tensors[i]);
    free(b->tensors);
    b->tensors = NULL;
    b->n_tensors = 0;
}

static void bundle_free(struct sr_bundle *b)
{
    if (!b)
        return;
    sr__bundle_free_tensors(b);
    if (b->map)
        munmap(b->map, b->map_len);
    sr__vocab_free(b);
    sr__bundle_index_free(b);
    free(b->dir);
    free(b->version);
    free(b->prefix);
    free(b->index_path);
    free(b);
}

static sr_err_t bundle_load(const char *dir, bool with_index, sr_bundle_t **out,
                            struct sr_error *err);

sr_err_t sr_bundle_load(const char *dir, sr_bundle_t **out, struct sr_error *err)
{
    return bundle_load(dir, true, out, err);
}

sr_err_t sr__bundle_load_noindex(const char *dir, sr_bundle_t **out, struct sr_error *err)
{
    return bundle_load(dir, false, out, err);
}

static sr_err_t bundle_load(const char *dir, bool with_index, sr_bundle_t **out,
                            struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "sr_bundle_load: out is NULL");
    *out = NULL;
    if (!dir || !*dir)
        return sr_error_set(err, SR_EINVAL, "bundle directory not given");
    struct sr__bundle_conf c;
    struct sr__st_dir sd = {0};
    char *text = NULL, *wpath = NULL;
    size_t len = 0;
    sr_err_t rc;
    struct sr_bundle *b = calloc(1, sizeof *b);
    memset(&c, 0, sizeof c);
    if (!b)
        return sr_error_set(err, SR_ENOMEM, "bundle: out of memory");
    b->refs = 1;
    b->dir = realpath(dir, NULL);
    struct stat st;
    if (!b->dir || stat(b->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = sr_error_set(err, !b->dir && errno == ENOENT ? SR_ENOENT : SR_EIO,
                          "%s: not a bundle directory%s%s", dir, b->dir ? "" : ": ",
                          b->dir ? "" : strerror(errno));
        goto fail;
    }
    if ((rc = read_text(b->dir, "bundle.json", &text, &len, err)) != SR_OK)
        goto fail;
    if ((rc = sr__bundle_conf_parse(text, len, "bundle.json", &c, err)) != SR_OK)
        goto fail;
    free(text);
    text = NULL;

    wpath = join_path(b->dir, c.weights);
    if (!wpath) {
        rc = sr_error_set(err, SR_ENOMEM, "bundle: out of memory");
        goto fail;
    }
    if ((rc = map_file(wpath, c.weights, &b->map, &b->map_len, err)) != SR_OK)
        goto fail;
    if ((rc = sr__st_parse(b->map, b->map_len, c.weights, &sd, err)) != SR_OK)
        goto fail;
    if ((rc = sr__bundle_load_tensors(b, &c, &sd, err)) != SR_OK)
        goto fail;

    b->info.first_index = c.first_index;
    b->info.oov_index = c.oov_index;
    if ((rc = read_text(b->dir, c.vocab, &text, &len, err)) != SR_OK)
        goto fail;
    if ((rc = sr__vocab_parse(b, text, len, c.vocab, b->info.n_items, c.first_index, err)) != SR_OK)
        goto fail;
    free(text);
    text = NULL;
    if (c.index && !(b->index_path = join_path(b->dir, c.index))) {
        rc = sr_error_set(err, SR_ENOMEM, "bundle: out of memory");
        goto fail;
    }

    b->version = c.version;
    b->prefix = c.prefix;
    c.version = c.prefix = NULL;
    struct sr_bundle_info *in = &b->info;
    in->dir = b->dir;
    in->version = b->version;
    in->arch = c.arch;
    in->arch_name = c.arch == SR_ARCH_GPT2 ? "gpt2" : "gru4rec";
    in->d_model = c.d_model;
    in->n_layers = c.n_layers;
    in->n_heads = c.n_heads;
    in->d_ff = c.d_ff;
    in->max_len = c.max_len;
    in->activation = c.activation;
    in->layer_norm_eps = c.layer_norm_eps;
    in->weights_bytes = b->map_len;
    in->tensor_prefix = b->prefix;
    in->index_path = b->index_path;
    in->index_nprobe = (int)c.nprobe;
    in->index_ef_search = (int)c.ef_search;
    if (with_index && b->index_path && (rc = sr__bundle_index_load(b, err)) != SR_OK)
        goto fail; /* a bad index refuses the whole bundle */
    sr__st_dir_free(&sd);
    sr__bundle_conf_free(&c);
    free(wpath);
    *out = b;
    return SR_OK;
fail:
    free(text);
    free(wpath);
    sr__st_dir_free(&sd);
    sr__bundle_conf_free(&c);
    bundle_free(b);
    return rc;
}

sr_bundle_t *sr_bundle_ref(sr_bundle_t *b)
{
    if (b)
        __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void sr_bundle_unref(sr_bundle_t *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
        bundle_free(b);
}

const struct sr_bundle_info *sr_bundle_info(const sr_bundle_t *b) { return b ? &b->info : NULL; }

const float *sr_bundle_tensor(const sr_bundle_t *b, const char *name, int *ndim, int64_t shape[4])
{
    if (!b || !name)
        return NULL;
    size_t plen = strlen(b->prefix);
    for (int i = 0; i < b->n_tensors; i++) {
        const struct sr__tensor *t = &b->tensors[i];
        if (strncmp(t->name, b->prefix, plen) || strcmp(t->name + plen, name))
            continue;
        if (ndim)
            *ndim = t->ndim;
        if (shape)
            memcpy(shape, t->shape, sizeof t->shape);
        return t->data;
    }
    return NULL;
}
