/* config.c — the properties configuration: known keys with their kind, allowed values and
 * defaults (sr_config_keys.h); values from a file, STREAMREC_* environment variables and --set,
 * in that order (sr_config_load, the one loader every command uses); every value checked at
 * start-up by the same parsers the typed getters use at first use (DESIGN §5). `kafka.*` keys
 * pass through to librdkafka; `graph.op.*` and `model.variant.*` keys are checked by ops/
 * (sr_graph_config_check).
 * Built on one thread, read-only afterwards. Owns copies of every key, value and origin. */
#include "sr_core.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum key_kind { K_TEXT, K_LIST, K_INT, K_BOOL, K_ENUM, K_TOPIC, K_HOSTPORT, K_DIR, K_FILE };

struct sr_config_known {
    const char *key;
    enum key_kind kind;
    const char *allowed; /* ENUM: "a|b"; INT: "lo..hi" (empty hi: none); TOPIC/DIR/FILE: "opt" */
    const char *def;
    const char *help;
};

static const struct sr_config_known known_keys[] = {
#define SR_CONFIG_KEY(k, kind, allowed, d, h) {k, K_##kind, allowed, d, h},
#include "sr_config_keys.h"
#undef SR_CONFIG_KEY
};
#define N_KNOWN (sizeof known_keys / sizeof known_keys[0])

static const char *const passthrough_prefixes[] = {"kafka.", "graph.op.", "model.variant."};

struct sr_config_entry {
    char *key;
    char *value;
    char *origin; /* "FILE:LINE", "STREAMREC_X", "--set"; NULL when set by a program */
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
        free(cfg->e[i].origin);
    }
    free(cfg->e);
    free(cfg);
}

sr_config_t *sr_config_dup(const sr_config_t *cfg)
{
    sr_config_t *c = sr_config_new();
    if (!c || !cfg)
        return c;
    if (cfg->n && !(c->e = calloc(cfg->n, sizeof *c->e))) {
        free(c);
        return NULL;
    }
    c->cap = cfg->n;
    for (; c->n < cfg->n; c->n++) {
        c->e[c->n].key = strdup(cfg->e[c->n].key);
        c->e[c->n].value = strdup(cfg->e[c->n].value);
        c->e[c->n].origin = cfg->e[c->n].origin ? strdup(cfg->e[c->n].origin) : NULL;
        if (!c->e[c->n].key || !c->e[c->n].value ||
            (cfg->e[c->n].origin && !c->e[c->n].origin)) {
            c->n++;
            sr_config_destroy(c);
            return NULL;
        }
    }
    return c;
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

static sr_err_t unknown_key(struct sr_error *err, const char *key)
{
    const char *near = sr_config_nearest_key(key);
    if (near)
        return sr_error_set(err, SR_ECONFIG, "unknown configuration key '%s' (did you mean '%s'?)",
                            key, near);
    return sr_error_set(err, SR_ECONFIG, "unknown configuration key '%s'", key);
}

static struct sr_config_entry *find_entry(const sr_config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->e[i].key, key) == 0)
            return &cfg->e[i];
    return NULL;
}

static sr_err_t store(sr_config_t *cfg, const char *key, const char *value, const char *origin,
                      struct sr_error *err)
{
    struct sr_config_entry *e = find_entry(cfg, key);
    char *v = strdup(value);
    char *o = origin ? strdup(origin) : NULL;
    if (!v || (origin && !o)) {
        free(v);
        free(o);
        return sr_error_set(err, SR_ENOMEM, "out of memory setting '%s'", key);
    }
    if (e) {
        free(e->value);
        free(e->origin);
        e->value = v;
        e->origin = o;
        return SR_OK;
    }
    if (cfg->n == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 32;
        struct sr_config_entry *ne = realloc(cfg->e, cap * sizeof *ne);
        if (!ne) {
            free(v);
            free(o);
            return sr_error_set(err, SR_ENOMEM, "out of memory setting '%s'", key);
        }
        cfg->e = ne;
        cfg->cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        free(o);
        return sr_error_set(err, SR_ENOMEM, "out of memory setting '%s'", key);
    }
    cfg->e[cfg->n] = (struct sr_config_entry){k, v, o};
    cfg->n++;
    return SR_OK;
}

static sr_err_t set_from(sr_config_t *cfg, const char *key, const char *value, const char *origin,
                         struct sr_error *err)
{
    if (!find_known(key) && !is_passthrough(key))
        return unknown_key(err, key);
    return store(cfg, key, value, origin, err);
}

sr_err_t sr_config_set(sr_config_t *cfg, const char *key, const char *value, struct sr_error *err)
{
    if (!cfg || !key || !value)
        return sr_error_set(err, SR_EINVAL, "sr_config_set: NULL argument");
    return set_from(cfg, key, value, NULL, err);
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

static sr_err_t set_kv(sr_config_t *cfg, const char *kv, const char *origin, struct sr_error *err)
{
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv)
        return sr_error_set(err, SR_ECONFIG, "expected key=value, got '%s'", kv ? kv : "");
    char key[256];
    size_t kl = (size_t)(eq - kv);
    if (kl >= sizeof key)
        return sr_error_set(err, SR_ECONFIG, "configuration key too long in '%.64s...'", kv);
    memcpy(key, kv, kl);
    key[kl] = '\0';
    char *vdup = strdup(eq + 1);
    if (!vdup)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    sr_err_t rc = set_from(cfg, trim(key), trim(vdup), origin, err);
    free(vdup);
    return rc;
}

sr_err_t sr_config_set_kv(sr_config_t *cfg, const char *kv, struct sr_error *err)
{
    return set_kv(cfg, kv, NULL, err);
}

/* ---- problems: every one reported, the first kept in err ------------------------------ */

struct problems {
    sr_config_problem_fn fn;
    void *opaque;
    struct sr_error *err;
    int n;
};

static void problem(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct problems *p, const char *fmt, ...)
{
    char line[sizeof ((struct sr_error *)0)->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->n++ == 0)
        sr_error_set(p->err, SR_ECONFIG, "%s", line);
    if (p->fn)
        p->fn(p->opaque, line);
}

/* ---- the properties format (java.util.Properties.load) ----------------------------------- */

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* Unescapes s[0..n) into o (at most n bytes written: every escape shrinks). Java's rules: \t \n
 * \r \f, \uXXXX (UTF-16 code units; a surrogate pair joins), and '\' before any other character
 * stands for that character. *keep is set to the length up to the last escaped character, so a
 * trailing "\ " survives the trim of trailing blanks. Returns the length, or -1 on a malformed
 * \uXXXX. */
static long unescape(const char *s, size_t n, char *o, size_t *keep)
{
    size_t j = 0;
    *keep = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            if (s[i] != '\\') /* a lone trailing backslash is dropped, as Java does */
                o[j++] = s[i];
            continue;
        }
        char c = s[++i];
        if (c == 'u') {
            unsigned cp = 0;
            for (int d = 0; d < 4; d++) {
                if (i + 1 >= n || !isxdigit((unsigned char)s[i + 1]))
                    return -1;
                char h = s[++i];
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
            }
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n && s[i + 1] == '\\' && s[i + 2] == 'u') {
                unsigned lo = 0;
                bool ok = true;
                for (int d = 0; d < 4 && ok; d++) {
                    char h = s[i + 3 + (size_t)d];
                    ok = isxdigit((unsigned char)h);
                    lo = lo * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
                }
                if (ok && lo >= 0xDC00 && lo < 0xE000) {
                    unsigned full = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    o[j++] = (char)(0xF0 | full >> 18);
                    o[j++] = (char)(0x80 | ((full >> 12) & 0x3F));
                    o[j++] = (char)(0x80 | ((full >> 6) & 0x3F));
                    o[j++] = (char)(0x80 | (full & 0x3F));
                    i += 6;
                    *keep = j;
                    continue;
                }
            }
            j += put_utf8(o + j, cp);
        } else {
            o[j++] = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c == 'f' ? '\f' : c;
        }
        *keep = j;
    }
    return (long)j;
}

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\f'; }

/* One logical line (continuations already joined): splits key and value at the first
 * unescaped '=', ':' or blank, then calls set_from. */
static void parse_logical(sr_config_t *cfg, char *s, size_t n, const char *origin,
                          struct problems *pr)
{
    size_t i = 0;
    while (i < n && !(s[i] == '=' || s[i] == ':' || is_blank(s[i]))) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        i++;
    }
    size_t kend = i;
    while (i < n && is_blank(s[i]))
        i++;
    if (i < n && (s[i] == '=' || s[i] == ':'))
        i++;
    while (i < n && is_blank(s[i]))
        i++;
    char *key = malloc(kend + 1), *val = malloc(n - i + 1);
    size_t kkeep, vkeep;
    long kl = key ? unescape(s, kend, key, &kkeep) : -1;
    long vl = val ? unescape(s + i, n - i, val, &vkeep) : -1;
    struct sr_error e;
    if (!key || !val) {
        problem(pr, "%s: out of memory", origin);
    } else if (kl < 0 || vl < 0) {
        problem(pr, "%s: malformed \\uXXXX escape", origin);
    } else {
        /* Unlike Java, trailing blanks of a value are dropped (a value "10 " would not be an
         * integer); "\ " keeps one. */
        while ((size_t)vl > vkeep && is_blank(val[vl - 1]))
            vl--;
        key[kl] = 0;
        val[vl] = 0;
        if (!*key)
            problem(pr, "%s: empty key", origin);
        else if (memchr(key, 0, (size_t)kl) || memchr(val, 0, (size_t)vl))
            problem(pr, "%s: NUL character", origin);
        else if (set_from(cfg, key, val, origin, &e) != SR_OK)
            problem(pr, "%s: %s", origin, e.msg);
    }
    free(key);
    free(val);
}

/* Reads a properties file the way java.util.Properties.load(Reader) does: natural lines end at
 * \n, \r or \r\n; a line whose end is an odd run of backslashes continues on the next, whose
 * leading blanks are dropped; a first non-blank '#' or '!' makes a comment; the key ends at the
 * first unescaped '=', ':' or blank ("key value", "key: value", "key=value"). */
static sr_err_t load_file(sr_config_t *cfg, const char *path, struct problems *pr)
{
    char *text;
    size_t len;
    struct sr_error e;
    if (sr_file_read_all(path, &text, &len, &e) != SR_OK) {
        problem(pr, "%s", e.msg);
        if (pr->err && pr->n == 1)
            pr->err->code = e.code;
        return e.code;
    }
    char *logical = malloc(len + 1);
    if (!logical) {
        free(text);
        problem(pr, "%s: out of memory", path);
        return SR_ENOMEM;
    }
    size_t p = 0;
    int lineno = 0;
    while (p < len) {
        /* Skip blank lines and comments; remember where the logical line starts. */
        size_t ln = 0;
        int first = 0;
        bool cont = false;
        do {
            size_t b = p;
            while (p < len && text[p] != '\n' && text[p] != '\r')
                p++;
            size_t e_ = p;
            if (p < len && text[p] == '\r' && p + 1 < len && text[p + 1] == '\n')
                p++;
            if (p < len)
                p++;
            lineno++;
            while (b < e_ && is_blank(text[b]))
                b++;
            if (!cont) {
                if (b == e_ || text[b] == '#' || text[b] == '!')
                    break;
                first = lineno;
            }
            size_t bs = 0;
            while (e_ - bs > b && text[e_ - bs - 1] == '\\')
                bs++;
            cont = bs % 2 == 1;
            memcpy(logical + ln, text + b, e_ - b - (cont ? 1 : 0));
            ln += e_ - b - (cont ? 1 : 0);
        } while (cont && p < len);
        if (first) {
            char origin[PATH_MAX + 32];
            snprintf(origin, sizeof origin, "%s:%d", path, first);
            parse_logical(cfg, logical, ln, origin, pr);
        }
    }
    free(logical);
    free(text);
    return SR_OK;
}

/* ---- environment ------------------------------------------------------------------------- */

/* "model.bundle" -> "STREAMREC_MODEL_BUNDLE" */
static void env_name(const char *key, char *out, size_t n)
{
    size_t j = (size_t)snprintf(out, n, "STREAMREC_");
    for (const char *p = key; *p && j + 1 < n; p++)
        out[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = '\0';
}

/* Kubernetes service links for a Service named streamrec[-x]: STREAMREC_SERVICE_HOST,
 * STREAMREC_SERVICE_PORT[_NAME], STREAMREC_PORT, STREAMREC_PORT_9464_TCP[_PROTO|_PORT|_ADDR]. */
static bool is_service_link(const char *name)
{
    if (strstr(name, "_SERVICE_HOST") || strstr(name, "_SERVICE_PORT"))
        return true;
    size_t n = strlen(name);
    if (n >= 5 && !strcmp(name + n - 5, "_PORT"))
        return true;
    const char *p = strstr(name, "_PORT_");
    return p && isdigit((unsigned char)p[6]);
}

/* True when the first word after STREAMREC_ is the first word of a known key ("RECS" for
 * recs.k): such a variable is meant as a key, and an unknown one is a mistake to report. */
static bool key_shaped(const char *name)
{
    const char *w = name + 10;
    size_t wl = strcspn(w, "_");
    for (size_t i = 0; i < N_KNOWN; i++) {
        const char *k = known_keys[i].key;
        size_t kl = strcspn(k, ".");
        if (kl == wl) {
            bool same = true;
            for (size_t j = 0; j < wl && same; j++)
                same = toupper((unsigned char)k[j]) == w[j];
            if (same)
                return true;
        }
    }
    return false;
}

enum env_class { ENV_NONE, ENV_KEY, ENV_IGNORED, ENV_UNKNOWN };

/* Classifies one "NAME=value" entry and gives the key it sets (kbuf) for ENV_KEY. */
static enum env_class env_classify(const char *entry, char *name, size_t name_cap, char *kbuf,
                                   size_t kcap)
{
    if (strncmp(entry, "STREAMREC_", 10) != 0)
        return ENV_NONE;
    const char *eq = strchr(entry, '=');
    size_t nl = eq ? (size_t)(eq - entry) : strlen(entry);
    if (nl >= name_cap)
        return ENV_IGNORED;
    memcpy(name, entry, nl);
    name[nl] = '\0';
    for (size_t i = 0; i < N_KNOWN; i++) {
        char en[256];
        env_name(known_keys[i].key, en, sizeof en);
        if (strcmp(en, name) == 0) {
            snprintf(kbuf, kcap, "%s", known_keys[i].key);
            return ENV_KEY;
        }
    }
    if (is_service_link(name))
        return ENV_IGNORED;
    if (strncmp(name, "STREAMREC_KAFKA_", 16) == 0 && name[16]) {
        size_t j = (size_t)snprintf(kbuf, kcap, "kafka.");
        for (const char *p = name + 16; *p && j + 1 < kcap; p++)
            kbuf[j++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
        kbuf[j] = '\0';
        return ENV_KEY;
    }
    return key_shaped(name) ? ENV_UNKNOWN : ENV_IGNORED;
}

static void apply_env(sr_config_t *cfg, char *const *envp, struct problems *pr)
{
    for (char *const *ep = envp; ep && *ep; ep++) {
        char name[256], kbuf[256];
        enum env_class c = env_classify(*ep, name, sizeof name, kbuf, sizeof kbuf);
        struct sr_error e;
        if (c == ENV_KEY) {
            if (store(cfg, kbuf, strchr(*ep, '=') ? strchr(*ep, '=') + 1 : "", name, &e) != SR_OK)
                problem(pr, "environment: %s", e.msg);
        } else if (c == ENV_UNKNOWN) {
            /* Suggest by the key this variable would spell. */
            size_t j = 0;
            for (const char *p = name + 10; *p && j + 1 < sizeof kbuf; p++)
                kbuf[j++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
            kbuf[j] = '\0';
            const char *near = sr_config_nearest_key(kbuf);
            char en[256];
            if (near)
                env_name(near, en, sizeof en);
            problem(pr, "environment: %s is not a configuration variable%s%s%s", name,
                    near ? " (did you mean " : "", near ? en : "", near ? "?)" : "");
        }
    }
}

/* ---- values: one parser per kind, shared by the check and the getters -------------------- */

static bool parse_i64(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return false;
    *out = x;
    return true;
}

/* Reads an INT key's "lo..hi" (empty hi: INT64_MAX). */
static void int_range(const struct sr_config_known *k, int64_t *lo, int64_t *hi)
{
    *lo = INT64_MIN;
    *hi = INT64_MAX;
    if (!k || k->kind != K_INT)
        return;
    const char *dots = strstr(k->allowed, "..");
    *lo = strtoll(k->allowed, NULL, 10);
    if (dots && dots[2])
        *hi = strtoll(dots + 2, NULL, 10);
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const t[] = {"true", "1", "yes", "on"}, *const f[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(v, t[i]) || !strcmp(v, f[i])) {
            *out = !strcmp(v, t[i]);
            return true;
        }
    }
    return false;
}

static bool in_enum(const char *allowed, const char *v)
{
    size_t vl = strlen(v);
    for (const char *a = allowed; *a;) {
        size_t al = strcspn(a, "|");
        if (al == vl && !strncmp(a, v, vl))
            return true;
        a += al + (a[al] ? 1 : 0);
    }
    return false;
}

sr_err_t sr_hostport_parse(const char *s, char *host, size_t host_cap, int *port,
                           struct sr_error *err)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || !colon[1])
        return sr_error_set(err, SR_ECONFIG, "'%s' is not host:port", s ? s : "");
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl)) {
        return sr_error_set(err, SR_ECONFIG, "'%s': an IPv6 host goes in brackets ([::1]:9464)", s);
    }
    if (hl >= host_cap)
        return sr_error_set(err, SR_ECONFIG, "'%s': host too long", s);
    for (size_t i = 0; i < hl; i++)
        if (!isalnum((unsigned char)h[i]) && !strchr(".-_:%", h[i]))
            return sr_error_set(err, SR_ECONFIG, "'%s': bad host", s);
    int64_t p;
    if (!parse_i64(colon + 1, &p) || p < 0 || p > 65535 || !isdigit((unsigned char)colon[1]))
        return sr_error_set(err, SR_ECONFIG, "'%s': port is not 0..65535", s);
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return SR_OK;
}

/* Kafka's rule: 1..249 of [a-zA-Z0-9._-], not "." or "..". */
static bool topic_name_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 249 || !strcmp(v, ".") || !strcmp(v, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("._-", v[i]))
            return false;
    return true;
}

/* What a key allows, in words, for messages ("one of json, avro, avro-confluent"). */
static void describe(const struct sr_config_known *k, char *out, size_t n)
{
    int64_t lo, hi;
    switch (k->kind) {
    case K_INT:
        int_range(k, &lo, &hi);
        if (hi == INT64_MAX)
            snprintf(out, n, "an integer >= %lld", (long long)lo);
        else
            snprintf(out, n, "an integer in %lld..%lld", (long long)lo, (long long)hi);
        break;
    case K_BOOL:
        snprintf(out, n, "true or false");
        break;
    case K_ENUM: {
        size_t j = (size_t)snprintf(out, n, "one of ");
        for (const char *a = k->allowed; *a && j + 3 < n; a++)
            j += (size_t)snprintf(out + j, n - j, *a == '|' ? ", " : "%c", *a);
        break;
    }
    case K_TOPIC:
        snprintf(out, n, "one topic name ([a-zA-Z0-9._-], at most 249)%s",
                 strcmp(k->allowed, "opt") ? "" : " or empty (off)");
        break;
    case K_HOSTPORT:
        snprintf(out, n, "host:port, [ipv6]:port, :port (every interface) or empty (off)");
        break;
    case K_DIR:
    case K_FILE:
        snprintf(out, n, "an existing %s%s", k->kind == K_DIR ? "directory" : "file",
                 strcmp(k->allowed, "opt") ? "" : " or empty");
        break;
    default:
        snprintf(out, n, "any text");
    }
}

/* Checks v against k; on failure writes the reason (what is wrong beyond "not allowed") to
 * why (may be empty) and returns false. */
static bool value_ok(const struct sr_config_known *k, const char *v, char *why, size_t n)
{
    why[0] = 0;
    int64_t x, lo, hi;
    bool b;
    struct stat st;
    bool opt = !strcmp(k->allowed, "opt");
    switch (k->kind) {
    case K_INT:
        int_range(k, &lo, &hi);
        return parse_i64(v, &x) && x >= lo && x <= hi;
    case K_BOOL:
        return parse_bool(v, &b);
    case K_ENUM:
        return in_enum(k->allowed, v);
    case K_TOPIC:
        if (strchr(v, ',')) {
            snprintf(why, n, "; a comma list is not supported (one topic per key; run one "
                             "streamrec per input topic)");
            return false;
        }
        return (opt && !*v) || topic_name_ok(v);
    case K_HOSTPORT: {
        char host[256];
        int port;
        struct sr_error e;
        return !*v || sr_hostport_parse(v, host, sizeof host, &port, &e) == SR_OK;
    }
    case K_DIR:
    case K_FILE:
        if (opt && !*v)
            return true;
        if (stat(v, &st) != 0) {
            snprintf(why, n, " (%s)", strerror(errno));
            return false;
        }
        return k->kind == K_DIR ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
    default:
        return true;
    }
}

/* The one message for a bad value: "[origin: ]key=value: expected ALLOWED[reason]". */
static void bad_value(struct problems *pr, const struct sr_config_known *k, const char *v,
                      const char *origin, const char *why)
{
    char allowed[256];
    describe(k, allowed, sizeof allowed);
    problem(pr, "%s%s%s=%s: expected %s%s", origin ? origin : "", origin ? ": " : "", k->key,
            sr_config_key_is_secret(k->key) ? "***" : v, allowed, why);
}

sr_err_t sr_config_check(const sr_config_t *cfg, sr_config_problem_fn each, void *opaque,
                         struct sr_error *err)
{
    struct problems pr = {.fn = each, .opaque = opaque, .err = err};
    for (size_t i = 0; i < N_KNOWN; i++) {
        const struct sr_config_known *k = &known_keys[i];
        const struct sr_config_entry *e = cfg ? find_entry(cfg, k->key) : NULL;
        const char *v = e ? e->value : k->def;
        char why[160];
        if (!v) {
            if (k->kind == K_DIR && strcmp(k->allowed, "opt")) {
                char allowed[128];
                describe(k, allowed, sizeof allowed);
                problem(&pr, "%s is not set: expected %s (-c FILE, STREAMREC_* or --set)", k->key,
                        allowed);
            }
            continue;
        }
        if (!value_ok(k, v, why, sizeof why))
            bad_value(&pr, k, v, e ? e->origin : NULL, why);
    }
    return pr.n ? SR_ECONFIG : SR_OK;
}

sr_err_t sr_config_load(sr_config_t *cfg, const struct sr_config_sources *src,
                        sr_config_problem_fn each, void *opaque, struct sr_error *err)
{
    struct problems pr = {.fn = each, .opaque = opaque, .err = err};
    sr_err_t frc = src->file ? load_file(cfg, src->file, &pr) : SR_OK;
    if (frc != SR_OK)
        return frc;
    apply_env(cfg, src->envp, &pr);
    for (int i = 0; i < src->n_sets; i++) {
        struct sr_error e;
        if (set_kv(cfg, src->sets[i], "--set", &e) != SR_OK)
            problem(&pr, "--set %s: %s", src->sets[i], e.msg);
    }
    if (src->apply_log_level && sr_config_is_set(cfg, "log.level")) {
        sr_log_level_t level;
        if (sr_log_level_parse(sr_config_get(cfg, "log.level"), &level) == SR_OK)
            sr_log_set_level(level);
    }
    if (src->apply_log_level && sr_config_is_set(cfg, "log.format")) {
        sr_log_format_t f;
        if (sr_log_format_parse(sr_config_get(cfg, "log.format"), &f) == SR_OK)
            sr_log_set_format(f);
    }
    /* After log.level took effect, so `--set log.level=debug` shows these. */
    for (char *const *ep = src->envp; ep && *ep; ep++) {
        char name[256], kbuf[256];
        if (env_classify(*ep, name, sizeof name, kbuf, sizeof kbuf) == ENV_IGNORED)
            sr_log(SR_LOG_DEBUG, "config", "environment variable ignored: not a configuration key",
                   "name=%s", name);
    }
    struct problems chk = pr;
    chk.err = pr.n ? NULL : err;
    sr_err_t rc = sr_config_check(cfg, each, opaque, chk.err);
    return pr.n ? SR_ECONFIG : rc;
}

const char *sr_config_get(const sr_config_t *cfg, const char *key)
{
    const struct sr_config_entry *e = cfg ? find_entry(cfg, key) : NULL;
    if (e)
        return e->value;
    const struct sr_config_known *k = find_known(key);
    return k ? k->def : NULL;
}

const char *sr_config_origin(const sr_config_t *cfg, const char *key)
{
    const struct sr_config_entry *e = cfg ? find_entry(cfg, key) : NULL;
    return e ? e->origin : NULL;
}

bool sr_config_is_set(const sr_config_t *cfg, const char *key)
{
    return cfg && find_entry(cfg, key) != NULL;
}

/* A getter's failure: the same message the start-up check gives. */
static sr_err_t get_failed(const sr_config_t *cfg, const char *key, const char *v, const char *what,
                           struct sr_error *err)
{
    const struct sr_config_known *k = find_known(key);
    if (k) {
        struct problems pr = {.err = err};
        bad_value(&pr, k, v, sr_config_origin(cfg, key), "");
        return SR_ECONFIG;
    }
    return sr_error_set(err, SR_ECONFIG, "configuration key '%s': '%s' is not %s", key, v, what);
}

sr_err_t sr_config_get_int(const sr_config_t *cfg, const char *key, int64_t *out, struct sr_error *err)
{
    const char *v = sr_config_get(cfg, key);
    if (!v || !*v)
        return sr_error_set(err, SR_ECONFIG, "configuration key '%s' is not set", key);
    int64_t x, lo, hi;
    int_range(find_known(key), &lo, &hi);
    if (!parse_i64(v, &x) || x < lo || x > hi)
        return get_failed(cfg, key, v, "an integer", err);
    *out = x;
    return SR_OK;
}

sr_err_t sr_config_get_bool(const sr_config_t *cfg, const char *key, bool *out, struct sr_error *err)
{
    const char *v = sr_config_get(cfg, key);
    if (v && parse_bool(v, out))
        return SR_OK;
    return get_failed(cfg, key, v ? v : "", "a boolean (true/false)", err);
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
