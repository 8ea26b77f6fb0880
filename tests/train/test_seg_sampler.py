"""Balanced sampler: scores follow 0,0,0,1,2,3 and patients are drawn uniformly within a score."""

from __future__ import annotations

import numpy as np
import pytest

from train.seg.sampler import BalancedSampler


def test_score_pattern_and_patient_balance() -> None:
    # patient A: 90 score-0 frames, patient B: 10 score-0 frames; scores 1-3 from patient C only
    scores = np.array([0] * 90 + [0] * 10 + [1] * 5 + [2] * 30 + [3] * 3)
    patients = np.array(["A"] * 90 + ["B"] * 10 + ["C"] * 38)
    n = 6000
    idx = np.array(list(BalancedSampler(scores, patients, num_samples=n, seed=1)))
    assert len(idx) == n
    drawn = scores[idx]
    assert (drawn[:6] == [0, 0, 0, 1, 2, 3]).all()
    assert np.allclose(np.bincount(drawn, minlength=4) / n, [3 / 6, 1 / 6, 1 / 6, 1 / 6])
    zero = idx[drawn == 0]
    frac_a = (patients[zero] == "A").mean()
    assert abs(frac_a - 0.5) < 0.03  # not 0.9: patients, not frames, are balanced


def test_missing_scores_are_skipped_and_same_seed_same_sequence() -> None:
    scores = np.array([0, 0, 2, 2])
    patients = np.array(["a", "b", "a", "b"])
    s = BalancedSampler(scores, patients, num_samples=40, seed=5)
    drawn = scores[list(s)]
    assert set(drawn.tolist()) == {0, 2} and (drawn == 0).sum() == 30
    assert list(BalancedSampler(scores, patients, 40, seed=5)) == list(
        BalancedSampler(scores, patients, 40, seed=5)
    )
    with pytest.raises(ValueError, match="pattern"):
        BalancedSampler(scores, patients, 4, pattern=(1, 3))
