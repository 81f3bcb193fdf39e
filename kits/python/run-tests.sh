#!/bin/sh
# Runs the Python kit's tests: creates .venv if missing, installs the package (editable) with its
# dev extra, copies contract.json into the package, runs pytest.
# Needs TLSFALLBACK_WASM (the file `tlsfallback export-component FILE` writes) unless
# src/tlsfallback/policy_engine.wasm is already there.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ -z "${TLSFALLBACK_WASM:-}" ] && [ ! -f src/tlsfallback/policy_engine.wasm ]; then
    echo "run-tests.sh: set TLSFALLBACK_WASM to the component file (tlsfallback export-component FILE)" >&2
    exit 2
fi
if [ -n "${TLSFALLBACK_WASM:-}" ] && [ ! -f "$TLSFALLBACK_WASM" ]; then
    echo "run-tests.sh: TLSFALLBACK_WASM=$TLSFALLBACK_WASM: no such file" >&2
    exit 2
fi
cp ../vectors/contract.json src/tlsfallback/contract.json
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
exec .venv/bin/python -m pytest -q "$@"
