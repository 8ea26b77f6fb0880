"""Augmentation moves image and mask together: a marker's pixels stay under its label."""

from __future__ import annotations

import numpy as np

from train.seg.augment import MASK_BG, augment_pair, paper_augmentation


def test_marker_moves_with_its_label_under_every_transform() -> None:
    moved = 0
    for seed in range(12):
        img = np.full((130, 100), 20, np.uint8)
        mask = np.full((130, 100), MASK_BG, np.uint8)
        img[40:52, 25:35] = 255
        mask[40:52, 25:35] = 3
        out_img, out_mask = augment_pair(paper_augmentation(p=1.0, seed=seed), img, mask)
        assert out_img.shape == img.shape and out_mask.shape == mask.shape
        assert set(np.unique(out_mask)) <= {3, MASK_BG}  # nearest-neighbour: no invented classes
        label = out_mask == 3
        if label.sum() < 10:
            continue  # marker pushed out of the frame by the affine
        bright = out_img > out_img[~label].mean() + 0.5 * (out_img[label].mean() - out_img[~label].mean())
        ly, lx = np.argwhere(label).mean(axis=0)
        by, bx = np.argwhere(bright).mean(axis=0)
        assert abs(ly - by) < 1.5 and abs(lx - bx) < 1.5, (seed, (ly, lx), (by, bx))
        moved += (abs(ly - 45.5) > 1) or (abs(lx - 29.5) > 1)
    assert moved >= 6  # the transforms really moved the marker


def test_probability_zero_leaves_pairs_unchanged_except_flip() -> None:
    img = (np.arange(60 * 40) % 251).astype(np.uint8).reshape(60, 40)
    mask = (np.arange(60 * 40) % 5).astype(np.uint8).reshape(60, 40)
    out_img, out_mask = augment_pair(paper_augmentation(p=0.0, seed=3), img, mask)
    ref = img.astype(np.float32) / 255
    flipped = np.array_equal(out_mask, mask[:, ::-1])
    assert flipped or np.array_equal(out_mask, mask)
    assert np.allclose(out_img, ref[:, ::-1] if flipped else ref)
