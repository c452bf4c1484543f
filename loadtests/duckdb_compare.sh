#!/usr/bin/env bash
# Weir against DuckDB on the same job: the seed's kpi_1m (count, avg, p95, error rate per
# source and 1-minute window) over one generated JSON-lines file. Runs `weir bench --file`
# and DuckDB (exact p95, all cores it is given) alternately, RUNS times each, and prints every
# run, both medians and their ratio. DuckDB comes from PyPI into a virtualenv under the tools
# cache. Usage: loadtests/duckdb_compare.sh [events] [runs] [weir binary]
# (prefix with `taskset -c 0` to compare on one core).
set -euo pipefail
events="${1:-2000000}"
runs="${2:-3}"
weir="${3:-${CARGO_TARGET_DIR:-/var/tmp/weir-target}/release/weir}"
[ -x "$weir" ] || { echo "no weir binary at $weir (cargo build --release -p weir-server, or pass its path)" >&2; exit 1; }
tools="${WEIR_TOOLS_DIR:-/var/tmp/weir-tools}"
venv="$tools/duckdb-venv"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q duckdb
fi
file="/tmp/weir-bench-$events.jsonl"
# `weir bench` writes the seed's benchmark file (1,000 sources, 1 s disorder, 2% errors,
# seed 42) once; this first run also warms the page cache for both.
[ -f "$file" ] || "$weir" bench --events "$events" > /dev/null

duckdb_run() {
    "$venv/bin/python" - "$file" <<'PY'
import sys, time, duckdb
path = sys.argv[1]
con = duckdb.connect()
start = time.perf_counter()
rows = con.execute(f"""
    SELECT source, time_bucket(INTERVAL '1 minute', "timestamp") AS window_start,
           count(*) AS count, avg(attributes.metric) AS avg_metric,
           quantile_cont(attributes.metric, 0.95) AS p95_metric,
           avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
    FROM read_json('{path}', format = 'newline_delimited', columns = {{
        'event_id': 'VARCHAR', 'source': 'VARCHAR', 'timestamp': 'TIMESTAMPTZ',
        'attributes': 'STRUCT(user_id VARCHAR, metric DOUBLE, status VARCHAR)'}},
        ignore_errors = true)
    GROUP BY ALL""").fetchall()
elapsed = time.perf_counter() - start
print(f"{elapsed:.3f} {len(rows)}")
PY
}

weir_run() {
    # `weir bench` prints "windows:     N" and "elapsed:     X s (first byte read to …)".
    "$weir" bench --file "$file" --events "$events" 2>/dev/null \
        | awk '/^windows:/ {n = $2} /^elapsed:/ {t = $2} END {print t, n}'
}

declare -a weir_times duck_times
for i in $(seq 1 "$runs"); do
    read -r w weir_windows < <(weir_run)
    read -r d windows < <(duckdb_run)
    weir_times+=("$w")
    duck_times+=("$d")
    printf 'run %d: weir %.3f s (%s windows), duckdb %.3f s (%s windows)\n' "$i" "$w" "$weir_windows" "$d" "$windows"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
wm="$(median "${weir_times[@]}")"
dm="$(median "${duck_times[@]}")"
awk -v e="$events" -v w="$wm" -v d="$dm" 'BEGIN {
    printf "median over the runs: weir %.3f s (%.0f events/s), duckdb %.3f s (%.0f events/s); weir takes %.2fx duckdb'"'"'s time\n", w, e / w, d, e / d, w / d
}'
