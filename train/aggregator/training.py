"""Training the uninorm aggregation layer as published (§IV-B.3–4).

SORD loss on the clip label (gap g = 0.5 for video scores), Adam lr 1e-2 without weight decay or
schedule, the loss of every training clip summed and ONE optimiser step per epoch, 30 epochs, the
neutral elements started at 0 and clamped to [0, 1] after each step. Everything runs in float64: the
layer has four parameters, and float64 keeps long clips' aggregates apart.

Which neutral elements are kept (``FitConfig.selection``):

- ``"last"`` (default; the authors' published command): no early stopping, all ``epochs`` steps are
  taken and the neutral elements after the last (30th) optimiser step are returned.
- ``"best-loss"`` (our earlier rule, an option): the loss is evaluated at each epoch's start (before
  its step) and the neutral elements with the lowest training loss are kept; training stops after
  ``patience`` epochs without improvement.

Objective ``"published"``: the softmax's inputs are the four aggregates ``v ∈ [0, 1]`` (§IV-B). On long
clips these sit at ≈ 0 or ≈ 1, the softmax is nearly flat and the gradient with respect to ``e``
vanishes, so training often cannot move away from ``e = 0`` (docs/aggregation.md has the numbers).
Objective ``"logit"`` (our variant, not in the paper): the same layer and the same SORD loss, but the
softmax's inputs are ``logit(v) = log v − log(1 − v)`` (a monotone map of ``v``, so the predicted score
— the argmax — is computed the same way), which keeps the loss informative on long clips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from train.aggregator.data import ClipProbs
from train.losses.sord import sord_targets
from train.models.uninorm import UninormAggregator

log = logging.getLogger(__name__)


def video_sord_targets(labels: torch.Tensor, m: float = 2.0, gap: float = 0.5) -> torch.Tensor:
    """SORD soft labels for clip scores (Eq. 5; score 0 at −gap, gap 0.5 for videos), float64."""
    return sord_targets(labels, n_classes=4, m=m, gap=gap).double()


SELECTIONS = ("last", "best-loss")


@dataclass
class FitConfig:
    """Published settings (``selection="last"``); ``patience`` is ours and only used by "best-loss"."""

    lr: float = 1e-2
    epochs: int = 30
    patience: int = 5
    sord_gap: float = 0.5
    sord_m: float = 2.0
    init: float = 0.0
    objective: str = "published"  # or "logit" (see the module docstring)
    selection: str = "last"  # or "best-loss" (see the module docstring)


@dataclass
class FitResult:
    """``losses[i]``: summed training loss at epoch i's start, i.e. after i optimiser steps.

    ``best_epoch`` is the number of optimiser steps behind the returned neutral elements (= ``epochs``
    for "last"; the lowest-loss epoch for "best-loss"); ``kept_loss`` their summed training loss.
    """

    neutral_elements: list[float]
    losses: list[float] = field(default_factory=list)
    best_epoch: int = 0
    kept_loss: float = float("nan")
    selection: str = "last"


def pad_clips(clips: list[ClipProbs]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips → padded probabilities [B, T_max, 4] (float64) and a presence mask [B, T_max]."""
    t_max = max(len(c.probs) for c in clips)
    probs = torch.zeros(len(clips), t_max, clips[0].probs.shape[1], dtype=torch.float64)
    mask = torch.zeros(len(clips), t_max, dtype=torch.bool)
    for i, c in enumerate(clips):
        probs[i, : len(c.probs)] = torch.from_numpy(np.asarray(c.probs, dtype=np.float64))
        mask[i, : len(c.probs)] = True
    return probs, mask


OBJECTIVES = ("published", "logit")
_LOGIT_CAP = 1e4  # keeps log_softmax finite if a logit is ±inf (exact 0/1 aggregates)


def summed_sord_loss(
    model: UninormAggregator,
    probs: torch.Tensor,
    mask: torch.Tensor,
    targets: torch.Tensor,
    objective: str = "published",
) -> torch.Tensor:
    """Σ over clips of the SORD cross-entropy between soft targets and the layer's softmax."""
    if objective == "published":
        logits = model.aggregates(probs, mask)
    elif objective == "logit":
        logits = model.order_logits(probs, mask).clamp(-_LOGIT_CAP, _LOGIT_CAP)
    else:
        raise ValueError(f"objective {objective!r} must be one of {list(OBJECTIVES)}")
    return -(targets * torch.log_softmax(logits, dim=-1)).sum()


def fit_uninorm(clips: list[ClipProbs], config: FitConfig | None = None) -> FitResult:
    """Train the four neutral elements on ``clips``; which ones are returned: ``config.selection``."""
    cfg = config or FitConfig()
    if cfg.selection not in SELECTIONS:
        raise ValueError(f"selection {cfg.selection!r} must be one of {list(SELECTIONS)}")
    model = UninormAggregator(init=cfg.init).double()
    probs, mask = pad_clips(clips)
    labels = torch.tensor([c.label for c in clips])
    targets = video_sord_targets(labels, m=cfg.sord_m, gap=cfg.sord_gap)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    result = FitResult(neutral_elements=model.neutral_elements, selection=cfg.selection)
    best = float("inf")
    for epoch in range(cfg.epochs):
        opt.zero_grad()
        loss = summed_sord_loss(model, probs, mask, targets, cfg.objective)  # all clips' gradients, summed
        loss.backward()
        value = float(loss.detach())
        result.losses.append(value)
        if cfg.selection == "best-loss":
            if value < best - 1e-12:
                best, result.best_epoch, result.neutral_elements = value, epoch, model.neutral_elements
                result.kept_loss = value
            elif epoch - result.best_epoch >= cfg.patience:
                log.info("early stop at epoch %d (best %d, loss %.5f)", epoch, result.best_epoch, best)
                break
        opt.step()
        model.clamp_()
    if cfg.selection == "last":  # the published command: the parameters after the last step
        result.best_epoch = cfg.epochs
        result.neutral_elements = model.neutral_elements
        with torch.no_grad():
            result.kept_loss = float(summed_sord_loss(model, probs, mask, targets, cfg.objective))
    return result


@torch.no_grad()
def predict_uninorm(clips: list[ClipProbs], neutral_elements: list[float]) -> np.ndarray:
    """Predicted clip scores: argmax of the exact ordering of the aggregates (ties in float broken right)."""
    model = UninormAggregator().double()
    model.e.copy_(torch.tensor(neutral_elements, dtype=torch.float64))
    probs, mask = pad_clips(clips)
    return model.order_logits(probs, mask).argmax(dim=-1).numpy()


@torch.no_grad()
def mean_sord_loss(
    clips: list[ClipProbs], neutral_elements: list[float], gap: float = 0.5, objective: str = "published"
) -> float:
    """Mean per-clip SORD loss of given neutral elements (for reports and tests)."""
    model = UninormAggregator().double()
    model.e.copy_(torch.tensor(neutral_elements, dtype=torch.float64))
    probs, mask = pad_clips(clips)
    targets = video_sord_targets(torch.tensor([c.label for c in clips]), gap=gap)
    return float(summed_sord_loss(model, probs, mask, targets, objective)) / len(clips)
