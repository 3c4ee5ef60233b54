#!/usr/bin/env bash
# The binary that ships: the `release-lto` profile, optimised with a
# profile of its own hot path (profile-guided optimisation).
#
#   scripts/pgo-build.sh            # -> target/pgo/release-lto/trailship
#
# 1. An instrumented build normalises a generated corpus: CloudTrail log
#    files, Kubernetes audit NDJSON and GitHub deliveries (seed 2; the
#    benchmark's corpus is seed 1), redaction on, one thread.
# 2. Its counts are merged with `llvm-profdata` (the `llvm-tools` rustup
#    component, installed here if missing: its LLVM must be rustc's).
# 3. The same build again, with the profile: LLVM lays out, inlines and
#    orders branches by what the run did.
#
# Each build takes as long as a `release-lto` one (12-13 minutes from
# scratch on 2 cores), in target directories of their own, so the
# everyday `target/release*` builds keep their caches. What it buys is in
# benches/README.md ("Session 30").
set -euo pipefail
cd "$(dirname "$0")/.."

records=${PGO_RECORDS:-60000}
work=target/pgo-work
rm -rf "$work"
mkdir -p "$work/raw"
work=$(cd "$work" && pwd)

bin_dir="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
if [ ! -x "$bin_dir/llvm-profdata" ]; then
    rustup component add llvm-tools
fi

echo "== instrumented build"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$work/raw" \
    cargo build --profile release-lto --locked --bin trailship --example gen-corpus --target-dir target/pgo-gen
gen=target/pgo-gen/release-lto

echo "== training run"
# gen-corpus is instrumented too (one build): its counts are not wanted.
LLVM_PROFILE_FILE="$work/gen-%p.profraw" "$gen/examples/gen-corpus" "$work/corpus" "$records" 1000 2 mix
LLVM_PROFILE_FILE="$work/raw/trailship-%p.profraw" TRAILSHIP_REDACTION_KEY=$(printf '00%.0s' {1..32}) \
    "$gen/trailship" normalize --threads 1 --out "$work/archive" "$work/corpus" >/dev/null
"$bin_dir/llvm-profdata" merge -o "$work/trailship.profdata" "$work/raw"

echo "== optimised build"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$work/trailship.profdata" \
    cargo build --profile release-lto --locked --bin trailship --target-dir target/pgo
echo "target/pgo/release-lto/trailship"
