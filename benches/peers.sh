#!/usr/bin/env bash
# trailship against its peers on one seeded corpus, in one run, interleaved
# (issue 7). Prints a Markdown table: events/s and MB/s of input JSON pinned
# to one core and on every core, peak RSS, output bytes, and the ratio to
# trailship (of the medians, and the median of each round's own ratio); then
# trailship's stages one at a time and its other families.
#
#   benches/peers.sh [RECORDS=200000] [ROUNDS=3]
#
# Contenders (all read the same gzip CloudTrail log files, all write zstd
# Parquet at level 1):
#   trailship  normalize: gzip in, redacted OCSF Parquet out, fsync'd commits
#              (the binary that ships: scripts/pgo-build.sh)
#   trailship-nopgo  the same code without profile-guided optimisation (one core)
#   duckdb     the Python package: read_json, OCSF-like projection, COPY TO
#   vrl        the Vector path: VRL remap (cloudtrail_to_ocsf.vrl), arrow-json, Parquet,
#              on jemalloc, Vector's allocator on Linux (peers-jemalloc)
#   vrl-sysalloc  the same on the system allocator (one core; the row before session 33)
#   naive      serde_json::Value per record, fields by key into Arrow builders
#
# Environment:
#   THREADS="1 2 4 8 16"  core counts for trailship's scaling curve (default
#                         "1 NPROC"); the peers run at 1 and NPROC cores
#   BIN=DIR               prebuilt trailship, gen-corpus, stages, peers and
#                         peers-jemalloc
#                         (stripped release builds; trailship-nopgo if
#                         there); skips cargo, for a machine with no toolchain
#   PYTHON=PATH           a Python that imports duckdb; skips the venv
# Each run is pinned to the first N processors (benches/timed.py).
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}
rounds=${2:-3}
cores=$(nproc)
threads_list=${THREADS:-"1 $cores"}
python=${PYTHON:-}
if [ -z "$python" ]; then
    python=.venv-bench/bin/python
    if ! "$python" -c 'import duckdb' 2>/dev/null; then
        python3 -m venv .venv-bench
        .venv-bench/bin/pip install -q "duckdb==1.4.2"
    fi
fi
if [ -n "${BIN:-}" ]; then
    trailship=$BIN/trailship gen_corpus=$BIN/gen-corpus stages=$BIN/stages peers=$BIN/peers
    peers_je=$BIN/peers-jemalloc
    nopgo=$BIN/trailship-nopgo
else
    # The profile that ships (deploy/Dockerfile), for every contender;
    # trailship's binary is also profile-guided, as it ships.
    scripts/pgo-build.sh >/dev/null
    cargo build --profile release-lto --quiet --bin trailship --example gen-corpus --example stages
    cargo build --profile release-lto --quiet --manifest-path benches/peers/Cargo.toml --target-dir target/peers
    trailship=./target/pgo/release-lto/trailship nopgo=./target/release-lto/trailship
    gen_corpus=./target/release-lto/examples/gen-corpus
    stages=./target/release-lto/examples/stages peers=./target/peers/release-lto/peers
    peers_je=./target/peers/release-lto/peers-jemalloc
fi
timed() { "$python" benches/timed.py "$@"; }

work=${TMPDIR:-/tmp}/trailship-peers
corpus=$work/corpus-$records
if [ ! -f "$corpus/.done" ]; then
    rm -rf "$corpus"
    "$gen_corpus" "$corpus" "$records" 1000 1 mix
    touch "$corpus/.done"
fi
json_bytes=$("$python" - "$corpus/AWSLogs" <<'EOF'
import gzip, pathlib, sys
print(sum(len(gzip.decompress(p.read_bytes())) for p in pathlib.Path(sys.argv[1]).rglob("*.json.gz")))
EOF
)
results=$work/results.tsv
: >"$results"

# run NAME THREADS COMMAND...: one timed run on the first THREADS
# processors; the command writes under $work/out, fresh for each run.
run() {
    local name=$1 threads=$2
    shift 2
    rm -rf "$work/out"
    mkdir -p "$work/out"
    timed "$work/time" "$threads" "$@" >"$work/log" 2>&1 || {
        echo "$name failed:" >&2
        cat "$work/log" >&2
        exit 1
    }
    read -r wall rss <"$work/time"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$threads" "$wall" "$rss" "$(du -sb "$work/out" | cut -f1)" >>"$results"
}

ct=$corpus/AWSLogs
for round in $(seq "$rounds"); do
    for threads in $threads_list; do
        run trailship "$threads" "$trailship" normalize --threads "$threads" --out "$work/out/archive" "$ct"
        if [ "$threads" = 1 ] && [ -x "$nopgo" ]; then
            run trailship-nopgo 1 "$nopgo" normalize --threads 1 --out "$work/out/archive" "$ct"
        fi
        # The peers cost minutes on one core: they run at the two ends of the curve.
        [ "$threads" = 1 ] || [ "$threads" = "$cores" ] || continue
        run duckdb "$threads" "$python" benches/peers/duckdb_ocsf.py "$ct" "$work/out/duckdb.parquet" "$threads"
        run vrl "$threads" "$peers_je" vrl "$ct" "$work/out" "$threads"
        if [ "$threads" = 1 ]; then
            run vrl-sysalloc 1 "$peers" vrl "$ct" "$work/out" 1
        fi
        run naive "$threads" "$peers" naive "$ct" "$work/out" "$threads"
    done
    echo "round $round of $rounds done" >&2
done

echo "## $(date -u +%F), $cores cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $records CloudTrail records, $((json_bytes / 1000000)) MB of JSON"
echo
"$python" - "$results" "$records" "$json_bytes" "$threads_list" <<'EOF'
import statistics, sys
path, records, json_bytes, curve = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
runs = {}
for line in open(path):
    name, threads, wall, rss, out = line.split()
    runs.setdefault((name, threads), []).append((float(wall), int(rss), int(out)))
def med(name, threads):
    rs = runs[(name, threads)]
    return statistics.median(r[0] for r in rs), max(r[1] for r in rs), rs[-1][2]
def paired(name, threads):
    # A round's runs follow each other within a minute or two, so their
    # ratio holds where the machine's speed drifts between rounds (a shared
    # VM's does); the median of those is the robust figure.
    ours = [r[0] for r in runs[("trailship", threads)]]
    return statistics.median(r[0] / t for r, t in zip(runs[(name, threads)], ours))
print(f"| contender | cores | wall (median of {len(runs[('trailship', '1')])}) | events/s | MB/s of JSON | per core | peak RSS | output | trailship is | round by round |")
print("|---|---|---|---|---|---|---|---|---|---|")
for threads in curve:
    base = med("trailship", threads)[0]
    for name in ("trailship", "trailship-nopgo", "duckdb", "vrl", "vrl-sysalloc", "naive"):
        if (name, threads) not in runs:
            continue
        wall, rss, out = med(name, threads)
        mbs = json_bytes / 1e6 / wall
        ratio, rounds = ("", "") if name == "trailship" else (f"{wall / base:.2f}x faster", f"{paired(name, threads):.2f}x")
        print(f"| {name} | {threads} | {wall:.2f} s | {records / wall:,.0f} | {mbs:.1f} | {mbs / int(threads):.1f} "
              f"| {rss / 1024:.0f} MB | {out / 1e6:.1f} MB | {ratio} | {rounds} |")
t1 = med("trailship", "1")[0]
print("\ntrailship scaling: " + ", ".join(f"{t1 / med('trailship', n)[0]:.2f}x on {n} cores" for n in curve if n != "1"))
EOF

echo
echo "trailship stages, one core, in memory (best of 3):"
echo '```'
timed - 1 "$stages" "$ct"
echo '```'
echo
echo "trailship end to end per family, one core (median of $rounds, after a run that warms the page cache):"
for fam in AWSLogs k8s github; do
    lines=()
    for run in $(seq 0 "$rounds"); do
        rm -rf "$work/out"
        line=$(timed - 1 "$trailship" normalize --threads 1 --out "$work/out" "$corpus/$fam" 2>/dev/null | grep 'MB/s')
        [ "$run" = 0 ] || lines+=("$line")
    done
    # The summary line reads "... in 1.40s: ...": sort by that time, take the middle.
    median=$(printf '%s\n' "${lines[@]}" | sort -t' ' -k6,6g | sed -n "$(((rounds + 1) / 2))p")
    echo "- $fam: $median"
done
rm -rf "$work/out"
