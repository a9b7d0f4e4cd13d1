#!/usr/bin/env bash
# The README's second command: set up, then run the whole test suite. The
# process tests in tests/ run the real `dem` binary, so it is built first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The monitor's browser test (tests/tests/monitor.rs) drives Debian's
# headless chromium; without it that test fails rather than skips.
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (Debian) for the monitor's browser test" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium
fi
cargo build --bin dem
cargo test --workspace "$@"
