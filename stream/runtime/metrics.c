/* metrics.c — what the metrics endpoint is built from: fixed-bucket histograms rendered as
 * Prometheus text, and a tiny HTTP/1.0 server on the libuv loop (GET and POST; one response per
 * connection, then close). Owns its listener and connection handles.
 * Thread: the loop thread only (libuv handles are never touched elsewhere). */
#include "sr_stream.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- histograms ------------------------------------------------------------------------ */

void sr_hist_init(struct sr_hist *h, const double *le, int n)
{
    memset(h, 0, sizeof *h);
    h->n = n < SR_HIST_MAX_BUCKETS ? n : SR_HIST_MAX_BUCKETS;
    memcpy(h->le, le, sizeof(double) * (size_t)h->n);
}

void sr_hist_add(struct sr_hist *h, double v)
{
    int i = 0;
    while (i < h->n && v > h->le[i])
        i++;
    h->count[i]++;
    h->total++;
    h->sum += v;
}

double sr_hist_quantile(const struct sr_hist *h, double q)
{
    if (!h->total)
        return 0.0;
    double rank = q * (double)h->total;
    uint64_t cum = 0;
    for (int i = 0; i <= h->n; i++) {
        if (h->count[i] && (double)(cum + h->count[i]) >= rank) {
            double lo = i ? h->le[i - 1] : 0.0;
            double hi = i < h->n ? h->le[i] : h->le[h->n - 1];
            double f = (rank - (double)cum) / (double)h->count[i];
            return lo + (hi - lo) * (f < 0 ? 0 : f > 1 ? 1 : f);
        }
        cum += h->count[i];
    }
    return h->n ? h->le[h->n - 1] : 0.0;
}

void sr_hist_write(const struct sr_hist *h, struct sr_buf *out, const char *name, const char *help)
{
    sr_buf_appendf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += h->count[i];
        sr_buf_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], (unsigned long long)cum);
    }
    sr_buf_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name,
            (unsigned long long)h->total, name, h->sum, name, (unsigned long long)h->total);
}

/* ---- HTTP ------------------------------------------------------------------------------ */

#define REQ_MAX 8192

struct sr_http {
    uv_tcp_t server;
    sr_http_handler_fn fn;
    void *ctx;
    struct conn *conns; /* open connections, closed with the server */
    bool closing;
};

struct conn {
    uv_tcp_t tcp;
    uv_write_t wr;
    sr_http_t *http;
    struct conn *next, **pprev;
    struct sr_buf out;
    size_t n;
    bool responded;
    char req[REQ_MAX];
};

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    sr_buf_free(&c->out);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->pprev) {
        *c->pprev = c->next;
        if (c->next)
            c->next->pprev = c->pprev;
        c->pprev = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    conn_close(w->data);
}

static void respond(struct conn *c, int status, const char *ctype, const struct sr_buf *body)
{
    const char *reason = status == 200 ? "OK" : status == 202 ? "Accepted"
                       : status == 404 ? "Not Found" : status == 403 ? "Forbidden"
                       : status == 405 ? "Method Not Allowed" : status == 400 ? "Bad Request"
                       : "Service Unavailable";
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, ctype, body->len);
    sr_buf_append(&c->out, head, (size_t)n);
    sr_buf_append(&c->out, body->data, body->len);
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wr.data = c;
    c->responded = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        conn_close(c);
}

/* 127.0.0.0/8, ::1 or ::ffff:127.x.y.z: the peer is on this host. */
static bool peer_is_loopback(uv_tcp_t *tcp)
{
    struct sockaddr_storage a;
    int len = sizeof a;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&a, &len) != 0)
        return false;
    if (a.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&a)->sin_addr.s_addr) >> 24) == 127;
    if (a.ss_family != AF_INET6)
        return false;
    const struct in6_addr *v6 = &((struct sockaddr_in6 *)&a)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(v6) || (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    buf->base = c->req + c->n;
    buf->len = REQ_MAX - 1 - c->n;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->n += (size_t)nread;
    c->req[c->n] = 0;
    if (c->responded || !strstr(c->req, "\r\n\r\n")) {
        if (c->n >= REQ_MAX - 1)
            conn_close(c);
        return;
    }
    struct sr_buf body = {0};
    int status = 200;
    const char *ctype = "text/plain; charset=utf-8";
    char path[512] = "";
    bool get = !strncmp(c->req, "GET ", 4);
    if (!get && strncmp(c->req, "POST ", 5) != 0) {
        status = 405;
        sr_buf_appendf(&body, "only GET and POST\n");
    } else {
        const char *p = c->req + (get ? 4 : 5), *e = strpbrk(p, " ?\r\n");
        size_t len = e ? (size_t)(e - p) : 0;
        if (len == 0 || len >= sizeof path) {
            status = 400;
            sr_buf_append(&body, "bad request\n", 12);
        } else {
            memcpy(path, p, len);
            path[len] = 0;
            struct sr_http_req req = {.method = get ? "GET" : "POST", .path = path,
                                      .loopback = peer_is_loopback(&c->tcp)};
            c->http->fn(c->http->ctx, &req, &status, &ctype, &body);
        }
    }
    respond(c, status, ctype, &body);
    sr_buf_free(&body);
}

static void on_connection(uv_stream_t *server, int status)
{
    sr_http_t *h = server->data;
    if (status < 0 || h->closing)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->http = h;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    c->next = h->conns;
    if (h->conns)
        h->conns->pprev = &c->next;
    h->conns = c;
    c->pprev = &h->conns;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

sr_err_t sr_http_start(uv_loop_t *loop, const char *listen, sr_http_handler_fn fn, void *ctx,
                       sr_http_t **out, struct sr_error *err)
{
    *out = NULL;
    char host[256];
    int port;
    /* The parser metrics.listen's start-up check uses; ":9464" is every interface, a name
     * (localhost) is resolved once here. */
    if (sr_hostport_parse(listen, host, sizeof host, &port, err) != SR_OK)
        return sr_error_prefix(err, "metrics.listen");
    struct sockaddr_storage addr;
    if (!host[0]) {
        uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&addr);
    } else if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
               uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        uv_getaddrinfo_t req;
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        if (uv_getaddrinfo(loop, &req, NULL, host, NULL, &hints) != 0 || !req.addrinfo)
            return sr_error_set(err, SR_ECONFIG, "metrics.listen: cannot resolve host '%s'", host);
        memcpy(&addr, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)port); /* same offset in v6 */
        uv_freeaddrinfo(req.addrinfo);
    }
    sr_http_t *h = calloc(1, sizeof *h);
    if (!h)
        return sr_error_set(err, SR_ENOMEM, "out of memory");
    h->fn = fn;
    h->ctx = ctx;
    uv_tcp_init(loop, &h->server);
    h->server.data = h;
    int r = uv_tcp_bind(&h->server, (const struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&h->server, 64, on_connection);
    if (r != 0) {
        h->closing = true;
        uv_close((uv_handle_t *)&h->server, (uv_close_cb)free);
        return sr_error_set(err, SR_EIO, "metrics.listen %s:%d: %s", host, port, uv_strerror(r));
    }
    *out = h;
    return SR_OK;
}

static void server_closed(uv_handle_t *hd) { free(hd->data); }

void sr_http_close(sr_http_t *h)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    while (h->conns)
        conn_close(h->conns);
    uv_close((uv_handle_t *)&h->server, server_closed);
}
