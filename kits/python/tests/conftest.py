import json
import os
from pathlib import Path

import pytest

from tlsfallback import Engine

KIT = Path(__file__).resolve().parent.parent
VECTORS = KIT.parent / "vectors" / "decide.jsonl"


def load_vectors():
    with open(VECTORS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def engine():
    return Engine()
