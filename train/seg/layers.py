"""Layers shared by every segmentation member: the latent dropout with an explicit mask, and the
pad-to-a-multiple / crop-back pair that lets a network with a fixed reduction take any H×W.

MC-dropout convention (team contract): each member's ``forward(x, dropout_mask=None)`` applies
dropout at its latent/bottleneck features. ``dropout_mask`` holds 0 or 1/(1−p) per latent element
(shape [B, C, h, w]); a mask of ones is the deterministic network. With no mask, training mode uses
ordinary ``F.dropout`` there and eval mode is the identity — so the exported graph (mask as an
input) and PyTorch training agree in distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Value the padding reads after symmetric scaling (letterbox pads with 0 → −1).
PAD_VALUE = -1.0


class LatentDropout(nn.Module):
    """Dropout at the latent features, or multiplication by an explicit pre-scaled mask."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"latent dropout p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            if not torch.jit.is_tracing() and mask.shape[1:] != x.shape[1:]:
                raise ValueError(
                    f"dropout_mask has shape {tuple(mask.shape)} but the latent features are "
                    f"{tuple(x.shape)}: draw the mask with the member's latent_shape(H, W)"
                )
            return x * mask
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = PAD_VALUE) -> torch.Tensor:
    """Pad the bottom/right of an NCHW tensor so that H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), value=value)


def crop_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Crop an NCHW tensor back to the top-left ``size`` = (H, W)."""
    return x[..., : size[0], : size[1]]
