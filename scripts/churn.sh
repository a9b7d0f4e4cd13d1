#!/usr/bin/env bash
# Many seeds of the double-kill churn (issue 19): `scripts/churn.sh [SEEDS]
# [FIRST_SEED]`. CI runs 20 (`cargo test`); this runs 200 by default, one
# fresh network per seed (about 20 s each), from FIRST_SEED (default: the
# clock). A failure prints the seed and how to replay it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-200}"
first="${2:-$(date +%s%N)}"
cargo build --bin dem
DEM_CHURN_SEEDS="$seeds" DEM_SEED="$first" \
    cargo test -p dem-tests --test churn double_kills -- --nocapture
