#!/usr/bin/env bash
# Kill `ensemble run` with SIGKILL at N moments of a run (default 50), resume
# each, and check the context equals an uninterrupted run's and nothing that
# had committed ran again. CI runs the same test at 10 moments.
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_POINTS="${1:-50}" cargo test -p ensemble-tests --test all -- crash --nocapture
