"""Inference cost of frame-model configurations: GFLOP per frame (counted from the layers) and
ONNX Runtime CPU milliseconds per frame (batch 1, one intra-op thread), so the CPU default can be
chosen by measurement (the CPU budget: docs/frame_model.md "Choosing the CPU default"). Weights are
random: cost does not depend on them.

``python -m train.frame.speed`` prints a Markdown table for the standard candidates.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from train.frame.export import export_onnx, ort_session
from train.models import build_frame_model


@dataclass(frozen=True)
class Candidate:
    name: str
    arch: str
    input_hw: tuple[int, int]
    width: float
    loc_downsample: int = 1


CANDIDATES = (
    Candidate("paper 224, x1.0", "regstn", (224, 224), 1.0),
    Candidate("224, x0.5, loc/2", "regstn", (224, 224), 0.5, 2),
    Candidate("128, x1.0", "regstn", (128, 128), 1.0),
    Candidate("128, x1.0, loc/2", "regstn", (128, 128), 1.0, 2),
    Candidate("128, x0.5", "regstn", (128, 128), 0.5),
    Candidate("128, x0.5, loc/2", "regstn", (128, 128), 0.5, 2),
    Candidate("128, x0.25, loc/2", "regstn", (128, 128), 0.25, 2),
    Candidate("CNN 128, x0.5 (baseline)", "cnn", (128, 128), 0.5),
)


def count_gflop(model: nn.Module, input_hw: tuple[int, int]) -> float:
    """Multiply-adds ×2 of the conv and linear layers for one frame in eval mode, in GFLOP."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += out.numel() * k
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 1, *input_hw))
    for h in handles:
        h.remove()
    return 2 * total / 1e9


def ort_ms_per_frame(
    onnx_path: Path, input_hw: tuple[int, int], repeats: int = 200, threads: int = 1
) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) per single-frame ``run`` after a warm-up.

    The CPU time (``time.process_time``) is what the model costs one core; on a shared, loaded
    machine the wall time also contains waiting for the core.
    """
    sess = ort_session(onnx_path, threads)
    x = np.random.default_rng(0).random((1, 1, *input_hw), dtype=np.float32)
    for _ in range(10):
        sess.run(None, {"frame": x})
    times = []
    cpu0 = time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"frame": x})
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / repeats
    return float(np.median(times) * 1e3), float(cpu * 1e3)


def measure(cands: tuple[Candidate, ...] = CANDIDATES, repeats: int = 200) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in cands:
            model = build_frame_model(c.arch, c.input_hw, width=c.width, loc_downsample=c.loc_downsample)
            path = export_onnx(model, Path(tmp) / "m.onnx", c.input_hw)
            ms, cpu_ms = ort_ms_per_frame(path, c.input_hw, repeats)
            rows.append({
                "candidate": c.name, "gflop": count_gflop(model, c.input_hw), "ms": ms, "cpu_ms": cpu_ms,
                "fps": 1e3 / cpu_ms, "onnx_mb": path.stat().st_size / 1e6,
            })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, float | str]]) -> str:
    lines = [
        "| candidate | GFLOP/frame | ORT 1-thread CPU ms | frames/s per core | wall ms (median) | ONNX MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['candidate']} | {r['gflop']:.3f} | {r['cpu_ms']:.2f} | {r['fps']:.0f} | {r['ms']:.2f} "
            f"| {r['onnx_mb']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(markdown(measure(repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
