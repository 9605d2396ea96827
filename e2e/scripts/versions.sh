# Versions of every upstream component the e2e cluster is built from.
# The build cache is keyed by these, so bumping one rebuilds only that part.
K8S_VERSION=v1.34.4
K8S_STAGING_VERSION=v0.34.4
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
COREDNS_VERSION=v1.14.7
MIDEN_VM_VERSION=0.23.5
# Go module version of Prometheus (v0.316.0 is Prometheus 3.16.0), for promtool.
PROMETHEUS_VERSION=v0.316.0
ZKFLEET_CACHE=${ZKFLEET_CACHE:-$HOME/.cache/zkfleet}
# StarkWare's Stone prover (cpu_air_prover / cpu_air_verifier), built from the
# source tarball in ../shared/third_party at this commit; see build-stone.sh.
STONE_VERSION=00b274b
STONE_TARBALL_SHA256=9c32c86795dbf33799843ecebd5807b7257a3bd119e6a5f0e31352ec7f10dff5
# The Stwo prover crate builds only on this nightly; the rest of cairo/ builds on stable.
STWO_NIGHTLY=nightly-2026-01-15
