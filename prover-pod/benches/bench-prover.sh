#!/usr/bin/env bash
# Benchmarks zkfleet-prover against snarkjs (and rapidsnark when one is on the
# PATH) on the same zkey and witness: a multiplication chain sized to fill a
# 2^k domain, with a fast insecure dev setup (examples/dev-setup.rs) whose
# zkey snarkjs reads as its own. Not a test: it prints a table.
#
# Usage: prover-pod/benches/bench-prover.sh [k ...]     (default: 12 14 16)
# Env:   RUNS (default 3) runs per measurement, the median is printed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
eval "$("$root/prover-pod/fixtures/make-fixtures.sh")"
runs=${RUNS:-3}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(12 14 16)
cache=${ZKFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zkfleet}/bench
mkdir -p "$cache"

echo "building zkfleet-prover (release)" >&2
(cd "$root" && cargo build --release -q -p zkfleet-prover --bin zkfleet-prover --example dev-setup)
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
prover="$target/release/zkfleet-prover"
devsetup="$target/release/examples/dev-setup"
snarkjs="$ZKFLEET_FIXTURES/bin/snarkjs"
circom2="$ZKFLEET_FIXTURES/bin/circom2"

# Prints "<seconds> <peak KiB>" for one run of a command.
measure() {
    /usr/bin/time -f "%e %M" -o /tmp/bench-prover.time "$@" >/dev/null 2>/tmp/bench-prover.stderr \
        || { echo "failed: $*" >&2; cat /tmp/bench-prover.stderr >&2; exit 1; }
    tail -1 /tmp/bench-prover.time
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "%-4s %-26s %10s %9s %11s %12s\n" "k" "prover" "median s" "vs snarkjs" "peak MiB" "zkey load s"
for k in "${sizes[@]}"; do
    dir="$cache/k$k"
    n=$(( (1 << k) - 8 ))
    if [ ! -f "$dir/.complete" ]; then
        echo "preparing 2^$k circuit in $dir" >&2
        rm -rf "$dir" && mkdir -p "$dir/src"
        sed "s/MulChain(1000)/MulChain($n)/" "$root/prover-pod/fixtures/circuits/mulchain.circom" > "$dir/src/chain.circom"
        (cd "$dir/src" && "$circom2" chain.circom --r1cs --wasm -o . >/dev/null)
        "$devsetup" "$dir/src/chain.r1cs" "$dir/circuit.zkey"
        echo '{"a": "3", "b": "5"}' > "$dir/input.json"
        "$snarkjs" wtns calculate "$dir/src/chain_js/chain.wasm" "$dir/input.json" "$dir/witness.wtns" >/dev/null
        "$snarkjs" zkey export verificationkey "$dir/circuit.zkey" "$dir/verification_key.json" >/dev/null
        touch "$dir/.complete"
    fi
    tmp=$(mktemp -d)
    declare -A med mem
    run_all() { # name, command...
        local name=$1; shift
        local times=() mems=()
        for _ in $(seq "$runs"); do
            read -r t m < <(measure "$@")
            times+=("$t"); mems+=("$m")
        done
        med[$name]=$(printf "%s\n" "${times[@]}" | median)
        mem[$name]=$(printf "%s\n" "${mems[@]}" | sort -g | tail -1)
    }
    run_all snarkjs "$snarkjs" groth16 prove "$dir/circuit.zkey" "$dir/witness.wtns" "$tmp/p.json" "$tmp/s.json"
    if command -v rapidsnark >/dev/null; then
        run_all rapidsnark rapidsnark "$dir/circuit.zkey" "$dir/witness.wtns" "$tmp/p.json" "$tmp/s.json"
    fi
    run_all zkfleet-parse "$prover" prove --zkey "$dir/circuit.zkey" --wtns "$dir/witness.wtns" --proof "$tmp/p.json" --public "$tmp/s.json"
    parse_load=$(sed -n 's/.*load \([0-9.]*\) ms.*/\1/p' /tmp/bench-prover.stderr)
    prove_only=$(sed -n 's/.*prove \([0-9.]*\) ms.*/\1/p' /tmp/bench-prover.stderr)
    "$prover" prove --zkey "$dir/circuit.zkey" --wtns "$dir/witness.wtns" --cache-dir "$dir/pk-cache" --proof "$tmp/p.json" --public "$tmp/s.json" 2>/dev/null
    run_all zkfleet-cached "$prover" prove --zkey "$dir/circuit.zkey" --wtns "$dir/witness.wtns" --cache-dir "$dir/pk-cache" --proof "$tmp/p.json" --public "$tmp/s.json"
    cached_load=$(sed -n 's/.*load \([0-9.]*\) ms.*/\1/p' /tmp/bench-prover.stderr)
    "$snarkjs" groth16 verify "$dir/verification_key.json" "$tmp/s.json" "$tmp/p.json" | grep -q "OK" \
        || { echo "snarkjs did not accept the zkfleet proof at 2^$k" >&2; exit 1; }
    for name in snarkjs rapidsnark zkfleet-parse zkfleet-cached; do
        [ -n "${med[$name]:-}" ] || continue
        ratio=$(awk -v a="${med[snarkjs]}" -v b="${med[$name]}" 'BEGIN {printf "%.1fx", a / b}')
        load="-"
        [ "$name" = zkfleet-parse ] && load=$(awk -v v="$parse_load" 'BEGIN {printf "%.3f", v / 1000}')
        [ "$name" = zkfleet-cached ] && load=$(awk -v v="$cached_load" 'BEGIN {printf "%.3f", v / 1000}')
        printf "%-4s %-26s %10s %9s %11s %12s\n" "$k" "$name" "${med[$name]}" "$ratio" "$(( ${mem[$name]} / 1024 ))" "$load"
    done
    printf "%-4s %-26s %10s\n" "$k" "zkfleet prove only (1 run)" "$(awk -v v="$prove_only" 'BEGIN {printf "%.3f", v / 1000}')"
    unset med mem
    rm -rf "$tmp"
done
echo "file size (zkey / read twice): $(for k in "${sizes[@]}"; do printf '2^%s %s MiB  ' "$k" $(( $(stat -c %s "$cache/k$k/circuit.zkey") >> 20 )); done)"
