#!/usr/bin/env bash
# check-runtime.sh BINARY [ROOTFS] — proves the container's runtime stage complete and minimal
# without a container engine: every shared library `ldd BINARY` resolves must belong (dpkg -S)
# to a package of runtime-packages.txt, and every package listed must provide one of them
# (or say on its line that it is "not a library"). With ROOTFS, a Debian tree holding those
# packages (e.g. `debootstrap --variant=minbase --include=<the list> bookworm ROOTFS`), the
# binary and the demo bundle are copied in and run there with chroot: --help, bundle check,
# and a replay of generated events (needs root). The list is bookworm's, like the image: on
# another release the check skips (exit 77), since its binary links that release's libraries.
set -euo pipefail
bin=$1 rootfs=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
list=$here/runtime-packages.txt
codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"')
if [ "$codename" != bookworm ]; then
  echo "skip: runtime-packages.txt lists Debian bookworm's packages (the image's base); this is '${codename:-unknown}'"
  exit 77
fi
command -v dpkg >/dev/null || { echo "skip: no dpkg"; exit 77; }

declare -A listed used
while read -r line; do
  p=${line%%#*}; p=${p//[[:space:]]/}
  [ -n "$p" ] || continue
  case $line in *"# not a library"*) used[$p]=1 ;; esac
  listed[$p]=1
done < "$list"

# owner PATH: the package owning a library path, trying it as given and resolved, with and
# without /usr (merged-/usr systems register either).
owner() {
  local c
  for c in "$1" "$(readlink -f "$1")"; do
    for v in "$c" "${c#/usr}" "/usr$c"; do
      dpkg -S "$v" 2>/dev/null | sed -n '1s/:.*//p' | grep . && return 0
    done
  done
  return 1
}

fail=0
ldd_out=$(ldd "$bin")
if grep -q 'not found' <<<"$ldd_out"; then
  echo "FAIL: ldd: unresolved libraries:"; grep 'not found' <<<"$ldd_out"; fail=1
fi
n=0
while read -r soname path; do
  # The image is built with SR_CUDA=OFF: a CUDA-enabled build's toolkit libraries are not the
  # image's business (and belong to no Debian package).
  case "$path" in /usr/local/cuda*) continue ;; esac
  # Nor are a sanitizer build's runtimes (the image is a release build).
  case "$soname" in libasan.so*|libubsan.so*|liblsan.so*|libtsan.so*) continue ;; esac
  n=$((n + 1))
  if ! pkg=$(owner "$path"); then
    echo "FAIL: $soname ($path) belongs to no Debian package"; fail=1; continue
  fi
  pkg=${pkg%%:*}
  if [ -z "${listed[$pkg]:-}" ]; then
    echo "FAIL: $soname comes from $pkg, which runtime-packages.txt does not list"; fail=1
  fi
  used[$pkg]=1
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 } $1 ~ /^\// { print $1, $1 }' <<<"$ldd_out")
for p in "${!listed[@]}"; do
  [ -n "${used[$p]:-}" ] || { echo "FAIL: $p is listed but provides none of the libraries streamrec links"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: $n shared libraries, all from the ${#listed[@]} listed packages"

if [ -n "$rootfs" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "FAIL: chroot into $rootfs needs root"; exit 1; }
  for p in "${!listed[@]}"; do
    chroot "$rootfs" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      { echo "FAIL: $rootfs lacks package $p"; fail=1; }
  done
  src=$(cd "$here/../.." && pwd)
  rm -rf "$rootfs/opt/streamrec-check"
  mkdir -p "$rootfs/opt/streamrec-check"
  cp "$bin" "$rootfs/opt/streamrec-check/streamrec"
  cp -r "$src/deploy/demo-bundle" "$rootfs/opt/streamrec-check/demo-bundle"
  printf 'model.bundle=/opt/streamrec-check/demo-bundle\nstate.backend=memory\n' > "$rootfs/opt/streamrec-check/replay.properties"
  r() { chroot "$rootfs" /opt/streamrec-check/streamrec "$@"; }
  if r --help >/dev/null && r bundle check /opt/streamrec-check/demo-bundle >/dev/null &&
     r gen --sessions 50 --events 500 --items 1000 --seed 1 --output /opt/streamrec-check/ev.jsonl >/dev/null &&
     r replay -c /opt/streamrec-check/replay.properties --input /opt/streamrec-check/ev.jsonl \
       --output /opt/streamrec-check/recs.jsonl >/dev/null &&
     [ -s "$rootfs/opt/streamrec-check/recs.jsonl" ]; then
    echo "ok: in $rootfs: --help, bundle check, gen and replay ($(wc -l < "$rootfs/opt/streamrec-check/recs.jsonl") recommendations)"
  else
    echo "FAIL: streamrec does not run in $rootfs"; fail=1
  fi
  rm -rf "$rootfs/opt/streamrec-check"
fi
[ $fail -eq 0 ] && echo "PASS: the runtime stage's packages provide everything streamrec links"
exit $fail
