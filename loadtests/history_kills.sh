#!/usr/bin/env bash
# Retention and Parquet history under many crashes (issue 14's check): a realtime datagen
# source into a view with retention '2 seconds' (rows move to history every 100 ms, files
# merge) next to the same view kept in memory, while the real `weir` process is killed -9
# at pseudo-random instants (the seed is printed). Passes when memory + history equals the
# in-memory view and the number of events, and the Parquet files (read without Weir) hold
# no window twice.
#
#   loadtests/history_kills.sh [SECONDS_OF_EVENTS] [KILLS]     # default 300 s, 50 kills
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
export WEIR_HISTORY_SECONDS="${1:-300}" WEIR_HISTORY_KILLS="${2:-50}"
time cargo test --workspace --test history kill_9_during_moves_and_merges -- --nocapture
