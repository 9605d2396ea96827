# zkfleet — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Builds are cached outside the checkout so a fresh clone (as CI makes)
# rebuilds only what changed.
export ZKFLEET_CACHE ?= $(HOME)/.cache/zkfleet
export CARGO_TARGET_DIR ?= $(ZKFLEET_CACHE)/cargo-target
export CARGO_TERM_COLOR ?= never
# No incremental compilation data: in the shared target dir it grew to 24 GB over a day of
# builds and filled the disk until the kubelet evicted the cluster's pods; the test and image
# builds gain little from it.
export CARGO_INCREMENTAL ?= 0

.PHONY: build test unit e2e cluster-up cluster-down demo crds manifests lint fixtures bench-prover bench-dispatch fuzz chaos

build:
	cargo build --workspace --all-targets

## Every test: unit tests of every crate, then the real-cluster tests.
test: lint unit e2e

## Unit and handler tests; no cluster needed.
unit:
	eval "$$(prover-pod/fixtures/make-fixtures.sh)" && \
	  export ZKFLEET_MIDEN_VM="$$(e2e/scripts/build-miden.sh | tail -1)" && \
	  export ZKFLEET_STONE="$$(e2e/scripts/build-stone.sh | tail -1)" && \
	  export ZKFLEET_CAIRO="$$(e2e/scripts/build-cairo.sh | tail -1)" && \
	  cargo test --workspace --exclude zkfleet-e2e && \
	  cargo test --manifest-path fuzz/Cargo.toml
	cargo test -p zkfleet-e2e --lib --bins

## Real-cluster tests: brings the local cluster up if needed (e2e/cluster).
e2e: cluster-up
	e2e/scripts/build-images.sh --provers
	cargo build -p kubectl-zkfleet
	eval "$$(e2e/cluster env)" && eval "$$(prover-pod/fixtures/make-fixtures.sh)" && \
	  export ZKFLEET_MIDEN_VM="$$(e2e/scripts/build-miden.sh | tail -1)" && \
	  export ZKFLEET_STONE="$$(e2e/scripts/build-stone.sh | tail -1)" && \
	  export ZKFLEET_CAIRO="$$(e2e/scripts/build-cairo.sh | tail -1)" && \
	  export ZKFLEET_PROMTOOL="$$(e2e/scripts/build-promtool.sh | tail -1)" && \
	  cargo test -p zkfleet-e2e --test '*' -- --test-threads 4

cluster-up:
	e2e/cluster up

cluster-down:
	e2e/cluster down

## The main job on a local cluster: see README.md.
demo:
	e2e/demo

## Regenerate the CRD YAML from the Rust types.
crds:
	cargo run -q -p zkfleet-crds --bin crdgen

## Circuits, keys and witnesses the prover tests use (cached by content hash).
fixtures:
	prover-pod/fixtures/make-fixtures.sh

## zkfleet-prover against snarkjs (and rapidsnark when on PATH); not a test.
bench-prover:
	prover-pod/benches/bench-prover.sh 12 14 16

## Dispatcher throughput and fleet overhead on the local cluster (prints numbers; not a test).
bench-dispatch: cluster-up
	e2e/scripts/build-images.sh
	eval "$$(e2e/cluster env)" && eval "$$(prover-pod/fixtures/make-fixtures.sh)" && \
	  cargo run -q -p zkfleet-e2e --bin zkfleet-bench-dispatch

## The full chaos run on the local cluster (2,000 held jobs through leader and prover kills,
## control plane restarts, a rotation and a corrupt pod); prints its table. `make test` runs a
## short version (e2e/tests/chaos.rs). See README.md, "Chaos".
chaos: cluster-up
	e2e/scripts/build-images.sh
	eval "$$(e2e/cluster env)" && eval "$$(prover-pod/fixtures/make-fixtures.sh)" && \
	  cargo run -q -p zkfleet-e2e --bin zkfleet-chaos

## Fuzzes the parsers of outside bytes, FUZZ_SECONDS per target, with nightly Rust; a crash
## fails it (see fuzz/README.md). `make unit` replays the seeds and saved crashes.
FUZZ_SECONDS ?= 600
fuzz:
	eval "$$(prover-pod/fixtures/make-fixtures.sh)" && \
	  FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

## Re-render manifests/install.yaml from the chart.
manifests:
	charts/render-install.sh

lint:
	cargo fmt --all --check
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	cargo fmt --manifest-path cairo/Cargo.toml --check
	cargo clippy --workspace --all-targets -- -D warnings
