#!/usr/bin/env bash
# Builds promtool (Prometheus's rule and config checker) from the Go module proxy, at the
# Prometheus module version pinned as $PROMETHEUS_VERSION in versions.sh (v0.316.0 is
# Prometheus 3.16.0), through the wrapper module e2e/go/promtool, into a cache outside the
# repo keyed by version: $ZKFLEET_CACHE/promtool-<ver>/bin/promtool. The monitoring tests run
# `promtool check rules` on the chart's alerting rules. A warm run finds the binary and returns
# at once. Logs go to stderr; the last line on stdout is the binary's path.
#   build-promtool.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/versions.sh"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

# remove_all_sd leaves out Prometheus's service discovery plugins (the AWS, Azure, GCE and
# Kubernetes clients among them): `check rules` needs none, and they are most of the build.
prefix=$ZKFLEET_CACHE/promtool-$PROMETHEUS_VERSION-nosd
bin=$prefix/bin/promtool
if [ ! -x "$bin" ]; then
  start=$(date +%s)
  echo "building promtool $PROMETHEUS_VERSION..." >&2
  # Built next to its final place and renamed into it, so an interrupted build never leaves
  # a half-written binary that a later run would take for a finished one.
  mkdir -p "$prefix/bin"
  (cd "$here/go/promtool" && go build -trimpath -tags remove_all_sd -ldflags "-s -w" -o "$bin.tmp" \
     github.com/prometheus/prometheus/cmd/promtool) >&2
  mv "$bin.tmp" "$bin"
  echo "built promtool in $(( $(date +%s) - start ))s (later runs reuse $prefix)" >&2
fi
echo "$bin"
