#!/usr/bin/env bash
# tests/stream/kafka_fixture.sh — the suite's one real Kafka broker, as a CTest fixture
# (kafka.cmake: kafka_broker_start / kafka_broker_stop around every test that needs a broker).
#
#   kafka_fixture.sh start DIR   starts deploy/kafka/kafka-local.sh in DIR (fresh) and writes
#                                DIR/bootstrap.env (its two bootstrap.servers lines), which the
#                                tests read (kafka_test_util.h: cluster_start)
#   kafka_fixture.sh stop DIR    stops it
#
# SR_TEST_KAFKA picks the broker: real (start must succeed, else the fixture fails and so do
# the tests that need it), mock (nothing is started: the tests use librdkafka's mock cluster)
# or auto (default: real when it starts, else the mock, said here). SR_TEST_BOOTSTRAP names a
# cluster of your own instead: nothing is started, the tests use it.
set -uo pipefail
cmd=${1:?start|stop}
dir=${2:?DIR}
here=$(cd "$(dirname "$0")" && pwd)
kl="$here/../../deploy/kafka/kafka-local.sh"
mode=${SR_TEST_KAFKA:-auto}

case "$cmd" in
start)
    rm -f "$dir/bootstrap.env"
    if [ -n "${SR_TEST_BOOTSTRAP:-}" ]; then
        echo "broker: your cluster at $SR_TEST_BOOTSTRAP (SR_TEST_BOOTSTRAP); nothing started"
        exit 0
    fi
    if [ "$mode" = mock ]; then
        echo "broker: SR_TEST_KAFKA=mock: the tests use librdkafka's mock cluster"
        exit 0
    fi
    [ -d "$dir" ] && bash "$kl" stop "$dir" >/dev/null 2>&1
    rm -rf "$dir"
    mkdir -p "$dir"
    if out=$(bash "$kl" start "$dir/broker" 2>"$dir/start.err"); then
        printf '%s\n' "$out" > "$dir/bootstrap.env"
        echo "broker: real Apache Kafka started in $dir/broker"
        printf '%s\n' "$out"
        exit 0
    fi
    cat "$dir/start.err" >&2
    if [ "$mode" = real ]; then
        echo "broker: SR_TEST_KAFKA=real and the real broker did not start (above)" >&2
        exit 1
    fi
    echo "broker: the real broker did not start (above): the tests use librdkafka's mock cluster"
    exit 0
    ;;
stop)
    [ -d "$dir/broker" ] && bash "$kl" stop "$dir/broker"
    rm -f "$dir/bootstrap.env"
    exit 0
    ;;
*)
    echo "usage: kafka_fixture.sh start|stop DIR" >&2
    exit 2
    ;;
esac
