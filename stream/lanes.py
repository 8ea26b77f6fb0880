"""The two inference lanes and their post-processing.

* :class:`Prepared` — one captured frame with its model inputs, made once and shared by both
  lanes: the grey ROI crop comes from capture; the letterbox for a given model input size and
  the intensity scaling are computed on first use and cached, so two models with the same input
  geometry share one resize.
* :class:`ScoringLane` — the Reg-STN frame scorer (paper §III-A) on every frame, batching the
  frames that are waiting; returns per-frame probabilities, the score and the two STN crop boxes.
* :class:`SegmentationLane` — the segmentation ensemble (paper §III-C, unweighted mean of the
  members' softmax, :class:`engines.Ensemble`) on one frame; every ``mc_every``-th run it takes
  ``mc_samples`` MC-dropout samples per member (:func:`engines.mc_dropout`: one batched call per
  member) and returns the per-pixel standard deviation of the predicted class's probability as
  the uncertainty map (paper §IV-D, Fig. 6).

Post-processing:

* :func:`theta_to_boxes` — θ (affine_grid convention, normalised [−1, 1] input coordinates,
  ``align_corners=False``) → the crop's four corners θ·[±1, ±1, 1] → model-input pixels
  (x_px = (x_n + 1)/2 · W, continuous coordinates where pixel i spans [i, i+1)) → the
  :class:`~engines.preprocess.Letterbox` back to ROI pixels → + ROI offset = source-frame pixels.
* :func:`encode_class_map` / :func:`encode_uncertainty` — compact PNGs of the class-index map
  (values 0..4, 4 = background) cut to the letterboxed image (so the map covers exactly the ROI)
  and of the uint8-quantised uncertainty (value × scale = standard deviation).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.base import Engine
from engines.manifest import training_domain
from engines.model_folders import lane_dirs, manifest_kind
from engines.preprocess import Letterbox, letterbox, scale_intensity
from stream.frames import Frame

log = logging.getLogger(__name__)

MASK_BG = 4
UNCERTAINTY_SCALE = 0.5 / 255  # std of a probability is at most 0.5: uint8 code × scale = std
CORNERS_N = np.array([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])


# --------------------------------------------------------------------------------- models on disk
@dataclass
class ModelSet:
    """The manifests found under an engines directory, and why a lane has none."""

    frame: Path | None = None
    aggregator: Path | None = None
    seg: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# A model is named by its ONNX manifest (or, for the aggregator, a parameter-only one); the torch
# program (NAME.torch.json) and TensorRT plans beside it are found from there by engines.load_engine
# for the backend asked for, so they must not count as models of their own.
SECONDARY_FORMATS = ("torch-export", "tensorrt-plan")


def _task(path: Path) -> str | None:
    task, fmt = manifest_kind(path)
    return None if fmt in SECONDARY_FORMATS else task


def find_models(engines_dir: str | Path) -> ModelSet:
    """Look for ``frame/*.json`` (frame-score + aggregator) and ``seg/*.json`` (segmentation), or where
    the folder's ``models.json`` index points them (e.g. ``models/demo`` shares ``../seg``)."""
    root = Path(engines_dir)
    found = ModelSet()
    frame_dir, seg_dir = lane_dirs(root)

    def manifests(folder: Path, task: str) -> list[Path]:
        return sorted(p for p in folder.glob("*.json") if _task(p) == task) if folder.is_dir() else []

    frames = manifests(frame_dir, "frame-score")
    aggs = manifests(frame_dir, "aggregator")
    found.seg = manifests(seg_dir, "segmentation")
    if frames:
        found.frame = frames[0]
        if len(frames) > 1:
            found.notes.append(f"several frame models in {frame_dir}; using {frames[0].name}")
    else:
        found.notes.append(f"no frame-score model (*.json with task 'frame-score') in {frame_dir}: "
                           "scoring lane off")
    if aggs:
        found.aggregator = aggs[0]
    else:
        found.notes.append(f"no aggregator manifest in {frame_dir}: uninorm uses default neutral elements")
    if not found.seg:
        found.notes.append(f"no segmentation model (*.json with task 'segmentation') in {seg_dir}: "
                           "segmentation lane off")
    return found


def load_model(manifest_path: str | Path, backend: str = "auto", threads: int | None = None,
               triton_url: str | None = None) -> Engine:
    """An :class:`engines.Engine` for a manifest on the chosen backend (``triton``: served at
    ``triton_url``)."""
    from engines import load_engine

    if backend == "triton":
        return load_engine(manifest_path, backend=backend, triton_url=triton_url)
    return load_engine(manifest_path, backend=backend, threads=threads)


def model_label(engine: Engine) -> str:
    m = engine.manifest
    return f"{m.get('name', '?')} {m.get('version', '?')}"


def model_domain(engine: Engine) -> str:
    """What a model was trained on: "synthetic" | "real" | "mixed" | "unknown" (its manifest)."""
    return training_domain(getattr(engine, "manifest", None) or {})


def model_dataset(engine: Engine) -> str | None:
    """The manifest's ``training.dataset`` text, or None."""
    tr = (getattr(engine, "manifest", None) or {}).get("training")
    dataset = tr.get("dataset") if isinstance(tr, dict) else None
    return dataset if isinstance(dataset, str) else None


def combined_domain(domains: Sequence[str]) -> str:
    """One domain for several models: theirs if they agree, "unknown" if any is, else "mixed"."""
    kinds = set(domains)
    if len(kinds) == 1:
        return kinds.pop()
    return "unknown" if "unknown" in kinds or not kinds else "mixed"


def combined_dataset(datasets: Sequence[str | None]) -> str | None:
    """The distinct datasets of several models, in order, joined by "; " (None if none is given)."""
    seen = list(dict.fromkeys(d for d in datasets if d))
    return "; ".join(seen) if seen else None


# --------------------------------------------------------------------------------- preprocessing
class Prepared:
    """A frame and its model inputs, computed once per input geometry and shared by the lanes."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.t_prepared_ns = 0
        self._boxed: dict[tuple[int, int], tuple[np.ndarray, Letterbox]] = {}
        self._inputs: dict[tuple[tuple[int, int], str], np.ndarray] = {}

    def input(self, spec: dict[str, Any]) -> tuple[np.ndarray, Letterbox]:
        """``(x [1, 1, H, W] float32, Letterbox)`` for a manifest ``preprocessing`` block."""
        if spec.get("padding", "letterbox-zero") != "letterbox-zero" or int(spec.get("channels", 1)) != 1:
            raise ValueError(f"unsupported preprocessing {spec}: only 1-channel letterbox-zero models")
        size = (int(spec["size_hw"][0]), int(spec["size_hw"][1]))
        mode = str(spec.get("scale", "unit"))
        if size not in self._boxed:
            self._boxed[size] = letterbox(self.frame.image, size)
        boxed, geo = self._boxed[size]
        key = (size, mode)
        if key not in self._inputs:
            self._inputs[key] = scale_intensity(boxed, mode)[None, None]  # type: ignore[arg-type]
        return self._inputs[key], geo


# --------------------------------------------------------------------------------- scoring lane
def theta_to_boxes(theta: np.ndarray, geo: Letterbox, roi: Sequence[int]) -> list[list[list[float]]]:
    """Two affine crops θ [2, 2, 3] → two 4-corner polygons [[x, y] × 4] in source-frame pixels.

    Corner order: (−1,−1), (1,−1), (1,1), (−1,1) of the crop, i.e. top-left, top-right,
    bottom-right, bottom-left for a rotation-free θ.
    """
    theta = np.asarray(theta, dtype=np.float64).reshape(2, 2, 3)
    h, w = geo.dst_hw
    boxes = []
    for t in theta:
        corners_n = CORNERS_N @ t.T  # (4, 2) normalised (x, y)
        model_px = np.empty_like(corners_n)
        model_px[:, 0] = (corners_n[:, 0] + 1.0) * 0.5 * w
        model_px[:, 1] = (corners_n[:, 1] + 1.0) * 0.5 * h
        src = geo.to_source(model_px)
        src[:, 0] += roi[0]
        src[:, 1] += roi[1]
        boxes.append([[float(x), float(y)] for x, y in src])
    return boxes


@dataclass
class FrameResult:
    """One frame's scores; the batch's monotonic timestamps: start, inputs ready, inference done."""

    probs: np.ndarray  # [4]
    score: int
    boxes: list[list[list[float]]] | None
    batch: int
    t_start_ns: int
    t_inputs_ns: int
    t_inferred_ns: int
    t_done_ns: int = 0  # the batch's post-processing (probabilities, STN boxes) finished


class ScoringLane:
    """Reg-STN on a batch of prepared frames."""

    def __init__(self, engine: Engine, max_batch: int = 8) -> None:
        self.engine = engine
        self.spec = engine.manifest["preprocessing"]
        limit = getattr(engine, "max_batch", None)
        self.max_batch = max(1, min(max_batch, limit) if limit else max_batch)
        names = {t.name for t in engine.outputs}
        if "probs" not in names:
            raise ValueError(f"{engine.manifest_path}: frame model has no 'probs' output ({sorted(names)})")
        self.has_theta = "theta" in names

    @property
    def label(self) -> str:
        return model_label(self.engine)

    @property
    def domain(self) -> str:
        return model_domain(self.engine)

    @property
    def dataset(self) -> str | None:
        return model_dataset(self.engine)

    def run(self, batch: Sequence[Prepared]) -> list[FrameResult]:
        t0 = time.monotonic_ns()
        xs, geos = zip(*(p.input(self.spec) for p in batch), strict=True)
        x = np.concatenate(xs, axis=0)
        t1 = time.monotonic_ns()
        out = self.engine.infer({"frame": x})
        t2 = time.monotonic_ns()
        probs = np.asarray(out["probs"], dtype=np.float64).reshape(len(batch), -1)
        probs = probs / probs.sum(axis=1, keepdims=True)  # float32 softmax → exact sum for the wire
        theta = out.get("theta") if self.has_theta else None
        results = []
        for i, (p, geo) in enumerate(zip(batch, geos, strict=True)):
            boxes = theta_to_boxes(theta[i], geo, p.frame.roi) if theta is not None else None
            results.append(FrameResult(probs[i], int(np.argmax(probs[i])), boxes, len(batch), t0, t1, t2))
        t3 = time.monotonic_ns()
        for r in results:
            r.t_done_ns = t3
        return results


# --------------------------------------------------------------------------------- segmentation
def encode_png(arr: np.ndarray, compression: int = 3) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {arr.shape}")
    return buf.tobytes()


def encode_jpeg(gray: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(gray), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an array of shape {gray.shape}")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_png` (uint8, as written)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("payload is not a PNG image")
    return arr


def inner(model_map: np.ndarray, geo: Letterbox) -> np.ndarray:
    """The part of a model-sized map that covers the image (padding cut off)."""
    y0, x0 = geo.offset_yx
    h, w = geo.resized_hw
    return model_map[..., y0 : y0 + h, x0 : x0 + w]


def quantise_uncertainty(std: np.ndarray, scale: float = UNCERTAINTY_SCALE) -> np.ndarray:
    return np.clip(np.rint(std / scale), 0, 255).astype(np.uint8)


@dataclass
class SegResult:
    class_map: np.ndarray  # uint8 [h, w] covering the ROI, values 0..4
    uncertainty: np.ndarray | None  # uint8 [h, w] (× UNCERTAINTY_SCALE = std) or None
    samples: int
    class_fractions: list[float]
    preprocess_ns: int
    infer_ns: int


class SegmentationLane:
    """The segmentation ensemble (deterministic) with optional MC-dropout uncertainty."""

    def __init__(self, members: Sequence[Engine], mc_samples: int = 0, mc_every: int = 1, seed: int = 0
                 ) -> None:
        from engines import Ensemble

        if not members:
            raise ValueError("SegmentationLane needs at least one member model")
        self.ensemble = Ensemble(list(members))
        self.members = self.ensemble.engines
        self.spec = self.members[0].manifest["preprocessing"]
        for m in self.members[1:]:
            if m.manifest["preprocessing"] != self.spec:
                raise ValueError(f"{m.manifest_path}: members must share one preprocessing block")
        self.mc_samples = int(mc_samples)
        self.mc_every = max(1, int(mc_every))
        self.rng = np.random.default_rng(seed)
        self.runs = 0

    @property
    def label(self) -> str:
        return " + ".join(model_label(m) for m in self.members)

    @property
    def domain(self) -> str:
        return combined_domain([model_domain(m) for m in self.members])

    @property
    def dataset(self) -> str | None:
        return combined_dataset([model_dataset(m) for m in self.members])

    def run(self, prepared: Prepared) -> SegResult:
        """Deterministic ensemble, or (every ``mc_every``-th run) K MC-dropout samples per member."""
        from engines import mc_dropout

        t0 = time.monotonic_ns()
        x, geo = prepared.input(self.spec)
        t1 = time.monotonic_ns()
        k = self.mc_samples if (self.mc_samples >= 2 and self.runs % self.mc_every == 0) else 0
        self.runs += 1
        if k:
            mc = mc_dropout(self.ensemble, x, k, self.rng)
            cls, std, n_samples = mc.mean.argmax(axis=0), mc.std, mc.n_samples
        else:
            cls, std, n_samples = self.ensemble.infer(x)[0].argmax(axis=0), None, 0
        t2 = time.monotonic_ns()
        class_map = np.ascontiguousarray(inner(cls.astype(np.uint8), geo))
        counts = np.bincount(class_map.ravel(), minlength=MASK_BG + 1)[: MASK_BG + 1]
        fractions = (counts / max(1, class_map.size)).tolist()
        unc = quantise_uncertainty(inner(std, geo)) if std is not None else None
        return SegResult(class_map, unc, n_samples, fractions, t1 - t0, t2 - t1)
