/* config.c — the properties configuration: known keys with defaults (sr_config_keys.h), values
 * from a file, STREAMREC_* environment variables and --set. `kafka.*` and `graph.op.*` keys pass
 * through unchecked (librdkafka and the graph validate them). Built on one thread, read-only
 * afterwards. Owns copies of every key and value. */
#include "sr_core.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

struct sr_config_known {
    const char *key;
    const char *def;
    const char *help;
};

static const struct sr_config_known known_keys[] = {
#define SR_CONFIG_KEY(k, d, h) {k, d, h},
#include "sr_config_keys.h"
#undef SR_CONFIG_KEY
};
#define N_KNOWN (sizeof known_keys / sizeof known_keys[0])

static const char *const passthrough_prefixes[] = {"kafka.", "graph.op."};

struct sr_config_entry {
    char *key;
    char *value;
};

struct sr_config {
    struct sr_config_entry *e;
    size_t n, cap;
};

sr_config_t *sr_config_new(void) { return calloc(1, sizeof(sr_config_t)); }

void sr_config_destroy(sr_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->e[i].key);
        free(cfg->e[i].value);
    }
    free(cfg->e);
    free(cfg);
}

static const struct sr_config_known *find_known(const char *key)
{
    for (size_t i = 0; i < N_KNOWN; i++)
        if (strcmp(known_keys[i].key, key) == 0)
            return &known_keys[i];
    return NULL;
}

static bool is_passthrough(const char *key)
{
    for (size_t i = 0; i < sizeof passthrough_prefixes / sizeof *passthrough_prefixes; i++) {
        size_t n = strlen(passthrough_prefixes[i]);
        if (strncmp(key, passthrough_prefixes[i], n) == 0 && key[n])
            return true;
    }
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *sr_config_nearest_key(const char *key)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < N_KNOWN; i++) {
        size_t d = edit_distance(key, known_keys[i].key);
        if (d < best_d) {
            best_d = d;
            best = known_keys[i].key;
        }
    }
    /* Far-off suggestions help nobody. */
    return best_d <= strlen(key) / 2 + 2 ? best : NULL;
}

static sr_err_t unknown_key(struct sr_error *err, const char *key, const char *where)
{
    const char *near = sr_config_nearest_key(key);
    if (near)
        return sr_error_set(err, SR_ECONFIG, "%sunknown configuration key '%s' (did you mean '%s'?)",
                            where, key, near);
    return sr_error_set(err, SR_ECONFIG, "%sunknown configuration key '%s'", where, key);
}

static struct sr_config_entry *find_entry(const sr_config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->e[i].key, key) == 0)
            return &cfg->e[i];
    return NULL;
}

static sr_err_t store(sr_config_t *cfg, const char *key, const char *value, struct sr_error *err)
{
    struct sr_config_entry *e = find_entry(cfg, key);
    char *v = strdup(value);
    if (!v)
        return sr_error_set(err, SR_ENOMEM, "out of memory setting '%s'", key);
    if (e) {
        free(e->value);
        e->value = v;
        return SR_OK;
    }
    if (cfg->n == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 32;
        struct sr_config_entry *ne = realloc(cfg->e, cap * sizeof *ne);
        if (!ne) {
            free(v);
            return sr_error_set(err, SR_ENOMEM, "out of memory setting '%s'", key);
        }
        cfg->e = ne;
        cfg->cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return sr_error_set(err, SR_ENOMEM, "out of memory setting '%s'", key);
    }
    cfg->e[cfg->n].key = k;
    cfg->e[cfg->n].value = v;
    cfg->n++;
    return SR_OK;
}

sr_err_t sr_config_set(sr_config_t *cfg, const char *key, const char *value, struct sr_error *err)
{
    if (!cfg || !key || !value)
        return sr_error_set(err, SR_EINVAL, "sr_config_set: NULL argument");
    if (!find_known(key) && !is_passthrough(key))
        return unknown_key(err, key, "");
    return store(cfg, key, value, err);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

sr_err_t sr_config_set_kv(sr_config_t *cfg, const char *kv, struct sr_error *err)
{
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv)
        return sr_error_set(err, SR_ECONFIG, "--set expects key=value, got '%s'", kv ? kv : "");
    char key[256];
    size_t kl = (size_t)(eq - kv);
    if (kl >= sizeof key)
        return sr_error_set(err, SR_ECONFIG, "configuration key too long in '%.64s...'", kv);
    memcpy(key, kv, kl);
    key[kl] = '\0';
    char *vdup = strdup(eq + 1);
    if (!vdup)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    sr_err_t rc = sr_config_set(cfg, trim(key), trim(vdup), err);
    free(vdup);
    return rc;
}

sr_err_t sr_config_load_file(sr_config_t *cfg, const char *path, struct sr_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sr_error_set(err, SR_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    sr_err_t rc = SR_OK;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#' || *s == '!')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = sr_error_set(err, SR_ECONFIG, "%s:%d: expected key=value", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        if (!*key) {
            rc = sr_error_set(err, SR_ECONFIG, "%s:%d: empty key", path, lineno);
            break;
        }
        rc = sr_config_set(cfg, key, value, err);
        if (rc != SR_OK) {
            sr_error_prefix(err, "%s:%d", path, lineno);
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* "model.bundle" -> "STREAMREC_MODEL_BUNDLE" */
static void env_name(const char *key, char *out, size_t n)
{
    size_t j = (size_t)snprintf(out, n, "STREAMREC_");
    for (const char *p = key; *p && j + 1 < n; p++)
        out[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = '\0';
}

sr_err_t sr_config_apply_env(sr_config_t *cfg, char **envp, struct sr_error *err)
{
    if (!envp)
        envp = environ;
    for (char **ep = envp; ep && *ep; ep++) {
        if (strncmp(*ep, "STREAMREC_", 10) != 0)
            continue;
        const char *eq = strchr(*ep, '=');
        if (!eq)
            continue;
        size_t nl = (size_t)(eq - *ep);
        char name[256];
        if (nl >= sizeof name)
            continue;
        memcpy(name, *ep, nl);
        name[nl] = '\0';
        const char *key = NULL;
        char kbuf[256];
        for (size_t i = 0; i < N_KNOWN && !key; i++) {
            char en[256];
            env_name(known_keys[i].key, en, sizeof en);
            if (strcmp(en, name) == 0)
                key = known_keys[i].key;
        }
        if (!key && strncmp(name, "STREAMREC_KAFKA_", 16) == 0) {
            size_t j = (size_t)snprintf(kbuf, sizeof kbuf, "kafka.");
            for (const char *p = name + 16; *p && j + 1 < sizeof kbuf; p++)
                kbuf[j++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
            kbuf[j] = '\0';
            key = kbuf;
        }
        if (!key) {
            /* Suggest by the key this variable would spell. */
            size_t j = 0;
            for (const char *p = name + 10; *p && j + 1 < sizeof kbuf; p++)
                kbuf[j++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
            kbuf[j] = '\0';
            const char *near = sr_config_nearest_key(kbuf);
            if (near) {
                char en[256];
                env_name(near, en, sizeof en);
                return sr_error_set(err, SR_ECONFIG,
                                    "environment: unknown variable %s (did you mean %s?)", name, en);
            }
            return sr_error_set(err, SR_ECONFIG, "environment: unknown variable %s", name);
        }
        sr_err_t rc = store(cfg, key, eq + 1, err);
        if (rc != SR_OK)
            return rc;
    }
    return SR_OK;
}

const char *sr_config_get(const sr_config_t *cfg, const char *key)
{
    const struct sr_config_entry *e = cfg ? find_entry(cfg, key) : NULL;
    if (e)
        return e->value;
    const struct sr_config_known *k = find_known(key);
    return k ? k->def : NULL;
}

bool sr_config_is_set(const sr_config_t *cfg, const char *key)
{
    return cfg && find_entry(cfg, key) != NULL;
}

sr_err_t sr_config_get_int(const sr_config_t *cfg, const char *key, int64_t *out, struct sr_error *err)
{
    const char *v = sr_config_get(cfg, key);
    if (!v || !*v)
        return sr_error_set(err, SR_ECONFIG, "configuration key '%s' is not set", key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *trim(end) != '\0' || end == v)
        return sr_error_set(err, SR_ECONFIG, "configuration key '%s': '%s' is not an integer", key, v);
    *out = x;
    return SR_OK;
}

sr_err_t sr_config_get_double(const sr_config_t *cfg, const char *key, double *out, struct sr_error *err)
{
    const char *v = sr_config_get(cfg, key);
    if (!v || !*v)
        return sr_error_set(err, SR_ECONFIG, "configuration key '%s' is not set", key);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end != '\0' || !isfinite(x))
        return sr_error_set(err, SR_ECONFIG, "configuration key '%s': '%s' is not a number", key, v);
    *out = x;
    return SR_OK;
}

sr_err_t sr_config_get_bool(const sr_config_t *cfg, const char *key, bool *out, struct sr_error *err)
{
    const char *v = sr_config_get(cfg, key);
    if (v && (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on"))) {
        *out = true;
        return SR_OK;
    }
    if (v && (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"))) {
        *out = false;
        return SR_OK;
    }
    return sr_error_set(err, SR_ECONFIG, "configuration key '%s': '%s' is not a boolean (true/false)",
                        key, v ? v : "");
}

int sr_config_foreach(const sr_config_t *cfg, const char *prefix,
                      int (*fn)(void *opaque, const char *key, const char *value), void *opaque)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; cfg && i < cfg->n; i++) {
        if (pl && strncmp(cfg->e[i].key, prefix, pl) != 0)
            continue;
        int r = fn(opaque, cfg->e[i].key, cfg->e[i].value);
        if (r)
            return r;
    }
    return 0;
}

bool sr_config_key_is_secret(const char *key)
{
    static const char *const words[] = {"password", "secret", "key.pem", "sasl.oauthbearer.config",
                                        "ssl.key", "token", "user.info"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strstr(key, words[i]))
            return true;
    return false;
}

int sr_config_known_count(void) { return (int)N_KNOWN; }

void sr_config_known_at(int i, const char **key, const char **def, const char **help)
{
    *key = known_keys[i].key;
    *def = known_keys[i].def;
    *help = known_keys[i].help;
}

int sr_split_csv(const char *s, char *buf, size_t buflen, const char **items, int max)
{
    size_t n = strlen(s ? s : "");
    if (n + 1 > buflen)
        return -1;
    memcpy(buf, s ? s : "", n + 1);
    int count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (!*tok)
            continue;
        if (count == max)
            return -1;
        items[count++] = tok;
    }
    return count;
}
