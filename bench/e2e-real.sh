#!/usr/bin/env bash
# bench/e2e-real.sh — `streamrec bench e2e` against a real Apache Kafka: starts one with
# deploy/kafka/kafka-local.sh in a temporary directory (or uses SR_BENCH_BOOTSTRAP), runs the
# bench with --brokers real, stops the broker. Arguments go to `bench e2e`, e.g.
#   bench/e2e-real.sh --bundle tests/data/ref/gru4rec_100k --events 50000 --seconds 5
# STREAMREC names the binary (default build/stream/streamrec).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STREAMREC:-build/stream/streamrec}
if [ -n "${SR_BENCH_BOOTSTRAP:-}" ]; then
    exec "$bin" bench e2e --brokers real --bootstrap "$SR_BENCH_BOOTSTRAP" "$@"
fi
dir=$(mktemp -d /tmp/streamrec-bench-kafka.XXXXXX)
trap 'bash deploy/kafka/kafka-local.sh stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
bs=$(bash deploy/kafka/kafka-local.sh start "$dir" | sed -n 's/^bootstrap.servers=//p')
"$bin" bench e2e --brokers real --bootstrap "$bs" "$@"
