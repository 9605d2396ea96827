#!/usr/bin/env bash
# Builds the upstream binaries the e2e cluster runs (Kubernetes, etcd, helm,
# CoreDNS) from the Go module proxy, into a cache outside the repo keyed by
# version: $ZKFLEET_CACHE/k8s-<ver>/bin, etcd-<ver>/bin, tools-<helm>-<coredns>/bin.
# A warm run finds every stamp and returns in well under a second.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/versions.sh"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# Builds are spread over all cores by go itself; parallel go invocations on
# a 2-core machine only fight over memory.

start=$(date +%s)
built=()

k8s_dir=$ZKFLEET_CACHE/k8s-$K8S_VERSION
if [ ! -f "$k8s_dir/.complete" ]; then
  mkdir -p "$k8s_dir/bin"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "building Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl)..."
  (cd "$here/go/k8s" && go build -trimpath -ldflags "$ldflags" -o "$k8s_dir/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
  touch "$k8s_dir/.complete"; built+=(kubernetes)
fi

etcd_dir=$ZKFLEET_CACHE/etcd-$ETCD_VERSION
if [ ! -f "$etcd_dir/.complete" ]; then
  mkdir -p "$etcd_dir/bin"
  echo "building etcd $ETCD_VERSION..."
  (cd "$here/go/etcd" && go build -trimpath -ldflags "-s -w" -o "$etcd_dir/bin/etcd" go.etcd.io/etcd/server/v3)
  touch "$etcd_dir/.complete"; built+=(etcd)
fi

tools_dir=$ZKFLEET_CACHE/tools-helm-$HELM_VERSION-coredns-$COREDNS_VERSION
if [ ! -f "$tools_dir/.complete" ]; then
  mkdir -p "$tools_dir/bin"
  echo "building helm $HELM_VERSION and CoreDNS $COREDNS_VERSION..."
  (cd "$here/go/tools" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
     -o "$tools_dir/bin/helm" helm.sh/helm/v3/cmd/helm \
   && go build -trimpath -ldflags "-s -w" -o "$tools_dir/bin/coredns" github.com/coredns/coredns)
  touch "$tools_dir/.complete"; built+=(tools)
fi

elapsed=$(( $(date +%s) - start ))
if [ ${#built[@]} -gt 0 ]; then
  echo "built ${built[*]} in ${elapsed}s (cold build; later runs reuse $ZKFLEET_CACHE)"
else
  echo "upstream binaries up to date in $ZKFLEET_CACHE (${elapsed}s)"
fi
