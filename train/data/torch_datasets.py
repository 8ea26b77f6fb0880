"""torch ``Dataset``s over the ICLUS-DB-style layout (the only ``train.data`` module importing torch).

Decoding MP4 every epoch is far too slow, so each video is decoded ONCE and its frames are kept
in memory already letterboxed (``engines.preprocess.letterbox``: aspect kept, zero padding — the
runtime's own preprocessing) as uint8; ``__getitem__`` only scales intensities
(``engines.preprocess.scale_intensity``). Masks are letterboxed with the same geometry, nearest
neighbour, padding = background (4). A :class:`FrameCache` can be shared between datasets.

* :class:`FrameDataset` — (image [1, H, W] float32, score int64) per frame;
* :class:`ClipDataset` — (frames [T, 1, H, W], frame scores [T], clinicians' scores [n]) per
  video or per window of ``clip_len`` frames;
* :class:`MaskDataset` — (image [1, H, W], mask [H, W] int64) per annotated frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from engines.preprocess import letterbox, letterbox_geometry, scale_intensity

from .labelme import MASK_BG, rasterise
from .layout import VideoRecord, read_frames

Transform = Callable[[np.ndarray], np.ndarray]


def letterbox_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Class mask in the letterbox geometry of its frame: nearest neighbour, background padding."""
    geo = letterbox_geometry(mask.shape[:2], size_hw)
    rh, rw = geo.resized_hw
    out = np.full(size_hw, MASK_BG, np.uint8)
    y0, x0 = geo.offset_yx
    out[y0 : y0 + rh, x0 : x0 + rw] = cv2.resize(mask, (rw, rh), interpolation=cv2.INTER_NEAREST)
    return out


class FrameCache:
    """Decoded, letterboxed uint8 frames per video id, filled on first use."""

    def __init__(self, size_hw: tuple[int, int]) -> None:
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self._frames: dict[str, np.ndarray] = {}
        self._src_hw: dict[str, tuple[int, int]] = {}

    def frames(self, record: VideoRecord) -> np.ndarray:
        got = self._frames.get(record.video_id)
        if got is None:
            raw = read_frames(record)
            if len(raw) != record.n_frames:
                raise ValueError(
                    f"{record.path}: decoded {len(raw)} frames, videos.csv says {record.n_frames}"
                )
            got = np.stack([letterbox(f, self.size_hw)[0] for f in raw])
            self._frames[record.video_id] = got
            self._src_hw[record.video_id] = (int(raw.shape[1]), int(raw.shape[2]))
        return got

    def source_hw(self, record: VideoRecord) -> tuple[int, int]:
        """Frame size of the video before letterboxing."""
        self.frames(record)
        return self._src_hw[record.video_id]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._frames.values())


def _require_frame_scores(records: Sequence[VideoRecord], what: str) -> None:
    """Refuse clip-level records (``frame_scores is None``) by name instead of inventing labels."""
    missing = [r.video_id for r in records if r.frame_scores is None]
    if missing:
        raise ValueError(
            f"{what} needs frame scores; {len(missing)} video(s) (e.g. {missing[0]}) have clip-level "
            "labels only: train on clip-level data with `lus-train real-cv`"
        )


def _to_tensor(img: np.ndarray, scale: str) -> torch.Tensor:
    return torch.from_numpy(scale_intensity(img, scale)[None])  # type: ignore[arg-type]


class FrameDataset(Dataset):
    """Every frame (or the given indices per video, e.g. from ``splits.setting2``) with its score."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        size_hw: tuple[int, int],
        scale: str = "unit",
        indices: dict[str, np.ndarray] | None = None,
        cache: FrameCache | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.records = list(records)
        _require_frame_scores(self.records, "FrameDataset")
        self.cache = cache or FrameCache(size_hw)
        self.scale, self.transform = scale, transform
        items = []
        for vi, r in enumerate(self.records):
            idx = (
                np.arange(r.n_frames)
                if indices is None
                else np.asarray(indices.get(r.video_id, []), np.int64)
            )
            items.extend((vi, int(i)) for i in idx)
        self.items = np.asarray(items, np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        vi, fi = self.items[i]
        rec = self.records[vi]
        img = self.cache.frames(rec)[fi]
        if self.transform is not None:
            img = self.transform(img)
        return _to_tensor(img, self.scale), torch.tensor(int(rec.frame_scores[fi]), dtype=torch.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.records[v].frame_scores[f] for v, f in self.items], np.int64)


class ClipDataset(Dataset):
    """Whole videos (``clip_len=None``) or windows of ``clip_len`` frames every ``stride`` frames."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        size_hw: tuple[int, int],
        scale: str = "unit",
        clip_len: int | None = None,
        stride: int | None = None,
        cache: FrameCache | None = None,
    ) -> None:
        self.records = list(records)
        _require_frame_scores(self.records, "ClipDataset")
        self.cache = cache or FrameCache(size_hw)
        self.scale = scale
        if clip_len is not None and clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        step = stride or clip_len or 1
        self.items: list[tuple[int, int, int]] = []
        for vi, r in enumerate(self.records):
            if clip_len is None:
                self.items.append((vi, 0, r.n_frames))
            else:
                self.items.extend((vi, s, s + clip_len) for s in range(0, r.n_frames - clip_len + 1, step))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vi, a, b = self.items[i]
        rec = self.records[vi]
        frames = self.cache.frames(rec)[a:b]
        x = torch.from_numpy(scale_intensity(frames, self.scale)[:, None])  # type: ignore[arg-type]
        y = torch.from_numpy(np.asarray(rec.frame_scores[a:b], np.int64))
        clin = torch.tensor(list(rec.clinician_scores), dtype=torch.int64)
        return x, y, clin


class MaskDataset(Dataset):
    """Annotated frames (LabelMe files) with their masks, letterboxed to ``size_hw`` (paper: 260×200)."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        size_hw: tuple[int, int] = (260, 200),
        scale: str = "symmetric",
        cache: FrameCache | None = None,
    ) -> None:
        self.records = [r for r in records if r.mask_files]
        self.cache = cache or FrameCache(size_hw)
        self.size_hw, self.scale = (int(size_hw[0]), int(size_hw[1])), scale
        self.items = [(vi, fi) for vi, r in enumerate(self.records) for fi in sorted(r.mask_files)]
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def mask(self, i: int) -> np.ndarray:
        """uint8 letterboxed mask of item ``i`` (rasterised at the video's frame size once)."""
        key = self.items[i]
        got = self._masks.get(key)
        if got is None:
            vi, fi = key
            rec = self.records[vi]
            got = letterbox_mask(rasterise(rec.mask_files[fi], self.cache.source_hw(rec)), self.size_hw)
            self._masks[key] = got
        return got

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        vi, fi = self.items[i]
        img = self.cache.frames(self.records[vi])[fi]
        return _to_tensor(img, self.scale), torch.from_numpy(self.mask(i).astype(np.int64))
