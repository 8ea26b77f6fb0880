"""Segmentation preprocessing: letterboxed masks keep the frame's geometry, a pixel goes back
where it came from, and the internal pad/crop is exact."""

from __future__ import annotations

import numpy as np
import torch

from engines.preprocess import letterbox
from train.seg.config import INPUT_HW
from train.seg.data import letterbox_mask
from train.seg.layers import crop_to, pad_to_multiple


def test_mask_letterbox_matches_frame_geometry_and_pads_with_background() -> None:
    frame = np.zeros((480, 640), np.uint8)
    mask = np.full((480, 640), 4, np.uint8)
    frame[200:280, 300:380] = 255
    mask[200:280, 300:380] = 2
    boxed, geo = letterbox(frame, INPUT_HW)
    m = letterbox_mask(mask, INPUT_HW)
    assert boxed.shape == m.shape == INPUT_HW
    # aspect kept: 640x480 into 200 wide -> scale 200/640, height 150, centred vertically
    assert geo.resized_hw == (150, 200) and geo.offset_yx == (55, 0)
    assert (m[:55] == 4).all() and (m[205:] == 4).all()
    # the bright square and its label land on the same pixels (up to the 1-pixel resampling edge)
    bright = boxed > 128
    label = m == 2
    assert (bright & label).sum() >= 0.8 * label.sum()


def test_a_labelled_pixel_maps_back_to_where_it_came_from() -> None:
    src = np.full((300, 420), 4, np.uint8)
    y, x = 123, 321
    src[y - 7 : y + 8, x - 7 : x + 8] = 3  # a 15x15 marker (about 7x7 after the 0.48x resize)
    frame = np.zeros((300, 420), np.uint8)
    _, geo = letterbox(frame, INPUT_HW)
    boxed = letterbox_mask(src, INPUT_HW)
    ys, xs = np.nonzero(boxed == 3)
    centre_model = np.array([xs.mean() + 0.5, ys.mean() + 0.5])  # continuous pixel coordinates
    back = geo.to_source(centre_model)
    assert np.allclose(back, [x + 0.5, y + 0.5], atol=1.5)
    # and a model-sized label map cropped back to the source puts the marker over the original
    restored = geo.crop_to_source(boxed)
    assert restored.shape == src.shape
    assert restored[y, x] == 3
    assert ((restored == 3) & (src == 3)).sum() >= 0.6 * (src == 3).sum()


def test_pad_to_multiple_then_crop_is_exact_and_pads_with_minus_one() -> None:
    x = torch.randn(2, 1, 37, 23)
    padded = pad_to_multiple(x, 20)
    assert padded.shape[-2:] == (40, 40)
    assert torch.equal(crop_to(padded, (37, 23)), x)
    assert (padded[..., 37:, :] == -1).all() and (padded[..., :, 23:] == -1).all()
    assert pad_to_multiple(torch.zeros(1, 1, 260, 200), 20).shape[-2:] == (260, 200)
