#!/usr/bin/env bash
# Installs what building DEM needs beyond the Rust toolchain itself: the
# wasm32-wasip2 target the guest components compile to. RUSTUP_AUTO_INSTALL
# is off on some machines, so this is done explicitly rather than through a
# rust-toolchain.toml.
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 rustup target" >&2
    rustup target add wasm32-wasip2
fi
