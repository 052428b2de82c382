#!/usr/bin/python3
"""make_events.py — a small deterministic event file with learnable structure for the model
tests (stdlib only): a sparse Markov chain over a Zipf-popular catalogue. Each item has three
successors; a session follows them with probability 0.8 and otherwise jumps to a popular item.
Types: view (most), click, add_to_cart, purchase, and a few wishlist (neither stored nor
answered); some sessions pause for 40 minutes (longer than the default session.ttl.ms), so the
TTL split is exercised. Events are written in time order, sessions interleaved.

  make_events.py --sessions N --items M --seed S > events.jsonl
"""
import argparse
import bisect
import json
import random
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mean-len", type=int, default=8)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    M = a.items
    weights = [1.0 / (r + 1) ** 1.1 for r in range(M)]
    cum, t = [], 0.0
    for w in weights:
        t += w
        cum.append(t)

    def popular():
        return bisect.bisect_left(cum, rng.random() * t)

    succ = [[rng.randrange(M) for _ in range(3)] for _ in range(M)]
    types = ["view"] * 14 + ["click"] * 3 + ["add_to_cart"] * 2 + ["purchase", "wishlist"]
    t0 = 1_700_000_000_000
    events = []
    for s in range(a.sessions):
        ts = t0 + rng.randrange(0, 6 * 3600 * 1000)
        n = max(1, int(rng.expovariate(1.0 / a.mean_len)) + 1)
        cur = popular()
        for e in range(n):
            events.append((ts, s, e, cur, rng.choice(types)))
            ts += rng.randrange(2000, 60000)
            if rng.random() < 0.02:
                ts += 40 * 60 * 1000
            cur = rng.choice(succ[cur]) if rng.random() < 0.8 else popular()
    events.sort()
    out = sys.stdout
    for ts, s, _, item, typ in events:
        out.write(json.dumps({"session_id": "s%d" % s, "user_id": None, "item_id": "item-%d" % item,
                              "event_type": typ, "timestamp_ms": ts}) + "\n")


if __name__ == "__main__":
    main()
