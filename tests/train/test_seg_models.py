"""Segmentation members: output shapes on odd input sizes, the latent dropout-mask contract."""

from __future__ import annotations

import pytest
import torch

from train.models.seg_models import build_member
from train.seg.config import MemberConfig, member, preset

TINY_UNET = MemberConfig("unet", "unet", filters=(4, 4, 8), latent_channels=8)
LIGHT_UNETPP = MemberConfig(
    "unetpp", "unetpp", encoder="resnet18", encoder_depth=4, decoder_channels=(16, 8, 8, 4)
)
LIGHT_DEEPLAB = MemberConfig("deeplabv3p", "deeplabv3p", encoder="mobilenet_v2", decoder_channels=16)


@pytest.mark.parametrize("cfg", [TINY_UNET, LIGHT_UNETPP, LIGHT_DEEPLAB], ids=lambda c: c.arch)
@pytest.mark.parametrize("hw", [(37, 23), (53, 41)])
def test_output_shape_on_odd_sizes(cfg: MemberConfig, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_member(cfg).eval()
    x = torch.randn(2, 1, *hw)
    with torch.no_grad():
        out = model(x)
        shape = model.latent_shape(*hw)
        ones = model(x, torch.ones(2, *shape))
    assert out.shape == (2, 5, *hw)
    assert torch.allclose(out, ones, atol=1e-6)  # mask of ones == deterministic eval


def test_paper_unet_is_the_published_architecture() -> None:
    model = build_member(member("paper", "unet"))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    enc = [(c.out_channels, c.kernel_size) for c in convs[:6]]
    assert enc == [(16, (3, 3))] * 2 + [(32, (5, 5))] * 2 + [(64, (5, 5))] * 2
    assert model.pools == (2, 2, 5)
    assert model.latent_shape(260, 200) == (128, 13, 10)  # 260/20, 200/20: no padding needed
    assert model.dropout.p == 0.5


def test_dropout_mask_drives_the_output_and_wrong_shapes_are_named() -> None:
    torch.manual_seed(0)
    model = build_member(TINY_UNET).eval()
    x = torch.randn(1, 1, 40, 40)
    shape = model.latent_shape(40, 40)
    with torch.no_grad():
        a = model(x, torch.ones(1, *shape))
        b = model(x, torch.zeros(1, *shape))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="latent_shape"):
        model(x, torch.ones(1, shape[0] + 1, *shape[1:]))


def test_presets_come_from_one_mechanism() -> None:
    assert (
        [m.name for m in preset("paper")]
        == [m.name for m in preset("lite")]
        == ["unet", "unetpp", "deeplabv3p"]
    )
    assert member("paper", "unetpp").encoder == "resnet50" and member("paper", "unetpp").encoder_depth == 4
    assert member("paper", "deeplabv3p").encoder == "resnet50"
    with pytest.raises(ValueError, match="choose one of"):
        preset("huge")


def test_deeplab_latent_dropout_sits_inside_smp_forward_unchanged() -> None:
    torch.manual_seed(0)
    model = build_member(LIGHT_DEEPLAB).eval()
    x = torch.randn(1, 1, 48, 32)
    with torch.no_grad():
        ours = model(x, torch.ones(1, *model.latent_shape(48, 32)))
        theirs = model.net(x)
    assert model.latent_shape(48, 32) == (16, 3, 2)  # the ASPP output (decoder_channels=16)
    assert torch.allclose(ours, theirs, atol=1e-6)
