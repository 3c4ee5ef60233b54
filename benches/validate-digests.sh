#!/usr/bin/env bash
# validate-digests against `aws cloudtrail validate-logs` over a real S3 API
# server (moto), same trail, same run. Installs moto and aws-cli into
# .venv-bench/, starts moto on a free port, stops it at exit.
#
#   benches/validate-digests.sh [HOURS [LOGS_PER_HOUR [RECORDS_PER_LOG]]]
set -euo pipefail
cd "$(dirname "$0")/.."
hours=${1:-48}
logs=${2:-12}
records=${3:-500}
venv=.venv-bench
if [ ! -x "$venv/bin/aws" ] || [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "moto[server]==5.2.5" "awscli==1.46.3"
fi
source benches/servers.sh
start_moto "$venv"
cargo build --release --quiet
cargo build --release --quiet --example digest-bench
./target/release/examples/digest-bench "http://127.0.0.1:$s3_port" ./target/release/trailship \
    "$venv/bin/aws" "$hours" "$logs" "$records"
