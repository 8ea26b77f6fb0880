"""How well can the uninorm layer do at all on a set of clips? A grid search over its four neutral
elements, scored by weighted F1 directly (Roy et al. 2020 §IV-B, Eq. 8–9; Table II's metric).

The published training (``train.aggregator.training``) fits ``e`` by the SORD loss of a softmax over
the aggregates; that loss need not be minimised where the F1 is highest. This module removes the
question of the objective and the optimiser:

- **in sample**: the grid point with the best F1 on all clips — an optimistic upper bound for the
  layer on this data (four parameters chosen on the clips they are scored on);
- **cross-validated**: per fold, the grid point with the best F1 on the training folds, scored on
  the held-out fold — what the best possible fit of the four parameters gives on unseen patients.

If even the cross-validated grid fit does not beat ``max_argmax``, no training objective for this
layer will: the frame probabilities leave the uninorm nothing to add over the hard rule.

Predictions use the exact ordering of the aggregates (``state_to_logit``), as ``predict_uninorm`` does.
Ties in F1 go to the first grid point in ``itertools.product`` order (the smaller neutral elements).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from train.aggregator.baselines import BASELINES
from train.aggregator.data import ClipProbs
from train.aggregator.training import pad_clips
from train.models.uninorm import N_SCORES, state_to_logit, uninorm_log_state

GRID = (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def weighted_f1_rows(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Weighted F1 (scikit-learn's ``average="weighted"``, ``zero_division=0``, labels 0–3) of every
    row of ``y_pred`` ([R, N]) against ``y_true`` ([N]), vectorised over the rows."""
    y_true = np.asarray(y_true)
    y_pred = np.atleast_2d(y_pred)
    f1 = np.zeros(y_pred.shape[0])
    for c in range(N_SCORES):
        is_true = y_true == c
        support = int(is_true.sum())
        if support == 0:
            continue
        is_pred = y_pred == c
        tp = (is_pred & is_true).sum(axis=1)
        denom = is_pred.sum(axis=1) + support  # 2·tp + fp + fn
        f1 += support / y_true.size * np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1


def grid_predictions(clips: list[ClipProbs], grid: Sequence[float] = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Every combination of neutral elements on ``grid`` ([G⁴, 4]) and the clip scores each predicts
    ([G⁴, n_clips])."""
    probs, mask = pad_clips(clips)
    logits = np.empty((N_SCORES, len(grid), len(clips)))
    for c in range(N_SCORES):
        for g, value in enumerate(grid):
            e = torch.tensor([value], dtype=torch.float64)
            logits[c, g] = state_to_logit(*uninorm_log_state(probs[..., c : c + 1], e, mask), e)[:, 0].numpy()
    index = np.array(list(itertools.product(range(len(grid)), repeat=N_SCORES)))
    per_combo = np.stack([logits[c, index[:, c]] for c in range(N_SCORES)], axis=1)  # [G⁴, 4, n]
    return np.asarray(grid, dtype=np.float64)[index], per_combo.argmax(axis=1)


def uninorm_ceiling(
    clips: list[ClipProbs], folds: np.ndarray, grid: Sequence[float] = GRID
) -> dict[str, Any]:
    """In-sample and cross-validated grid fits of the neutral elements, next to the baselines."""
    labels = np.array([c.label for c in clips])
    combos, preds = grid_predictions(clips, grid)
    f1_all = weighted_f1_rows(labels, preds)
    best = int(np.argmax(f1_all))
    per_fold: list[dict[str, Any]] = []
    baseline_preds = {name: np.array([rule(c.probs) for c in clips]) for name, rule in BASELINES.items()}
    baseline_f1: dict[str, list[float]] = {name: [] for name in BASELINES}
    for k in sorted(set(folds.tolist())):
        train, test = folds != k, folds == k
        f1_train = weighted_f1_rows(labels[train], preds[:, train])
        pick = int(np.argmax(f1_train))
        test_f1 = float(weighted_f1_rows(labels[test], preds[pick, test])[0])
        per_fold.append(
            {
                "fold": int(k),
                "neutral_elements": combos[pick].tolist(),
                "train_f1": float(f1_train[pick]),
                "f1": test_f1,
            }
        )
        for name, pred in baseline_preds.items():
            baseline_f1[name].append(float(weighted_f1_rows(labels[test], pred[test])[0]))
    out: dict[str, Any] = {
        "grid": list(map(float, grid)),
        "in_sample": {"neutral_elements": combos[best].tolist(), "f1": float(f1_all[best])},
        "cross_validated": {"f1": _mean_std([f["f1"] for f in per_fold]), "per_fold": per_fold},
    }
    for name, values in baseline_f1.items():
        out[name] = {"f1": _mean_std(values), "per_fold": values}
    return out


def _mean_std(values: list[float]) -> list[float]:
    """[mean, population std] over folds, as in ``train.aggregator.metrics.summarise``."""
    return [float(np.mean(values)), float(np.std(values))]
