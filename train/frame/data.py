"""Frames for the frame scorer, in memory: every frame letterboxed once to the model size (uint8),
with its score, video and patient, plus per-video clinician scores; patient-level splits; the
class-balanced sampler; and the training augmentation (Roy et al. 2020 §IV-A.4 / Born et al.).

Sources:
- an ICLUS-DB-style folder read with ``train.data.layout`` (``read_dataset`` / ``read_frames``);
- the synthetic simulator in memory (``synth.simulate_clip``), for tests and quick runs.
Both go through ``engines.preprocess.letterbox`` so training sees the pixels the runtime sees.

Clip label = the majority of the clinicians' video scores (ties → the lower score); without
clinician scores, the highest frame score (the Soldati video score).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler
from tqdm import tqdm

from engines.preprocess import letterbox, scale_intensity
from train.frame.config import Augment


@dataclass
class VideoInfo:
    video_id: str
    patient_id: str
    probe: str
    clinician_scores: list[int]
    frame_scores: np.ndarray  # int64 [T]

    @property
    def label(self) -> int:
        return clip_label(self.clinician_scores, self.frame_scores)

    def label_by(self, rule: str) -> int:
        """The clip label under ``rule`` (see :func:`clip_label`)."""
        return clip_label(self.clinician_scores, self.frame_scores, rule)

    @property
    def max_agreeing(self) -> int:
        """How many clinicians gave the most common score (Setting 3 keeps videos with ≥ A)."""
        if not self.clinician_scores:
            return 0
        return int(np.bincount(np.asarray(self.clinician_scores), minlength=4).max())


VIDEO_LABEL_RULES = ("majority", "first")


def clip_label(
    clinician_scores: Sequence[int], frame_scores: np.ndarray | None = None, rule: str = "majority"
) -> int:
    """The clip's video-level label from its clinicians' scores; without any, the highest frame score.

    ``rule="majority"`` (default): the most common score (ties → the lower score).
    ``rule="first"``: the first clinician's score, the paper's protocol for the aggregator (§IV-B.4:
    "the annotations produced by the first annotator, the clinician with the highest expertise";
    list that clinician first in ``videos.csv``).
    """
    if rule not in VIDEO_LABEL_RULES:
        raise ValueError(f"video label rule {rule!r} must be one of {list(VIDEO_LABEL_RULES)}")
    if len(clinician_scores):
        if rule == "first":
            return int(clinician_scores[0])
        return int(np.bincount(np.asarray(clinician_scores, dtype=np.int64), minlength=4).argmax())
    if frame_scores is None or len(frame_scores) == 0:
        raise ValueError("a clip needs clinician scores or frame scores to have a label")
    return int(np.max(frame_scores))


@dataclass
class FrameTable:
    """All frames of a set of videos, letterboxed to ``input_hw``."""

    images: np.ndarray  # uint8 [N, H, W]
    labels: np.ndarray  # int64 [N]
    video: np.ndarray  # int64 [N], index into ``videos``
    frame: np.ndarray  # int64 [N], frame number within its video
    videos: list[VideoInfo]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_hw(self) -> tuple[int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def patients(self) -> list[str]:
        return sorted({v.patient_id for v in self.videos})

    def select_videos(self, keep: Iterable[int]) -> FrameTable:
        """The sub-table of the given video indices (renumbered in that order)."""
        keep = list(keep)
        remap = {old: new for new, old in enumerate(keep)}
        mask = np.isin(self.video, keep)
        return FrameTable(
            self.images[mask],
            self.labels[mask],
            np.array([remap[v] for v in self.video[mask]], dtype=np.int64),
            self.frame[mask],
            [self.videos[i] for i in keep],
        )

    def select_patients(self, patients: Iterable[str]) -> FrameTable:
        wanted = set(patients)
        return self.select_videos(i for i, v in enumerate(self.videos) if v.patient_id in wanted)

    def save(self, path: str | Path) -> None:
        meta = [{**dataclasses.asdict(v), "frame_scores": v.frame_scores.tolist()} for v in self.videos]
        np.savez(
            path,
            images=self.images,
            labels=self.labels,
            video=self.video,
            frame=self.frame,
            videos=np.array(__import__("json").dumps(meta)),
        )

    @classmethod
    def load(cls, path: str | Path) -> FrameTable:
        import json

        z = np.load(path)
        videos = [
            VideoInfo(**{**m, "frame_scores": np.asarray(m["frame_scores"], dtype=np.int64)})
            for m in json.loads(str(z["videos"]))
        ]
        return cls(z["images"], z["labels"], z["video"], z["frame"], videos)


def _stack(videos: list[VideoInfo], frames: list[np.ndarray]) -> FrameTable:
    images = np.concatenate(frames) if frames else np.zeros((0, 1, 1), np.uint8)
    labels = np.concatenate([v.frame_scores for v in videos]).astype(np.int64)
    vid = np.concatenate([np.full(len(v.frame_scores), i) for i, v in enumerate(videos)]).astype(np.int64)
    fr = np.concatenate([np.arange(len(v.frame_scores)) for v in videos]).astype(np.int64)
    return FrameTable(images, labels, vid, fr, videos)


def letterbox_all(frames: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Letterbox a [T, H, W] uint8 stack to [T, h, w] with the runtime's preprocessing."""
    return (
        np.stack([letterbox(f, input_hw)[0] for f in frames])
        if len(frames)
        else np.zeros((0, *input_hw), np.uint8)
    )


def load_layout(root: str | Path, input_hw: tuple[int, int], progress: bool = True) -> FrameTable:
    """Read an ICLUS-DB-style folder (``train.data.layout``) into a :class:`FrameTable`."""
    from train.data import layout  # the data layer: dataset folders, clips, labels (docs/dataset.md)

    records = layout.read_dataset(root)
    if not records:
        raise ValueError(
            f"{root}: no videos found; check the layout with `python -m train.data check {root}`"
        )
    unlabelled = [r.video_id for r in records if r.frame_scores is None]
    if unlabelled:
        raise ValueError(
            f"{root}: no frame labels (frame scores) for {len(unlabelled)} of {len(records)} videos — "
            "the dataset has clip-level labels only (one score per clip); the frame trainer needs a score "
            "for every frame. Train on clip-level data with `lus-train real-cv`."
        )
    videos, frames = [], []
    for rec in tqdm(records, desc="decode + letterbox", disable=not progress):
        imgs = layout.read_frames(rec)
        scores = np.asarray(rec.frame_scores, dtype=np.int64)
        if len(scores) != len(imgs):
            raise ValueError(f"{rec.video_id}: {len(imgs)} frames but {len(scores)} frame scores")
        videos.append(
            VideoInfo(
                str(rec.video_id),
                str(rec.patient_id),
                str(getattr(rec, "probe", "")),
                [int(s) for s in (rec.clinician_scores or [])],
                scores,
            )
        )
        frames.append(letterbox_all(imgs, input_hw))
    return _stack(videos, frames)


def synth_table(
    n_patients: int,
    input_hw: tuple[int, int],
    clips_per_patient: int = 2,
    n_frames: int = 48,
    seed: int = 0,
    progress: bool = False,
) -> FrameTable:
    """In-memory synthetic dataset (``synth.simulate_clip``): random schedules with one transition
    in half of the clips, both probes, five simulated clinicians per clip."""
    import synth

    rng = np.random.default_rng(seed)
    videos, frames = [], []
    total = n_patients * clips_per_patient
    for i in tqdm(range(total), desc="simulate", disable=not progress):
        p = i // clips_per_patient
        s0 = int(rng.integers(0, 4))
        schedule = [(0, s0)]
        if rng.random() < 0.5:
            schedule.append(
                (int(rng.integers(n_frames // 4, 3 * n_frames // 4)), int((s0 + rng.integers(1, 4)) % 4))
            )
        probe = "convex" if rng.random() < 0.5 else "linear"
        clip = synth.simulate_clip(
            synth.ClipSpec(seed=seed * 100003 + i, n_frames=n_frames, probe=probe, schedule=schedule)
        )
        truth = synth.consensus_score(clip.scores)
        clinicians = synth.simulate_clinicians(truth, rng)
        videos.append(
            VideoInfo(
                f"synth-{seed}-{i:04d}",
                f"P{p:03d}",
                probe,
                clinicians,
                np.asarray(clip.scores, dtype=np.int64),
            )
        )
        frames.append(letterbox_all(clip.frames, input_hw))
    return _stack(videos, frames)


def split_patients(patients: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Patient-level train/test split (sorted, seeded); at least one patient on each side."""
    pts = sorted(set(patients))
    if len(pts) < 2:
        raise ValueError(f"need at least 2 patients for a train/test split, got {len(pts)}")
    order = np.random.default_rng(seed).permutation(len(pts))
    n_test = min(len(pts) - 1, max(1, round(test_fraction * len(pts))))
    test = sorted(pts[i] for i in order[:n_test])
    train = sorted(pts[i] for i in order[n_test:])
    return train, test


# ------------------------------------------------------------------------------------------ torch side


def build_augment(aug: Augment, input_hw: tuple[int, int]) -> Any:
    """The albumentations pipeline on uint8 letterboxed frames (None when disabled)."""
    if not aug.enabled:
        return None
    import albumentations as A
    import cv2

    steps = [
        A.RandomResizedCrop(size=input_hw, scale=tuple(aug.resized_crop_scale), ratio=(0.9, 1.1), p=1.0),
        A.HorizontalFlip(p=aug.hflip_p),
        A.Rotate(limit=aug.rotate_deg, border_mode=cv2.BORDER_CONSTANT, fill=0, p=aug.rotate_p),
        A.RandomBrightnessContrast(
            brightness_limit=aug.brightness_contrast, contrast_limit=aug.brightness_contrast,
            p=aug.brightness_contrast_p,
        ),
    ]  # fmt: skip
    if aug.appearance_p > 0:
        std = tuple(s / 255.0 for s in aug.noise_std)  # albumentations takes std as a fraction of 255
        steps.append(
            A.Sequential(
                [
                    A.GaussNoise(std_range=std, mean_range=std, p=1.0),  # mean = std: dark lung gets texture
                    A.GaussianBlur(blur_limit=0, sigma_limit=tuple(aug.blur_sigma), p=1.0),
                    A.RandomGamma(gamma_limit=tuple(int(g * 100) for g in aug.gamma), p=1.0),
                ],
                p=aug.appearance_p,
            )
        )
    return A.Compose(steps)


class FrameTensorDataset(Dataset):
    """(frame [1, H, W] float32 in [0, 1] ("unit" scaling), score) pairs, augmented when training."""

    def __init__(self, table: FrameTable, augment: Any = None) -> None:
        self.table, self.augment = table, augment

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.table.images[i]
        if self.augment is not None:
            img = self.augment(image=img)["image"]
        x = scale_intensity(np.ascontiguousarray(img), "unit")
        return torch.from_numpy(x)[None], int(self.table.labels[i])


def balanced_sampler(
    labels: np.ndarray, num_samples: int, seed: int, balanced: bool = True
) -> WeightedRandomSampler:
    """Draw ``num_samples`` indices with replacement, each class equally likely when ``balanced``."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=4).astype(np.float64)
    weights = 1.0 / counts[labels] if balanced else np.ones(len(labels))
    gen = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double), num_samples, replacement=True, generator=gen
    )


def toy_table(
    n_videos: int = 8, frames_per_video: int = 12, input_hw: tuple[int, int] = (64, 64), seed: int = 0
) -> FrameTable:
    """A tiny learnable stand-in dataset (tests, smoke runs): score c shows c+1 bright vertical
    stripes on noise; one patient per two videos; each video switches score halfway in half the
    videos; five clinicians agree with the majority score at varying levels."""
    rng = np.random.default_rng(seed)
    h, w = input_hw
    videos, frames = [], []
    for i in range(n_videos):
        s0 = i % 4
        scores = np.full(frames_per_video, s0, dtype=np.int64)
        if i % 2:
            scores[frames_per_video // 2 :] = (s0 + 1) % 4
        imgs = (rng.random((frames_per_video, h, w)) * 60).astype(np.uint8)
        for t, s in enumerate(scores):
            for k in range(int(s) + 1):
                x0 = (k + 1) * w // (int(s) + 2)
                imgs[t, h // 4 :, max(0, x0 - 2) : x0 + 2] = 220
        n_agree = 2 + i % 4  # 2..5 clinicians give the majority score
        label = int(scores.max())
        others = [(label + 1) % 4 if j % 2 else (label + 3) % 4 for j in range(5 - n_agree)]
        videos.append(
            VideoInfo(
                f"toy-{i:03d}",
                f"T{i // 2:03d}",
                "linear" if i % 2 else "convex",
                [label] * n_agree + others,
                scores,
            )
        )
        frames.append(imgs)
    return _stack(videos, frames)
