#!/usr/bin/env bash
# Instructions (callgrind's Ir) of one thread's `normalize` run, for each
# binary, on one corpus: the count does not move with the machine's load, so
# two builds compare where timing cannot (a shared VM varies 1.6x an hour).
# It counts work, not waiting on memory: confirm a change's time with
# benches/ab.py. Valgrind's CPU has no AVX-512, so the code paths that test
# for it (the prefilter, compact_end) run their fallbacks here.
#
#   benches/instructions.sh CORPUS BIN...
#
# The 20,000-record corpora of benches/README.md: CloudTrail's is
# `gen-corpus DIR 20000 1000 1` (DIR/AWSLogs); Kubernetes' and GitHub's are the
# first 20 files of `k8s/` and `github/` in `gen-corpus DIR 200000 1000 1 mix`.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CORPUS BIN..." >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
corpus=$1
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A fixed key, so every run redacts alike.
export TRAILSHIP_REDACTION_KEY=$(printf '00%.0s' {1..32})
for bin in "$@"; do
    n=$(basename "$bin")
    valgrind --tool=callgrind --callgrind-out-file="$work/$n.out" \
        "$bin" normalize --threads 1 --out "$work/out-$n" "$corpus" >/dev/null 2>"$work/$n.log" \
        || { cat "$work/$n.log" >&2; exit 1; }
    ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/$n.log")
    printf '%s\t%s\n' "$bin" "$ir"
done
