"""The fuzz tests: the integration tests' helpers (real servers on free loopback ports) are
importable here, and a test's time limit grows with the budget (a deeper run on demand:
``FLOWHOST_FUZZ_EXAMPLES=5000 pytest tests/fuzz``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fuzzing import BUDGET, DEFAULT_BUDGET

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

TIMEOUT_S = 120  # pyproject's, for the default budget


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if BUDGET <= DEFAULT_BUDGET:
        return
    scaled = pytest.mark.timeout(TIMEOUT_S * BUDGET / DEFAULT_BUDGET)
    for item in items:
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(scaled)
