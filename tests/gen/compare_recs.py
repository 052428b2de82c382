#!/usr/bin/env python3
"""compare_recs.py — compares recommendation files (JSON Lines of DESIGN §4) line by line
(stdlib only; CTest runs it, see tests/integration/replay_test.py).

  compare_recs.py EXPECTED ACTUAL [--exact]

Every line must match its counterpart: session_id, user_id, event_timestamp_ms, model_version
and source exactly; items by the rule of compare_score.py (scores within 1e-4 relative; an
order difference only between scores equal within that). --exact demands identical bytes
(runs of the same build that must agree bit for bit). Exit 0 on a match, 1 with a diff.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_score import compare_row  # noqa: E402

FIELDS = ("session_id", "user_id", "event_timestamp_ms", "model_version", "source")


def as_score_row(rec):
    return {"items": [i["item_id"] for i in rec["items"]],
            "scores": [i["score"] for i in rec["items"]]}


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    exact = "--exact" in argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], "rb") as f:
        exp = f.read().splitlines()
    with open(args[1], "rb") as f:
        act = f.read().splitlines()
    problems = []
    if len(exp) != len(act):
        problems.append("%d lines, expected %d" % (len(act), len(exp)))
    for n, (e, a) in enumerate(zip(exp, act)):
        if exact:
            if e != a:
                problems.append("line %d differs:\n  expected %s\n  actual   %s" % (n + 1, e[:300], a[:300]))
            continue
        ej, aj = json.loads(e), json.loads(a)
        for f in FIELDS:
            if ej.get(f) != aj.get(f):
                problems.append("line %d: %s is %r, expected %r" % (n + 1, f, aj.get(f), ej.get(f)))
        for p in compare_row(as_score_row(ej), as_score_row(aj)):
            problems.append("line %d (%s): %s" % (n + 1, ej.get("session_id"), p))
        if len(problems) > 20:
            break
    for p in problems[:20]:
        print(p)
    if problems:
        print("FAIL: %s vs %s" % (args[1], args[0]))
        return 1
    print("ok: %d recommendations match" % len(exp))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
