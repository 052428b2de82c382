#!/usr/bin/env python3
"""tests/schemas/registry_proxy.py — an HTTP front for a real Schema Registry, as deployments
put one (an ingress doing basic auth): it listens only after a delay (a registry that is down
when streamrec starts), requires `Authorization: Basic <user:password>` (401 with a Confluent
error body otherwise) and forwards everything else unchanged to the upstream registry.

usage: registry_proxy.py PORT UPSTREAM_URL USER:PASSWORD DELAY_MS
Stops by itself after 120 s. Used by test_registry.c."""
import base64
import http.server
import sys
import threading
import time
import urllib.error
import urllib.request

port, upstream, user_info, delay_ms = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3], int(sys.argv[4])
expected = "Basic " + base64.b64encode(user_info.encode()).decode()


class Handler(http.server.BaseHTTPRequestHandler):
    def _forward(self, method):
        if self.headers.get("Authorization") != expected:
            body = b'{"error_code":401,"message":"Unauthorized"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else None
        req = urllib.request.Request(upstream + self.path, data=data, method=method)
        for h in ("Content-Type", "Accept"):
            if self.headers.get(h):
                req.add_header(h, self.headers[h])
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, body, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, body, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._forward("GET")

    def do_POST(self):
        self._forward("POST")

    def log_message(self, fmt, *args):
        pass


time.sleep(delay_ms / 1000.0)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
threading.Timer(120, srv.shutdown).start()
srv.serve_forever()
