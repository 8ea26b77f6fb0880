"""Clip heads for learning a frame model from clip-level scores (multiple-instance learning).

A clip is a bag of frames with one score (its worst finding). The frame model gives per-frame
logits [B, T, 4]; a head pools them into clip logits [B, 4] on which the SORD loss is taken:

``uninorm`` — the paper's aggregation layer (Roy et al. 2020, §IV-B, Eq. 8-9) trained END TO END
  with the frame model: per score c a min-uninorm with neutral element e_c folds the frame
  probabilities p_tc = softmax(logits)_tc. The clip logits are the exact order logits of the folds
  (``log v − log(1 − v)``, :func:`train.models.uninorm.state_to_logit`, the runtime's clip-score key),
  divided by the number of frames T and multiplied by a learned temperature τ:
  ``z_c = τ · logit(U_{e_c}(p_1c, …, p_Tc)) / T``. In the conjunctive region this is τ·(mean of
  log(p/e) over the frames below e_c + log e_c / T…), in the disjunctive one a noisy-OR, so the
  gradient reaches the frame model and the four e_c. Dividing all four logits by T keeps their
  order (the predicted score is the runtime's uninorm clip score) and makes τ length-independent,
  which gives a clip probability that means something on clips of any length.
``mean`` — the control: the mean of the frame logits over the clip (a soft vote).

The baseline (a), every frame inheriting its clip's score, needs no head: it is a frame-level loss.
"""

from __future__ import annotations

import torch
from torch import nn

from train.models.uninorm import N_SCORES, state_to_logit, uninorm_log_state

HEADS = ("uninorm", "mean")
_CAP = 1e4  # order logits of exact 0/1 folds are ±inf; capped before the softmax


class UninormHead(nn.Module):
    """End-to-end uninorm pooling: learned neutral elements e [4] (clamped to [0, 1]) and temperature."""

    def __init__(self, init: float = 0.0, temperature: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= init <= 1.0:
            raise ValueError(f"UninormHead: init={init} must be in [0, 1]")
        self.e = nn.Parameter(torch.full((N_SCORES,), float(init)))
        self.log_tau = nn.Parameter(torch.tensor(float(temperature)).log())

    @property
    def neutral_elements(self) -> list[float]:
        return [float(v) for v in self.e.detach().clamp(0, 1)]

    @property
    def temperature(self) -> float:
        return float(self.log_tau.detach().exp())

    @torch.no_grad()
    def clamp_(self) -> None:
        self.e.clamp_(0.0, 1.0)

    def order_logits(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The exact per-score order logits of the folds, [B, T, 4] frame logits → [B, 4]."""
        probs = torch.softmax(logits, dim=-1)
        e = self.e.clamp(0, 1).to(probs.dtype)
        return state_to_logit(*uninorm_log_state(probs, e, mask), e).clamp(-_CAP, _CAP)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n = logits.shape[-2] if mask is None else mask.sum(-1, keepdim=True).clamp_min(1)
        return self.log_tau.exp() * self.order_logits(logits, mask) / n


class MeanHead(nn.Module):
    """Mean of the frame logits over the clip's (present) frames."""

    def forward(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return logits.mean(dim=-2)
        w = mask[..., None].to(logits.dtype)
        return (logits * w).sum(-2) / w.sum(-2).clamp_min(1)


def make_head(name: str, init: float = 0.0) -> nn.Module:
    if name == "uninorm":
        return UninormHead(init=init)
    if name == "mean":
        return MeanHead()
    raise ValueError(f"unknown clip head {name!r}: use one of {list(HEADS)}")
