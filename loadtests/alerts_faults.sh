#!/usr/bin/env bash
# The alerts scenario (issue 7's check) at full size: 1M seed events with outliers and error
# bursts through Kafka into the seed's two alert rules, alerts published to Kafka by a
# `FROM weir.alerts` sink, three `kill -9` of the real `weir` process. Passes when the alert
# topic and weir.alerts hold exactly the alerts an independent batch computation of the same
# rules (with the same cooldowns) yields, each alert_id once per status.
#
#   loadtests/alerts_faults.sh [EVENTS] [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
# The broker is librdkafka's mock cluster inside the test process (see server/tests/alerts_kill.rs).
export WEIR_ALERT_EVENTS="${1:-1000000}" WEIR_ALERT_KILLS="${2:-3}"
time cargo test --workspace --test alerts_kill -- --nocapture
