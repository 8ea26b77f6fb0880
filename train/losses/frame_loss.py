"""The Reg-STN joint loss (Roy et al. 2020, eq. (7)): L = w_cls·L_cls(Φcnn(x1)) + w_mse·L_MSE + w_p·L_P.

- L_cls: SORD (eq. (4)) or plain cross-entropy (Table I's "CNN + CE" baseline).
- L_MSE = mean((logits1 − logits2)²) over batch and classes (eq. (5)), when the model returns a second crop.
- L_P = mean over batch and crops of |σ_k − σ_p,k| with priors (0.5, 0.75) (eq. (6), averaged as in the
  authors' implementation), when the model returns σ.
Each weight is configurable (default 1); a term whose inputs are absent counts 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.losses.sord import sord_loss


@dataclass(frozen=True)
class FrameLossWeights:
    classification: float = 1.0
    consistency: float = 1.0
    scale_prior: float = 1.0


class FrameLoss(nn.Module):
    """Joint frame loss; ``forward(outputs, labels)`` returns (total, {term: value}) ."""

    def __init__(
        self,
        kind: str = "sord",
        weights: FrameLossWeights = FrameLossWeights(),
        m: float = 2.0,
        gap: float = 0.0,
        scale_priors: tuple[float, ...] = (0.5, 0.75),
    ) -> None:
        super().__init__()
        if kind not in ("sord", "ce"):
            raise ValueError(f"unknown classification loss {kind!r}: use 'sord' or 'ce'")
        self.kind, self.weights, self.m, self.gap = kind, weights, m, gap
        self.register_buffer("priors", torch.tensor(scale_priors, dtype=torch.float32), persistent=False)

    def classification(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.kind == "ce":
            return F.cross_entropy(logits, labels)
        return sord_loss(logits, labels, self.m, self.gap)

    def forward(
        self, outputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = outputs["logits"]
        zero = logits.new_zeros(())
        cls = self.classification(logits, labels)
        cons = ((logits - outputs["logits2"]) ** 2).mean() if "logits2" in outputs else zero
        if "sigma" in outputs:
            sigma = outputs["sigma"]
            prior = (sigma - self.priors[: sigma.shape[1]].to(sigma.dtype)).abs().mean()
        else:
            prior = zero
        w = self.weights
        total = w.classification * cls + w.consistency * cons + w.scale_prior * prior
        parts = {
            "total": float(total.detach()),
            "cls": float(cls.detach()),
            "consistency": float(cons.detach()),
            "scale_prior": float(prior.detach()),
        }
        return total, parts
