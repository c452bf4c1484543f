#!/usr/bin/env bash
# pgwire point lookups under ingest (issue 19, item 6): starts the demo generating DEMO_RATE
# events/s, then pgbench (PostgreSQL's own client, extended protocol with prepared
# statements) asks for the latest kpi_1m window of one of the demo's sources — a lookup on
# the view's key — from CLIENTS connections for DURATION seconds. Prints the client's
# latencies (p50/p99/max from pgbench's per-statement log), Weir's own timing of the same
# statements (weir_pgwire_statement_duration_seconds) and how many events were ingested
# meanwhile. BUILD_PROFILE=dev uses the dev build instead of release.
#
#   loadtests/pgwire_reads.sh [CLIENTS] [DURATION] [DEMO_RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${1:-4}" DURATION="${2:-30}" DEMO_RATE="${3:-100000}"
PGBENCH="$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)"
# shellcheck source=loadtests/demo_server.sh
. loadtests/demo_server.sh
start_demo "$DEMO_RATE"
# One script per demo source (src-0000 … src-0019), picked at random per statement.
SCRIPTS=()
for i in $(seq 0 19); do
    printf "SELECT window_start, count, p95_metric FROM kpi_1m WHERE source = 'src-%04d' ORDER BY window_start DESC LIMIT 1;\n" "$i" \
        >"$WORK/q$i.sql"
    SCRIPTS+=(-f "$WORK/q$i.sql")
done
before="$(curl -s "$BASE/sql" -d "SELECT events_in FROM weir.sources WHERE name = 'events'" | tr -dc '0-9')"
(cd "$WORK" && PGCONNECT_TIMEOUT=5 "$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" \
    -l "${SCRIPTS[@]}" -h 127.0.0.1 -p "$PG_PORT" -U weir weir >"$WORK/pgbench.out" 2>&1) || {
    cat "$WORK/pgbench.out"; exit 1; }
after="$(curl -s "$BASE/sql" -d "SELECT events_in FROM weir.sources WHERE name = 'events'" | tr -dc '0-9')"
grep -E "^(number of transactions actually processed|number of failed|latency average|tps)" "$WORK/pgbench.out"
# pgbench's log: client, transaction, latency in µs, script, epoch seconds, µs.
cat "$WORK"/pgbench_log.* | python3 -c '
import sys
lat = sorted(int(line.split()[2]) for line in sys.stdin)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
print(f"client-side: {len(lat)} lookups, p50 {q(0.50):.3f} ms, p90 {q(0.90):.3f} ms, p99 {q(0.99):.3f} ms, max {lat[-1] / 1000:.3f} ms")'
echo "ingested during the run: $(( (after - before) / DURATION )) events/s (demo at $DEMO_RATE)"
echo "== server-side (weir_pgwire_statement_duration_seconds, cumulative counts):"
curl -s "$BASE/metrics" | grep 'weir_pgwire_statement_duration_seconds_\(bucket\|count\)' || true
