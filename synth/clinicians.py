"""Simulated clinicians' video-level scores (ICLUS-DB gives five per video, Roy et al. 2020 §III).

The consensus (true) video score is the highest frame score that covers at least
``min_fraction`` of the clip (a clinician reports the worst finding that is clearly visible).
Each clinician independently gives the consensus with probability q and otherwise a neighbouring
score (±1, reflected inside 0..3). ``agreement`` is the paper's measured inter-operator agreement
(each doctor against the rounded mean of the other four, averaged; about 67 % in ICLUS-DB), which
:func:`agreement_rate` computes; :func:`clinician_accuracy` finds the q that gives it (exactly, by
enumerating all answer patterns), so the simulated videos show the configured agreement.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np


def consensus_score(frame_scores: Sequence[int] | np.ndarray, min_fraction: float = 0.1) -> int:
    """Highest score present on at least ``min_fraction`` of the frames (0..3)."""
    s = np.asarray(frame_scores, dtype=np.int64)
    if s.size == 0:
        raise ValueError("consensus_score needs at least one frame score")
    counts = np.bincount(s, minlength=4)
    ok = np.nonzero(counts >= max(1.0, min_fraction * s.size))[0]
    return int(ok.max()) if ok.size else int(s.max())


@lru_cache(maxsize=64)
def clinician_accuracy(agreement: float, n: int = 5) -> float:
    """Per-clinician P(consensus) that makes :func:`agreement_rate` come out at ``agreement``.

    Exact: enumerate every pattern of right / one-above / one-below over the ``n`` clinicians for
    each true score 0..3 (uniform), then bisect on the per-clinician probability.
    """
    if n < 2:
        return agreement
    patterns = np.array(list(itertools.product((0, 1, -1), repeat=n)))  # 0 = right, ±1 = neighbour
    n_right = (patterns == 0).sum(axis=1)
    agree_by_true = []
    for true in range(4):
        s = true + patterns
        s = np.where((s < 0) | (s > 3), true - patterns, s)  # reflected at the ends, as simulated
        hits = np.zeros(len(patterns))
        for i in range(n):
            others = np.delete(s, i, axis=1).mean(axis=1)
            hits += s[:, i] == np.floor(others + 0.5)
        agree_by_true.append(hits / n)
    agree = np.mean(agree_by_true, axis=0)

    def expected(q: float) -> float:
        prob = q**n_right * ((1 - q) / 2) ** (n - n_right)
        return float((prob * agree).sum())

    lo, hi = 0.0, 1.0
    if agreement <= expected(lo):
        return lo
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected(mid) < agreement else (lo, mid)
    return (lo + hi) / 2


def simulate_clinicians(
    true_score: int, rng: np.random.Generator, n: int = 5, agreement: float = 0.67
) -> list[int]:
    """``n`` video scores whose :func:`agreement_rate` is ``agreement`` on average."""
    q = clinician_accuracy(float(agreement), int(n))
    out = []
    for _ in range(n):
        if rng.random() < q:
            out.append(int(true_score))
            continue
        step = 1 if rng.random() < 0.5 else -1
        s = true_score + step
        if not 0 <= s <= 3:
            s = true_score - step
        out.append(int(s))
    return out


def agreement_rate(video_scores: Sequence[Sequence[int]]) -> float:
    """Paper's inter-operator agreement: each doctor vs the rounded mean of the others, averaged."""
    hits, total = 0, 0
    for scores in video_scores:
        s = np.asarray(scores, dtype=float)
        if s.size < 2:
            continue
        for i in range(s.size):
            others = np.delete(s, i)
            hits += int(s[i] == np.floor(others.mean() + 0.5))
            total += 1
    if total == 0:
        raise ValueError("agreement_rate needs at least one video with two or more clinicians' scores")
    return hits / total


def max_agreeing(scores: Sequence[int]) -> int:
    """How many clinicians gave the most common score (Setting 3 keeps videos with >= A)."""
    if len(scores) == 0:
        return 0
    return int(np.bincount(np.asarray(scores, dtype=np.int64), minlength=4).max())
