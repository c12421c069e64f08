# The `sluice` binary and the files it runs (queries/, the bundled sample), one image for every
# service of docker-compose.yml, and for the offline demo:
#
#   docker build -t sluice .
#   docker run --rm -p 127.0.0.1:8501:8501 sluice demo      # then open http://127.0.0.1:8501
#
# Dependencies are compiled in a layer of their own (cargo-chef): a change to the sources
# rebuilds the workspace's crates only, not DataFusion.
FROM rust:1.95-bookworm AS chef
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config cmake \
    && rm -rf /var/lib/apt/lists/* \
    && cargo install cargo-chef --locked
WORKDIR /src

# The dependency graph only (Cargo.toml files and Cargo.lock), so that this layer changes only
# when dependencies do.
FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --workspace --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --workspace --bin sluice \
    && cp target/release/sluice /usr/local/bin/sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home sluice \
    && mkdir -p /var/lib/sluice/checkpoints /app \
    && chown sluice /var/lib/sluice/checkpoints /app
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
# The demo's data (SQLite database, checkpoints) goes to /app/data, writable by `sluice`.
WORKDIR /app
COPY queries/ queries/
COPY examples/data/ examples/data/
# In a container the dashboard and the metrics endpoint must listen beyond loopback (publish
# them with -p); outside one their defaults stay on 127.0.0.1.
ENV SLUICE_DASHBOARD_LISTEN=0.0.0.0:8501 \
    SLUICE_HTTP_LISTEN=0.0.0.0:9464
EXPOSE 8501 9464
USER sluice
ENTRYPOINT ["sluice"]
CMD ["--help"]
