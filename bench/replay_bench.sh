#!/usr/bin/env bash
# bench/replay_bench.sh — offline replay throughput against the model-engine floor (issue 3).
# In the same run, alternating, --reps times each:
#   floor   `streamrec bench model --bundle B --batch 256`: recommend_sessions_per_s, i.e.
#           per-session encode + exact top-k over the catalogue, nothing else;
#   replay  `streamrec replay` of E generated events (bench/gen_events.py) with the same bundle,
#           state.backend=memory, default batch.max.events (256): events/s from --report.
# Prints each pair, then the medians and ratio = replay events/s / floor sessions/s (target
# >= 0.75; every trigger event is one recommendation, so the floor bounds events/s).
#   bench/replay_bench.sh [--bundle DIR | --gpt2] [--events 200000] [--reps 3] [--threads 0]
# --gpt2 writes a random gpt2 bundle (V = 10^5 + 2, d = 64, 2 layers) with
# bench/make_bundle.py into ${TMPDIR:-/tmp}. The default bundle is tests/data/ref/gru4rec_100k
# (V = 100005, d = 16). STREAMREC overrides the binary (default build/stream/streamrec).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STREAMREC:-build/stream/streamrec}
bundle=tests/data/ref/gru4rec_100k
events=200000
reps=3
threads=0
py=$(command -v python3)
tmp=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    --gpt2) bundle=$tmp/gpt2_100k_d64
            [ -f "$bundle/bundle.json" ] || "$py" bench/make_bundle.py "$bundle" --items 100000 --d 64
            shift ;;
    --events) events=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "replay_bench.sh: unknown argument '$1'" >&2; exit 1 ;;
  esac
done
[ -x "$bin" ] || { echo "replay_bench.sh: $bin not built" >&2; exit 1; }
ev=$tmp/streamrec-bench-$(basename "$bundle")-$events.jsonl
[ -f "$ev" ] || "$py" bench/gen_events.py --bundle "$bundle" --events "$events" --output "$ev"
work=$(mktemp -d "$tmp/streamrec-replay-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bundle: $bundle; events: $ev; threads: $threads"
floors=() rates=()
for r in $(seq "$reps"); do
  f=$("$bin" bench model --bundle "$bundle" --batch 256 --threads "$threads" 2>/dev/null | tail -1 |
      "$py" -c 'import json,sys; print(json.load(sys.stdin)["recommend_sessions_per_s"])')
  "$bin" replay --set model.bundle="$bundle" --set state.backend=memory --set log.level=warn \
    --set device=cpu --set device.threads="$threads" \
    --input "$ev" --output "$work/recs.jsonl" --report "$work/report.json" > /dev/null
  e=$("$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["events_per_s"], r["recommendations_per_s"], r["recommendations"], r["events"])' "$work/report.json")
  echo "rep $r: floor $f sessions/s; replay events/s, recs/s, recs, events: $e"
  floors+=("$f"); rates+=("${e%% *}")
done
"$py" - "${floors[*]}" "${rates[*]}" <<'PY'
import statistics, sys
f = [float(x) for x in sys.argv[1].split()]
r = [float(x) for x in sys.argv[2].split()]
mf, mr = statistics.median(f), statistics.median(r)
print("median floor %.0f sessions/s, median replay %.0f events/s, ratio %.2f (target >= 0.75)" % (mf, mr, mr / mf))
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
