"""Collects the parity counts so the run ends with one line saying how much was compared."""

from __future__ import annotations

from collections import Counter

import pytest

PARITY_COUNTS: Counter[str] = Counter()


@pytest.fixture
def parity_counts() -> Counter[str]:
    return PARITY_COUNTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if PARITY_COUNTS:
        counts = ", ".join(f"{name}={count}" for name, count in sorted(PARITY_COUNTS.items()))
        terminalreporter.write_sep("-", f"optimizely-sdk parity: {counts}")
