"""Benchmark (not a test): ms/frame of each segmentation member and of the ``lite`` and ``paper``
ensembles on ONNX Runtime CPU with one thread, deterministic (mask of ones, batch 1) and, with
``--mc-k``, one batched MC-dropout call of K samples per member.

    python -m train.seg.bench --lite-dir models/seg --mc-k 8

Members of a preset without shipped ONNX files are exported with random weights into a temporary
folder (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from train.seg.config import INPUT_HW, preset


def time_session(sess, feeds: dict[str, np.ndarray], repeats: int, warmup: int = 2) -> float:
    """Median wall time (ms) of ``sess.run`` over ``repeats`` calls."""
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lite-dir", type=Path, default=Path("models/seg"), help="shipped lite ONNX files")
    ap.add_argument("--presets", default="lite,paper")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--mc-k", type=int, default=0, help="also time one batched MC call of K samples")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from train.models.seg_models import build_member
    from train.seg.export import export_onnx, ort_session

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="segbench-"))
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, 1, *INPUT_HW)).astype(np.float32)
    lines = [
        "| preset | member | ONNX MB | ms/frame (batch 1) |"
        + (f" ms per MC call (K={args.mc_k}) |" if args.mc_k else ""),
        "|---|---|---|---|" + ("---|" if args.mc_k else ""),
    ]
    for pname in args.presets.split(","):
        total, total_mc, total_mb = 0.0, 0.0, 0.0
        for cfg in preset(pname):
            path = args.lite_dir / f"{cfg.name}.onnx" if pname == "lite" else None
            model = build_member(cfg).eval()
            if path is None or not path.is_file():
                path = export_onnx(model, tmp / pname / f"{cfg.name}.onnx")
            shape = model.latent_shape(*INPUT_HW)
            sess = ort_session(path, threads=1)
            ms = time_session(
                sess, {"image": image, "dropout_mask": np.ones((1, *shape), np.float32)}, args.repeats
            )
            mb = path.stat().st_size / 1e6
            row = f"| {pname} | {cfg.name} | {mb:.1f} | {ms:.0f} |"
            total += ms
            total_mb += mb
            if args.mc_k:
                masks = ((rng.random((args.mc_k, *shape)) >= 0.5) * 2).astype(np.float32)
                mc = time_session(
                    sess,
                    {"image": np.repeat(image, args.mc_k, 0), "dropout_mask": masks},
                    max(2, args.repeats // 4),
                    warmup=1,
                )
                total_mc += mc
                row += f" {mc:.0f} |"
            lines.append(row)
            print(row, flush=True)
        lines.append(
            f"| {pname} | **ensemble** | {total_mb:.1f} | {total:.0f} |"
            + (f" {total_mc:.0f} |" if args.mc_k else "")
        )
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
