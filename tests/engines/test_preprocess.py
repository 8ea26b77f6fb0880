"""The shared letterbox: aspect kept, zero padding, exact forward/inverse point mapping."""

from __future__ import annotations

import numpy as np
import pytest

from engines.preprocess import letterbox, letterbox_geometry, preprocess, scale_intensity, to_gray


def test_wide_frame_is_padded_top_and_bottom_and_keeps_aspect() -> None:
    geo = letterbox_geometry((100, 200), (260, 200))
    assert geo.scale == pytest.approx(1.0)
    assert geo.resized_hw == (100, 200)
    assert geo.offset_yx == (80, 0)  # (260 - 100) / 2


def test_tall_frame_is_padded_left_and_right() -> None:
    geo = letterbox_geometry((480, 120), (240, 240))
    assert geo.resized_hw == (240, 60)
    assert geo.offset_yx == (0, 90)


def test_padding_is_black_and_content_lands_inside() -> None:
    img = np.full((50, 100), 200, np.uint8)
    out, geo = letterbox(img, (100, 100))
    y0 = geo.offset_yx[0]
    assert out[:y0].max() == 0 and out[y0 + geo.resized_hw[0] :].max() == 0
    assert (out[y0 : y0 + geo.resized_hw[0]] == 200).all()


def test_point_round_trip_and_marker_position() -> None:
    img = np.zeros((300, 400), np.uint8)
    img[150:160, 300:310] = 255  # a marker centred at (305, 155) in (x, y)
    out, geo = letterbox(img, (224, 224))
    ys, xs = np.nonzero(out > 127)
    centre_model = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    back = geo.to_source(centre_model)
    assert back == pytest.approx([305, 155], abs=1.5)
    pts = np.array([[0.0, 0.0], [400.0, 300.0], [123.4, 56.7]])
    np.testing.assert_allclose(geo.to_source(geo.to_model(pts)), pts, atol=1e-9)


def test_crop_to_source_restores_source_size() -> None:
    geo = letterbox_geometry((90, 160), (64, 64))
    model_map = np.zeros((64, 64), np.uint8)
    y0, x0 = geo.offset_yx
    model_map[y0 : y0 + geo.resized_hw[0], x0 : x0 + geo.resized_hw[1]] = 3
    back = geo.crop_to_source(model_map)
    assert back.shape == (90, 160) and (back == 3).all()


def test_scaling_modes() -> None:
    img = np.array([[0, 255]], np.uint8)
    np.testing.assert_allclose(scale_intensity(img, "unit"), [[0.0, 1.0]])
    np.testing.assert_allclose(scale_intensity(img, "symmetric"), [[-1.0, 1.0]])
    with pytest.raises(ValueError, match="unknown intensity scaling"):
        scale_intensity(img, "zscore")  # type: ignore[arg-type]


def test_preprocess_from_bgr_frame_gives_nchw_float() -> None:
    bgr = np.zeros((120, 160, 3), np.uint8)
    bgr[..., 1] = 255
    x, geo = preprocess(bgr, {"size_hw": [64, 64], "scale": "symmetric", "padding": "letterbox-zero"})
    assert x.shape == (1, 1, 64, 64) and x.dtype == np.float32
    assert x.min() == pytest.approx(-1.0)  # the padding
    inner = x[0, 0, geo.offset_yx[0] + 1, 32]
    assert inner == pytest.approx(int(to_gray(bgr)[0, 0]) * 2 / 255 - 1, abs=1e-6)


def test_bad_frames_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="uint8"):
        to_gray(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((4, 4, 2), np.uint8))
