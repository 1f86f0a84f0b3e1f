"""Shared check of the tests: a freshly simulated sweep row against its shipped copy."""

import pytest


def assert_same_row(fresh: dict, shipped: dict, label: str) -> None:
    """Every column of ``fresh`` (``sweep.run_point``) equals ``shipped``'s: numbers to 1e-12,
    text and counts exactly (the bottleneck label included)."""
    for k, v in fresh.items():
        if isinstance(v, float):
            assert v == pytest.approx(shipped[k], rel=1e-12, nan_ok=True), (label, k)
        else:
            assert v == shipped[k], (label, k)
