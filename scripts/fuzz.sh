#!/usr/bin/env bash
# Fuzz the targets of fuzz/ (cargo-fuzz, stable Rust, no sanitizer).
#
#   scripts/fuzz.sh                 each target 10 minutes; new inputs go into fuzz/corpus/
#   FUZZ_SECONDS=60 scripts/fuzz.sh workflow
#   scripts/fuzz.sh --ci            CI: replay each corpus, then fuzz 20 s into a scratch dir
#
# A crash saves its input under fuzz/artifacts/TARGET/; replay it with
# `cargo fuzz run --sanitizer none TARGET FILE` from fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

ci=0
if [ "${1:-}" = "--ci" ]; then
    ci=1
    shift
fi
seconds=${FUZZ_SECONDS:-$([ "$ci" = 1 ] && echo 20 || echo 600)}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(workflow merge value)

if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export CARGO_TARGET_DIR=${ENSEMBLE_FUZZ_TARGET:-$PWD/target}
# `--sanitizer none` passes no -Z flags, so stable Rust builds it.
fuzz() { cargo fuzz run --sanitizer none "$@"; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# libFuzzer prints a line per new input: keep it for a failure, show the summary.
quietly() {
    if ! "$@" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzzing failed: the input is under fuzz/artifacts/ (for a replay: in the corpus)"
        exit 1
    fi
    grep -E '^(Done|INFO: seed corpus)' "$log" | sed 's/^/   /' || true
}

for target in "${targets[@]}"; do
    echo "== $target: replaying fuzz/corpus/$target"
    quietly fuzz "$target" "corpus/$target" -- -runs=0
    echo "== $target: fuzzing for ${seconds} s"
    if [ "$ci" = 1 ]; then
        # New inputs go to a scratch directory: the committed corpus stays as it is.
        scratch=$(mktemp -d)
        quietly fuzz "$target" "$scratch" "corpus/$target" -- -max_total_time="$seconds" -timeout=10
        rm -rf "$scratch"
    else
        quietly fuzz "$target" "corpus/$target" -- -max_total_time="$seconds" -timeout=10
    fi
done
echo "fuzzing: no crashes"
