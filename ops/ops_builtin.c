/* ops_builtin.c — the registry of op types: one table, looked up by name (Redis's command
 * table habit). A new op is a descriptor in its own file plus one line here. */
#include "ops_int.h"

#include <stdio.h>
#include <string.h>

extern const struct sr_op_desc sr__op_decode, sr__op_filter, sr__op_session_update,
    sr__op_categorify, sr__op_exclude_seen, sr__op_require_available, sr__op_drop_items,
    sr__op_boost, sr__op_sample,
    sr__op_encode, sr__op_retrieve, sr__op_trending, sr__op_eval, sr__op_sink;

static const struct sr_op_desc *const registry[] = {
    &sr__op_decode,     &sr__op_filter,           &sr__op_session_update,
    &sr__op_categorify, &sr__op_exclude_seen,     &sr__op_require_available,
    &sr__op_drop_items, &sr__op_encode,           &sr__op_retrieve,
    &sr__op_trending,   &sr__op_eval,             &sr__op_sink,
    &sr__op_boost,      &sr__op_sample,
};

const struct sr_op_desc *sr__op_find(const char *name)
{
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

void sr__op_names(char *out, size_t n)
{
    size_t j = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof registry / sizeof *registry && j < n; i++)
        j += (size_t)snprintf(out + j, n - j, "%s%s", i ? ", " : "", registry[i]->name);
}
