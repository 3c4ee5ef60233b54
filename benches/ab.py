#!/usr/bin/env python3
"""Interleaved A/B of trailship binaries on one corpus: wall and CPU medians.

    benches/ab.py ROUNDS CORPUS BIN... [--threads 1,2]

Each round runs every binary once at each thread count, pinned to the first N
processors, so a drift in the machine's speed (a shared VM's) falls on all of
them alike. Prints, per binary and thread count, the median and least wall and
CPU (user + sys of the child), and for two counts the scaling of the medians
and the median of each round's own ratio.

Each run writes into a directory of its own, all deleted at the end: on ext4
without a journal a file created soon after many deletions waits while the
allocator skips the inodes just freed, which made back-to-back runs that
deleted the last output ~25 ms slower (benches/README.md, session 33).
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time


def run(binary, threads, corpus, out):
    start = time.time()
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, set(range(min(threads, os.cpu_count()))))
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.environ.setdefault("TRAILSHIP_REDACTION_KEY", "00" * 32)
        os.execv(binary, [binary, "normalize", "--threads", str(threads), "--out", out, corpus])
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise SystemExit(f"{binary} --threads {threads} failed ({status})")
    return time.time() - start, usage.ru_utime + usage.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rounds", type=int)
    p.add_argument("corpus")
    p.add_argument("bins", nargs="+")
    p.add_argument("--threads", default="1,2")
    a = p.parse_args()
    counts = [int(t) for t in a.threads.split(",")]
    work = tempfile.mkdtemp(prefix="trailship-ab-")
    runs = {(b, t): [] for b in a.bins for t in counts}
    try:
        n = 0
        for _ in range(a.rounds):
            for b in a.bins:
                for t in counts:
                    n += 1
                    runs[(b, t)].append(run(b, t, a.corpus, os.path.join(work, str(n))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    for b in a.bins:
        line = [b]
        for t in counts:
            wall = [r[0] for r in runs[(b, t)]]
            cpu = [r[1] for r in runs[(b, t)]]
            line.append(f"{t}t wall {med(wall):.3f} (min {min(wall):.3f}) cpu {med(cpu):.3f} (min {min(cpu):.3f})")
        if len(counts) == 2:
            one, two = ([r[0] for r in runs[(b, t)]] for t in counts)
            line.append(f"scaling {med(one) / med(two):.2f}x, by round {med([x / y for x, y in zip(one, two)]):.2f}x")
        print(" | ".join(line))


if __name__ == "__main__":
    main()
