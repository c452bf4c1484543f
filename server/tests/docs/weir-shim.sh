#!/usr/bin/env bash
# The docs test's stand-in for `cargo run [--release] -p weir-server -- ARGS` and `weir ARGS`:
# runs the weir binary under test ($DOCS_WEIR_BIN). A server (no subcommand) is what a reader
# would start in a second terminal: it runs in the background, the previous one is stopped
# first as Ctrl-C would (SIGINT), and this returns once pgwire accepts connections.
set -euo pipefail

if [ "$(basename "$0")" = cargo ]; then
    [ "${1:-}" = run ] || { echo "docs shim: only 'cargo run -p weir-server -- …' runs in the docs" >&2; exit 2; }
    shift
    package=""
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        [ "$1" = -p ] && package="${2:-}"
        shift
    done
    [ "$package" = weir-server ] || { echo "docs shim: cargo run needs -p weir-server" >&2; exit 2; }
    [ $# -gt 0 ] && shift
fi

case "${1:-}" in
    --*|"") ;;
    *) exec "$DOCS_WEIR_BIN" "$@" ;;
esac

# Whether process $1 runs (a zombie nobody reaped has stopped).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^Z'
}

state="$DOCS_STATE"
if [ -f "$state/server.pid" ]; then
    old="$(cat "$state/server.pid")"
    if alive "$old"; then
        kill -INT "$old"
        for _ in $(seq 1 300); do alive "$old" || break; sleep 0.1; done
        if alive "$old"; then
            echo "docs shim: the previous server did not stop on SIGINT" >&2
            kill -9 "$old"
            exit 1
        fi
    fi
fi

pg_addr="${WEIR_PG_ADDR:-127.0.0.1:6875}"
previous=""
for arg in "$@"; do
    [ "$previous" = --pg-addr ] && pg_addr="$arg"
    case "$arg" in --pg-addr=*) pg_addr="${arg#--pg-addr=}" ;; esac
    previous="$arg"
done

count="$(ls "$state" | grep -c '^server-.*\.log$' || true)"
log="$state/server-$((count + 1)).log"
setsid "$DOCS_WEIR_BIN" "$@" </dev/null >"$log" 2>&1 &
pid=$!
echo "$pid" > "$state/server.pid"
host="${pg_addr%:*}"
port="${pg_addr##*:}"
[ "$host" = 0.0.0.0 ] && host=127.0.0.1
for _ in $(seq 1 1200); do
    if ! alive "$pid"; then
        echo "docs shim: weir $* exited; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
        exit 0
    fi
    sleep 0.1
done
echo "docs shim: weir $* did not accept connections on $pg_addr within 120 s; its log:" >&2
cat "$log" >&2
exit 1
