"""Decode clip-labelled videos once into model-sized frames (an ``.npz`` cache).

Each clip goes through what the runtime does to a recorded clip (``lus-stream --clip``, ``--roi
auto``): the ultrasound region is tracked with :class:`stream.roi.RoiTracker`, cropped, and the crop
letterboxed to the model input with :func:`engines.preprocess.letterbox`. So training sees the
pixels the engine will see. Frames are stored as uint8 [N, H, W], clip after clip, with per-clip
metadata (video id, patient, zone, clip score, frame range). Nothing here invents frame labels: a
clip has one score, the clip's.

The cache is keyed by the input size and the list of clips; a cache written for another list is
refused with a message naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engines.preprocess import letterbox, to_gray

CACHE_VERSION = 1


@dataclass(frozen=True)
class ClipRef:
    """One clip with a clip-level score (0-3)."""

    video_id: str
    patient_id: str
    zone: str
    label: int
    path: str


@dataclass
class ClipCache:
    """All frames of a list of clips, model-sized, with the clip each frame belongs to."""

    images: np.ndarray  # uint8 [N, H, W]
    start: np.ndarray  # int64 [C]: first frame of clip c in ``images``
    length: np.ndarray  # int64 [C]
    clips: list[ClipRef]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def labels(self) -> np.ndarray:
        return np.array([c.label for c in self.clips], dtype=np.int64)

    @property
    def patients(self) -> list[str]:
        return [c.patient_id for c in self.clips]

    def frames(self, c: int) -> np.ndarray:
        return self.images[self.start[c] : self.start[c] + self.length[c]]

    def clip_indices(self, patients: Sequence[str]) -> np.ndarray:
        wanted = set(patients)
        return np.array([i for i, c in enumerate(self.clips) if c.patient_id in wanted], dtype=np.int64)

    def save(self, path: str | Path) -> None:
        meta = {"version": CACHE_VERSION, "clips": [asdict(c) for c in self.clips]}
        np.savez(
            path, images=self.images, start=self.start, length=self.length, meta=np.array(json.dumps(meta))
        )

    @classmethod
    def load(cls, path: str | Path) -> ClipCache:
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(
                f"{path}: clip cache version {meta.get('version')}, expected {CACHE_VERSION}; delete it"
            )
        return cls(z["images"], z["start"], z["length"], [ClipRef(**c) for c in meta["clips"]])


def decode_clip(path: str | Path, input_hw: tuple[int, int], roi: str = "auto") -> np.ndarray:
    """Every frame of a video as the runtime prepares it: ROI tracked and cropped, letterboxed, uint8."""
    import av

    from stream.roi import RoiTracker

    tracker = RoiTracker(roi)
    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.video[0]):
                gray = to_gray(frame.to_ndarray(format="gray"))
                (x, y, w, h), _ = tracker.update(gray)
                out.append(letterbox(gray[y : y + h, x : x + w], input_hw)[0])
    except (av.error.FFmpegError, IndexError) as exc:  # type: ignore[attr-defined]
        raise ValueError(f"{path}: cannot decode the video: {exc}") from exc
    if not out:
        raise ValueError(f"{path}: the video holds no frames")
    return np.stack(out)


def build_cache(
    clips: Sequence[ClipRef], input_hw: tuple[int, int], roi: str = "auto", progress: bool = True
) -> ClipCache:
    frames, start, length = [], [], []
    n = 0
    for c in tqdm(clips, desc="decode + ROI + letterbox", disable=not progress):
        f = decode_clip(c.path, input_hw, roi)
        frames.append(f)
        start.append(n)
        length.append(len(f))
        n += len(f)
    return ClipCache(
        np.concatenate(frames), np.array(start, np.int64), np.array(length, np.int64), list(clips)
    )


def load_or_build(
    path: str | Path, clips: Sequence[ClipRef], input_hw: tuple[int, int], progress: bool = True
) -> ClipCache:
    """The cache at ``path`` when it holds exactly ``clips`` at ``input_hw``; else build and write it."""
    path = Path(path)
    if path.is_file():
        cache = ClipCache.load(path)
        same = [(c.video_id, c.label, c.patient_id) for c in cache.clips] == [
            (c.video_id, c.label, c.patient_id) for c in clips
        ]
        if same and cache.images.shape[1:] == tuple(input_hw):
            return cache
        raise ValueError(
            f"{path}: a clip cache for other clips or another input size; delete it or use another --cache"
        )
    cache = build_cache(clips, input_hw, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    cache.save(path)
    return cache


def clips_from_layout(root: str | Path) -> list[ClipRef]:
    """The clips of a dataset folder (``train.data.layout``) with their clip score.

    The clip score is the majority of the raters' video scores (one rater: that score); a dataset
    whose videos have no video-level score is refused by name.
    """
    from train.data.layout import read_dataset

    out = []
    missing = []
    for rec in read_dataset(root):
        scores = [int(s) for s in rec.clinician_scores]
        if not scores:
            missing.append(rec.video_id)
            continue
        label = int(np.bincount(np.asarray(scores), minlength=4).argmax())
        out.append(
            ClipRef(rec.video_id, rec.patient_id, getattr(rec, "zone", "") or "", label, str(rec.path))
        )
    if missing:
        raise ValueError(
            f"{root}: {len(missing)} video(s) without a clip score (e.g. {missing[:3]}); clip-level training "
            "needs a video-level score per clip (videos.csv column clinician_scores)"
        )
    return out
