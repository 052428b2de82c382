#!/usr/bin/env bash
# test_config.sh — strict configuration through the command line: for each bad value,
# `streamrec config -c FILE` exits 1 with exactly one line naming key, value and the allowed
# values; run and replay refuse to start with the first problem, before touching a broker;
# Kubernetes service-link variables are ignored; `config --list` keeps a two-space gap.
# Usage: test_config.sh STREAMREC BUNDLE_DIR
set -u
SR=$1
BUNDLE=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# check_bad LINE EXPECTED: a file with a good bundle plus LINE must give exit 1 and one line
# that contains EXPECTED.
check_bad() {
    printf 'model.bundle=%s\n%s\n' "$BUNDLE" "$1" > "$T/c.properties"
    out=$(env -i PATH="$PATH" "$SR" config -c "$T/c.properties" 2>&1)
    rc=$?
    n=$(printf '%s\n' "$out" | wc -l)
    [ "$rc" = 1 ] || fail "'$1': exit $rc, want 1 ($out)"
    [ "$n" = 1 ] || fail "'$1': $n lines, want 1: $out"
    case "$out" in
    *"$2"*) ;;
    *) fail "'$1': got '$out', want '$2'" ;;
    esac
}

check_bad 'recs.k=abc' 'c.properties:2: recs.k=abc: expected an integer in 1..1000'
check_bad 'state.backend=redis' 'state.backend=redis: expected one of rocksdb, memory'
check_bad 'input.format=protobuf' 'input.format=protobuf: expected one of json, avro, avro-confluent'
check_bad 'metrics.listen=notaport' 'metrics.listen=notaport: expected host:port'
check_bad 'batch.max.wait.ms=-1' 'batch.max.wait.ms=-1: expected an integer in 0..60000'
check_bad 'session.ttl.ms=-1' 'session.ttl.ms=-1: expected an integer >= 0'
check_bad 'log.level=verbose' 'log.level=verbose: expected one of debug, info, warn, error, off'
check_bad 'input.topic=events,clicks' 'input.topic=events,clicks: expected one topic name'
check_bad 'graph.op.x.colour=red' 'graph.op.x.colour: unknown key: graph.op.x.type is not set'
check_bad $'graph.ops=x\ngraph.op.x.type=drop_items\ngraph.op.x.attribute=category\ngraph.op.x.values=a\ngraph.op.x.colour=red' \
    'graph.op.x.colour=red: unknown option of op type drop_items (its options: attribute, values, keep)'
check_bad 'graph.op.x.type=no_such_op' 'graph.op.x.type=no_such_op: expected an op type, one of'
check_bad 'recs.kk=3' "unknown configuration key 'recs.kk' (did you mean 'recs.k'?)"
check_bad 'recs.sampling.temperature=0' 'recs.sampling.temperature=0: expected a number in (0, 1e+09]'
check_bad 'recs.sampling.epsilon=1.5' 'recs.sampling.epsilon=1.5: expected a number in [0, 1]'
check_bad 'recs.min_score=high' 'recs.min_score=high: expected a number'
check_bad 'trending.event_weights=view:x' "trending.event_weights: 'view:x' is not type:weight"
check_bad 'recs.trending.slots=11' 'recs.trending.slots=11: more than recs.k (10)'
check_bad 'model.variant.c.share=10' 'model.variant.c.share: unknown key'
check_bad $'model.variants=a,b\nmodel.variant.a.share=70\nmodel.variant.b.share=50' 'the shares of a,b add up to 120, expected 100'

# A missing bundle directory (the only line: no other key is set).
printf 'model.bundle=%s/missing\n' "$T" > "$T/m.properties"
out=$("$SR" config -c "$T/m.properties" 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == *"model.bundle=$T/missing: expected an existing directory (No such file or directory)"* ]] ||
    fail "missing bundle: $rc $out"

# Every problem is reported, one line each.
printf 'model.bundle=%s\nrecs.k=abc\nstate.backend=redis\nlog.level=verbose\n' "$BUNDLE" > "$T/all.properties"
out=$("$SR" config -c "$T/all.properties" 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 3 ] || fail "all problems: $rc $out"

# Good: Java syntax, localhost and :port listeners, Kubernetes service links in the environment.
printf 'model.bundle: %s\nmetrics.listen localhost:9470\nsession.event_types=view,\\\n   click\n' "$BUNDLE" > "$T/good.properties"
out=$(STREAMREC_PORT_9464_TCP=tcp://10.0.0.1:9464 STREAMREC_SERVICE_HOST=10.0.0.1 \
      STREAMREC_PORT=tcp://10.0.0.1:9464 "$SR" config -c "$T/good.properties" --set metrics.listen=:9470 2>&1)
[ "$?" = 0 ] && [ "$out" = "configuration ok" ] || fail "good config: $out"
# ... and a key-shaped typo in the environment is refused with the nearest variable.
out=$(STREAMREC_RECS_KK=1 "$SR" config -c "$T/good.properties" 2>&1)
[ "$?" = 1 ] && [[ "$out" == *"STREAMREC_RECS_KK is not a configuration variable (did you mean STREAMREC_RECS_K?)"* ]] ||
    fail "env typo: $out"

# run and replay refuse to start with the first problem (no broker is needed to see it).
out=$(env -i PATH="$PATH" "$SR" run -c "$T/all.properties" 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$out" = "streamrec run: $T/all.properties:2: recs.k=abc: expected an integer in 1..1000" ] ||
    fail "run first problem: $rc $out"
out=$(env -i PATH="$PATH" "$SR" run 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"no configuration: give -c FILE"* ]] ||
    fail "run without -c: $rc $out"
printf 'model.bundle=%s\nstate.backend=memory\n' "$BUNDLE" > "$T/r.properties"
out=$("$SR" replay -c "$T/r.properties" --input 'topic:events@5..2' --output "$T/o.jsonl" 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == "streamrec replay: --input topic:events@5..2: empty range"* ]] ||
    fail "empty range: $rc $out"
out=$("$SR" replay -c "$T/r.properties" --input 'topic:events@2026-13-45T99:99:00Z' --output "$T/o.jsonl" 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == *"'2026-13-45T99:99:00Z': month 13 is not 1..12"* ]] ||
    fail "impossible date: $rc $out"
out=$("$SR" replay -c "$T/r.properties" --input 'topic:events@2026-02-30..2026-03-01' --output "$T/o.jsonl" 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == *"day 30 is not 1..28"* ]] || fail "Feb 30: $rc $out"
out=$("$SR" replay -c "$T/r.properties" --set recs.k=0 --input /dev/null --output "$T/o.jsonl" 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == "streamrec replay: --set: recs.k=0: expected an integer in 1..1000" ]] ||
    fail "replay --set: $rc $out"

# config --list: every row splits into key, default, meaning on two or more spaces.
"$SR" config --list | awk -F'  +' 'NF < 3 { print "FAIL: config --list row: " $0; bad = 1 } END { exit bad }' ||
    fails=$((fails + 1))
"$SR" config --list | grep -q '^runtime.max.inflight.events ' || fail "config --list lacks runtime.max.*"

# metrics.listen=localhost:PORT and :PORT serve /healthz (run on the embedded mock broker).
if command -v curl > /dev/null; then
    "$SR" broker --brokers 1 --topic events:1 --topic recommendations:1 > "$T/broker.out" 2>&1 &
    bpid=$!
    for _ in $(seq 50); do [ -s "$T/broker.out" ] && break; sleep 0.1; done
    bs=$(head -1 "$T/broker.out" | cut -d= -f2)
    port=$((20000 + $$ % 20000))
    for listen in "localhost:$port" ":$((port + 1))"; do
        "$SR" run --set model.bundle="$BUNDLE" --set kafka.bootstrap.servers="$bs" \
            --set state.backend=memory --set state.changelog=false --set metrics.listen="$listen" \
            > "$T/run.log" 2>&1 &
        rpid=$!
        code=000
        for _ in $(seq 100); do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${listen##*:}/healthz")
            [ "$code" = 200 ] && break
            sleep 0.1
        done
        kill -TERM "$rpid"; wait "$rpid"; rrc=$?
        [ "$code" = 200 ] && [ "$rrc" = 0 ] || fail "metrics.listen=$listen: /healthz $code, run exit $rrc: $(cat "$T/run.log")"
    done
    kill "$bpid"; wait "$bpid" 2> /dev/null
else
    echo "test_config: curl missing, metrics.listen serving not checked"
fi

[ "$fails" = 0 ] && echo "test_config: all passed"
exit $((fails > 0))
