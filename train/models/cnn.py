"""Φcnn, the frame classifier of Roy et al. 2020 (§IV-A, after Born et al.'s POCOVID-Net), and the
six-block trunk it shares in shape with the localisation network Φstn.

Trunk: six blocks of two (conv 3×3 stride 1 pad 1 → BatchNorm → ReLU); channels 32, 64, 64, 64,
128, 128 (times ``width``); blocks 1–5 end in 2×2 max-pooling, block 5 also in Dropout(0.3).
Head: global average pooling → Linear(C,256) → BatchNorm1d → ReLU → Dropout(0.5) → Linear(256,4).

Inputs are single-channel (grayscale) frames: the original replicates gray to three channels,
which carries no extra information, so ``in_channels=1`` here (see docs/frame_model.md).
"""

from __future__ import annotations

import torch
from torch import nn

BASE_CHANNELS: tuple[int, ...] = (32, 64, 64, 64, 128, 128)
N_POOLS = 5  # blocks 1-5 end in 2x2 max-pooling: spatial size shrinks by 32


def scaled_channels(width: float) -> tuple[int, ...]:
    """The trunk's channel counts for a width multiplier (at least 4 channels per block)."""
    if width <= 0:
        raise ValueError(f"width multiplier must be > 0, got {width}")
    return tuple(max(4, round(c * width)) for c in BASE_CHANNELS)


class ConvBlock(nn.Sequential):
    """Two (conv 3×3 → BatchNorm → ReLU), optionally followed by 2×2 max-pool and dropout."""

    def __init__(self, in_ch: int, out_ch: int, pool: bool, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            layers += [
                nn.Conv2d(c_in, out_ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
        if pool:
            layers.append(nn.MaxPool2d(2))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class Trunk(nn.Sequential):
    """The six-block convolutional feature extractor (output: [N, C6, H/32, W/32])."""

    def __init__(self, in_channels: int = 1, width: float = 1.0, block5_dropout: float = 0.3) -> None:
        chans = scaled_channels(width)
        blocks = []
        c_in = in_channels
        for i, c_out in enumerate(chans):
            blocks.append(ConvBlock(c_in, c_out, pool=i < N_POOLS, dropout=block5_dropout if i == 4 else 0.0))
            c_in = c_out
        super().__init__(*blocks)
        self.out_channels = chans[-1]


class ScoreHead(nn.Sequential):
    """GAP → Linear(C,256) → BN1d → ReLU → Dropout(0.5) → Linear(256, n_classes) (logits)."""

    def __init__(self, in_features: int, n_classes: int = 4, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )


class FrameCNN(nn.Module):
    """Φcnn: trunk + score head, image [N,1,H,W] → logits [N, n_classes].

    H and W must be at least 32 (five floor-mode 2×2 poolings; the paper's 112×112 crops end 3×3).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4, width: float = 1.0) -> None:
        super().__init__()
        self.features = Trunk(in_channels, width)
        self.head = ScoreHead(self.features.out_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
