#!/usr/bin/env python
"""Static int8 quantisation (QDQ) of the frame model with ONNX Runtime, calibrated on real frames.

Calibration frames come from real clips, decoded, ROI-cropped and preprocessed exactly as the engine
does it (``stream.capture.make_source`` → ``stream.roi.RoiTracker`` → ``stream.lanes.Prepared`` →
``engines.preprocess``). Only ``Conv`` and ``Gemm`` are quantised (weights int8 per channel,
activations uint8, ``reduce_range`` for AVX2 without VNNI); the sampler's grid ``MatMul`` and
``GridSample`` stay fp32 so the crop geometry is not rounded. The int8 model is then compared
with fp32 on frames NOT used for calibration (every other clip): speed (ONNX Runtime CPU, one
thread, batch 1) and agreement (same argmax score, max |Δp|, mean |Δθ|).

    tools/quantize.py --manifest models/frame/regstn.json --clips ../shared/data/real-clips \\
        --out results/int8

Writes ``OUT/NAME-int8.onnx`` + its manifest (``NAME-int8.json``, same preprocessing, the
calibration recorded under ``parameters.quantisation``) and ``OUT/quantize.json`` with the
comparison. It does not touch ``models/``: shipping the int8 model is a separate decision.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mpeg", ".mpg", ".mkv")


def clip_inputs(clip: Path, spec: dict[str, Any], n: int) -> list[np.ndarray]:
    """Up to ``n`` evenly spaced preprocessed frames [1,1,H,W] of a clip, through the engine's own code."""
    from stream.bench.isolated import decode_and_roi
    from stream.capture import SourceSpec
    from stream.lanes import Prepared

    _, frames = decode_and_roi(SourceSpec("clip", path=str(clip)), max_frames=10_000)
    if not frames:
        return []
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    return [Prepared(frames[i]).input(spec)[0] for i in idx]


class Reader:
    """ONNX Runtime calibration reader over preprocessed frames."""

    def __init__(self, xs: list[np.ndarray], name: str = "frame") -> None:
        self._it = iter([{name: x} for x in xs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def time_ms(sess: Any, xs: list[np.ndarray], seconds: float = 3.0) -> dict[str, float]:
    for x in xs[:3]:
        sess.run(None, {"frame": x})
    walls = []
    cpu0 = time.process_time()
    t_end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < t_end or len(walls) < 10:
        t = time.perf_counter()
        sess.run(None, {"frame": xs[i % len(xs)]})
        walls.append(time.perf_counter() - t)
        i += 1
    return {
        "p50_ms": float(np.median(walls) * 1e3),
        "cpu_ms": (time.process_time() - cpu0) / len(walls) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--manifest", type=Path, required=True, help="frame model manifest (NAME.json beside NAME.onnx)"
    )
    p.add_argument(
        "--clips", type=Path, required=True, help="folder of real clips (calibration + comparison)"
    )
    p.add_argument("--frames-per-clip", type=int, default=40, help="frames taken from each clip")
    p.add_argument("--out", type=Path, default=Path("results/int8"), help="output folder")
    p.add_argument("--seconds", type=float, default=3.0, help="timing budget per model")
    args = p.parse_args(argv)

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from engines.manifest import build_manifest, load_manifest, model_file_path, write_manifest

    m = load_manifest(args.manifest)
    spec = m["preprocessing"]
    src = model_file_path(m, args.manifest)
    clips = sorted(c for c in args.clips.iterdir() if c.suffix.lower() in VIDEO_SUFFIXES)
    if len(clips) < 2:
        raise SystemExit(f"{args.clips}: need at least two clips (calibration and comparison sets)")
    calib_clips, test_clips = clips[0::2], clips[1::2]
    calib = [x for c in calib_clips for x in clip_inputs(c, spec, args.frames_per_clip)]
    test = [x for c in test_clips for x in clip_inputs(c, spec, args.frames_per_clip)]
    args.out.mkdir(parents=True, exist_ok=True)
    pre = args.out / f"{src.stem}-pre.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
    dst = args.out / f"{src.stem}-int8.onnx"
    quantize_static(
        str(pre), str(dst), Reader(calib), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "Gemm"],
        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip
    fp32, int8 = session(src), session(dst)
    p32 = [fp32.run(None, {"frame": x}) for x in test]
    p8 = [int8.run(None, {"frame": x}) for x in test]
    probs32 = np.concatenate([o[0] for o in p32])
    probs8 = np.concatenate([o[0] for o in p8])
    th32 = np.concatenate([o[1] for o in p32])
    th8 = np.concatenate([o[1] for o in p8])
    t32, t8 = time_ms(fp32, test, args.seconds), time_ms(int8, test, args.seconds)
    result = {
        "model": str(src), "int8": str(dst), "calibration_clips": [c.name for c in calib_clips],
        "calibration_frames": len(calib), "comparison_clips": [c.name for c in test_clips],
        "comparison_frames": len(test),
        "score_agreement": float((probs32.argmax(1) == probs8.argmax(1)).mean()),
        "max_abs_prob_diff": float(np.abs(probs32 - probs8).max()),
        "mean_abs_theta_diff": float(np.abs(th32 - th8).mean()),
        "fp32": t32, "int8_timing": t8, "speedup_cpu": t32["cpu_ms"] / t8["cpu_ms"],
        "onnx_mb": {"fp32": src.stat().st_size / 1e6, "int8": dst.stat().st_size / 1e6},
    }  # fmt: skip
    fields = {k: v for k, v in m.items() if k not in ("file", "sha256", "onnx_sha256", "name")}
    fields["parameters"] = {**(m.get("parameters") or {}), "quantisation": {
        "method": "onnxruntime quantize_static QDQ, Conv+Gemm, per-channel int8 weights, uint8 activations, "
                  "reduce_range, MinMax", "calibration_clips": result["calibration_clips"],
        "calibration_frames": len(calib), "fp32_sha256": m["sha256"]}}  # fmt: skip
    man = build_manifest(model_file=dst, name=f"{m['name']}-int8", **fields)
    write_manifest(man, dst.with_suffix(".json"))
    pre.unlink(missing_ok=True)
    (args.out / "quantize.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
