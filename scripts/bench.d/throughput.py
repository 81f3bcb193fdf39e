#!/usr/bin/env python3
"""Times `tlsfallback decide --engine ENGINE` over a file of request lines (one process, its
output discarded) and prints {"engine", "lines", "seconds", "decisions_per_second"} as JSON.
The best of three runs, so a stray scheduler hiccup on a 2-core machine does not decide it.

Usage: throughput.py TLSFALLBACK_BINARY ENGINE REQUESTS_FILE
"""
import json
import subprocess
import sys
import time


def main() -> None:
    binary, engine, requests = sys.argv[1:4]
    with open(requests, "rb") as f:
        lines = sum(1 for _ in f)
    best = float("inf")
    for _ in range(3):
        with open(requests, "rb") as stdin:
            started = time.perf_counter()
            subprocess.run([binary, "decide", "--engine", engine], stdin=stdin,
                           stdout=subprocess.DEVNULL, check=True)
            best = min(best, time.perf_counter() - started)
    print(json.dumps({"engine": engine, "lines": lines, "seconds": round(best, 3),
                      "decisions_per_second": round(lines / best)}))


if __name__ == "__main__":
    main()
