#!/usr/bin/env bash
# Starts the services the tests and benchmarks talk to, on this Debian image, and prints the
# environment that points at them. Used by .ci/run; developers run it once per boot:
#
#   eval "$(scripts/dev-services.sh)"
#
# PostgreSQL 15 (Debian's cluster `15 main`): role `sluice` / password `sluice`, database
# `sluice`, reached over TCP on 127.0.0.1:5432 (password authentication, as in production).
set -euo pipefail

log() { echo "dev-services: $*" >&2; }

apt_install() {
    if ! dpkg -s "$@" >/dev/null 2>&1; then
        log "installing $*"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

start_postgres() {
    apt_install postgresql-15 postgresql-client-15
    if ! pg_lsclusters -h | awk '$1 == 15 && $2 == "main" && $4 == "online"' | grep -q .; then
        log "starting PostgreSQL 15"
        pg_ctlcluster 15 main start >&2
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

start_postgres
