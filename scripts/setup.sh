#!/usr/bin/env bash
# Installs what one purpose needs on Debian/Ubuntu, and only what is missing. Called by the
# other scripts; safe to run again. One line per step; apt's output goes to the log
# (~/.cache/squadlink/setup.log), shown only on failure.
#   scripts/setup.sh demo        building and running the quickstart
#   scripts/setup.sh test        everything scripts/test.sh runs (the default)
#   scripts/setup.sh bench       the benchmarks (test's, and python3-venv for PESQ)
#   scripts/setup.sh web         the wasm32 toolchain (Debian's rustc-web, std from source)
#   scripts/setup.sh cluster     the demo's, and Redis, HAProxy and coturn (scripts/cluster.sh)
# Extra Debian package names after the purpose are installed too (camera_vm.sh asks for its
# VM's).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/steps.sh

purpose=${1:-test}
if (($#)); then shift; fi

# The demo: a C toolchain for -sys crates, cmake for libopus from source (opusic-sys), ALSA
# headers (cpal), libvpx for VP8.
DEMO=(build-essential pkg-config cmake libasound2-dev libvpx-dev)
# Everything the tests use, with what needs it.
TEST=(
  "${DEMO[@]}"
  coturn                       # TURN server for the relay tests and the NAT lab
  openssl                      # TLS certificates for TURN over TLS in the tests
  iproute2 iptables conntrack  # the NAT lab: network namespaces, NAT routers, loss
  libudev-dev libwayland-dev libxkbcommon-dev libx11-dev   # building Bevy's windowed examples
  xvfb xauth mesa-vulkan-drivers libvulkan1                # running them under a virtual display
  libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6         # (loaded by winit at run time)
  python3-pil                  # checking the arena screenshots
  pulseaudio pulseaudio-utils  # voice tests: a PulseAudio daemon with null sinks
  espeak-ng sox                # voice tests and benchmark: speech fixtures made at test time
  libclang-dev                 # webcam feature: nokhwa's V4L2 bindings are made by bindgen
  chromium                     # browser tests: a real browser peer in the lobby (headless)
  redis-server haproxy curl    # the matchmaker cluster: its shared store, the load balancer, probes
  procps                       # pgrep: scripts/test.sh stops its background builds if it ends early
)
# The browser build: rustup's stable toolchain has no wasm32 target and cannot fetch one
# here, so Debian's rustc-web (1.96) builds std for wasm32 from its rust-web-src
# (RUSTC_BOOTSTRAP=1 -Z build-std, see scripts/web.sh); its rust-lld needs lld-22.
WEB=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 rust-web-clippy)
case $purpose in
  demo) PACKAGES=("${DEMO[@]}") ;;
  web) PACKAGES=("${WEB[@]}") ;;
  cluster) PACKAGES=("${DEMO[@]}" redis-server haproxy coturn curl) ;;
  test) PACKAGES=("${TEST[@]}") ;;
  bench) PACKAGES=("${TEST[@]}" python3-venv) ;; # the PESQ scorer lives in a virtualenv
  *)
    echo "setup: unknown purpose '$purpose' (demo, test, bench, web or cluster)" >&2
    exit 2
    ;;
esac
PACKAGES+=("$@")

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
  step "setup: updating the package lists (apt-get update)" apt_get update
  step "setup: installing ${#missing[@]} system packages (${missing[*]})" \
    apt_get install -y --no-install-recommends "${missing[@]}"
else
  echo "setup: system packages for '$purpose' ... already installed"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install Rust 1.95 or newer (https://rustup.rs), then run this again." >&2
  exit 1
fi
