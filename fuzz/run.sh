#!/usr/bin/env bash
# Fuzzes each named target (all of them when none is named) for $FUZZ_SECONDS seconds with
# nightly Rust, starting from fuzz/corpus/<target> and fuzz/regressions/<target>; stops at the
# first target that crashes, leaving the input under fuzz/artifacts/<target>/. What the fuzzer
# learns is kept outside the repo, in $ZKFLEET_CACHE/fuzz-corpus/<target>, and the build in
# $ZKFLEET_CACHE/fuzz-target. circuit_inputs needs ZKFLEET_FIXTURES (make fuzz sets it).
#   FUZZ_SECONDS=600 fuzz/run.sh [TARGET...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
ZKFLEET_CACHE=${ZKFLEET_CACHE:-$HOME/.cache/zkfleet}
seconds=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(zkey wtns circuit_inputs dispatcher_bodies)

# cargo fuzz needs a nightly compiler (for its coverage instrumentation and sanitizer).
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal >&2
cargo_fuzz=$(fuzz/install-cargo-fuzz.sh | tail -1)
export PATH="$(dirname "$cargo_fuzz"):$PATH"

for target in "${targets[@]}"; do
  work=$ZKFLEET_CACHE/fuzz-corpus/$target
  mkdir -p "$work"
  # The first directory is where new inputs go; the checked-in ones are only read.
  dirs=("$work")
  for dir in "fuzz/corpus/$target" "fuzz/regressions/$target"; do
    [ ! -d "$dir" ] || dirs+=("$dir")
  done
  echo "fuzzing $target for ${seconds}s" >&2
  # Any input that panics, takes over 60 s or needs over 2 GiB (one allocation or in all)
  # fails the run.
  cargo +nightly fuzz run --features libfuzzer --target-dir "$ZKFLEET_CACHE/fuzz-target" \
    "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1
done
