#!/usr/bin/env bash
# tests/stream/test_notify.sh STREAMREC — `streamrec run` under a systemd-like supervisor: a unix
# datagram socket in $NOTIFY_SOCKET receives READY=1 only once the group is joined, WATCHDOG=1
# at half of $WATCHDOG_USEC, RELOADING=1 + READY=1 around the bundle reload SIGHUP asks for (which
# must not stop the process), and STOPPING=1 on SIGTERM, after which run exits 0. On the embedded
# mock broker.
set -euo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/broker_fixture.sh"
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sr_broker_start "$bin" --topic events:2 --topic recommendations:2 \
    --topic streamrec-sessions-changelog:2
cat >"$work/run.properties" <<P
model.bundle=$here/../../deploy/demo-bundle
kafka.bootstrap.servers=$SR_BOOTSTRAP
state.dir=$work/state
metrics.listen=
schema.registry.ssl.key.password=hunter2
P
# The supervisor: records each datagram with the time it came, until STOPPING=1 or 60 s.
"$py" - "$work/notify.sock" "$work/notify.log" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(60)
with open(sys.argv[2], 'w') as out:
    while True:
        d = s.recv(4096).decode()
        out.write(d.replace('\n', ' ') + '\n'); out.flush()
        if 'STOPPING=1' in d:
            break
PY
sup=$!
for _ in $(seq 50); do [ -S "$work/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$work/notify.sock WATCHDOG_USEC=1000000 "$bin" run -c "$work/run.properties" \
    >"$work/run.log" 2>&1 &
run=$!
for _ in $(seq 300); do grep -q '^READY=1' "$work/notify.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY=1 STATUS=joined the consumer group' "$work/notify.log" ||
    { echo "FAIL: no READY=1 after joining"; cat "$work/notify.log" "$work/run.log"; exit 1; }
kill -HUP $run
sleep 1.5
kill -0 $run 2>/dev/null || { echo "FAIL: SIGHUP stopped run"; cat "$work/run.log"; exit 1; }
grep -q 'model reloaded:.*trigger=SIGHUP' "$work/run.log" ||
    { echo "FAIL: SIGHUP did not reload the bundle"; cat "$work/run.log"; exit 1; }
grep -q '^RELOADING=1 MONOTONIC_USEC=[0-9]*' "$work/notify.log" ||
    { echo "FAIL: no RELOADING=1 on SIGHUP"; cat "$work/notify.log"; exit 1; }
kill -TERM $run
rc=0; wait $run || rc=$?
wait $sup || true
[ $rc -eq 0 ] || { echo "FAIL: run exited $rc after SIGTERM"; cat "$work/run.log"; exit 1; }
ready=$(grep -c '^READY=1' "$work/notify.log")
[ "$ready" -eq 2 ] || { echo "FAIL: $ready READY=1 (want 2: joined, after the reload)"; exit 1; }
dogs=$(grep -c '^WATCHDOG=1' "$work/notify.log")
[ "$dogs" -ge 3 ] || { echo "FAIL: only $dogs WATCHDOG=1 in ~2 s at a 0.5 s period"; exit 1; }
tail -n 1 "$work/notify.log" | grep -q '^STOPPING=1' ||
    { echo "FAIL: the last notification is not STOPPING=1"; cat "$work/notify.log"; exit 1; }
# The effective configuration is logged at start-up, secrets masked.
grep -q "info run configuration kafka.bootstrap.servers=$SR_BOOTSTRAP" "$work/run.log" ||
    { echo "FAIL: the effective configuration is not logged"; head "$work/run.log"; exit 1; }
grep -q 'schema.registry.ssl.key.password=\*\*\*' "$work/run.log" && ! grep -q hunter2 "$work/run.log" ||
    { echo "FAIL: a secret is not masked in the log"; exit 1; }
sr_broker_stop
echo "ok: READY after join, $dogs watchdog keep-alives, reload acknowledged, STOPPING on SIGTERM"
