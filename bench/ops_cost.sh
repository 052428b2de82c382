#!/bin/sh
# ops_cost.sh — per-op cost per event of the graph's optional ops (trending, sample, candidate
# rules; DESIGN §4.6-4.8): replays one generated stream under each configuration with
# `streamrec replay --report` and prints each stage's time per event (µs), the best of ROUNDS
# runs per configuration. Usage: bench/ops_cost.sh build/stream/streamrec [EVENTS] [BATCH]
set -eu
SR=${1:?streamrec binary}
EVENTS=${2:-200000}
BATCH=${3:-256}
ROUNDS=${ROUNDS:-3}
DIR=$(mktemp -d /tmp/sr-opscost-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
BUNDLE=$(dirname "$0")/../deploy/demo-bundle
"$SR" gen --sessions $((EVENTS / 20)) --items 1000 --events "$EVENTS" --seed 1 --output "$DIR/ev.jsonl" >/dev/null
# the same shape over 10^5 items: 99 % unknown to the demo bundle, so most sessions are
# answered from trending and the sketch is full
"$SR" gen --sessions $((EVENTS / 20)) --items 100000 --events "$EVENTS" --seed 1 --output "$DIR/ev2.jsonl" >/dev/null
INPUT=$DIR/ev.jsonl
run() { # name, --set args...
    name=$1; shift
    for r in $(seq "$ROUNDS"); do
        "$SR" replay --set model.bundle="$BUNDLE" --set device=cpu --set log.level=error \
            --set batch.max.events="$BATCH" --set state.dir="$DIR/db" "$@" \
            --input "$INPUT" --output "$DIR/out.jsonl" --report "$DIR/r$r.json" >/dev/null
        rm -rf "$DIR/db"
    done
    /usr/bin/python3 - "$name" "$DIR" "$ROUNDS" <<'PY'
import json, sys
name, d, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
reps = [json.load(open("%s/r%d.json" % (d, r + 1))) for r in range(rounds)]
ev = reps[0]["events"]
stages = {}
for rep in reps:
    for k, v in rep["stage_seconds"].items():
        stages[k] = min(stages.get(k, 1e9), v)
print("%-34s %s" % (name, "  ".join("%s=%.2f" % (k, v / ev * 1e6) for k, v in stages.items())))
PY
}
echo "per-event µs per stage, $EVENTS events, batch $BATCH, best of $ROUNDS (rocksdb state)"
run "off" 
run "trending (capacity 1024)" --set recs.trending=true
run "trending (capacity 8192)" --set recs.trending=true --set trending.capacity=8192
run "trending + slots=2" --set recs.trending=true --set recs.trending.slots=2
run "sampling=softmax (50 candidates)" --set recs.sampling=softmax
run "sampling=epsilon (0.1)" --set recs.sampling=epsilon
run "max_per_category=2" --set recs.max_per_category=2
INPUT=$DIR/ev2.jsonl
run "10^5 items: off" 
run "10^5 items: trending (capacity 1024)" --set recs.trending=true
run "10^5 items: trending (capacity 8192)" --set recs.trending=true --set trending.capacity=8192
INPUT=$DIR/ev.jsonl
run "min_score + boost" --set recs.min_score=-1e9 --set graph.ops=b --set graph.op.b.type=boost \
    --set graph.op.b.attribute=category --set graph.op.b.values=c1 --set graph.op.b.weight=0.5
