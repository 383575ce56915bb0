# Sourced by the scripts: set-up prints one line per step; the details go to a log that is
# shown (its last lines) only when the step fails.
#   step "what is being done" command args...
SQUADLINK_LOG="${SQUADLINK_LOG:-$HOME/.cache/squadlink/setup.log}"
mkdir -p "$(dirname "$SQUADLINK_LOG")"

step() {
  local what=$1
  shift
  local start=$SECONDS
  printf '%s ... ' "$what"
  printf '\n=== %s: %s\n$ %s\n' "$(date -Is)" "$what" "$*" >>"$SQUADLINK_LOG"
  if "$@" >>"$SQUADLINK_LOG" 2>&1; then
    echo "ok ($((SECONDS - start)) s)"
  else
    local status=$?
    echo "FAILED (exit $status)"
    echo "--- the last 40 lines of $SQUADLINK_LOG:" >&2
    tail -n 40 "$SQUADLINK_LOG" >&2
    echo "--- (the whole log: $SQUADLINK_LOG)" >&2
    return "$status"
  fi
}
