#!/usr/bin/env bash
# The demo: secmsgd in the background on this machine, the interactive
# client in the foreground against it, and the daemon stopped when the
# client exits.
#
#   tests/demo.sh [BUILD_DIR]        (default: build)
#
# Needs a compiled build directory (meson setup BUILD_DIR && meson compile
# -C BUILD_DIR).  Creates demo credentials in BUILD_DIR/demo-credentials
# (kept for the next run), records the messages to the daemon's stderr in
# BUILD_DIR/demo-secmsgd.log, and listens on 127.0.0.1, port
# $SECMSG_DEMO_PORT or else the first free port from 8443.
set -euo pipefail

build=${1:-build}
daemon=$build/daemon/secmsgd
client=$build/cli/secmsg
for bin in "$daemon" "$client"; do
    if [ ! -x "$bin" ]; then
        echo "demo: $bin not found: build first (meson setup $build && meson compile -C $build)" >&2
        exit 1
    fi
done
build=$(cd "$build" && pwd)
daemon=$build/daemon/secmsgd
client=$build/cli/secmsg
creds=$build/demo-credentials
log=$build/demo-secmsgd.log

# Whether something listens on 127.0.0.1:$1 (or on every address) over TCP.
listening() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: (0100007F|00000000):$hex [0-9A-F]{8}:[0-9A-F]{4} 0A " /proc/net/tcp ||
        grep -qE "^ *[0-9]+: 0{32}:$hex [0-9A-F]{32}:[0-9A-F]{4} 0A " /proc/net/tcp6 2>/dev/null
}

if [ -n "${SECMSG_DEMO_PORT:-}" ]; then
    port=$SECMSG_DEMO_PORT
    if listening "$port"; then
        echo "demo: port $port is already in use; choose another with SECMSG_DEMO_PORT" >&2
        exit 1
    fi
else
    port=8443
    while listening "$port"; do
        port=$((port + 1))
        if [ "$port" -gt 8543 ]; then
            echo "demo: no free port between 8443 and 8543; set SECMSG_DEMO_PORT" >&2
            exit 1
        fi
    done
fi

echo "demo: credentials in $creds"
"$daemon" --init-credentials "$creds"

# In its own session, so that Ctrl-C at the terminal reaches only the client.
setsid "$daemon" --host 127.0.0.1 --port "$port" \
    --cert "$creds/tls.crt" --key "$creds/tls.key" --psk-file "$creds/psk" \
    --record stderr 2>"$log" </dev/null &
pid=$!

stop_daemon() {
    trap - EXIT INT TERM HUP
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "demo: secmsgd (pid $pid) stopped; its log and the recorded messages are in $log" >&2
    fi
}
trap stop_daemon EXIT
trap 'echo >&2; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Wait (at most 10 s) until the daemon listens, or report why it did not.
for _ in $(seq 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" && rc=0 || rc=$?
        echo "demo: secmsgd exited with status $rc before listening; its log ($log) says:" >&2
        tail -n 20 "$log" >&2
        trap - EXIT
        exit 1
    fi
    listening "$port" && break
    sleep 0.1
done
if ! listening "$port"; then
    echo "demo: secmsgd (pid $pid) is not listening on 127.0.0.1:$port after 10 s; see $log" >&2
    exit 1
fi
echo "demo: secmsgd (pid $pid) listens on 127.0.0.1:$port"
echo "demo: type a message and press Enter; 'exit' or Ctrl-D quits and stops the daemon"

status=0
"$client" --host 127.0.0.1 --port "$port" --server-name localhost \
    --ca-file "$creds/tls.crt" --psk-file "$creds/psk" || status=$?
exit "$status"
