"""Clip-probability calibration: the temperature τ of ``softmax(τ · logit(v) / n)``.

The runtime's clip probabilities (``stream.aggregate``, ``docs/wire.md``) are the softmax of the four
exact order logits ``logit(v_c)`` of the uninorm folds divided by the clip's frame count ``n`` and scaled
by τ. Dividing by ``n`` keeps the order (the clip score is unchanged) and stops the logits growing with
the clip's length; τ makes the resulting confidence calibrated. Without it the paper's ``softmax(v)`` of
four values in [0, 1] can never exceed e:1 between two scores and flattens to 0.25 on long clips.

τ is fitted on HELD-OUT clips: in each cross-validation fold the neutral elements are trained on the
other folds and the logits are taken on the fold's own clips; the pooled (logits/n, label) pairs then
give τ = argmin over τ of the mean negative log-likelihood (a 1-D convex problem in τ: the NLL of a
softmax is convex in a scalar multiplier of fixed logits). Edge cases: a clip whose folds saturate to
±inf is capped at ±1e4 first (as at run time); if every held-out logit vector is constant the NLL does
not depend on τ and τ = 1 is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOGIT_CAP = 1e4  # as stream.aggregate._LOGIT_CAP
TAU_BOUNDS = (1e-3, 1e3)


def clip_logits_per_frame(probs: np.ndarray, neutral_elements: Sequence[float]) -> np.ndarray:
    """``logit(v_c) / n`` [4] for one clip's frame probabilities [n, 4], computed by the runtime's own
    streaming aggregator (so training and engine agree to the bit)."""
    from stream.aggregate import UninormClipAggregator

    agg = UninormClipAggregator(neutral_elements)
    for row in probs:
        agg.update(row)
    keys = np.clip(np.array(agg.order_keys(), np.float64), -LOGIT_CAP, LOGIT_CAP)
    return keys / max(1, len(probs))


def nll(tau: float, z: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``softmax(tau · z)`` for rows ``z`` [N, 4] and integer labels [N]."""
    s = tau * z
    s = s - s.max(axis=1, keepdims=True)
    log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(z: np.ndarray, labels: Sequence[int]) -> float:
    """τ minimising :func:`nll` over :data:`TAU_BOUNDS` (bounded search in log τ)."""
    from scipy.optimize import minimize_scalar

    z, y = np.asarray(z, np.float64), np.asarray(labels, np.int64)
    if z.ndim != 2 or z.shape[1] != 4 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"fit_temperature: need logits [N, 4] and N labels, got {z.shape} and {len(y)}")
    if np.all(np.ptp(z, axis=1) == 0):
        return 1.0
    lo, hi = np.log(TAU_BOUNDS)
    res = minimize_scalar(lambda t: nll(float(np.exp(t)), z, y), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))
