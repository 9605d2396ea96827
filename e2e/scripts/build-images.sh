#!/usr/bin/env bash
# Builds zkfleet's static binaries for musl (the operator, the prover and the
# e2e test server) and imports them into the cluster's containerd as images
# tagged with the workspace version, so pods with imagePullPolicy IfNotPresent
# run them (the chart's defaults point at these references). With --provers it
# also builds the exec prover images of real third-party provers, which the
# e2e tests use and the demo does not (Stone alone takes 40 minutes cold):
# zkfleet.local/zkfleet-prover-miden (zkfleet-prover plus miden-vm, from
# build-miden.sh), what a Miden pool's spec.image names;
# zkfleet.local/zkfleet-prover-stone (plus Stone's cpu_air_prover and
# cpu_air_verifier, built from source by build-stone.sh); and
# zkfleet.local/zkfleet-prover-stwo (plus zkfleet-stwo-prove and zkfleet-cairo,
# from build-cairo.sh).
#   build-images.sh [--provers] [PACKAGE:BINARY:IMAGE]...
#     (default: the operator, prover and test server images)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/scripts/versions.sh"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)

provers=0
if [ "${1:-}" = --provers ]; then
  provers=1
  shift
fi
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

if [ "$default_set" = 1 ] && [ "$provers" = 1 ]; then
  miden=$("$here/scripts/build-miden.sh" | tail -1)
  "$here/scripts/oci-image.sh" \
    --binary "$target_dir/x86_64-unknown-linux-musl/release/zkfleet-prover" \
    --extra-binary "$miden" \
    --image "zkfleet.local/zkfleet-prover-miden:$version" --import
  # Stone, built from source (build-stone.sh): its binaries load glog, gflags, libdw and the
  # C++ runtime, so the image carries those libraries and the loader beside them.
  stone=$("$here/scripts/build-stone.sh" | tail -1)
  "$here/scripts/oci-image.sh" \
    --binary "$target_dir/x86_64-unknown-linux-musl/release/zkfleet-prover" \
    --extra-binary "$stone/bin/cpu_air_prover" \
    --extra-binary "$stone/bin/cpu_air_verifier" \
    --lib-dir "$stone/lib" \
    --image "zkfleet.local/zkfleet-prover-stone:$version" --import
  # Stwo, through zkfleet's Cairo tools (build-cairo.sh): the nightly-built prover and the
  # stable-built verifier, both static.
  cairo=$("$here/scripts/build-cairo.sh" | tail -1)
  "$here/scripts/oci-image.sh" \
    --binary "$target_dir/x86_64-unknown-linux-musl/release/zkfleet-prover" \
    --extra-binary "$cairo/bin/zkfleet-stwo-prove" \
    --extra-binary "$cairo/bin/zkfleet-cairo" \
    --image "zkfleet.local/zkfleet-prover-stwo:$version" --import
fi
