"""k-fold cross-validation of the uninorm aggregator against the baselines (Tables II/III).

For each fold: train the neutral elements on the other folds' clips, predict the held-out clips with
the uninorm layer and both baselines, score each fold (weighted F1/precision/recall); pool the
predictions into one confusion matrix per method. The uninorm is trained twice per fold: with the
published objective (``uninorm``) and with the logit variant (``uninorm_logit``, see
``train.aggregator.training``); the table keeps both apart. Both use the config's ``selection`` (the
published "last" epoch by default, or "best-loss"). The held-out order logits of the published uninorm
give the clip-probability temperature (``train.aggregator.temperature``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from train.aggregator.baselines import BASELINES
from train.aggregator.data import ClipProbs
from train.aggregator.metrics import fold_scores, pooled_confusion, summarise
from train.aggregator.temperature import clip_logits_per_frame, fit_temperature, nll
from train.aggregator.training import FitConfig, fit_uninorm, mean_sord_loss, predict_uninorm

UNINORMS = {"uninorm": "published", "uninorm_logit": "logit"}
METHODS = (*UNINORMS, *BASELINES)


@dataclass
class CrossValResult:
    metrics: dict[str, Any]
    confusions: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    held_out_logits: np.ndarray | None = None  # [clips, 4] logit(v)/n of each clip from its test fold


def cross_validate(
    clips: list[ClipProbs], folds: np.ndarray, config: FitConfig | None = None, progress: bool = True
) -> CrossValResult:
    cfg = config or FitConfig()
    labels = np.array([c.label for c in clips])
    preds = {m: np.full(len(clips), -1) for m in METHODS}
    held_out_logits = np.zeros((len(clips), 4))
    per_fold: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    fold_info: list[dict[str, Any]] = []
    for k in tqdm(sorted(set(folds.tolist())), desc="aggregator folds", disable=not progress):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k)
        train_clips = [clips[i] for i in train]
        test_clips = [clips[i] for i in test]
        info: dict[str, Any] = {"fold": int(k), "n_train": int(train.size), "n_test": int(test.size)}
        for name, objective in UNINORMS.items():
            fit = fit_uninorm(train_clips, dataclasses.replace(cfg, objective=objective))
            preds[name][test] = predict_uninorm(test_clips, fit.neutral_elements)
            if name == "uninorm":  # held-out order logits / n, for the clip-probability temperature
                for i, c in zip(test, test_clips, strict=True):
                    held_out_logits[i] = clip_logits_per_frame(c.probs, fit.neutral_elements)
            info[name] = {
                "neutral_elements": fit.neutral_elements,
                "selection": fit.selection,
                "epochs_run": len(fit.losses),
                "kept_epoch": fit.best_epoch,  # optimiser steps behind the kept neutral elements
                "train_loss_first": fit.losses[0] / len(train_clips),
                "train_loss_kept": fit.kept_loss / len(train_clips),
                "test_loss": mean_sord_loss(test_clips, fit.neutral_elements, cfg.sord_gap, objective),
            }
        for name, rule in BASELINES.items():
            preds[name][test] = [rule(c.probs) for c in test_clips]
        for m in METHODS:
            per_fold[m].append(fold_scores(labels[test], preds[m][test]))
            info[f"f1_{m}"] = per_fold[m][-1]["f1"]
        fold_info.append(info)
    metrics: dict[str, Any] = {m: {**summarise(per_fold[m]), "per_fold": per_fold[m]} for m in METHODS}
    for name in UNINORMS:
        metrics[name]["objective"] = UNINORMS[name]
        metrics[name]["neutral_elements_per_fold"] = [f[name]["neutral_elements"] for f in fold_info]
    metrics["neutral_elements_per_fold"] = metrics["uninorm"]["neutral_elements_per_fold"]
    metrics["folds"] = fold_info
    confusions = {m: pooled_confusion(labels, preds[m]) for m in METHODS}
    for m in METHODS:
        metrics[m]["confusion_pooled"] = confusions[m].tolist()
    tau = fit_temperature(held_out_logits, labels)
    metrics["uninorm"]["temperature"] = tau
    metrics["uninorm"]["held_out_nll"] = {"tau_1": nll(1.0, held_out_logits, labels),
                                          "fitted": nll(tau, held_out_logits, labels)}
    return CrossValResult(metrics=metrics, confusions=confusions, predictions=preds,
                          held_out_logits=held_out_logits)
