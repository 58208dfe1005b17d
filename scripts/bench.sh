#!/usr/bin/env bash
# The benchmark (not part of the tests): builds release, then measures throughput,
# peak memory and lookups against same-run references. See docs/benchmarks.md.
# Extra arguments go to hoard-bench, e.g. --sizes-gib 1 --lookup-secs 5.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
cargo build --locked --release -p hoard -p hoard-bench
export HOARD_BIN="$CARGO_TARGET_DIR/release/hoard"
work="${HOARD_BENCH_DIR:-$PWD/target/bench-work}"
mkdir -p "$work"
"$CARGO_TARGET_DIR/release/hoard-bench" --work-dir "$work" --node-dir tests/node "$@"
