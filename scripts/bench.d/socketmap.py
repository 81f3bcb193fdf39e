#!/usr/bin/env python3
"""Times `tlsfallback postfix serve` over its socket, as Postfix uses it: sequential lookups on one
connection (latency) and lookups from several connections at once (throughput), over a set of
destinations. Prints one JSON object.

Usage: socketmap.py TLSFALLBACK_BINARY LOOKUPS
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def netstring(text: str) -> bytes:
    data = text.encode()
    return str(len(data)).encode() + b":" + data + b","


def read_reply(stream) -> bytes:
    length = b""
    while (ch := stream.read(1)) != b":":
        if not ch:
            raise EOFError("the daemon closed the connection")
        length += ch
    data = stream.read(int(length))
    stream.read(1)
    return data


def lookups(port: int, keys: list) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        stream = sock.makefile("rwb")
        for key in keys:
            stream.write(netstring("tlsfallback " + key))
            stream.flush()
            reply = read_reply(stream)
            if not reply.startswith(b"OK "):
                raise RuntimeError(f"unexpected reply {reply!r}")


def main() -> None:
    binary, count = sys.argv[1], int(sys.argv[2])
    destinations = [f"[192.0.2.{i % 250 + 1}]:{2500 + i // 250}" for i in range(1000)]
    keys = [destinations[i % len(destinations)] for i in range(count)]
    with tempfile.TemporaryDirectory() as state:
        daemon = subprocess.Popen(
            [binary, "postfix", "serve", "--listen", "127.0.0.1:0",
             "--db", os.path.join(state, "h.sqlite3")],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        try:
            first = daemon.stderr.readline().decode()
            port = int(first.split("inet:127.0.0.1:")[1].split(";")[0])
            # The daemon logs a line per lookup: drain it so it never blocks.
            threading.Thread(target=lambda: [None for _ in daemon.stderr], daemon=True).start()
            lookups(port, destinations)  # every destination known, as in steady state
            start = time.perf_counter()
            lookups(port, keys)
            sequential = time.perf_counter() - start
            connections = 8
            threads = [threading.Thread(target=lookups, args=(port, keys[i::connections]))
                       for i in range(connections)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            parallel = time.perf_counter() - start
        finally:
            daemon.kill()
            daemon.wait()
    print(json.dumps({
        "lookups": count,
        "destinations": len(destinations),
        "sequential_us_per_lookup": round(sequential / count * 1e6, 1),
        "connections": connections,
        "parallel_lookups_per_second": round(count / parallel),
    }))


if __name__ == "__main__":
    main()
