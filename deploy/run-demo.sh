#!/usr/bin/env bash
# Installs dependencies, builds streamrec and runs `streamrec demo`: an embedded broker,
# generated sessions at 2000 events/s, the online runtime with the demo bundle
# (deploy/demo-bundle) and a live status line with the hit rate beside a most-popular
# baseline, then a summary after 20 s (Ctrl-C stops earlier). Arguments go to the demo, e.g.
# `./deploy/run-demo.sh --duration 60 --rate 5000`; `streamrec demo --help` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
exec ./build/stream/streamrec demo "$@"
