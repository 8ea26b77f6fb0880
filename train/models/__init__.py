"""Frame models (Reg-STN and the Table I baselines) and a factory that builds one from a config.

Every frame model maps a batch of preprocessed frames [N, 1, H, W] to a dict with at least
``logits`` [N, 4]; STN models add ``theta`` [N, K, 2, 3], ``sigma`` [N, K] and (Reg-STN, training)
``logits2``. See docs/frame_model.md.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from train.models.baselines import ResNet18Frame
from train.models.cnn import FrameCNN, Trunk
from train.models.regstn import PlainCNN, RegSTN, STNSpec, base_grid, make_theta, sample_crops

ARCHITECTURES = ("regstn", "stn", "cnn", "cnn-random-crops", "resnet18")

__all__ = [
    "ARCHITECTURES",
    "FrameCNN",
    "PlainCNN",
    "RegSTN",
    "ResNet18Frame",
    "STNSpec",
    "Trunk",
    "base_grid",
    "build_frame_model",
    "make_theta",
    "sample_crops",
]


def build_frame_model(
    arch: str,
    input_hw: tuple[int, int],
    width: float = 1.0,
    loc_width: float | None = None,
    loc_downsample: int = 1,
    scale_mode: str = "learned",
    scale_priors: tuple[float, float] = (0.5, 0.75),
    init_translation: tuple[float, float] = (0.3, 0.3),
    **_: Any,
) -> nn.Module:
    """Build one of :data:`ARCHITECTURES` (extra keyword arguments are ignored)."""
    input_hw = (int(input_hw[0]), int(input_hw[1]))
    if arch == "cnn":
        return PlainCNN(input_hw, width)
    if arch == "resnet18":
        return ResNet18Frame()
    common = {
        "input_hw": input_hw,
        "width": width,
        "loc_width": loc_width,
        "loc_downsample": loc_downsample,
        "scale_priors": tuple(scale_priors),
        "init_translation": tuple(init_translation),
    }
    if arch == "regstn":
        return RegSTN(STNSpec(n_crops=2, scale_mode=scale_mode, **common))  # type: ignore[arg-type]
    if arch == "stn":
        return RegSTN(STNSpec(n_crops=1, scale_mode=scale_mode, **common))  # type: ignore[arg-type]
    if arch == "cnn-random-crops":
        return RegSTN(STNSpec(n_crops=2, crop_mode="random", **common))  # type: ignore[arg-type]
    raise ValueError(f"unknown frame architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
