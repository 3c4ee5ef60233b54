#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need
# (a Python venv with DuckDB, the independent Parquet reader), then runs every
# Rust test. Processes it starts are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [[ ! -x $venv/bin/python ]] || ! $venv/bin/python -c 'import duckdb' 2>/dev/null; then
    echo "== setting up $venv (duckdb)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
export TRAILSHIP_TEST_PYTHON="$PWD/$venv/bin/python"
# Tests that need external tools fail, rather than skip, when they are missing.
export TRAILSHIP_REQUIRE_EXTERNAL=1

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --all-targets "$@" 2>&1 | tee "$log"
# One closing line for the whole suite: the sum of every test binary's result.
awk '/^test result:/ { p += $4; f += $6 } END { printf "trailship: %d passed, %d failed\n", p, f }' "$log"
