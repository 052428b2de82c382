#!/usr/bin/env bash
# test_install.sh BUILD_DIR — `cmake --install BUILD_DIR --prefix TMP` installs what a package
# needs, and it works from there: the binary, the schemas, the model scripts, the demo
# bundle, the systemd unit (ExecStart at the installed binary; `systemd-analyze verify`
# finds the binary and the man page it documents), the example configuration (accepted by
# the installed binary), the deployment examples, and streamrec.1, which names every command
# of `streamrec --help` and renders without a warning (groff -ww; man --warnings).
set -euo pipefail
build=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/usr" >/dev/null
p=$tmp/usr
fail=0
for f in bin/streamrec share/man/man1/streamrec.1 lib/systemd/system/streamrec.service \
         share/streamrec/schemas/user_event.avsc share/streamrec/schemas/recommendation.avsc \
         share/streamrec/model/export.py share/streamrec/model/train.py share/streamrec/model/srbundle.py \
         share/streamrec/demo-bundle/bundle.json share/streamrec/demo-bundle/model.safetensors \
         share/streamrec/demo-bundle/items.tsv \
         share/doc/streamrec/examples/systemd/streamrec.properties share/doc/streamrec/examples/systemd/streamrec.env \
         share/doc/streamrec/examples/container/Dockerfile share/doc/streamrec/examples/container/runtime-packages.txt \
         share/doc/streamrec/examples/kubernetes/statefulset.yaml share/doc/streamrec/examples/kubernetes/kustomization.yaml \
         share/doc/streamrec/examples/prometheus/alerts.yml share/doc/streamrec/examples/grafana/streamrec.json \
         share/doc/streamrec/DEPLOY.md share/doc/streamrec/GUIDE.md; do
  [ -f "$p/$f" ] || { echo "FAIL: $f not installed"; fail=1; }
done
for f in bin/streamrec share/streamrec/model/export.py share/streamrec/model/train.py; do
  [ -x "$p/$f" ] || { echo "FAIL: $f not executable"; fail=1; }
done
[ $fail -eq 0 ] || exit 1

"$p/bin/streamrec" --help >/dev/null
"$p/bin/streamrec" bundle check "$p/share/streamrec/demo-bundle" >/dev/null ||
  { echo "FAIL: the installed demo bundle does not load"; fail=1; }
"$p/bin/streamrec" config -c "$p/share/doc/streamrec/examples/systemd/streamrec.properties" >/dev/null ||
  { echo "FAIL: the installed example properties are refused"; fail=1; }
grep -q "^ExecStart=$p/bin/streamrec run " "$p/lib/systemd/system/streamrec.service" ||
  { echo "FAIL: the installed unit's ExecStart is not $p/bin/streamrec"; fail=1; }
if command -v systemd-analyze >/dev/null; then
  if ! out=$(MANPATH="$p/share/man" systemd-analyze verify "$p/lib/systemd/system/streamrec.service" 2>&1) ||
     [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify (installed unit, man page):"; echo "$out"; fail=1
  fi
else
  echo "note: systemd-analyze not installed; installed unit not verified"
fi

# The man page: every command of `streamrec --help` has its section; renders cleanly.
man1=$p/share/man/man1/streamrec.1
for c in $("$p/bin/streamrec" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on=0}'); do
  grep -q "^\.SS $c\$" "$man1" || { echo "FAIL: streamrec.1 has no section for command $c"; fail=1; }
done
grep -q '^\.SH CONFIGURATION' "$man1" && grep -q 'model.bundle' "$man1" ||
  { echo "FAIL: streamrec.1 lacks the configuration keys"; fail=1; }
if command -v groff >/dev/null; then
  if ! out=$(LC_ALL=C.UTF-8 groff -k -man -Tutf8 -ww -z "$man1" 2>&1) || [ -n "$out" ]; then
    echo "FAIL: groff -man -ww: $out"; fail=1
  fi
else
  echo "note: groff not installed (Debian: groff-base); man page not rendered"
fi
if command -v man >/dev/null; then
  if ! out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$man1" 2>&1 >/dev/null) || [ -n "$out" ]; then
    echo "FAIL: man --warnings -l: $out"; fail=1
  fi
fi
[ $fail -eq 0 ] && echo "PASS: install tree complete ($(find "$p" -type f | wc -l) files), man page renders"
exit $fail
