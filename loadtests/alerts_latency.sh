#!/usr/bin/env bash
# Detection-to-alert latency at a steady rate: `weir bench-alerts` against the test broker
# (tansu), release build. Prints p50/p90/p99/max from event time to the alert published.
#
#   loadtests/alerts_latency.sh [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
# shellcheck source=scripts/kafka-broker.sh
. scripts/kafka-broker.sh
start_test_broker
PROFILE="${WEIR_PROFILE:-release}"
cargo build --profile "$PROFILE" -p weir-server --bin weir
dir="target-dir-of-profile"
case "$PROFILE" in dev) dir=debug ;; *) dir="$PROFILE" ;; esac
"$CARGO_TARGET_DIR/$dir/weir" bench-alerts --brokers "$WEIR_TEST_KAFKA" --rate "${1:-50000}" --seconds "${2:-30}"
