#!/usr/bin/env python3
"""`tlsfallback postfix serve` over its socket on the stores benches/scale.rs grew: for each
size, lookups of random known peers from 1, 8 and 64 client connections (a process each, as
Postfix's smtp processes are): lookups/s and per-lookup p50/p99; then, on the largest store,
the daemon's resident memory before and after LOOKUPS_FOR_MEMORY lookups of as many distinct
next hops (half known, half new). Prints one JSON object per line.

Usage: scale_socketmap.py TLSFALLBACK_BINARY DIR LOOKUPS LOOKUPS_FOR_MEMORY
(DIR holds peers-N.sqlite3 files)
"""
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from socketmap import netstring, read_reply  # noqa: E402


def peer(k: int) -> str:
    # benches/scale.rs's names.
    return f"mx{k}.d{k % 9973}.bench.test"


def client(port: int, keys: list, ready, out) -> None:
    latencies = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        stream = sock.makefile("rwb")
        ready.wait()  # every connection open before the clock starts
        for key in keys:
            start = time.perf_counter()
            stream.write(netstring("tlsfallback " + key))
            stream.flush()
            reply = read_reply(stream)
            latencies.append(time.perf_counter() - start)
            if not reply.startswith(b"OK "):
                raise RuntimeError(f"unexpected reply {reply!r}")
    out.put(latencies)


def run(port: int, keys: list, connections: int) -> dict:
    out = multiprocessing.Queue()
    ready = multiprocessing.Barrier(connections + 1)
    workers = [multiprocessing.Process(target=client, args=(port, keys[i::connections], ready, out))
               for i in range(connections)]
    for w in workers:
        w.start()
    ready.wait()
    start = time.perf_counter()
    latencies = []
    for _ in workers:
        latencies.extend(out.get())
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    latencies.sort()
    at = lambda p: round(latencies[round((len(latencies) - 1) * p)] * 1e6, 1)
    return {"connections": connections, "lookups_per_second": round(len(keys) / wall),
            "p50_us": at(0.5), "p99_us": at(0.99)}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))


def main() -> None:
    binary, store_dir = sys.argv[1], sys.argv[2]
    lookups, for_memory = int(sys.argv[3]), int(sys.argv[4])
    sizes = sorted(int(m.group(1)) for name in os.listdir(store_dir)
                   if (m := re.fullmatch(r"peers-(\d+)\.sqlite3", name)))
    for size in sizes:
        with tempfile.TemporaryDirectory() as state:
            db = os.path.join(state, "h.sqlite3")
            shutil.copy(os.path.join(store_dir, f"peers-{size}.sqlite3"), db)
            daemon = subprocess.Popen(
                [binary, "postfix", "serve", "--listen", "127.0.0.1:0", "--no-resolve", "--db", db],
                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
            try:
                first = daemon.stderr.readline().decode()
                port = int(first.split("inet:127.0.0.1:")[1].split(";")[0])
                # A line per lookup: drain it so the daemon never blocks on its log.
                threading.Thread(target=lambda: [None for _ in daemon.stderr], daemon=True).start()
                step = max(1, size // lookups)
                keys = [peer((i * step * 7919) % size) for i in range(lookups)]
                row = {"peers": size, "runs": [run(port, keys, c) for c in (1, 8, 64)]}
                if size == sizes[-1]:
                    before = rss_kib(daemon.pid)
                    distinct = [peer(i) if i % 2 == 0 else f"fresh{i}.bench.test"
                                for i in range(for_memory)]
                    run(port, distinct, 8)
                    row["memory"] = {"lookups": for_memory, "rss_before_kib": before,
                                     "rss_after_kib": rss_kib(daemon.pid)}
                print(json.dumps(row), flush=True)
            finally:
                daemon.kill()
                daemon.wait()


if __name__ == "__main__":
    main()
