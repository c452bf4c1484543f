# The image the Helm chart (helm/weir) runs: `docker build -t weir:0.1.0 .`
#
# Build stage: the release binary. BuildKit's cache mounts keep crates and the target dir
# between builds, so a rebuild after a change to Weir's code takes minutes, not the ~45 a
# cold release build of DataFusion takes on 2 cores.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir-server \
    && cp target/release/weir /usr/local/bin/weir

# Run stage: the binary and the shared libraries it links (OpenSSL for Kafka over TLS).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 weir \
    && useradd --system --uid 10001 --gid weir --home-dir /var/lib/weir weir \
    && mkdir -p /var/lib/weir /etc/weir \
    && chown weir:weir /var/lib/weir
COPY --from=build /usr/local/bin/weir /usr/local/bin/weir
USER 10001:10001
# Listen on every interface: Weir then refuses to start without credentials (pgwire users
# or an admin password, REST tokens) unless WEIR_INSECURE=true.
ENV WEIR_DATA_DIR=/var/lib/weir \
    WEIR_PG_ADDR=0.0.0.0:6875 \
    WEIR_HTTP_ADDR=0.0.0.0:8080
VOLUME /var/lib/weir
EXPOSE 6875 8080
ENTRYPOINT ["/usr/local/bin/weir"]
