#!/usr/bin/env bash
# bench/restore-real.sh — restore rate of the state changelog on a real Apache Kafka: fills a
# changelog by running `streamrec run` (ingest only: no trigger types, so the model never runs)
# over generated events, stops it, then starts a second process with an empty state.dir and
# reads its restore metrics (records, bytes, seconds) once every partition is restored.
#   bench/restore-real.sh [SESSIONS] [EVENTS] [PARTITIONS]     (default 100000 400000 8)
# Starts its own broker with deploy/kafka/kafka-local.sh (SR_BENCH_BOOTSTRAP to use another).
# STREAMREC names the binary (default build/stream/streamrec). Prints one JSON line at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STREAMREC:-build/stream/streamrec}
sessions=${1:-100000}
events=${2:-400000}
parts=${3:-8}
work=$(mktemp -d /tmp/streamrec-bench-restore.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    [ -z "${SR_BENCH_BOOTSTRAP:-}" ] && bash deploy/kafka/kafka-local.sh stop "$work/kafka" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${SR_BENCH_BOOTSTRAP:-}" ]; then
    bs=$SR_BENCH_BOOTSTRAP
else
    bs=$(bash deploy/kafka/kafka-local.sh start "$work/kafka" | sed -n 's/^bootstrap.servers=//p')
fi
sfx=$(date +%s)-$$
topic=events-restore-$sfx
group=streamrec-restore-$sfx
/usr/bin/python3 - "$bs" "$topic" "$parts" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in a.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)]).values():
    f.result()
PY
"$bin" gen --sessions "$sessions" --items 100000 --events "$events" --seed 7 --topic "$topic" -b "$bs" >/dev/null

metrics() { curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null || true; }
value() { awk -v k="$2" '$1 == k { print $2 }' <<<"$1"; }
conf() { # NAME PORT
    cat > "$work/$1.properties" <<EOF
model.bundle=tests/data/ref/gru4rec_100k
kafka.bootstrap.servers=$bs
kafka.group.id=$group
input.topic=$topic
output.topic=$topic
recs.trigger_types=
state.dir=$work/state-$1
metrics.listen=127.0.0.1:$2
log.level=warn
EOF
}
# 1. fill the changelog
conf a 19571
"$bin" run -c "$work/a.properties" 2>"$work/a.log" &
pids+=($!)
for _ in $(seq 600); do
    m=$(metrics 19571)
    [ "$(value "$m" streamrec_events_consumed_total)" = "$events" ] &&
        [ "$(value "$m" streamrec_inflight_events)" = "0" ] && break
    sleep 0.5
done
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
# 2. a fresh process restores everything
conf b 19572
t0=$(date +%s.%N)
"$bin" run -c "$work/b.properties" 2>"$work/b.log" &
pids+=($!)
rec=0
for _ in $(seq 1200); do
    m=$(metrics 19572)
    rec=$(value "$m" streamrec_restore_records_total)
    [ -n "$rec" ] && [ "$rec" != 0 ] && [ "$(value "$m" streamrec_restoring_partitions)" = "0" ] && break
    sleep 0.25
done
t1=$(date +%s.%N)
bytes=$(value "$m" streamrec_restore_bytes_total)
secs=$(value "$m" streamrec_restore_seconds_total)
kill -TERM "${pids[1]}"; wait "${pids[1]}" || true
/usr/bin/python3 - "$rec" "$bytes" "$secs" "$t0" "$t1" "$sessions" "$events" "$parts" <<'PY'
import json, sys
rec, byt, secs, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print("restored %d records, %.1f MB in %.2f s of restore work (%.2f s from process start to all "
      "partitions restored): %.0f records/s, %.1f MB/s" % (rec, byt / 1e6, secs, t1 - t0,
      rec / secs, byt / 1e6 / secs))
print(json.dumps({"bench": "restore", "sessions": int(sys.argv[6]), "events": int(sys.argv[7]),
                  "partitions": int(sys.argv[8]), "records": rec, "bytes": byt,
                  "restore_seconds": secs, "wall_seconds": round(t1 - t0, 3),
                  "records_per_s": round(rec / secs), "mb_per_s": round(byt / 1e6 / secs, 2)}))
PY
