"""The paper's baseline U-Net for LUS segmentation (Roy et al. 2020, §IV-C.2).

Three encoder blocks, each two convolutions + ReLU followed by a max-pool of 2, 2 and 5 pixels;
filters 16 (3×3), 32 (5×5), 64 (5×5), as in the authors' published implementation. A latent
block (two convolutions, ``latent_channels`` filters) carries the dropout of p = 0.5 that the paper
applies "at the latent bottleneck"; the decoder mirrors the encoder with nearest-neighbour
upsampling (5, 2, 2) and skip connections from each encoder block. Five output channels in the
order [0, 1, 2, 3, BG] (logits; the export adds the softmax).

Inputs whose size is not a multiple of 20 (= 2·2·5) are padded at the bottom/right with −1 (the
value of letterbox padding after symmetric scaling) and the output is cropped back, so any H×W
works; 260×200 (the paper's size) needs no padding.

MC dropout: ``forward(x, dropout_mask)`` multiplies the latent features by an explicit mask
(values 0 or 1/(1−p)); without a mask the block uses ordinary dropout in training mode and is the
identity in eval mode. See :mod:`train.models.seg_models` for the shared convention.
"""

from __future__ import annotations

import torch
from torch import nn

from train.seg.layers import LatentDropout, crop_to, pad_to_multiple


def conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Two ``kernel``×``kernel`` same-padded convolutions, each followed by ReLU."""
    pad = kernel // 2
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=pad),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, kernel, padding=pad),
        nn.ReLU(inplace=True),
    )


class PaperUNet(nn.Module):
    """U-Net with pools (2, 2, 5), filters (16, 32, 64), kernels (3, 5, 5) and a latent dropout."""

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 5,
        filters: tuple[int, int, int] = (16, 32, 64),
        kernels: tuple[int, int, int] = (3, 5, 5),
        pools: tuple[int, int, int] = (2, 2, 5),
        latent_channels: int = 128,
        latent_kernel: int = 5,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not (len(filters) == len(kernels) == len(pools)):
            raise ValueError(f"filters {filters}, kernels {kernels} and pools {pools} must have equal length")
        self.pools = tuple(int(p) for p in pools)
        self.multiple = 1
        for p in self.pools:
            self.multiple *= p
        self.latent_channels = int(latent_channels)
        self.classes = int(classes)

        self.encoder = nn.ModuleList()
        c = in_channels
        for f, k in zip(filters, kernels, strict=True):
            self.encoder.append(conv_block(c, f, k))
            c = f
        self.latent = conv_block(c, latent_channels, latent_kernel)
        self.dropout = LatentDropout(dropout)

        self.decoder = nn.ModuleList()
        c = latent_channels
        for f, k in zip(reversed(filters), reversed(kernels), strict=True):
            self.decoder.append(conv_block(c + f, f, k))
            c = f
        self.head = nn.Conv2d(c, classes, kernel_size=1)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent features (= the ``dropout_mask`` shape) for an H×W input."""
        hp = -(-height // self.multiple) * self.multiple
        wp = -(-width // self.multiple) * self.multiple
        return (self.latent_channels, hp // self.multiple, wp // self.multiple)

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        size = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        skips = []
        for block, pool in zip(self.encoder, self.pools, strict=True):
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, pool)
        x = self.dropout(self.latent(x), dropout_mask)
        for block, pool, skip in zip(self.decoder, reversed(self.pools), reversed(skips), strict=True):
            x = nn.functional.interpolate(x, scale_factor=float(pool), mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return crop_to(self.head(x), size)
