#!/usr/bin/env bash
# tests/stream/test_cli_args.sh STREAMREC — the one argument parser (stream/cli/args.c): every
# command says an unknown option, a missing value and a bad number in the same words, on one
# line of stderr, with exit status 1, before doing anything else (DESIGN §6).
set -u
BIN=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
n=0
# expect "ARGS" "EXACT STDERR LINE"
expect() {
    local args=$1 want=$2 rc
    # shellcheck disable=SC2086
    "$BIN" $args >"$TMP/out" 2>"$TMP/err" </dev/null
    rc=$?
    n=$((n + 1))
    [ "$rc" = 1 ] || { echo "FAIL: streamrec $args: exit $rc, want 1"; cat "$TMP/err"; exit 1; }
    [ "$(wc -l <"$TMP/err")" = 1 ] || { echo "FAIL: streamrec $args: not one line:"; cat "$TMP/err"; exit 1; }
    [ "$(cat "$TMP/err")" = "$want" ] ||
        { echo "FAIL: streamrec $args:"; echo "  got:  $(cat "$TMP/err")"; echo "  want: $want"; exit 1; }
    [ ! -s "$TMP/out" ] || { echo "FAIL: streamrec $args wrote to stdout"; exit 1; }
}

# unknown option
for cmd in config run replay score gen broker demo "bundle check" "bundle add-items" \
           "bundle build-index" "bench retrieval" "bench model" "bench e2e"; do
    if [ "$cmd" = "bundle build-index" ] && "$BIN" bundle build-index x 2>&1 | grep -q "no FAISS"; then
        continue # a build without FAISS refuses build-index first
    fi
    expect "$cmd --bogus" "streamrec $cmd: unknown option '--bogus' (see streamrec $cmd --help)"
done
# missing value (the option is the last argument)
expect "config -c" "streamrec config: option '-c' needs a value (see streamrec config --help)"
expect "run -c" "streamrec run: option '-c' needs a value (see streamrec run --help)"
expect "replay --input" "streamrec replay: option '--input' needs a value (see streamrec replay --help)"
expect "score x -k" "streamrec score: option '-k' needs a value (see streamrec score --help)"
expect "gen --sessions" "streamrec gen: option '--sessions' needs a value (see streamrec gen --help)"
expect "broker --topic" "streamrec broker: option '--topic' needs a value (see streamrec broker --help)"
expect "demo --set" "streamrec demo: option '--set' needs a value (see streamrec demo --help)"
expect "bundle add-items x --out" \
    "streamrec bundle add-items: option '--out' needs a value (see streamrec bundle add-items --help)"
expect "bench e2e --bundle" "streamrec bench e2e: option '--bundle' needs a value (see streamrec bench e2e --help)"
# bad numbers
expect "score x -k 0" "streamrec score: -k: '0' is not an integer in 1..100000"
expect "score x --batch 12x" "streamrec score: --batch: '12x' is not an integer in 1..1000000"
expect "gen --items 1.5" "streamrec gen: --items: '1.5' is not an integer in 2..100000000"
expect "gen --events 0" "streamrec gen: --events: '0' is not an integer >= 1"
expect "gen --zipf 9" "streamrec gen: --zipf: '9' is not a number in 0..5"
expect "gen --seed -3" "streamrec gen: --seed: '-3' is not an unsigned integer"
expect "broker --brokers 33" "streamrec broker: --brokers: '33' is not an integer in 1..32"
expect "demo --rate fast" "streamrec demo: --rate: 'fast' is not a number in 1..1000000"
expect "demo --events x" "streamrec demo: --events: 'x' is not an integer in 1..1000000000"
expect "bench retrieval --reps 0" "streamrec bench retrieval: --reps: '0' is not an integer in 1..100000"
expect "bench model --layers many" "streamrec bench model: --layers: 'many' is not an integer in 1..256"
expect "bench e2e --events 5k" "streamrec bench e2e: --events: '5k' is not an integer in 1..2147483647"
expect "bench e2e --rates 100,x" "streamrec bench e2e: --rates: 'x' is not a number in 0..1000000000"
# values that are not numbers: the same shape
expect "demo --state disk" "streamrec demo: --state: 'disk' is not one of rocksdb, memory"
expect "broker --topic t" \
    "streamrec broker: --topic: 't' is not NAME:PARTITIONS (a name of [A-Za-z0-9._-], 1..10000 partitions)"
# a positional argument where none is taken
expect "run extra" "streamrec run: unexpected argument 'extra' (see streamrec run --help)"
expect "score a b" "streamrec score: unexpected argument 'b' (see streamrec score --help)"
# an option's value is the next argument, whatever it looks like: a value of '-' and a
# negative number are values, not options
expect "score x --threads -1" "streamrec score: --threads: '-1' is not an integer in 0..256"
echo "PASS ($n cases)"
