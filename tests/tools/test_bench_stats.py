"""Benchmark statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from stream.bench.stats import cpu_percent, missing_sequence_numbers, rate_per_s, summarise_ns


def test_percentiles_interpolate_linearly() -> None:
    s = summarise_ns([1_000_000, 2_000_000, 3_000_000, 4_000_000])  # 1..4 ms
    assert s.n == 4
    assert s.mean_ms == pytest.approx(2.5)
    assert s.p50_ms == pytest.approx(2.5)
    assert s.p95_ms == pytest.approx(3.85)  # 1 + 0.95 * 3
    assert s.p99_ms == pytest.approx(3.97)
    assert s.max_ms == pytest.approx(4.0)


def test_empty_samples_are_nan_not_zero() -> None:
    s = summarise_ns([])
    assert s.n == 0 and math.isnan(s.p99_ms)


def test_rate_counts_intervals_not_events() -> None:
    # 31 frames from t=0 to t=1 s are 30 intervals: 30 frames/s.
    assert rate_per_s(31, 0, 1_000_000_000) == pytest.approx(30.0)
    assert math.isnan(rate_per_s(1, 0, 10))
    assert math.isnan(rate_per_s(5, 10, 10))


def test_missing_sequence_numbers() -> None:
    assert missing_sequence_numbers([3, 4, 6, 9]) == [5, 7, 8]
    assert missing_sequence_numbers([]) == []


def test_cpu_percent() -> None:
    assert cpu_percent(3.0, 2.0) == pytest.approx(150.0)
