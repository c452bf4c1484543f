#!/usr/bin/env bash
# Authentication and TLS cost on pgwire: connection setup (a new connection per query) and a
# point lookup on an open connection, trust + plaintext next to SCRAM-SHA-256 + TLS, with
# pgbench against two `weir --demo` servers. Usage: loadtests/auth_bench.sh [seconds] [weir binary]
set -euo pipefail
seconds="${1:-10}"
weir="${2:-${CARGO_TARGET_DIR:-/var/tmp/weir-target}/release/weir}"
[ -x "$weir" ] || { echo "no weir binary at $weir (cargo build --release -p weir-server, or pass its path)" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench is missing (apt-get install postgresql-client)" >&2; exit 1; }
dir="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start() {  # name, extra settings…; prints the pgwire port
    local name="$1" port
    shift
    port="$(free_port)"
    env WEIR_LOG=warn "$@" "$weir" --demo --data-dir "$dir/$name" --pg-addr "127.0.0.1:$port" \
        --http-addr "127.0.0.1:$(free_port)" >/dev/null 2>"$dir/$name.log" &
    echo "$port"
}
tls=(WEIR_TLS_CERT="$dir/cert.pem" WEIR_TLS_KEY="$dir/key.pem")
trust_plain="$(start trust-plain)"
trust_tls="$(start trust-tls "${tls[@]}")"
scram_plain="$(start scram-plain WEIR_ADMIN_PASSWORD=bench-password)"
scram_tls="$(start scram-tls WEIR_ADMIN_PASSWORD=bench-password WEIR_REQUIRE_TLS=true "${tls[@]}")"
echo "SELECT count FROM kpi_1m WHERE source = 'src-0001' ORDER BY window_start DESC LIMIT 1;" > "$dir/lookup.sql"
for port in "$trust_plain" "$trust_tls" "$scram_plain" "$scram_tls"; do
    for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
done
sleep 3  # the demo's first windows
run() {  # label, port, sslmode, extra pgbench flags
    local out
    out="$(PGPASSWORD=bench-password PGSSLMODE="$3" pgbench -n $4 -T "$seconds" -c 1 -f "$dir/lookup.sql" \
        -h 127.0.0.1 -p "$2" -U weir weir 2>&1)"
    printf '%-44s %s, %s\n' "$1" "$(grep -o 'latency average = .*' <<<"$out")" "$(grep -o 'tps = [0-9.]*' <<<"$out")"
}
run "connect + lookup, trust, plaintext" "$trust_plain" disable -C
run "connect + lookup, trust, TLS" "$trust_tls" require -C
run "connect + lookup, SCRAM-SHA-256, plaintext" "$scram_plain" disable -C
run "connect + lookup, SCRAM-SHA-256 over TLS" "$scram_tls" require -C
run "lookup on an open connection, plaintext" "$trust_plain" disable ""
run "lookup on an open connection, TLS" "$scram_tls" require ""
