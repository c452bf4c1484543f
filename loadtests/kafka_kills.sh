#!/usr/bin/env bash
# The crash-recovery scenario (issue 4's check): 2M seed events stream (20k/s) into a
# 4-partition topic while the real `weir` process reading them into kpi_1m and kpi_1m_hop is killed with
# SIGKILL 20 times at random moments and restarted. Passes when both views equal an
# independent batch computation over the events (counts exactly: nothing lost, nothing
# counted twice); prints the time from each restart to serving.
#
#   loadtests/kafka_kills.sh [EVENTS] [KILLS] [EVENTS_PER_SECOND]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
# The broker is librdkafka's mock cluster inside the test process (see server/tests/kafka.rs).
export WEIR_KILL_EVENTS="${1:-2000000}" WEIR_KILLS="${2:-20}" WEIR_KILL_RATE="${3:-20000}"
time cargo test -p weir-server --test kafka -- --nocapture weir_killed_while_reading_kafka
