#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for Airflow's metadata database (tests, local runs).
#
#   scripts/postgres.sh start DIR PORT   install Debian's postgresql if missing, create a cluster in
#                                        DIR (owned by `postgres` when run as root), start it on
#                                        127.0.0.1:PORT with its unix socket in DIR, create the role
#                                        and database `airflow`, and print the SQLAlchemy URL
#   scripts/postgres.sh stop DIR         stop that cluster (DIR is left for the caller to remove)
#
# Nothing else is touched: not the packaged `main` cluster, not /etc/postgresql.
# Exit codes: 0 done, 2 usage, 3 PostgreSQL not installable, 4 the cluster did not start.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # runuser; a plain user shell may not list the sbin folders

die() { local code=$1; shift; echo "postgres.sh: $*" >&2; exit "$code"; }
usage() { die 2 "usage: $0 start DIR PORT | stop DIR"; }

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && echo "$dir"
}

install_postgres() {
    pg_bindir >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || die 3 "PostgreSQL is not installed and installing it needs root"
    command -v apt-get >/dev/null || die 3 "PostgreSQL is not installed and there is no apt-get"
    echo "postgres.sh: installing postgresql from the distribution's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postinst creates and starts a `main` cluster; policy-rc.d keeps it from starting.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; } >&2 || rc=$?
    [[ $own_policy -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || die 3 "apt-get install postgresql failed ($rc)"
    pg_bindir >/dev/null || die 3 "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
}

# Run a PostgreSQL binary as the cluster's owner: `postgres` when we are root (initdb and the server
# refuse to run as root), else ourselves.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=$1 port=$2
    [[ $port =~ ^[0-9]+$ ]] || usage
    install_postgres
    local bin
    bin=$(pg_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die 3 "no postgres user (the postgresql package makes it)"
        chown postgres: "$dir"
        runuser -u postgres -- test -w "$dir" \
            || die 4 "the postgres user cannot reach $dir: every parent directory must be searchable"
    fi
    chmod 700 "$dir"
    local data=$dir/data password_file=$dir/airflow.password
    if [[ ! -s $data/PG_VERSION ]]; then
        local password
        password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
        (umask 077 && echo "$password" >"$password_file")
        as_owner "$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die 4 "initdb failed"; }
        # Throw-away data: durability off makes Airflow's many small commits cheap.
        as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
    fi
    if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 -o "-p $port" start >/dev/null \
            || { tail -n 30 "$dir/postgres.log" >&2 || true; die 4 "the server did not start"; }
    fi
    local password psql=("$bin/psql" -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -qAt)
    password=$(cat "$password_file")
    if [[ -z $(as_owner "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname='airflow'") ]]; then
        as_owner "${psql[@]}" -d postgres -c "CREATE ROLE airflow LOGIN PASSWORD '$password'" >/dev/null
        as_owner "${psql[@]}" -d postgres -c "CREATE DATABASE airflow OWNER airflow" >/dev/null
    fi
    echo "postgresql+psycopg2://airflow:$password@127.0.0.1:$port/airflow"
}

stop() {
    local dir=$1 bin
    [[ -s $dir/data/PG_VERSION ]] || return 0
    bin=$(pg_bindir) || die 3 "PostgreSQL is not installed"
    if as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null \
            || as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    fi
}

case "${1:-}" in
    start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    *) usage ;;
esac
