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
# everyday `target/release*` builds keep their caches. A fresh profile
# rebuilds every crate (its counts differ run to run), so one trained on
# the same sources and toolchain is kept and only the last step runs. What
# it buys is in benches/README.md ("Session 30").
set -euo pipefail
cd "$(dirname "$0")/.."

records=${PGO_RECORDS:-60000}
work=target/pgo-work
mkdir -p "$work"
work=$(cd "$work" && pwd)
# What the profile was trained on: the sources (as committed, staged, changed
# and new), the toolchain, the corpus's size.
paths=(src benches/corpus.rs benches/gen_corpus.rs Cargo.toml Cargo.lock)
key=$( {
    git ls-files -s -- "${paths[@]}"
    git diff HEAD -- "${paths[@]}"
    git ls-files --others --exclude-standard -- "${paths[@]}" | xargs -r sha256sum
    rustc -vV
    echo "$records"
} 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ -f "$work/trailship.profdata" ] && [ "$(cat "$work/key" 2>/dev/null)" = "$key" ]; then
    echo "== the profile for these sources is there: no training"
else
    rm -rf "$work"
    mkdir -p "$work/raw"

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
    echo "$key" >"$work/key"
fi

echo "== optimised build"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$work/trailship.profdata" \
    cargo build --profile release-lto --locked --bin trailship --target-dir target/pgo
echo "target/pgo/release-lto/trailship"
