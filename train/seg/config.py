"""Segmentation member configs and the two ensemble presets (one mechanism for both).

``paper`` follows Roy et al. 2020 §IV-C.2: the baseline U-Net, U-Net++ on the first four blocks of
ResNet-50, and DeepLabv3+ on ResNet-50 (the authors' code used MobileNetV2; ``deeplabv3p`` accepts
either encoder). ``lite`` keeps the paper's U-Net and puts U-Net++ and DeepLabv3+ on light encoders
with narrow decoders so that the ensemble trains and runs on a laptop CPU. Both light members use
MobileNetV2 (DeepLabv3+ as in the authors' code; U-Net++ on its first four stages because a
ResNet-18 U-Net++ costs 4× more per training step on a CPU: its 64-channel stride-2 skip feeds
every nested decoder block at high resolution).

A member is a :class:`MemberConfig`; a preset is an ordered tuple of them. Any field can be
overridden from the command line with ``--set member.field=value`` (see ``train.commands.seg``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Arch = Literal["unet", "unetpp", "deeplabv3p"]

#: Model input size (H, W) from the paper, with aspect-kept zero padding.
INPUT_HW: tuple[int, int] = (260, 200)
#: Output channel order (team contract): score classes 0..3, then background.
CLASS_NAMES: tuple[str, ...] = ("score0", "score1", "score2", "score3", "background")
NUM_CLASSES = len(CLASS_NAMES)


@dataclass(frozen=True)
class MemberConfig:
    """One ensemble member: architecture, encoder and decoder sizes, latent dropout."""

    name: str
    arch: Arch
    encoder: str | None = None  # smp encoder name (unetpp / deeplabv3p)
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] | int = ()
    dropout: float = 0.5
    # paper U-Net only
    filters: tuple[int, int, int] = (16, 32, 64)
    kernels: tuple[int, int, int] = (3, 5, 5)
    pools: tuple[int, int, int] = (2, 2, 5)
    latent_channels: int = 128
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemberConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown member config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        for key in ("filters", "kernels", "pools"):
            if key in d:
                d[key] = tuple(d[key])
        if isinstance(d.get("decoder_channels"), list):
            d["decoder_channels"] = tuple(d["decoder_channels"])
        return cls(**d)


PRESETS: dict[str, tuple[MemberConfig, ...]] = {
    "paper": (
        MemberConfig("unet", "unet"),
        MemberConfig(
            "unetpp", "unetpp", encoder="resnet50", encoder_depth=4, decoder_channels=(256, 128, 64, 32)
        ),
        MemberConfig("deeplabv3p", "deeplabv3p", encoder="resnet50", encoder_depth=5, decoder_channels=256),
    ),
    "lite": (
        MemberConfig("unet", "unet"),
        MemberConfig(
            "unetpp", "unetpp", encoder="mobilenet_v2", encoder_depth=4, decoder_channels=(32, 16, 8, 8)
        ),
        MemberConfig(
            "deeplabv3p", "deeplabv3p", encoder="mobilenet_v2", encoder_depth=5, decoder_channels=64
        ),
    ),
}


def preset(name: str) -> tuple[MemberConfig, ...]:
    """The members of preset ``name`` (``paper`` or ``lite``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown segmentation preset {name!r}: choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def member(preset_name: str, member_name: str) -> MemberConfig:
    """One member of a preset by name (``unet``, ``unetpp``, ``deeplabv3p``)."""
    for m in preset(preset_name):
        if m.name == member_name:
            return m
    names = [m.name for m in preset(preset_name)]
    raise ValueError(f"preset {preset_name!r} has no member {member_name!r}: choose one of {names}")


def override(cfg: MemberConfig, assignments: list[str]) -> MemberConfig:
    """Apply ``field=value`` strings (value parsed as JSON when it parses, else a string)."""
    d = cfg.to_dict()
    for item in assignments:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not FIELD=VALUE (e.g. decoder_channels=[32,16,8,4])")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        d[key.strip()] = value
    return MemberConfig.from_dict(d)
