#!/usr/bin/env python3
"""Writes N `tlsfallback decide` request lines to stdout: a realistic mix of delivery starts for
unknown and remembered peers, step-downs after alerts, successes and DANE deliveries.

The history blobs are real ones (written by the engine for the same situations), so the engine
does its full work on every line: decode, decide, encode.

Usage: requests.py TLSFALLBACK_BINARY N > requests.jsonl
"""
import json
import subprocess
import sys

# {start}: the blob of a delivery just started for an unknown peer; {legacy}: a legacy-only peer
# after its delivery; {modern}: a modern peer after its delivery (pinned). Asked of the engine
# itself, so they follow the history format.
TEMPLATES = [
    '{{"peer":"mx{i}.example.net","now":{now}}}',
    '{{"peer":"mx{i}.example.net","now":{now},"history":"{start}","last":{{"tier":"modern-tls","outcome":"tls-alert","alert":"protocol-version"}}}}',
    '{{"peer":"mx{i}.example.net","now":{now},"history":"{start}","last":{{"tier":"modern-tls","outcome":"success","version":"TLSv1.3","cipher":"TLS_AES_256_GCM_SHA384"}}}}',
    '{{"peer":"mx{i}.example.net","now":{now},"history":"{legacy}"}}',
    '{{"peer":"mx{i}.example.net","now":{now},"history":"{modern}","context":{{"dane":"usable"}}}}',
    '{{"peer":"mx{i}.example.net","now":{now},"history":"{modern}","last":{{"tier":"modern-tls","outcome":"starttls-not-offered"}}}}',
]


NOW = 1_767_225_600


def ask(binary: str, request: dict) -> dict:
    request = {"peer": "mx.example.net", "now": NOW, **request}
    out = subprocess.run([binary, "decide"], input=json.dumps(request), capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def deliver(binary: str, outcome_at) -> str:
    """Runs one delivery against a peer answering each tier with outcome_at(tier)."""
    response = ask(binary, {})
    while response["action"] == "attempt":
        response = ask(binary, {"history": response["history"], "last": outcome_at(response["tier"])})
    return response["history"]


def main() -> None:
    binary, count = sys.argv[1], int(sys.argv[2])
    blobs = {
        "start": ask(binary, {})["history"],
        "legacy": deliver(binary, lambda tier: {"tier": tier, "outcome": "success", "version": "TLSv1"}
                          if tier == "legacy-tls" else
                          {"tier": tier, "outcome": "tls-alert", "alert": "protocol-version"}),
        "modern": deliver(binary, lambda tier: {"tier": tier, "outcome": "success",
                                                "version": "TLSv1.3"}),
    }
    out = sys.stdout
    now = NOW
    lines = []
    for i in range(count):
        template = TEMPLATES[i % len(TEMPLATES)]
        lines.append(template.format(i=i % 1000, now=now + i, **blobs))
        if len(lines) == 10_000:
            out.write("\n".join(lines) + "\n")
            lines = []
    if lines:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
