"""ONNX export of segmentation members with their manifests (engines/manifest.schema.json, docs/engines.md).

One ONNX file per member serves both uses: inputs ``image`` [batch, 1, 260, 200] float32
(symmetric scaling) and ``dropout_mask`` [batch, C, h, w] float32 (values 0 or 1/(1−p), applied to
the latent features), output ``probs`` [batch, 5, 260, 200] (softmax over [0, 1, 2, 3, BG]). A mask
of ones gives the deterministic member; MC dropout with K samples is one call with the image
repeated K times and K Bernoulli masks (drawn by the runtime, numpy only). Opset 17, dynamic batch,
weights inside the file (``external_data=False``). Parity with PyTorch (mask = ones) is checked
after export: max |Δ| ≤ 1e-4.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.manifest import build_manifest, write_manifest
from engines.torch_backend import save_torch_export
from train.seg.config import CLASS_NAMES, INPUT_HW, MemberConfig

OPSET = 17
PARITY_TOL = 1e-4


class ExportWrapper(nn.Module):
    """(image, dropout_mask) → softmax probabilities, the graph the runtime loads."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, dropout_mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image, dropout_mask), dim=1)


def export_onnx(model: nn.Module, path: str | Path, size_hw: tuple[int, int] = INPUT_HW) -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    shape = model.latent_shape(*size_hw)
    image = torch.zeros(2, 1, *size_hw)
    mask = torch.ones(2, *shape)
    with warnings.catch_warnings():  # tracer notes on the (constant) padding sizes; deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ExportWrapper(model),
            (image, mask),
            str(path),
            opset_version=OPSET,
            dynamo=False,
            input_names=["image", "dropout_mask"],
            output_names=["probs"],
            dynamic_axes={"image": {0: "batch"}, "dropout_mask": {0: "batch"}, "probs": {0: "batch"}},
            external_data=False,
        )
    return path


def ort_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_parity(
    model: nn.Module, path: str | Path, size_hw: tuple[int, int] = INPUT_HW, batch: int = 2, seed: int = 0
) -> float:
    """Max |ONNX − PyTorch| on random images with a mask of ones; raises if above 1e-4."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, *size_hw, generator=g) * 2 - 1
    mask = torch.ones(batch, *model.latent_shape(*size_hw))
    with torch.no_grad():
        ref = torch.softmax(model.eval()(x, mask), dim=1).numpy()
    got = ort_session(path).run(["probs"], {"image": x.numpy(), "dropout_mask": mask.numpy()})[0]
    err = float(np.abs(got - ref).max())
    if err > PARITY_TOL:
        raise RuntimeError(f"{path}: ONNX differs from PyTorch by {err:.2e} (> {PARITY_TOL}); do not ship it")
    return err


def member_manifest(
    cfg: MemberConfig,
    model: nn.Module,
    onnx_path: Path,
    *,
    version: str,
    training: dict[str, Any],
    metrics: dict[str, Any],
    size_hw: tuple[int, int] = INPUT_HW,
) -> dict[str, Any]:
    """The manifest of one exported member (validated by ``engines.manifest``)."""
    shape = list(model.latent_shape(*size_hw))
    return build_manifest(
        model_file=onnx_path,
        name=f"seg-{cfg.name}",
        version=version,
        task="segmentation",
        format="onnx",
        inputs=[
            {"name": "image", "shape": ["batch", 1, *size_hw], "dtype": "float32", "layout": "NCHW"},
            {"name": "dropout_mask", "shape": ["batch", *shape], "dtype": "float32", "layout": "NCHW"},
        ],
        outputs=[
            {
                "name": "probs",
                "shape": ["batch", len(CLASS_NAMES), *size_hw],
                "dtype": "float32",
                "meaning": "softmax over [score0, score1, score2, score3, background] per pixel",
            }
        ],
        preprocessing={
            "size_hw": list(size_hw),
            "scale": "symmetric",
            "padding": "letterbox-zero",
            "channels": 1,
        },
        class_names=list(CLASS_NAMES),
        training=training,
        metrics=metrics,
        parameters={
            "mc_dropout": {"input": "dropout_mask", "p": float(cfg.dropout), "shape": shape},
            "architecture": cfg.to_dict(),
        },
    )


def export_member(
    cfg: MemberConfig,
    model: nn.Module,
    out_dir: str | Path,
    *,
    version: str,
    training: dict[str, Any],
    metrics: dict[str, Any],
) -> tuple[Path, Path, float]:
    """Export ``out_dir/NAME.onnx`` + ``NAME.json``; returns (onnx, manifest, parity error)."""
    onnx_path = export_onnx(model, Path(out_dir) / f"{cfg.name}.onnx")
    err = check_parity(model, onnx_path)
    manifest = member_manifest(
        cfg,
        model,
        onnx_path,
        version=version,
        training=training,
        metrics={**metrics, "onnx_parity_max_abs": err},
    )
    json_path = write_manifest(manifest, onnx_path.with_suffix(".json"))
    # the same graph as a torch.export program beside it, for the PyTorch backend (GPU boxes without
    # TensorRT, parity checks, the benchmark's naive loop); tied to the ONNX by its sha256
    example = (torch.zeros(2, 1, *INPUT_HW), torch.ones(2, *model.latent_shape(*INPUT_HW)))
    save_torch_export(ExportWrapper(model.eval()), example, json_path)
    return onnx_path, json_path, err
