"""Clip-level metrics for real clips with expert clip scores (scikit-learn / scipy).

Per fold: weighted F1 (per-score F1 weighted by the number of clips with that score, as the paper's
Table II), accuracy, quadratic weighted Cohen kappa, mean absolute error in score points, and the
healthy (0) vs abnormal (≥ 1) ROC AUC from the clip probabilities (P(abnormal) = 1 − p0; undefined,
reported as None, when a fold holds only one of the two). Per patient: the Spearman correlation
between the experts' and the model's sums of clip scores over the patient's clips (the exam total),
over the patients of a fold. Summaries are [mean, std] over folds (population std), skipping None.

Edge cases: a fold where every clip has the same score has a kappa of 0 by sklearn's convention
when the predictions vary, and NaN (reported None) when both are constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

LABELS = [0, 1, 2, 3]
METRICS = ("f1", "accuracy", "kappa", "mae", "auc", "spearman")


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def patient_sums(patients: Sequence[str], scores: Sequence[int]) -> dict[str, int]:
    sums: dict[str, int] = {}
    for p, s in zip(patients, scores, strict=True):
        sums[p] = sums.get(p, 0) + int(s)
    return sums


def clip_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], p_abnormal: Sequence[float], patients: Sequence[str]
) -> dict[str, float | None]:
    """The metrics of one fold (see the module docstring)."""
    t, p = np.asarray(y_true, int), np.asarray(y_pred, int)
    healthy = (t == 0).astype(int)
    auc = None
    if 0 < healthy.sum() < len(t):
        auc = float(roc_auc_score(1 - healthy, np.asarray(p_abnormal, float)))
    with np.errstate(all="ignore"):
        kappa = cohen_kappa_score(t, p, labels=LABELS, weights="quadratic")
    truth, pred = patient_sums(patients, t), patient_sums(patients, p)
    keys = sorted(truth)
    rho = None
    if len(keys) > 2 and len({truth[k] for k in keys}) > 1 and len({pred[k] for k in keys}) > 1:
        rho = float(spearmanr([truth[k] for k in keys], [pred[k] for k in keys]).statistic)
    return {
        "f1": float(f1_score(t, p, labels=LABELS, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(t, p)),
        "kappa": _finite(float(kappa)),
        "mae": float(np.abs(t - p).mean()),
        "auc": auc,
        "spearman": _finite(rho) if rho is not None else None,
    }


def summarise(per_fold: Sequence[dict[str, float | None]]) -> dict[str, list[float] | None]:
    """{metric: [mean, std]} over folds, None where no fold had a value."""
    out: dict[str, list[float] | None] = {}
    for key in METRICS:
        vals = np.array([d[key] for d in per_fold if d.get(key) is not None], dtype=float)
        out[key] = [float(vals.mean()), float(vals.std())] if len(vals) else None
    return out
