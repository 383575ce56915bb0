#!/usr/bin/env bash
# The browser (wasm32) build, with the toolchain this machine can have: Debian's rustc-web
# and its std sources (rustup cannot fetch the wasm32 target here), called explicitly since
# rustup's proxies come first on PATH. RUSTC_BOOTSTRAP=1 is for -Z build-std only.
#   scripts/web.sh check     installs the toolchain (scripts/setup.sh web) and checks the
#                            crates that build for wasm32 with clippy: the protocol, the SDK
#                            (its browser shell, engine, voice and video) and the page peer
#   scripts/web.sh arena [--no-serve]
#                            builds the web arena (examples/bevy, bin web_arena: Bevy on
#                            WebGL2) into $WASM_TARGET_DIR/web-arena and serves it on
#                            127.0.0.1:${WEB_PORT:-8080} (about 10 min the first time on 2 cores).
#                            Clippy lints the workspace's crates as they are built (the
#                            arena and bevy_squadlink for wasm32, warnings are errors): one
#                            pass over Bevy instead of a clippy check of it and then a build
#   scripts/web.sh peer      builds the SDK's test page peer (testkit/web-peer) with
#                            wasm-bindgen into $WASM_TARGET_DIR/web-peer/pkg; the browser
#                            tests (sdk/tests/browser.rs) serve it to Chromium. Its cargo
#                            build has a target directory of its own, so that the browser
#                            tests never wait on the lock of a `check` or `arena` build
#                            running beside them (scripts/test.sh runs those in the background)
#   scripts/web.sh tools     installs the toolchain and wasm-bindgen only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh web
source scripts/env.sh
source scripts/steps.sh

what=${1:-check}
export WASM_TARGET_DIR="${WASM_TARGET_DIR:-$HOME/.cache/squadlink/wasm-target}"
# With wasm_lint=1, clippy-driver is the workspace's rustc: it compiles as rustc does and
# lints the workspace's crates on the way (cargo's lint table passes the workspace's
# denials; the -D warnings of `cargo clippy -- -D warnings` goes in CLIPPY_ARGS, with
# cargo-clippy's own separator). Dependencies are built by rustc as usual.
wasm_cargo() {
  local lint=()
  if [ -n "${wasm_lint:-}" ]; then
    lint=(RUSTC_WORKSPACE_WRAPPER=/usr/bin/clippy-driver
      "CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
  fi
  env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 "${lint[@]}" \
    CARGO_TARGET_DIR="${wasm_build_dir:-$WASM_TARGET_DIR}" \
    /usr/bin/cargo "$1" --locked --target wasm32-unknown-unknown -Z build-std=std,panic_abort "${@:2}"
}

# wasm-bindgen's CLI must match the lockfile's wasm-bindgen exactly. Installed without
# --locked: its own lockfile pins a webpki-roots newer than the registry offers.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
WASM_BINDGEN_ROOT="$HOME/.cache/squadlink/wasm-bindgen"
WASM_BINDGEN="$WASM_BINDGEN_ROOT/bin/wasm-bindgen"
need_wasm_bindgen() {
  if [ -x "$WASM_BINDGEN" ] && "$WASM_BINDGEN" --version | grep -q " $WASM_BINDGEN_VERSION\b"; then
    return 0
  fi
  step "web: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)" \
    cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --root "$WASM_BINDGEN_ROOT" --force
}

case $what in
  check)
    step "web: checking squadlink-protocol for wasm32 (std is built from source the first time)" \
      wasm_cargo check -p squadlink-protocol
    # Clippy with the workspace's lints (no unwrap, expect, panic or indexing) on what only
    # the browser build compiles: the web shell and engine, the page peer. The web arena and
    # bevy_squadlink are linted by the arena's build (below), so that Bevy is compiled once.
    step "web: clippy on squadlink and its page peer for wasm32" \
      wasm_cargo clippy -p squadlink -p squadlink-web-peer -- -D warnings
    ;;
  arena)
    need_wasm_bindgen
    out="$WASM_TARGET_DIR/web-arena"
    wasm_lint=1 step "web: building the web arena for wasm32, clippy on its crates (Bevy; about 10 min the first time)" \
      wasm_cargo build -p squadlink-bevy-examples --bin web_arena --profile web
    step "web: wasm-bindgen for the arena page" \
      "$WASM_BINDGEN" --target web --no-typescript --remove-producers-section \
        --out-dir "$out" "$WASM_TARGET_DIR/wasm32-unknown-unknown/web/web_arena.wasm"
    cp examples/bevy/web/index.html "$out/index.html"
    wasm="$out/web_arena_bg.wasm"
    echo "web: the arena is in $out ($(($(stat -c %s "$wasm") / 1024)) KiB wasm, $(($(gzip -9 -c "$wasm" | wc -c) / 1024)) KiB gzipped)"
    if [ "${2:-}" != "--no-serve" ]; then
      port="${WEB_PORT:-8080}"
      echo "web: serving on http://127.0.0.1:$port/ (Ctrl-C stops; add ?lobby=CODE to join a lobby)"
      exec python3 -m http.server --bind 127.0.0.1 --directory "$out" "$port"
    fi
    ;;
  peer)
    need_wasm_bindgen
    wasm_build_dir="$WASM_TARGET_DIR/peer-build"
    step "web: building the SDK's test page peer for wasm32 (testkit/web-peer)" \
      wasm_cargo build -p squadlink-web-peer --release
    step "web: wasm-bindgen for the page" \
      "$WASM_BINDGEN" --target web --no-typescript \
        --out-dir "$WASM_TARGET_DIR/web-peer/pkg" \
        "$wasm_build_dir/wasm32-unknown-unknown/release/squadlink_web_peer.wasm"
    echo "web: the page peer is in $WASM_TARGET_DIR/web-peer/pkg"
    ;;
  tools)
    need_wasm_bindgen
    echo "web: the wasm32 toolchain and wasm-bindgen $WASM_BINDGEN_VERSION are ready"
    ;;
  *)
    echo "web: unknown command '$what' (check, arena, peer or tools)" >&2
    exit 2
    ;;
esac
