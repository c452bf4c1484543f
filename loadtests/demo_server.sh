# Sourced by the read-load scripts: `start_demo RATE` builds weir (release, or the dev build
# with BUILD_PROFILE=dev), starts it with the demo generating RATE events/s on free loopback
# ports in a fresh directory, stops it on exit, and waits until it is ready. Sets BIN, WORK
# (the directory), HTTP_PORT, PG_PORT, BASE (the REST URL) and WEIR (its pid).
start_demo() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
    local profile="${BUILD_PROFILE:-release}"
    if [ "$profile" = release ]; then cargo build --release -q -p weir-server; else cargo build -q -p weir-server; fi
    BIN="$CARGO_TARGET_DIR/$([ "$profile" = release ] && echo release || echo debug)/weir"
    WORK="$(mktemp -d)"
    read -r HTTP_PORT PG_PORT < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
    "$BIN" --demo --demo-rate "$1" --data-dir "$WORK/data" \
        --http-addr "127.0.0.1:$HTTP_PORT" --pg-addr "127.0.0.1:$PG_PORT" >"$WORK/weir.log" 2>&1 &
    WEIR=$!
    trap 'kill $WEIR 2>/dev/null; wait $WEIR 2>/dev/null; tail -3 "$WORK/weir.log"; rm -rf "$WORK"' EXIT
    BASE="http://127.0.0.1:$HTTP_PORT"
    for _ in $(seq 1 100); do curl -sf "$BASE/ready" >/dev/null && break; sleep 0.2; done
    sleep 5
}
