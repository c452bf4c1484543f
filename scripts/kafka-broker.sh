# Sourced by scripts/test.sh and loadtests/kafka_faults.sh: installs tansu, a Kafka-compatible
# broker, once into a cache outside the clone and starts it on a free port with in-memory
# storage. Exports WEIR_TEST_KAFKA (host:port) and WEIR_TEST_KAFKA_PID; stops it on exit.
# A WEIR_TEST_KAFKA already set means "use that broker".

TOOLS_DIR="${WEIR_TOOLS_DIR:-/var/tmp/weir-tools}"
TANSU_VERSION=0.6.0

start_test_broker() {
    if [ -n "${WEIR_TEST_KAFKA:-}" ]; then
        return 0
    fi
    if [ ! -x "$TOOLS_DIR/bin/tansu" ] || [ "$(cat "$TOOLS_DIR/tansu.version" 2>/dev/null)" != "$TANSU_VERSION" ]; then
        echo "installing tansu $TANSU_VERSION into $TOOLS_DIR (once; takes several minutes)" >&2
        CARGO_TARGET_DIR="$TOOLS_DIR/target" cargo install tansu --version "$TANSU_VERSION" \
            --locked --features dynostore,postgres --root "$TOOLS_DIR" --quiet
        echo "$TANSU_VERSION" > "$TOOLS_DIR/tansu.version"
    fi
    local port log
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    log="$TOOLS_DIR/tansu-$port.log"
    "$TOOLS_DIR/bin/tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$log" 2>&1 &
    TANSU_PID=$!
    trap 'kill -CONT $TANSU_PID 2>/dev/null; kill $TANSU_PID 2>/dev/null; wait $TANSU_PID 2>/dev/null' EXIT
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export WEIR_TEST_KAFKA="127.0.0.1:$port" WEIR_TEST_KAFKA_PID="$TANSU_PID"
            echo "tansu listening on $WEIR_TEST_KAFKA (log: $log)" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "error: tansu did not start on port $port; its log:" >&2
    cat "$log" >&2
    exit 1
}
