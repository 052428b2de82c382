#!/usr/bin/env bash
# tests/stream/test_logs.sh STREAMREC — `streamrec run` with log.format=json on the embedded
# mock broker: every stderr line is one JSON object (time in RFC 3339 UTC with ms, level,
# component, message), the effective configuration and librdkafka's lines included; an
# undecodable event's line names topic/partition/offset as fields. Then the broker goes down:
# each connection failure is logged once (librdkafka's FAIL line, not again by the error_cb),
# and no raw logical offset (-1001, -2, ...) appears.
set -euo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/broker_fixture.sh"
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
SR_BROKER_CONTROL=1 sr_broker_start "$bin" --brokers 1 --topic events:2 \
    --topic recommendations:2 --topic streamrec-sessions-changelog:2
cat >"$work/run.properties" <<P
model.bundle=$here/../../deploy/demo-bundle
kafka.bootstrap.servers=$SR_BOOTSTRAP
kafka.reconnect.backoff.ms=100
kafka.reconnect.backoff.max.ms=200
state.dir=$work/state
metrics.listen=
log.format=json
schema.registry.ssl.key.password=hunter2
P
"$bin" run -c "$work/run.properties" 2>"$work/run.log" &
run=$!
for _ in $(seq 300); do grep -q 'partitions assigned' "$work/run.log" && break; sleep 0.1; done
grep -q 'partitions assigned' "$work/run.log" ||
    { echo "FAIL: no partitions assigned"; cat "$work/run.log"; kill $run; exit 1; }
# One event that does not decode, one that does.
"$py" - "$SR_BOOTSTRAP" <<'PY'
import sys
from confluent_kafka import Producer
p = Producer({'bootstrap.servers': sys.argv[1]})
p.produce('events', key=b's1', value=b'{not json', partition=1)
p.produce('events', key=b's1', value=b'{"session_id":"s1","item_id":"i1","event_type":"view",'
          b'"timestamp_ms":1700000000000}', partition=1)
p.flush(10)
PY
for _ in $(seq 100); do grep -q '"invalid event"' "$work/run.log" && break; sleep 0.1; done
sr_broker_ctl "down 1"
sleep 3
sr_broker_ctl "up 1"
sleep 1
kill -TERM $run
rc=0; wait $run || rc=$?
[ $rc -eq 0 ] || { echo "FAIL: run exited $rc after SIGTERM"; tail -20 "$work/run.log"; exit 1; }
sr_broker_stop
"$py" - "$work/run.log" <<'PY'
import json, re, sys, collections
lines = open(sys.argv[1], encoding='utf-8').read().splitlines()
objs = []
for n, l in enumerate(lines, 1):
    try:
        o = json.loads(l)
    except ValueError as e:
        sys.exit("FAIL: line %d is not JSON (%s): %s" % (n, e, l[:300]))
    if not isinstance(o, dict):
        sys.exit("FAIL: line %d is not an object: %s" % (n, l[:300]))
    for k in ('time', 'level', 'component', 'message'):
        if not isinstance(o.get(k), str):
            sys.exit("FAIL: line %d has no string %r: %s" % (n, k, l[:300]))
    if not re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', o['time']):
        sys.exit("FAIL: line %d: time %r is not RFC 3339 UTC with ms" % (n, o['time']))
    if o['level'] not in ('debug', 'info', 'warn', 'error'):
        sys.exit("FAIL: line %d: level %r" % (n, o['level']))
    objs.append(o)
def find(pred, what):
    for o in objs:
        if pred(o):
            return o
    sys.exit("FAIL: no line with %s" % what)
find(lambda o: o['message'] == 'configuration' and o.get('key') == 'kafka.bootstrap.servers',
     'the effective configuration')
pw = find(lambda o: o.get('key') == 'schema.registry.ssl.key.password', 'the masked secret')
assert pw['value'] == '***', pw
assert not any('hunter2' in l for l in lines), 'a secret in the log'
bad = find(lambda o: o['message'] == 'invalid event', 'the undecodable event')
assert (bad.get('topic'), bad.get('partition'), bad.get('offset')) == ('events', '1', '0'), bad
find(lambda o: o['component'] == 'kafka' and o.get('facility'), "librdkafka's own lines")
# The broker down: connection failures, each once. librdkafka's FAIL line stays; the
# error_cb must not repeat it (same client, same text).
fails = [o for o in objs if o['component'] == 'kafka' and o.get('facility') == 'FAIL'
         and o['level'] == 'error']
again = [o for o in objs if o['message'] == 'kafka error' and
         any(re.sub(r'^\[thrd:[^]]*\]: ', '', f['message']) == o.get('reason') and
             f.get('client') == o.get('client') for f in fails)]
if not fails:
    sys.exit("FAIL: no connection failure logged while the broker was down")
if again:
    sys.exit("FAIL: %d connection failures logged twice, e.g. %s" % (len(again), again[0]))
raw = [l for l in lines if re.search(r'@-\d|offset"?[=:]"?-\d', l)]
if raw:
    sys.exit("FAIL: a raw logical offset: %s" % raw[0][:300])
print("ok: %d JSON lines, %d connection failures each logged once" % (len(objs), len(fails)))
PY
