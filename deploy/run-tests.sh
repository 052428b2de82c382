#!/usr/bin/env bash
# Installs dependencies, builds streamrec and runs the whole test suite (CTest).
#   deploy/run-tests.sh                  normal build in build/
#   SR_SANITIZE=1 deploy/run-tests.sh    ASan + UBSan build in build-asan/ (CPU backend only)
# Extra CMake arguments can be passed in SR_CMAKE_ARGS. The online tests run on a real Apache
# Kafka started for the run (SR_TEST_KAFKA=real; `auto` or `mock` to allow or force librdkafka's
# mock cluster instead, SR_TEST_BOOTSTRAP=host:port for a cluster of your own: README). The
# Schema Registry tests run on a real Apicurio Registry started for the run (SR_TEST_REGISTRY=real;
# `auto` lets them skip when it cannot start: README).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
if [ -n "${SR_SANITIZE:-}" ]; then
  dir=build-asan
  args=(-DSR_SANITIZE=ON -DSR_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug)
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
  dir=build
  args=()
fi
# shellcheck disable=SC2086
cmake -S . -B "$dir" "${args[@]}" ${SR_CMAKE_ARGS:-}
cmake --build "$dir" -j "$jobs"
export SR_TEST_KAFKA=${SR_TEST_KAFKA:-real}
export SR_TEST_REGISTRY=${SR_TEST_REGISTRY:-real}
cd "$dir"
ctest --output-on-failure -j "$jobs" --timeout 900
