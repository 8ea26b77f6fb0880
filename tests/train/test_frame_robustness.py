"""Appearance shifts (train/frame/robustness.py): hand-computed pixel values, seeded, labels kept."""

from __future__ import annotations

import numpy as np
import pytest

from train.frame.data import toy_table
from train.frame.robustness import SHIFTS, shifted


def test_shifts_keep_labels_and_order_and_are_seeded() -> None:
    table = toy_table(n_videos=2, frames_per_video=4)
    assert np.array_equal(shifted(table, "none").images, table.images)
    a, b = shifted(table, "noise", seed=3), shifted(table, "noise", seed=3)
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, table.images)
    for shift in SHIFTS:
        out = shifted(table, shift)
        assert out.images.shape == table.images.shape and out.images.dtype == np.uint8
        assert np.array_equal(out.labels, table.labels) and np.array_equal(out.frame, table.frame)
    with pytest.raises(ValueError, match="'speckle' must be one of"):
        shifted(table, "speckle")


def test_shift_pixel_values() -> None:
    table = toy_table(n_videos=1, frames_per_video=1)
    table.images[:] = 0
    noisy = shifted(table, "noise").images.astype(float)
    assert noisy.mean() == pytest.approx(21.7, abs=1.0)  # E[max(0, N(20, 20²))] = 20·Φ(1) + 20·φ(1)
    table.images[:] = 64
    assert np.all(shifted(table, "gamma_bright").images == 111)  # 255·(64/255)^0.6 = 111.3
    assert np.all(shifted(table, "gamma_dark").images == 28)  # 255·(64/255)^1.6 = 27.9
    assert np.all(shifted(table, "blur").images == 64)  # a blur keeps a flat image
