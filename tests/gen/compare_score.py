#!/usr/bin/env python3
"""compare_score.py — checks `streamrec score` against a reference expected file (stdlib only;
CTest runs it, see tests/kernels/ref.cmake).

  compare_score.py [options] STREAMREC CASE            CASE.sessions.jsonl / CASE.expected.jsonl
  compare_score.py [options] STREAMREC BUNDLE SESSIONS EXPECTED
  compare_score.py --actual FILE - BUNDLE SESSIONS EXPECTED   compare a saved output instead
  compare_score.py --self-test                          checks this checker on made-up rows
options: --arg ARG (repeatable) passes ARG to `streamrec score` (e.g. --arg=--batch --arg=1)

It runs `STREAMREC score BUNDLE -k K < SESSIONS` (K = length of the expected rows) and compares
line by line. Two scores are "equal" when |a - b| <= 1e-4 * max(|a|, |b|, 1) (relative 1e-4;
scores below 1 in magnitude are held to 1e-4 absolute, as float32 rounding is absolute there).
Per rank: the score must equal the expected score at that rank; the item must be the expected
item, unless it is another expected item whose expected score equals this rank's (a tie
reordered), or an item outside the expected list while this rank's expected score equals
next_score (a tie across the k boundary). Items must not repeat. Exit 0 when every line
passes, 1 on a mismatch (with a diff), 2 when the command or the files cannot be used.
"""
import json
import os
import subprocess
import sys

TOL = 1e-4
MAX_REPORTS = 10


def close(a, b):
    return abs(a - b) <= TOL * max(abs(a), abs(b), 1.0)


def compare_row(exp, act):
    """Returns a list of problems (strings) for one line; empty when it passes."""
    probs = []
    ei, es = exp["items"], exp["scores"]
    ai, asc = act.get("items"), act.get("scores")
    if not isinstance(ai, list) or not isinstance(asc, list) or len(ai) != len(asc):
        return ["output line lacks matching 'items' and 'scores' arrays: %s" % json.dumps(act)]
    if len(ai) != len(ei):
        probs.append("%d items, expected %d" % (len(ai), len(ei)))
    if len(set(ai)) != len(ai):
        probs.append("an item repeats: %s" % ai)
    exp_score = dict(zip(ei, es))
    nxt = exp.get("next_score")
    for r in range(min(len(ai), len(ei))):
        a_item, a_score = ai[r], asc[r]
        if not isinstance(a_score, (int, float)) or not close(float(a_score), es[r]):
            probs.append("rank %d: score %r, expected %r (item %s)" % (r, a_score, es[r], ei[r]))
            continue
        if a_item == ei[r]:
            continue
        if a_item in exp_score:
            if close(exp_score[a_item], es[r]):
                continue
            probs.append("rank %d: item %s (expected score %.9g), expected %s (%.9g): not a tie"
                         % (r, a_item, exp_score[a_item], ei[r], es[r]))
        elif nxt is not None and close(es[r], nxt):
            continue
        else:
            probs.append("rank %d: item %s is not in the expected top-%d, expected %s (%.9g; "
                         "next_score %s)" % (r, a_item, len(ei), ei[r], es[r], nxt))
    return probs


def compare(exp_lines, act_lines, label):
    bad = 0
    if len(act_lines) != len(exp_lines):
        print("%s: %d output lines, expected %d" % (label, len(act_lines), len(exp_lines)))
        bad += 1
    for n, (e, a) in enumerate(zip(exp_lines, act_lines), 1):
        probs = compare_row(e, a)
        if probs:
            bad += 1
            if bad <= MAX_REPORTS:
                print("%s: line %d:" % (label, n))
                for p in probs:
                    print("    " + p)
                print("    expected %s\n    actual   %s" % (
                    json.dumps({"items": e["items"], "scores": e["scores"]}), json.dumps(a)))
    if bad > MAX_REPORTS:
        print("%s: ... %d more failing lines" % (label, bad - MAX_REPORTS))
    print("%s: %s (%d of %d lines match)" % (label, "FAIL" if bad else "ok",
                                             len(exp_lines) - min(bad, len(exp_lines)),
                                             len(exp_lines)))
    return 1 if bad else 0


def read_jsonl(path, what):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise SystemExit("compare_score: %s %s line %d: %s" % (what, path, n, e))
    return out


def self_test():
    e = {"items": ["a", "b", "c", "d"], "scores": [10.0, 9.0, 9.0000001, 8.0], "next_score": 8.0000002}
    ok = [
        {"items": ["a", "b", "c", "d"], "scores": [10.0, 9.0, 9.0, 8.0]},
        {"items": ["a", "c", "b", "d"], "scores": [10.0, 9.0, 9.0, 8.0]},    # tie reordered
        {"items": ["a", "b", "c", "x"], "scores": [10.0, 9.0, 9.0, 8.0]},    # tie at boundary
        {"items": ["a", "b", "c", "d"], "scores": [10.00009, 9.0, 9.0, 8.0]},
    ]
    bad = [
        {"items": ["b", "a", "c", "d"], "scores": [10.0, 9.0, 9.0, 8.0]},    # swap, no tie
        {"items": ["a", "b", "c", "d"], "scores": [10.002, 9.0, 9.0, 8.0]},  # score off
        {"items": ["a", "b", "x", "d"], "scores": [10.0, 9.0, 9.0, 8.0]},    # foreign, no tie
        {"items": ["a", "b", "c"], "scores": [10.0, 9.0, 9.0]},              # short
        {"items": ["a", "b", "b", "d"], "scores": [10.0, 9.0, 9.0, 8.0]},    # repeat
        {"items": ["a", "b", "c", "d"]},                                     # no scores
    ]
    fails = [r for r in ok if compare_row(e, r)] + [r for r in bad if not compare_row(e, r)]
    for r in fails:
        print("self-test: wrong verdict for %s" % json.dumps(r))
    print("self-test: %s" % ("FAIL" if fails else "ok"))
    return 1 if fails else 0


def main(argv):
    extra, actual, args = [], None, []
    it = iter(argv[1:])
    for a in it:
        if a == "--self-test":
            return self_test()
        if a.startswith("--arg="):
            extra.append(a[len("--arg="):])
        elif a == "--arg":
            extra.append(next(it, ""))
        elif a == "--actual":
            actual = next(it, None)
        else:
            args.append(a)
    if len(args) == 2:
        case = os.path.normpath(args[1])
        bundle, sessions, expected = case, case + ".sessions.jsonl", case + ".expected.jsonl"
    elif len(args) == 4:
        bundle, sessions, expected = args[1:]
    else:
        sys.stderr.write(__doc__)
        return 2
    label = os.path.basename(os.path.normpath(bundle))
    exp = read_jsonl(expected, "expected")
    if not exp:
        print("compare_score: %s holds no lines" % expected)
        return 2
    k = len(exp[0]["items"])
    if actual is not None:
        act = read_jsonl(actual, "actual")
    else:
        cmd = [args[0], "score", bundle, "-k", str(k)] + extra
        with open(sessions) as f:
            p = subprocess.run(cmd, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            print("compare_score: `%s < %s` exited %d: %s" % (" ".join(cmd), sessions, p.returncode,
                                                             p.stderr.decode(errors="replace").strip()))
            return 2
        act = []
        for n, line in enumerate(p.stdout.decode(errors="replace").splitlines(), 1):
            if line.strip():
                try:
                    act.append(json.loads(line))
                except ValueError as e:
                    print("compare_score: output line %d is not JSON (%s): %s" % (n, e, line[:200]))
                    return 1
    return compare(exp, act, label)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
