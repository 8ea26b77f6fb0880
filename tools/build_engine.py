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
``--calib-clips`` through ``engines.preprocess`` (the stream's own preprocessing). ``--check``
runs the plan and ONNX Runtime (CPU) on sample frames, prints max/mean abs differences and the
agreement of predicted classes, and fails when more than ``--max-flip`` of them change.
A timing cache (default: one per GPU and TensorRT version in the output folder) is reused across
builds. Without TensorRT or a GPU it exits with one sentence, not a traceback.

Argument handling, naming and frame sampling are importable functions (tested on CPU machines).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import EngineError
from engines.manifest import ManifestError, build_manifest, load_manifest, sha256_file, write_manifest
from engines.plans import plan_stem, slug

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".mpeg", ".mpg", ".m4v", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class ToolError(Exception):
    """A refusal: printed as one sentence, exit status 2."""


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


def plan_paths(
    onnx_manifest: dict[str, Any],
    onnx_manifest_path: Path,
    out: Path | None,
    gpu: dict[str, str],
    trt_version: str,
    precision: str,
) -> tuple[Path, Path]:
    """(plan file, plan manifest) for this model, GPU, TensorRT version and precision."""
    folder = out if out is not None else onnx_manifest_path.parent
    stem = plan_stem(
        onnx_manifest["name"], gpu["gpu_name"], gpu["compute_capability"], trt_version, precision
    )
    return folder / f"{stem}.plan", folder / f"{stem}.json"


def default_timing_cache(folder: Path, gpu: dict[str, str], trt_version: str) -> Path:
    cc = gpu["compute_capability"].replace(".", "")
    return folder / f"timing__{slug(gpu['gpu_name'])}__sm{cc}__trt{slug(trt_version)}.cache"


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


# ----------------------------------------------------------------------------------- environment
def require_tensorrt() -> tuple[Any, dict[str, str]]:
    """(tensorrt module, GPU info) or ToolError with ONE sentence saying what is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        raise ToolError(
            "TensorRT is not installed here, so no plan was built: run this on a machine with an NVIDIA GPU "
            "after pip install 'lus-stream[gpu]' (tensorrt>=10, pycuda)."
        )
    from engines.trt_backend import current_gpu, import_tensorrt

    try:
        trt = import_tensorrt()
    except EngineError as exc:
        raise ToolError(f"{exc}, so no plan was built.") from None
    gpu = current_gpu()
    if gpu is None:
        raise ToolError(
            "No NVIDIA GPU is visible to pycuda here, so no plan was built: run this on the GPU machine."
        )
    return trt, gpu


# ------------------------------------------------------------------------------------ frames
def _clip_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)


def sample_frames(folder: Path, n: int) -> list[np.ndarray]:
    """Up to ``n`` frames spread evenly over the clips (and images) in ``folder``, as decoded (BGR/gray)."""
    import cv2

    files = _clip_files(folder)
    if not files:
        raise ToolError(f"{folder}: no clips or images ({', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)}) found")
    per_file = max(1, -(-n // len(files)))
    frames: list[np.ndarray] = []
    for f in files:
        if f.suffix.lower() in IMAGE_SUFFIXES:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is not None:
                frames.append(img)
            continue
        cap = cv2.VideoCapture(str(f))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        stride = max(1, total // per_file) if total > 0 else 3
        taken, idx = 0, 0
        while taken < per_file:
            ok, frame = cap.read()
            if not ok:
                break
            if idx % stride == 0:
                frames.append(frame)
                taken += 1
            idx += 1
        cap.release()
    if not frames:
        raise ToolError(f"{folder}: no frame could be decoded from {len(files)} file(s)")
    return frames[:n]


def model_inputs(frames: Sequence[np.ndarray], manifest: dict[str, Any]) -> np.ndarray:
    """Frames → model input batch [N,1,H,W] float32 through engines.preprocess (the stream's path).

    The ultrasound region is cut out first with ``stream.roi.detect_roi`` when that module exists.
    """
    from engines.preprocess import preprocess

    try:
        from stream.roi import detect_roi  # type: ignore[import-not-found]
    except ImportError:
        detect_roi = None
    spec = manifest["preprocessing"]
    if spec is None:
        raise ToolError(
            f"{manifest['name']}: the manifest has no preprocessing block, so frames cannot be fed"
        )
    out = []
    for frame in frames:
        if detect_roi is not None:
            x, y, w, h = detect_roi(frame)
            frame = frame[y : y + h, x : x + w]
        out.append(preprocess(frame, spec)[0][0])
    return np.stack(out).astype(np.float32)


def feeds_for(manifest: dict[str, Any], images: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs for a batch of images: the image input, plus dropout masks of ones where declared."""
    mc = (manifest.get("parameters") or {}).get("mc_dropout")
    feed = {}
    for t in manifest["inputs"]:
        if mc is not None and t["name"] == mc["input"]:
            feed[t["name"]] = np.ones((len(images), *mc["shape"]), np.float32)
        else:
            feed[t["name"]] = images
    return feed


def sample_inputs(ns: argparse.Namespace, manifest: dict[str, Any], n: int) -> np.ndarray:
    """Check frames: real clips if given, else the synthetic simulator, else uniform noise."""
    if ns.calib_clips is not None:
        return model_inputs(sample_frames(ns.calib_clips, n), manifest)
    try:
        from synth import LiveSimulator  # type: ignore[attr-defined]

        sim = LiveSimulator(seed=0)
        return model_inputs([sim.next()[0] for _ in range(n)], manifest)
    except ImportError:
        print("build_engine: no --calib-clips and no synth module: checking on noise frames", file=sys.stderr)
        rng = np.random.default_rng(0)
        return model_inputs([rng.integers(0, 256, (240, 320), np.uint8) for _ in range(n)], manifest)


# -------------------------------------------------------------------------------------- build
def _progress_monitor(trt: Any) -> Any:
    """A TensorRT IProgressMonitor printing phases with elapsed time (builds take minutes)."""

    class Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.t0 = time.monotonic()
            self.steps: dict[str, int] = {}

        def _say(self, text: str) -> None:
            print(f"  [{time.monotonic() - self.t0:7.1f} s] {text}", file=sys.stderr, flush=True)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            indent = "  " if parent_phase else ""
            self._say(f"{indent}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self.steps.get(phase_name, 0)
            if total >= 20 and step % max(1, total // 10) == 0:
                self._say(f"    {phase_name}: {step}/{total}")
            return True  # keep building

        def phase_finish(self, phase_name: str) -> None:
            pass

    return Progress()


def _calibrator(trt: Any, manifest: dict[str, Any], images: np.ndarray, batch: int, cache: Path) -> Any:
    """Entropy calibrator (IInt8EntropyCalibrator2) over preprocessed real frames."""
    from engines.trt_backend import import_pycuda

    cuda = import_pycuda()  # called inside cuda_scope(): a context is current

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            first = feeds_for(manifest, images[:batch])
            self.device = {k: cuda.mem_alloc(v.nbytes) for k, v in first.items()}

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index + batch > len(images):
                return None
            feed = feeds_for(manifest, images[self.index : self.index + batch])
            for name, arr in feed.items():
                cuda.memcpy_htod(self.device[name], np.ascontiguousarray(arr))
            self.index += batch
            print(f"  calibration {self.index}/{len(images)} frames", file=sys.stderr, flush=True)
            return [int(self.device[n]) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_plan(onnx_manifest_path: Path, ns: argparse.Namespace, trt: Any, gpu: dict[str, str]) -> Path:
    """Build one plan and write it with its manifest; returns the plan manifest path."""
    m = load_manifest(onnx_manifest_path)
    onnx_path = onnx_manifest_path.parent / m["file"]
    precision = precision_of(ns)
    trt_version = str(trt.__version__)
    plan_path, plan_manifest_path = plan_paths(m, onnx_manifest_path, ns.out, gpu, trt_version, precision)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {plan_path.name} from {onnx_path} ...", file=sys.stderr, flush=True)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ToolError(
            f"{onnx_path}: TensorRT cannot parse this ONNX file ({errors}); re-export with opset 17"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ns.workspace << 20)
    config.progress_monitor = _progress_monitor(trt)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    bmin, bopt, bmax = ns.batch
    profile = builder.create_optimization_profile()
    for t in m["inputs"]:
        shapes = [tuple(b if d == "batch" else int(d) for d in t["shape"]) for b in (bmin, bopt, bmax)]
        profile.set_shape(t["name"], *shapes)
    config.add_optimization_profile(profile)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        images = model_inputs(sample_frames(ns.calib_clips, ns.calib_frames), m)
        calib_batch = min(bmax, 8, len(images))
        config.int8_calibrator = _calibrator(trt, m, images, calib_batch, plan_path.with_suffix(".calib"))
        config.set_calibration_profile(profile)
    cache_path = ns.timing_cache or default_timing_cache(plan_path.parent, gpu, trt_version)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    t0 = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ToolError(f"{onnx_path}: TensorRT failed to build a plan (see its log above)")
    plan_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    fields = {k: v for k, v in m.items() if k not in ("file", "sha256", "format", "onnx_sha256", "tensorrt")}
    plan_manifest = build_manifest(
        model_file=plan_path,
        format="tensorrt-plan",
        onnx_sha256=sha256_file(onnx_path),
        tensorrt={
            **gpu,
            "tensorrt_version": trt_version,
            "precision": precision,
            "batch_profile": [bmin, bopt, bmax],
        },
        **fields,
    )
    write_manifest(plan_manifest, plan_manifest_path)
    print(
        f"wrote {plan_path} ({plan_path.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - t0:.0f} s",
        file=sys.stderr,
    )
    return plan_manifest_path


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, Any]:
    """max/mean abs difference per output and the fraction of argmax classes (axis 1 of probs) that change."""
    report: dict[str, Any] = {"outputs": {}}
    for name, ref in reference.items():
        diff = np.abs(ref.astype(np.float64) - candidate[name])
        report["outputs"][name] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
    if "probs" in reference:
        flips = reference["probs"].argmax(axis=1) != candidate["probs"].argmax(axis=1)
        report["class_flip_fraction"] = float(flips.mean())
    return report


def check_plan(plan_manifest_path: Path, onnx_manifest_path: Path, ns: argparse.Namespace) -> dict[str, Any]:
    """Run plan and ONNX Runtime CPU on sample frames; report differences and class agreement."""
    from engines import load_engine

    ref = load_engine(onnx_manifest_path, "onnxruntime", providers=["CPUExecutionProvider"])
    plan = load_engine(plan_manifest_path, "tensorrt")
    images = sample_inputs(ns, ref.manifest, ns.check_frames)
    ref_out: dict[str, list[np.ndarray]] = {}
    plan_out: dict[str, list[np.ndarray]] = {}
    step = plan.max_batch or 1
    for i in range(0, len(images), step):
        feed = feeds_for(ref.manifest, images[i : i + step])
        for store, eng in ((ref_out, ref), (plan_out, plan)):
            for k, v in eng.infer(feed).items():
                store.setdefault(k, []).append(v)
    report = compare_outputs(
        {k: np.concatenate(v) for k, v in ref_out.items()},
        {k: np.concatenate(v) for k, v in plan_out.items()},
    )
    report["frames"] = len(images)
    report["passed"] = report.get("class_flip_fraction", 0.0) <= ns.max_flip
    plan.close()
    return report


# ---------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    from engines.trt_backend import cuda_scope

    ns = parse_args(argv)
    try:
        models = resolve_models(ns)
        trt, gpu = require_tensorrt()
        failed = 0
        for onnx_manifest in models:
            with cuda_scope():  # the calibrator's pycuda buffers need a current context
                plan_manifest = build_plan(onnx_manifest, ns, trt, gpu)
            if ns.check:
                rep = check_plan(plan_manifest, onnx_manifest, ns)
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
