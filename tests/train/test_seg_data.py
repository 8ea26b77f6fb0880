"""Segmentation samples from an ICLUS-style folder (train.data MaskDataset) and patient splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.data.layout import read_splits
from train.data.synthetic import generate
from train.seg.config import INPUT_HW
from train.seg.data import from_layout, patient_split, split_by_patients


def test_layout_frames_masks_and_the_dataset_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    generate(
        root,
        patients=3,
        clips_per_patient=1,
        seed=2,
        frames=(6, 6),
        size_hw=(120, 160),
        masks_per_clip=2,
        test_fraction=0.34,
        as_frames=True,
    )
    s = from_layout(root)
    assert len(s) == 6 and s.images.shape == (6, *INPUT_HW) and s.masks.shape == (6, *INPUT_HW)
    assert s.images.dtype == np.uint8 and set(np.unique(s.masks)) <= {0, 1, 2, 3, 4}
    assert (s.masks[:, :, :3] == 4).all() or (s.masks[:, :3, :] == 4).all()  # letterbox padding is background
    test_p = read_splits(root)["test"]
    train, test = split_by_patients(s, test_p)
    assert set(test.patients) == set(test_p) and not set(train.patients) & set(test_p)
    a, b = patient_split(s, 0.34, seed=0)
    assert len(a) + len(b) == len(s) and not set(a.patients) & set(b.patients)
