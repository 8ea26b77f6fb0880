"""LabelMe round trip (mask → polygons → mask), overlap precedence, scaling and bad files.

Tolerance, justified: LabelMe polygons cannot hold holes, so the exact round trip (epsilon=0) is
compared with the mask whose holes are filled per class (scipy's independent binary_fill_holes,
higher classes painted last = the documented precedence). With epsilon > 0, approxPolyDP moves an
outline by at most epsilon (< 1 px), so every changed pixel must touch a class boundary of that
reference (lie within 1 px of a pixel of another class).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

import synth
from train.data.labelme import LabelMeError, mask_to_shapes, rasterise, read_labelme, write_labelme


def _filled(mask: np.ndarray, min_region_px: int) -> np.ndarray:
    out = np.full_like(mask, 4)
    for c in range(4):
        lab, n = ndimage.label(mask == c, structure=np.ones((3, 3)))
        for i in range(1, n + 1):
            comp = lab == i
            if comp.sum() >= min_region_px:
                out[ndimage.binary_fill_holes(comp)] = c
    return out


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    c = synth.simulate_clip(
        synth.ClipSpec(
            seed=3,
            n_frames=8,
            probe="convex",
            schedule=[(0, 0), (2, 1), (4, 2), (6, 3)],
            height=240,
            width=320,
        )
    )
    lin = synth.simulate_clip(
        synth.ClipSpec(seed=4, n_frames=4, probe="linear", schedule=[(0, 2), (2, 3)], height=240, width=320)
    )
    return np.concatenate([c.masks, lin.masks])


def test_exact_round_trip_up_to_holes(masks: np.ndarray, tmp_path: Path) -> None:
    for i, m in enumerate(masks):
        write_labelme(tmp_path / "m.json", m, epsilon=0, min_region_px=1)
        back = rasterise(tmp_path / "m.json", m.shape)
        ref = _filled(m, 1)
        assert np.array_equal(back, ref), (i, int((back != ref).sum()))
        assert (back != m).sum() <= 0.02 * max(1, (m < 4).sum())  # holes are rare pinholes


def test_approximated_round_trip_only_moves_boundaries(masks: np.ndarray, tmp_path: Path) -> None:
    for m in masks:
        write_labelme(tmp_path / "m.json", m, epsilon=0.75, min_region_px=4)
        back = rasterise(tmp_path / "m.json", m.shape)
        ref = _filled(m, 4)
        boundary = cv2.dilate(ref, np.ones((3, 3), np.uint8)) != cv2.erode(ref, np.ones((3, 3), np.uint8))
        changed = back != ref
        assert not (changed & ~boundary).any()
        for c in np.unique(ref[ref < 4]):  # and the regions themselves survive
            inter = ((back == c) & (ref == c)).sum()
            union = ((back == c) | (ref == c)).sum()
            assert inter / union > 0.85


def test_overlap_precedence_higher_score_wins_and_scaling(tmp_path: Path) -> None:
    doc = {
        "version": "5.4.1",
        "flags": {},
        "imagePath": "",
        "imageData": None,
        "imageHeight": 20,
        "imageWidth": 20,
        "shapes": [
            {"label": "3", "points": [[5, 5], [9, 5], [9, 9], [5, 9]], "shape_type": "polygon"},
            {"label": "1", "points": [[0, 0], [14, 0], [14, 14], [0, 14]], "shape_type": "polygon"},
            {"label": "0", "points": [[12, 12], [19, 19]], "shape_type": "rectangle"},
        ],
    }
    f = tmp_path / "a.json"
    f.write_text(json.dumps(doc))
    m = rasterise(f, (20, 20))
    assert (m[5:10, 5:10] == 3).all()  # drawn first in the file, still on top
    assert m[0, 0] == 1 and m[14, 14] == 1 and m[13, 13] == 1  # score 1 beats score 0 where they overlap
    assert m[15, 15] == 0 and m[19, 19] == 0 and m[0, 19] == 4
    assert (m == 1).sum() == 15 * 15 - 25
    big = rasterise(f, (40, 40))  # polygons scaled from the file's 20x20
    assert (big[11:19, 11:19] == 3).all() and big[1, 1] == 1 and big[39, 0] == 4


def test_shapes_are_valid_labelme(tmp_path: Path) -> None:
    m = np.full((30, 40), 4, np.uint8)
    m[5:8, 5:30] = 0
    m[10:30, 20] = 1  # a one-pixel-wide line
    shapes = mask_to_shapes(m, epsilon=0, min_region_px=1)
    assert sorted(s["label"] for s in shapes) == ["0", "1"]
    assert all(len(s["points"]) >= 3 and s["shape_type"] == "polygon" for s in shapes)
    write_labelme(tmp_path / "m.json", m, image_path="v.mp4#frame=3", epsilon=0, min_region_px=1)
    doc = read_labelme(tmp_path / "m.json")
    assert doc["imageHeight"] == 30 and doc["imageWidth"] == 40 and doc["imagePath"] == "v.mp4#frame=3"
    assert np.array_equal(rasterise(tmp_path / "m.json", (30, 40)), m)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"shapes": [', "malformed JSON"),
        ('{"nothing": 1}', "needs a 'shapes' list"),
        ('{"shapes": [{"label": "5", "points": [[0,0],[1,0],[1,1]]}]}', "unknown label '5'"),
        ('{"shapes": [{"label": "B-line", "points": [[0,0],[1,0],[1,1]]}]}', "unknown label 'B-line'"),
        ('{"shapes": [{"label": "1", "points": [[0,0],[1,0],[1,1]], "shape_type": "circle"}]}', "circle"),
        ('{"shapes": [{"label": "1", "points": [[0,0],[1,0]]}]}', "at least 3"),
        ('{"shapes": [{"label": "1", "points": "abc"}]}', "points"),
        ('{"shapes": [], "imageHeight": -3}', "imageHeight"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(LabelMeError, match=message) as err:
        rasterise(f, (10, 10))
    assert str(f) in str(err.value)
    with pytest.raises(LabelMeError, match="missing"):
        read_labelme(tmp_path / "absent.json")
