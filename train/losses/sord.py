"""SORD: soft ordinal labels (Roy et al. 2020, §IV-A.3, eqs. (3)–(4); Díaz & Marathe 2019).

target_i = softmax_i(−m·(y' − i')²), where positions are the scores themselves except that score 0
sits at −g (the "zero gap": score 0 pushed away from the others). Frame models use g = 0, the video
aggregator g = 0.5 (as published); m = 2. The loss is the cross-entropy between these targets and
the softmax of the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def score_positions(n_classes: int = 4, gap: float = 0.0, device: torch.device | None = None) -> torch.Tensor:
    """Positions of the scores on the ordinal axis: [−g, 1, 2, ..., n−1]."""
    pos = torch.arange(n_classes, dtype=torch.float32, device=device)
    pos[0] = -float(gap)
    return pos


def sord_targets(labels: torch.Tensor, n_classes: int = 4, m: float = 2.0, gap: float = 0.0) -> torch.Tensor:
    """Soft targets [N, n_classes] for integer labels [N] (float64 inputs keep float64)."""
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point:
        raise TypeError("labels must be integer scores, got a floating-point tensor")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"labels must lie in 0..{n_classes - 1}, got {labels.min().item()}..{labels.max().item()}"
        )
    pos = score_positions(n_classes, gap, labels.device).double()
    y = pos[labels.long()]
    return torch.softmax(-m * (y[:, None] - pos[None, :]) ** 2, dim=1).float()


def sord_loss(logits: torch.Tensor, labels: torch.Tensor, m: float = 2.0, gap: float = 0.0) -> torch.Tensor:
    """Mean over the batch of −Σ_i target_i · log softmax_i(logits)."""
    target = sord_targets(labels, logits.shape[1], m, gap).to(logits.dtype)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
