"""Segmentation members: the paper's U-Net (:mod:`train.models.unet`) and the
segmentation-models-pytorch U-Net++ / DeepLabv3+ (Roy et al. 2020, §IV-C.2), all with the same
interface: ``forward(x[B,1,H,W], dropout_mask=None) -> logits[B,5,H,W]`` in the class order
[0, 1, 2, 3, BG], any H×W (padded internally to the network's multiple, cropped back), and
``latent_shape(H, W)`` = the per-sample shape of ``dropout_mask``.

The latent ("bottleneck") of the smp members is at stride 16: U-Net++ (encoder_depth=4) drops out
its deepest encoder features, DeepLabv3+ its ASPP output (before the decoder fuses it with the
stride-4 features); it gets the p = 0.5 dropout the paper applies in the latent space, and the
MC-dropout mask at inference. smp's own ASPP dropout is turned off so that the latent mask is the only
stochastic layer. Weights are never downloaded (``encoder_weights=None``).

Deviation noted: smp's U-Net++ decoder upsamples by interpolation + conv blocks, where the paper
describes transposed convolutions.
"""

from __future__ import annotations

import torch
from torch import nn

from train.models.unet import PaperUNet
from train.seg.config import NUM_CLASSES, MemberConfig
from train.seg.layers import LatentDropout, crop_to, pad_to_multiple


class SmpMember(nn.Module):
    """An smp encoder-decoder with latent dropout at its stride-16 bottleneck.

    ``latent="encoder"`` (U-Net++): the deepest encoder features. ``latent="aspp"`` (DeepLabv3+):
    the ASPP output, before it is upsampled and fused with the stride-4 features — DeepLab's own
    bottleneck, and a far smaller mask than the encoder's last stage (MobileNetV2: 1280 channels).
    """

    def __init__(self, net: nn.Module, multiple: int, dropout: float, latent: str = "encoder") -> None:
        super().__init__()
        if latent not in ("encoder", "aspp"):
            raise ValueError(f"latent {latent!r}: use 'encoder' or 'aspp'")
        self.net = net
        self.multiple = int(multiple)
        self.latent = latent
        self.dropout = LatentDropout(dropout)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        hp = -(-height // self.multiple) * self.multiple
        wp = -(-width // self.multiple) * self.multiple
        if self.latent == "aspp":
            channels = int(self.net.decoder.aspp[0].project[0].out_channels)
        else:
            channels = int(self.net.encoder.out_channels[-1])
        return (channels, hp // 16, wp // 16)

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        size = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        features = list(self.net.encoder(x))
        if self.latent == "encoder":
            features[-1] = self.dropout(features[-1], dropout_mask)
            decoded = self.net.decoder(features)
        else:  # smp DeepLabV3PlusDecoder.forward with the dropout after ASPP
            dec = self.net.decoder
            aspp = dec.up(self.dropout(dec.aspp(features[-1]), dropout_mask))
            decoded = dec.block2(torch.cat([aspp, dec.block1(features[2])], dim=1))
        return crop_to(self.net.segmentation_head(decoded), size)


def build_member(cfg: MemberConfig) -> nn.Module:
    """Build the network that ``cfg`` describes (random init, nothing downloaded)."""
    if cfg.arch == "unet":
        return PaperUNet(
            in_channels=1,
            classes=NUM_CLASSES,
            filters=cfg.filters,
            kernels=cfg.kernels,
            pools=cfg.pools,
            latent_channels=cfg.latent_channels,
            dropout=cfg.dropout,
        )
    import segmentation_models_pytorch as smp

    if cfg.encoder is None:
        raise ValueError(f"member {cfg.name!r} ({cfg.arch}) needs an encoder, e.g. resnet18 or mobilenet_v2")
    if cfg.arch == "unetpp":
        if cfg.encoder_depth != 4:
            raise ValueError(
                f"member {cfg.name!r}: U-Net++ uses the encoder's first four blocks (encoder_depth=4), "
                f"got {cfg.encoder_depth}"
            )
        dec = tuple(cfg.decoder_channels) if cfg.decoder_channels else (256, 128, 64, 32)
        if len(dec) != 4:
            raise ValueError(f"member {cfg.name!r}: U-Net++ with depth 4 needs 4 decoder_channels, got {dec}")
        net = smp.UnetPlusPlus(
            encoder_name=cfg.encoder,
            encoder_depth=4,
            encoder_weights=None,
            decoder_channels=dec,
            in_channels=1,
            classes=NUM_CLASSES,
            **cfg.extra,
        )
        if hasattr(net.encoder, "layer4"):  # ResNet's 4th stage is built but unused at depth 4
            del net.encoder.layer4
        return SmpMember(net, multiple=16, dropout=cfg.dropout)
    if cfg.arch == "deeplabv3p":
        dec = int(cfg.decoder_channels) if cfg.decoder_channels else 256
        net = smp.DeepLabV3Plus(
            encoder_name=cfg.encoder,
            encoder_depth=5,
            encoder_weights=None,
            encoder_output_stride=16,
            decoder_channels=dec,
            decoder_aspp_dropout=0.0,
            in_channels=1,
            classes=NUM_CLASSES,
            **cfg.extra,
        )
        return SmpMember(net, multiple=16, dropout=cfg.dropout, latent="aspp")
    raise ValueError(f"unknown segmentation architecture {cfg.arch!r}: use unet, unetpp or deeplabv3p")
