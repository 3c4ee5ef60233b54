#!/usr/bin/env python3
"""What grows with the number of files (benches/README.md, "Session 22").

    many_inputs.py files DIR [ACCOUNTS DAYS PER_DAY]   empty CloudTrail-named files
    many_inputs.py ledger ARCHIVE [LINES]               append synthetic lines to ARCHIVE's ledger

Then: /usr/bin/time -f '%e s %M KB' trailship normalize --out ARCHIVE INPUTS
"""
import hashlib, json, os, sys


def files(root, accounts=30, days=30, per_day=334):
    n = 0
    for a in range(accounts):
        acct = f"1111{a:08d}"
        for day in range(1, days + 1):
            d = f"{root}/AWSLogs/o-abc123/{acct}/CloudTrail/us-east-1/2024/03/{day:02d}"
            os.makedirs(d, exist_ok=True)
            for i in range(per_day):
                stamp = f"202403{day:02d}T{i // 12:02d}{(i % 12) * 5:02d}Z"
                open(f"{d}/{acct}_CloudTrail_us-east-1_{stamp}_{n:016x}.json.gz", "w").close()
                n += 1
    print(f"{n} files under {root}")


def ledger(archive, lines=1_000_000):
    path = os.path.join(archive, "_trailship", "ledger.ndjson")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        for i in range(lines):
            head = hashlib.sha256(str(i).encode()).hexdigest()
            tail = hashlib.sha256(str(-i).encode()).hexdigest()
            acct, day = f"1111{i % 1000:08d}", 1 + i % 28
            p = (f"/data/AWSLogs/o-abc123/{acct}/CloudTrail/us-east-1/2024/03/{day:02d}/"
                 f"{acct}_CloudTrail_us-east-1_202403{day:02d}T0820Z_{head[:16]}.json.gz")
            line = {"path": p, "size": 5000 + i, "mtime_ns": 1700000000000000000 + i,
                    "head": head, "tail": tail, "records": 12}
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    print(f"{lines} lines appended to {path}")


if __name__ == "__main__":
    what, where, *rest = sys.argv[1:]
    {"files": files, "ledger": ledger}[what](where, *map(int, rest))
