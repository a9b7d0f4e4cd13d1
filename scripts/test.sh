#!/usr/bin/env bash
# The README's second command: set up, then run the whole test suite. The
# process tests in tests/ run the real `dem` binary, so it is built first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --bin dem
cargo test --workspace "$@"
