#!/usr/bin/env bash
# apicurio-local.sh - a real Schema Registry for the streamrec tests and local trials: Apicurio
# Registry 2.6 (in-memory storage) on 127.0.0.1, whose Confluent-compatible API is at
# /apis/ccompat/v7. Runs on Java 17 (Debian 12) or 21 (Debian 13); Apicurio 3.x needs 21.
#
# Usage:
#   apicurio-local.sh start DIR   fetch the distribution (once, into a cache, with Maven),
#                                 start it detached on a free port, wait until the API answers
#                                 and print one line on stdout:
#                                   schema.registry.url=http://127.0.0.1:PORT/apis/ccompat/v7
#                                 (already running from DIR: says so on stderr, prints it again)
#   apicurio-local.sh stop DIR    SIGTERM, wait up to 20 s, then SIGKILL (exit 0 when none runs)
#
# DIR: registry.pid, port, registry.log. Storage is in memory: a restart starts empty.
# Environment:
#   SR_APICURIO_VERSION  default 2.6.13.Final (io.apicurio:apicurio-registry-app:<v>:tar.gz:all)
#   SR_APICURIO_CACHE    default ${XDG_CACHE_HOME:-$HOME/.cache}/streamrec/apicurio-<version>
#   SR_APICURIO_JAVA     java binary (default $JAVA_HOME/bin/java, else java on PATH)
#   SR_APICURIO_HEAP     default -Xmx512m
#   SR_APICURIO_START_TIMEOUT  seconds (default 120)
#   SR_APICURIO_MVN      mvn binary (default mvn)
set -euo pipefail
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: apicurio-local.sh start|stop DIR" >&2
    exit 2
fi
version=${SR_APICURIO_VERSION:-2.6.13.Final}
cache=${SR_APICURIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamrec/apicurio-$version}
java=${SR_APICURIO_JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/java}}
java=${java:-java}
mvn=${SR_APICURIO_MVN:-mvn}

running() { [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; }
url() { echo "schema.registry.url=http://127.0.0.1:$(cat "$dir/port")/apis/ccompat/v7"; }

case "$cmd" in
start)
    mkdir -p "$dir"
    if running; then
        echo "apicurio-local: already running from $dir" >&2
        url
        exit 0
    fi
    if [ ! -f "$cache/.complete" ]; then
        rm -rf "$cache" && mkdir -p "$cache"
        art="io.apicurio:apicurio-registry-app:$version:tar.gz:all"
        if ! "$mvn" -q -B dependency:copy -Dartifact="$art" -DoutputDirectory="$cache" \
                -Dmdep.stripVersion=true >"$cache/mvn.log" 2>&1; then
            echo "apicurio-local: fetching $art with Maven failed:" >&2
            tail -n 20 "$cache/mvn.log" >&2
            exit 1
        fi
        tar xzf "$cache"/apicurio-registry-app-all.tar.gz -C "$cache"
        rm -f "$cache"/apicurio-registry-app-all.tar.gz
        touch "$cache/.complete"
    fi
    jar=$(ls "$cache"/*-runner.jar "$cache"/quarkus-run.jar 2>/dev/null | head -n1) || true
    if [ -z "$jar" ]; then
        echo "apicurio-local: no runnable jar in $cache" >&2
        exit 1
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo "$port" > "$dir/port"
    # shellcheck disable=SC2086
    nohup "$java" ${SR_APICURIO_HEAP:--Xmx512m} -Dquarkus.http.host=127.0.0.1 \
        -Dquarkus.http.port="$port" -jar "$jar" >"$dir/registry.log" 2>&1 &
    echo $! > "$dir/registry.pid"
    deadline=$((SECONDS + ${SR_APICURIO_START_TIMEOUT:-120}))
    while [ $SECONDS -lt $deadline ]; do
        if ! running; then
            echo "apicurio-local: the registry exited during start-up:" >&2
            grep -v '^\s*at ' "$dir/registry.log" | tail -n 20 >&2
            exit 1
        fi
        if python3 - "$port" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/apis/ccompat/v7/subjects" % sys.argv[1], timeout=2).read()
PY
            url
            exit 0
        fi
        sleep 1
    done
    echo "apicurio-local: no answer within ${SR_APICURIO_START_TIMEOUT:-120} s:" >&2
    tail -n 20 "$dir/registry.log" >&2
    bash "$0" stop "$dir" >/dev/null 2>&1 || true
    exit 1
    ;;
stop)
    if running; then
        pid=$(cat "$dir/registry.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/registry.pid"
    exit 0
    ;;
*)
    echo "usage: apicurio-local.sh start|stop DIR" >&2
    exit 2
    ;;
esac
