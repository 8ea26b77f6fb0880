"""Ensemble and MC-dropout inference in PyTorch, for evaluation (Roy et al. 2020 §IV-C.5).

- :func:`ensemble_mean` — the paper's ensemble: the unweighted mean of the members' softmax.
- :func:`ensemble_labels` — argmax of that mean; with ``authors_weighting=True`` it follows the
  authors' published inference script instead: class probabilities multiplied by [1, 1, 2, 2, 2]
  in THEIR channel order [BG, 0, 1, 2, 3] — i.e. the COVID scores 1, 2, 3 counted twice, which is
  [1, 2, 2, 2, 1] in our order [0, 1, 2, 3, BG] — and a pixel that any member labels score 3 is
  never downgraded (it stays 3). Off by default; evaluation reports both.
- :func:`mc_samples` / :func:`mc_dropout` — K stochastic passes per member with explicit Bernoulli
  masks on the latent features (the same masks the ONNX export takes as ``dropout_mask``); the
  ensemble's k-th sample is the mean of the members' k-th samples, and the uncertainty is the
  per-pixel standard deviation over k (per class, and of P(COVID) = p1 + p2 + p3 as a summary).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

AUTHORS_CLASS_WEIGHTS = (1.0, 2.0, 2.0, 2.0, 1.0)  # our order [0, 1, 2, 3, BG]
COVID = (1, 2, 3)


@torch.no_grad()
def member_probs(model: nn.Module, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax [B, 5, H, W] of one member in eval mode (deterministic unless a mask is given)."""
    model.eval()
    return torch.softmax(model(x, dropout_mask), dim=1)


def ensemble_mean(probs: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Unweighted mean of the members' softmax maps ([M, B, 5, H, W] or a list of [B, 5, H, W])."""
    stack = torch.stack(list(probs)) if not isinstance(probs, torch.Tensor) else probs
    return stack.mean(dim=0)


def ensemble_labels(probs: Sequence[torch.Tensor], authors_weighting: bool = False) -> torch.Tensor:
    """Label map [B, H, W] of the ensemble (see the module docstring for ``authors_weighting``)."""
    mean = ensemble_mean(probs)
    if not authors_weighting:
        return mean.argmax(dim=1)
    w = torch.tensor(AUTHORS_CLASS_WEIGHTS, dtype=mean.dtype, device=mean.device).view(1, -1, 1, 1)
    labels = (mean * w).argmax(dim=1)
    any3 = torch.stack([p.argmax(dim=1) == 3 for p in probs]).any(dim=0)
    return torch.where(any3, torch.full_like(labels, 3), labels)


def draw_masks(
    k: int, shape: Sequence[int], p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """K Bernoulli keep-masks of ``shape`` = (C, h, w), scaled: values 0 or 1/(1−p)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    keep = torch.rand((k, *shape), generator=generator) >= p
    return keep.float() / (1.0 - p)


@torch.no_grad()
def mc_samples(
    model: nn.Module,
    x: torch.Tensor,
    k: int,
    p: float,
    generator: torch.Generator | None = None,
    chunk: int = 8,
) -> torch.Tensor:
    """K MC-dropout softmax samples of one image x [1, 1, H, W] → [K, 5, H, W], in chunks."""
    if x.shape[0] != 1:
        raise ValueError(f"mc_samples takes one image [1, 1, H, W], got {tuple(x.shape)}")
    model.eval()
    masks = draw_masks(k, model.latent_shape(*x.shape[-2:]), p, generator)
    out = [torch.softmax(model(x.expand(len(m), -1, -1, -1), m), dim=1) for m in masks.split(chunk)]
    return torch.cat(out)


def mc_dropout(
    models: Sequence[nn.Module], x: torch.Tensor, k: int = 40, p: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ensemble MC dropout of one image: (mean [5,H,W], std [5,H,W], COVID std [H,W])."""
    g = torch.Generator().manual_seed(seed)
    samples = torch.stack([mc_samples(m, x, k, p, g) for m in models]).mean(dim=0)  # [K, 5, H, W]
    covid = samples[:, list(COVID)].sum(dim=1)
    return samples.mean(dim=0), samples.std(dim=0, unbiased=False), covid.std(dim=0, unbiased=False)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
