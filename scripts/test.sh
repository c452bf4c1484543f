#!/usr/bin/env bash
# The test command: builds the workspace and runs every test (unit, SQL, pgwire, psql, the
# docs' examples). Starts or installs what the tests need on a fresh Debian machine.
#
# WEIR_TEST_NO_INSTALL=1 leaves the machine as it is: nothing is installed, configured or
# started; what is missing is listed (with the package that has it) and the script stops.
# The tests then use the services named by WEIR_TEST_POSTGRES (libpq words, default
# 'host=127.0.0.1 port=5432 user=postgres': a superuser that logs in without a password)
# and WEIR_TEST_KAFKA (host:port of a Kafka-compatible broker, or tansu already built
# into $WEIR_TOOLS_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
NO_INSTALL="${WEIR_TEST_NO_INSTALL:-}"
MISSING=()

need_apt() {
    if [ -n "$NO_INSTALL" ]; then
        MISSING+=("$1 (Debian package $2)")
        return 0
    fi
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

# openssl makes the TLS tests' certificates; curl checks HTTPS.
command -v openssl >/dev/null 2>&1 || need_apt openssl openssl
command -v curl >/dev/null 2>&1 || need_apt curl curl
# The psql client drives the meta-command tests (\d, \dm).
command -v psql >/dev/null 2>&1 || need_apt psql postgresql-client
# librdkafka is built from source (rdkafka's default build) with TLS from the system.
command -v g++ >/dev/null 2>&1 || need_apt g++ g++
command -v make >/dev/null 2>&1 || need_apt make make
pkg-config --exists openssl 2>/dev/null || need_apt "OpenSSL headers" libssl-dev
pkg-config --exists zlib 2>/dev/null || need_apt "zlib headers" zlib1g-dev
# promtool checks the /metrics exposition; a Prometheus server scrapes a live Weir.
command -v promtool >/dev/null 2>&1 || need_apt promtool prometheus
command -v prometheus >/dev/null 2>&1 || need_apt prometheus prometheus
# Alert rules' alerts are delivered to a real Alertmanager.
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt prometheus-alertmanager prometheus-alertmanager
# The sink tests start Redis servers of their own and need PostgreSQL on 127.0.0.1:5432
# (user postgres, trust), which they restart once.
command -v redis-server >/dev/null 2>&1 || need_apt redis-server redis-server
command -v redis-cli >/dev/null 2>&1 || need_apt redis-cli redis-tools
# The docs' examples (tests/docs.rs) use Redis where the README says: 127.0.0.1:6379.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if [ -n "$NO_INSTALL" ]; then
        MISSING+=("Redis on 127.0.0.1:6379 (the docs' examples use it)")
    else
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
    fi
fi
if [ -n "$NO_INSTALL" ]; then
    export WEIR_TEST_NO_INSTALL=1
    pg="${WEIR_TEST_POSTGRES:-host=127.0.0.1 port=5432 user=postgres}"
    psql "$pg dbname=postgres" -Atqc 'SELECT 1' >/dev/null 2>&1 \
        || MISSING+=("PostgreSQL at '$pg' (set WEIR_TEST_POSTGRES)")
elif ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null 2>&1 || need_apt "PostgreSQL" postgresql
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    if [ ! -f "/etc/postgresql/$version/main/.weir-trust" ]; then
        # Loopback connections as postgres without a password, as on the project's machines.
        sed -i 's/^\(host\s\+all\s\+all\s\+127.0.0.1\/32\s\+\)\S\+/\1trust/' \
            "/etc/postgresql/$version/main/pg_hba.conf"
        touch "/etc/postgresql/$version/main/.weir-trust"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
    pg_isready -h 127.0.0.1 -p 5432 || { echo "error: PostgreSQL did not start" >&2; exit 1; }
fi

# Python packages (as root here; on a Debian-managed Python, past its guard).
pip_install() {
    if [ -n "$NO_INSTALL" ]; then
        MISSING+=("Python packages: $* (pip install $*)")
        return 0
    fi
    command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || need_apt pip python3-pip
    "$(command -v pip3 || command -v pip)" install --quiet "$@" 2>/dev/null \
        || "$(command -v pip3 || command -v pip)" install --quiet --break-system-packages "$@"
}

# An S3-compatible server (moto, from PyPI) for views' history in object storage.
if ! command -v moto_server >/dev/null 2>&1; then
    pip_install 'moto[server]'
    [ -n "$NO_INSTALL" ] || command -v moto_server >/dev/null 2>&1 || { echo "error: moto_server is not on PATH after installing moto[server]" >&2; exit 1; }
fi

# The client drivers of the real-client harness (tests/clients.rs): psycopg 3 and asyncpg
# from PyPI, node-postgres from npm (cached outside the clone), pgjdbc from Debian.
python3 -c 'import psycopg, asyncpg' 2>/dev/null || pip_install 'psycopg[binary]' asyncpg
command -v node >/dev/null 2>&1 || need_apt node nodejs
command -v npm >/dev/null 2>&1 || need_apt npm npm
export WEIR_TOOLS_DIR="${WEIR_TOOLS_DIR:-/var/tmp/weir-tools}"
if [ ! -d "$WEIR_TOOLS_DIR/node/node_modules/pg" ] && [ -n "$NO_INSTALL" ]; then
    MISSING+=("node-postgres (npm install --prefix $WEIR_TOOLS_DIR/node pg@8)")
elif [ ! -d "$WEIR_TOOLS_DIR/node/node_modules/pg" ]; then
    mkdir -p "$WEIR_TOOLS_DIR/node"
    npm install --silent --no-audit --no-fund --prefix "$WEIR_TOOLS_DIR/node" pg@8 >/dev/null
fi
command -v javac >/dev/null 2>&1 || need_apt javac default-jdk-headless
[ -f /usr/share/java/postgresql.jar ] || need_apt pgjdbc libpostgresql-jdbc-java

# The Helm chart's checker (tests/helm_chart.rs, helm/check_chart.py): Helm v4 as the Go
# library inside the helm-sdkpy wheel (PyPI), called through ctypes, and kubernetes-validate
# (PyPI) with the Kubernetes schemas, in a venv under the tools cache.
HELM_TOOLS="$WEIR_TOOLS_DIR/helm"
HELM_SDK_VERSION=0.1.32
if [ ! -f "$HELM_TOOLS/.ready-$HELM_SDK_VERSION" ]; then
    if [ -n "$NO_INSTALL" ]; then
        MISSING+=("the chart checker's tools (run once without WEIR_TEST_NO_INSTALL to install them into $HELM_TOOLS)")
    else
        python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt "Python venv" python3-venv
        rm -rf "$HELM_TOOLS"
        python3 -m venv "$HELM_TOOLS/venv"
        "$HELM_TOOLS/venv/bin/pip" install --quiet kubernetes-validate==1.37.0 PyYAML
        # The wheel says Python >= 3.12 for its Python wrapper; only its library is used.
        "$HELM_TOOLS/venv/bin/pip" download --quiet --no-deps --python-version 3.12 \
            --only-binary=:all: -d "$HELM_TOOLS" "helm-sdkpy==$HELM_SDK_VERSION"
        python3 -m zipfile -e "$HELM_TOOLS/helm_sdkpy-$HELM_SDK_VERSION-py3-none-any.whl" "$HELM_TOOLS/wheel"
        touch "$HELM_TOOLS/.ready-$HELM_SDK_VERSION"
    fi
fi
export WEIR_HELM_PYTHON="$HELM_TOOLS/venv/bin/python"
export HELM_SDK_LIB="$HELM_TOOLS/wheel/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so"

# A Kafka-compatible broker for the end-to-end tests (tansu, cached outside the clone).
# shellcheck source=scripts/kafka-broker.sh
. scripts/kafka-broker.sh
if [ -n "$NO_INSTALL" ] && [ -z "${WEIR_TEST_KAFKA:-}" ] && [ ! -x "$TOOLS_DIR/bin/tansu" ]; then
    MISSING+=("a Kafka-compatible broker (set WEIR_TEST_KAFKA=host:port, or run once without WEIR_TEST_NO_INSTALL to build tansu into $TOOLS_DIR)")
fi
if [ ${#MISSING[@]} -gt 0 ]; then
    echo "error: WEIR_TEST_NO_INSTALL is set and the tests need:" >&2
    printf '  - %s\n' "${MISSING[@]}" >&2
    exit 1
fi
start_test_broker

cargo test --workspace --all-targets "$@"
