#!/usr/bin/env bash
# The README's first command: set up, then run `dem demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --bin dem -- demo "$@"
