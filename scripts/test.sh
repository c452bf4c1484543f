#!/usr/bin/env bash
# The test command: builds the workspace and runs every test (unit, SQL, pgwire, psql).
# Starts or installs what the tests need on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need_apt() {
    if [ "$(id -u)" != 0 ]; then
        echo "error: $1 is missing; install it (apt-get install $2) or run this script as root" >&2
        exit 1
    fi
    if [ -z "${WEIR_APT_UPDATED:-}" ]; then
        apt-get update -qq
        WEIR_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# The psql client drives the meta-command tests (\d, \dm).
command -v psql >/dev/null 2>&1 || need_apt psql postgresql-client
# librdkafka is built from source (rdkafka's default build) with TLS from the system.
command -v g++ >/dev/null 2>&1 || need_apt g++ g++
command -v make >/dev/null 2>&1 || need_apt make make
pkg-config --exists openssl 2>/dev/null || need_apt "OpenSSL headers" libssl-dev
pkg-config --exists zlib 2>/dev/null || need_apt "zlib headers" zlib1g-dev
# promtool checks the /metrics exposition.
command -v promtool >/dev/null 2>&1 || need_apt promtool prometheus

# A Kafka-compatible broker for the end-to-end tests (tansu, cached outside the clone).
# shellcheck source=scripts/kafka-broker.sh
. scripts/kafka-broker.sh
start_test_broker

cargo test --workspace --all-targets "$@"
