"""``python -m tlsfallback [--wasm FILE]``: the JSON Lines protocol of ``tlsfallback decide``.

One request object per stdin line, one response per stdout line; blank lines are skipped; a bad
line gets ``{"line": N, "error": "..."}`` and the stream goes on. (No policy file: a request's
``policy`` overrides apply to the default policy of contract.json.)
"""

import argparse
import json
import sys

from ._engine import Engine, EngineError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tlsfallback", description=__doc__.splitlines()[0])
    parser.add_argument("--wasm", help="the component file (default: $TLSFALLBACK_WASM, else packaged)")
    args = parser.parse_args()
    engine = Engine(args.wasm)
    out = sys.stdout
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            response = engine.decide_json(json.loads(line))
        except (ValueError, TypeError, EngineError) as e:
            response = {"line": number, "error": str(e)}
        out.write(json.dumps(response, separators=(",", ":")) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
