#!/usr/bin/env python
"""Build TensorRT plans from the ONNX models (ONNX → TensorRT plan + manifest).

    tools/build_engine.py models/frame/regstn.onnx --fp16 --batch 1:1:8
    tools/build_engine.py models/seg/unet.onnx --int8 --calib-clips CLIPS_DIR --calib-frames 256
    tools/build_engine.py --all models --fp16 --check

The plan is named ``MODEL__GPU__smXY__trtVERSION__PRECISION.plan`` and written (default: beside the
ONNX file) with a manifest of the same stem that records the GPU, compute capability, TensorRT
version, precision, batch profile and the ONNX file's sha256 — the runtime uses a plan only when
all of these match, so a changed ONNX never reuses a stale plan.

``--int8`` calibrates with TensorRT's entropy calibrator on real frames read from the clips in
``--calib-clips``, cropped with ``stream.roi.detect_roi`` and preprocessed through ``engines.preprocess``
(the stream's own preprocessing). ``--check`` runs the plan and ONNX Runtime (CPU) on sample frames,
prints max/mean abs differences and the agreement of predicted classes, and fails when more than
``--max-flip`` of them change. A timing cache (default: one per GPU and TensorRT version in the output
folder) is reused across builds. Without TensorRT or a GPU it exits with one sentence, not a traceback.

This is the command line only: building, calibration, plan naming, frame sampling and the check live in
``engines.trt_build`` (importable and tested on CPU machines); argument handling is here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from engines.base import EngineError
from engines.manifest import ManifestError, load_manifest
from engines.trt_build import (
    PlanBuildError,
    PlanOptions,
    build_plan,
    check_plan,
    compare_outputs,
    default_timing_cache,
    feeds_for,
    model_inputs,
    plan_paths,
    require_tensorrt,
    sample_frames,
)

# The command line's own names, and the engines.trt_build helpers it re-exports (plan naming, frame sampling,
# output comparison) so that build_engine.X keeps working for scripts and tests that used it.
__all__ = [
    "ToolError",
    "build_parser",
    "compare_outputs",
    "default_timing_cache",
    "feeds_for",
    "main",
    "model_inputs",
    "options_of",
    "parse_args",
    "parse_batch",
    "plan_paths",
    "precision_of",
    "resolve_models",
    "sample_frames",
]

#: a refusal: printed as one sentence, exit status 2 (the engines' plan-building refusals are the same)
ToolError = PlanBuildError


# ------------------------------------------------------------------------------------- arguments
def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1:4:16"`` → (1, 4, 16); positive ints with min <= opt <= max."""
    parts = text.split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not 0 < values[0] <= values[1] <= values[2]:
        raise argparse.ArgumentTypeError(
            f"--batch {text!r}: use MIN:OPT:MAX with 0 < MIN <= OPT <= MAX, e.g. 1:1:8"
        )
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build_engine.py", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path, help="MODEL.onnx (its manifest MODEL.json beside it)")
    p.add_argument("--all", type=Path, metavar="DIR", help="build every ONNX model (with manifest) under DIR")
    p.add_argument("--out", type=Path, help="output folder (default: beside each ONNX file)")
    p.add_argument("--fp16", action="store_true", help="allow fp16 kernels")
    p.add_argument("--int8", action="store_true", help="INT8 with entropy calibration (needs --calib-clips)")
    p.add_argument(
        "--calib-clips", type=Path, metavar="DIR", help="clips (or images) for INT8 calibration/--check"
    )
    p.add_argument(
        "--calib-frames", type=int, default=256, metavar="N", help="calibration frames (default 256)"
    )
    p.add_argument(
        "--batch",
        type=parse_batch,
        default=(1, 1, 8),
        metavar="MIN:OPT:MAX",
        help="optimisation profile for the batch dimension (default 1:1:8)",
    )
    p.add_argument(
        "--workspace", type=int, default=1024, metavar="MB", help="builder workspace (default 1024 MB)"
    )
    p.add_argument("--timing-cache", type=Path, metavar="FILE", help="timing cache reused across builds")
    p.add_argument("--check", action="store_true", help="compare the plan with ONNX Runtime on sample frames")
    p.add_argument(
        "--check-frames", type=int, default=64, metavar="N", help="frames for --check (default 64)"
    )
    p.add_argument(
        "--max-flip",
        type=float,
        default=0.02,
        metavar="F",
        help="--check fails if more than this fraction of predicted classes change (default 0.02)",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the arguments (argparse exits with status 2 and a usage line on errors)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if (ns.model is None) == (ns.all is None):
        parser.error("give either MODEL.onnx or --all DIR (not both)")
    if ns.int8 and ns.calib_clips is None:
        parser.error("--int8 needs --calib-clips DIR (real frames for the entropy calibrator)")
    if ns.calib_frames < 1 or ns.check_frames < 1:
        parser.error("--calib-frames and --check-frames must be positive")
    if ns.workspace < 1:
        parser.error("--workspace must be a positive number of MB")
    if not 0 <= ns.max_flip <= 1:
        parser.error("--max-flip must be a fraction in [0, 1]")
    return ns


def precision_of(ns: argparse.Namespace) -> str:
    """Plan precision label: int8 (with fp16 fallback kernels) > fp16 > fp32."""
    return "int8" if ns.int8 else "fp16" if ns.fp16 else "fp32"


def options_of(ns: argparse.Namespace) -> PlanOptions:
    """The build options the arguments ask for (frames cropped to the ultrasound region, as in the stream)."""
    from stream.roi import detect_roi

    return PlanOptions(
        precision=precision_of(ns),
        batch=ns.batch,
        workspace_mb=ns.workspace,
        out=ns.out,
        timing_cache=ns.timing_cache,
        calib_clips=ns.calib_clips,
        calib_frames=ns.calib_frames,
        roi=detect_roi,
    )


def resolve_models(ns: argparse.Namespace) -> list[Path]:
    """ONNX manifests to build: MODEL's, or every ONNX manifest under --all DIR."""
    if ns.model is not None:
        path = ns.model if ns.model.suffix == ".json" else ns.model.with_suffix(".json")
        m = load_manifest(path)  # refuses missing/stale files with the manifest's message
        if m["format"] != "onnx":
            raise ToolError(f"{path} describes a {m['format']} file, not ONNX; pass the model's .onnx file")
        return [path]
    if not ns.all.is_dir():
        raise ToolError(f"--all {ns.all} is not a folder; pass the folder that holds the .onnx models")
    found = []
    for onnx in sorted(ns.all.rglob("*.onnx")):
        manifest = onnx.with_suffix(".json")
        if manifest.is_file() and load_manifest(manifest)["format"] == "onnx":
            found.append(manifest)
    if not found:
        raise ToolError(f"--all {ns.all}: no .onnx model with a manifest beside it was found")
    return found


# ---------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    from engines.trt_backend import cuda_scope

    ns = parse_args(argv)
    try:
        models = resolve_models(ns)
        trt, gpu = require_tensorrt()
        options = options_of(ns)
        failed = 0
        for onnx_manifest in models:
            with cuda_scope():  # the calibrator's pycuda buffers need a current context
                plan_manifest = build_plan(onnx_manifest, options, trt, gpu)
            if ns.check:
                rep = check_plan(
                    plan_manifest,
                    onnx_manifest,
                    frames=ns.check_frames,
                    max_flip=ns.max_flip,
                    clips=ns.calib_clips,
                    roi=options.roi,
                )
                outs = ", ".join(
                    f"{k}: max {v['max_abs']:.2e} mean {v['mean_abs']:.2e}" for k, v in rep["outputs"].items()
                )
                flip = rep.get("class_flip_fraction")
                verdict = (
                    "PASS" if rep["passed"] else f"FAIL (more than {ns.max_flip:.1%} of classes changed)"
                )
                print(
                    f"check {plan_manifest.stem} on {rep['frames']} frames: {outs}; "
                    f"class changes {flip if flip is None else f'{flip:.2%}'} -> {verdict}"
                )
                failed += not rep["passed"]
        return 1 if failed else 0
    except (ToolError, ManifestError, EngineError) as exc:
        print(f"build_engine.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
