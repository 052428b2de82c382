/* bundle_edit.c — catalogue updates without retraining (`streamrec bundle add-items`, DESIGN
 * §3.2): a copy of a bundle with items appended (their embedding rows, and bias, from a content
 * model) or updated in place (attributes, embedding), written as a new version.
 * Owns nothing past the call: it reads the source bundle (fully checked), the items file and the
 * embeddings file, writes OUT through a temporary directory renamed at the end (a reader sees no
 * OUT or a whole one), and checks that OUT loads. Indices of existing items never change, so
 * sessions and the reserved indices keep their meaning. Single-threaded, offline. */
#define _GNU_SOURCE
#include "bundle_int.h"

#ifdef SR_HAVE_FAISS
#include "sr_faiss.h"
#endif

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_COLS 256

/* The parsed items file: row r has id[r] and, for each bundle attribute column a, val[a][r]
 * (NULL where the file has no such column). */
struct add_rows {
    char *text;
    int32_t n, cap;
    char **id;
    int32_t *line;
    int32_t *index;      /* bundle index: existing or newly assigned */
    int ncol;
    int col_attr[MAX_COLS]; /* file column -> bundle attribute column, -1 for item_id */
    char **val;          /* [n * ncol], file order */
};

static void rows_free(struct add_rows *r)
{
    free(r->text);
    free(r->id);
    free(r->line);
    free(r->index);
    free(r->val);
    memset(r, 0, sizeof *r);
}

static int split_tabs(char *line, char **f, int max)
{
    int n = 0;
    for (char *p = line;;) {
        if (n < max)
            f[n] = p;
        n++;
        char *t = strchr(p, '\t');
        if (!t)
            return n;
        *t = '\0';
        p = t + 1;
    }
}

/* Reads the items file: a header naming `item_id` and attribute columns the bundle has; one row
 * per item. Refuses an `index` column (indices are assigned here), an unknown column, a row of
 * the wrong width, an empty id and an id twice in the file, naming the file and line. */
static sr_err_t read_rows(const sr_bundle_t *b, const char *path, struct add_rows *r,
                          struct sr_error *err)
{
    size_t len;
    sr_err_t rc = sr_file_read_all(path, &r->text, &len, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "--items %s", path);
    char *s = r->text, *end = r->text + len, *f[MAX_COLS];
    if (memchr(s, '\0', len))
        return sr_error_set(err, SR_EFORMAT, "%s: NUL byte", path);
    if (len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3))
        s += 3;
    int id_col = -1;
    uint64_t *keys = NULL; /* open addressing over the file's ids, for duplicates */
    int32_t *kslot = NULL;
    uint32_t kmask = 0;
    for (int lineno = 1; s < end || lineno == 1; lineno++) {
        char *nl = memchr(s, '\n', (size_t)(end - s)), *le = nl ? nl : end, *line = s;
        s = nl ? nl + 1 : end;
        if (le > line && le[-1] == '\r')
            le--;
        *le = '\0';
        if (lineno == 1) {
            r->ncol = split_tabs(line, f, MAX_COLS);
            if (r->ncol > MAX_COLS)
                return sr_error_set(err, SR_EFORMAT, "%s: line 1: %d columns (at most %d)", path,
                                    r->ncol, MAX_COLS);
            for (int c = 0; c < r->ncol; c++) {
                if (!strcmp(f[c], "item_id")) {
                    if (id_col >= 0)
                        return sr_error_set(err, SR_EFORMAT, "%s: line 1: duplicate column "
                                            "'item_id'", path);
                    id_col = c;
                    r->col_attr[c] = -1;
                    continue;
                }
                if (!strcmp(f[c], "index"))
                    return sr_error_set(err, SR_EFORMAT, "%s: line 1: an 'index' column is not "
                                        "allowed: add-items assigns indices (new items after the "
                                        "last, existing items keep theirs)", path);
                r->col_attr[c] = sr_bundle_attr_column(b, f[c]);
                if (r->col_attr[c] < 0)
                    return sr_error_set(err, SR_EFORMAT, "%s: line 1: column '%.64s' is not an "
                                        "attribute of the bundle's items.tsv", path, f[c]);
                for (int d = 0; d < c; d++)
                    if (r->col_attr[d] == r->col_attr[c])
                        return sr_error_set(err, SR_EFORMAT, "%s: line 1: duplicate column "
                                            "'%.64s'", path, f[c]);
            }
            if (id_col < 0)
                return sr_error_set(err, SR_EFORMAT, "%s: line 1: header must name the column "
                                    "'item_id' (tab-separated)", path);
            continue;
        }
        if (!*line)
            continue;
        int got = split_tabs(line, f, MAX_COLS);
        if (got != r->ncol) {
            rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: %d tab-separated columns, the "
                              "header has %d", path, lineno, got, r->ncol);
            goto out;
        }
        if (!*f[id_col]) {
            rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: empty item_id", path, lineno);
            goto out;
        }
        if (r->n == r->cap) {
            int32_t cap = r->cap ? 2 * r->cap : 64;
            char **id = realloc(r->id, sizeof *id * (size_t)cap);
            if (id)
                r->id = id;
            int32_t *ln = realloc(r->line, sizeof *ln * (size_t)cap);
            if (ln)
                r->line = ln;
            char **val = realloc(r->val, sizeof *val * (size_t)cap * (size_t)r->ncol);
            if (val)
                r->val = val;
            uint32_t kc = 16;
            while (kc < 2u * (uint32_t)cap)
                kc <<= 1;
            uint64_t *nk = malloc(sizeof *nk * kc);
            int32_t *ns = malloc(sizeof *ns * kc);
            if (!id || !ln || !val || !nk || !ns) {
                free(nk), free(ns);
                rc = sr_error_set(err, SR_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            for (uint32_t i = 0; i < kc; i++)
                ns[i] = -1;
            for (int32_t i = 0; i < r->n; i++) { /* rehash */
                uint64_t k = sr_hash64_str(r->id[i]);
                uint32_t sl = (uint32_t)k & (kc - 1);
                while (ns[sl] >= 0)
                    sl = (sl + 1) & (kc - 1);
                nk[sl] = k;
                ns[sl] = i;
            }
            free(keys), free(kslot);
            keys = nk, kslot = ns, kmask = kc - 1;
            r->cap = cap;
        }
        const char *id = f[id_col];
        uint64_t k = sr_hash64_str(id);
        uint32_t sl = (uint32_t)k & kmask;
        for (; kslot[sl] >= 0; sl = (sl + 1) & kmask)
            if (keys[sl] == k && !strcmp(r->id[kslot[sl]], id)) {
                rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: duplicate item_id '%.64s' (first "
                                  "on line %d)", path, lineno, id, r->line[kslot[sl]]);
                goto out;
            }
        keys[sl] = k;
        kslot[sl] = r->n;
        r->id[r->n] = f[id_col];
        r->line[r->n] = lineno;
        for (int c = 0; c < r->ncol; c++)
            r->val[(size_t)r->n * (size_t)r->ncol + (size_t)c] = f[c];
        r->n++;
    }
    if (!r->n)
        rc = sr_error_set(err, SR_EFORMAT, "%s: no items (a header and at least one row)", path);
out:
    free(keys);
    free(kslot);
    return rc;
}

/* The embeddings file: `embedding` [n, d_model] F32/F16/BF16 and, exactly when the bundle has
 * output.bias, `bias` [n]; every value finite. *emb and *bias are owned F32 copies. */
static sr_err_t read_embeddings(const sr_bundle_t *b, const char *path, int32_t n, float **emb,
                                float **bias, struct sr_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    struct sr__st_dir sd = {0};
    struct sr__tensor te = {0}, tb = {0};
    const int d = b->info.d_model;
    sr_err_t rc = sr_file_read_all(path, &buf, &len, err);
    if (rc != SR_OK) {
        sr_error_prefix(err, "--embeddings %s", path);
        goto out;
    }
    if ((rc = sr__st_parse(buf, len, path, &sd, err)) != SR_OK)
        goto out;
    int ei = sr__st_find(&sd, "embedding"), bi = sr__st_find(&sd, "bias");
    if (ei < 0) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: missing tensor 'embedding' [rows, %d]", path, d);
        goto out;
    }
    const struct sr__st_entry *E = &sd.e[ei];
    if (E->ndim != 2 || E->shape[1] != d) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: tensor 'embedding': dimension mismatch: %" PRId64
                          " columns, the bundle's d_model is %d", path,
                          E->ndim == 2 ? E->shape[1] : (int64_t)-1, d);
        goto out;
    }
    if (E->shape[0] != n) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: tensor 'embedding': %" PRId64 " rows, the items "
                          "file has %d (one row per item, in file order)", path, E->shape[0], n);
        goto out;
    }
    if (b->info.has_output_bias && bi < 0) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: missing tensor 'bias' [%d]: the bundle has "
                          "output.bias", path, n);
        goto out;
    }
    if (!b->info.has_output_bias && bi >= 0) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: tensor 'bias' given, but the bundle has no "
                          "output.bias", path);
        goto out;
    }
    if (bi >= 0 && (sd.e[bi].ndim != 1 || sd.e[bi].shape[0] != n)) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: tensor 'bias': expected shape [%d]", path, n);
        goto out;
    }
    if ((rc = sr__st_materialize(E, path, &te, err)) != SR_OK ||
        (bi >= 0 && (rc = sr__st_materialize(&sd.e[bi], path, &tb, err)) != SR_OK))
        goto out;
    *emb = malloc(sizeof(float) * (size_t)n * (size_t)d);
    *bias = bi >= 0 ? malloc(sizeof(float) * (size_t)n) : NULL;
    if (!*emb || (bi >= 0 && !*bias)) {
        free(*emb), free(*bias);
        *emb = *bias = NULL;
        rc = sr_error_set(err, SR_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(*emb, te.data, sizeof(float) * (size_t)n * (size_t)d);
    if (bi >= 0)
        memcpy(*bias, tb.data, sizeof(float) * (size_t)n);
out:
    sr__tensor_free(&te);
    sr__tensor_free(&tb);
    sr__st_dir_free(&sd);
    free(buf);
    return rc;
}

static size_t dtype_size(sr__dtype_t dt) { return dt == SR__DT_F32 ? 4 : 2; }

/* Writes a safetensors file: every entry of src as stored, except the item table and
 * output.bias, written as F32 with V rows. Larger dtypes first so every F32 tensor's data is
 * 4-byte aligned (the loader then maps it without a copy); data offsets are contiguous. */
static sr_err_t write_weights(const char *path, const struct sr__st_dir *src, const char *emb_name,
                              const char *bias_name, const float *emb, const float *bias,
                              int64_t V, int d, struct sr_error *err)
{
    json_t *h = json_object();
    FILE *f = NULL;
    char *hdr = NULL;
    sr_err_t rc = SR_OK;
    uint64_t off = 0;
    if (!h)
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory", path);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < src->n; i++) {
            const struct sr__st_entry *e = &src->e[i];
            bool is_e = !strcmp(e->name, emb_name), is_b = bias && !strcmp(e->name, bias_name);
            size_t es = is_e || is_b ? 4 : dtype_size(e->dtype);
            if ((es == 4) != (pass == 0))
                continue;
            uint64_t bytes = is_e ? (uint64_t)V * (uint64_t)d * 4 : is_b ? (uint64_t)V * 4
                                                                       : (uint64_t)e->count * es;
            json_t *shape = json_array();
            if (is_e || is_b) {
                json_array_append_new(shape, json_integer(V));
                if (is_e)
                    json_array_append_new(shape, json_integer(d));
            } else {
                for (int k = 0; k < e->ndim; k++)
                    json_array_append_new(shape, json_integer(e->shape[k]));
            }
            json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype",
                                    is_e || is_b ? "F32" : sr__dtype_name(e->dtype), "shape",
                                    shape, "data_offsets", (json_int_t)off,
                                    (json_int_t)(off + bytes));
            if (!ent || json_object_set_new(h, e->name, ent)) {
                json_decref(h);
                return sr_error_set(err, SR_ENOMEM, "%s: out of memory", path);
            }
            off += bytes;
        }
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    hdr = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!hdr)
        return sr_error_set(err, SR_ENOMEM, "%s: out of memory", path);
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7; /* 8 + header: a multiple of 8 */
    unsigned char le[8];
    for (int k = 0; k < 8; k++)
        le[k] = (unsigned char)((uint64_t)padded >> (8 * k));
    f = fopen(path, "wb");
    bool ok = f && fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl;
    for (size_t k = hl; ok && k < padded; k++)
        ok = fputc(' ', f) != EOF;
    for (int pass = 0; ok && pass < 2; pass++)
        for (int i = 0; ok && i < src->n; i++) {
            const struct sr__st_entry *e = &src->e[i];
            bool is_e = !strcmp(e->name, emb_name), is_b = bias && !strcmp(e->name, bias_name);
            size_t es = is_e || is_b ? 4 : dtype_size(e->dtype);
            if ((es == 4) != (pass == 0))
                continue;
            /* F32 little-endian on the hosts we build for (the loader checks endianness). */
            if (is_e)
                ok = fwrite(emb, sizeof(float) * (size_t)d, (size_t)V, f) == (size_t)V;
            else if (is_b)
                ok = fwrite(bias, sizeof(float), (size_t)V, f) == (size_t)V;
            else
                ok = fwrite(e->raw, es, (size_t)e->count, f) == (size_t)e->count;
        }
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        rc = sr_error_set(err, SR_EIO, "cannot write %s: %s", path, strerror(errno));
    free(hdr);
    return rc;
}

/* items.tsv of the new bundle: index, item_id, then the source's attribute columns. */
static sr_err_t write_vocab(const char *path, const sr_bundle_t *b, int32_t V_old, int32_t V,
                            const struct add_rows *r, struct sr_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return sr_error_set(err, SR_EIO, "cannot write %s: %s", path, strerror(errno));
    const char **cur = calloc((size_t)(b->n_attrs ? b->n_attrs : 1), sizeof *cur);
    int32_t *row_of = malloc(sizeof *row_of * (size_t)V); /* index -> items-file row, or -1 */
    bool ok = cur && row_of;
    if (ok) {
        for (int32_t i = 0; i < V; i++)
            row_of[i] = -1;
        for (int32_t k = 0; k < r->n; k++)
            row_of[r->index[k]] = k;
        fprintf(f, "index\titem_id");
        for (int a = 0; a < b->n_attrs; a++)
            fprintf(f, "\t%s", b->attr_names[a]);
        fputc('\n', f);
    }
    for (int32_t i = b->info.first_index; ok && i < V; i++) {
        int32_t k = row_of[i];
        for (int a = 0; a < b->n_attrs; a++)
            cur[a] = i < V_old ? b->attr_values[a][i] : "";
        if (k >= 0)
            for (int c = 0; c < r->ncol; c++)
                if (r->col_attr[c] >= 0)
                    cur[r->col_attr[c]] = r->val[(size_t)k * (size_t)r->ncol + (size_t)c];
        const char *id = i < V_old ? b->item_ids[i] : r->id[k];
        fprintf(f, "%" PRId32 "\t%.*s", i, i < V_old ? (int)b->item_id_len[i] : (int)strlen(id), id);
        for (int a = 0; a < b->n_attrs; a++)
            fprintf(f, "\t%s", cur[a]);
        ok = fputc('\n', f) != EOF;
    }
    free(cur);
    free(row_of);
    if (fclose(f) != 0 || !ok)
        return sr_error_set(err, SR_EIO, "cannot write %s: %s", path, strerror(errno));
    return SR_OK;
}

/* "V" -> "V+items1", "V+itemsN" -> "V+items(N+1)". */
static char *next_version(const char *v)
{
    const char *p = strstr(v, "+items");
    char *out = NULL;
    if (p) {
        char *end;
        errno = 0;
        unsigned long n = strtoul(p + 6, &end, 10);
        if (!*end && end != p + 6 && !errno &&
            asprintf(&out, "%.*s+items%lu", (int)(p - v), v, n + 1) >= 0)
            return out;
    }
    return asprintf(&out, "%s+items1", v) >= 0 ? out : NULL;
}

static void rm_tree(const char *dir)
{
    static const char *names[] = {"bundle.json", "model.safetensors", "items.tsv", "items.faiss"};
    char p[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

sr_err_t sr_bundle_add_items(const char *dir, const struct sr_bundle_add_params *p,
                             struct sr_bundle_add_result *res, struct sr_error *err)
{
    if (!dir || !p || !p->items || !p->out || !res)
        return sr_error_set(err, SR_EINVAL, "add-items: bundle, items and out are required");
    memset(res, 0, sizeof *res);
    struct stat st;
    if (stat(p->out, &st) == 0 || errno != ENOENT)
        return sr_error_set(err, SR_EINVAL, "--out %s: already exists (add-items writes a new "
                            "bundle directory)", p->out);
    sr_bundle_t *b = NULL, *check = NULL;
    struct add_rows r = {0};
    struct sr__st_dir sd = {0};
    float *nemb = NULL, *nbias = NULL, *table = NULL, *tbias = NULL;
    char *version = NULL, *tmp = NULL, *path = NULL;
    json_t *conf = NULL;
    bool made_tmp = false;
#ifdef SR_HAVE_FAISS
    sr_faiss_t *ix = NULL;
#endif
    sr_err_t rc = sr_bundle_load(dir, &b, err);
    if (rc != SR_OK)
        return rc;
    const struct sr_bundle_info *in = sr_bundle_info(b);
    const int d = in->d_model;
    const int32_t V_old = in->n_items;
    if (in->index_path && !sr_faiss_available()) {
        rc = sr_error_set(err, SR_EUNSUPPORTED, "%s: the bundle has a retrieval.index, and this "
                          "build has no FAISS to rebuild it", dir);
        goto out;
    }
    if ((rc = read_rows(b, p->items, &r, err)) != SR_OK)
        goto out;
    if (!(r.index = malloc(sizeof *r.index * (size_t)r.n))) {
        rc = sr_error_set(err, SR_ENOMEM, "add-items: out of memory");
        goto out;
    }
    int32_t V = V_old;
    for (int32_t k = 0; k < r.n; k++) {
        int32_t i = sr_bundle_item_index(b, r.id[k], strlen(r.id[k]));
        if (i >= in->first_index) {
            r.index[k] = i;
            res->updated++;
        } else {
            if (V >= (1 << 30)) {
                rc = sr_error_set(err, SR_EINVAL, "%s: line %d: the catalogue would exceed %d "
                                  "items", p->items, r.line[k], 1 << 30);
                goto out;
            }
            r.index[k] = V++;
            res->added++;
        }
    }
    for (int32_t k = 0; !p->embeddings && k < r.n; k++)
        if (r.index[k] >= V_old) {
            rc = sr_error_set(err, SR_EINVAL, "%s: line %d: item '%.64s' is new and needs an "
                              "embedding row (--embeddings)", p->items, r.line[k], r.id[k]);
            goto out;
        }
    if (p->embeddings && (rc = read_embeddings(b, p->embeddings, r.n, &nemb, &nbias, err)) != SR_OK)
        goto out;

    /* The new item table and bias: old rows, rows of updated items replaced, new rows after. */
    const float *obias = NULL, *otab = sr__bundle_item_table(b, &obias);
    table = malloc(sizeof(float) * (size_t)V * (size_t)d);
    tbias = in->has_output_bias ? malloc(sizeof(float) * (size_t)V) : NULL;
    if (!table || (in->has_output_bias && !tbias)) {
        rc = sr_error_set(err, SR_ENOMEM, "add-items: out of memory");
        goto out;
    }
    memcpy(table, otab, sizeof(float) * (size_t)V_old * (size_t)d);
    memset(table + (size_t)V_old * (size_t)d, 0, sizeof(float) * (size_t)(V - V_old) * (size_t)d);
    if (tbias) {
        memcpy(tbias, obias, sizeof(float) * (size_t)V_old);
        memset(tbias + V_old, 0, sizeof(float) * (size_t)(V - V_old));
    }
    if (nemb)
        for (int32_t k = 0; k < r.n; k++) {
            memcpy(table + (size_t)r.index[k] * (size_t)d, nemb + (size_t)k * (size_t)d,
                   sizeof(float) * (size_t)d);
            if (tbias)
                tbias[r.index[k]] = nbias[k];
        }

    /* bundle.json as the source wrote it, with the new version and file names. */
    if (!(path = malloc(strlen(in->dir) + 64))) {
        rc = sr_error_set(err, SR_ENOMEM, "add-items: out of memory");
        goto out;
    }
    sprintf(path, "%s/bundle.json", in->dir);
    json_error_t je;
    conf = json_load_file(path, JSON_DECODE_ANY, &je);
    if (!conf || !json_is_object(conf)) {
        rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: %s", path, je.line, je.text);
        goto out;
    }
    version = p->version ? strdup(p->version) : next_version(in->version);
    if (!version) {
        rc = sr_error_set(err, SR_ENOMEM, "add-items: out of memory");
        goto out;
    }
    if (!*version || !strcmp(version, in->version)) {
        rc = sr_error_set(err, SR_EINVAL, "--version '%s': the new bundle needs a version other "
                          "than the source's ('%s'), so its recommendations say which one made "
                          "them", version, in->version);
        goto out;
    }
    json_object_set_new(conf, "version", json_string(version));
    json_object_set_new(json_object_get(conf, "model"), "weights", json_string("model.safetensors"));
    json_object_set_new(json_object_get(conf, "items"), "vocab", json_string("items.tsv"));
    if (in->index_path) {
        /* the rebuilt index keeps the source's search parameter; its recall was measured on
         * the old catalogue, so it goes (`bundle build-index` measures again) */
        json_t *r = json_object_get(conf, "retrieval");
        json_object_set_new(r, "index", json_string("items.faiss"));
        json_object_del(r, "recall");
        json_object_del(r, "target_recall");
    }

    if (asprintf(&tmp, "%s.tmp.%ld", p->out, (long)getpid()) < 0) {
        tmp = NULL;
        rc = sr_error_set(err, SR_ENOMEM, "add-items: out of memory");
        goto out;
    }
    if (mkdir(tmp, 0755) != 0) {
        rc = sr_error_set(err, SR_EIO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    made_tmp = true;
    free(path);
    if (!(path = malloc(strlen(tmp) + 64))) {
        rc = sr_error_set(err, SR_ENOMEM, "add-items: out of memory");
        goto out;
    }
    /* The source's own tensors, with its prefix, from its mapped weights. */
    char emb_name[256], bias_name[256];
    snprintf(emb_name, sizeof emb_name, "%s%s", in->tensor_prefix,
             in->arch == SR_ARCH_GPT2 ? "wte.weight" : "item_embedding.weight");
    snprintf(bias_name, sizeof bias_name, "%soutput.bias", in->tensor_prefix);
    if ((rc = sr__st_parse(b->map, b->map_len, "weights", &sd, err)) != SR_OK)
        goto out;
    sprintf(path, "%s/model.safetensors", tmp);
    if ((rc = write_weights(path, &sd, emb_name, bias_name, table, tbias, V, d, err)) != SR_OK)
        goto out;
    sprintf(path, "%s/items.tsv", tmp);
    if ((rc = write_vocab(path, b, V_old, V, &r, err)) != SR_OK)
        goto out;
    sprintf(path, "%s/bundle.json", tmp);
    if (json_dump_file(conf, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)) {
        rc = sr_error_set(err, SR_EIO, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
#ifdef SR_HAVE_FAISS
    if (in->index_path) {
        /* The rebuild of `bundle build-index`, with the source index's type by default. */
        const char *factory = p->factory;
        if (!factory) {
            factory = sr_faiss_describe(b->faiss);
            if (!strncmp(factory, "IDMap,", 6))
                factory += 6;
        }
        sr_bundle_t *nb = NULL;
        if ((rc = sr__bundle_load_noindex(tmp, &nb, err)) != SR_OK)
            goto out;
        rc = sr_bundle_index_build(nb, factory, p->train_sample ? p->train_sample : 200000,
                                   p->seed ? p->seed : 42, &ix, err);
        sr_bundle_unref(nb);
        if (rc != SR_OK) {
            sr_error_prefix(err, "rebuilding the index (%s)", factory);
            goto out;
        }
        sprintf(path, "%s/items.faiss", tmp);
        if ((rc = sr_faiss_write(ix, path, err)) != SR_OK)
            goto out;
        snprintf(res->factory, sizeof res->factory, "%s", factory);
        res->index_rebuilt = true;
    }
#endif
    if ((rc = sr_bundle_load(tmp, &check, err)) != SR_OK) {
        sr_error_prefix(err, "the new bundle does not load");
        goto out;
    }
    if (rename(tmp, p->out) != 0) {
        rc = sr_error_set(err, SR_EIO, "cannot rename %s to %s: %s", tmp, p->out, strerror(errno));
        goto out;
    }
    made_tmp = false;
    res->n_items = V - in->first_index;
    snprintf(res->version, sizeof res->version, "%s", version);
out:
    if (made_tmp)
        rm_tree(tmp);
#ifdef SR_HAVE_FAISS
    sr_faiss_destroy(ix);
#endif
    sr_bundle_unref(check);
    sr_bundle_unref(b);
    sr__st_dir_free(&sd);
    rows_free(&r);
    json_decref(conf);
    free(nemb);
    free(nbias);
    free(table);
    free(tbias);
    free(version);
    free(tmp);
    free(path);
    return rc;
}
