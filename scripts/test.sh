#!/usr/bin/env bash
# Runs every test of hoard: Rust unit tests and black-box tests against the real
# binary, then the Node.js tests that drive it with the real @actions/cache and
# Azure Blob SDK packages (installed here from the lockfile under tests/node).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== npm packages of the real clients"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error

echo "== build"
cargo build --locked -p hoard
export HOARD_BIN="$CARGO_TARGET_DIR/debug/hoard"

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi

echo "== Node.js tests with the real clients"
node --test --test-concurrency=1 tests/node/
