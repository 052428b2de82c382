/* vocab.c — the bundle's items.tsv: a tab-separated header naming at least `index` and
 * `item_id` (further columns are item attributes), then one row per item in any order. Every
 * index first_index..V-1 appears exactly once; item ids are unique and so are their 64-bit
 * hashes (sr_hash64), the keys that session state stores. Lookups: index -> id/attributes by
 * array, key -> index by an open-addressing table (linear probing, load <= 1/2).
 * Owns: one copy of the file text (ids and attributes point into it) and the tables. Immutable
 * after parsing, so lookups are safe from any thread. */
#include "bundle_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SR__VOCAB_MAX_COLUMNS 256

static char empty_str[1] = "";

void sr__vocab_free(struct sr_bundle *b)
{
    if (b->attr_values)
        for (int a = 0; a < b->n_attrs; a++)
            free(b->attr_values[a]);
    free(b->attr_values);
    free(b->attr_names);
    free(b->item_ids);
    free(b->item_id_len);
    free(b->slots);
    free(b->vocab_text);
    b->attr_values = NULL;
    b->attr_names = NULL;
    b->item_ids = NULL;
    b->item_id_len = NULL;
    b->slots = NULL;
    b->vocab_text = NULL;
    b->n_attrs = 0;
    b->slot_mask = 0;
}

/* Splits line (NUL-terminated, no newline) at tabs in place; returns the field count, which may
 * exceed max (only the first max are stored). */
static int split_tabs(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n < max)
            fields[n] = p;
        n++;
        char *t = strchr(p, '\t');
        if (!t)
            break;
        *t = '\0';
        p = t + 1;
    }
    return n;
}

/* Strict non-negative decimal (digits only); false when not one. Values above INT32_MAX
 * saturate, which every range check then refuses. */
static bool parse_index(const char *s, int64_t *out)
{
    if (!*s)
        return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        if (v <= INT32_MAX)
            v = v * 10 + (*p - '0');
    }
    *out = v; /* saturates above INT32_MAX: out of range either way */
    return true;
}

sr_err_t sr__vocab_parse(struct sr_bundle *b, const char *text, size_t len, const char *fname,
                         int32_t V, int32_t first, struct sr_error *err)
{
    if (first < 1 || V <= first || V > (1 << 30))
        return sr_error_set(err, SR_EINVAL, "%s: bad vocabulary layout (V %d, first_index %d)",
                            fname, V, first);
    sr_err_t rc = SR_OK;
    int32_t *line_of = NULL; /* index -> line that defined it (0: not yet) */
    char **fields = NULL;
    b->vocab_text = malloc(len + 1);
    if (!b->vocab_text)
        goto oom;
    memcpy(b->vocab_text, text, len);
    b->vocab_text[len] = '\0';
    char *s = b->vocab_text, *end = b->vocab_text + len;
    const char *nul = memchr(s, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *q = s; q < nul; q++)
            line += *q == '\n';
        rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: NUL byte", fname, line);
        goto fail;
    }
    if (len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3))
        s += 3; /* UTF-8 byte order mark */

    int lineno = 0, ncol = 0, idx_col = -1, id_col = -1;
    while (s < end || lineno == 0) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *next = nl ? nl + 1 : end;
        char *le = nl ? nl : end;
        if (le > s && le[-1] == '\r')
            le--;
        *le = '\0';
        lineno++;
        char *line = s;
        s = next;
        if (lineno == 1) {
            /* header */
            fields = calloc(SR__VOCAB_MAX_COLUMNS, sizeof *fields);
            if (!fields)
                goto oom;
            ncol = split_tabs(line, fields, SR__VOCAB_MAX_COLUMNS);
            if (ncol > SR__VOCAB_MAX_COLUMNS) {
                rc = sr_error_set(err, SR_EFORMAT, "%s: line 1: %d columns (at most %d)", fname,
                                  ncol, SR__VOCAB_MAX_COLUMNS);
                goto fail;
            }
            for (int c = 0; c < ncol; c++) {
                if (!*fields[c]) {
                    rc = sr_error_set(err, SR_EFORMAT, "%s: line 1: column %d has an empty name",
                                      fname, c + 1);
                    goto fail;
                }
                for (int d = 0; d < c; d++)
                    if (!strcmp(fields[c], fields[d])) {
                        rc = sr_error_set(err, SR_EFORMAT, "%s: line 1: duplicate column '%.64s'",
                                          fname, fields[c]);
                        goto fail;
                    }
                if (!strcmp(fields[c], "index"))
                    idx_col = c;
                else if (!strcmp(fields[c], "item_id"))
                    id_col = c;
            }
            if (idx_col < 0 || id_col < 0) {
                rc = sr_error_set(err, SR_EFORMAT,
                                  "%s: line 1: header must name the columns 'index' and 'item_id' "
                                  "(tab-separated); '%s' is missing",
                                  fname, idx_col < 0 ? "index" : "item_id");
                goto fail;
            }
            b->n_attrs = ncol - 2;
            b->attr_names = calloc((size_t)(b->n_attrs ? b->n_attrs : 1), sizeof *b->attr_names);
            b->attr_values = calloc((size_t)(b->n_attrs ? b->n_attrs : 1), sizeof *b->attr_values);
            b->item_ids = calloc((size_t)V, sizeof *b->item_ids);
            b->item_id_len = calloc((size_t)V, sizeof *b->item_id_len);
            line_of = calloc((size_t)V, sizeof *line_of);
            uint32_t cap = 16;
            while (cap < 2u * (uint32_t)(V - first))
                cap <<= 1;
            b->slots = malloc(cap * sizeof *b->slots);
            if (!b->attr_names || !b->attr_values || !b->item_ids || !b->item_id_len ||
                !line_of || !b->slots)
                goto oom;
            b->slot_mask = cap - 1;
            for (uint32_t i = 0; i < cap; i++) {
                b->slots[i].key = 0;
                b->slots[i].index = -1;
            }
            for (int c = 0, a = 0; c < ncol; c++) {
                if (c == idx_col || c == id_col)
                    continue;
                b->attr_names[a] = fields[c];
                b->attr_values[a] = malloc((size_t)V * sizeof(char *));
                if (!b->attr_values[a])
                    goto oom;
                for (int32_t i = 0; i < V; i++)
                    b->attr_values[a][i] = empty_str;
                a++;
            }
            continue;
        }
        if (!*line)
            continue; /* blank lines carry nothing */
        int got = split_tabs(line, fields, ncol);
        if (got != ncol) {
            rc = sr_error_set(err, SR_EFORMAT,
                              "%s: line %d: %d tab-separated columns, the header has %d", fname,
                              lineno, got, ncol);
            goto fail;
        }
        int64_t idx;
        if (!parse_index(fields[idx_col], &idx)) {
            rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: index '%.40s' is not a non-negative "
                              "integer", fname, lineno, fields[idx_col]);
            goto fail;
        }
        if (idx < first || idx >= V) {
            rc = sr_error_set(err, SR_EFORMAT,
                              "%s: line %d: index %.40s out of range: items occupy %d..%d (V = %d "
                              "rows of the embedding table, first_index %d)",
                              fname, lineno, fields[idx_col], first, V - 1, V, first);
            goto fail;
        }
        if (line_of[idx]) {
            rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: duplicate index %lld (first on line %d)",
                              fname, lineno, (long long)idx, line_of[idx]);
            goto fail;
        }
        const char *id = fields[id_col];
        size_t idlen = strlen(id);
        if (!idlen) {
            rc = sr_error_set(err, SR_EFORMAT, "%s: line %d: empty item_id", fname, lineno);
            goto fail;
        }
        uint64_t key = sr_hash64(id, idlen);
        uint32_t slot = (uint32_t)key & b->slot_mask;
        while (b->slots[slot].index >= 0) {
            if (b->slots[slot].key == key) {
                int32_t o = b->slots[slot].index;
                if (b->item_id_len[o] == idlen && !memcmp(b->item_ids[o], id, idlen))
                    rc = sr_error_set(err, SR_EFORMAT,
                                      "%s: line %d: duplicate item_id '%.64s' (first on line %d)",
                                      fname, lineno, id, line_of[o]);
                else
                    rc = sr_error_set(err, SR_EFORMAT,
                                      "%s: line %d: item_id '%.64s' has the same 64-bit hash as "
                                      "'%.64s' (line %d); rename one",
                                      fname, lineno, id, b->item_ids[o], line_of[o]);
                goto fail;
            }
            slot = (slot + 1) & b->slot_mask;
        }
        b->slots[slot].key = key;
        b->slots[slot].index = (int32_t)idx;
        line_of[idx] = lineno;
        b->item_ids[idx] = (char *)id;
        b->item_id_len[idx] = (uint32_t)idlen;
        for (int c = 0, a = 0; c < ncol; c++) {
            if (c == idx_col || c == id_col)
                continue;
            b->attr_values[a++][idx] = fields[c];
        }
    }
    for (int32_t i = first; i < V; i++)
        if (!line_of[i]) {
            rc = sr_error_set(err, SR_EFORMAT,
                              "%s: index %d missing (every index %d..%d must appear exactly once; "
                              "V = %d rows of the embedding table)",
                              fname, i, first, V - 1, V);
            goto fail;
        }
    free(line_of);
    free(fields);
    return SR_OK;
oom:
    rc = sr_error_set(err, SR_ENOMEM, "%s: out of memory", fname);
fail:
    free(line_of);
    free(fields);
    sr__vocab_free(b);
    return rc;
}

/* ---- lookups (public, bundle-owned results) -------------------------------------------- */

static int32_t lookup_key(const sr_bundle_t *b, uint64_t key, const char *id, size_t len)
{
    if (!b->slots)
        return b->info.oov_index;
    uint32_t slot = (uint32_t)key & b->slot_mask;
    while (b->slots[slot].index >= 0) {
        int32_t i = b->slots[slot].index;
        if (b->slots[slot].key == key &&
            (!id || (b->item_id_len[i] == len && !memcmp(b->item_ids[i], id, len))))
            return i;
        slot = (slot + 1) & b->slot_mask;
    }
    return b->info.oov_index;
}

int32_t sr_bundle_item_index(const sr_bundle_t *b, const char *item_id, size_t len)
{
    if (!b || (!item_id && len))
        return b ? b->info.oov_index : -1;
    return lookup_key(b, sr_hash64(item_id ? item_id : "", len), item_id ? item_id : "", len);
}

int32_t sr_bundle_item_index_by_key(const sr_bundle_t *b, uint64_t key)
{
    if (!b)
        return -1;
    return lookup_key(b, key, NULL, 0);
}

const char *sr_bundle_item_id(const sr_bundle_t *b, int32_t index, size_t *len)
{
    if (!b || !b->item_ids || index < b->info.first_index || index >= b->info.n_items)
        return NULL;
    if (len)
        *len = b->item_id_len[index];
    return b->item_ids[index];
}

int sr_bundle_attr_column(const sr_bundle_t *b, const char *name)
{
    if (!b || !name)
        return -1;
    for (int a = 0; a < b->n_attrs; a++)
        if (!strcmp(b->attr_names[a], name))
            return a;
    return -1;
}

const char *sr_bundle_attr(const sr_bundle_t *b, int column, int32_t index)
{
    if (!b || column < 0 || column >= b->n_attrs || index < 0 || index >= b->info.n_items)
        return "";
    return b->attr_values[column][index];
}
