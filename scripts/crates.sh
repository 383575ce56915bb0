#!/usr/bin/env bash
# Checks that every crate builds and tests on its own, with its default features and with
# --no-default-features: a workspace build unifies features across crates, which can hide a
# crate that only compiles because a neighbour turned a feature on (a doctest once used
# Bevy's Sprite, which only the windowed examples enable). For each crate and feature set:
# all its targets are checked, its doctests run, and its unit tests run. (The integration
# tests run once, in the workspace run of scripts/test.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
source scripts/steps.sh

# crate, whether it has default features to turn off, and how its targets are compiled:
# `check`, or `build` where the unit tests' full build of the dependencies (Bevy, for
# bevy_squadlink) would cost more than also linking its few test binaries; a check would
# compile those dependencies a second time, in check mode.
crates=(
  "squadlink-protocol no check"
  "squadlink yes check"
  "squadlink-matchmaker no check"
  "bevy_squadlink yes build"
  "squadlink-testkit no check"
)
for entry in "${crates[@]}"; do
  read -r crate has_defaults mode <<<"$entry"
  variants=("")
  if [[ $has_defaults == yes ]]; then variants+=("--no-default-features"); fi
  for flags in "${variants[@]}"; do
    name="$crate${flags:+ $flags}"
    if [[ $mode == build ]]; then
      # shellcheck disable=SC2086
      step "crate alone: $name: build all targets" cargo test --locked -p "$crate" $flags --all-targets --no-run
    else
      # shellcheck disable=SC2086
      step "crate alone: $name: check all targets" cargo check --locked -p "$crate" $flags --all-targets
    fi
    # shellcheck disable=SC2086
    step "crate alone: $name: unit tests" cargo test --locked -p "$crate" $flags --lib
    if [[ $crate != squadlink-testkit ]]; then
      # shellcheck disable=SC2086
      step "crate alone: $name: doctests" cargo test --locked -p "$crate" $flags --doc
    fi
  done
done
echo "crates: each builds and tests on its own"
