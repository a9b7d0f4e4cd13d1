#!/usr/bin/env bash
# The README's second command: set up, then run the whole test suite. The
# process tests in tests/ run the real `dem` binary, so it is built first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Debian packages tests use: chromium for the monitor's browser test
# (tests/tests/monitor.rs), python3 for the admin console's Python client
# (tests/tests/admin_console.rs). Without them those tests fail rather
# than skip.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} (Debian) for the tests" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}"
fi
cargo build --bin dem
cargo test --workspace "$@"
