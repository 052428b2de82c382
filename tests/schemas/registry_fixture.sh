#!/usr/bin/env bash
# tests/schemas/registry_fixture.sh — the suite's real Schema Registry (Apicurio Registry's
# Confluent-compatible API, deploy/schema-registry/apicurio-local.sh) as a CTest fixture around
# test_registry.
#
#   registry_fixture.sh start DIR   starts it in DIR and writes DIR/registry.env (its
#                                   schema.registry.url line), which test_registry reads
#   registry_fixture.sh stop DIR    stops it
#
# SR_TEST_REGISTRY: auto (default: when the registry cannot be started, say why and let
# test_registry skip), real (it must start, else the fixture fails), off (nothing started:
# test_registry skips). SR_TEST_REGISTRY_URL names a registry of your own instead.
set -uo pipefail
cmd=${1:?start|stop}
dir=${2:?DIR}
here=$(cd "$(dirname "$0")" && pwd)
al="$here/../../deploy/schema-registry/apicurio-local.sh"
mode=${SR_TEST_REGISTRY:-auto}

case "$cmd" in
start)
    rm -f "$dir/registry.env"
    mkdir -p "$dir"
    if [ -n "${SR_TEST_REGISTRY_URL:-}" ]; then
        echo "schema.registry.url=$SR_TEST_REGISTRY_URL" > "$dir/registry.env"
        echo "registry: yours at $SR_TEST_REGISTRY_URL (SR_TEST_REGISTRY_URL); nothing started"
        exit 0
    fi
    if [ "$mode" = off ]; then
        echo "registry: SR_TEST_REGISTRY=off: test_registry skips"
        exit 0
    fi
    bash "$al" stop "$dir/apicurio" >/dev/null 2>&1
    if out=$(bash "$al" start "$dir/apicurio" 2>"$dir/start.err"); then
        printf '%s\n' "$out" > "$dir/registry.env"
        echo "registry: Apicurio Registry started in $dir/apicurio: $out"
        exit 0
    fi
    cat "$dir/start.err" >&2
    if [ "$mode" = real ]; then
        echo "registry: SR_TEST_REGISTRY=real and the registry did not start (above)" >&2
        exit 1
    fi
    echo "registry: the registry did not start (above): test_registry skips"
    exit 0
    ;;
stop)
    [ -d "$dir/apicurio" ] && bash "$al" stop "$dir/apicurio"
    rm -f "$dir/registry.env"
    exit 0
    ;;
*)
    echo "usage: registry_fixture.sh start|stop DIR" >&2
    exit 2
    ;;
esac
