/* registry.c — the Schema Registry client (DESIGN §4): writer schemas fetched by id
 * (GET /schemas/ids/{id}), the output schema registered under a subject (POST
 * /subjects/{subject}/versions, which answers the existing id when it is already registered),
 * and a reachability probe (GET /subjects) retried with exponential backoff at start-up. Speaks
 * the Confluent REST API over libcurl (basic auth, TLS CA/client certificate, timeouts); libcurl
 * and jansson errors are translated here into sr_error values naming the URL and the problem.
 * Also the registry's JSON form of a schema file ({"schema": "..."}) for the directory mode,
 * and process-wide counters for the runtime's metrics.
 * Owns one curl handle per client. Threads: a client is used by one thread at a time (the
 * decoder's client on the graph's worker thread, the registration at start-up on the caller's);
 * never on the libuv loop. The counters are atomics, read from any thread. */
#include "schemas_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMP "schema-registry"
#define MAX_URLS 8

struct sr_registry {
    char *urls[MAX_URLS]; /* base URLs without trailing '/' */
    int n_urls, cur;      /* cur: the one that answered last */
    struct sr_registry_params p;
    char *user_info, *ca, *cert, *key, *key_password; /* copies of the params' strings */
    CURL *curl;
    struct curl_slist *headers;
    struct sr_buf body;
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- process-wide counters --------------------------------------------------------------- */

static struct {
    uint64_t requests, failures, retries, fetched, unknown, registered;
    int up; /* -1 never asked, 0 the last request did not reach a registry, 1 it did */
    int configured;
} g_stats = {.up = -1};

void sr_registry_stats_get(struct sr_registry_stats *out)
{
    out->requests = __atomic_load_n(&g_stats.requests, __ATOMIC_RELAXED);
    out->failures = __atomic_load_n(&g_stats.failures, __ATOMIC_RELAXED);
    out->retries = __atomic_load_n(&g_stats.retries, __ATOMIC_RELAXED);
    out->schemas_fetched = __atomic_load_n(&g_stats.fetched, __ATOMIC_RELAXED);
    out->unknown_ids = __atomic_load_n(&g_stats.unknown, __ATOMIC_RELAXED);
    out->registered = __atomic_load_n(&g_stats.registered, __ATOMIC_RELAXED);
    out->up = __atomic_load_n(&g_stats.up, __ATOMIC_RELAXED);
    out->configured = __atomic_load_n(&g_stats.configured, __ATOMIC_RELAXED) != 0;
}

static void stat_add(uint64_t *c) { __atomic_fetch_add(c, 1, __ATOMIC_RELAXED); }

/* ---- configuration ----------------------------------------------------------------------- */

static sr_err_t get_ms(const sr_config_t *cfg, const char *key, int64_t min, int64_t *out,
                       struct sr_error *err)
{
    sr_err_t rc = sr_config_get_int(cfg, key, out, err);
    if (rc == SR_OK && *out < min)
        rc = sr_error_set(err, SR_ECONFIG, "%s=%" PRId64 ": must be >= %" PRId64, key, *out, min);
    return rc;
}

static const char *nonempty(const sr_config_t *cfg, const char *key)
{
    const char *v = sr_config_get(cfg, key);
    return v && *v ? v : NULL;
}

sr_err_t sr_registry_params_from_config(const sr_config_t *cfg, struct sr_registry_params *p,
                                        struct sr_error *err)
{
    memset(p, 0, sizeof *p);
    p->url = nonempty(cfg, "schema.registry.url");
    p->user_info = nonempty(cfg, "schema.registry.basic.auth.user.info");
    p->ca_location = nonempty(cfg, "schema.registry.ssl.ca.location");
    p->cert_location = nonempty(cfg, "schema.registry.ssl.certificate.location");
    p->key_location = nonempty(cfg, "schema.registry.ssl.key.location");
    p->key_password = nonempty(cfg, "schema.registry.ssl.key.password");
    sr_err_t rc = SR_OK;
    if (rc == SR_OK)
        rc = get_ms(cfg, "schema.registry.connect.timeout.ms", 1, &p->connect_timeout_ms, err);
    if (rc == SR_OK)
        rc = get_ms(cfg, "schema.registry.request.timeout.ms", 1, &p->request_timeout_ms, err);
    if (rc == SR_OK)
        rc = get_ms(cfg, "schema.registry.retry.backoff.ms", 1, &p->backoff_ms, err);
    if (rc == SR_OK)
        rc = get_ms(cfg, "schema.registry.retry.backoff.max.ms", 1, &p->backoff_max_ms, err);
    if (rc == SR_OK)
        rc = get_ms(cfg, "schema.registry.retry.timeout.ms", 0, &p->retry_timeout_ms, err);
    if (rc == SR_OK)
        rc = get_ms(cfg, "schema.registry.negative.cache.ms", 0, &p->negative_cache_ms, err);
    if (rc == SR_OK && p->user_info && !strchr(p->user_info, ':'))
        rc = sr_error_set(err, SR_ECONFIG,
                          "schema.registry.basic.auth.user.info: expected user:password");
    if (rc == SR_OK && (!p->cert_location) != (!p->key_location))
        rc = sr_error_set(err, SR_ECONFIG, "schema.registry.ssl.certificate.location and "
                          "schema.registry.ssl.key.location go together");
    return rc;
}

void sr_registry_params_default(struct sr_registry_params *p)
{
    memset(p, 0, sizeof *p);
    p->connect_timeout_ms = 5000;
    p->request_timeout_ms = 10000;
    p->backoff_ms = 100;
    p->backoff_max_ms = 5000;
    p->retry_timeout_ms = 60000;
    p->negative_cache_ms = 30000;
}

/* ---- client ------------------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

void sr_registry_destroy(sr_registry_t *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_urls; i++)
        free(r->urls[i]);
    if (r->curl)
        curl_easy_cleanup(r->curl);
    curl_slist_free_all(r->headers);
    sr_buf_free(&r->body);
    if (r->user_info)
        memset(r->user_info, 0, strlen(r->user_info));
    if (r->key_password)
        memset(r->key_password, 0, strlen(r->key_password));
    free(r->user_info);
    free(r->ca);
    free(r->cert);
    free(r->key);
    free(r->key_password);
    free(r);
}

sr_err_t sr_registry_new(const struct sr_registry_params *p, sr_registry_t **out,
                         struct sr_error *err)
{
    if (!p || !out || !p->url || !*p->url)
        return sr_error_set(err, SR_EINVAL, "sr_registry_new: no schema.registry.url");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return sr_error_set(err, SR_EINTERNAL, "schema registry: libcurl init: %s",
                            curl_easy_strerror(curl_init_rc));
    sr_registry_t *r = calloc(1, sizeof *r);
    if (!r)
        return sr_error_set(err, SR_ENOMEM, "schema registry client");
    r->p = *p;
    r->p.url = NULL; /* the copies below are used; the caller's strings are not kept */
    char list[2048];
    const char *items[MAX_URLS];
    int n = sr_split_csv(p->url, list, sizeof list, items, MAX_URLS);
    sr_err_t rc = SR_OK;
    if (n <= 0)
        rc = sr_error_set(err, SR_ECONFIG, "schema.registry.url '%s': expected a comma list of "
                          "at most %d http(s):// URLs", p->url, MAX_URLS);
    for (int i = 0; rc == SR_OK && i < n; i++) {
        if (strncmp(items[i], "http://", 7) && strncmp(items[i], "https://", 8)) {
            rc = sr_error_set(err, SR_ECONFIG, "schema.registry.url '%s': not an http:// or "
                              "https:// URL", items[i]);
            break;
        }
        size_t len = strlen(items[i]);
        while (len && items[i][len - 1] == '/')
            len--;
        if (!(r->urls[i] = strndup(items[i], len)))
            rc = sr_error_set(err, SR_ENOMEM, "schema registry client");
        r->n_urls = i + 1;
    }
    if (rc == SR_OK) {
        r->user_info = dup_or_null(p->user_info);
        r->ca = dup_or_null(p->ca_location);
        r->cert = dup_or_null(p->cert_location);
        r->key = dup_or_null(p->key_location);
        r->key_password = dup_or_null(p->key_password);
        r->headers = curl_slist_append(NULL, "Accept: application/vnd.schemaregistry.v1+json, "
                                             "application/vnd.schemaregistry+json, application/json");
        struct curl_slist *h = r->headers ? curl_slist_append(r->headers,
                                   "Content-Type: application/vnd.schemaregistry.v1+json") : NULL;
        if (h)
            r->headers = h;
        r->curl = curl_easy_init();
        if ((p->user_info && !r->user_info) || (p->ca_location && !r->ca) ||
            (p->cert_location && !r->cert) || (p->key_location && !r->key) ||
            (p->key_password && !r->key_password) || !h || !r->curl)
            rc = sr_error_set(err, SR_ENOMEM, "schema registry client");
    }
    if (rc != SR_OK) {
        sr_registry_destroy(r);
        return rc;
    }
    __atomic_store_n(&g_stats.configured, 1, __ATOMIC_RELAXED);
    *out = r;
    return SR_OK;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct sr_registry *r = ud;
    size_t n = size * nmemb;
    /* A schema is a few KB; 16 MiB bounds what a misbehaving server can make us hold. */
    if (r->body.len + n > ((size_t)16 << 20) || sr_buf_append(&r->body, ptr, n) != SR_OK)
        return 0;
    return n;
}

/* One HTTP exchange with the current URL. SR_OK: *status is the HTTP status and r->body the
 * NUL-terminated response. SR_EAGAIN: no answer (connection, TLS, timeout), err says why. */
static sr_err_t http_once(sr_registry_t *r, const char *method, const char *path,
                          const char *body, long *status, struct sr_error *err)
{
    CURL *c = r->curl;
    char url[4096];
    snprintf(url, sizeof url, "%s%s", r->urls[r->cur], path);
    curl_easy_reset(c);
    sr_buf_reset(&r->body);
    r->errbuf[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)r->p.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->p.request_timeout_ms);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "streamrec");
    if (r->user_info) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERPWD, r->user_info);
    }
    if (r->ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, r->ca);
    if (r->cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, r->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, r->key);
        if (r->key_password)
            curl_easy_setopt(c, CURLOPT_KEYPASSWD, r->key_password);
    }
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    stat_add(&g_stats.requests);
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK && sr_buf_append(&r->body, "", 1) != SR_OK)
        cc = CURLE_OUT_OF_MEMORY;
    if (cc != CURLE_OK) {
        stat_add(&g_stats.failures);
        __atomic_store_n(&g_stats.up, 0, __ATOMIC_RELAXED);
        return sr_error_set(err, cc == CURLE_OUT_OF_MEMORY ? SR_ENOMEM : SR_EAGAIN,
                            "schema registry %s %s: %s", method, url,
                            r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    }
    r->body.len--; /* keep the NUL out of len */
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    __atomic_store_n(&g_stats.up, 1, __ATOMIC_RELAXED);
    if (*status >= 500) {
        stat_add(&g_stats.failures);
        return sr_error_set(err, SR_EAGAIN, "schema registry %s %s: HTTP %ld %.200s", method, url,
                            *status,
                            r->body.data);
    }
    return SR_OK;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* An exchange retried while the registry does not answer (connection refused, timeout, HTTP
 * 5xx): every URL of the list in turn, then exponential backoff from retry.backoff.ms to
 * retry.backoff.max.ms, for at most retry.timeout.ms. Every failed attempt is logged (warn) and
 * counted; the first success after failures is logged (info). SR_EAGAIN when time ran out. */
static sr_err_t http(sr_registry_t *r, const char *method, const char *path, const char *body,
                     const char *what, long *status, struct sr_error *err)
{
    uint64_t deadline = sr_now_ns() + (uint64_t)r->p.retry_timeout_ms * 1000000ULL;
    int64_t backoff = r->p.backoff_ms;
    for (int attempt = 1;; attempt++) {
        sr_err_t rc = http_once(r, method, path, body, status, err);
        if (rc == SR_OK) {
            if (attempt > 1)
                sr_log(SR_LOG_INFO, CMP, "schema registry reachable again", "url=%s what=\"%s\" "
                       "attempts=%d", r->urls[r->cur], what, attempt);
            return SR_OK;
        }
        if (rc != SR_EAGAIN)
            return rc;
        uint64_t now = sr_now_ns();
        if (r->n_urls > 1 && attempt % r->n_urls != 0) {
            r->cur = (r->cur + 1) % r->n_urls; /* try the next URL at once */
            if (now < deadline)
                continue;
        }
        if (now >= deadline) {
            sr_log(SR_LOG_ERROR, CMP, "schema registry unreachable", "what=\"%s\" attempts=%d "
                   "retry_timeout_ms=%" PRId64 " error=\"%s\"", what, attempt,
                   r->p.retry_timeout_ms, err ? err->msg : "");
            if (err)
                sr_error_prefix(err, "%s: gave up after %d attempts", what, attempt);
            return SR_EAGAIN;
        }
        int64_t left_ms = (int64_t)((deadline - now) / 1000000ULL);
        int64_t wait = backoff < left_ms ? backoff : left_ms;
        sr_log(SR_LOG_WARN, CMP, "schema registry not answering, retrying", "what=\"%s\" "
               "attempt=%d retry_in_ms=%" PRId64 " error=\"%s\"", what, attempt, wait,
               err ? err->msg : "");
        stat_add(&g_stats.retries);
        sleep_ms(wait);
        backoff = backoff > r->p.backoff_max_ms / 2 ? r->p.backoff_max_ms : backoff * 2;
    }
}

/* The message of a Confluent error body {"error_code": 40403, "message": "..."}, or the
 * body's first bytes. */
static void error_text(const char *body, char *out, size_t n, long *code)
{
    json_t *j = json_loads(body, 0, NULL);
    const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
    *code = j ? (long)json_integer_value(json_object_get(j, "error_code")) : 0;
    snprintf(out, n, "%.200s", m ? m : body);
    json_decref(j);
}

sr_err_t sr_registry_probe(sr_registry_t *r, struct sr_error *err)
{
    long status = 0;
    sr_err_t rc = http(r, "GET", "/subjects", NULL, "start-up check", &status, err);
    if (rc != SR_OK)
        return rc;
    if (status == 200)
        return SR_OK;
    char msg[256];
    long code;
    error_text(r->body.data, msg, sizeof msg, &code);
    /* Wrong credentials stop the start; any other answer means the registry is there (a key
     * scoped to some subjects may not list them all, and fetching by id can still work). */
    if (status == 401)
        return sr_error_set(err, SR_ECONFIG, "schema registry %s/subjects: HTTP 401 %s (check "
                            "schema.registry.basic.auth.user.info)", r->urls[r->cur], msg);
    sr_log(SR_LOG_WARN, CMP, "schema registry start-up check answered", "url=%s/subjects "
           "status=%ld error=\"%s\"", r->urls[r->cur], status, msg);
    return SR_OK;
}

sr_err_t sr_registry_get_schema(sr_registry_t *r, uint32_t id, char **text,
                                struct sr_error *err)
{
    char path[64], what[64];
    snprintf(path, sizeof path, "/schemas/ids/%" PRIu32, id);
    snprintf(what, sizeof what, "schema id %" PRIu32, id);
    long status = 0;
    sr_err_t rc = http(r, "GET", path, NULL, what, &status, err);
    if (rc != SR_OK)
        return rc;
    char msg[256];
    long code = 0;
    if (status != 200) {
        error_text(r->body.data, msg, sizeof msg, &code);
        if (status == 404) {
            stat_add(&g_stats.unknown);
            return sr_error_set(err, SR_ENOENT, "schema id %" PRIu32 " not found in the "
                                "registry (%ld %s)", id, code, msg);
        }
        return sr_error_set(err, status == 401 || status == 403 ? SR_ECONFIG : SR_EFORMAT,
                            "schema id %" PRIu32 ": registry answered HTTP %ld %s", id, status,
                            msg);
    }
    json_t *j = json_loadb(r->body.data, r->body.len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "schemaType"));
    const char *schema = json_string_value(json_object_get(j, "schema"));
    if (!schema) {
        json_decref(j);
        return sr_error_set(err, SR_EFORMAT, "schema id %" PRIu32 ": registry response is not "
                            "{\"schema\": ...}: %.100s", id, r->body.data);
    }
    if (type && strcmp(type, "AVRO")) {
        json_decref(j);
        return sr_error_set(err, SR_EUNSUPPORTED, "schema id %" PRIu32 " is a %s schema, not "
                            "Avro", id, type);
    }
    *text = schema ? strdup(schema) : NULL;
    json_decref(j);
    if (!*text)
        return sr_error_set(err, SR_ENOMEM, "schema id %" PRIu32, id);
    stat_add(&g_stats.fetched);
    return SR_OK;
}

sr_err_t sr_registry_register(sr_registry_t *r, const char *subject, const char *schema_json,
                              int32_t *id, struct sr_error *err)
{
    json_t *req = json_pack("{s:s, s:s}", "schema", schema_json, "schemaType", "AVRO");
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    char *esc = curl_easy_escape(r->curl, subject, 0);
    if (!body || !esc) {
        free(body);
        curl_free(esc);
        return sr_error_set(err, SR_ENOMEM, "schema registration");
    }
    char path[1024], what[600];
    snprintf(path, sizeof path, "/subjects/%s/versions", esc);
    snprintf(what, sizeof what, "registration of subject %s", subject);
    curl_free(esc);
    long status = 0;
    sr_err_t rc = http(r, "POST", path, body, what, &status, err);
    free(body);
    if (rc != SR_OK)
        return rc;
    char msg[256];
    long code = 0;
    if (status != 200) {
        error_text(r->body.data, msg, sizeof msg, &code);
        return sr_error_set(err, status == 409 ? SR_EFORMAT : SR_ECONFIG,
                            "registering the output schema under subject %s: HTTP %ld "
                            "(error_code %ld) %s", subject, status, code, msg);
    }
    json_t *j = json_loadb(r->body.data, r->body.len, 0, NULL);
    json_t *v = json_object_get(j, "id");
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(j);
    if (n < 0 || n > INT32_MAX)
        return sr_error_set(err, SR_EFORMAT, "registering subject %s: response has no id: "
                            "%.100s", subject, r->body.data);
    *id = (int32_t)n;
    stat_add(&g_stats.registered);
    sr_log(SR_LOG_INFO, CMP, "output schema registered", "subject=%s id=%d url=%s", subject,
           (int)*id, r->urls[r->cur]);
    return SR_OK;
}

/* ---- the registry's JSON form of a schema ------------------------------------------------- */

sr_err_t sr__schema_text_unwrap(const char *text, size_t len, char **unwrapped,
                                size_t *unwrapped_len)
{
    *unwrapped = NULL;
    *unwrapped_len = 0;
    /* The registry form is an object whose "schema" member is a string; an Avro schema is a
     * string, an array or an object with "type", so the two cannot be confused. */
    json_t *j = json_loadb(text, len, 0, NULL);
    if (!j)
        return SR_OK; /* not JSON: the Avro parser names the problem */
    json_t *s = json_object_get(j, "schema");
    sr_err_t rc = SR_OK;
    if (json_is_object(j) && json_is_string(s) && !json_object_get(j, "type")) {
        size_t n = json_string_length(s);
        if ((*unwrapped = malloc(n + 1))) {
            memcpy(*unwrapped, json_string_value(s), n + 1);
            *unwrapped_len = n;
        } else {
            rc = SR_ENOMEM;
        }
    }
    json_decref(j);
    return rc;
}

/* ---- configuration helpers for the codecs' users ----------------------------------------- */

sr_err_t sr_output_schema_id(const sr_config_t *cfg, const char *topic, int32_t *id,
                             struct sr_error *err)
{
    int64_t fixed = 1;
    sr_err_t rc = sr_config_get_int(cfg, "output.avro.schema_id", &fixed, err);
    if (rc != SR_OK)
        return rc;
    if (fixed < 0 || fixed > INT32_MAX)
        return sr_error_set(err, SR_ECONFIG, "output.avro.schema_id=%" PRId64 ": out of range "
                            "0..%d", fixed, INT32_MAX);
    struct sr_registry_params p;
    rc = sr_registry_params_from_config(cfg, &p, err);
    if (rc != SR_OK || !p.url) {
        *id = (int32_t)fixed;
        return rc;
    }
    if (sr_config_is_set(cfg, "output.avro.schema_id"))
        sr_log(SR_LOG_WARN, CMP, "output.avro.schema_id ignored", "reason=\"schema.registry.url "
               "is set: the id is the registry's\"");
    sr_registry_t *r;
    rc = sr_registry_new(&p, &r, err);
    if (rc != SR_OK)
        return rc;
    char subject[512];
    snprintf(subject, sizeof subject, "%s-value", topic);
    /* the schema the graph's records use (DESIGN §4.3): version 1 while no item carries its
     * source, so a deployment that does not turn trending on registers nothing new */
    rc = sr_registry_register(r, subject,
                              sr_schema_recommendation_json_for(sr_rec_v2_configured(cfg)),
                              id, err);
    sr_registry_destroy(r);
    return rc;
}
