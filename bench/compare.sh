#!/bin/sh
# compare.sh — runs `streamrec bench` and its peers (bench/peers.py: FAISS IndexFlatIP, a PyTorch
# CPU forward, a Python replay, the numpy/OpenBLAS sgemm rate) in one run on the same shapes,
# and prints the per-event cost table: retrieval vs FAISS, model vs PyTorch, offline replay vs
# the Python replay (a gpt2 bundle of 10^5 items by bench/make_bundle.py, REPLAY_EVENTS events
# by bench/gen_events.py, both cached in TMPDIR), and online (`bench e2e` on the mock broker,
# tests/data/ref/gru4rec_100k): p50/p99 consumed->delivered at 50 % of saturation, with the
# runtime's part of it (consumed->produced) and the same rate through a 500-item model
# (tests/data/gru4rec-small: the producer and the mock broker's part, the "Kafka path"); and
# recommendations/s at saturation over the model-alone rate on the same events (the stream
# `bench e2e --write-events` writes, replayed: recommendations / (encode + retrieve stage
# seconds)), and over `bench model`'s encode + top-k on random 20-item sessions (a different,
# cheaper workload, kept for comparison with earlier runs).
# Raw JSON lines are kept in $OUTDIR (default: a temp dir). Every side runs at each thread
# count of THREADS and the table keeps each one's best (on the 2-core VM FAISS/OpenMP and torch
# run 2-3x slower with 2 threads than with 1), naming it; e2e runs at the runtime's default.
#
#   bench/compare.sh [STREAMREC]          default STREAMREC: build/stream/streamrec
#   env: DEVICE=cpu|cuda  REPS=5  ITEMS="100000 1000000"  PY=/usr/bin/python3  OUTDIR=dir
#        THREADS="1 2" (thread counts tried by streamrec and every peer)  GRU_LAYERS=1  ROUNDS=3
#        REPLAY_EVENTS=20000 (0: no replay rows)  E2E=1 (0: no online rows)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/stream/streamrec}
py=${PY:-/usr/bin/python3}
device=${DEVICE:-cpu}
reps=${REPS:-5}
items=${ITEMS:-"100000 1000000"}
threads=${THREADS:-"1 2"}
gru_layers=${GRU_LAYERS:-1}
rounds=${ROUNDS:-3}
out=${OUTDIR:-$(mktemp -d "${TMPDIR:-/tmp}/streamrec-bench.XXXXXX")}
mkdir -p "$out"
replay_events=${REPLAY_EVENTS:-20000}
e2e=${E2E:-1}
root=$(cd "$here/.." && pwd)
tmp=${TMPDIR:-/tmp}

[ -x "$bin" ] || { echo "compare.sh: no streamrec binary at $bin (build first or pass its path)" >&2; exit 2; }
[ -x "$py" ] || { echo "compare.sh: $py not found (needs numpy, faiss, torch)" >&2; exit 2; }

# one `streamrec bench` run at $t threads: its human lines to stdout, its final JSON line (with
# "threads" added) to ours.jsonl
ours() {
    "$bin" bench "$@" --device "$device" --threads "$t" --reps "$reps" >"$out/last.txt" || {
        echo "compare.sh: streamrec bench $* failed" >&2
        cat "$out/last.txt" >&2
        exit 1
    }
    grep -v '^[[:space:]]*$' "$out/last.txt" | grep -v '^{' || true
    grep '^{' "$out/last.txt" | tail -n 1 | sed "s/^{/{\"threads\":$t,/" >>"$out/ours.jsonl"
}

: >"$out/ours.jsonl"
: >"$out/peers.jsonl"
if [ "$replay_events" -gt 0 ]; then
    rb=$tmp/streamrec-compare-gpt2_100k_d64
    [ -f "$rb/bundle.json" ] || "$py" "$here/make_bundle.py" "$rb" --items 100000 --d 64 >/dev/null
    rev=$tmp/streamrec-compare-gpt2_100k_d64-$replay_events.jsonl
    [ -f "$rev" ] || "$py" "$here/gen_events.py" --bundle "$rb" --events "$replay_events" --output "$rev"
fi
# `streamrec replay` of the replay events at $t threads (memory state, default batch): a JSON line
replay_ours() {
    "$bin" replay --set model.bundle="$rb" --set state.backend=memory --set log.level=warn \
        --set device="$device" --set device.threads="$t" --input "$rev" --output "$out/replay.jsonl" \
        --report "$out/replay-report.json" >/dev/null || { echo "compare.sh: streamrec replay failed" >&2; exit 1; }
    "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({"bench": "replay",
        "threads": int(sys.argv[2]), "arch": "gpt2", "items": 100000, "events": r["events"],
        "recommendations": r["recommendations"], "events_per_s": float(r["events_per_s"])}))' \
        "$out/replay-report.json" "$t" | tee -a "$out/ours.jsonl"
}
items_csv=$(printf '%s' "$items" | tr -s ' ' ',')
# Rounds alternate ours and the peers, so a noisy neighbour hurts both sides alike; the table
# shows the median of each figure over the rounds.
r=1
while [ "$r" -le "$rounds" ]; do
    for t in $threads; do
        echo "== round $r/$rounds, $t thread(s): streamrec bench (device=$device) -> $out/ours.jsonl"
        for n in $items; do
            ours retrieval --items "$n" --dim 64 --batch 256 -k 10
        done
        ours model --arch gpt2 --d 64 --layers 2 --heads 2 --len 50 --batch 256
        ours model --arch gru4rec --d 64 --layers "$gru_layers" --len 50 --batch 256
        echo "== round $r/$rounds, $t thread(s): peers (bench/peers.py) -> $out/peers.jsonl"
        "$py" "$here/peers.py" --items "$items_csv" --dim 64 --batch 256 -k 10 --len 50 --layers 2 \
            --heads 2 --gru-layers "$gru_layers" --reps "$reps" --threads "$t" |
            tee -a "$out/peers.jsonl" | cut -c1-160
        if [ "$replay_events" -gt 0 ]; then
            echo "== round $r/$rounds, $t thread(s): replay of $replay_events events, streamrec then the Python peer"
            replay_ours
            "$py" "$here/peers.py" --only replay --events "$rev" --bundle "$rb" --batch 256 -k 10 \
                --reps 2 --threads "$t" | tee -a "$out/peers.jsonl" | cut -c1-160
        fi
    done
    if [ "$e2e" = 1 ]; then
        eb=$root/tests/data/ref/gru4rec_100k
        echo "== round $r/$rounds: online (bench e2e, mock broker) and its floor (bench model) on $eb"
        fl=$("$bin" bench model --bundle "$eb" --batch 256 --device "$device" --reps "$reps" | tail -n 1)
        "$bin" bench e2e --bundle "$eb" --events 30000 --write-events "$out/e2e-events.jsonl"
        "$bin" replay --set model.bundle="$eb" --set device="$device" --set log.level=warn \
            --input "$out/e2e-events.jsonl" --output "$out/e2e-replay.jsonl" \
            --report "$out/e2e-replay.json" >/dev/null || { echo "compare.sh: replay of the e2e events failed" >&2; exit 1; }
        "$bin" bench e2e --bundle "$eb" --events 30000 --seconds 4 --device "$device" >"$out/e2e.txt" ||
            { echo "compare.sh: bench e2e failed" >&2; cat "$out/e2e.txt" >&2; exit 1; }
        grep -v '^{' "$out/e2e.txt" || true
        half=$("$py" -c 'import json,sys; m=json.loads(sys.argv[1])["runs"]["model"]; print(round(m["saturation_events_per_s"] / 2))' \
            "$(grep '^{' "$out/e2e.txt" | tail -n 1)")
        "$bin" bench e2e --bundle "$root/tests/data/gru4rec-small" --events 30000 --seconds 4 \
            --rates "$half" --device "$device" >"$out/e2e-kafka.txt" ||
            { echo "compare.sh: bench e2e (Kafka path) failed" >&2; cat "$out/e2e-kafka.txt" >&2; exit 1; }
        grep 'offered' "$out/e2e-kafka.txt" | sed 's/^/  Kafka path (500-item model):/' || true
        "$py" -c 'import json,sys; e=json.loads(sys.argv[1]); f=json.loads(sys.argv[2]); m=e["runs"]["model"]
r=json.load(open(sys.argv[3])); s=r["stage_seconds"]; k=json.loads(sys.argv[4])["runs"]["model"]["rates"][0]
h=min(m["rates"], key=lambda x: abs(x["offered"] - m["saturation_events_per_s"] / 2))
print(json.dumps({"bench": "e2e", "items": e["items"], "recommendations_per_s": m["recommendations_per_s"],
    "saturation_events_per_s": m["saturation_events_per_s"], "floor_sessions_per_s": f["recommend_sessions_per_s"],
    "model_alone_recs_per_s": r["recommendations"] / (s["encode"] + s["retrieve"]),
    "half_offered": h["offered"], "half_p50_ms": h["p50_ms"], "half_p99_ms": h["p99_ms"],
    "half_produced_p99_ms": h["produced_p99_ms"], "half_runtime_cores": h["runtime_cores"],
    "half_generator_broker_cores": h["generator_broker_cores"], "kafka_path_p50_ms": k["p50_ms"], "kafka_path_p99_ms": k["p99_ms"]}))' \
            "$(grep '^{' "$out/e2e.txt" | tail -n 1)" "$(echo "$fl" | grep '^{')" "$out/e2e-replay.json" \
            "$(grep '^{' "$out/e2e-kafka.txt" | tail -n 1)" | tee -a "$out/ours.jsonl"
    fi
    r=$((r + 1))
done

echo
"$py" - "$out/ours.jsonl" "$out/peers.jsonl" <<'EOF'
import json, sys
import statistics

def merge(recs, key):
    """One record per key and thread count with every numeric field replaced by its median over
    the rounds (and min/max of the rate kept as spread), then per key the thread count with the
    best rate."""
    groups = {}
    for r in recs:
        groups.setdefault((key(r), r.get("threads")), []).append(r)
    best = {}
    for (k, _), rs in groups.items():
        m = dict(rs[0])
        for f, v in rs[0].items():
            if isinstance(v, float):
                m[f] = statistics.median(x[f] for x in rs)
        rate = next(f for f in ("queries_per_s", "sessions_per_s", "events_per_s",
                                "recommendations_per_s", "gflops") if f in m)
        m["rate_min"] = min(x[rate] for x in rs)
        m["rate_max"] = max(x[rate] for x in rs)
        m["rounds"] = len(rs)
        if k not in best or m[rate] > best[k][rate]:
            best[k] = m
    return list(best.values())


ours = merge([json.loads(l) for l in open(sys.argv[1]) if l.strip()],
             lambda r: (r["bench"], r.get("items"), r.get("arch")))
peers = merge([json.loads(l) for l in open(sys.argv[2]) if l.strip()],
              lambda r: (r["peer"], r.get("items"), r.get("n")))

sgemm = [p for p in peers if p["peer"] == "sgemm"]
best = max(sgemm, key=lambda p: p["gflops"])
print("sgemm rate on the retrieval shape (numpy/OpenBLAS, M=256 K=64): best %.1f GFLOP/s at N=%d"
      % (best["gflops"], best["n"]) + "".join("; N=%d %.1f" % (p["n"], p["gflops"]) for p in sgemm))
print()
def th(r):
    return "%s (%st)" % ("%.0f", r.get("threads", "?"))

fmt = "%-34s %14s %14s %10s"
print(fmt % ("measurement", "streamrec", "peer", "ratio"))
print(fmt % ("-" * 34, "-" * 14, "-" * 14, "-" * 10))
for o in ours:
    dev = o.get("device", "?")
    if o["bench"] == "retrieval":
        n = o["items"]
        f = [p for p in peers if p["peer"] == "faiss_flat_ip" and p["items"] == n]
        if f:
            print(fmt % ("retrieval N=%d queries/s [%s]" % (n, dev), th(o) % o["queries_per_s"],
                         th(f[0]) % f[0]["queries_per_s"], "%.2fx" % (o["queries_per_s"] / f[0]["queries_per_s"])))
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
            print(fmt % ("model %s sessions/s [%s]" % (arch, dev), th(o) % o["sessions_per_s"],
                         th(t[0]) % t[0]["sessions_per_s"], "%.2fx" % (o["sessions_per_s"] / t[0]["sessions_per_s"])))
            print(fmt % ("  %s GFLOP/s" % arch, "%.1f" % o["gflops"], "%.1f" % t[0]["gflops"], ""))
    elif o["bench"] == "replay":
        t = [p for p in peers if p["peer"] == "torch_replay"]
        if t:
            print(fmt % ("replay gpt2 10^5 items events/s", th(o) % o["events_per_s"],
                         th(t[0]) % t[0]["events_per_s"], "%.2fx" % (o["events_per_s"] / t[0]["events_per_s"])))
    elif o["bench"] == "e2e":
        print(fmt % ("online p50/p99 ms at 50%% (%.0f ev/s)" % o["half_offered"],
                     "%.1f / %.1f" % (o["half_p50_ms"], o["half_p99_ms"]), "", ""))
        print(fmt % ("  consumed->produced p99 ms", "%.1f" % o["half_produced_p99_ms"], "", ""))
        print(fmt % ("  cores: runtime / generator+broker", "%.2f" % o["half_runtime_cores"],
                     "%.2f" % o["half_generator_broker_cores"], ""))
        print(fmt % ("  Kafka path p50/p99 (500 items)", "", "%.1f / %.1f" % (o["kafka_path_p50_ms"],
                     o["kafka_path_p99_ms"]), ""))
        print(fmt % ("online recs/s / model alone", "%.0f" % o["recommendations_per_s"],
                     "%.0f" % o["model_alone_recs_per_s"],
                     "%.2f" % (o["recommendations_per_s"] / o["model_alone_recs_per_s"])))
        print(fmt % ("  / bench model (random sessions)", "%.0f" % o["recommendations_per_s"],
                     "%.0f" % o["floor_sessions_per_s"],
                     "%.2f" % (o["recommendations_per_s"] / o["floor_sessions_per_s"])))
print()
print("medians over %d round(s), each side at its best thread count (t); spread (min-max):"
      % max(o["rounds"] for o in ours))
for r in ours + [p for p in peers if p["peer"] != "sgemm"]:
    who = r["peer"] if "peer" in r else "streamrec " + r["bench"]
    print("  %-34s %3st %8.0f - %8.0f" % (who + " " + str(r.get("arch") or r.get("items")),
                                        r.get("threads", "?"), r["rate_min"], r["rate_max"]))
print("raw lines in %s" % sys.argv[1].rsplit("/", 1)[0])
print("targets (cpu): retrieval >= 3x FAISS IndexFlatIP, replay >= 4x the Python replay, each at its best\n"
      "thread count; online p99 <= 15 ms at 50 % of saturation; online recs/s >= 0.9 x the model alone\n"
      "(on the same events); the Kafka path row is the same rate through a 500-item model: the part of\n"
      "the latency the producer and the mock broker take, whatever the model")
EOF
echo "raw results: $out"
