#!/usr/bin/env bash
# Installs cargo-fuzz (the `cargo fuzz` subcommand `make fuzz` runs) from crates.io at the
# version pinned below, into a cache outside the repo keyed by version:
# $ZKFLEET_CACHE/tools/cargo-fuzz-<ver>/bin/cargo-fuzz. A warm run finds the binary and
# returns at once. Logs go to stderr; the last line on stdout is the binary's path.
#   fuzz/install-cargo-fuzz.sh
set -euo pipefail
CARGO_FUZZ_VERSION=0.13.2
ZKFLEET_CACHE=${ZKFLEET_CACHE:-$HOME/.cache/zkfleet}

prefix=$ZKFLEET_CACHE/tools/cargo-fuzz-$CARGO_FUZZ_VERSION
bin=$prefix/bin/cargo-fuzz
if [ ! -x "$bin" ]; then
  start=$(date +%s)
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION..." >&2
  # Installed into a scratch root and renamed into place, so an interrupted install never
  # leaves a half-written binary that a later run would take for a finished one. Its own
  # target dir keeps the build out of the workspace's.
  rm -rf "$prefix.tmp"
  CARGO_TARGET_DIR="$prefix.tmp/target" \
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$prefix.tmp" >&2
  rm -rf "$prefix.tmp/target"
  rm -rf "$prefix"
  mv "$prefix.tmp" "$prefix"
  echo "installed cargo-fuzz in $(( $(date +%s) - start ))s (later runs reuse $prefix)" >&2
fi
echo "$bin"
