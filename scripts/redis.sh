#!/usr/bin/env bash
# A throw-away Redis server for the CeleryExecutor's broker (tests, local runs).
#
#   scripts/redis.sh start DIR PORT   install Debian's redis-server if missing, start a server with its
#                                     config, data, log and password in DIR, listening on
#                                     127.0.0.1:PORT only (no unix socket, no persistence), and print
#                                     the broker URL
#   scripts/redis.sh stop DIR         stop that server (DIR is left for the caller to remove)
#
# Idempotent: `start` on a DIR whose server answers prints its URL again; `stop` on a stopped or
# missing one does nothing. Nothing else is touched: not the packaged service, not /etc/redis.
# The password is random, kept in DIR/redis.password (mode 600) and DIR/redis.conf (mode 600), and
# given to redis-cli through REDISCLI_AUTH, never on a command line.
# Exit codes: 0 done, 2 usage, 3 Redis not installable, 4 the server did not start.
set -euo pipefail

die() { local code=$1; shift; echo "redis.sh: $*" >&2; exit "$code"; }
usage() { die 2 "usage: $0 start DIR PORT | stop DIR"; }

install_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || die 3 "Redis is not installed and installing it needs root"
    command -v apt-get >/dev/null || die 3 "Redis is not installed and there is no apt-get"
    echo "redis.sh: installing redis-server from the distribution's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postinst starts the packaged redis-server service; policy-rc.d keeps it from starting.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server; } >&2 || rc=$?
    [[ $own_policy -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || die 3 "apt-get install redis-server failed ($rc)"
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
        || die 3 "redis-server installed but no redis-server / redis-cli on the PATH"
}

conf_port() { awk '$1 == "port" { print $2 }' "$1/redis.conf"; }

# PING the server of DIR on its port; true when it answers PONG.
answers() {
    local dir=$1 port
    [[ -s $dir/redis.conf && -s $dir/redis.password ]] || return 1
    port=$(conf_port "$dir")
    [[ $(REDISCLI_AUTH=$(cat "$dir/redis.password") redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" \
        ping 2>/dev/null) == PONG ]]
}

start() {
    local dir=$1 port=$2
    [[ $port =~ ^[0-9]+$ ]] || usage
    install_redis
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    chmod 700 "$dir"
    if [[ ! -s $dir/redis.password ]]; then
        (umask 077 && od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$dir/redis.password")
    fi
    local password
    password=$(cat "$dir/redis.password")
    if [[ ! -s $dir/redis.conf ]]; then
        # Loopback only (no unix socket: none is configured), nothing written to disk (a broker for one test run).
        (umask 077 && cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir/data
save ""
appendonly no
requirepass $password
EOF
        )
    fi
    port=$(conf_port "$dir")
    if ! answers "$dir"; then
        redis-server "$dir/redis.conf" >>"$dir/redis.log" 2>&1 \
            || { tail -n 30 "$dir/redis.log" >&2 || true; die 4 "redis-server did not start"; }
        local i
        for i in $(seq 1 60); do
            answers "$dir" && break
            [[ $i -eq 60 ]] && { tail -n 30 "$dir/redis.log" >&2 || true; die 4 "the server does not answer"; }
            sleep 0.5
        done
    fi
    echo "redis://:$password@127.0.0.1:$port/0"
}

stop() {
    local dir=$1 pid=""
    [[ -s $dir/redis.conf ]] || return 0
    # Only a pid that is still a redis-server (a stale file's pid may belong to something else now).
    [[ -s $dir/redis.pid ]] && pid=$(cat "$dir/redis.pid")
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || pid=""
    if answers "$dir"; then
        REDISCLI_AUTH=$(cat "$dir/redis.password") redis-cli --no-auth-warning -h 127.0.0.1 \
            -p "$(conf_port "$dir")" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [[ -n $pid ]]; then
        local i
        for i in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.25
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

case "${1:-}" in
    start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    *) usage ;;
esac
