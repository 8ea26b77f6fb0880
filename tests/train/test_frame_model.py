"""Reg-STN geometry and wiring: θ construction, the MatMul sampling grid, crops of known pixels,
gradients reaching both networks, and the Table I model factory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from train.models import (
    ARCHITECTURES,
    RegSTN,
    STNSpec,
    base_grid,
    build_frame_model,
    make_theta,
    sample_crops,
)


def _pattern(n: int = 32) -> torch.Tensor:
    return torch.arange(n * n, dtype=torch.float32).reshape(1, 1, n, n)


def test_make_theta_layout() -> None:
    theta = make_theta(
        torch.tensor([[0.5, 0.75]]), torch.tensor([[[0.1, 0.2], [0.3, 0.4]]]), torch.tensor([[0.3, -0.2]])
    )
    assert theta.shape == (1, 2, 2, 3)
    assert torch.allclose(theta[0, 0], torch.tensor([[0.5, 0.1, 0.3], [0.2, 0.5, -0.2]]))
    assert torch.allclose(theta[0, 1], torch.tensor([[0.75, 0.3, 0.3], [0.4, 0.75, -0.2]]))


@pytest.mark.parametrize(
    ("tx", "ty", "rows", "cols"),
    [
        (0.5, 0.5, slice(16, 32), slice(16, 32)),
        (-0.5, -0.5, slice(0, 16), slice(0, 16)),
        (0.5, -0.5, slice(0, 16), slice(16, 32)),
        (0.0, 0.0, slice(8, 24), slice(8, 24)),
    ],
)
def test_half_scale_crop_picks_exact_pixels(tx: float, ty: float, rows: slice, cols: slice) -> None:
    """σ = 0.5 with translation (±0.5, ±0.5) lands output pixel centres on input pixel centres."""
    img = _pattern()
    theta = torch.tensor([[[0.5, 0.0, tx], [0.0, 0.5, ty]]])
    crop = sample_crops(img, theta, base_grid(16, 16), (16, 16))
    assert torch.equal(crop[0, 0], img[0, 0, rows, cols])


def test_matmul_grid_equals_affine_grid() -> None:
    torch.manual_seed(0)
    theta = torch.randn(3, 2, 3) * 0.5
    grid = torch.matmul(base_grid(12, 20), theta.transpose(1, 2)).reshape(3, 12, 20, 2)
    ref = F.affine_grid(theta, [3, 1, 12, 20], align_corners=False)
    assert torch.allclose(grid, ref, atol=1e-6)


def test_rotation_entries_rotate_the_crop() -> None:
    img = _pattern(16)
    theta = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])  # 90 degrees, full frame
    crop = sample_crops(img, theta, base_grid(16, 16), (16, 16))
    assert torch.equal(crop[0, 0], torch.rot90(img[0, 0], k=1))  # output (u, v) reads input (-v, u)


def test_localisation_on_downsampled_frame_crops_full_resolution() -> None:
    model = RegSTN(
        STNSpec(input_hw=(64, 64), width=0.25, loc_downsample=2, scale_mode="fixed", scale_priors=(0.5, 0.75))
    )
    model.eval()
    with torch.no_grad():
        model.localisation.translation.bias.copy_(torch.tensor([0.5, 0.5]))
    img = _pattern(64)
    out = model(img, return_crops=True, all_crops=True)
    assert out["crops"].shape == (1, 2, 1, 32, 32)
    assert torch.equal(out["crops"][0, 0, 0], img[0, 0, 32:, 32:])  # native-resolution pixels
    assert torch.allclose(out["theta"][0, 0], torch.tensor([[0.5, 0, 0.5], [0, 0.5, 0.5]]))


def test_published_initialisation() -> None:
    model = RegSTN(STNSpec(input_hw=(64, 64), width=0.25))
    model.eval()
    out = model(torch.rand(2, 1, 64, 64))
    assert out["sigma"][0].tolist() == pytest.approx(
        [torch.sigmoid(torch.tensor(0.5)).item(), torch.sigmoid(torch.tensor(0.75)).item()], abs=1e-6
    )
    assert out["theta"][:, :, :, 2].flatten().tolist() == pytest.approx([0.3] * 8)


def test_gradients_reach_classifier_and_localisation() -> None:
    torch.manual_seed(0)
    model = RegSTN(STNSpec(input_hw=(64, 64), width=0.25))
    model.train()
    out = model(torch.rand(4, 1, 64, 64))
    (out["logits"].sum() + (out["logits"] - out["logits2"]).pow(2).sum() + out["sigma"].sum()).backward()
    loc = model.localisation
    for name, param in [
        ("translation", loc.translation.weight),
        ("scale", loc.scale.weight),
        ("rotation", loc.rotation.weight),
        ("loc conv", loc.features[0][0].weight),
        ("cnn conv", model.classifier.features[0][0].weight),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_factory_builds_every_table1_model(arch: str) -> None:
    model = build_frame_model(arch, (64, 64), width=0.25)
    model.eval()
    out = model(torch.rand(2, 1, 64, 64))
    assert out["logits"].shape == (2, 4)
    assert torch.isfinite(out["logits"]).all()


def test_bad_sizes_are_explained() -> None:
    with pytest.raises(ValueError, match="even and at least 64"):
        RegSTN(STNSpec(input_hw=(48, 48)))
    with pytest.raises(ValueError, match="loc_downsample=4"):
        RegSTN(STNSpec(input_hw=(64, 64), loc_downsample=4))
    with pytest.raises(ValueError, match="unknown frame architecture"):
        build_frame_model("vgg", (64, 64))


def test_configurable_translation_init_and_theta_heads() -> None:
    model = RegSTN(STNSpec(input_hw=(64, 64), width=0.25, init_translation=(0.0, -0.1)))
    model.eval()
    theta = model(torch.rand(1, 1, 64, 64))["theta"]
    assert torch.allclose(theta[0, :, :, 2], torch.tensor([[0.0, -0.1], [0.0, -0.1]]))
    heads = model.theta_head_parameters()
    assert len(heads) == 6  # weight + bias of translation, scale, rotation
    assert all(p.shape[-1] == 32 or p.dim() == 1 for p in heads)
