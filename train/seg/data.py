"""Segmentation samples in memory: letterboxed 260×200 frames, masks, patient ids and frame scores.

Frames are letterboxed once with ``engines.preprocess.letterbox`` (the runtime's function) and
kept as uint8; masks use the same geometry with nearest-neighbour resizing and background (4) as
padding. Sources: an ICLUS-DB-style dataset folder (``train.data``, e.g. written by
``tools/make_synthetic.py``) or the simulator directly (``synth.simulate_clip``). Splits are at the
patient level (§IV-C.4: 70 % train / 30 % test, every frame of a patient in one set).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from engines.preprocess import letterbox, letterbox_geometry
from train.seg.augment import MASK_BG, augment_pair, to_model_input, to_model_input_u8
from train.seg.config import INPUT_HW


def letterbox_mask(mask: np.ndarray, dst_hw: tuple[int, int] = INPUT_HW) -> np.ndarray:
    """Letterbox a label mask like its frame: same geometry, nearest neighbour, BG padding."""
    geo = letterbox_geometry(mask.shape[:2], dst_hw)
    rh, rw = geo.resized_hw
    resized = cv2.resize(mask, (rw, rh), interpolation=cv2.INTER_NEAREST)
    out = np.full(dst_hw, MASK_BG, dtype=np.uint8)
    y0, x0 = geo.offset_yx
    out[y0 : y0 + rh, x0 : x0 + rw] = resized
    return out


@dataclass
class SegSamples:
    """N letterboxed frames with their masks and grouping labels (all arrays of length N)."""

    images: np.ndarray  # uint8 [N, H, W]
    masks: np.ndarray  # uint8 [N, H, W], 0..3 scores, 4 background
    patients: np.ndarray  # str [N]
    scores: np.ndarray  # int64 [N] frame score (used to balance batches)
    probes: np.ndarray  # str [N] "convex" | "linear"

    def __post_init__(self) -> None:
        n = len(self.images)
        for name in ("masks", "patients", "scores", "probes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SegSamples.{name} has {len(getattr(self, name))} entries, images has {n}")
        if n and self.images.shape[1:] != self.masks.shape[1:]:
            raise ValueError(f"images {self.images.shape} and masks {self.masks.shape} differ in size")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray | Iterable[int]) -> SegSamples:
        idx = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx, dtype=np.int64)
        return SegSamples(
            self.images[idx], self.masks[idx], self.patients[idx], self.scores[idx], self.probes[idx]
        )

    def filter_probe(self, probe: str | None) -> SegSamples:
        """Only frames from ``probe`` (``convex``/``linear``); None keeps all."""
        if probe is None or probe == "all":
            return self
        keep = np.flatnonzero(self.probes == probe)
        if len(keep) == 0:
            raise ValueError(f"no frames from a {probe!r} probe (probes present: {sorted(set(self.probes))})")
        return self.subset(keep)

    @staticmethod
    def concat(parts: list[SegSamples]) -> SegSamples:
        if not parts:
            raise ValueError("no segmentation samples: the source had no annotated frames")
        return SegSamples(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("images", "masks", "patients", "scores", "probes")
            )
        )

    def describe(self) -> str:
        counts = np.bincount(self.scores, minlength=4)
        return (
            f"{len(self)} frames, {len(set(self.patients))} patients, scores 0-3: {counts.tolist()}, "
            f"probes: {sorted(set(self.probes))}"
        )


def from_arrays(
    frames: np.ndarray,
    masks: np.ndarray,
    patient: str,
    scores: np.ndarray,
    probe: str,
    size_hw: tuple[int, int] = INPUT_HW,
) -> SegSamples:
    """Letterbox raw uint8 frames [T, H, W] and masks [T, H, W] of one patient."""
    imgs = (
        np.stack([letterbox(f, size_hw)[0] for f in frames])
        if len(frames)
        else np.zeros((0, *size_hw), np.uint8)
    )
    ms = (
        np.stack([letterbox_mask(m, size_hw) for m in masks])
        if len(masks)
        else np.zeros((0, *size_hw), np.uint8)
    )
    n = len(imgs)
    return SegSamples(
        imgs,
        ms,
        np.full(n, patient, dtype=object),
        np.asarray(scores, dtype=np.int64),
        np.full(n, probe, dtype=object),
    )


def from_simulator(
    n_patients: int,
    clips_per_patient: int = 2,
    frames_per_clip: int = 40,
    stride: int = 4,
    seed: int = 0,
    probes: tuple[str, ...] = ("convex", "linear"),
) -> SegSamples:
    """Simulate clips in memory (``synth.simulate_clip``); every ``stride``-th frame is a sample.

    Patient p uses probe ``probes[p % len(probes)]`` and a score schedule drawn from the seed, so
    all four scores appear across patients.
    """
    import synth

    rng = np.random.default_rng(seed)
    parts = []
    for p in range(n_patients):
        for c in range(clips_per_patient):
            s0, s1 = (int(v) for v in rng.integers(0, 4, size=2))
            spec = synth.ClipSpec(
                seed=int(seed * 100_003 + p * 101 + c),
                n_frames=frames_per_clip,
                probe=probes[p % len(probes)],
                schedule=[(0, s0), (frames_per_clip // 2, s1)],
                scanner=None,
            )
            clip = synth.simulate_clip(spec)
            idx = np.arange(0, frames_per_clip, stride)
            parts.append(
                from_arrays(
                    clip.frames[idx], clip.masks[idx], f"sim{seed}-p{p:03d}", clip.scores[idx], spec.probe
                )
            )
    return SegSamples.concat(parts)


def from_layout(
    root: str | Path, probe: str | None = None, size_hw: tuple[int, int] = INPUT_HW
) -> SegSamples:
    """Annotated frames of an ICLUS-DB-style dataset folder, via ``train.data``'s MaskDataset
    (each video decoded once, letterboxed with the runtime's preprocessing)."""
    from train.data.layout import read_dataset
    from train.data.torch_datasets import MaskDataset

    records = [r for r in read_dataset(root) if probe in (None, "all") or r.probe == probe]
    ds = MaskDataset(records, size_hw=size_hw)
    if len(ds) == 0:
        raise ValueError(
            f"{root}: no videos with LabelMe masks{' for probe ' + probe if probe else ''}; "
            "check the folder with `python -m train.data check DIR`"
        )
    images, masks, patients, scores, probes = [], [], [], [], []
    for i, (vi, fi) in enumerate(ds.items):
        rec = ds.records[vi]
        images.append(ds.cache.frames(rec)[fi])
        masks.append(ds.mask(i))
        patients.append(str(rec.patient_id))
        if rec.frame_scores is None:  # masks without frame scores: the mask's highest class
            scores.append(int(masks[-1][masks[-1] < 4].max(initial=0)))
        else:
            scores.append(int(rec.frame_scores[fi]))
        probes.append(str(rec.probe))
    return SegSamples(
        np.stack(images),
        np.stack(masks),
        np.array(patients, dtype=object),
        np.array(scores, dtype=np.int64),
        np.array(probes, dtype=object),
    )


def split_by_patients(samples: SegSamples, test_patients: Iterable[str]) -> tuple[SegSamples, SegSamples]:
    """(frames of the other patients, frames of ``test_patients``)."""
    test_p = {str(p) for p in test_patients}
    is_test = np.array([str(p) in test_p for p in samples.patients])
    if not is_test.any() or is_test.all():
        raise ValueError(
            f"the split leaves an empty side ({int(is_test.sum())} of {len(samples)} frames in test)"
        )
    return samples.subset(np.flatnonzero(~is_test)), samples.subset(np.flatnonzero(is_test))


def patient_split(
    samples: SegSamples, test_fraction: float = 0.3, seed: int = 0
) -> tuple[SegSamples, SegSamples]:
    """Split by patient: ``round(test_fraction * P)`` patients (at least 1) go to the second set."""
    patients = np.array(sorted(set(samples.patients)))
    if len(patients) < 2:
        raise ValueError(f"a patient-level split needs at least 2 patients, got {len(patients)}")
    rng = np.random.default_rng(seed)
    n_test = min(len(patients) - 1, max(1, round(test_fraction * len(patients))))
    test_p = set(rng.permutation(patients)[:n_test].tolist())
    is_test = np.array([p in test_p for p in samples.patients])
    return samples.subset(np.flatnonzero(~is_test)), samples.subset(np.flatnonzero(is_test))


class SegTorchDataset(Dataset):
    """(image [1, H, W] float32 in [−1, 1], mask [H, W] int64) pairs, augmented on the fly."""

    def __init__(self, samples: SegSamples, pipeline=None) -> None:
        self.samples = samples
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = self.samples.images[i], self.samples.masks[i]
        if self.pipeline is None:
            x = to_model_input_u8(img)
        else:
            img01, mask = augment_pair(self.pipeline, img, mask)
            x = to_model_input(img01)
        return torch.from_numpy(np.ascontiguousarray(x))[None], torch.from_numpy(mask.astype(np.int64))
