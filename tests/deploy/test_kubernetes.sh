#!/usr/bin/env bash
# test_kubernetes.sh ROOT BINARY — deploy/kubernetes validated offline: every object against
# its Kubernetes/KEDA schema and the wiring between them (k8s-validator/validate.mjs), then
# the ConfigMap's properties plus the container's STREAMREC_* variables accepted by
# `streamrec config` as the pod would start. Needs node and the validator's npm packages
# (deploy/install-deps.sh installs both); exit 77 (skipped) without them.
set -euo pipefail
root=$1 bin=$2
here=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null || { echo "skip: node not installed (Debian: nodejs)"; exit 77; }
[ -d "$here/k8s-validator/node_modules/kubernetes-models" ] ||
  { echo "skip: validator packages not installed (run deploy/install-deps.sh)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
node "$here/k8s-validator/validate.mjs" "$root/deploy/kubernetes" "$tmp/streamrec.properties"
envs=(PATH="$PATH")
for n in $(sed -n 's/^#env //p' "$tmp/streamrec.properties"); do
  case $n in STREAMREC_INSTANCE_ID) envs+=("$n=streamrec-0") ;; *) envs+=("$n=secret") ;; esac
done
# The bundle path is the image's; check with the source tree's copy of the same bundle.
if ! out=$(env -i "${envs[@]}" "$bin" config -c "$tmp/streamrec.properties" \
             --set "model.bundle=$root/deploy/demo-bundle" 2>&1); then
  echo "FAIL: the pod's configuration is refused: $out"; exit 1
fi
echo "PASS: streamrec config accepts the ConfigMap with ${envs[*]:1}" | sed 's/PASSWORD=secret/PASSWORD=***/'
