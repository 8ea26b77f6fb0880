"""Tiny, real models for tests (needs torch; imported only by tests and tools, never by the runtime).

:func:`make_tiny_onnx` builds a small conv net with the team's I/O contract, exports it to ONNX
(opset 17, dynamic batch, weights inside the file) and writes its manifest; with
``torch_export=True`` it also writes the ``torch.export`` program the torch backend loads. Both kinds
follow the I/O contract of docs/engines.md (manifest fields: engines/manifest.schema.json):

* ``"frame"``: input ``frame`` [batch,1,H,W] → ``probs`` [batch,4] (softmax), ``theta`` [batch,2,2,3];
* ``"seg"``: inputs ``image`` [batch,1,H,W] and ``dropout_mask`` [batch,C,H/2,W/2] (0 or 1/(1-p),
  multiplied into the latent) → ``probs`` [batch,5,H,W] (softmax), with ``parameters.mc_dropout``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from engines.manifest import build_manifest, write_manifest

TRAINING_STUB = {
    "data": "none (random weights, test fixture)",
    "synthetic_only": True,
    "clinical_use": False,
    "command": "engines.testing.make_tiny_onnx",
}


def _frame_net(size_hw: tuple[int, int]) -> Any:
    import torch
    from torch import nn

    class TinyFrameNet(nn.Module):
        """conv → global pool → (4 score logits, 2 affine transforms)."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
            )
            self.head = nn.Linear(8, 4)
            self.loc = nn.Linear(8, 12)

        def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = self.features(frame).mean(dim=(2, 3))
            probs = torch.softmax(self.head(z), dim=1)
            theta = torch.tanh(self.loc(z)).reshape(-1, 2, 2, 3)
            return probs, theta

    return TinyFrameNet()


def _seg_net(latent_channels: int) -> Any:
    import torch
    from torch import nn

    class TinySegNet(nn.Module):
        """encoder (stride 2) → latent × dropout_mask → decoder (×2 upsample) → 5-class softmax."""

        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(1, latent_channels, 3, stride=2, padding=1), nn.ReLU())
            self.dec = nn.Conv2d(latent_channels, 5, 3, padding=1)

        def forward(self, image: torch.Tensor, dropout_mask: torch.Tensor) -> torch.Tensor:
            z = self.enc(image) * dropout_mask
            logits = nn.functional.interpolate(self.dec(z), scale_factor=2.0, mode="nearest")
            return torch.softmax(logits, dim=1)

    return TinySegNet()


def make_tiny_onnx(
    out_dir: str | Path,
    kind: str = "frame",
    *,
    name: str | None = None,
    seed: int = 0,
    size_hw: tuple[int, int] = (16, 16),
    latent_channels: int = 4,
    p: float = 0.5,
    torch_export: bool = True,
) -> Path:
    """Export a tiny ``kind`` model into ``out_dir``; returns the ONNX manifest path (NAME.json)."""
    import torch

    if kind not in ("frame", "seg"):
        raise ValueError(f"kind {kind!r}: use 'frame' or 'seg'")
    h, w = size_hw
    if kind == "seg" and (h % 2 or w % 2):
        raise ValueError(f"seg size_hw {size_hw} must be even (the latent is half size)")
    name = name or f"tiny-{kind}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if kind == "frame":
        net = _frame_net(size_hw).eval()
        example: tuple[Any, ...] = (torch.rand(2, 1, h, w),)
        in_names, out_names = ["frame"], ["probs", "theta"]
        inputs = [{"name": "frame", "shape": ["batch", 1, h, w], "dtype": "float32", "layout": "NCHW"}]
        outputs = [
            {"name": "probs", "shape": ["batch", 4], "dtype": "float32", "meaning": "softmax, scores 0-3"},
            {"name": "theta", "shape": ["batch", 2, 2, 3], "dtype": "float32", "meaning": "affine θ1, θ2"},
        ]
        classes = ["score 0", "score 1", "score 2", "score 3"]
        params: dict[str, Any] = {}
        task, scale = "frame-score", "unit"
    else:
        net = _seg_net(latent_channels).eval()
        lat = [latent_channels, h // 2, w // 2]
        example = (torch.rand(2, 1, h, w) * 2 - 1, torch.ones(2, *lat))
        in_names, out_names = ["image", "dropout_mask"], ["probs"]
        inputs = [
            {"name": "image", "shape": ["batch", 1, h, w], "dtype": "float32", "layout": "NCHW"},
            {"name": "dropout_mask", "shape": ["batch", *lat], "dtype": "float32", "layout": "NCHW"},
        ]
        outputs = [
            {"name": "probs", "shape": ["batch", 5, h, w], "dtype": "float32", "meaning": "softmax 0-3,BG"}
        ]
        classes = ["score 0", "score 1", "score 2", "score 3", "background"]
        params = {"mc_dropout": {"input": "dropout_mask", "p": p, "shape": lat}}
        task, scale = "segmentation", "symmetric"
    onnx_path = out / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            example,
            str(onnx_path),
            input_names=in_names,
            output_names=out_names,
            opset_version=17,
            dynamo=False,
            dynamic_axes={n: {0: "batch"} for n in in_names + out_names},
        )
    manifest = build_manifest(
        model_file=onnx_path,
        name=name,
        version="0.0.1",
        task=task,
        format="onnx",
        inputs=inputs,
        outputs=outputs,
        preprocessing={"size_hw": [h, w], "scale": scale, "padding": "letterbox-zero", "channels": 1},
        class_names=classes,
        training=dict(TRAINING_STUB),
        metrics={},
        parameters=params,
    )
    manifest_path = write_manifest(manifest, out / f"{name}.json")
    if torch_export:
        from engines.torch_backend import save_torch_export

        save_torch_export(net, example, manifest_path)
    return manifest_path
