/* op_filter.c — `filter`: marks each event `append` (type in session.event_types) and
 * `trigger` (type in recs.trigger_types). Events that are neither (e.g. `wishlist`) are counted
 * as filtered but stay in the batch: they are neither stored nor answered, yet they are session
 * activity, so session_update lets them refresh the session's TTL clock. It also counts the
 * events whose item the bundle does not know (stats.unknown_items: items added to the catalogue
 * after the bundle was built, DESIGN §7). Owns copies of the two type lists. */
#include "ops_int.h"
#include "sr_kernels.h"

#include <stdlib.h>
#include <string.h>

#define MAX_TYPES 32

struct type_list {
    int n;
    const char *name[MAX_TYPES];
    size_t len[MAX_TYPES];
    char buf[1024];
};

struct filter_ctx {
    struct type_list append, trigger;
};

static sr_err_t parse_types(const sr_config_t *cfg, const char *key, struct type_list *l,
                            struct sr_error *err)
{
    l->n = sr_split_csv(sr_config_get(cfg, key), l->buf, sizeof l->buf, l->name, MAX_TYPES);
    if (l->n < 0)
        return sr_error_set(err, SR_ECONFIG, "%s: too long (at most %d types)", key, MAX_TYPES);
    for (int i = 0; i < l->n; i++)
        l->len[i] = strlen(l->name[i]);
    return SR_OK;
}

static bool has_type(const struct type_list *l, const char *s, uint32_t len)
{
    for (int i = 0; i < l->n; i++)
        if (l->len[i] == len && memcmp(l->name[i], s, len) == 0)
            return true;
    return false;
}

static sr_err_t filter_init(struct sr_op_env *env, const char *prefix, void **ctx,
                            struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct filter_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    sr_err_t rc = parse_types(env->cfg, "session.event_types", &c->append, err);
    if (rc == SR_OK)
        rc = parse_types(env->cfg, "recs.trigger_types", &c->trigger, err);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    sr__port_in(ports, SR_C_TYPE, SR_COL_STR, false);
    sr__port_in(ports, SR_C_ITEM_KEY, SR_COL_U64, false);
    sr__port_out(ports, SR_C_APPEND, SR_COL_I32);
    sr__port_out(ports, SR_C_TRIGGER, SR_COL_I32);
    *ctx = c;
    return SR_OK;
}

static sr_err_t filter_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                           struct sr_error *err)
{
    struct filter_ctx *c = ctx;
    struct sr_col *type = sr_batch_col(b, SR_C_TYPE), *app, *trig;
    sr_err_t rc = sr_batch_add(b, SR_C_APPEND, SR_COL_I32, 0, &app, err);
    if (rc == SR_OK)
        rc = sr_batch_add(b, SR_C_TRIGGER, SR_COL_I32, 0, &trig, err);
    if (rc != SR_OK)
        return rc;
    const char **ts = type->data;
    const uint64_t *keys = sr_batch_col(b, SR_C_ITEM_KEY)->data;
    const int32_t first = sr_bundle_info(env->bundle)->first_index;
    int32_t *a = app->data, *t = trig->data;
    uint64_t dropped = 0, unknown = 0;
    for (int32_t i = 0; i < b->n_sel; i++) {
        int32_t r = b->sel[i];
        a[r] = has_type(&c->append, ts[r], type->lens[r]);
        t[r] = has_type(&c->trigger, ts[r], type->lens[r]);
        dropped += !a[r] && !t[r];
        unknown += sr_bundle_item_index_by_key(env->bundle, keys[r]) < first;
    }
    __atomic_fetch_add(&env->stats->filtered, dropped, __ATOMIC_RELAXED);
    __atomic_fetch_add(&env->stats->unknown_items, unknown, __ATOMIC_RELAXED);
    return SR_OK;
}

static void filter_fini(void *ctx) { free(ctx); }

const struct sr_op_desc sr__op_filter = {
    .name = "filter",
    .help = "mark events stored (session.event_types) and triggering (recs.trigger_types)",
    .init = filter_init,
    .run = filter_run,
    .fini = filter_fini,
};
