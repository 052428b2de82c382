/* graph.c — builds the operator graph from configuration, validates the column flow at load
 * and runs it per micro-batch. The graph owns the long-lived things its ops share (bundle,
 * backend, model, session store: struct sr_op_env) and every op instance.
 * Threads: built on the caller's thread; run on one thread at a time. */
#include "ops_int.h"
#include "sr_kernels.h"
#include "sr_state.h"

#include <sys/stat.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SR_GRAPH_MAX_NODES 32

struct sr_graph_node {
    const struct sr_op_desc *desc;
    char name[96];   /* instance name: the op name, or the user's declared name */
    char prefix[128];/* "graph.op.<name>." for declared ops, "" for built-ins */
    void *ctx;
    struct sr_op_ports ports;
};

/* With model.variants (DESIGN §4.5) the graph is split where the bundle starts to matter:
 * nodes[0..n_head) (decode, filter, session_update) run on the whole batch, then each variant's
 * sub-graph (categorify .. retrieve, on its own bundle and model) on its rows, then
 * nodes[n_head..n) (sink) on the whole batch again, so recommendations leave in source order. */
struct sr_graph {
    struct sr_op_env env;
    sr_backend_t *backend;   /* NULL in a variant's sub-graph: it uses its parent's */
    int n;
    struct sr_graph_node nodes[SR_GRAPH_MAX_NODES];
    int n_head;
    int n_variants;
    struct sr_graph *sub[SR_GRAPH_MAX_VARIANTS];
    struct sr_variant variants[SR_GRAPH_MAX_VARIANTS];
    uint32_t cum[SR_GRAPH_MAX_VARIANTS]; /* cumulative shares (percent) */
};

static sr_err_t add_node(sr_graph_t *g, const char *type, const char *inst, bool declared,
                         struct sr_error *err)
{
    const struct sr_op_desc *d = sr__op_find(type);
    if (!d)
        return sr_error_set(err, SR_ECONFIG, "graph: op '%s': unknown op type '%s'", inst, type);
    if (g->n == SR_GRAPH_MAX_NODES)
        return sr_error_set(err, SR_ECONFIG, "graph: more than %d ops", SR_GRAPH_MAX_NODES);
    struct sr_graph_node *nd = &g->nodes[g->n];
    memset(nd, 0, sizeof *nd);
    nd->desc = d;
    snprintf(nd->name, sizeof nd->name, "%s", inst);
    if (declared)
        snprintf(nd->prefix, sizeof nd->prefix, "graph.op.%s.", inst);
    sr_err_t rc = d->init(&g->env, declared ? nd->prefix : NULL, &nd->ctx, &nd->ports, err);
    if (rc != SR_OK)
        return sr_error_prefix(err, "graph: op '%s'", inst);
    g->n++;
    return SR_OK;
}

/* Walks the ops in order with the set of columns available so far: every required input must
 * have been produced earlier with the same type. */
sr_err_t sr__graph_validate(const struct sr__graph_node_ports *nodes, int n, struct sr_error *err)
{
    struct sr_op_port avail[SR_BATCH_MAX_COLS];
    int n_avail = 0;
    const struct sr_op_port source[] = {
        {SR_C_RAW, SR_COL_STR, false},
        {SR_C_SRC_PARTITION, SR_COL_I32, false},
        {SR_C_SRC_OFFSET, SR_COL_I64, false},
    };
    for (size_t i = 0; i < sizeof source / sizeof *source; i++)
        avail[n_avail++] = source[i];
    for (int i = 0; i < n; i++) {
        const struct sr__graph_node_ports *nd = &nodes[i];
        const struct sr_op_ports *ports = nd->ports;
        for (int j = 0; j < ports->n_in; j++) {
            const struct sr_op_port *in = &ports->in[j];
            const struct sr_op_port *found = NULL;
            for (int a = 0; a < n_avail; a++)
                if (strcmp(avail[a].name, in->name) == 0)
                    found = &avail[a];
            if (!found && !in->optional)
                return sr_error_set(err, SR_ECONFIG,
                                    "graph: op '%s' (%s): missing input column '%s' (%s): no earlier "
                                    "op produces it",
                                    nd->name, nd->type, in->name, sr_col_type_name(in->type));
            if (found && found->type != in->type)
                return sr_error_set(err, SR_ECONFIG,
                                    "graph: op '%s' (%s): input column '%s' has type %s, expected %s",
                                    nd->name, nd->type, in->name,
                                    sr_col_type_name(found->type), sr_col_type_name(in->type));
        }
        for (int j = 0; j < ports->n_out; j++) {
            int a = 0;
            while (a < n_avail && strcmp(avail[a].name, ports->out[j].name) != 0)
                a++;
            if (a == n_avail) {
                if (n_avail == SR_BATCH_MAX_COLS)
                    return sr_error_set(err, SR_ECONFIG, "graph: op '%s' (%s): more than %d columns",
                                        nd->name, nd->type, SR_BATCH_MAX_COLS);
                n_avail++;
            }
            avail[a] = ports->out[j];
        }
    }
    return SR_OK;
}

static sr_err_t validate(const sr_graph_t *g, struct sr_error *err)
{
    struct sr__graph_node_ports nodes[SR_GRAPH_MAX_NODES];
    for (int i = 0; i < g->n; i++)
        nodes[i] = (struct sr__graph_node_ports){
            .name = g->nodes[i].name, .type = g->nodes[i].desc->name, .ports = &g->nodes[i].ports};
    return sr__graph_validate(nodes, g->n, err);
}

static sr_err_t new_backend(const sr_config_t *cfg, sr_backend_t **out, struct sr_error *err)
{
    struct sr_backend_params bp = {0};
    sr_err_t rc = sr_device_parse(sr_config_get(cfg, "device"), &bp.device, err);
    if (rc != SR_OK)
        return rc;
    int64_t threads = 0;
    rc = sr_config_get_int(cfg, "device.threads", &threads, err);
    if (rc != SR_OK)
        return rc;
    bp.threads = (int)threads;
    return sr_backend_new(&bp, out, err);
}

/* The bundle (given, or model.bundle), its model on `be` (NULL: a new backend of the graph's
 * own), retrieval and recs.k. */
static sr_err_t load_model(sr_graph_t *g, struct sr_bundle *bundle, sr_backend_t *be,
                           struct sr_error *err)
{
    const sr_config_t *cfg = g->env.cfg;
    const char *dir = sr_config_get(cfg, "model.bundle");
    sr_err_t rc = SR_OK;
    if (bundle)
        g->env.bundle = sr_bundle_ref(bundle);
    else if (!dir || !*dir)
        return sr_error_set(err, SR_ECONFIG, "model.bundle is required (the bundle directory)");
    else if ((rc = sr_bundle_load(dir, &g->env.bundle, err)) != SR_OK)
        return rc;
    if (!be) {
        if ((rc = new_backend(cfg, &g->backend, err)) != SR_OK)
            return rc;
        be = g->backend;
    }
    rc = sr_model_new(g->env.bundle, be, &g->env.model, err);
    if (rc != SR_OK)
        return rc;
    /* retrieval.mode/nprobe/ef_search: FAISS when the bundle has an index (auto) */
    struct sr_retrieval_params rp = {0};
    int64_t nprobe = 0, ef = 0;
    if ((rc = sr_retrieval_mode_parse(sr_config_get(cfg, "retrieval.mode"), &rp.mode, err)) != SR_OK ||
        (rc = sr_config_get_int(cfg, "retrieval.nprobe", &nprobe, err)) != SR_OK ||
        (rc = sr_config_get_int(cfg, "retrieval.ef_search", &ef, err)) != SR_OK)
        return rc;
    if (nprobe < 1 || nprobe > (1 << 20) || ef < 1 || ef > (1 << 20))
        return sr_error_set(err, SR_ECONFIG, "retrieval.nprobe / retrieval.ef_search: %lld / %lld "
                            "out of range (1..1048576)", (long long)nprobe, (long long)ef);
    /* unless set, the values `bundle build-index` chose for its recall target (DESIGN §3) */
    const struct sr_bundle_info *bi = sr_bundle_info(g->env.bundle);
    rp.nprobe = !sr_config_is_set(cfg, "retrieval.nprobe") && bi->index_nprobe ? bi->index_nprobe
                                                                               : (int)nprobe;
    rp.ef_search = !sr_config_is_set(cfg, "retrieval.ef_search") && bi->index_ef_search
                       ? bi->index_ef_search : (int)ef;
    if ((rc = sr_model_set_retrieval(g->env.model, &rp, err)) != SR_OK)
        return rc;
    int64_t k;
    rc = sr_config_get_int(cfg, "recs.k", &k, err);
    if (rc != SR_OK)
        return rc;
    if (k < 1 || k > 1000)
        return sr_error_set(err, SR_ECONFIG, "recs.k: %lld is out of range (1..1000)", (long long)k);
    g->env.k = g->env.k_retrieve = (int32_t)k;
    const char *sampling = sr_config_get(cfg, "recs.sampling");
    if (sampling && !strcmp(sampling, "softmax")) {
        int64_t pool;
        if ((rc = sr_config_get_int(cfg, "recs.sampling.candidates", &pool, err)) != SR_OK)
            return rc;
        if (pool < k)
            return sr_error_set(err, SR_ECONFIG, "recs.sampling.candidates: %lld is below recs.k "
                                "(%lld)", (long long)pool, (long long)k);
        g->env.k_retrieve = (int32_t)pool;
    }
    return SR_OK;
}

/* The bundle-dependent middle of the chain (DESIGN §1): categorify, the rules, the user's ops,
 * encode, retrieve. */
static sr_err_t add_middle(sr_graph_t *g, const sr_config_t *cfg, struct sr_error *err)
{
    /* recs.exclude_seen: a boolean, or a list of event types (the op reads which, DESIGN §4.2). */
    bool exclude_seen = true, require_available = false;
    if (sr_config_get_bool(cfg, "recs.exclude_seen", &exclude_seen, NULL) != SR_OK)
        exclude_seen = true;
    sr_err_t rc = sr_config_get_bool(cfg, "recs.require_available", &require_available, err);
    if (rc == SR_OK)
        rc = add_node(g, "categorify", "categorify", false, err);
    if (rc == SR_OK && exclude_seen)
        rc = add_node(g, "exclude_seen", "exclude_seen", false, err);
    if (rc == SR_OK && require_available)
        rc = add_node(g, "require_available", "require_available", false, err);
    if (rc == SR_OK) {
        char buf[1024];
        const char *names[SR_GRAPH_MAX_NODES];
        int n = sr_split_csv(sr_config_get(cfg, "graph.ops"), buf, sizeof buf, names,
                             SR_GRAPH_MAX_NODES);
        if (n < 0)
            rc = sr_error_set(err, SR_ECONFIG, "graph.ops: too many ops");
        for (int i = 0; rc == SR_OK && i < n; i++) {
            char key[160];
            snprintf(key, sizeof key, "graph.op.%s.type", names[i]);
            const char *type = sr_config_get(cfg, key);
            if (!type)
                rc = sr_error_set(err, SR_ECONFIG, "graph.ops names '%s' but %s is not set",
                                  names[i], key);
            else
                rc = add_node(g, type, names[i], true, err);
        }
    }
    static const char *const tail[] = {"encode", "retrieve"};
    for (size_t i = 0; rc == SR_OK && i < sizeof tail / sizeof *tail; i++)
        rc = add_node(g, tail[i], tail[i], false, err);
    return rc;
}

int sr_variant_of(const char *session_id, size_t len, const uint32_t *cum, int n)
{
    /* Salted so the arm does not follow the partition (librdkafka and Java hash the same id). */
    uint64_t h = sr_hash64(session_id, len) ^ 0x5eed5a17ab7e57ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    uint32_t bucket = (uint32_t)(h % 100);
    for (int v = 0; v < n; v++)
        if (bucket < cum[v])
            return v;
    return n - 1;
}

/* model.variants: names, their bundles (model.variant.<name>.bundle, default model.bundle) and
 * shares (model.variant.<name>.share, percent; unset ones split what the set ones leave). */
static sr_err_t load_variants(sr_graph_t *g, const struct sr_graph_params *p, struct sr_error *err)
{
    const sr_config_t *cfg = p->cfg;
    char buf[1024], key[200];
    const char *names[SR_GRAPH_MAX_VARIANTS];
    int n = sr_split_csv(sr_config_get(cfg, "model.variants"), buf, sizeof buf, names,
                         SR_GRAPH_MAX_VARIANTS);
    if (n < 0)
        return sr_error_set(err, SR_ECONFIG, "model.variants: at most %d variants",
                            SR_GRAPH_MAX_VARIANTS);
    if (n == 0)
        return SR_OK;
    int64_t given = 0;
    int unset = 0;
    for (int v = 0; v < n; v++) {
        struct sr_variant *va = &g->variants[v];
        if (strlen(names[v]) >= sizeof va->name)
            return sr_error_set(err, SR_ECONFIG, "model.variants: name '%s' is longer than %zu",
                                names[v], sizeof va->name - 1);
        snprintf(va->name, sizeof va->name, "%s", names[v]);
        snprintf(key, sizeof key, "model.variant.%s.share", names[v]);
        if (sr_config_is_set(cfg, key)) {
            int64_t share;
            sr_err_t rc = sr_config_get_int(cfg, key, &share, err);
            if (rc != SR_OK)
                return rc;
            if (share < 0 || share > 100)
                return sr_error_set(err, SR_ECONFIG, "%s=%lld: expected a percentage 0..100", key,
                                    (long long)share);
            va->share = (uint32_t)share;
            given += share;
        } else {
            va->share = UINT32_MAX;
            unset++;
        }
    }
    if (given > 100 || (unset == 0 && given != 100))
        return sr_error_set(err, SR_ECONFIG, "model.variant.*.share: the shares add up to %lld, "
                            "expected 100", (long long)given);
    uint32_t left = (uint32_t)(100 - given), sum = 0;
    for (int v = 0, u = 0; v < n; v++) {
        if (g->variants[v].share == UINT32_MAX)
            g->variants[v].share = left / (uint32_t)unset + ((uint32_t)u++ < left % (uint32_t)unset);
        sum += g->variants[v].share;
        g->cum[v] = sum;
    }
    sr_err_t rc = new_backend(cfg, &g->backend, err);
    for (int v = 0; rc == SR_OK && v < n; v++) {
        struct sr_variant *va = &g->variants[v];
        snprintf(key, sizeof key, "model.variant.%s.bundle", va->name);
        const char *dir = sr_config_get(cfg, key);
        struct sr_bundle *b = NULL;
        if (dir && *dir)
            rc = sr_bundle_load(dir, &b, err);
        else if (p->bundle)
            b = sr_bundle_ref(p->bundle);
        else if ((dir = sr_config_get(cfg, "model.bundle")) && *dir)
            rc = sr_bundle_load(dir, &b, err);
        else
            rc = sr_error_set(err, SR_ECONFIG, "%s and model.bundle are not set", key);
        sr_graph_t *sub = NULL;
        if (rc == SR_OK && !(sub = calloc(1, sizeof *sub)))
            rc = sr_error_set(err, SR_ENOMEM, "graph: out of memory");
        if (rc == SR_OK) {
            g->sub[v] = sub;
            g->n_variants = v + 1;
            sub->env = g->env;
            sub->env.bundle = NULL;
            sub->env.variants = NULL;
            sub->env.n_variants = 0;
            rc = load_model(sub, b, g->backend, err);
        }
        if (rc == SR_OK) {
            va->bundle = sr_bundle_ref(b);
            va->version = sr_bundle_info(b)->version;
            rc = add_middle(sub, cfg, err);
        }
        sr_bundle_unref(b);
        if (rc != SR_OK)
            sr_error_prefix(err, "variant %s", va->name);
    }
    if (rc == SR_OK) {
        /* the shared head and tail see the first variant's bundle (the filter's unknown-item
         * count, the session store's default max_len) */
        g->env.bundle = sr_bundle_ref(g->variants[0].bundle);
        g->env.variants = g->variants;
        g->env.n_variants = n;
        int64_t k;
        rc = sr_config_get_int(cfg, "recs.k", &k, err);
        g->env.k = (int32_t)k;
    }
    return rc;
}

/* Each variant's chain head + middle + tail as one column flow. */
static sr_err_t validate_variants(const sr_graph_t *g, struct sr_error *err)
{
    for (int v = 0; v < g->n_variants; v++) {
        struct sr__graph_node_ports nodes[3 * SR_GRAPH_MAX_NODES];
        int n = 0;
        const sr_graph_t *sub = g->sub[v];
        for (int i = 0; i < g->n_head; i++, n++)
            nodes[n] = (struct sr__graph_node_ports){g->nodes[i].name, g->nodes[i].desc->name,
                                                     &g->nodes[i].ports};
        for (int i = 0; i < sub->n; i++, n++)
            nodes[n] = (struct sr__graph_node_ports){sub->nodes[i].name, sub->nodes[i].desc->name,
                                                     &sub->nodes[i].ports};
        for (int i = g->n_head; i < g->n; i++, n++)
            nodes[n] = (struct sr__graph_node_ports){g->nodes[i].name, g->nodes[i].desc->name,
                                                     &g->nodes[i].ports};
        sr_err_t rc = sr__graph_validate(nodes, n, err);
        if (rc != SR_OK)
            return sr_error_prefix(err, "variant %s", g->variants[v].name);
    }
    return SR_OK;
}

sr_err_t sr_graph_new(const struct sr_graph_params *p, sr_graph_t **out, struct sr_error *err)
{
    *out = NULL;
    if (!p || !p->cfg || !p->stats || !p->state)
        return sr_error_set(err, SR_EINVAL, "sr_graph_new: cfg, stats and state are required");
    sr_graph_t *g = calloc(1, sizeof *g);
    if (!g)
        return sr_error_set(err, SR_ENOMEM, "graph: out of memory");
    g->env.cfg = p->cfg;
    g->env.runtime = p->runtime ? p->runtime : "offline";
    g->env.stats = p->stats;
    g->env.sink = p->sink;
    g->env.source_topic = p->source_topic ? p->source_topic : "";
    g->env.input_format = p->input_format;
    g->env.input_writer_schema_json = p->input_writer_schema_json;
    g->env.state = p->state;
    g->env.evaluating = p->eval;
    sr_err_t rc = load_variants(g, p, err);
    if (rc == SR_OK && g->n_variants && p->eval)
        rc = sr_error_set(err, SR_ECONFIG, "replay --eval with model.variants: compare the "
                          "bundles with replay --bundle NAME=DIR instead");
    const char *sampling = sr_config_get(p->cfg, "recs.sampling");
    bool trending = false;
    if (rc == SR_OK)
        rc = sr_config_get_bool(p->cfg, "recs.trending", &trending, err);
    /* Trending keeps one sketch per partition in the session store, which variants' sub-graphs
     * would each read and stage: not combined yet (DESIGN §4.5). */
    if (rc == SR_OK && g->n_variants && (trending || (sampling && strcmp(sampling, "off"))))
        rc = sr_error_set(err, SR_ECONFIG, "model.variants with recs.trending or recs.sampling "
                          "is not supported yet: run the variants without them");
    if (rc == SR_OK && !g->n_variants)
        rc = load_model(g, p->bundle, NULL, err);

    /* The built-in chain of DESIGN §1; user-declared ops go before encode. */
    static const char *const head[] = {"decode", "filter", "session_update"};
    for (size_t i = 0; rc == SR_OK && i < sizeof head / sizeof *head; i++)
        rc = add_node(g, head[i], head[i], false, err);
    g->n_head = g->n;
    if (rc == SR_OK && !g->n_variants)
        rc = add_middle(g, p->cfg, err);
    if (rc == SR_OK && sampling && strcmp(sampling, "off"))
        rc = add_node(g, "sample", "sample", false, err);
    /* recs.trending (checked by the config loader). Items carry their source exactly when
     * trending or epsilon sampling runs, which is what sr_rec_item_sources_configured tells the
     * output schema registration (DESIGN §4.3). */
    if (rc == SR_OK && trending)
        rc = add_node(g, "trending", "trending", false, err);
    if (rc == SR_OK && p->eval)
        rc = add_node(g, "eval", "eval", false, err);
    if (rc == SR_OK)
        rc = add_node(g, "sink", "sink", false, err);
    if (rc == SR_OK)
        rc = g->n_variants ? validate_variants(g, err) : validate(g, err);
    if (rc != SR_OK) {
        sr_graph_destroy(g);
        return rc;
    }
    *out = g;
    return SR_OK;
}

void sr_graph_destroy(sr_graph_t *g)
{
    if (!g)
        return;
    for (int i = g->n - 1; i >= 0; i--)
        if (g->nodes[i].desc->fini)
            g->nodes[i].desc->fini(g->nodes[i].ctx);
    for (int v = 0; v < g->n_variants; v++) {
        sr_graph_destroy(g->sub[v]);
        sr_bundle_unref(g->variants[v].bundle);
    }
    sr_model_unref(g->env.model);
    sr_backend_unref(g->backend);
    sr_bundle_unref(g->env.bundle);
    free(g->env.item_allowed);
    free(g->env.item_boost);
    free(g);
}

static sr_err_t run_nodes(sr_graph_t *g, int from, int to, struct sr_batch *b,
                          struct sr_error *err)
{
    for (int i = from; i < to; i++) {
        struct sr_graph_node *nd = &g->nodes[i];
        uint64_t t0 = sr_now_ns();
        sr_err_t rc = nd->desc->run(nd->ctx, &g->env, b, err);
        sr_stats_stage(g->env.stats, nd->desc->name, sr_now_ns() - t0);
        if (rc != SR_OK)
            return sr_error_prefix(err, "op '%s'", nd->name);
    }
    return SR_OK;
}

/* Each variant's sub-graph on the rows of its sessions (a view of the batch with its own
 * selection), then their recommendations merged back into the batch, row by row. */
static sr_err_t run_variants(sr_graph_t *g, struct sr_batch *b, struct sr_error *err)
{
    struct sr_col *sess = sr_batch_col(b, SR_C_SESSION), *vc;
    sr_err_t rc = sr_batch_add(b, SR_C_VARIANT, SR_COL_I32, 0, &vc, err);
    if (rc != SR_OK)
        return rc;
    int32_t *var = vc->data;
    const char **ids = sess->data;
    for (int32_t r = 0; r < b->n; r++)
        var[r] = -1;
    for (int32_t s = 0; s < b->n_sel; s++) {
        int32_t r = b->sel[s];
        var[r] = sr_variant_of(ids[r], sess->lens[r], g->cum, g->n_variants);
    }
    struct sr_col items[SR_GRAPH_MAX_VARIANTS], scores[SR_GRAPH_MAX_VARIANTS]; /* by value: the
                                                        * views and their columns end with the loop */
    int64_t total = 0;
    for (int v = 0; v < g->n_variants; v++) {
        sr_graph_t *sub = g->sub[v];
        struct sr_batch vb = *b;
        if (!(vb.sel = sr_arena_alloc(b->arena, sizeof(int32_t) * (size_t)(b->n_sel + 1), 16)))
            return sr_error_set(err, SR_ENOMEM, "graph: out of memory");
        vb.n_sel = 0;
        for (int32_t s = 0; s < b->n_sel; s++)
            if (var[b->sel[s]] == v)
                vb.sel[vb.n_sel++] = b->sel[s];
        sub->env.has_staged = g->env.has_staged;
        sub->env.staged_id = g->env.staged_id;
        if ((rc = run_nodes(sub, 0, sub->n, &vb, err)) != SR_OK)
            return sr_error_prefix(err, "variant %s", g->variants[v].name);
        items[v] = *sr_batch_col(&vb, SR_C_REC_ITEMS);
        scores[v] = *sr_batch_col(&vb, SR_C_REC_SCORES);
        total += items[v].offsets[b->n];
    }
    struct sr_col *ri, *rs;
    if ((rc = sr_batch_add(b, SR_C_REC_ITEMS, SR_COL_LIST_I32, total, &ri, err)) != SR_OK ||
        (rc = sr_batch_add(b, SR_C_REC_SCORES, SR_COL_LIST_F32, total, &rs, err)) != SR_OK)
        return rc;
    int32_t *oi = ri->data;
    float *os = rs->data;
    for (int32_t r = 0; r < b->n; r++) {
        int32_t at = ri->offsets[r];
        if (var[r] >= 0) {
            const struct sr_col *vi = &items[var[r]], *vs = &scores[var[r]];
            int32_t lo = vi->offsets[r], hi = vi->offsets[r + 1];
            if (hi > lo) { /* an arm with no items has no data: memcpy(NULL, 0) is UB */
                memcpy(oi + at, (const int32_t *)vi->data + lo,
                       sizeof(int32_t) * (size_t)(hi - lo));
                memcpy(os + at, (const float *)vs->data + lo, sizeof(float) * (size_t)(hi - lo));
                at += hi - lo;
            }
        }
        ri->offsets[r + 1] = rs->offsets[r + 1] = at;
    }
    return SR_OK;
}

sr_err_t sr_graph_run(sr_graph_t *g, struct sr_batch *b, struct sr_error *err)
{
    g->env.has_staged = false;
    __atomic_fetch_add(&g->env.stats->batches, 1, __ATOMIC_RELAXED);
    sr_err_t rc;
    if (!g->n_variants)
        rc = run_nodes(g, 0, g->n, b, err);
    else if ((rc = run_nodes(g, 0, g->n_head, b, err)) == SR_OK &&
             (rc = run_variants(g, b, err)) == SR_OK)
        rc = run_nodes(g, g->n_head, g->n, b, err);
    if (rc != SR_OK) {
        if (g->env.has_staged)
            sr_state_discard(g->env.state, g->env.staged_id);
        return rc;
    }
    b->has_state = g->env.has_staged;
    b->state_id = g->env.staged_id;
    return SR_OK;
}

const struct sr_variant *sr_graph_variants(const sr_graph_t *g, int *n)
{
    *n = g->n_variants;
    return g->n_variants ? g->variants : NULL;
}

void sr_graph_eval_report(const sr_graph_t *g, struct sr_eval_report *r)
{
    memset(r, 0, sizeof *r);
    if (g->env.eval)
        *r = *g->env.eval;
}

void sr_graph_eval_sessions(const sr_graph_t *g, sr_eval_session_fn fn, void *opaque)
{
    if (g->env.eval)
        sr__eval_sessions(g->env.eval, fn, opaque);
}

const char *sr_graph_model_version(const sr_graph_t *g)
{
    return sr_bundle_info(g->env.bundle)->version;
}

const char *sr_graph_model_dir(const sr_graph_t *g)
{
    return sr_bundle_info(g->env.bundle)->dir;
}

static sr_err_t check_model(sr_graph_t *g, struct sr_error *err)
{
    const struct sr_bundle_info *bi = sr_bundle_info(g->env.bundle);
    const int d = bi->d_model, k = g->env.k;
    int32_t offsets[2] = {0, 1}, item = bi->first_index, *idx = malloc(sizeof *idx * (size_t)k);
    float *vec = malloc(sizeof *vec * (size_t)d), *score = malloc(sizeof *score * (size_t)k);
    sr_err_t rc = idx && vec && score ? SR_OK : sr_error_set(err, SR_ENOMEM, "out of memory");
    struct sr_session_batch sb = {.n = 1, .offsets = offsets, .items = &item};
    if (rc == SR_OK)
        rc = sr_model_encode(g->env.model, &sb, vec, err);
    for (int i = 0; rc == SR_OK && i < d; i++)
        if (!isfinite(vec[i]))
            rc = sr_error_set(err, SR_EINTERNAL, "%s: test encode of item %d: component %d of the "
                              "session vector is %g", bi->dir, (int)item, i, (double)vec[i]);
    if (rc == SR_OK)
        rc = sr_model_topk(g->env.model, 1, vec, NULL, NULL, k, idx, score, err);
    for (int i = 0; rc == SR_OK && i < k; i++)
        if (idx[i] != -1 && (idx[i] < bi->first_index || idx[i] >= bi->n_items || !isfinite(score[i])))
            rc = sr_error_set(err, SR_EINTERNAL, "%s: test top-%d: rank %d is item %d with score %g",
                              bi->dir, k, i + 1, (int)idx[i], (double)score[i]);
    free(idx);
    free(vec);
    free(score);
    return rc;
}

sr_err_t sr_graph_check(sr_graph_t *g, struct sr_error *err)
{
    if (!g->n_variants)
        return check_model(g, err);
    for (int v = 0; v < g->n_variants; v++) /* each variant's sub-graph has its model */
        if (check_model(g->sub[v], err) != SR_OK)
            return sr_error_prefix(err, "variant %s", g->variants[v].name);
    return SR_OK;
}

struct gcheck {
    const sr_config_t *cfg;
    sr_config_problem_fn each;
    void *opaque;
    struct sr_error *err;
    int n;
};

static void gproblem(struct gcheck *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void gproblem(struct gcheck *c, const char *key, const char *fmt, ...)
{
    char msg[400], line[SR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *origin = sr_config_origin(c->cfg, key);
    snprintf(line, sizeof line, "%s%s%s", origin ? origin : "", origin ? ": " : "", msg);
    if (c->n++ == 0)
        sr_error_set(c->err, SR_ECONFIG, "%s", line);
    if (c->each)
        c->each(c->opaque, line);
}

static int check_op_key(void *opaque, const char *key, const char *value)
{
    struct gcheck *c = opaque;
    const char *inst = key + strlen("graph.op.");
    const char *dot = strchr(inst, '.');
    char tkey[200], names[512];
    if (!dot || !dot[1] || dot == inst) {
        gproblem(c, key, "%s: expected graph.op.<name>.<option>", key);
        return 0;
    }
    snprintf(tkey, sizeof tkey, "graph.op.%.*s.type", (int)(dot - inst), inst);
    const char *type = sr_config_get(c->cfg, tkey);
    const struct sr_op_desc *d = type ? sr__op_find(type) : NULL;
    if (!strcmp(dot + 1, "type")) {
        if (!d) {
            sr__op_names(names, sizeof names);
            gproblem(c, key, "%s=%s: expected an op type, one of %s", key, value, names);
        }
        return 0;
    }
    if (!type) {
        gproblem(c, key, "%s: unknown key: %s is not set, so %.*s declares no op", key, tkey,
                 (int)(dot - inst), inst);
        return 0;
    }
    if (!d)
        return 0; /* reported on its .type key */
    for (const char *const *o = d->options; o && *o; o++)
        if (!strcmp(*o, dot + 1))
            return 0;
    size_t j = 0;
    names[0] = 0;
    for (const char *const *o = d->options; o && *o && j < sizeof names; o++)
        j += (size_t)snprintf(names + j, sizeof names - j, "%s%s", j ? ", " : "", *o);
    gproblem(c, key, "%s=%s: unknown option of op type %s (its options: %s)", key,
             sr_config_key_is_secret(key) ? "***" : value, type, j ? names : "none");
    return 0;
}

/* model.variant.<name>.bundle | .share, for a name in model.variants. */
static int check_variant_key(void *opaque, const char *key, const char *value)
{
    struct gcheck *c = opaque;
    const char *name = key + strlen("model.variant."), *dot = strrchr(name, '.');
    char buf[1024];
    const char *names[SR_GRAPH_MAX_VARIANTS];
    int n = sr_split_csv(sr_config_get(c->cfg, "model.variants"), buf, sizeof buf, names,
                         SR_GRAPH_MAX_VARIANTS);
    bool known = false;
    for (int i = 0; dot && i < n; i++)
        known |= strlen(names[i]) == (size_t)(dot - name) && !strncmp(names[i], name, (size_t)(dot - name));
    if (!dot || !known) {
        gproblem(c, key, "%s: unknown key: expected model.variant.<name>.bundle or .share for a "
                 "name in model.variants (%s)", key, sr_config_get(c->cfg, "model.variants"));
        return 0;
    }
    struct stat st;
    int64_t share;
    if (!strcmp(dot + 1, "bundle")) {
        if (stat(value, &st) != 0 || !S_ISDIR(st.st_mode))
            gproblem(c, key, "%s=%s: expected an existing directory (a model bundle)", key, value);
    } else if (!strcmp(dot + 1, "share")) {
        if (sr_config_get_int(c->cfg, key, &share, NULL) != SR_OK || share < 0 || share > 100)
            gproblem(c, key, "%s=%s: expected a percentage 0..100", key, value);
    } else {
        gproblem(c, key, "%s: unknown option of a variant (its options: bundle, share)", key);
    }
    return 0;
}

sr_err_t sr_graph_config_check(const sr_config_t *cfg, sr_config_problem_fn each, void *opaque,
                               struct sr_error *err)
{
    struct gcheck c = {.cfg = cfg, .each = each, .opaque = opaque, .err = err};
    char buf[1024];
    const char *names[SR_GRAPH_MAX_NODES];
    int n = sr_split_csv(sr_config_get(cfg, "graph.ops"), buf, sizeof buf, names,
                         SR_GRAPH_MAX_NODES);
    if (n < 0)
        gproblem(&c, "graph.ops", "graph.ops: expected at most %d names", SR_GRAPH_MAX_NODES);
    for (int i = 0; i < n; i++) {
        char key[160];
        snprintf(key, sizeof key, "graph.op.%s.type", names[i]);
        if (!sr_config_get(cfg, key))
            gproblem(&c, "graph.ops", "graph.ops=%s: names '%s' but %s is not set",
                     sr_config_get(cfg, "graph.ops"), names[i], key);
    }
    sr_config_foreach(cfg, "graph.op.", check_op_key, &c);
    sr_config_foreach(cfg, "model.variant.", check_variant_key, &c);
    /* the numbers the ops read as text, checked with the ops' own parsers */
    struct sr_error e2;
    double x;
    int64_t k = 10, v = 0;
    sr_config_get_int(cfg, "recs.k", &k, NULL);
    const char *ms = sr_config_get(cfg, "recs.min_score");
    if (ms && *ms && sr__cfg_number(cfg, "recs.min_score", -HUGE_VAL, HUGE_VAL, false, &x, &e2))
        gproblem(&c, "recs.min_score", "%s", e2.msg);
    if (sr__cfg_number(cfg, "recs.sampling.temperature", 0, 1e9, true, &x, &e2))
        gproblem(&c, "recs.sampling.temperature", "%s", e2.msg);
    if (sr__cfg_number(cfg, "recs.sampling.epsilon", 0, 1, false, &x, &e2))
        gproblem(&c, "recs.sampling.epsilon", "%s", e2.msg);
    if (sr__trending_check_weights(cfg, &e2))
        gproblem(&c, "trending.event_weights", "%s", e2.msg);
    if (sr_config_get_int(cfg, "recs.trending.slots", &v, NULL) == SR_OK && v > k)
        gproblem(&c, "recs.trending.slots", "recs.trending.slots=%lld: more than recs.k (%lld)",
                 (long long)v, (long long)k);
    const char *sampling = sr_config_get(cfg, "recs.sampling");
    if (sampling && !strcmp(sampling, "softmax") &&
        sr_config_get_int(cfg, "recs.sampling.candidates", &v, NULL) == SR_OK && v < k)
        gproblem(&c, "recs.sampling.candidates", "recs.sampling.candidates=%lld: below recs.k "
                 "(%lld)", (long long)v, (long long)k);
    const char *vs = sr_config_get(cfg, "model.variants");
    const char *vnames[SR_GRAPH_MAX_VARIANTS];
    int nv = sr_split_csv(vs, buf, sizeof buf, vnames, SR_GRAPH_MAX_VARIANTS);
    if (nv < 0)
        gproblem(&c, "model.variants", "model.variants=%s: expected at most %d names", vs,
                 SR_GRAPH_MAX_VARIANTS);
    int64_t total = 0;
    int unset = 0;
    for (int i = 0; i < nv; i++) {
        char key[200];
        int64_t share;
        for (int j = 0; j < i; j++)
            if (!strcmp(vnames[i], vnames[j]))
                gproblem(&c, "model.variants", "model.variants=%s: '%s' twice", vs, vnames[i]);
        if (strlen(vnames[i]) > 32 || strspn(vnames[i], "abcdefghijklmnopqrstuvwxyz"
                                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
                                          strlen(vnames[i]))
            gproblem(&c, "model.variants", "model.variants=%s: '%s': expected a name of up to 32 "
                     "letters, digits, '_' or '-'", vs, vnames[i]);
        snprintf(key, sizeof key, "model.variant.%s.share", vnames[i]);
        if (!sr_config_is_set(cfg, key))
            unset++;
        else if (sr_config_get_int(cfg, key, &share, NULL) == SR_OK && share >= 0 && share <= 100)
            total += share; /* a bad value is reported by check_variant_key */
    }
    if (nv > 0 && (total > 100 || (unset == 0 && total != 100)))
        gproblem(&c, "model.variants", "model.variant.*.share: the shares of %s add up to %lld, "
                 "expected 100", vs, (long long)total);
    return c.n ? SR_ECONFIG : SR_OK;
}
