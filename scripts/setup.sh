#!/usr/bin/env bash
# Installs what Squadlink's demo and tests need on Debian/Ubuntu, and only what is missing.
# Called by scripts/quickstart.sh and scripts/test.sh; safe to run again. Extra package
# names given as arguments are installed too (scripts/camera_vm.sh asks for its VM's).
set -euo pipefail

# System packages (Debian/Ubuntu names), with what needs them.
PACKAGES=(
  build-essential pkg-config   # C toolchain for -sys crates
  coturn                       # TURN server for the relay tests and the NAT lab
  openssl                      # TLS certificates for TURN over TLS in the tests
  iproute2 iptables conntrack  # the NAT lab: network namespaces, NAT routers, loss
  libudev-dev libwayland-dev libxkbcommon-dev libx11-dev   # building Bevy's windowed examples
  xvfb xauth mesa-vulkan-drivers libvulkan1                # running them under a virtual display
  libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6         # (loaded by winit at run time)
  python3-pil                  # checking the arena screenshots
  cmake libasound2-dev          # voice: libopus from source (opusic-sys), ALSA headers (cpal)
  pulseaudio pulseaudio-utils  # voice tests: a PulseAudio daemon with null sinks
  espeak-ng sox                # voice tests and benchmark: speech fixtures made at test time
  libvpx-dev                   # video: VP8 codec (env-libvpx-sys, bindings for libvpx 1.12)
  libclang-dev                 # webcam feature: nokhwa's V4L2 bindings are made by bindgen
)

PACKAGES+=("$@")
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install Rust 1.95 or newer (https://rustup.rs), then run this again." >&2
  exit 1
fi
