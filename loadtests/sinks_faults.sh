#!/usr/bin/env bash
# The sinks scenario (issue 6's check) at full size: 1M seed events (4000/s) into kpi_1m with
# the four sinks (Redis hot aggregates, PostgreSQL kpi_1m, PostgreSQL events_raw, Kafka),
# three `kill -9` of the real `weir` process, Redis down for 20 s, PostgreSQL restarted.
# Passes when the PostgreSQL table, the Redis keys and the last message per key on the Kafka
# topic equal the view's rows, and events_raw holds every valid event exactly once.
#
#   loadtests/sinks_faults.sh [EVENTS] [KILLS] [REDIS_DOWN_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
# shellcheck source=scripts/kafka-broker.sh
. scripts/kafka-broker.sh
start_test_broker
export WEIR_SINK_EVENTS="${1:-1000000}" WEIR_SINK_KILLS="${2:-3}" WEIR_SINK_REDIS_DOWN="${3:-20}"
time cargo test -p weir-server --test sinks -- --nocapture sinks_hold_the_view_after_kill_and_outages
