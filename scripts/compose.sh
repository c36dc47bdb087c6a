#!/usr/bin/env bash
# Debian's docker-compose for the offline check of docker/docker-compose.yaml (tests/docker/test_compose.py,
# `docker-compose config`: the Compose implementation's own schema, anchors and interpolation; no engine
# needed), called by `make test`.
#
#   scripts/compose.sh    install the package `docker-compose` with apt-get when neither `docker compose`
#                         nor `docker-compose` is on PATH (apt-get update first), then print its version.
#                         Instant when one is there.
#
# It never fails the caller: where it cannot install (not root, no apt-get, no network) it says why on
# stderr and exits 0, and that one test skips with the same reason. Exit code 2: usage.
set -euo pipefail

say() { echo "compose.sh: $*" >&2; }

[[ $# -eq 0 ]] || { say "usage: $0"; exit 2; }

if docker compose version >/dev/null 2>&1; then
    echo "docker compose: $(docker compose version --short 2>/dev/null || echo 'version unknown')"
    exit 0
fi
if ! command -v docker-compose >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        say "docker-compose is not installed and installing it needs root: apt-get install docker-compose" \
            "as root, or the compose config test skips"
        exit 0
    fi
    if ! command -v apt-get >/dev/null; then
        say "docker-compose is not installed and there is no apt-get: install Docker Compose by hand," \
            "or the compose config test skips"
        exit 0
    fi
    say "installing Debian's docker-compose (apt-get update; apt-get install -y) ..."
    export DEBIAN_FRONTEND=noninteractive
    rc=0
    out=$(mktemp)
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose; } >"$out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]] || ! command -v docker-compose >/dev/null; then
        tail -n 20 "$out" >&2
        rm -f "$out"
        say "apt-get could not install docker-compose (exit $rc); the compose config test skips"
        exit 0
    fi
    rm -f "$out"
fi
echo "docker-compose: $(docker-compose version --short 2>/dev/null || echo 'version unknown')"
