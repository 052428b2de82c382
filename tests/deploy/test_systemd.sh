#!/usr/bin/env bash
# test_systemd.sh UNIT BINARY — deploy/systemd/streamrec.service passes `systemd-analyze verify`
# with nothing to say (unknown or misspelt settings only warn there, so any output fails),
# keeps the contract docs/DEPLOY.md describes (Type=notify, watchdog, reload by SIGHUP,
# StateDirectory, no capabilities), and scores at most 2.0 in `systemd-analyze security
# --offline`. ExecStart is pointed at the built binary (verify requires it to exist); the man
# page is checked by the install test, where it exists. Exit 77 (skipped): no systemd-analyze.
set -euo pipefail
unit=$1 bin=$2
command -v systemd-analyze >/dev/null || { echo "skip: systemd-analyze not installed"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sed "s#^ExecStart=/usr/bin/streamrec #ExecStart=$bin #" "$unit" > "$tmp/streamrec.service"
grep -q "^ExecStart=$bin run " "$tmp/streamrec.service" || { echo "FAIL: no ExecStart=/usr/bin/streamrec run"; exit 1; }

fail=0
if ! out=$(systemd-analyze verify --man=no "$tmp/streamrec.service" 2>&1) || [ -n "$out" ]; then
  echo "FAIL: systemd-analyze verify:"; echo "$out"; fail=1
fi
for want in '^Type=notify$' '^NotifyAccess=main$' '^WatchdogSec=' '^ExecReload=/bin/kill -HUP \$MAINPID$' \
            '^StateDirectory=streamrec$' '^ProtectSystem=strict$' '^NoNewPrivileges=yes$' \
            '^PrivateTmp=yes$' '^ProtectHome=yes$' '^CapabilityBoundingSet=$' \
            '^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$' '^EnvironmentFile=-/etc/streamrec/streamrec.env$'; do
  grep -q -- "$want" "$unit" || { echo "FAIL: $unit lacks a line matching $want"; fail=1; }
done
# The example properties file names the StateDirectory as state.dir.
props=$(dirname "$unit")/streamrec.properties
grep -q '^state.dir=/var/lib/streamrec$' "$props" || { echo "FAIL: $props: state.dir is not /var/lib/streamrec"; fail=1; }
# (the bundle path is the installed one; check with the source tree's copy)
"$bin" config -c "$props" --set "model.bundle=$(dirname "$unit")/../demo-bundle" >/dev/null || { echo "FAIL: $props is refused by streamrec config"; fail=1; }

sec=$(systemd-analyze security --offline=true "$tmp/streamrec.service" 2>&1 | sed -n 's/.*Overall exposure level for streamrec.service: \([0-9.]*\).*/\1/p')
if [ -z "$sec" ] || ! awk -v s="$sec" 'BEGIN { exit !(s <= 2.0) }'; then
  echo "FAIL: systemd-analyze security exposure '${sec:-?}' (want <= 2.0)"; fail=1
else
  echo "systemd-analyze security: exposure $sec"
fi
[ $fail -eq 0 ] && echo "PASS: streamrec.service verified"
exit $fail
