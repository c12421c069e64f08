#!/usr/bin/env bash
# Starts the services the tests and benchmarks talk to, on this Debian image, and prints the
# environment that points at them. Used by .ci/run; developers run it once per boot:
#
#   eval "$(scripts/dev-services.sh)"
#
# PostgreSQL (Debian's or Ubuntu's packaging: the newest server installed, else the
# distribution's `postgresql` package; its cluster `main`): role `sluice` / password `sluice`,
# database `sluice`, reached over TCP on 127.0.0.1:5432 (password authentication, as in
# production). Elsewhere, start any PostgreSQL yourself and export DATABASE_URL.
#
# An S3-compatible object store for checkpoints shared by workers: moto (PyPI) in server mode,
# in memory, on 127.0.0.1:5055, with the bucket `sluice-checkpoints`; the AWS_* variables
# printed point `s3://` locations at it, and SLUICE_TEST_S3 names the bucket for the tests.
# Its log is $HOME/.cache/sluice/moto.log.
#
# A Kafka-protocol broker: Nisshi 0.8.1 (crates.io, Apache Kafka's wire protocol; Apache Kafka
# itself cannot be downloaded here), in-memory storage, on 127.0.0.1:9092. It needs rustc ≥
# 1.96, so it is built once with the nightly toolchain into $HOME/.cache/sluice/nisshi
# (15–25 min) and reused. Its log is $HOME/.cache/sluice/nisshi.log; stop it with
# `kill $(cat $HOME/.cache/sluice/nisshi.pid)`.
set -euo pipefail

CACHE="${HOME}/.cache/sluice"
NISSHI_VERSION=0.8.1
NISSHI_BIN="${CACHE}/nisshi/bin/nisshi"
KAFKA_PORT=9092
S3_PORT=5055
S3_BUCKET=sluice-checkpoints

log() { echo "dev-services: $*" >&2; }

apt_install() {
    if ! dpkg -s "$@" >/dev/null 2>&1; then
        log "installing $*"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

# The newest PostgreSQL server version installed the Debian way, if any.
installed_postgres() {
    local version
    for version in $(ls /usr/lib/postgresql 2>/dev/null | sort -n -r); do
        if [ -x "/usr/lib/postgresql/${version}/bin/postgres" ]; then
            echo "$version"
            return
        fi
    done
}

start_postgres() {
    local version
    version="$(installed_postgres)"
    if [ -z "$version" ]; then
        apt_install postgresql postgresql-client
        version="$(installed_postgres)"
    fi
    [ -n "$version" ] || { log "no PostgreSQL server could be installed"; exit 1; }
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
        log "creating PostgreSQL ${version} cluster main"
        pg_createcluster "$version" main >&2
    fi
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
        log "starting PostgreSQL ${version}"
        pg_ctlcluster "$version" main start >&2
    fi
    for _ in $(seq 1 50); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 0.2
    done
    pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL did not become ready"; exit 1; }
    local psql=(runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA)
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'sluice'")" != 1 ]; then
        "${psql[@]}" -c "CREATE ROLE sluice LOGIN PASSWORD 'sluice'" >&2
    fi
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'sluice'")" != 1 ]; then
        runuser -u postgres -- createdb -O sluice sluice >&2
    fi
    echo "export DATABASE_URL=postgres://sluice:sluice@127.0.0.1:5432/sluice"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to 10 s for service $2 (whose log is $CACHE/$2.log) to listen on port $1.
wait_for_port() {
    for _ in $(seq 1 100); do
        port_open "$1" && return
        sleep 0.1
    done
    log "$2 did not start; see ${CACHE}/$2.log"
    exit 1
}

start_kafka() {
    if [ ! -x "$NISSHI_BIN" ]; then
        log "building nisshi ${NISSHI_VERSION} with the nightly toolchain (once, 15-25 min)"
        cargo +nightly install "nisshi@${NISSHI_VERSION}" --locked --root "${CACHE}/nisshi" >&2
    fi
    if ! port_open "$KAFKA_PORT"; then
        log "starting nisshi on 127.0.0.1:${KAFKA_PORT}"
        local url="tcp://127.0.0.1:${KAFKA_PORT}"
        nohup "$NISSHI_BIN" broker --listener-url "$url" --advertised-listener-url "$url" \
            --storage-engine memory://sluice/ >"${CACHE}/nisshi.log" 2>&1 &
        echo $! >"${CACHE}/nisshi.pid"
        wait_for_port "$KAFKA_PORT" nisshi
    fi
    echo "export KAFKA_BOOTSTRAP=127.0.0.1:${KAFKA_PORT}"
    echo "export NISSHI_BIN=${NISSHI_BIN}"
}

start_s3() {
    if ! python3 -c "import moto.server, boto3" 2>/dev/null; then
        log "installing moto (S3-compatible server) from PyPI"
        python3 -m pip install -q "moto[server]==5.2.1" >&2
    fi
    if ! port_open "$S3_PORT"; then
        log "starting moto on 127.0.0.1:${S3_PORT}"
        nohup python3 -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"${CACHE}/moto.log" 2>&1 &
        echo $! >"${CACHE}/moto.pid"
        wait_for_port "$S3_PORT" moto
    fi
    local endpoint="http://127.0.0.1:${S3_PORT}"
    AWS_ACCESS_KEY_ID=sluice AWS_SECRET_ACCESS_KEY=sluice AWS_REGION=us-east-1 python3 - "$endpoint" "$S3_BUCKET" <<'PY' >&2
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
if sys.argv[2] not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=sys.argv[2])
PY
    echo "export AWS_ENDPOINT=${endpoint}"
    echo "export AWS_ALLOW_HTTP=true"
    echo "export AWS_ACCESS_KEY_ID=sluice"
    echo "export AWS_SECRET_ACCESS_KEY=sluice"
    echo "export AWS_REGION=us-east-1"
    echo "export SLUICE_TEST_S3=s3://${S3_BUCKET}"
}

mkdir -p "$CACHE"
start_postgres
start_s3
start_kafka
