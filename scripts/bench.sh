#!/usr/bin/env bash
# Run every benchmark of BENCHMARKS.md in one go (release builds), printing
# each figure's min / median / max. Pass RUNS=n to change the repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== 1. engine overhead per agent (W1, W2) against raw wasmtime"
cargo bench -q -p ensemble-tests --bench overhead
echo "== 1b. what the journal adds per agent"
cargo bench -q -p ensemble-tests --bench journal
echo "== 2. makespan / lower bound (W3, W4), fuel on and off"
cargo bench -q -p ensemble-tests --bench makespan
echo "== 3. planning 10k and 100k agents"
cargo bench -q -p ensemble --bench plan
echo "== 4. warm vs cold: agent output cache, compiled-component cache (process start)"
cargo bench -q -p ensemble-tests --bench cache
echo "== 5. host memory per concurrently running agent"
cargo bench -q -p ensemble-tests --bench memory
