#!/usr/bin/env bash
# kafka-local.sh - a real single-node Apache Kafka 3.9.1 (KRaft, combined
# broker+controller, node.id=1) on 127.0.0.1 for the streamrec tests.
#
# Usage:
#   kafka-local.sh start DIR   fetch the jars (once, into a cache), format a
#                              KRaft cluster in DIR (only if DIR holds none
#                              yet), start the broker detached, wait until it
#                              serves metadata, add the test ACLs (first start
#                              only) and print exactly two lines on stdout:
#                                bootstrap.servers=127.0.0.1:PORT       (PLAINTEXT, no auth)
#                                bootstrap.servers.sasl=127.0.0.1:PORT  (SASL_PLAINTEXT, SCRAM-SHA-512)
#                              If a broker from DIR is already running, it says
#                              so on stderr, prints the two lines again and
#                              exits 0.
#   kafka-local.sh stop DIR    SIGTERM the broker, wait up to 30 s, then SIGKILL;
#                              returns once it has exited (exit 0 also when
#                              nothing runs). DIR keeps its data: a later
#                              "start DIR" restarts the same cluster (no
#                              re-format, no new ACLs) on the same ports
#                              (recorded in DIR/ports) when they are still
#                              free, so old bootstrap addresses work again.
#
# DIR layout: config/ (server.properties, log4j.properties), data/ (KRaft
# metadata + topic logs), logs/ (server.log, kafka.out), kafka.pid, ports,
# acls.done (marker: ACLs added), admin.password (used by the readiness check).
# On failure: one line on stderr, then the tail of what this start wrote to
# DIR/logs/kafka.out and DIR/logs/server.log; a broker it launched is stopped
# again; exit 1 (2 for usage errors).
#
# Users (SCRAM-SHA-512, created when DIR is formatted; changing the passwords
# later has no effect on an existing DIR):
#   admin      super user   password $SR_KAFKA_ADMIN_PASSWORD     (default admin-secret)
#   streamrec  test app     password $SR_KAFKA_STREAMREC_PASSWORD (default streamrec-secret)
#   other      no ACLs      password $SR_KAFKA_OTHER_PASSWORD     (default other-secret)
# The PLAINTEXT and CONTROLLER listeners authenticate as User:ANONYMOUS, which
# is a super user too. StandardAuthorizer, allow.everyone.if.no.acl.found=false.
# ACLs for User:streamrec (all prefixed patterns):
#   topic events*                   Read, Describe
#   topic recommendations*, dlq*    Write, Describe
#   topic streamrec*                All (internal topics, e.g. <group>-sessions-changelog)
#   group streamrec*                Read, Describe
#   transactional-id streamrec*     Write, Describe
#   cluster                         IdempotentWrite
#
# Environment:
#   SR_KAFKA_CACHE       jar cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/streamrec/kafka-3.9.1);
#                        filled once with "mvn dependency:copy-dependencies" on
#                        deploy/kafka/pom.xml; afterwards no mvn and no network
#                        (marker file .complete, keyed by the pom's sha256)
#   SR_KAFKA_HEAP_OPTS   default "-Xms256m -Xmx768m"
#   SR_KAFKA_JVM_OPTS    extra JVM options for the broker (default empty)
#   SR_KAFKA_JAVA        java binary (default $JAVA_HOME/bin/java, else java on PATH);
#                        Java 17 (Debian 12) or 21 (Debian 13); Kafka 3.9 needs 11+
#   SR_KAFKA_START_TIMEOUT  seconds to wait for the broker (default 90)
#   SR_KAFKA_MVN         mvn binary (default mvn)
# Readiness is checked with kcat if present, else python3 confluent_kafka,
# else a TCP connect plus the "Kafka Server started" log line.

set -euo pipefail

KAFKA_VERSION=3.9.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
POM="$HERE/pom.xml"
CACHE="${SR_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamrec/kafka-$KAFKA_VERSION}"
HEAP_OPTS="${SR_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
START_TIMEOUT="${SR_KAFKA_START_TIMEOUT:-90}"
ADMIN_PW="${SR_KAFKA_ADMIN_PASSWORD:-admin-secret}"
STREAMREC_PW="${SR_KAFKA_STREAMREC_PASSWORD:-streamrec-secret}"
OTHER_PW="${SR_KAFKA_OTHER_PASSWORD:-other-secret}"
PROG=$(basename "$0")

die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# die with the tail of what this start added to the server log and to the
# JVM's own output (the latter matters when the JVM fails before log4j is up)
die_log() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    local f off
    for f in "$LOGS/kafka.out" "$LOGS/server.log"; do
        off=$LOG_OFFSET
        [[ $f == */kafka.out ]] && off=$OUT_OFFSET
        [[ -s $f ]] || continue
        if (( $(stat -c %s "$f") > off )); then
            printf -- '--- last lines of %s ---\n' "$f" >&2
            tail -c "+$((off + 1))" "$f" | tail -n 40 >&2
        fi
    done
    exit 1
}

# startup failed after the broker was launched: stop it, then die_log
abort() {
    local pid
    if pid=$(running_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for (( i = 0; i < 150; i++ )); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$PIDFILE"
    fi
    die_log "$1"
}

usage() { printf 'usage: %s start|stop DIR\n' "$PROG" >&2; exit 2; }

# ---------------------------------------------------------------- helpers

java_bin() {
    if [[ -n ${SR_KAFKA_JAVA:-} ]]; then
        printf '%s\n' "$SR_KAFKA_JAVA"
    elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        printf '%s\n' "$JAVA_HOME/bin/java"
    else
        command -v java || die "java not found (install a JRE 17/21 or set SR_KAFKA_JAVA)"
    fi
}

# major version of $JAVA ("17.0.15" -> 17, "1.8.0_x" -> 8)
java_major() {
    local v
    v=$("$JAVA" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1)
    [[ -n $v ]] || die "cannot run $JAVA -version"
    v=${v#1.}
    printf '%s\n' "${v%%[.+-]*}"
}

# is process $1 alive (and not a zombie waiting for its parent)?
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ ${st:0:1} != Z ]]
}

# pid from DIR/kafka.pid if that process is alive and is our broker
running_pid() {
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # guard against pid reuse: the command line must name our config file
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *" $CONF/server.properties"* ]] || return 1
    printf '%s\n' "$pid"
}

# fill $CACHE/libs with the broker's jars unless the marker says it is complete
ensure_jars() {
    local sum marker="$CACHE/.complete" tmp
    sum=$(sha256sum "$POM" | cut -d' ' -f1)
    if [[ -f $marker && $(<"$marker") == "$sum" && -d $CACHE/libs ]]; then
        return 0
    fi
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.lock"
    flock 8
    if [[ -f $marker && $(<"$marker") == "$sum" && -d $CACHE/libs ]]; then
        exec 8>&-
        return 0
    fi
    local mvn="${SR_KAFKA_MVN:-mvn}"
    command -v "$mvn" >/dev/null || die "jar cache $CACHE is empty and mvn is not installed"
    note "fetching Kafka $KAFKA_VERSION jars into $CACHE (once) ..."
    tmp="$CACHE/libs.tmp.$$"
    rm -rf "$tmp"
    if ! "$mvn" -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" >"$CACHE/mvn.log" 2>&1; then
        tail -n 30 "$CACHE/mvn.log" >&2
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (full log: $CACHE/mvn.log)"
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 \
        || die "mvn ran but $tmp has no kafka_2.13-$KAFKA_VERSION.jar"
    rm -rf "$CACHE/libs"
    mv "$tmp" "$CACHE/libs"
    printf '%s\n' "$sum" >"$marker.tmp"
    mv "$marker.tmp" "$marker"
    exec 8>&-
}

# is TCP port $1 on 127.0.0.1 free to bind?
port_free() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
    else
        # something accepts connections -> taken
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
        return 0
    fi
}

# print N distinct free loopback ports, one per line. They come from outside
# the kernel's ephemeral range (ip_local_port_range), so that while the broker
# is stopped no outgoing connection - in particular a client reconnecting to
# 127.0.0.1:PORT, which can connect to itself on loopback - takes the port
# before the restart binds it again.
free_ports() {
    local n=$1 lo=32768 hi=60999
    if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
        read -r lo hi </proc/sys/net/ipv4/ip_local_port_range || true
    fi
    # candidate pool: below the ephemeral range, else above it
    local base=10000 span
    if (( lo - base >= 2000 )); then
        span=$((lo - base))
    else
        base=$((hi + 1)) span=$((65536 - hi - 1))
        (( span >= 2000 )) || { base=20000 span=40000; }
    fi
    local got=() p tries=0
    while (( ${#got[@]} < n )); do
        (( ++tries < 2000 )) || die "no free loopback ports found"
        p=$(( base + (RANDOM * 32768 + RANDOM) % span ))
        [[ " ${got[*]} " == *" $p "* ]] && continue
        port_free "$p" && got+=("$p")
    done
    printf '%s\n' "${got[@]}"
}

# choose PLAIN_PORT SASL_PORT CTRL_PORT: reuse the ones in DIR/ports while
# they are free (clients keep their bootstrap address across a restart)
choose_ports() {
    local old=() fresh=() chosen=() name p i=0
    for name in PLAIN SASL CTRL; do
        p=""
        [[ -s $DIR/ports ]] && p=$(sed -n "s/^${name}_PORT=\([0-9][0-9]*\)\$/\1/p" "$DIR/ports" | head -n 1)
        old+=("$p")
    done
    mapfile -t fresh < <(free_ports 6)
    (( ${#fresh[@]} >= 3 )) || die "could not find free loopback ports"
    for name in 0 1 2; do
        p=${old[$name]}
        if [[ -n $p ]] && [[ " ${chosen[*]} " != *" $p "* ]] && port_free "$p"; then
            chosen+=("$p")
            continue
        fi
        [[ -n $p ]] && note "port $p recorded in $DIR/ports is taken now; using another one"
        while :; do
            (( i < ${#fresh[@]} )) || die "could not find free loopback ports"
            p=${fresh[$i]}
            i=$((i + 1))
            [[ " ${chosen[*]} ${old[*]} " == *" $p "* ]] || break
        done
        chosen+=("$p")
    done
    PLAIN_PORT=${chosen[0]} SASL_PORT=${chosen[1]} CTRL_PORT=${chosen[2]}
    printf 'PLAIN_PORT=%s\nSASL_PORT=%s\nCTRL_PORT=%s\n' "$PLAIN_PORT" "$SASL_PORT" "$CTRL_PORT" >"$DIR/ports"
}

read_ports() {
    [[ -s $DIR/ports ]] || return 1
    PLAIN_PORT=$(sed -n 's/^PLAIN_PORT=\([0-9][0-9]*\)$/\1/p' "$DIR/ports")
    SASL_PORT=$(sed -n 's/^SASL_PORT=\([0-9][0-9]*\)$/\1/p' "$DIR/ports")
    [[ -n $PLAIN_PORT && -n $SASL_PORT ]]
}

write_config() {
    mkdir -p "$CONF" "$DATA" "$LOGS"
    cat >"$CONF/server.properties" <<EOF
# generated by kafka-local.sh on every start; edits are overwritten
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CTRL_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$PLAIN_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,CONTROLLER://127.0.0.1:$CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PLAIN_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:ANONYMOUS

log.dirs=$DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0

# small segments: compaction and time-index lookups happen within a test
log.segment.bytes=1048576
log.index.interval.bytes=4096
log.roll.ms=60000
log.cleaner.min.compaction.lag.ms=0
log.cleaner.backoff.ms=1000
log.cleaner.min.cleanable.ratio=0.01
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432

# a 2-core test machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF
    cat >"$CONF/log4j.properties" <<EOF
# generated by kafka-local.sh
log4j.rootLogger=INFO, server
log4j.appender.server=org.apache.log4j.FileAppender
log4j.appender.server.File=$LOGS/server.log
log4j.appender.server.Append=true
log4j.appender.server.layout=org.apache.log4j.PatternLayout
log4j.appender.server.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel\$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.metrics=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.storage.internals.log.LogSegment=WARN
# authorization denials are logged at INFO by this logger (allows at DEBUG)
log4j.logger.kafka.authorizer.logger=INFO
EOF
}

# format DIR/data unless it already holds a formatted cluster
format_if_needed() {
    [[ -f $DATA/meta.properties ]] && return 0
    local pw
    for pw in "$ADMIN_PW" "$STREAMREC_PW" "$OTHER_PW"; do
        [[ -n $pw && $pw != *[],\"=[:space:]]* ]] \
            || die "SCRAM passwords must be non-empty without , ] \" = or spaces"
    done
    rm -rf "$DATA"
    mkdir -p "$DATA"
    rm -f "$DIR/acls.done"
    # a Kafka cluster id is a 16-byte UUID in URL-safe base64 without padding
    local cid
    # (one starting with '-' would read as an option to the format tool: draw again)
    cid=-
    while [[ $cid == -* ]]; do
        cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    if ! "$JAVA" -Xmx256m "${JVM_COMMON[@]}" "-Dlog4j.configuration=file:$CONF/log4j.properties" \
            -cp "$CP" kafka.tools.StorageTool format \
            --config "$CONF/server.properties" --cluster-id "$cid" \
            --add-scram "SCRAM-SHA-512=[name=admin,password=$ADMIN_PW]" \
            --add-scram "SCRAM-SHA-512=[name=streamrec,password=$STREAMREC_PW]" \
            --add-scram "SCRAM-SHA-512=[name=other,password=$OTHER_PW]" \
            </dev/null >"$LOGS/format.log" 2>&1; then
        cat "$LOGS/format.log" >&2
        rm -rf "$DATA"
        die "kafka-storage format failed in $DATA"
    fi
    # the readiness probe logs in as admin; keep the password this DIR was
    # formatted with, so a changed SR_KAFKA_ADMIN_PASSWORD cannot break it
    (umask 077 && printf '%s\n' "$ADMIN_PW" >"$DIR/admin.password")
}

# one metadata request; 0 when the broker answers with itself in the broker list
probe() {
    local plain="127.0.0.1:$PLAIN_PORT" sasl="127.0.0.1:$SASL_PORT"
    # cheap gate: no client launch before the PLAINTEXT listener accepts
    (exec 3<>"/dev/tcp/127.0.0.1/$PLAIN_PORT") 2>/dev/null || return 1
    if command -v kcat >/dev/null 2>&1; then
        # PLAINTEXT, then SCRAM over SASL_PLAINTEXT (SCRAM users come from the
        # metadata log, so this also proves the broker caught up)
        local fast=(-X reconnect.backoff.ms=50 -X reconnect.backoff.max.ms=200) md
        md=$(kcat -b "$plain" "${fast[@]}" -L -m 3 2>/dev/null) || return 1
        [[ $md == *" broker 1 at "* ]] || return 1
        md=$(kcat -b "$sasl" "${fast[@]}" -L -m 3 -X security.protocol=SASL_PLAINTEXT \
            -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=admin \
            -X "sasl.password=$ADMIN_PW" 2>/dev/null) || return 1
        [[ $md == *" broker 1 at "* ]]
        return
    fi
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import confluent_kafka' 2>/dev/null; then
        python3 - "$plain" "$sasl" "$ADMIN_PW" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
plain, sasl, pw = sys.argv[1:4]
for conf in ({"bootstrap.servers": plain},
             {"bootstrap.servers": sasl, "security.protocol": "SASL_PLAINTEXT",
              "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin",
              "sasl.password": pw}):
    md = AdminClient(conf).list_topics(timeout=3)
    if 1 not in md.brokers:
        sys.exit(1)
PY
        return
    fi
    # last resort: the listener accepts and the broker logged its start
    grep -q 'Kafka Server started' < <(tail -c "+$((LOG_OFFSET + 1))" "$LOGS/server.log" 2>/dev/null)
}

wait_ready() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    while ! probe; do
        alive "$pid" || { rm -f "$PIDFILE"; die_log "Kafka broker (pid $pid) exited during startup"; }
        (( SECONDS < deadline )) \
            || abort "Kafka broker (pid $pid) did not serve metadata within ${START_TIMEOUT}s; stopped it"
        sleep 0.3
    done
}

# ACLs for User:streamrec, added over PLAINTEXT (User:ANONYMOUS is a super
# user). AclCommand adds the cross product of its resources and operations,
# so resources are grouped by the operations they get: four short JVMs, run
# side by side (about 3 s on 2 cores instead of 7 s one after the other).
add_acls() {
    [[ -f $DIR/acls.done ]] && return 0
    local base=("$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "${JVM_COMMON[@]}"
                "-Dlog4j.configuration=file:$CONF/log4j.properties"
                -cp "$CP" kafka.admin.AclCommand
                --bootstrap-server "127.0.0.1:$PLAIN_PORT" --add --force
                --allow-principal User:streamrec)
    local pre=(--resource-pattern-type prefixed)
    local pids=() pid failed=0 i
    "${base[@]}" "${pre[@]}" --topic events --group streamrec \
        --operation Read --operation Describe </dev/null >"$LOGS/acls.1.log" 2>&1 &
    pids+=($!)
    "${base[@]}" "${pre[@]}" --topic recommendations --topic dlq \
        --transactional-id streamrec --operation Write --operation Describe \
        </dev/null >"$LOGS/acls.2.log" 2>&1 &
    pids+=($!)
    "${base[@]}" "${pre[@]}" --topic streamrec --operation All \
        </dev/null >"$LOGS/acls.3.log" 2>&1 &
    pids+=($!)
    "${base[@]}" --cluster --operation IdempotentWrite \
        </dev/null >"$LOGS/acls.4.log" 2>&1 &
    pids+=($!)
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    for i in 1 2 3 4; do cat "$LOGS/acls.$i.log"; rm -f "$LOGS/acls.$i.log"; done >"$LOGS/acls.log"
    (( failed == 0 )) || { cat "$LOGS/acls.log" >&2; abort "adding ACLs with kafka.admin.AclCommand failed (log: $LOGS/acls.log)"; }
    : >"$DIR/acls.done"
}

print_lines() {
    printf 'bootstrap.servers=127.0.0.1:%s\n' "$PLAIN_PORT"
    printf 'bootstrap.servers.sasl=127.0.0.1:%s\n' "$SASL_PORT"
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local pid
    if pid=$(running_pid); then
        read_ports || die "broker from $DIR is running (pid $pid) but $DIR/ports is unreadable"
        note "Kafka broker from $DIR is already running (pid $pid)"
        print_lines
        return 0
    fi
    command -v flock >/dev/null || die "flock (util-linux) is required"
    JAVA=$(java_bin)
    local major
    major=$(java_major)
    (( major >= 11 )) || die "Kafka $KAFKA_VERSION needs Java 11+, $JAVA is Java $major"
    (( major < 22 )) || note "note: Java $major is not a Kafka $KAFKA_VERSION target (17 or 21 are; set SR_KAFKA_JAVA)"
    # Java 23 only: Subject.getSubject (Kafka 3.9 SASL/admin code) throws there
    # without this; Java 25 was seen to run this script fine without it
    (( major != 23 )) || JVM_COMMON+=(-Djava.security.manager=allow)
    ensure_jars
    CP="$CACHE/libs/*"

    mkdir -p "$DIR" "$LOGS"
    # serialise start/stop on this DIR; fd 9 is closed for the broker below
    exec 9>"$DIR/.lock"
    flock 9
    if pid=$(running_pid); then
        read_ports || die "broker from $DIR is running (pid $pid) but $DIR/ports is unreadable"
        note "Kafka broker from $DIR is already running (pid $pid)"
        print_lines
        return 0
    fi
    rm -f "$PIDFILE"

    LOG_OFFSET=$(stat -c %s "$LOGS/server.log" 2>/dev/null || echo 0)
    OUT_OFFSET=$(stat -c %s "$LOGS/kafka.out" 2>/dev/null || echo 0)
    choose_ports
    write_config
    format_if_needed
    if [[ -s $DIR/admin.password ]]; then
        ADMIN_PW=$(<"$DIR/admin.password")
    fi

    # shellcheck disable=SC2206  # word splitting of option strings is intended
    local jvm=($HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20
               -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
               -XX:+HeapDumpOnOutOfMemoryError "-XX:HeapDumpPath=$LOGS"
               -Djava.awt.headless=true "${JVM_COMMON[@]}"
               "-Dkafka.logs.dir=$LOGS" "-Dlog4j.configuration=file:$CONF/log4j.properties"
               ${SR_KAFKA_JVM_OPTS:-})

    # detached: own session, stdin /dev/null, stdout/stderr to DIR/logs, and no
    # inherited descriptors, so callers' pipes and our lock fds close now
    # shellcheck disable=SC2016  # expanded by the inner bash
    setsid bash -c '
        pidfile=$1; out=$2; shift 2
        for fd in /proc/$$/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
        done
        echo $$ >"$pidfile"
        exec "$@" </dev/null >>"$out" 2>&1
    ' kafka-local "$PIDFILE" "$LOGS/kafka.out" \
        "$JAVA" "${jvm[@]}" -cp "$CP" kafka.Kafka "$CONF/server.properties" \
        </dev/null >/dev/null 2>&1 &
    local i
    for (( i = 0; i < 50; i++ )); do
        [[ -s $PIDFILE ]] && break
        sleep 0.1
    done
    [[ -s $PIDFILE ]] || die_log "Kafka broker did not start (no pid file)"
    pid=$(<"$PIDFILE")

    wait_ready "$pid"
    add_acls
    print_lines
}

cmd_stop() {
    local pid i
    if [[ ! -d $DIR ]]; then
        note "$DIR does not exist; nothing to stop"
        return 0
    fi
    if command -v flock >/dev/null; then
        exec 9>"$DIR/.lock"
        flock 9
    fi
    if ! pid=$(running_pid); then
        note "no Kafka broker from $DIR is running"
        rm -f "$PIDFILE"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for (( i = 0; i < 300; i++ )); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        note "broker (pid $pid) still running after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$PIDFILE"
}

# ---------------------------------------------------------------- main

(( $# == 2 )) || usage
[[ -n $2 ]] || usage
if [[ $1 == start ]]; then
    mkdir -p -- "$2" || die "cannot create $2"
fi
if [[ -d $2 ]]; then
    DIR=$(cd -- "$2" && pwd -P)
else
    DIR=$2
fi
CONF="$DIR/config" DATA="$DIR/data" LOGS="$DIR/logs" PIDFILE="$DIR/kafka.pid"
JVM_COMMON=()
LOG_OFFSET=0 OUT_OFFSET=0 JAVA="" CP="" PLAIN_PORT="" SASL_PORT="" CTRL_PORT=""

case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    *) usage ;;
esac
