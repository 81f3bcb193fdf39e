#!/usr/bin/env python3
"""Cost of a decision on a warm engine: µs per decision and decisions/s.

    TLSFALLBACK_WASM=/path/policy_engine.wasm .venv/bin/python bench.py [--seconds 2]

Rows: the typed API (``Engine.decide``) on a new-peer start and on a step-down with history, and
``decide_json`` over the shared vectors (JSON objects in and out, parsing excluded); last, for
comparison, the generic path (``Engine(fast=False)``: wasmtime-py's ``Func.__call__``).
"""

import argparse
import importlib.metadata
import json
import platform
import time
from pathlib import Path

import wasmtime

from tlsfallback import AttemptReport, DeliveryContext, Engine, Outcome, Policy, Tier, TlsAlert

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "decide.jsonl"
NOW = 1767225600


def measure(label, fn, seconds):
    for _ in range(200):  # warm up
        fn()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    per = (now - start) / n
    print(f"{label:48} {per * 1e6:9.1f} µs/decision {1 / per:11,.0f} decisions/s")
    return per


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per row")
    args = parser.parse_args()
    engine = Engine()
    print(f"python {platform.python_version()}, wasmtime-py {importlib.metadata.version('wasmtime')}, "
          f"{platform.machine()}, component {engine.component_path}")
    policy, ctx = Policy(), DeliveryContext()
    start = engine.decide(policy, ctx, None, None, NOW)
    alert = AttemptReport(Tier.MODERN_TLS, Outcome.tls_alert(TlsAlert.PROTOCOL_VERSION))
    measure("decide: new peer, delivery starts", lambda: engine.decide(policy, ctx, None, None, NOW), args.seconds)
    measure("decide: history + tls-alert (step-down)",
            lambda: engine.decide(policy, ctx, start.history, alert, NOW), args.seconds)
    requests = [json.loads(line)["request"] for line in VECTORS.open()]
    it = iter(())

    def next_json():
        nonlocal it
        try:
            engine.decide_json(next(it))
        except StopIteration:
            it = iter(requests)
            engine.decide_json(next(it))

    measure(f"decide_json: the {len(requests)} shared vectors", next_json, args.seconds)
    generic = Engine(fast=False)
    measure("decide: new peer, generic wasmtime-py path",
            lambda: generic.decide(policy, ctx, None, None, NOW), min(args.seconds, 1.0))


if __name__ == "__main__":
    main()
