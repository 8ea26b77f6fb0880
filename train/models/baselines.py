"""Table I baselines that are not Φcnn/Reg-STN variants: ResNet-18 (Roy et al. 2020, §V-A iii).

torchvision's ResNet-18 with random weights (nothing is downloaded) and a single-channel stem, behind
the same dict interface as the other frame models (``{"logits": ...}``).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


class ResNet18Frame(nn.Module):
    """ResNet-18 frame classifier, grayscale input [N, 1, H, W] → logits [N, n_classes]."""

    def __init__(self, in_channels: int = 1, n_classes: int = 4) -> None:
        super().__init__()
        net = resnet18(weights=None, num_classes=n_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.classifier = net

    def forward(
        self, x: torch.Tensor, all_crops: bool = False, return_crops: bool = False
    ) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(x)}
