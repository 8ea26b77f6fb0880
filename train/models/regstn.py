"""Reg-STN (Roy et al. 2020, §IV-A, Fig. 3, eqs. (1)–(2)): a localisation network Φstn predicts two
affine transforms θ1, θ2; a sampler cuts crops x1, x2 (half the input size) out of the frame; the
classifier Φcnn scores both; the prediction is Φcnn(x1).

θ_k = [[σ_k, r_k0, t_x], [r_k1, σ_k, t_y]] in the ``affine_grid`` convention (normalised [−1, 1]
input coordinates, align_corners=False): output pixel (u, v) of a crop samples the input at
θ_k·[u, v, 1]. Learned variant: σ_k = sigmoid(Linear(32, K)), a shared translation Linear(32, 2),
two off-diagonal entries per crop Linear(32, 2K); the heads start with zero weights and biases
(0.3, 0.3) for t, (0.5, 0.75) for σ before the sigmoid, and small random rotation weights (as in
the authors' implementation). Fixed-scale variant (§VI-A): σ fixed at the priors, no rotation,
translation learned.

Export-friendly: the sampling grid is a MatMul of a constant base grid [H·W, 3] with θᵀ (no
AffineGrid op), followed by ``grid_sample`` (bilinear, zeros, align_corners=False). Optionally
the localisation network sees a ``loc_downsample``× average-pooled frame while the sampler crops
from the full-resolution frame (the CPU budget: docs/frame_model.md "Choosing the CPU default").

The ``random`` crop mode is the Table I baseline "CNN + random crops + SORD": no Φstn; during
training each crop gets a random scale in [0.5, 1] and a random translation keeping it inside the
frame; at evaluation the single crop is the whole frame (θ = identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from train.models.cnn import N_POOLS, FrameCNN, Trunk

ScaleMode = Literal["learned", "fixed"]


def base_grid(height: int, width: int) -> torch.Tensor:
    """[H·W, 3] rows (x, y, 1) of output pixel centres in normalised coordinates (align_corners=False)."""
    ys = (torch.arange(height, dtype=torch.float32) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=torch.float32) * 2 + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1), torch.ones(height * width)], dim=1)


def make_theta(sigma: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Assemble θ [N, K, 2, 3] from σ [N, K], off-diagonals r [N, K, 2], translation [N, K, 2] or [N, 2]."""
    if translation.dim() == 2:
        translation = translation[:, None, :].expand(-1, sigma.shape[1], -1)
    row0 = torch.stack([sigma, rotation[..., 0], translation[..., 0]], dim=-1)
    row1 = torch.stack([rotation[..., 1], sigma, translation[..., 1]], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def sample_crops(
    image: torch.Tensor, theta: torch.Tensor, grid_xy1: torch.Tensor, out_hw: tuple[int, int]
) -> torch.Tensor:
    """Crop ``image`` [N, C, H, W] with θ [N, 2, 3] onto an ``out_hw`` grid (MatMul grid + grid_sample)."""
    n = image.shape[0]
    grid = torch.matmul(grid_xy1, theta.transpose(1, 2))  # [N, h*w, 2]
    grid = grid.reshape(n, out_hw[0], out_hw[1], 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class LocalisationNet(nn.Module):
    """Φstn: the six-block trunk (own weights) → flatten → Linear(·,32) → ReLU → θ heads."""

    def __init__(
        self,
        input_hw: tuple[int, int],
        in_channels: int = 1,
        width: float = 1.0,
        n_crops: int = 2,
        scale_mode: ScaleMode = "learned",
        scale_priors: tuple[float, ...] = (0.5, 0.75),
        init_translation: tuple[float, float] = (0.3, 0.3),
    ) -> None:
        super().__init__()
        h, w = input_hw
        if min(h, w) < 32:
            raise ValueError(f"localisation input {input_hw} must be at least 32x32 (five 2x2 poolings)")
        if len(scale_priors) < n_crops:
            raise ValueError(f"need one scale prior per crop: {n_crops} crops, priors {scale_priors}")
        self.n_crops, self.scale_mode = n_crops, scale_mode
        self.features = Trunk(in_channels, width)
        flat = self.features.out_channels * (h >> N_POOLS) * (w >> N_POOLS)  # floor-mode pooling
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, 32), nn.ReLU(inplace=True))
        self.translation = nn.Linear(32, 2)
        nn.init.zeros_(self.translation.weight)
        with torch.no_grad():
            self.translation.bias.copy_(torch.tensor(init_translation))
        priors = torch.tensor(scale_priors[:n_crops], dtype=torch.float32)
        if scale_mode == "learned":
            self.scale = nn.Linear(32, n_crops)
            self.rotation = nn.Linear(32, 2 * n_crops)
            nn.init.zeros_(self.scale.weight)
            with torch.no_grad():
                self.scale.bias.copy_(priors)  # the published init: the priors *before* the sigmoid
            nn.init.normal_(self.rotation.weight, std=1e-3)
            nn.init.zeros_(self.rotation.bias)
        elif scale_mode == "fixed":
            self.register_buffer("fixed_sigma", priors)
        else:
            raise ValueError(f"unknown scale mode {scale_mode!r}: use 'learned' or 'fixed'")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return θ [N, K, 2, 3] and σ [N, K]."""
        z = self.fc(self.features(x))
        n, k = x.shape[0], self.n_crops
        t = self.translation(z)
        if self.scale_mode == "learned":
            sigma = torch.sigmoid(self.scale(z))
            rot = self.rotation(z).reshape(n, k, 2)
        else:
            sigma = self.fixed_sigma[None, :].expand(n, k)
            rot = torch.zeros(n, k, 2, dtype=x.dtype, device=x.device)
        return make_theta(sigma, rot, t), sigma


@dataclass(frozen=True)
class STNSpec:
    """Shape of a (Reg-)STN frame model."""

    input_hw: tuple[int, int] = (224, 224)
    width: float = 1.0  # channel multiplier of both trunks
    loc_width: float | None = None  # localisation trunk width (None: same as ``width``)
    loc_downsample: int = 1  # Φstn sees the frame average-pooled by this factor
    n_crops: int = 2  # 2: Reg-STN; 1: plain STN
    crop_mode: Literal["stn", "random"] = "stn"
    scale_mode: ScaleMode = "learned"
    scale_priors: tuple[float, float] = (0.5, 0.75)
    init_translation: tuple[float, float] = (0.3, 0.3)  # the published init of the translation bias
    in_channels: int = 1
    n_classes: int = 4

    @property
    def crop_hw(self) -> tuple[int, int]:
        return (self.input_hw[0] // 2, self.input_hw[1] // 2)


class RegSTN(nn.Module):
    """Φ = Φcnn ∘ Φstn with K crops; ``forward`` returns a dict.

    Keys: ``logits`` (Φcnn(x1), the prediction), ``logits2`` (Φcnn(x2), K = 2 and training or
    ``all_crops``), ``theta`` [N, K, 2, 3], ``sigma`` [N, K], and ``crops`` when ``return_crops``.
    """

    def __init__(self, spec: STNSpec = STNSpec()) -> None:
        super().__init__()
        self.spec = spec
        h, w = spec.input_hw
        if h % 2 or w % 2 or min(h, w) < 64:
            raise ValueError(f"input size {spec.input_hw} must be even and at least 64 (crops are half size)")
        ds = spec.loc_downsample
        if ds < 1 or h % ds or w % ds or min(h, w) // ds < 32:
            raise ValueError(f"loc_downsample={ds} must divide {spec.input_hw} and leave at least 32 pixels")
        if spec.n_crops not in (1, 2):
            raise ValueError(f"n_crops must be 1 or 2, got {spec.n_crops}")
        self.classifier = FrameCNN(spec.in_channels, spec.n_classes, spec.width)
        if spec.crop_mode == "stn":
            loc_hw = (h // spec.loc_downsample, w // spec.loc_downsample)
            self.localisation: LocalisationNet | None = LocalisationNet(
                loc_hw,
                spec.in_channels,
                spec.loc_width or spec.width,
                spec.n_crops,
                spec.scale_mode,
                spec.scale_priors,
                spec.init_translation,
            )
        elif spec.crop_mode == "random":
            self.localisation = None
        else:
            raise ValueError(f"unknown crop mode {spec.crop_mode!r}: use 'stn' or 'random'")
        self.register_buffer("grid_xy1", base_grid(*spec.crop_hw), persistent=False)

    def _random_theta(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.spec.n_crops
        sigma = torch.rand(n, k, device=device) * 0.5 + 0.5
        t = (torch.rand(n, k, 2, device=device) * 2 - 1) * (1 - sigma)[..., None]
        return make_theta(sigma, torch.zeros(n, k, 2, device=device), t), sigma

    def theta_head_parameters(self) -> list[nn.Parameter]:
        """The θ heads' parameters (translation, scale, rotation), for a separate learning rate."""
        loc = self.localisation
        if loc is None:
            return []
        heads = [loc.translation] + ([loc.scale, loc.rotation] if loc.scale_mode == "learned" else [])
        return [p for h in heads for p in h.parameters()]

    def predict_theta(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """θ [N, K, 2, 3] and σ [N, K] for a batch of frames."""
        n = x.shape[0]
        if self.localisation is None:
            if self.training:
                return self._random_theta(n, x.device)
            eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
            return eye.expand(n, self.spec.n_crops, 2, 3), torch.ones(n, self.spec.n_crops, device=x.device)
        loc_in = x if self.spec.loc_downsample == 1 else F.avg_pool2d(x, self.spec.loc_downsample)
        return self.localisation(loc_in)

    def forward(
        self, x: torch.Tensor, all_crops: bool = False, return_crops: bool = False
    ) -> dict[str, torch.Tensor]:
        theta, sigma = self.predict_theta(x)
        n, k = theta.shape[:2]
        use = k if (k == 2 and (self.training or all_crops)) else 1
        # crops of all used transforms in one batch: [use*N] ordered crop-major (x1 of all, then x2)
        th = theta[:, :use].transpose(0, 1).reshape(use * n, 2, 3)
        xs = x.repeat(use, 1, 1, 1) if use > 1 else x
        crops = sample_crops(xs, th, self.grid_xy1, self.spec.crop_hw)
        logits = self.classifier(crops)
        out = {"logits": logits[:n], "theta": theta, "sigma": sigma}
        if use == 2:
            out["logits2"] = logits[n:]
        if return_crops:
            out["crops"] = crops.reshape(use, n, *crops.shape[1:]).transpose(0, 1)
        return out


class PlainCNN(nn.Module):
    """Φcnn on the whole frame (Table I's "CNN" rows), same dict interface as :class:`RegSTN`."""

    def __init__(
        self,
        input_hw: tuple[int, int] = (224, 224),
        width: float = 1.0,
        in_channels: int = 1,
        n_classes: int = 4,
    ) -> None:
        super().__init__()
        if min(input_hw) < 32:
            raise ValueError(f"input size {input_hw} must be at least 32x32")
        self.input_hw = input_hw
        self.classifier = FrameCNN(in_channels, n_classes, width)

    def forward(
        self, x: torch.Tensor, all_crops: bool = False, return_crops: bool = False
    ) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(x)}
