#!/usr/bin/env bash
# The long Kafka fault scenario (issue 3's check): 1M seed events across 4 partitions with
# 0.1% malformed messages, the broker paused for 20 s mid-stream. Passes when kpi_1m equals
# an independent DataFusion batch computation over the valid events and weir.dead_letters
# holds exactly the malformed messages, by topic/partition@offset.
#
#   loadtests/kafka_faults.sh [EVENTS] [PAUSE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
# shellcheck source=scripts/kafka-broker.sh
. scripts/kafka-broker.sh
start_test_broker
export WEIR_KAFKA_FAULT_EVENTS="${1:-1000000}" WEIR_KAFKA_FAULT_PAUSE_SECS="${2:-20}"
time cargo test -p weir-server --test kafka_broker -- --nocapture seed_events_through_a_paused_broker
