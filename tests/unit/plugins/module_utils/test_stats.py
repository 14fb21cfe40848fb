from __future__ import annotations

import statistics

import pytest

from ansible_collections.emp.deploy.plugins.module_utils._stats import percentile, summarize


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 0.95) == pytest.approx(3.85)
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 4.0


def test_percentile_matches_statistics_quantiles_inclusive():
    values = sorted(float(v * 7 % 101) for v in range(1, 200))
    expected = statistics.quantiles(values, n=100, method="inclusive")
    assert percentile(values, 0.95) == pytest.approx(expected[94])
    assert percentile(values, 0.50) == pytest.approx(expected[49])


def test_empty_and_single():
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.99) == 3.0
    assert summarize([]) == {"samples": 0, "min": None, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}


def test_summarize_orders_and_rounds():
    figures = summarize([3.33333, 1.11111, 2.22222])
    assert figures["samples"] == 3
    assert figures["min"] == 1.111 and figures["max"] == 3.333 and figures["p50"] == 2.222
