#!/usr/bin/env bash
# Builds zkfleet's static binaries for musl (the operator, the prover and the
# e2e test server) and imports them into the cluster's containerd as images
# tagged with the workspace version, so pods with imagePullPolicy IfNotPresent
# run them (the chart's defaults point at these references). With the default
# set it also builds the exec prover images of real third-party provers:
# zkfleet.local/zkfleet-prover-miden (zkfleet-prover plus miden-vm, from
# build-miden.sh), what a Miden pool's spec.image names, and
# zkfleet.local/zkfleet-prover-stone-standin (zkfleet-prover plus a stand-in
# for Stone's binaries, which cannot be built here).
#   build-images.sh [PACKAGE:BINARY:IMAGE]...   (default: every image below)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/scripts/versions.sh"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)

images=("$@")
default_set=0
if [ ${#images[@]} -eq 0 ]; then
  default_set=1
  images=(
    "zkfleet-e2e-testserver:zkfleet-e2e-testserver:zkfleet.local/e2e-testserver:$version"
    "zkfleet-operator:zkfleet-operator:zkfleet.local/zkfleet-operator:$version"
    "zkfleet-prover:zkfleet-prover:zkfleet.local/zkfleet-prover:$version"
  )
fi

# ring and other C dependencies need a musl C compiler.
command -v musl-gcc >/dev/null || {
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
}
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl ||
  rustup target add x86_64-unknown-linux-musl >&2

for spec in "${images[@]}"; do
  IFS=: read -r package binary image tag <<<"$spec"
  (cd "$repo" && cargo build -q --release --target x86_64-unknown-linux-musl -p "$package" --bin "$binary")
  bin=$target_dir/x86_64-unknown-linux-musl/release/$binary
  # The images hold nothing but the binary: it must not need a dynamic loader or libc.
  if command -v file >/dev/null && ! file -b "$bin" | grep -q 'statically linked\|static-pie linked'; then
    echo "build-images.sh: $bin is not statically linked: $(file -b "$bin")" >&2
    exit 1
  fi
  "$here/scripts/oci-image.sh" --binary "$bin" \
    --image "$image:$tag" --import
done

if [ "$default_set" = 1 ]; then
  miden=$("$here/scripts/build-miden.sh" | tail -1)
  "$here/scripts/oci-image.sh" \
    --binary "$target_dir/x86_64-unknown-linux-musl/release/zkfleet-prover" \
    --extra-binary "$miden" \
    --image "zkfleet.local/zkfleet-prover-miden:$version" --import
  # Stone cannot be built here: its pool's image carries a stand-in that checks the flags,
  # files and FRI parameters the pod passes (e2e/stone-standin).
  (cd "$repo" && cargo build -q --release --target x86_64-unknown-linux-musl -p zkfleet-e2e-stone-standin)
  "$here/scripts/oci-image.sh" \
    --binary "$target_dir/x86_64-unknown-linux-musl/release/zkfleet-prover" \
    --extra-binary "$target_dir/x86_64-unknown-linux-musl/release/stone-standin" \
    --image "zkfleet.local/zkfleet-prover-stone-standin:$version" --import
fi
