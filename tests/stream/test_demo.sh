#!/usr/bin/env bash
# tests/stream/test_demo.sh STREAMREC CMAKE BUILD_DIR — `streamrec demo`, end to end in one
# process (issue 4 "done when", issue 5 "far above the baseline"):
#   1. --events 3000 --rate 3000 from the build tree (bundle found by itself): exit 0, the
#      summary, every trigger event answered, HitRate@10 of the model > 0.5 and > 2x the
#      most-popular baseline's, end-to-end latency printed;
#   2. --seed 9 (a chain the bundle never saw) with in-memory state: the model falls to chance,
#      below the baseline — the comparison is not built in;
#   3. installed with `cmake --install`: the installed program finds share/streamrec/demo-bundle;
#   4. --help, bad arguments and a bad --bundle exit with a one-line reason.
set -u
BIN=$1
CMAKE=$2
BUILD=$3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$TMP/out" 2>/dev/null; echo "--- stderr"; cat "$TMP/err" 2>/dev/null; exit 1; }
field() { # summary row label, column (1 = model, 2 = most-popular)
    awk -v l="$1" -v c="$2" '$1 == l { print $(1 + c) }' "$TMP/out"
}

# --- arguments ------------------------------------------------------------------------------
"$BIN" demo --help >"$TMP/out" || fail "demo --help"
grep -q -- "--duration" "$TMP/out" || fail "--help does not describe --duration"
for bad in "--bogus" "--rate 0" "--events x" "--duration 0" "--state nowhere"; do
    # shellcheck disable=SC2086
    "$BIN" demo $bad >"$TMP/out" 2>"$TMP/err" && fail "demo $bad accepted"
    [ "$(wc -l <"$TMP/err")" = 1 ] || fail "demo $bad: not a one-line reason"
done
"$BIN" demo --bundle "$TMP" --events 10 >"$TMP/out" 2>"$TMP/err" && fail "a bundle-less --bundle accepted"
grep -q "no bundle.json" "$TMP/err" || fail "bad --bundle: reason"

# --- 1. the demo ------------------------------------------------------------------------------
start=$(date +%s)
mkdir "$TMP/tmp"
TMPDIR="$TMP/tmp" "$BIN" demo --events 3000 --rate 3000 >"$TMP/out" 2>"$TMP/err" || fail "demo exited $?"
echo "demo took $(( $(date +%s) - start )) s"
cat "$TMP/out"
grep -q "^streamrec demo: summary (events reached)" "$TMP/out" || fail "no summary"
grep -q "3000 produced in .* 3000 processed" "$TMP/out" || fail "not every event processed"
read -r recs trig < <(sed -n 's/^ *recommendations *\([0-9]*\) received for \([0-9]*\) trigger.*/\1 \2/p' "$TMP/out")
[ -n "${recs:-}" ] && [ "$recs" -gt 2500 ] && [ "$recs" = "$trig" ] ||
    fail "recommendations: '${recs:-}' received for '${trig:-}' triggers"
grep -q "not matched" "$TMP/out" && fail "recommendations not matched to events"
grep -Eq "^ *latency *p50 [0-9.]+ ms  p99 [0-9.]+ ms" "$TMP/out" || fail "no latency line"
model=$(field HitRate@10 1)
base=$(field HitRate@10 2)
[ -n "$model" ] && [ -n "$base" ] || fail "no HitRate@10 row"
awk -v m="$model" -v b="$base" 'BEGIN { exit !(m > 0.5 && b > 0.05 && m > 2 * b) }' ||
    fail "HitRate@10 model $model vs most-popular $base: not far above"
for row in MRR@10 NDCG@10; do
    awk -v m="$(field $row 1)" -v b="$(field $row 2)" 'BEGIN { exit !(m > 2 * b) }' ||
        fail "$row model $(field $row 1) vs $(field $row 2)"
done
grep -q "state: rocksdb in $TMP/tmp/streamrec-demo" "$TMP/out" || fail "state not in TMPDIR"
[ -z "$(ls -A "$TMP/tmp")" ] || fail "the temporary state directory was left behind"

# --- 2. another chain: the model is at chance, the baseline is not --------------------------
"$BIN" demo --events 1500 --rate 3000 --seed 9 --state memory >"$TMP/out" 2>"$TMP/err" ||
    fail "demo --seed 9 exited $?"
model=$(field HitRate@10 1)
base=$(field HitRate@10 2)
awk -v m="$model" -v b="$base" 'BEGIN { exit !(m < 0.1 && b > m) }' ||
    fail "--seed 9: model $model, most-popular $base (expected the model at chance)"
echo "--seed 9: HitRate@10 model $model, most-popular $base"

# --- 3. installed ---------------------------------------------------------------------------
"$CMAKE" --install "$BUILD" --prefix "$TMP/prefix" >/dev/null || fail "cmake --install"
[ -f "$TMP/prefix/share/streamrec/demo-bundle/bundle.json" ] || fail "bundle not installed"
"$TMP/prefix/bin/streamrec" demo --events 600 --rate 3000 >"$TMP/out" 2>"$TMP/err" ||
    fail "installed demo exited $?"
grep -q "with $TMP/prefix/share/streamrec/demo-bundle" "$TMP/out" ||
    fail "the installed demo did not use the installed bundle"
grep -q "^streamrec demo: summary" "$TMP/out" || fail "installed demo: no summary"
echo "PASS"
