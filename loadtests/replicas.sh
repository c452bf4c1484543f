#!/usr/bin/env bash
# Scale-out benchmark (docs/benchmarks.md, "Several replicas"): the same topic read into the
# seed's kpi_1m by 1, 2 and 3 replicas sharing its partitions (and, for the cost of
# ownership tracking, by one plain process), then the takeover of partitions holding 100k
# open groups each: one replica of three killed with kill -9 and restarted, timed from the
# restart until its partitions are restored and read to the end again.
#
#   loadtests/replicas.sh [EVENTS] [PARTITIONS] [GROUPS_PER_PARTITION]
#
# EVENTS=0 skips the throughput runs, GROUPS_PER_PARTITION=0 the takeover.
# Uses the release build (BUILD_PROFILE=dev: the test command's build) and the tansu
# broker of scripts/test.sh (started here if none answers on WEIR_TEST_KAFKA, default
# 127.0.0.1:19092). All replicas run on this machine, so they share its cores: the figures
# are events/s per replica-core.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
EVENTS="${1:-2000000}"
PARTS="${2:-6}"
PER_PARTITION="${3:-100000}"
BROKER="${WEIR_TEST_KAFKA:-127.0.0.1:19092}"
if [ "${BUILD_PROFILE:-release}" = release ]; then
    cargo build --release -q -p weir-server
    BIN="$CARGO_TARGET_DIR/release/weir"
else
    cargo build -q --workspace --all-targets
    BIN="$CARGO_TARGET_DIR/debug/weir"
fi
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! (exec 3<>"/dev/tcp/${BROKER%:*}/${BROKER#*:}") 2>/dev/null; then
    TANSU="${WEIR_TOOLS:-/var/tmp/weir-tools}/bin/tansu"
    "$TANSU" broker --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" \
        --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/${BROKER%:*}/${BROKER#*:}") 2>/dev/null && break; sleep 0.2; done
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
q() { psql -qtAX -h 127.0.0.1 -p "$1" -U weir -d weir -c "$2" 2>/dev/null || echo 0; }

# init.sql over topic $1 with view $2 ("kpi" or "groups").
init_sql() {
    local view
    if [ "$2" = kpi ]; then
        view="CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT source, window_start, count(*) AS count,
            avg(attributes.metric) AS avg_metric,
            approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY attributes.metric) AS p95_metric,
            avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
            FROM TUMBLE(events, \"timestamp\", INTERVAL '1 minute') GROUP BY source, window_start EMIT ON UPDATE;"
    else
        view="CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT source, count(*) AS n,
            avg(attributes.metric) AS avg_metric FROM events GROUP BY source;"
    fi
    cat <<SQL
CREATE SOURCE IF NOT EXISTS events (event_id TEXT, source TEXT, "timestamp" TIMESTAMPTZ,
    attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
    WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '2 seconds')
WITH (connector = 'kafka', brokers = '$BROKER', topic = '$1', format = 'json',
      partition_key = 'source', idle_timeout = '1s');
$view
SQL
}

# start NAME ORDINAL REPLICAS INIT [plain]: starts a replica (or a plain process); sets PORT.
start() {
    local dir="$WORK/$1" port
    mkdir -p "$dir"
    port=$(free_port)
    if [ "${5:-}" = plain ]; then
        WEIR_INIT_SQL="$4" "$BIN" --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" \
            --http-addr "127.0.0.1:$(free_port)" >"$dir/log" 2>&1 &
    else
        WEIR_INIT_SQL="$4" WEIR_CLUSTER__REPLICA="$1" WEIR_CLUSTER__ORDINAL="$2" \
            WEIR_CLUSTER__REPLICAS="$3" WEIR_CLUSTER__STATE_DIR="$WORK/shared-$3" \
            WEIR_CLUSTER__LEASE_TIMEOUT=5s \
            "$BIN" --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" \
            --http-addr "127.0.0.1:$(free_port)" >"$dir/log" 2>&1 &
    fi
    PIDS+=($!)
    PORT=$port
    for _ in $(seq 1 100); do [ "$(q "$port" 'SELECT 1')" = 1 ] && break; sleep 0.1; done
}

# rows_in summed over the ports given.
rows_in() {
    local sum=0 p n
    for p in "$@"; do
        n=$(q "$p" "SELECT coalesce(sum(rows_in), 0) FROM weir.views WHERE name = 'v'")
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}

wait_rows() { # WANT PORTS…: until the replicas' views took in WANT events
    local want=$1; shift
    while [ "$(rows_in "$@")" -lt "$want" ]; do sleep 0.05; done
}

stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

if [ "$EVENTS" -gt 0 ]; then
echo "== throughput: $EVENTS events, $PARTS partitions, kpi_1m, $(nproc) cores, $(date -u +%F)"
TOPIC="replicas-$$-$(date +%s)"
"$BIN" produce --brokers "$BROKER" --topic "$TOPIC" --count "$EVENTS" --partitions "$PARTS" \
    --sources 600 --start 2026-11-27T10:00:00Z >/dev/null
init_sql "$TOPIC" kpi >"$WORK/kpi.sql"
for mode in plain 1 2 3; do
    ports=()
    if [ "$mode" = plain ]; then
        t0=$(now); start plain 0 1 "$WORK/kpi.sql" plain; ports+=("$PORT")
    else
        t0=$(now)
        for i in $(seq 0 $((mode - 1))); do start "r$mode-$i" "$i" "$mode" "$WORK/kpi.sql"; ports+=("$PORT"); done
    fi
    wait_rows "$EVENTS" "${ports[@]}"
    t=$(python3 -c "print($(now) - $t0)")
    n=${mode/plain/1}
    # Every run has the machine's cores to itself (the replicas share them).
    python3 -c "
e, t, n, cores = $EVENTS, $t, $n, $(nproc)
print(f'$mode: {t:.2f} s from start to all read, {e/t:,.0f} events/s, {e/t/cores:,.0f} per core, {e/t/n:,.0f} per replica')"
    stop_all
done
fi

if [ "$PER_PARTITION" -gt 0 ]; then
echo "== takeover: 3 replicas, $PER_PARTITION open groups per partition, replica 1 killed and restarted"
TOPIC="takeover-$$-$(date +%s)"
SOURCES=$((PER_PARTITION * PARTS))
"$BIN" produce --brokers "$BROKER" --topic "$TOPIC" --count $((SOURCES * 2)) --partitions "$PARTS" \
    --sources "$SOURCES" --start 2026-11-27T10:00:00Z >/dev/null
init_sql "$TOPIC" groups >"$WORK/groups.sql"
ports=()
for i in 0 1 2; do start "t-$i" "$i" 3 "$WORK/groups.sql"; ports+=("$PORT"); done
wait_rows $((SOURCES * 2)) "${ports[@]}"
sleep 2 # a checkpoint of every lane after the last batch
echo "open groups per replica: $(for p in "${ports[@]}"; do q "$p" "SELECT groups FROM weir.views WHERE name = 'v'"; done | tr '\n' ' ')"
echo "checkpoint bytes of replica 1's lanes: $(q "${ports[1]}" "SELECT sum(checkpoint_bytes) FROM weir.sources WHERE name LIKE 'events@p%'")"
victim=${PIDS[$((${#PIDS[@]} - 2))]}
kill -9 "$victim"
wait "$victim" 2>/dev/null || true
t0=$(now)
start t-1 1 3 "$WORK/groups.sql"
ports[1]=$PORT
wait_rows $((SOURCES * 2)) "${ports[@]}"
t=$(python3 -c "print($(now) - $t0)")
echo "takeover: restarted replica restored $((PER_PARTITION * PARTS / 3)) groups and caught up in ${t:0:5} s"
grep -h "partition taken" "$WORK/t-1/log" | tail -2 | sed 's/^/  /'
stop_all
fi
