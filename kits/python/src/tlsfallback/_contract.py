"""Locating the component file and loading ``contract.json``.

``contract.json`` (the default policy, the reason explanations and the history-error messages) is
generated from the Rust engine next to the shared test vectors. It is read at runtime, never
copied into code: from the package directory when present (an installed package, where the test
script copies it), else from ``kits/vectors/contract.json`` of a source checkout.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional

PACKAGE_DIR = Path(__file__).resolve().parent

#: Environment variable naming the component file (``tlsfallback export-component FILE``).
WASM_ENV = "TLSFALLBACK_WASM"
#: Environment variable naming ``contract.json`` (optional; overrides the search below).
CONTRACT_ENV = "TLSFALLBACK_CONTRACT"


def component_path(explicit: Optional[os.PathLike | str] = None) -> Path:
    """The component file to load: ``explicit``, else ``$TLSFALLBACK_WASM``, else the package's
    ``policy_engine.wasm``. Raises :class:`FileNotFoundError` naming what was tried."""
    if explicit is not None:
        candidates = [("component_path argument", Path(explicit))]
    elif os.environ.get(WASM_ENV):
        candidates = [(f"${WASM_ENV}", Path(os.environ[WASM_ENV]))]
    else:
        candidates = [("package default", PACKAGE_DIR / "policy_engine.wasm")]
    for _origin, path in candidates:
        if path.is_file():
            return path
    origin, path = candidates[0]
    raise FileNotFoundError(
        f"tlsfallback component not found at {path} ({origin}); set {WASM_ENV} to the file "
        f"written by `tlsfallback export-component FILE`, or copy it to "
        f"{PACKAGE_DIR / 'policy_engine.wasm'}"
    )


def contract_path() -> Path:
    """Where ``contract.json`` is read from."""
    tried = []
    if os.environ.get(CONTRACT_ENV):
        tried.append(Path(os.environ[CONTRACT_ENV]))
    tried.append(PACKAGE_DIR / "contract.json")
    tried.append(PACKAGE_DIR.parent.parent.parent / "vectors" / "contract.json")
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "tlsfallback contract.json not found; tried " + ", ".join(str(p) for p in tried)
    )


@lru_cache(maxsize=1)
def contract() -> Dict[str, Any]:
    """The parsed ``contract.json`` (read once)."""
    path = contract_path()
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for key in ("default_policy", "explanations", "history_errors"):
        if not isinstance(data.get(key), dict):
            raise ValueError(f"{path}: missing or invalid {key!r}")
    return data
