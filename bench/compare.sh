#!/bin/sh
# compare.sh — runs `streamrec bench` and its peers (bench/peers.py: FAISS IndexFlatIP, a PyTorch
# CPU forward, the numpy/OpenBLAS sgemm rate) in one run on the same shapes, and prints a table
# of ratios (issue 2, Performance). Raw JSON lines are kept in $OUTDIR (default: a temp dir).
#
#   bench/compare.sh [STREAMREC]          default STREAMREC: build/stream/streamrec
#   env: DEVICE=cpu|cuda  REPS=5  ITEMS="100000 1000000"  PY=/usr/bin/python3  OUTDIR=dir
#        THREADS=0 (streamrec cpu threads; 0 = all cores)  GRU_LAYERS=1  ROUNDS=3
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/stream/streamrec}
py=${PY:-/usr/bin/python3}
device=${DEVICE:-cpu}
reps=${REPS:-5}
items=${ITEMS:-"100000 1000000"}
threads=${THREADS:-0}
gru_layers=${GRU_LAYERS:-1}
rounds=${ROUNDS:-3}
out=${OUTDIR:-$(mktemp -d "${TMPDIR:-/tmp}/streamrec-bench.XXXXXX")}
mkdir -p "$out"

[ -x "$bin" ] || { echo "compare.sh: no streamrec binary at $bin (build first or pass its path)" >&2; exit 2; }
[ -x "$py" ] || { echo "compare.sh: $py not found (needs numpy, faiss, torch)" >&2; exit 2; }

# one `streamrec bench` run: its human lines to stdout, its final JSON line to ours.jsonl
ours() {
    "$bin" bench "$@" --device "$device" --threads "$threads" --reps "$reps" >"$out/last.txt" || {
        echo "compare.sh: streamrec bench $* failed" >&2
        cat "$out/last.txt" >&2
        exit 1
    }
    grep -v '^[[:space:]]*$' "$out/last.txt" | grep -v '^{' || true
    grep '^{' "$out/last.txt" | tail -n 1 >>"$out/ours.jsonl"
}

: >"$out/ours.jsonl"
: >"$out/peers.jsonl"
items_csv=$(printf '%s' "$items" | tr -s ' ' ',')
# Rounds alternate ours and the peers, so a noisy neighbour hurts both sides alike; the table
# shows the median of each figure over the rounds.
r=1
while [ "$r" -le "$rounds" ]; do
    echo "== round $r/$rounds: streamrec bench (device=$device) -> $out/ours.jsonl"
    for n in $items; do
        ours retrieval --items "$n" --dim 64 --batch 256 -k 10
    done
    ours model --arch gpt2 --d 64 --layers 2 --heads 2 --len 50 --batch 256
    ours model --arch gru4rec --d 64 --layers "$gru_layers" --len 50 --batch 256
    echo "== round $r/$rounds: peers (bench/peers.py) -> $out/peers.jsonl"
    "$py" "$here/peers.py" --items "$items_csv" --dim 64 --batch 256 -k 10 --len 50 --layers 2 \
        --heads 2 --gru-layers "$gru_layers" --reps "$reps" | tee -a "$out/peers.jsonl" | cut -c1-160
    r=$((r + 1))
done

echo
"$py" - "$out/ours.jsonl" "$out/peers.jsonl" <<'EOF'
import json, sys
import statistics

def merge(recs, key):
    """One record per key with every numeric field replaced by its median over the rounds."""
    groups = {}
    for r in recs:
        groups.setdefault(key(r), []).append(r)
    out = []
    for rs in groups.values():
        m = dict(rs[0])
        for f, v in rs[0].items():
            if isinstance(v, float):
                m[f] = statistics.median(x[f] for x in rs)
        m["rounds"] = len(rs)
        out.append(m)
    return out

ours = merge([json.loads(l) for l in open(sys.argv[1]) if l.strip()],
             lambda r: (r["bench"], r.get("items"), r.get("arch")))
peers = merge([json.loads(l) for l in open(sys.argv[2]) if l.strip()],
              lambda r: (r["peer"], r.get("items"), r.get("n")))
sgemm = [p for p in peers if p["peer"] == "sgemm"]
best = max(sgemm, key=lambda p: p["gflops"])
print("sgemm rate on the retrieval shape (numpy/OpenBLAS, M=256 K=64): best %.1f GFLOP/s at N=%d"
      % (best["gflops"], best["n"]) + "".join("; N=%d %.1f" % (p["n"], p["gflops"]) for p in sgemm))
print()
fmt = "%-34s %14s %14s %10s"
print(fmt % ("measurement", "streamrec", "peer", "ratio"))
print(fmt % ("-" * 34, "-" * 14, "-" * 14, "-" * 10))
for o in ours:
    dev = o.get("device", "?")
    if o["bench"] == "retrieval":
        n = o["items"]
        f = [p for p in peers if p["peer"] == "faiss_flat_ip" and p["items"] == n]
        if f:
            print(fmt % ("retrieval N=%d queries/s [%s]" % (n, dev), "%.0f" % o["queries_per_s"],
                         "%.0f" % f[0]["queries_per_s"], "%.2fx" % (o["queries_per_s"] / f[0]["queries_per_s"])))
        s = [p for p in sgemm if p["n"] == n]
        print(fmt % ("retrieval N=%d GFLOP/s / sgemm" % n, "%.1f" % o["gflops"], "%.1f" % best["gflops"],
                     "%.0f%%" % (100.0 * o["gflops"] / best["gflops"])))
        if s:
            print(fmt % ("  (sgemm with full N=%d output)" % n, "%.1f" % o["gflops"], "%.1f" % s[0]["gflops"],
                         "%.0f%%" % (100.0 * o["gflops"] / s[0]["gflops"])))
    elif o["bench"] == "model":
        arch = o.get("arch", "bundle")
        t = [p for p in peers if p["peer"] == "torch_" + arch]
        if t:
            print(fmt % ("model %s sessions/s [%s]" % (arch, dev), "%.0f" % o["sessions_per_s"],
                         "%.0f" % t[0]["sessions_per_s"], "%.2fx" % (o["sessions_per_s"] / t[0]["sessions_per_s"])))
            print(fmt % ("  %s GFLOP/s" % arch, "%.1f" % o["gflops"], "%.1f" % t[0]["gflops"], ""))
print()
print("medians over %d round(s); raw lines in %s" % (max(o["rounds"] for o in ours), sys.argv[1].rsplit("/", 1)[0]))
print("targets (issue 2, cpu): retrieval >= 2x FAISS and >= 85% of sgemm; encoder >= 3x torch")
EOF
echo "raw results: $out"
