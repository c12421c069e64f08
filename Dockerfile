# The `sluice` binary and the files it runs (queries/, the bundled sample), for
# docker-compose.yml. Build: docker build -t sluice .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p sluice-cli && cp target/release/sluice /usr/local/bin/sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home sluice \
    && mkdir -p /var/lib/sluice/checkpoints && chown sluice /var/lib/sluice/checkpoints
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
WORKDIR /app
COPY queries/ queries/
COPY examples/data/ examples/data/
USER sluice
ENTRYPOINT ["sluice"]
CMD ["--help"]
