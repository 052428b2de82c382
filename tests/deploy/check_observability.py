#!/usr/bin/env python3
"""check_observability.py ROOT {alerts|dashboard} — the Prometheus rules and the Grafana
dashboard under ROOT/deploy refer only to metrics (and labels) the runtime exports.

The exported names and their labels are read from the runtime's source
(stream/runtime/*.c: counter/gauge names, `name{label=...}` series, sr_hist_write histograms
with _bucket/_sum/_count), so a renamed metric fails here. PLANNED lists the names the
dashboard and rules may use before the runtime exports them; each is reported.
alerts: YAML shape (groups, unique CamelCase alert names, severity, summary and description)
and, when promtool is installed (Debian package prometheus), `promtool check rules` and
`promtool test rules deploy/prometheus/alerts.test.yml`.
dashboard: JSON shape (unique panel ids, every panel with a datasource and a query, the
panels the deployment guide names) and, with promtool, every query parsed as PromQL (each
becomes a recording rule for `promtool check rules`). Exit 1 with one line per problem."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("skip: python3-yaml not installed")
    sys.exit(77)

# Label names any series carries once scraped (Prometheus target labels, kube-state-metrics).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "le", "condition"}
# Metrics planned but not exported yet, with their labels (none now).
PLANNED = {}


def exported(root):
    names = {}
    for path in sorted(glob.glob(os.path.join(root, "stream", "runtime", "*.c"))):
        src = open(path, encoding="utf-8").read()
        for m in re.finditer(r'"(streamrec_[a-z0-9_]+)', src):
            names.setdefault(m.group(1), set())
        for m in re.finditer(r'(streamrec_[a-z0-9_]+)\{([^}"]*(?:\\"[^}]*)*)\}', src):
            names.setdefault(m.group(1), set()).update(re.findall(r'(\w+)=\\"', m.group(2)))
        for m in re.finditer(r'sr_hist_write\([^;]*?"(streamrec_[a-z0-9_]+)"', src, re.S):
            base = m.group(1)
            names.setdefault(base + "_bucket", set()).add("le")
            names.setdefault(base + "_sum", set())
            names.setdefault(base + "_count", set())
    return names


def check_expr(expr, where, known, problems, used):
    """Every streamrec_* name in expr is known; its label matchers name known labels."""
    for m in re.finditer(r'\b(streamrec_[a-z0-9_]+)\b(\{[^}]*\})?', expr):
        name, sel = m.group(1), m.group(2) or ""
        used.add(name)
        if name not in known:
            problems.append("%s: %s is not exported by stream/runtime/*.c" % (where, name))
            continue
        for lab in re.findall(r'(\w+)\s*(?:=~|!~|!=|=)', sel):
            if lab not in known[name] and lab not in TARGET_LABELS:
                problems.append("%s: %s has no label %s (it has: %s)"
                                % (where, name, lab, ", ".join(sorted(known[name])) or "none"))
    for m in re.finditer(r'\b(?:by|without)\s*\(([^)]*)\)', expr):
        for lab in re.split(r'\s*,\s*', m.group(1).strip()):
            if lab and not any(lab in known.get(n, ()) for n in re.findall(r'streamrec_\w+', expr)) \
                    and lab not in TARGET_LABELS:
                problems.append("%s: grouping label %s is on none of the metrics used" % (where, lab))


def promtool_rules(exprs, problems):
    """Parses each expression with promtool (as recording rules); skipped without promtool."""
    promtool = shutil.which("promtool")
    if not promtool:
        print("note: promtool not installed (Debian: prometheus); PromQL not parsed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": "dashboard:q%d" % i, "expr": e} for i, (_, e) in enumerate(exprs)]}]}
        path = os.path.join(tmp, "queries.yml")
        with open(path, "w") as f:
            yaml.safe_dump(rules, f)
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("promtool check rules on the dashboard's queries:\n" + r.stdout + r.stderr)


def check_alerts(root, known, problems, used):
    d = os.path.join(root, "deploy", "prometheus")
    path = os.path.join(d, "alerts.yml")
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    seen = set()
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            name = r.get("alert")
            where = "alerts.yml %s" % name
            if not name or not re.fullmatch(r"[A-Z][A-Za-z0-9]+", name):
                problems.append("alerts.yml: rule without a CamelCase alert name: %r" % r)
                continue
            if name in seen:
                problems.append("%s: defined twice" % where)
            seen.add(name)
            if (r.get("labels") or {}).get("severity") not in ("warning", "critical"):
                problems.append("%s: labels.severity must be warning or critical" % where)
            ann = r.get("annotations") or {}
            if not ann.get("summary") or not ann.get("description"):
                problems.append("%s: needs annotations summary and description" % where)
            check_expr(r.get("expr", ""), where, known, problems, used)
    want = {"StreamrecConsumerLagGrowing", "StreamrecLatencyP99High", "StreamrecDeadLetterRate",
            "StreamrecNotReady", "StreamrecModelReloadFailed"}
    for w in sorted(want - seen):
        problems.append("alerts.yml: alert %s is missing" % w)
    promtool = shutil.which("promtool")
    if not promtool:
        print("note: promtool not installed (Debian: prometheus); rules checked by this parser only")
        return
    for args in (["check", "rules", path], ["test", "rules", os.path.join(d, "alerts.test.yml")]):
        r = subprocess.run([promtool] + args, capture_output=True, text=True, cwd=d)
        if r.returncode != 0:
            problems.append("promtool %s:\n%s%s" % (" ".join(args[:2]), r.stdout, r.stderr))
        else:
            print("promtool %s: ok" % " ".join(args[:2]))


def check_dashboard(root, known, problems, used):
    path = os.path.join(root, "deploy", "grafana", "streamrec.json")
    dash = json.load(open(path, encoding="utf-8"))
    exprs, ids, titles = [], set(), []
    for p in dash.get("panels", []):
        t = p.get("title", "")
        titles.append(t.lower())
        if p.get("id") in ids:
            problems.append("streamrec.json: panel id %s used twice" % p.get("id"))
        ids.add(p.get("id"))
        if not p.get("datasource") or not p.get("targets"):
            problems.append("streamrec.json: panel %r has no datasource or no query" % t)
        for tg in p.get("targets", []):
            e = tg.get("expr", "")
            exprs.append((t, e))
            check_expr(e, "streamrec.json panel %r" % t, known, problems, used)
    for w in ("throughput", "p50", "p99", "lag", "batch size", "stage", "invalid", "restore",
              "model version"):
        if not any(w in t for t in titles):
            problems.append("streamrec.json: no panel about %r" % w)
    vars_ = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    for v in ("datasource", "instance"):
        if v not in vars_:
            problems.append("streamrec.json: template variable $%s missing" % v)
    # Grafana's variables, replaced by what they expand to, for the PromQL parser.
    plain = [(t, e.replace("$__rate_interval", "5m").replace("$instance", ".*")) for t, e in exprs]
    promtool_rules(plain, problems)


def main():
    root, what = sys.argv[1], sys.argv[2]
    known = exported(root)
    if "streamrec_events_consumed_total" not in known or "streamrec_latency_seconds_bucket" not in known:
        print("FAIL: could not read the exported metric names from stream/runtime/*.c")
        return 1
    for name, labels in PLANNED.items():
        if name in known:
            print("note: %s is exported now; remove it from PLANNED" % name)
        known.setdefault(name, set()).update(labels)
    problems, used = [], set()
    (check_alerts if what == "alerts" else check_dashboard)(root, known, problems, used)
    for n in sorted(used & set(PLANNED)):
        print("note: %s is planned (not exported by this build yet)" % n)
    for p in problems:
        print("FAIL: " + p)
    if not problems:
        print("PASS: %s: %d streamrec metrics referenced, all exported or planned" % (what, len(used)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
