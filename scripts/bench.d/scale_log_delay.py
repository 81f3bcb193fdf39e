#!/usr/bin/env python3
"""The delay from a Postfix status line to the updated history, end to end: the release
`tlsfallback postfix serve` follows a log file (`--log`, JSON logs); this script asks it for a
destination's policy over the socket (as an smtp process does, its PID in the log lines), appends
that attempt's TLS and status lines to the log, and times until the daemon's `outcome` record
for the queue ID appears (written after the transaction with the new history commits).

Two runs: an idle log, and one where other Postfix processes write 900 lines/s around the
attempts (what 100 deliveries/s produce). Each with the default --poll-ms (250): the delay is
mostly the wait for the next poll. Prints one JSON object per run.

Usage: scale_log_delay.py TLSFALLBACK_BINARY SAMPLES
"""
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from socketmap import netstring, read_reply  # noqa: E402

POLL_MS = 250
NOISE_LINES_PER_SECOND = 900


def stamp() -> str:
    return time.strftime("%b %e %H:%M:%S", time.gmtime())


def noise(log_path: str, stop: threading.Event) -> None:
    n = 0
    with open(log_path, "a", buffering=1) as log:
        while not stop.is_set():
            batch = NOISE_LINES_PER_SECOND // 20
            lines = []
            for _ in range(batch):
                n += 1
                lines.append(f"{stamp()} mx1 postfix/qmgr[900]: 4N{n:010X}: from=<u{n % 97}@sender.test>, "
                             f"size={2000 + n % 5000}, nrcpt=1 (queue active)\n")
            log.write("".join(lines))
            time.sleep(0.05)


def run(binary: str, samples: int, busy: bool) -> dict:
    with tempfile.TemporaryDirectory() as state:
        log_path = os.path.join(state, "maillog")
        open(log_path, "w").close()
        daemon = subprocess.Popen(
            [binary, "postfix", "serve", "--listen", "127.0.0.1:0", "--no-resolve",
             "--db", os.path.join(state, "h.sqlite3"), "--log", log_path,
             "--poll-ms", str(POLL_MS), "--log-format", "json"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        seen = {}
        arrived = threading.Condition()

        def read_records() -> None:
            for raw in daemon.stderr:
                if b'"event":"outcome"' not in raw:
                    continue
                at = time.perf_counter()
                queue_id = json.loads(raw).get("queue_id")
                with arrived:
                    seen[queue_id] = at
                    arrived.notify_all()

        stop = threading.Event()
        try:
            first = daemon.stderr.readline().decode()
            port = int(re.search(r"inet:127\.0\.0\.1:(\d+)", first).group(1))
            threading.Thread(target=read_records, daemon=True).start()
            if busy:
                threading.Thread(target=noise, args=(log_path, stop), daemon=True).start()
            pid = os.getpid()
            delays = []
            random.seed(7)
            with socket.create_connection(("127.0.0.1", port)) as sock, \
                    open(log_path, "a", buffering=1) as log:
                stream = sock.makefile("rwb")
                for i in range(samples):
                    domain = f"d{i}.delay.test"
                    stream.write(netstring(f"tlsfallback {domain}"))
                    stream.flush()
                    if not read_reply(stream).startswith(b"OK "):
                        raise RuntimeError("the lookup failed")
                    queue_id = f"4D{i:010X}"
                    at = f"{stamp()} mx1 postfix/smtp[{pid}]:"
                    relay = f"mx.{domain}[10.0.0.1]:25"
                    log.write(
                        f"{at} Untrusted TLS connection established to {relay}: TLSv1.3 with cipher "
                        f"TLS_AES_256_GCM_SHA384 (256/256 bits)\n"
                        f"{at} {queue_id}: to=<u@{domain}>, relay={relay}, delay=0.4, "
                        f"delays=0/0/0.2/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)\n")
                    log.flush()
                    written = time.perf_counter()
                    with arrived:
                        if not arrived.wait_for(lambda: queue_id in seen, timeout=30):
                            raise RuntimeError(f"no outcome for {queue_id} within 30 s")
                        delays.append(seen[queue_id] - written)
                    # Out of step with the daemon's polls, as Postfix is.
                    time.sleep(random.uniform(0, POLL_MS / 1000))
        finally:
            stop.set()
            daemon.kill()
            daemon.wait()
    delays.sort()
    at = lambda p: round(delays[round((len(delays) - 1) * p)] * 1e3, 1)
    return {"busy": busy, "samples": samples, "poll_ms": POLL_MS,
            "noise_lines_per_second": NOISE_LINES_PER_SECOND if busy else 0,
            "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}


def main() -> None:
    binary, samples = sys.argv[1], int(sys.argv[2])
    for busy in (False, True):
        print(json.dumps(run(binary, samples, busy)), flush=True)


if __name__ == "__main__":
    main()
