#!/usr/bin/env bash
# Debian's Chromium for the headless-browser tests (tests/report/test_browser.py), called by `make test`.
#
#   scripts/chromium.sh          install the packages `chromium` and `chromium-driver` with apt-get when
#                                /usr/bin/chromium is missing (apt-get update first), then print the
#                                browser's path and version. Instant when it is already installed.
#
# It never fails the caller: where it cannot install (not root, no apt-get, no network) it says why
# on stderr and exits 0, and the browser tests skip with the same reason. Exit code 2: usage.
set -euo pipefail

BROWSER=/usr/bin/chromium

say() { echo "chromium.sh: $*" >&2; }

[[ $# -eq 0 ]] || { say "usage: $0"; exit 2; }

if [[ ! -x $BROWSER ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        say "Chromium is not installed and installing it needs root: apt-get install chromium" \
            "chromium-driver as root, or the headless-browser tests skip"
        exit 0
    fi
    if ! command -v apt-get >/dev/null; then
        say "Chromium is not installed and there is no apt-get (not a Debian-like system): install" \
            "Chromium by hand (on PATH as chromium), or the headless-browser tests skip"
        exit 0
    fi
    say "installing Debian's chromium and chromium-driver (apt-get update; apt-get install -y) ..."
    export DEBIAN_FRONTEND=noninteractive
    rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
        >&2 || rc=$?
    if [[ $rc -ne 0 || ! -x $BROWSER ]]; then
        say "apt-get could not install chromium (exit $rc); the headless-browser tests skip"
        exit 0
    fi
fi
echo "$BROWSER: $("$BROWSER" --headless --no-sandbox --version 2>/dev/null || echo 'version unknown')"
