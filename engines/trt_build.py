"""Building TensorRT plans from the ONNX models (ONNX → TensorRT plan + manifest), INT8 calibration and
the check of a built plan against ONNX Runtime. ``tools/build_engine.py`` is the command line over it.

:func:`build_plan` writes ``MODEL__GPU__smXY__trtVERSION__PRECISION.plan`` (default: beside the ONNX
file, see :func:`plan_paths`) with a manifest of the same stem that records the GPU, compute capability,
TensorRT version, precision, batch profile and the ONNX file's sha256 — the runtime uses a plan only
when all of these match (``engines.plans``), so a changed ONNX never reuses a stale plan. A timing cache
(default one per GPU and TensorRT version in the output folder, :func:`default_timing_cache`) is reused
across builds. INT8 calibrates with TensorRT's entropy calibrator (:func:`entropy_calibrator`) on real
frames read from a folder of clips (:func:`sample_frames`) and fed through ``engines.preprocess``
(:func:`model_inputs`). :func:`check_plan` runs the plan and ONNX Runtime (CPU) on sample frames and
reports max/mean abs differences and the agreement of predicted classes (:func:`compare_outputs`).

The ultrasound region is cut out of each frame by the ``roi`` callable the caller passes (the command
line passes ``stream.roi.detect_roi``, what the stream does): engines never imports ``stream``.

Imports no TensorRT or pycuda at import time: :func:`require_tensorrt` imports them (and refuses with one
sentence where they or a GPU are missing), the build functions take the module it returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import EngineError
from engines.manifest import build_manifest, load_manifest, sha256_file, write_manifest
from engines.plans import plan_stem, slug

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".mpeg", ".mpg", ".m4v", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
PRECISIONS = ("fp32", "fp16", "int8")

#: frame → ultrasound region (x, y, w, h) in its pixels, e.g. ``stream.roi.detect_roi``
RoiFinder = Callable[[np.ndarray], tuple[int, int, int, int]]


class PlanBuildError(EngineError):
    """A plan cannot be built or checked here; the message is one sentence that says why and what to do."""


@dataclass(frozen=True)
class PlanOptions:
    """How :func:`build_plan` builds: precision, batch profile, builder workspace, where files go, and
    (for ``int8``) the calibration frames."""

    precision: str = "fp32"  # "fp32" | "fp16" | "int8" (int8 keeps fp16 fallback kernels)
    batch: tuple[int, int, int] = (1, 1, 8)  # optimisation profile (min, opt, max) of the batch dimension
    workspace_mb: int = 1024
    out: Path | None = None  # output folder; None: beside the ONNX file
    timing_cache: Path | None = None  # None: default_timing_cache() in the output folder
    calib_clips: Path | None = None  # clips (or images) for int8 calibration
    calib_frames: int = 256
    roi: RoiFinder | None = None  # crops each calibration frame before preprocessing

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise PlanBuildError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.precision == "int8" and self.calib_clips is None:
            raise PlanBuildError("int8 needs calib_clips (real frames for the entropy calibrator)")


# ------------------------------------------------------------------------------------ naming
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
    """``timing__GPU__smXY__trtVERSION.cache`` in ``folder``: one timing cache per GPU and TensorRT."""
    cc = gpu["compute_capability"].replace(".", "")
    return folder / f"timing__{slug(gpu['gpu_name'])}__sm{cc}__trt{slug(trt_version)}.cache"


# ----------------------------------------------------------------------------------- environment
def require_tensorrt() -> tuple[Any, dict[str, str]]:
    """(tensorrt module, GPU info) or PlanBuildError with ONE sentence saying what is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        raise PlanBuildError(
            "TensorRT is not installed here, so no plan was built: run this on a machine with an NVIDIA GPU "
            "after pip install 'lus-stream[gpu]' (tensorrt>=10, pycuda)."
        )
    from engines.trt_backend import current_gpu, import_tensorrt

    try:
        trt = import_tensorrt()
    except EngineError as exc:
        raise PlanBuildError(f"{exc}, so no plan was built.") from None
    gpu = current_gpu()
    if gpu is None:
        raise PlanBuildError(
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
        raise PlanBuildError(
            f"{folder}: no clips or images ({', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)}) found"
        )
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
        raise PlanBuildError(f"{folder}: no frame could be decoded from {len(files)} file(s)")
    return frames[:n]


def model_inputs(
    frames: Sequence[np.ndarray], manifest: dict[str, Any], roi: RoiFinder | None = None
) -> np.ndarray:
    """Frames → model input batch [N,1,H,W] float32 through engines.preprocess (the stream's path).

    With ``roi`` (e.g. ``stream.roi.detect_roi``) the ultrasound region is cut out of each frame first.
    """
    from engines.preprocess import preprocess

    spec = manifest["preprocessing"]
    if spec is None:
        raise PlanBuildError(
            f"{manifest['name']}: the manifest has no preprocessing block, so frames cannot be fed"
        )
    out = []
    for frame in frames:
        if roi is not None:
            x, y, w, h = roi(frame)
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


def sample_inputs(
    manifest: dict[str, Any], n: int, clips: Path | None = None, roi: RoiFinder | None = None
) -> np.ndarray:
    """Check frames: real clips if given, else the synthetic simulator, else uniform noise."""
    if clips is not None:
        return model_inputs(sample_frames(clips, n), manifest, roi)
    try:
        from synth import LiveSimulator

        sim = LiveSimulator(seed=0)
        return model_inputs([sim.next()[0] for _ in range(n)], manifest, roi)
    except ImportError:
        print(
            "trt_build: no calibration clips and no synth module: checking on noise frames", file=sys.stderr
        )
        rng = np.random.default_rng(0)
        return model_inputs([rng.integers(0, 256, (240, 320), np.uint8) for _ in range(n)], manifest, roi)


# -------------------------------------------------------------------------------------- build
def progress_monitor(trt: Any) -> Any:
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


def entropy_calibrator(
    trt: Any, manifest: dict[str, Any], images: np.ndarray, batch: int, cache: Path
) -> Any:
    """Entropy calibrator (IInt8EntropyCalibrator2) over preprocessed real frames ``images``.

    Allocates its device buffers with pycuda: call it with a CUDA context current
    (``engines.trt_backend.cuda_scope()``). ``cache`` holds the calibration table between builds.
    """
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


def build_plan(onnx_manifest_path: Path, options: PlanOptions, trt: Any, gpu: dict[str, str]) -> Path:
    """Build one plan and write it with its manifest; returns the plan manifest path.

    ``trt`` and ``gpu`` come from :func:`require_tensorrt`; for int8, call it inside
    ``engines.trt_backend.cuda_scope()`` (the calibrator's pycuda buffers need a current context).
    """
    m = load_manifest(onnx_manifest_path)
    onnx_path = onnx_manifest_path.parent / m["file"]
    precision = options.precision
    trt_version = str(trt.__version__)
    plan_path, plan_manifest_path = plan_paths(
        m, onnx_manifest_path, options.out, gpu, trt_version, precision
    )
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {plan_path.name} from {onnx_path} ...", file=sys.stderr, flush=True)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PlanBuildError(
            f"{onnx_path}: TensorRT cannot parse this ONNX file ({errors}); re-export with opset 17"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.progress_monitor = progress_monitor(trt)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    bmin, bopt, bmax = options.batch
    profile = builder.create_optimization_profile()
    for t in m["inputs"]:
        shapes = [tuple(b if d == "batch" else int(d) for d in t["shape"]) for b in (bmin, bopt, bmax)]
        profile.set_shape(t["name"], *shapes)
    config.add_optimization_profile(profile)
    if precision == "int8":
        assert options.calib_clips is not None  # PlanOptions refuses int8 without clips
        config.set_flag(trt.BuilderFlag.INT8)
        images = model_inputs(sample_frames(options.calib_clips, options.calib_frames), m, options.roi)
        calib_batch = min(bmax, 8, len(images))
        config.int8_calibrator = entropy_calibrator(
            trt, m, images, calib_batch, plan_path.with_suffix(".calib")
        )
        config.set_calibration_profile(profile)
    cache_path = options.timing_cache or default_timing_cache(plan_path.parent, gpu, trt_version)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    t0 = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PlanBuildError(f"{onnx_path}: TensorRT failed to build a plan (see its log above)")
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


# -------------------------------------------------------------------------------------- check
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


def check_plan(
    plan_manifest_path: Path,
    onnx_manifest_path: Path,
    *,
    frames: int = 64,
    max_flip: float = 0.02,
    clips: Path | None = None,
    roi: RoiFinder | None = None,
) -> dict[str, Any]:
    """Run plan and ONNX Runtime CPU on ``frames`` sample frames (:func:`sample_inputs`: ``clips``, else
    the simulator); report differences and class agreement, ``passed`` when at most ``max_flip`` of the
    predicted classes change."""
    from engines import load_engine

    ref = load_engine(onnx_manifest_path, "onnxruntime", providers=["CPUExecutionProvider"])
    plan = load_engine(plan_manifest_path, "tensorrt")
    images = sample_inputs(ref.manifest, frames, clips, roi)
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
    report["passed"] = report.get("class_flip_fraction", 0.0) <= max_flip
    plan.close()
    return report
