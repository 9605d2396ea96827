#!/usr/bin/env bash
# Renders manifests/install.yaml, the plain-YAML install bundle, from the Helm
# chart: `kubectl apply --server-side -f manifests/install.yaml` installs what
# `helm install zkfleet charts/zkfleet -n zkfleet-system` does. Called by
# `make manifests`; e2e/tests/chart.rs fails when the file is out of date.
#
#   charts/render-install.sh           write manifests/install.yaml
#   charts/render-install.sh --stdout  print the bundle instead
#
# HELM names the helm binary; by default the one e2e/scripts/build-bins.sh
# builds (the version pinned in e2e/scripts/versions.sh), so every machine
# renders the same bytes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/e2e/scripts/versions.sh"
helm=${HELM:-$ZKFLEET_CACHE/tools-helm-$HELM_VERSION-coredns-$COREDNS_VERSION/bin/helm}
[ -x "$helm" ] || {
  echo "render-install.sh: no helm at $helm: run e2e/scripts/build-bins.sh (make e2e does) or set HELM" >&2
  exit 1
}

render() {
  cat <<'HEADER'
# zkfleet install bundle, generated from charts/zkfleet by charts/render-install.sh
# (`make manifests`). Do not edit: change the chart and regenerate.
# Install: kubectl apply --server-side -f manifests/install.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: zkfleet-system
  labels:
    app.kubernetes.io/part-of: zkfleet
HEADER
  (cd "$repo" && "$helm" template zkfleet charts/zkfleet --namespace zkfleet-system --include-crds)
}

case "${1:-}" in
  --stdout) render ;;
  "")
    out=$repo/manifests/install.yaml
    render > "$out.tmp"
    mv "$out.tmp" "$out"
    echo "wrote ${out#"$repo"/}"
    ;;
  *) echo "usage: $0 [--stdout]" >&2; exit 2 ;;
esac
