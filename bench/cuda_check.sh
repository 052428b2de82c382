#!/usr/bin/env bash
# bench/cuda_check.sh — run on a machine with an NVIDIA GPU: configures a CUDA build
# (SR_CUDA=ON) into build-gpu, builds it and runs the CUDA, kernel and score tests
# (test_cuda_parity compares every cuda op with the cpu backend there).
#
# Environment (all optional):
#   CMAKE_PREFIX_PATH  prefixes holding dependencies unpacked outside /usr (e.g. .deb contents);
#                      their lib/ and lib/x86_64-linux-gnu/ are added to LD_LIBRARY_PATH
#   PKG_CONFIG_PATH    extra .pc directories, passed through to CMake's pkg-config
#   CUDA_ARCH          CMAKE_CUDA_ARCHITECTURES (default: the project's 80;90)
#   BUILD_DIR          build directory (default build-gpu)
#   JOBS               parallel build jobs (default: nproc)
#   TEST_REGEX         ctest -R pattern (default 'cuda|kernels|score')
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build-gpu}
TEST_REGEX=${TEST_REGEX:-cuda|kernels|score}

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
    echo "cuda_check: nvidia-smi not found; the CUDA tests will report 'skipped: no CUDA device'" >&2
fi

args=(-DSR_CUDA=ON)
[ -x /usr/local/cuda/bin/nvcc ] && args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
[ -n "${CUDA_ARCH:-}" ] && args+=("-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH}")
if [ -n "${CMAKE_PREFIX_PATH:-}" ]; then
    args+=("-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH}")
    IFS=':' read -r -a prefixes <<<"${CMAKE_PREFIX_PATH}"
    for p in "${prefixes[@]}"; do
        for d in "$p/lib" "$p/lib/x86_64-linux-gnu"; do
            [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        done
    done
    export LD_LIBRARY_PATH
fi
[ -n "${PKG_CONFIG_PATH:-}" ] && export PKG_CONFIG_PATH

cmake -S . -B "$BUILD_DIR" "${args[@]}"
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
ctest --test-dir "$BUILD_DIR" -R "$TEST_REGEX" --output-on-failure
