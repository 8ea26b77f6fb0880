"""Simulated clinicians: agreement near the configured value, consensus rule, Setting-3 helper."""

from __future__ import annotations

import numpy as np
import pytest

from synth import agreement_rate, consensus_score, max_agreeing, simulate_clinicians


@pytest.mark.parametrize("p", [0.67, 0.9])
def test_agreement_rate_near_configured(p: float) -> None:
    rng = np.random.default_rng(0)
    videos = [simulate_clinicians(int(rng.integers(0, 4)), rng, 5, p) for _ in range(600)]
    assert all(len(v) == 5 and set(v) <= {0, 1, 2, 3} for v in videos)
    assert abs(agreement_rate(videos) - p) < 0.05


def test_agreement_rate_by_hand() -> None:
    # Doctor vs rounded mean of the other four: [1,1,1,1,2] → four hits (mean 1.25 → 1), one miss (1 ≠ 2).
    assert agreement_rate([[1, 1, 1, 1, 2]]) == pytest.approx(4 / 5)
    assert agreement_rate([[3, 3, 3, 3, 3]]) == 1.0


def test_consensus_and_max_agreeing() -> None:
    assert consensus_score([0] * 95 + [3] * 5) == 0  # 5 % of score 3 is not "clearly visible"
    assert consensus_score([0] * 80 + [2] * 20) == 2
    assert max_agreeing([1, 1, 2, 1, 0]) == 3 and max_agreeing([2, 2, 2, 2, 2]) == 5
    with pytest.raises(ValueError, match="at least one"):
        consensus_score([])
