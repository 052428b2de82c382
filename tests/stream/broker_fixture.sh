# tests/stream/broker_fixture.sh — start a `streamrec broker` process for a shell test.
# Source it (bash), then:
#
#   sr_broker_start STREAMREC_BINARY [broker args...]   # e.g. --brokers 1 --topic events:8
#       starts the broker in the background, waits (up to SR_BROKER_WAIT_S, default 15 s) for its
#       first line and exports
#         SR_BOOTSTRAP    the bootstrap servers (HOST:PORT,...)
#         SR_BROKER_PID   the broker's process id
#       and installs an EXIT trap that stops it (chaining any EXIT trap set before). Returns 1
#       with a message on stderr when the broker does not come up.
#   sr_broker_stop      SIGTERM, wait; returns the broker's exit status (0 expected).
#   sr_broker_ctl CMD   with SR_BROKER_CONTROL=1 set before sr_broker_start (the broker then runs
#                       with --control): sends one fault-injection command, e.g. "down 1",
#                       "up 1", "rtt 2 300", "errors Produce NOT_LEADER_FOR_PARTITION,
#                       REQUEST_TIMED_OUT", "clear Produce", "topic late:4" (see
#                       `streamrec broker --help`); returns 0 on "ok", else prints the reply
#                       and returns 1.
#   sr_need_kcat        exits the test with 77 (CTest SKIP_RETURN_CODE) when kcat is missing.
#
# The broker's stderr goes to $SR_BROKER_LOG (default: a temp file, printed if it fails).
# Only one broker per shell; use subshells for more. Mind the mock's limits (DESIGN.md §6):
# about 5 MiB per partition; a topic auto-created by a client gets 4 partitions.

sr_need_kcat() {
    if ! command -v kcat >/dev/null 2>&1; then
        echo "SKIP: kcat is not installed (apt-get install kcat)"
        exit 77
    fi
}

sr_broker_stop() {
    local rc=0
    if [ -n "${SR_BROKER_PID:-}" ]; then
        kill -TERM "$SR_BROKER_PID" 2>/dev/null
        wait "$SR_BROKER_PID" 2>/dev/null
        rc=$?
        SR_BROKER_PID=
    fi
    if [ -n "${_SR_BROKER_FIFO_DIR:-}" ]; then
        exec 9<&-
        [ -p "$_SR_BROKER_FIFO_DIR/in" ] && exec 8>&-
        rm -rf "$_SR_BROKER_FIFO_DIR"
        _SR_BROKER_FIFO_DIR=
    fi
    return $rc
}

_sr_broker_exit_trap() {
    sr_broker_stop >/dev/null 2>&1
    if [ -n "${_SR_BROKER_PREV_TRAP:-}" ]; then
        eval "$_SR_BROKER_PREV_TRAP"
    fi
}

sr_broker_start() {
    local bin="$1"
    shift
    if [ ! -x "$bin" ]; then
        echo "sr_broker_start: $bin is not an executable" >&2
        return 1
    fi
    _SR_BROKER_FIFO_DIR=$(mktemp -d)
    local log=${SR_BROKER_LOG:-$_SR_BROKER_FIFO_DIR/broker.log}
    mkfifo "$_SR_BROKER_FIFO_DIR/out"
    if [ "${SR_BROKER_CONTROL:-0}" = 1 ]; then
        mkfifo "$_SR_BROKER_FIFO_DIR/in"
        "$bin" broker --control "$@" <"$_SR_BROKER_FIFO_DIR/in" >"$_SR_BROKER_FIFO_DIR/out" 2>"$log" &
        SR_BROKER_PID=$!
        exec 8>"$_SR_BROKER_FIFO_DIR/in"
    else
        "$bin" broker "$@" >"$_SR_BROKER_FIFO_DIR/out" 2>"$log" &
        SR_BROKER_PID=$!
    fi
    # Chain an EXIT trap that was set before (its command text, as `trap -p` prints it).
    local prev
    prev=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
    if [ "$prev" != _sr_broker_exit_trap ]; then
        _SR_BROKER_PREV_TRAP=$prev
        trap _sr_broker_exit_trap EXIT
    fi
    # Keep the fifo open on our side (fd 9) so the broker never gets SIGPIPE after line one.
    exec 9<"$_SR_BROKER_FIFO_DIR/out"
    local line=""
    if ! read -r -t "${SR_BROKER_WAIT_S:-15}" line <&9 || [ "${line#bootstrap.servers=}" = "$line" ]; then
        echo "sr_broker_start: no bootstrap.servers line from '$bin broker $*' (got '$line')" >&2
        cat "$log" >&2 2>/dev/null
        sr_broker_stop
        return 1
    fi
    SR_BOOTSTRAP=${line#bootstrap.servers=}
    export SR_BOOTSTRAP SR_BROKER_PID
    return 0
}

sr_broker_ctl() {
    if [ ! -p "${_SR_BROKER_FIFO_DIR:-/nonexistent}/in" ]; then
        echo "sr_broker_ctl: start the broker with SR_BROKER_CONTROL=1" >&2
        return 1
    fi
    echo "$*" >&8
    local reply=""
    read -r -t 10 reply <&9
    if [ "$reply" != ok ]; then
        echo "sr_broker_ctl '$*': ${reply:-no reply}" >&2
        return 1
    fi
    return 0
}
