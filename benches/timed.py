"""Runs one benchmark command on the first CPUS processors and writes its
wall time (s) and peak RSS (KiB) to RESULT, or just runs it pinned when RESULT
is '-'. A stand-in for `/usr/bin/time -f '%e %M' taskset -c 0-N`: the
16-core device machine has neither.

usage: python3 timed.py RESULT CPUS COMMAND...
"""

import os
import sys
import time

result, cpus, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
available = sorted(os.sched_getaffinity(0))
if cpus > len(available):
    sys.exit(f"timed.py: {cpus} CPUs asked for, {len(available)} available")
os.sched_setaffinity(0, available[:cpus])
start = time.perf_counter()
# The kernel counts the spawning Python's ~13 MB into the child's peak up to
# exec, a floor far below every contender's peak.
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"timed.py: {command[0]} exited with {os.waitstatus_to_exitcode(status)}")
if result != "-":
    with open(result, "w") as f:
        f.write(f"{wall:.3f} {usage.ru_maxrss}\n")
