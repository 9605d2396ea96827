#!/usr/bin/env bash
# Builds the Miden VM command-line prover (crate miden-vm, pinned at
# $MIDEN_VM_VERSION in versions.sh) as a static musl binary, into a cache
# outside the repo keyed by version: $ZKFLEET_CACHE/miden-vm-<ver>/bin/miden-vm.
# The prover image carries this binary; tests run `miden-vm prove` / `verify`.
# A warm run finds the binary and returns at once. Logs go to stderr; the last
# line on stdout is the binary's path.
#   build-miden.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/versions.sh"

prefix=$ZKFLEET_CACHE/miden-vm-$MIDEN_VM_VERSION
bin=$prefix/bin/miden-vm
target=x86_64-unknown-linux-musl

if [ ! -x "$bin" ]; then
  # Some C dependencies need a musl C compiler.
  command -v musl-gcc >/dev/null || {
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
  }
  rustup target list --installed 2>/dev/null | grep -q "$target" ||
    rustup target add "$target" >&2

  start=$(date +%s)
  echo "building miden-vm $MIDEN_VM_VERSION (static, $target)..." >&2
  # --locked uses the Cargo.lock published with the crate, so the dependency
  # graph is the one upstream tested; `concurrent` spreads proving over all
  # cores. It installs into a scratch root renamed into place at the end, so
  # an interrupted run never leaves a half-made cache entry behind; the
  # target dir is kept, so a rerun only redoes what was not finished.
  rm -rf "$prefix.tmp"
  cargo install miden-vm --version "$MIDEN_VM_VERSION" --locked \
    --features executable,concurrent --target "$target" \
    --root "$prefix.tmp" --target-dir "$ZKFLEET_CACHE/miden-vm-build" >&2
  rm -f "$prefix.tmp/.crates.toml" "$prefix.tmp/.crates2.json"
  rm -rf "$prefix" && mv "$prefix.tmp" "$prefix"
  echo "built miden-vm $MIDEN_VM_VERSION in $(( $(date +%s) - start ))s (cold build; later runs reuse $prefix)" >&2
fi

# The prover image holds no libc: the binary must not need a dynamic loader.
if command -v file >/dev/null && ! file -b "$bin" | grep -q 'statically linked\|static-pie linked'; then
  echo "build-miden.sh: $bin is not statically linked: $(file -b "$bin")" >&2
  exit 1
fi
echo "$bin"
