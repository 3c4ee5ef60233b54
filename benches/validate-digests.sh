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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/tmp/trailship-bench-moto.log 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$port" >/dev/null && break; sleep 0.2; done
cargo build --release --quiet
cargo build --release --quiet --example digest-bench
export AWS_ACCESS_KEY_ID=trailship-bench AWS_SECRET_ACCESS_KEY=trailship-bench AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
./target/release/examples/digest-bench "http://127.0.0.1:$port" ./target/release/trailship \
    "$venv/bin/aws" "$hours" "$logs" "$records"
