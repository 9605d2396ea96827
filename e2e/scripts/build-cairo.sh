#!/usr/bin/env bash
# Builds zkfleet's Cairo tools (the cairo/ crate, its own workspace: cairo-vm 3.2.0, Stwo
# 2.3.0 and stwo-cairo 1.3.0, pinned in cairo/Cargo.lock) into a cache outside the repo keyed
# by the crate's sources and lock file: $ZKFLEET_CACHE/cairo-<key>/bin/
#   zkfleet-cairo       stable Rust: `run` (a Cairo run for Stone) and `stwo-verify`
#   zkfleet-stwo-prove  $STWO_NIGHTLY (the only toolchain stwo-cairo-prover builds on)
# Both are static glibc executables (crt-static), so the prover image needs no libc; they
# target x86-64-v3 (AVX2), where Stwo's SIMD backend is fast. A cold build takes about
# 20 minutes on 2 cores; a warm run returns at once. Logs go to stderr; the last line on
# stdout is the directory holding bin/.
#   build-cairo.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/scripts/versions.sh"

crate=$repo/cairo
key=$(cd "$crate" && cat Cargo.toml Cargo.lock $(find src -type f | sort) | sha256sum | cut -c1-12)
prefix=$ZKFLEET_CACHE/cairo-$key
if [ -x "$prefix/bin/zkfleet-cairo" ] && [ -x "$prefix/bin/zkfleet-stwo-prove" ]; then
  echo "$prefix"
  exit 0
fi

rustup toolchain list | grep -q "^$STWO_NIGHTLY" ||
  rustup toolchain install "$STWO_NIGHTLY" --profile minimal >&2
target=x86_64-unknown-linux-gnu
export RUSTFLAGS="-C target-feature=+crt-static -C target-cpu=x86-64-v3"
start=$(date +%s)
echo "building zkfleet-cairo (stable) and zkfleet-stwo-prove ($STWO_NIGHTLY); about 20 min cold..." >&2
# --target keeps RUSTFLAGS off build scripts and proc macros, which cannot be static. Each
# toolchain keeps its own target dir, reused across versions of the crate.
# The verifier is linked with thin LTO (a smaller, faster binary for little build time); the
# prover is not, as LTO over stwo-cairo-prover would add many minutes and gigabytes to its
# build.
(cd "$crate" && CARGO_TARGET_DIR=$ZKFLEET_CACHE/cairo-build/stable \
  CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4 \
  cargo +stable build --locked --release --target "$target" --bin zkfleet-cairo >&2)
(cd "$crate" && CARGO_TARGET_DIR=$ZKFLEET_CACHE/stwo-build \
  cargo +"$STWO_NIGHTLY" build --locked --release --target "$target" --features prover --bin zkfleet-stwo-prove >&2)
rm -rf "$prefix.tmp" && mkdir -p "$prefix.tmp/bin"
install -m 0755 "$ZKFLEET_CACHE/cairo-build/stable/$target/release/zkfleet-cairo" "$prefix.tmp/bin/"
install -m 0755 "$ZKFLEET_CACHE/stwo-build/$target/release/zkfleet-stwo-prove" "$prefix.tmp/bin/"
for b in "$prefix.tmp"/bin/*; do
  if command -v file >/dev/null && ! file -b "$b" | grep -q 'statically linked\|static-pie linked'; then
    echo "build-cairo.sh: $b is not statically linked: $(file -b "$b")" >&2
    exit 1
  fi
done
rm -rf "$prefix" && mv "$prefix.tmp" "$prefix"
echo "built the Cairo tools in $(( $(date +%s) - start ))s (later runs reuse $prefix)" >&2
echo "$prefix"
