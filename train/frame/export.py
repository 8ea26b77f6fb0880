"""Export a frame model to ONNX for the runtime (docs/frame_model.md "Export"): input ``frame``
[batch, 1, H, W], outputs ``probs`` [batch, 4] (softmax over scores 0–3) and ``theta`` [batch, 2, 2, 3]
(θ1 then θ2, affine_grid convention, normalised input coordinates, align_corners=False), dynamic batch,
opset 17, weights inside the file. The graph uses only ops ONNX Runtime and TensorRT's parser both support
(the sampling grid is a MatMul, then GridSample). Parity with PyTorch is checked with ONNX Runtime
at export (max abs diff ≤ 1e-4), and the manifest is written with ``engines.manifest``.

Models without an STN report θ = identity twice (the crop is the whole frame); a one-crop STN
repeats θ1.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engines import manifest as mf
from engines.torch_backend import save_torch_export

CLASS_NAMES = ["score 0", "score 1", "score 2", "score 3"]
PARITY_TOLERANCE = 1e-4
OPSET = 17


class FrameScorer(nn.Module):
    """Inference graph: frame → (probs, theta) for any frame model of :mod:`train.models`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(frame)
        probs = torch.softmax(out["logits"], dim=1)
        theta = out.get("theta")
        n = frame.shape[0]
        if theta is None:
            eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=frame.dtype, device=frame.device)
            theta = eye.reshape(1, 1, 2, 3).expand(n, 2, 2, 3)
        elif theta.shape[1] == 1:
            theta = theta.expand(n, 2, 2, 3)
        return probs, theta.contiguous()


def export_onnx(model: nn.Module, path: str | Path, input_hw: tuple[int, int], opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX to ``path`` (one self-contained file, dynamic batch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scorer = FrameScorer(model).cpu().eval()
    dummy = torch.rand(2, 1, *input_hw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python ints in shapes are expected
        torch.onnx.export(
            scorer,
            (dummy,),
            str(path),
            input_names=["frame"],
            output_names=["probs", "theta"],
            dynamic_axes={"frame": {0: "batch"}, "probs": {0: "batch"}, "theta": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
            external_data=False,
        )
    return path


def ort_session(path: str | Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (1 by default: 2-core machines)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_parity(
    model: nn.Module, path: str | Path, input_hw: tuple[int, int], n: int = 3, seed: int = 0
) -> float:
    """Max abs difference between PyTorch and ONNX Runtime over both outputs, for batches 1 and ``n``."""
    scorer = FrameScorer(model).cpu().eval()
    sess = ort_session(path)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in (1, n):
        x = torch.rand(batch, 1, *input_hw, generator=gen)
        with torch.no_grad():
            ref = [t.numpy() for t in scorer(x)]
        got = sess.run(["probs", "theta"], {"frame": x.numpy()})
        for r, g in zip(ref, got, strict=True):
            if r.shape != g.shape:
                raise RuntimeError(f"ONNX output shape {g.shape} != PyTorch {r.shape} for {path}")
            worst = max(worst, float(np.max(np.abs(r - g))))
    return worst


def frame_manifest(
    onnx_path: Path,
    input_hw: tuple[int, int],
    name: str,
    version: str,
    training: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest (engines/manifest.schema.json) for an exported frame model."""
    h, w = int(input_hw[0]), int(input_hw[1])
    return mf.build_manifest(
        model_file=onnx_path,
        name=name,
        version=version,
        task="frame-score",
        format="onnx",
        inputs=[{"name": "frame", "shape": ["batch", 1, h, w], "dtype": "float32", "layout": "NCHW"}],
        outputs=[
            {
                "name": "probs",
                "shape": ["batch", 4],
                "dtype": "float32",
                "meaning": "softmax over scores 0-3",
            },
            {
                "name": "theta",
                "shape": ["batch", 2, 2, 3],
                "dtype": "float32",
                "meaning": "theta1, theta2: affine_grid convention, normalised [-1,1] input coordinates, "
                "align_corners=False; crop corners = theta @ [+-1, +-1, 1]",
            },
        ],
        preprocessing={"size_hw": [h, w], "scale": "unit", "padding": "letterbox-zero", "channels": 1},
        class_names=list(CLASS_NAMES),
        training=training,
        metrics=metrics or {},
        parameters=parameters or {},
    )


def model_parameters(model: nn.Module, cfg: Any) -> dict[str, Any]:
    """The manifest's ``parameters`` block of a frame model built from a ``FrameConfig``."""
    from train.frame.speed import count_gflop

    h, w = cfg.input_hw
    return {
        "gflop_per_frame": round(count_gflop(model, cfg.input_hw), 4),
        "arch": cfg.arch,
        "width": cfg.width,
        "loc_downsample": cfg.loc_downsample,
        "crop_hw": [h // 2, w // 2],
    }


def export_frame_model(
    model: nn.Module,
    out_onnx: str | Path,
    input_hw: tuple[int, int],
    name: str,
    version: str,
    training: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[Path, Path, float]:
    """Export, check parity (raises above :data:`PARITY_TOLERANCE`), write the manifest beside it.

    Returns (onnx path, manifest path, max abs diff).
    """
    onnx_path = export_onnx(model, out_onnx, input_hw)
    diff = check_parity(model, onnx_path, input_hw)
    if not diff <= PARITY_TOLERANCE:
        raise RuntimeError(
            f"ONNX export of {name} differs from PyTorch by {diff:.2e} (> {PARITY_TOLERANCE}): {onnx_path}; "
            "check for training-mode layers or unsupported ops"
        )
    metrics = {**(metrics or {}), "onnx_parity_max_abs_diff": diff}
    manifest = frame_manifest(onnx_path, input_hw, name, version, training, metrics, parameters)
    manifest_path = mf.write_manifest(manifest, mf.manifest_path_for(onnx_path))
    # the same graph as a torch.export program beside it, for the PyTorch backend (GPU boxes without
    # TensorRT, parity checks, the benchmark's naive loop); tied to the ONNX by its sha256
    save_torch_export(FrameScorer(model).eval(), (torch.rand(2, 1, *input_hw),), manifest_path)
    return onnx_path, manifest_path, diff
