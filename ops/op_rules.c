/* op_rules.c — item rules applied inside retrieval, so top-k is taken over allowed items only
 * (never fewer than k when the catalogue allows):
 *   `exclude_seen`      per row: the session's own items are excluded (recs.exclude_seen=true),
 *                       or those it had an event of the listed types for (=purchase,...);
 *   `require_available` static: items whose `available` attribute is 0 are excluded;
 *   `drop_items`        static, user-declared: items whose attribute is in a list are excluded,
 *                       e.g. graph.ops=no_clearance
 *                            graph.op.no_clearance.type=drop_items
 *                            graph.op.no_clearance.attribute=category
 *                            graph.op.no_clearance.values=clearance,gift-cards
 *   `boost`             static, user-declared: items whose attribute is in a list get `weight`
 *                       added to their score before the final top-k (negative: bury), e.g.
 *                            graph.op.promo.type=boost
 *                            graph.op.promo.attribute=brand
 *                            graph.op.promo.values=acme
 *                            graph.op.promo.weight=0.5
 * Static rules fold into env->item_allowed / env->item_boost once at load, so they cost nothing
 * per batch; retrieve applies boosts with the candidate rules (recs.max_per_category,
 * recs.min_score; DESIGN §4.7). */
#include "ops_int.h"
#include "sr_kernels.h"
#include "sr_state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- exclude_seen --------------------------------------------------------------------- */

/* recs.exclude_seen: true (every item of the session) or a list of event types: only items
 * the session holds from an event of one of those types, e.g. purchase,add_to_cart, so that
 * items merely viewed may be recommended again (DESIGN §4.2). Types are matched by their
 * stored code (sr_session_type_code); items of a version-1 session value have no type and
 * are excluded only by `true`. */
struct exclude_ctx {
    struct sr__exclude_spec spec;
};

sr_err_t sr__exclude_seen_parse(const sr_config_t *cfg, struct sr__exclude_spec *out,
                                struct sr_error *err)
{
    memset(out, 0, sizeof *out);
    bool all;
    if (sr_config_get_bool(cfg, "recs.exclude_seen", &all, NULL) == SR_OK) {
        out->on = all;
        return SR_OK;
    }
    out->on = true;
    char buf[1024], sbuf[1024];
    const char *names[SR__EXCLUDE_MAX_TYPES], *stored[64];
    out->n = sr_split_csv(sr_config_get(cfg, "recs.exclude_seen"), buf, sizeof buf, names,
                          SR__EXCLUDE_MAX_TYPES);
    int ns = sr_split_csv(sr_config_get(cfg, "session.event_types"), sbuf, sizeof sbuf, stored,
                          64);
    if (out->n <= 0)
        return sr_error_set(err, SR_ECONFIG, "recs.exclude_seen: '%s' is neither true/false "
                            "nor a list of event types (at most %d)",
                            sr_config_get(cfg, "recs.exclude_seen"), SR__EXCLUDE_MAX_TYPES);
    for (int i = 0; i < out->n; i++) {
        bool ok = false;
        for (int j = 0; j < ns && !ok; j++)
            ok = !strcmp(names[i], stored[j]);
        if (!ok)
            return sr_error_set(err, SR_ECONFIG, "recs.exclude_seen: event type '%s' is not in "
                                "session.event_types (%s): such events are never stored, so "
                                "nothing would be excluded", names[i],
                                sr_config_get(cfg, "session.event_types"));
        out->code[i] = sr_session_type_code(names[i], strlen(names[i]));
    }
    return SR_OK;
}

static sr_err_t exclude_init(struct sr_op_env *env, const char *prefix, void **ctx,
                             struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix;
    struct exclude_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    sr_err_t rc = sr__exclude_seen_parse(env->cfg, &c->spec, err);
    if (rc != SR_OK) {
        free(c);
        return rc;
    }
    *ctx = c;
    sr__port_in(ports, SR_C_SESSION_ITEMS, SR_COL_LIST_I32, false);
    sr__port_in(ports, SR_C_SESSION_TYPES, SR_COL_LIST_I32, false);
    sr__port_out(ports, SR_C_EXCLUDE, SR_COL_LIST_I32);
    return SR_OK;
}

static sr_err_t exclude_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                            struct sr_error *err)
{
    (void)env;
    const struct exclude_ctx *c = ctx;
    struct sr_col *items = sr_batch_col(b, SR_C_SESSION_ITEMS), *ex;
    int32_t total = items->offsets[b->n];
    sr_err_t rc = sr_batch_add(b, SR_C_EXCLUDE, SR_COL_LIST_I32, total, &ex, err);
    if (rc != SR_OK)
        return rc;
    if (!c->spec.n) {
        /* Same rows, same lists: the backend's exclusion test tolerates duplicates. */
        memcpy(ex->offsets, items->offsets, sizeof(int32_t) * (size_t)(b->n + 1));
        if (total > 0)
            memcpy(ex->data, items->data, sizeof(int32_t) * (size_t)total);
        return SR_OK;
    }
    const int32_t *idx = items->data, *ty = sr_batch_col(b, SR_C_SESSION_TYPES)->data;
    int32_t *out = ex->data, pos = 0;
    for (int32_t r = 0; r < b->n; r++) {
        for (int32_t j = items->offsets[r]; j < items->offsets[r + 1]; j++)
            for (int t = 0; t < c->spec.n; t++)
                if ((uint32_t)ty[j] == c->spec.code[t]) {
                    out[pos++] = idx[j];
                    break;
                }
        ex->offsets[r + 1] = pos;
    }
    return SR_OK;
}

static void exclude_fini(void *ctx) { free(ctx); }

const struct sr_op_desc sr__op_exclude_seen = {
    .name = "exclude_seen",
    .help = "never recommend an item already in the session (recs.exclude_seen=true), or one "
            "the session had an event of the listed types for",
    .init = exclude_init,
    .run = exclude_run,
    .fini = exclude_fini,
};

/* ---- static item rules ---------------------------------------------------------------- */

static sr_err_t allowed_table(struct sr_op_env *env, struct sr_error *err)
{
    if (env->item_allowed)
        return SR_OK;
    int32_t V = sr_bundle_info(env->bundle)->n_items;
    env->item_allowed = malloc((size_t)V);
    if (!env->item_allowed)
        return sr_error_set(err, SR_ENOMEM, "out of memory for the item rule table");
    memset(env->item_allowed, 1, (size_t)V);
    return SR_OK;
}

/* Excludes every item whose `attr` equals one of values[] (or, when negate, none of them). */
static sr_err_t apply_attr_rule(struct sr_op_env *env, const char *attr, const char **values,
                                int n_values, bool negate, int64_t *excluded, struct sr_error *err)
{
    const struct sr_bundle_info *bi = sr_bundle_info(env->bundle);
    int col = sr_bundle_attr_column(env->bundle, attr);
    if (col < 0)
        return sr_error_set(err, SR_ECONFIG, "items.tsv of bundle %s has no column '%s'", bi->dir,
                            attr);
    sr_err_t rc = allowed_table(env, err);
    if (rc != SR_OK)
        return rc;
    *excluded = 0;
    for (int32_t j = bi->first_index; j < bi->n_items; j++) {
        const char *v = sr_bundle_attr(env->bundle, col, j);
        bool match = false;
        for (int i = 0; i < n_values && !match; i++)
            match = strcmp(v, values[i]) == 0;
        if (match != negate) {
            *excluded += env->item_allowed[j];
            env->item_allowed[j] = 0;
        }
    }
    return SR_OK;
}

static sr_err_t require_available_init(struct sr_op_env *env, const char *prefix, void **ctx,
                                       struct sr_op_ports *ports, struct sr_error *err)
{
    (void)prefix, (void)ports;
    *ctx = NULL;
    static const char *const zero[] = {"0", "false", "no"};
    int64_t n;
    sr_err_t rc = apply_attr_rule(env, "available", (const char **)zero, 3, false, &n, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "recs.require_available");
    sr_log(SR_LOG_INFO, "ops", "require_available", "excluded=%lld", (long long)n);
    return SR_OK;
}

static sr_err_t static_rule_run(void *ctx, struct sr_op_env *env, struct sr_batch *b,
                                struct sr_error *err)
{
    (void)ctx, (void)env, (void)b, (void)err;
    return SR_OK; /* folded into env->item_allowed at init */
}

const struct sr_op_desc sr__op_require_available = {
    .name = "require_available",
    .help = "never recommend items whose `available` attribute is 0",
    .init = require_available_init,
    .run = static_rule_run,
};

/* A declared attribute rule's required `<prefix>attribute` and `<prefix>values` (at most 128,
 * split into buf). key: room for the rule's key names. */
static sr_err_t declared_rule(const struct sr_op_env *env, const char *op, const char *prefix,
                              char *key, size_t cap, const char **attr, char *buf, size_t buf_cap,
                              const char **values, int *n, struct sr_error *err)
{
    if (!prefix)
        return sr_error_set(err, SR_ECONFIG, "%s must be declared under graph.op.<name>.", op);
    snprintf(key, cap, "%sattribute", prefix);
    *attr = sr_config_get(env->cfg, key);
    if (!*attr || !**attr)
        return sr_error_set(err, SR_ECONFIG, "%s is required", key);
    snprintf(key, cap, "%svalues", prefix);
    *n = sr_split_csv(sr_config_get(env->cfg, key), buf, buf_cap, values, 128);
    if (*n <= 0)
        return sr_error_set(err, SR_ECONFIG, "%s: expected a comma-separated list (at most 128)", key);
    return SR_OK;
}

static sr_err_t drop_items_init(struct sr_op_env *env, const char *prefix, void **ctx,
                                struct sr_op_ports *ports, struct sr_error *err)
{
    (void)ports;
    *ctx = NULL;
    char key[200], buf[2048];
    const char *attr = NULL, *values[128];
    int n = 0;
    if (declared_rule(env, "drop_items", prefix, key, sizeof key, &attr, buf, sizeof buf, values,
                      &n, err) != SR_OK)
        return SR_ECONFIG;
    snprintf(key, sizeof key, "%skeep", prefix);
    bool keep = false; /* keep=true inverts: only the listed values stay recommendable */
    if (sr_config_get(env->cfg, key) && sr_config_get_bool(env->cfg, key, &keep, err) != SR_OK)
        return SR_ECONFIG;
    int64_t excluded;
    sr_err_t rc = apply_attr_rule(env, attr, values, n, keep, &excluded, err);
    if (rc == SR_OK)
        sr_log(SR_LOG_INFO, "ops", "drop_items", "op=%s attribute=%s excluded=%lld", prefix, attr,
               (long long)excluded);
    return rc;
}

static const char *const drop_items_options[] = {"attribute", "values", "keep", NULL};

const struct sr_op_desc sr__op_drop_items = {
    .name = "drop_items",
    .help = "never recommend items whose attribute (graph.op.<name>.attribute) is in .values "
            "(or, with .keep=true, is not)",
    .init = drop_items_init,
    .run = static_rule_run,
    .options = drop_items_options,
};

/* ---- boost ---------------------------------------------------------------------------- */

static sr_err_t boost_init(struct sr_op_env *env, const char *prefix, void **ctx,
                           struct sr_op_ports *ports, struct sr_error *err)
{
    (void)ports;
    *ctx = NULL;
    char key[200], buf[2048];
    const char *attr = NULL, *values[128];
    int n = 0;
    if (declared_rule(env, "boost", prefix, key, sizeof key, &attr, buf, sizeof buf, values, &n,
                      err) != SR_OK)
        return SR_ECONFIG;
    const struct sr_bundle_info *bi = sr_bundle_info(env->bundle);
    int col = sr_bundle_attr_column(env->bundle, attr);
    if (col < 0)
        return sr_error_set(err, SR_ECONFIG, "%sattribute=%s: items.tsv of bundle %s has no such "
                            "column", prefix, attr, bi->dir);
    snprintf(key, sizeof key, "%sweight", prefix);
    const char *ws = sr_config_get(env->cfg, key);
    char *end = NULL;
    double w = ws && *ws ? strtod(ws, &end) : NAN;
    if (!ws || !end || *end || !isfinite(w) || w == 0)
        return sr_error_set(err, SR_ECONFIG, "%s=%s: expected a non-zero number (negative buries)",
                            key, ws ? ws : "");
    if (!env->item_boost) {
        env->item_boost = calloc((size_t)bi->n_items, sizeof(float));
        if (!env->item_boost)
            return sr_error_set(err, SR_ENOMEM, "out of memory for the boost table");
    }
    int64_t hit = 0;
    for (int32_t j = bi->first_index; j < bi->n_items; j++) {
        const char *v = sr_bundle_attr(env->bundle, col, j);
        for (int i = 0; i < n; i++)
            if (!strcmp(v, values[i])) {
                env->item_boost[j] += (float)w;
                hit++;
                break;
            }
    }
    sr_log(SR_LOG_INFO, "ops", "boost", "op=%s attribute=%s weight=%g items=%lld", prefix, attr, w,
           (long long)hit);
    return SR_OK;
}

static const char *const boost_options[] = {"attribute", "values", "weight", NULL};

const struct sr_op_desc sr__op_boost = {
    .name = "boost",
    .help = "add graph.op.<name>.weight to the score of items whose attribute is in .values "
            "(negative: bury), before the final top-k",
    .init = boost_init,
    .run = static_rule_run,
    .options = boost_options,
};
