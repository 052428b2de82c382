#!/usr/bin/env python3
"""gen_events.py — deterministic synthetic events (JSON Lines of DESIGN §4) over a bundle's
catalogue, for the offline replay benchmark (bench/replay_bench.sh). Stdlib only.

  gen_events.py --bundle DIR --events N [--active 1000] [--mean-len 12] [--seed 1] --output FILE

Sessions interleave: `--active` sessions are open at a time, each event goes to one of them at
random, and a session ends after each of its events with probability 1/mean-len (a new one
takes its place). Items follow a Zipf-like popularity (rank^-0.8) over the catalogue in a
seeded random order; types are view 70 %, click 15 %, add_to_cart 8 %, purchase 4 %,
wishlist 3 % (the last is neither stored nor triggering by default). Event time advances
0-200 ms per event. The same arguments give the same bytes. (`streamrec gen` is the user-facing
generator; this script exists so the benchmark needs nothing but the bundle.)
"""
import argparse
import bisect
import itertools
import json
import os
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--active", type=int, default=1000)
    ap.add_argument("--mean-len", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.bundle, "items.tsv")) as f:
        col = f.readline().rstrip("\n").split("\t").index("item_id")
        items = [line.rstrip("\n").split("\t")[col] for line in f if line.strip()]
    rng = random.Random(a.seed)
    rng.shuffle(items)
    cum = list(itertools.accumulate((r + 1) ** -0.8 for r in range(len(items))))
    total = cum[-1]
    types = ["view"] * 70 + ["click"] * 15 + ["add_to_cart"] * 8 + ["purchase"] * 4 + ["wishlist"] * 3
    next_id = 0
    active = []
    for _ in range(a.active):
        active.append(next_id)
        next_id += 1
    t = 1763856000000
    end = 1.0 / a.mean_len
    with open(a.output, "w") as f:
        for _ in range(a.events):
            t += rng.randint(0, 200)
            slot = rng.randrange(a.active)
            s = active[slot]
            item = items[min(bisect.bisect_left(cum, rng.random() * total), len(items) - 1)]
            f.write(json.dumps({"session_id": "s%d" % s, "user_id": "u%d" % (s % 5000) if s % 4 else None,
                                "item_id": item, "event_type": rng.choice(types),
                                "timestamp_ms": t}) + "\n")
            if rng.random() < end:
                active[slot] = next_id
                next_id += 1


if __name__ == "__main__":
    main()
