#!/usr/bin/env bash
# The browser (wasm32) build, with the toolchain this machine can have: Debian's rustc-web
# and its std sources (rustup cannot fetch the wasm32 target here), called explicitly since
# rustup's proxies come first on PATH. RUSTC_BOOTSTRAP=1 is for -Z build-std only.
#   scripts/web.sh check     installs the toolchain (scripts/setup.sh web) and checks the
#                            crates that build for wasm32 today
# Status (issue 16 §3): only the wire protocol crate builds for wasm32 so far; the SDK's
# browser engine and the web arena are not written yet (docs/architecture.md, "Next").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh web
source scripts/env.sh
source scripts/steps.sh

what=${1:-check}
export WASM_TARGET_DIR="${WASM_TARGET_DIR:-$HOME/.cache/squadlink/wasm-target}"
wasm_cargo() {
  env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_DIR="$WASM_TARGET_DIR" \
    /usr/bin/cargo "$@" --locked --target wasm32-unknown-unknown -Z build-std=std,panic_abort
}

case $what in
  check)
    step "web: checking squadlink-protocol for wasm32 (std is built from source the first time)" \
      wasm_cargo check -p squadlink-protocol
    ;;
  *)
    echo "web: unknown command '$what' (check)" >&2
    exit 2
    ;;
esac
