#!/usr/bin/env bash
# Builds the e2e cluster's pause (pod sandbox) binary from e2e/go/pause into
# $ZKFLEET_CACHE/pause-<hash>/pause, where the hash covers the Go sources and
# the Go version, and prints that path. With --import, also imports it into
# containerd (namespace k8s.io) as zkfleet.local/pause:3.10, running as
# 65535:65535 like the upstream pause image. Cached runs take well under a
# second; the image import is skipped when containerd already has the digest.
#
# usage: build-pause.sh [--import] [--address CONTAINERD_SOCKET]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/versions.sh"

PAUSE_IMAGE=zkfleet.local/pause:3.10
import=() address=()
while [ $# -gt 0 ]; do
  case $1 in
    --import) import=(--import); shift ;;
    --address) address=(--address "${2:?}"); shift 2 ;;
    *) echo "usage: build-pause.sh [--import] [--address CONTAINERD_SOCKET]" >&2; exit 2 ;;
  esac
done

src=$here/go/pause
export GOTOOLCHAIN=local CGO_ENABLED=0
hash=$( (cd "$src" && cat go.mod ./*.go && go version) | sha256sum | cut -c1-16)
dir=$ZKFLEET_CACHE/pause-$hash
if [ ! -x "$dir/pause" ]; then
  echo "building pause ($src)..." >&2
  mkdir -p "$dir"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$dir/pause.tmp" .)
  mv "$dir/pause.tmp" "$dir/pause"
fi

if [ ${#import[@]} -gt 0 ]; then
  "$here/scripts/oci-image.sh" --binary "$dir/pause" --image "$PAUSE_IMAGE" --user 65535:65535 \
    --output "$dir/pause-image.tar" "${import[@]}" "${address[@]}" >&2
fi
echo "$dir/pause"
