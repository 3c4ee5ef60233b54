# Sourced by the bench scripts that need the test servers: free ports, moto
# on loopback, the throwaway AWS credentials, and one exit trap that stops
# every server started here.

bench_pids=()
trap 'kill "${bench_pids[@]}" 2>/dev/null || true' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_moto VENV: moto from VENV on a free port, ready when this returns;
# sets s3_port.
start_moto() {
    s3_port=$(free_port)
    "$1/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >/tmp/trailship-bench-moto.log 2>&1 &
    bench_pids+=($!)
    for _ in $(seq 50); do curl -s "http://127.0.0.1:$s3_port" >/dev/null && break; sleep 0.2; done
}

export AWS_ACCESS_KEY_ID=trailship-bench AWS_SECRET_ACCESS_KEY=trailship-bench AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
