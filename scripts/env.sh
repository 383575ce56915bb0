# Sourced by the scripts: one shared cargo target directory (CI may keep it between runs).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/squadlink/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
