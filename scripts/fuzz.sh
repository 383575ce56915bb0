#!/usr/bin/env bash
# Runs the coverage-guided fuzzers (cargo-fuzz, libFuzzer) over every decoder that bytes from
# a network, a peer or a file reach. Each target starts from seeds made by the real encoders
# and from every input that once broke it (fuzz/regressions/TARGET/), runs for the given
# time, and reports its executions and coverage; docs/fuzzing.md lists the targets.
#   scripts/fuzz.sh                 every target for 10 s (CI runs this)
#   scripts/fuzz.sh 600             every target for 10 minutes
#   scripts/fuzz.sh 300 stun typed  those targets only
# A crash fails the run and names the input libFuzzer saved: add it to
# fuzz/regressions/TARGET/ once fixed (the unit tests replay that folder).
# Only the stable toolchain is here: RUSTC_BOOTSTRAP=1 lets it take libFuzzer's flags, for
# this build only. Results: $CARGO_TARGET_DIR/fuzz/summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
source scripts/env.sh
source scripts/steps.sh

seconds=${1:-10}
if (($#)); then shift; fi
all=(protocol_client protocol_server token reliable_frames sequenced control signaling_text
  stun typed vp8_rtp vp8_decode y4m opus_decode jitter wav)
targets=("${@:-${all[@]}}")

if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
  step "fuzz: installing cargo-fuzz 0.13.2 (crates.io)" cargo install --locked cargo-fuzz --version 0.13.2
fi
work=$CARGO_TARGET_DIR/fuzz
corpus=$work/corpus
mkdir -p "$work" "$corpus"
step "fuzz: seeds from the real encoders" env SQUADLINK_FUZZ_SEEDS="$corpus" \
  cargo test -p squadlink --lib --locked fuzzing::tests::write_seeds -- --ignored --exact
export RUSTC_BOOTSTRAP=1
fuzz_target_dir=$work/target
step "fuzz: building ${#targets[@]} targets (instrumented, release)" \
  cargo fuzz build --fuzz-dir fuzz --sanitizer none --release --target-dir "$fuzz_target_dir"

# One fuzzer per core at a time (each is single-threaded); results are read in order after.
run_one() {
  local t=$1 status=0
  mkdir -p "$corpus/$t" "$work/artifacts/$t"
  cp -n fuzz/regressions/"$t"/* "$corpus/$t/" 2>/dev/null || true
  cargo fuzz run --fuzz-dir fuzz --sanitizer none --release --target-dir "$fuzz_target_dir" "$t" "$corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
    -max_len=65536 -timeout=10 -rss_limit_mb=2048 >"$work/$t.log" 2>&1 || status=$?
  echo "$status" >"$work/$t.status"
}
cores=$(nproc)
for t in "${targets[@]}"; do
  rm -f "$work/$t.status"
  while (($(jobs -rp | wc -l) >= cores)); do wait -n || true; done
  run_one "$t" &
done
wait

summary="["
failed=0
for t in "${targets[@]}"; do
  log=$work/$t.log
  status=$(cat "$work/$t.status" 2>/dev/null || echo 1)
  runs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -n1 | grep -oE '[0-9]+$' || true)
  cov=$(grep -aoE 'cov: [0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+' || true)
  ft=$(grep -aoE 'ft: [0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+' || true)
  files=$(find "$corpus/$t" -type f | wc -l)
  crash=$(grep -aoE "Test unit written to [^ ]+" "$log" | head -n1 | sed 's/Test unit written to //' || true)
  result=ok
  if ((status != 0)); then
    result="CRASH (${crash:-see $log})"
    failed=1
  fi
  printf 'fuzz %-16s %10s runs in %s s, coverage %5s edges, %5s features, corpus %4s: %s\n' \
    "$t" "${runs:-?}" "$seconds" "${cov:-?}" "${ft:-?}" "$files" "$result"
  summary+=$(printf '{"target":"%s","seconds":%s,"runs":%s,"coverage":%s,"features":%s,"corpus":%s,"crash":%s},' \
    "$t" "$seconds" "${runs:-0}" "${cov:-0}" "${ft:-0}" "$files" "$([[ -n $crash ]] && echo "\"$crash\"" || echo null)")
  if ((status != 0)); then
    echo "--- the last 30 lines of $log:" >&2
    grep -a -A12 'panicked' "$log" | head -n 20 >&2 || tail -n 30 "$log" >&2
  fi
done
echo "${summary%,}]" >"$work/summary.json"
if ((failed)); then
  echo "fuzz: a target crashed; its input is named above. Fix it, then add the input to fuzz/regressions/TARGET/." >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash (summary: $work/summary.json)"
