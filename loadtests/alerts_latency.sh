#!/usr/bin/env bash
# Detection-to-alert latency at a steady rate: `weir bench-alerts` against the test broker
# (tansu from scripts/kafka-broker.sh), or `mock` (librdkafka's mock cluster in-process).
# Prints p50/p90/p99/max from event time to the alert published, and the pipeline's own
# time per micro-batch, for both OVER modes: emit = 'on_watermark' (the default, exact:
# alerts wait for the 2 s watermark) and 'on_arrival'. WEIR_PROFILE=release uses a release
# build (45+ minutes cold).
#
#   loadtests/alerts_latency.sh [RATE] [SECONDS] [BROKERS: tansu|mock] [FETCH_WAIT_MS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
if [ "${WEIR_PROFILE:-dev}" = release ]; then
    cargo build --release --workspace
    weir="$CARGO_TARGET_DIR/release/weir"
else
    # The test command's build: warm after scripts/test.sh.
    cargo test --workspace --all-targets --no-run
    weir="$CARGO_TARGET_DIR/debug/weir"
fi
brokers="${3:-tansu}"
if [ "$brokers" = tansu ]; then
    # shellcheck source=scripts/kafka-broker.sh
    . scripts/kafka-broker.sh
    start_test_broker
    brokers="$WEIR_TEST_KAFKA"
fi
for emit in on_watermark on_arrival; do
    "$weir" bench-alerts --brokers "$brokers" --rate "${1:-50000}" --seconds "${2:-30}" \
        --fetch-wait-ms "${4:-50}" --emit "$emit"
done
