#!/usr/bin/env bash
# Installs every Debian (bookworm) package that streamrec's build, tests, benchmarks and demo
# need. Idempotent: packages already present are left alone. Run as root (or via sudo).
# CUDA (nvcc, cuBLAS) is not a Debian package here: it comes with the machine image, and the
# build enables the CUDA backend only where nvcc is found.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git ca-certificates
  librdkafka-dev libavro-dev libjansson-dev librocksdb-dev libuv1-dev
  libopenblas-dev libfaiss-dev libcmocka-dev
  clang llvm libclang-rt-14-dev
  kcat python3 python3-numpy python3-confluent-kafka
)
# Developer/benchmark tools that are large; SR_MINIMAL_DEPS=1 skips them.
extra=(python3-torch python3-faiss python3-avro)

missing=()
for p in "${pkgs[@]}" ${SR_MINIMAL_DEPS:+} "${extra[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ -n "${SR_MINIMAL_DEPS:-}" ]; then
  tmp=(); for p in "${missing[@]}"; do case " ${extra[*]} " in *" $p "*) ;; *) tmp+=("$p");; esac; done
  missing=("${tmp[@]}")
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
