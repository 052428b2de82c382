#!/usr/bin/env bash
# Installs dependencies, builds streamrec and runs the demo. Until the online runtime lands,
# the demo is the model engine: `streamrec score` on the example bundle in tests/data.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
if ./build/stream/streamrec demo --help >/dev/null 2>&1; then
  exec ./build/stream/streamrec demo "$@"
fi
./build/stream/streamrec bundle check tests/data/gpt2-small
echo "--- top-5 recommendations for the first 5 example sessions (streamrec score):"
head -5 tests/data/gpt2-small.sessions.jsonl | ./build/stream/streamrec score tests/data/gpt2-small -k 5
