#!/usr/bin/env bash
# Installs what Squadlink's demo and tests need on Debian/Ubuntu, and only what is missing.
# Called by scripts/quickstart.sh and scripts/test.sh; safe to run again.
set -euo pipefail

# System packages (Debian/Ubuntu names), with what needs them.
PACKAGES=(
  build-essential pkg-config   # C toolchain for -sys crates
  coturn                       # TURN server for the relay tests
)

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
