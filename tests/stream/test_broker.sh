#!/usr/bin/env bash
# tests/stream/test_broker.sh STREAMREC — `streamrec broker` served to real clients:
# topics created with the asked partition counts before the first line (kcat -L), messages
# produced by kcat and by python3-confluent-kafka consumed back by kcat, auto-created topics get
# 4 partitions, `gen --topic` delivers exactly the events it writes to a file (keys = session
# ids), SIGTERM exits 0, bad arguments exit non-zero. Skips (77) without kcat.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/broker_fixture.sh"
sr_need_kcat
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# --- arguments ------------------------------------------------------------------------------
"$BIN" broker --help | grep -q "bootstrap.servers=" || fail "broker --help"
"$BIN" broker --topic nopartitions 2>/dev/null && fail "--topic without partitions accepted"
"$BIN" broker --topic t:0 2>/dev/null && fail "--topic t:0 accepted"
"$BIN" broker --brokers 0 2>/dev/null && fail "--brokers 0 accepted"
"$BIN" broker --bogus 2>/dev/null && fail "unknown argument accepted"

# --- a cluster with two topics --------------------------------------------------------------
sr_broker_start "$BIN" --brokers 3 --topic events:8 --topic recs.out:3 || fail "broker start"
n_bs=$(echo "$SR_BOOTSTRAP" | tr ',' '\n' | grep -c '^[0-9.a-z]*:[0-9]*$')
[ "$n_bs" = 3 ] || fail "bootstrap line '$SR_BOOTSTRAP' does not list 3 HOST:PORT"

parts() { # topic -> partition count from kcat -L
    kcat -b "$SR_BOOTSTRAP" -L -t "$1" 2>/dev/null |
        sed -n "s/^ *topic \"$1\" with \([0-9]*\) partitions:.*/\1/p"
}
[ "$(parts events)" = 8 ] || fail "events has '$(parts events)' partitions, expected 8"
[ "$(parts recs.out)" = 3 ] || fail "recs.out has '$(parts recs.out)' partitions, expected 3"

# kcat producer -> kcat consumer, keyed.
for i in $(seq 1 50); do echo "k$((i % 7)):value-$i"; done >"$TMP/sent"
kcat -b "$SR_BOOTSTRAP" -t events -P -K: -l "$TMP/sent" || fail "kcat produce"
kcat -b "$SR_BOOTSTRAP" -t events -C -e -q -f '%k:%s\n' >"$TMP/got" || fail "kcat consume"
sort "$TMP/sent" >"$TMP/sent.s"
sort "$TMP/got" >"$TMP/got.s"
cmp -s "$TMP/sent.s" "$TMP/got.s" || fail "kcat round trip differs: $(diff "$TMP/sent.s" "$TMP/got.s" | head -5)"
# Same key, same partition (the consumer prints the partition).
kcat -b "$SR_BOOTSTRAP" -t events -C -e -q -f '%k %p\n' | sort -u | awk '{print $1}' | uniq -d |
    grep -q . && fail "one key landed in two partitions"

# python3-confluent-kafka producer -> kcat consumer (skipped without the module).
if /usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null; then
    /usr/bin/python3 - "$SR_BOOTSTRAP" <<'EOF' || fail "confluent_kafka produce"
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "enable.idempotence": True})
errs = []
for i in range(30):
    p.produce("recs.out", key="py%d" % i, value="v%d" % i,
              on_delivery=lambda e, m: errs.append(e) if e else None)
left = p.flush(30)
sys.exit(1 if left or errs else 0)
EOF
    n=$(kcat -b "$SR_BOOTSTRAP" -t recs.out -C -e -q -f '%k=%s\n' | grep -c '^py[0-9]*=v[0-9]*$')
    [ "$n" = 30 ] || fail "confluent_kafka: consumed $n of 30"
else
    echo "note: /usr/bin/python3 has no confluent_kafka; that part is skipped"
fi

# A topic auto-created by a client gets the mock's default, 4 partitions.
echo "x:y" | kcat -b "$SR_BOOTSTRAP" -t autocreated -P -K: || fail "produce to auto-created topic"
[ "$(parts autocreated)" = 4 ] || fail "auto-created topic has '$(parts autocreated)' partitions"

# gen --topic: every event it writes to a file arrives, keyed by session id.
GEN="--sessions 300 --items 400 --events 3000 --seed 11"
"$BIN" gen $GEN --output "$TMP/gen.jsonl" || fail "gen to file"
"$BIN" gen $GEN --topic genned -b "$SR_BOOTSTRAP" || fail "gen to topic"
kcat -b "$SR_BOOTSTRAP" -t genned -C -e -q -f '%k\t%s\n' | sort >"$TMP/topic.s"
/usr/bin/python3 -c '
import json, sys
for l in open(sys.argv[1]):
    print(json.loads(l)["session_id"] + "\t" + l.rstrip("\n"))' "$TMP/gen.jsonl" | sort >"$TMP/file.s"
[ "$(wc -l <"$TMP/topic.s")" = 3000 ] || fail "gen --topic: consumed $(wc -l <"$TMP/topic.s") of 3000"
cmp -s "$TMP/file.s" "$TMP/topic.s" || fail "gen --topic messages differ from gen --output lines"
# Per session, the topic keeps the generator's order (one key, one partition).
kcat -b "$SR_BOOTSTRAP" -t genned -C -e -q -f '%k %p %o %s\n' |
    /usr/bin/python3 -c '
import json, sys
last = {}
for l in sys.stdin:
    k, p, o, v = l.split(" ", 3)
    ts = json.loads(v)["timestamp_ms"]
    prev = last.get(k)
    if prev is not None and (prev[0] != p or prev[1] > ts):
        sys.exit("session %s out of order or split over partitions" % k)
    last[k] = (p, ts)' || fail "gen --topic ordering"

# Avro binary values (bare, our schema) also produce.
"$BIN" gen --sessions 10 --items 50 --events 40 --seed 2 --format avro --topic genavro \
    -b "$SR_BOOTSTRAP" || fail "gen --format avro to topic"
[ "$(kcat -b "$SR_BOOTSTRAP" -t genavro -C -e -q -f '%k\n' | grep -c .)" = 40 ] ||
    fail "gen --format avro: wrong count"

# SIGTERM -> exit 0.
sr_broker_stop
rc=$?
[ "$rc" = 0 ] || fail "broker exited $rc on SIGTERM"

# A one-broker cluster (replication 1) also serves; SIGINT stops it too.
sr_broker_start "$BIN" --brokers 1 --topic one:2 || fail "one-broker start"
[ "$(parts one)" = 2 ] || fail "one-broker topic partitions"
kill -INT "$SR_BROKER_PID"
wait "$SR_BROKER_PID"
rc=$?
SR_BROKER_PID=
[ "$rc" = 0 ] || fail "broker exited $rc on SIGINT"
# --control: fault injection. A broker down refuses connections; up again, it serves; pushed
# Produce errors are retried by the idempotent producer (max.in.flight 1, as issue 4 advises)
# and nothing is lost; bad commands are answered with "error: ...".
SR_BROKER_CONTROL=1 sr_broker_start "$BIN" --brokers 3 --topic faults:2 || fail "control start"
sr_broker_ctl "topic late:6" || fail "ctl topic"
[ "$(parts late)" = 6 ] || fail "ctl topic: '$(parts late)' partitions"
sr_broker_ctl "bogus 1" 2>/dev/null && fail "ctl accepted a bogus command"
sr_broker_ctl "down 9" 2>/dev/null && fail "ctl accepted broker 9 of 3"
sr_broker_ctl "errors Produce NOT_LEADER_FOR_PARTITION,REQUEST_TIMED_OUT,NOT_ENOUGH_REPLICAS" ||
    fail "ctl errors"
"$BIN" gen --sessions 20 --items 50 --events 200 --seed 4 --topic faults -b "$SR_BOOTSTRAP" \
    -X max.in.flight.requests.per.connection=1 -X retry.backoff.ms=10 2>/dev/null ||
    fail "gen under pushed Produce errors"
[ "$(kcat -b "$SR_BOOTSTRAP" -t faults -C -e -q -f '%k\n' | grep -c .)" = 200 ] ||
    fail "pushed errors: messages lost or duplicated"
first=${SR_BOOTSTRAP%%,*}
for id in 1 2 3; do sr_broker_ctl "down $id" || fail "ctl down $id"; done
kcat -b "$first" -L -m 2 >/dev/null 2>&1 && fail "all brokers down, yet metadata answered"
for id in 1 2 3; do sr_broker_ctl "up $id" || fail "ctl up $id"; done
[ "$(parts faults)" = 2 ] || fail "after down/up: metadata"
sr_broker_stop || fail "control broker exit status"

echo "ok: broker and gen --topic"
