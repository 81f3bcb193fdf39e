#!/usr/bin/env python3
"""Builds docs/benchmarks.md from one scripts/bench run: criterion's medians, the sizes the
benchmark printed, the JSON Lines throughput, the Postfix daemon's socket, the jco runs in
Node and Chromium, the resolution against the DNSSEC rig (resolve.json), and the daemon
against postfix-mta-sts-resolver (socketmap-vs-resolver.json).

Usage: table.py BENCH_OUT_DIR > docs/benchmarks.md
"""
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys

CASES = ["unknown-peer-start", "step-down-after-alert", "remembered-legacy-start",
         "dane-pinned-start"]
JS_CASES = CASES[:3]
PEERS = ["unknown-peer-mid-delivery", "modern-pinned", "legacy-only", "no-starttls"]


def criterion_medians() -> dict:
    """full_id -> median in nanoseconds, for every benchmark of this run."""
    medians = {}
    for meta in glob.glob("target/criterion/**/new/benchmark.json", recursive=True):
        with open(meta) as f:
            full_id = json.load(f)["full_id"]
        with open(os.path.join(os.path.dirname(meta), "estimates.json")) as f:
            medians[full_id] = json.load(f)["median"]["point_estimate"]
    return medians


def duration(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def resolution_rows(out: str, m: dict) -> list:
    """Rows 12 to 14: benches/resolve.rs (resolve.json) and benches/mta_sts.rs (criterion)."""
    r = json.load(open(os.path.join(out, "resolve.json")))

    def spread(p: dict) -> str:
        return " / ".join(duration(p[k] * 1e3) for k in ["median_us", "p90_us", "p99_us"])

    def mode(name: str, key: str) -> str:
        x = r[key]
        return (f"{name}: cold {spread(x['cold_decision'])} (no MTA-STS policy: "
                f"{duration(x['cold_resolve_without_policy']['median_us'] * 1e3)}, with its fetch: "
                f"{duration(x['cold_resolve_with_policy_fetch']['median_us'] * 1e3)}), "
                f"warm {spread(x['warm_decision'])}")

    fill = r["fill"]
    runs = r["deliveries"]
    some = runs["validate"]
    quick = " (BENCH_QUICK)" if r["quick"] else ""
    return [
        ("12", "decision latency with resolution (MX, A/AAAA, TLSA, MTA-STS TXT and policy, then a "
         "native `decide`) against the loopback DNSSEC rig and MTA-STS policy server, "
         f"{r['rig']['domains']:,} domains{quick}: cold (a fresh resolver) and warm (the same "
         "domain again), median / p90 / p99",
         f"{mode('validate', 'validate')}; {mode('trust-ad via unbound', 'trust_ad')}; a new domain "
         f"on a long-lived resolver (validate): {spread(fill['new_domain_resolve'])}", "—", ""),
        ("13", f"resolver cache over {some['deliveries']:,} deliveries across {some['domains']:,} "
         "domains (seeded Zipf, s = 1); memory of the caches",
         "DNS cache hit rate: " + ", ".join(
             f"{name} {100 * x['dns_cache_hit_rate']:.1f}% ({x['dns_cache_hits']:,} hits, "
             f"{x['dns_cache_misses']:,} misses, {x['total_ms'] / 1e3:.1f} s in all)"
             for name, x in runs.items())
         + f" ({some['distinct_domains_drawn']:,} distinct domains drawn); filled with "
         f"{fill['domains']:,} domains: {fill['dns_cache_entries']:,} DNS cache entries, RSS "
         f"{fill['rss_before_kib']:,} → {fill['rss_after_kib']:,} KiB "
         f"(~{fill['rss_bytes_per_entry']:,} B per entry), SQLite MTA-STS cache "
         f"{fill['mta_sts_cache_bytes_on_disk']:,} B on disk for {fill['mta_sts_domains']:,} "
         "policies (WAL included)", "—", ""),
        ("14", "MTA-STS alone (benches/mta_sts.rs): policy parse; a resolution from the cache in "
         "memory / in the database file; one fetching over loopback HTTPS",
         f"{duration(m['mta_sts/parse policy'])}; "
         f"{duration(m['mta_sts/resolve warm (in-memory cache)'])} / "
         f"{duration(m['mta_sts/resolve warm (database file)'])}; "
         f"{duration(m['mta_sts/resolve cold (loopback HTTPS fetch)'])}", "—", ""),
    ]


def versus_resolver_row(out: str) -> tuple:
    """Row 15: benches/socketmap_vs_resolver.rs (socketmap-vs-resolver.json)."""
    r = json.load(open(os.path.join(out, "socketmap-vs-resolver.json")))
    d = r["daemons"]
    theirs = d["postfix_mta_sts_resolver"]
    names = [("postfix-mta-sts-resolver" + (" (uvloop)" if theirs.get("uvloop") else ""),
              "postfix_mta_sts_resolver"),
             ("ours, policy-table", "ours_policy_table"), ("ours, dance", "ours_dance")]
    if "loopback_floor" in d:
        # A server that only reads the request and writes a fixed answer: the socket's own cost.
        names.append(("loopback floor (a server that does nothing)", "loopback_floor"))

    def runs(key: str) -> str:
        cold = d[key].get("cold_first_lookups_secs")
        first = (f"first lookup of each domain (cold) {cold:.2f} s in all; "
                 if cold is not None and key != "loopback_floor" else "")
        return first + "; ".join(
            f"{label}: {d[key][run]['lookups_per_second']:,.0f}/s, p50 "
            f"{duration(d[key][run]['p50_us'] * 1e3)}, p99 {duration(d[key][run]['p99_us'] * 1e3)}"
            for label, run in [("1 connection", "one_connection"),
                               (f"{r['connections']} connections", "connections")])

    ratios = r["throughput_ratio_over_theirs"]
    ours_runs = [d[k][run] for k in ["ours_policy_table", "ours_dance"]
                 for run in ["one_connection", "connections"]]
    met = min(ratios.values()) >= 10 and max(x["p99_us"] for x in ours_runs) < 1000
    quick = " (BENCH_QUICK)" if r["quick"] else ""
    return ("15", "`postfix serve` against postfix-mta-sts-resolver 1.5.1, the same cached "
            f"`enforce` policies ({r['domains']} domains{quick}), over the socket, "
            f"{r['lookups_per_run']:,} lookups per run (load average {r.get('load_average', '?')})",
            " — ".join(f"{label}: {runs(key)}" for label, key in names)
            + "; throughput over theirs: policy-table "
            f"{ratios['policy_table_one_connection']:.2f}× / {ratios['policy_table_connections']:.2f}×, "
            f"dance {ratios['dance_one_connection']:.2f}× / {ratios['dance_connections']:.2f}×",
            "≥ 10× theirs, p99 < 1 ms", verdict(met))


def fleet_row(out: str) -> tuple:
    """Row 17: benches/fleet.rs (fleet.json)."""
    r = json.load(open(os.path.join(out, "fleet.json")))

    def cas(run: dict) -> str:
        keys = "one hot key" if run["keys"] == 1 else f"{run['keys']:,} keys"
        return (f"{keys}, {run['writers']} writer{'s' if run['writers'] > 1 else ''}: "
                f"{run['operations_per_second']:,.0f} ops/s ({run['writes']:,} written, "
                f"{run['unchanged']:,} already covered, {run['lost_rounds_per_operation']:.2f} "
                "lost rounds per op)")

    d = r["decisions"]

    def latency(key: str) -> str:
        x = d[key]
        return (f"p50 {duration(x['p50_us'] * 1e3)}, p99 {duration(x['p99_us'] * 1e3)}, "
                f"slowest {duration(x['max_us'] * 1e3)}")

    converge = "; ".join(
        f"read cache {c['cache_ttl_secs']:.0f} s: node B acts at its decision "
        f"{c['decisions_of_node_b']} after node A's change, {c['node_b_acts_after_ms']:.1f} ms later"
        for c in r["convergence"])
    quick = " (BENCH_QUICK)" if r["quick"] else ""
    return ("17", f"the fleet on redis-server {r['redis_version']} over loopback{quick}: merge-CAS "
            "operations (`Fleet::publish`); decisions through the SQLite store over "
            f"{d['peers']} peers with the fleet off / on / Redis paused (`CLIENT PAUSE ALL`, "
            f"budget {r['budget_ms']} ms); node B acting on node A's change",
            "; ".join(cas(run) for run in r["merge_cas"])
            + f" — off: {latency('fleet_off')}; on: {latency('fleet_on')}; paused: "
            f"{latency('redis_paused')} — {converge}", "—", "")


def main() -> None:
    out = sys.argv[1]
    m = criterion_medians()
    log = open(os.path.join(out, "criterion.log")).read()
    sizes = dict(re.findall(r"history-size (\S+)=(\d+)", log))
    wasm, cwasm = map(int, re.search(r"component-size wasm=(\d+) cwasm=(\d+)", log).groups())
    socketmap = json.load(open(os.path.join(out, "socketmap.json")))
    throughput = {e: json.load(open(os.path.join(out, f"throughput-{e}.json")))
                  for e in ["native", "component"]}
    playground = json.load(open(os.path.join(out, "playground.json")))
    js = {}
    for runtime in ["node", "chromium"]:
        with open(os.path.join(out, f"js-{runtime}.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        js[runtime] = ({r["name"]: r for r in rows}, rows[0]["runtime"] if rows else "?")

    def per_case(kind: str, cases=CASES) -> list:
        return [m[f"decide/{kind}/{case}"] for case in cases]

    native = per_case("native")
    warm = per_case("component-warm")
    fresh = per_case("component-fresh-instance")
    limited = per_case("component-with-limits")
    guarded = per_case("plugin-guarded")
    floor = m["floor/empty-component-call"]
    handshake = m["tls/loopback-handshake-tls1.3"]
    ratios = [w / n for w, n in zip(warm, native)]
    slash = " / ".join
    cpu = command_output("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
    rows = [
        ("1", "native policy-core `decide` (the limit)", slash(duration(n) for n in native),
         "—", ""),
        ("2", "component `decide`, one warm instance",
         f"{slash(duration(w) for w in warm)} = {slash(f'{r:.0f}×' for r in ratios)} native; "
         f"wasmtime's floor for *any* component call (`func(u32) -> u32`): {duration(floor)}",
         "≤ 3× native", verdict(max(ratios) <= 3)),
        ("3", "fresh instance per decision (InstancePre + pooling allocator)",
         slash(duration(f) for f in fresh), "≤ 10 µs", verdict(max(fresh) <= 10_000)),
        ("4", "component load: compile .wasm vs deserialize .cwasm",
         f"{duration(m['load/compile-wasm'])} vs {duration(m['load/deserialize-cwasm'])}; "
         f"component {wasm:,} B ({wasm / 1024:.1f} KiB), .cwasm {cwasm:,} B",
         "component ≤ 32 KiB", verdict(wasm <= 32 * 1024)),
        ("5", "history decode / encode; blob size",
         "; ".join(f"{p}: {duration(m[f'history/decode/{p}'])} / "
                   f"{duration(m[f'history/encode/{p}'])}, {sizes[p]} B" for p in PEERS),
         "typical blob ≤ 32 B", verdict(max(int(sizes[p]) for p in PEERS) <= 32)),
        ("6", "component `decide` with fuel + epoch deadline + memory limit (warm)",
         f"{slash(duration(x) for x in limited)} = "
         f"{slash(f'{x / w:.2f}×' for x, w in zip(limited, warm))} of row 2; as an operator's "
         f"plugin (limits + the host's guard): {slash(duration(g) for g in guarded)}", "—", ""),
        ("7", "`tlsfallback decide` JSON Lines, one process",
         f"native engine {throughput['native']['decisions_per_second']:,}/s, component "
         f"{throughput['component']['decisions_per_second']:,}/s "
         f"({throughput['native']['lines']:,} lines)", "≥ 1,000,000/s",
         verdict(throughput["component"]["decisions_per_second"] >= 1_000_000)),
        ("8", "jco-transpiled component: Node / headless Chromium",
         f"{js['node'][1]}: {slash(format(js['node'][0][c]['decisionsPerSecond'], ',') for c in JS_CASES)}/s; "
         f"{js['chromium'][1]}: {slash(format(js['chromium'][0][c]['decisionsPerSecond'], ',') for c in JS_CASES)}/s",
         "≥ 500,000/s in Chromium",
         verdict(min(js["chromium"][0][c]["decisionsPerSecond"] for c in JS_CASES) >= 500_000)),
        ("9", "policy cost per attempt as a share of a loopback TLS 1.3 handshake (OpenSSL)",
         f"handshake {duration(handshake)}; component decide {duration(max(warm))} = "
         f"{100 * max(warm) / handshake:.3f}%", "< 0.1%", verdict(max(warm) / handshake < 0.001)),
        ("10", "Postfix daemon: a lookup (SQLite write + component decide) and a lookup followed "
         "by its logged attempt read back into the engine, in process; lookups over the socket",
         f"known destination {duration(m['postfix/lookup-known-destination'])}, new destination "
         f"{duration(m['postfix/lookup-new-destination'])}; lookup + log attempt "
         f"{duration(m['postfix/lookup-then-log-attempt-to-engine'])}; socket: "
         f"{socketmap['sequential_us_per_lookup']} µs per lookup on one connection, "
         f"{socketmap['parallel_lookups_per_second']:,}/s from {socketmap['connections']} "
         f"connections ({socketmap['destinations']:,} destinations)", "—", ""),
        ("11", "browser playground (playground/bench.mjs): the built-in engine's run in the page "
         "(the tools component: policy-core's simulator and engine, tries lifted only as far as "
         "the page draws them), first in a fresh page and again once warm, then the drawing; "
         "transpiling a component in the page",
         "; ".join(f"{s['preset']} {s['days']} days × {s['perDay']}/day ({s['decisions']:,} "
                   f"decisions): first run {s['firstRunMs']:.0f} ms, again {s['runMs']:.0f} ms "
                   f"({s['runMs'] * 1000 / s['decisions']:.2f} µs a decision), drawing {s['drawMs']:.0f} ms"
                   for s in playground["scenarios"])
         + f"; transpiling the 31 KB example plugin: {sorted(playground['transpileMs'])[len(playground['transpileMs']) // 2]} ms "
         f"(chromium {playground['chromium']})", "2 µs a decision (a year of the stripping attacker, warm)",
         "met" if max(s["runMs"] * 1000 / s["decisions"] for s in playground["scenarios"]
                      if s["preset"] == "stripping-attacker" and s["days"] == 365) <= 2 else "missed"),
    ]
    rows += resolution_rows(out, m)
    rows.append(versus_resolver_row(out))
    rows.append(("16", "TLS-RPT per delivery attempt (benches/tlsrpt.rs): build and encode the "
                 "datagram (an MTA-STS failure); send it to a collectd socket / with no collectd; "
                 "the whole report with the ledger row in a database file",
                 f"{duration(m['tlsrpt/build and encode a datagram'])}; "
                 f"{duration(m['tlsrpt/send to a collectd socket'])} / "
                 f"{duration(m['tlsrpt/send with no collectd'])}; "
                 f"{duration(m['tlsrpt/report (ledger row in a database file)'])}", "—", ""))
    rows.append(fleet_row(out))
    print("# Benchmarks\n")
    print("The latest run of `scripts/bench` (written by it; do not edit by hand). Decide cases, "
          "in order: " + ", ".join(f"`{c}`" for c in CASES) + " (the jco rows have the first "
          "three). Medians from criterion; throughput is the best of three runs. How these costs grow "
          "with the peers stored (10^3 to 10^6, SQLite and Redis), the log's volume and a year of "
          "time: [scale.md](scale.md) (`scripts/bench-scale`), with its curves.\n")
    print(f"- Date: {datetime.date.today().isoformat()}")
    print(f"- Machine: {cpu.strip()}, {os.cpu_count()} cores, {platform.system()} "
          f"{platform.release()}")
    print(f"- Toolchain: {command_output('rustc', '--version')}; wasmtime 48.0.8; "
          f"jco {command_output('npx', '--prefix', 'benchmarks/js', 'jco', '--version')}")
    print("- Command: `scripts/bench`\n")
    print("| # | measure | result | target | |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nWhy the misses, and what was tried: see the closing note of the performance issue "
          "and the \"Performance\" section of the README.")


if __name__ == "__main__":
    main()
