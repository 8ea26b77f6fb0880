"""Overlay drawing checked on the image array: boxes, class contours, bars, banners at the expected pixels."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import synth
from stream import wire
from stream.view import overlay, sample
from stream.view.overlay import BOX_COLOURS, CLASS_COLOURS, Banner, Scene, SegLayer, Style, render
from stream.view.subscriber import StreamView

DOC_PNG = Path(__file__).resolve().parents[2] / "docs" / "img" / "overlay_example.png"
NO_PANEL = Style(panel=False)


def _frame(boxes, roi=(0, 0, 300, 200), source_hw=(200, 300)) -> dict:
    return sample.frame_message(5, 2, sample.one_hot_probs(2), boxes, roi, source_hw, 1_000)


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_boxes_at_source_pixels() -> None:
    boxes = [_rect(20, 30, 120, 90), _rect(150, 40, 250, 160)]
    out = render(np.zeros((200, 300, 3), np.uint8), Scene(frame=_frame(boxes)), style=NO_PANEL)
    assert out.shape == (200, 300, 3)
    for x, y in [(70, 30), (20, 60), (120, 60), (70, 90)]:  # edge midpoints of box 1
        assert tuple(out[y, x]) == BOX_COLOURS[0], (x, y)
    for x, y in [(200, 40), (150, 100), (250, 100), (200, 160)]:
        assert tuple(out[y, x]) == BOX_COLOURS[1], (x, y)
    assert not out[60, 70].any() and not out[100, 200].any()  # insides untouched
    assert not out[5, 5].any()


def test_boxes_on_a_roi_picture_are_shifted_and_scaled() -> None:
    # the image shows the source ROI (100, 50, 100, 80) at twice its size: source (150, 90) → canvas (100, 80)
    boxes = [_rect(120, 60, 180, 120), _rect(110, 55, 190, 125)]
    out = render(np.zeros((160, 200, 3), np.uint8), Scene(frame=_frame(boxes)), view_rect=(100, 50, 100, 80),
                 style=NO_PANEL)
    assert tuple(out[20, 100]) == BOX_COLOURS[0]   # top edge y = (60-50)*2
    assert tuple(out[80, 40]) == BOX_COLOURS[0]    # left edge x = (120-100)*2
    assert tuple(out[140, 100]) == BOX_COLOURS[0]  # bottom edge y = (120-50)*2
    assert tuple(out[80, 160]) == BOX_COLOURS[0]   # right edge x = (180-100)*2


def _seg(roi=(100, 50, 50, 40), hw=(40, 50)) -> SegLayer:
    cmap = np.full(hw, 4, np.uint8)
    cmap[10:30, 10:30] = 3   # score-3 square
    cmap[2:8, 35:45] = 0     # score-0 bar
    return SegLayer(cmap, roi)


def test_contours_coloured_by_class() -> None:
    out = render(np.zeros((200, 300, 3), np.uint8), Scene(seg=_seg()), style=NO_PANEL)
    # score-3 square spans source x 110..129, y 60..79: its contour (2 px, drawn inside-out) is red
    for x, y in [(110, 70), (129, 70), (120, 60), (120, 79)]:
        assert tuple(out[y, x]) == CLASS_COLOURS[3], (x, y)
    assert not out[70, 120].any(), "contours only: the inside stays untouched"
    assert not out[70, 105].any() and not out[55, 120].any()
    assert tuple(out[52, 140]) == CLASS_COLOURS[0]  # score-0 bar top edge (y 52, x 135..144)
    red = np.all(out == CLASS_COLOURS[3], axis=2)
    ys, xs = np.nonzero(red)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (109, 130, 59, 80)  # 2-px line centred on the edge


def test_low_resolution_class_map_is_stretched_over_the_roi() -> None:
    seg = _seg(roi=(100, 50, 100, 80), hw=(40, 50))  # map at half the ROI's resolution
    out = render(np.zeros((200, 300, 3), np.uint8), Scene(seg=seg), style=NO_PANEL)
    ys, xs = np.nonzero(np.all(out == CLASS_COLOURS[3], axis=2))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (119, 160, 69, 110)  # source 120..159 x 70..109
    assert tuple(out[90, 120]) == CLASS_COLOURS[3] and not out[90, 140].any()


def test_fill_and_uncertainty_change_only_their_region() -> None:
    seg = _seg()
    seg.uncertainty = np.zeros((40, 50), np.float32)
    seg.uncertainty[20:, :] = 1.0
    base = np.full((200, 300, 3), 100, np.uint8)
    out = render(base, Scene(seg=seg), style=Style(panel=False, show_uncertainty=True, fill_alpha=0.5))
    assert not np.array_equal(out[70, 120], base[70, 120])  # tinted inside the score-3 square
    assert np.array_equal(out[55, 110], base[55, 110])      # certain, background: untouched
    assert not np.array_equal(out[85, 105], base[85, 105])  # uncertain lower half: heat map
    assert np.array_equal(out[150, 250], base[150, 250])    # outside the ROI


def test_panel_bars_and_banners() -> None:
    frame = _frame(None)
    frame["probs"], frame["score"] = [0.1, 0.2, 0.6, 0.1], 2
    scene = Scene(frame=frame, banners=[Banner("stale", "STALE")])
    out = render(np.zeros((480, 640, 3), np.uint8), scene)
    assert out.shape == (480, 640 + overlay.PANEL_W, 3)
    assert tuple(out[10, 300]) == overlay.BANNER_COLOURS["stale"]
    panel = out[:, 640:]
    bar_w = overlay.PANEL_W - 70
    top = overlay.layout_banners(scene.banners, out.shape[1], out.shape[0]).height  # banners span the panel
    assert top == overlay.BANNER_H and tuple(out[10, -5]) == overlay.BANNER_COLOURS["stale"]
    row = top + 4 + 22 + 2 * 16 + 6  # score-2 bar of the frame-score block, below the banners
    xs = np.nonzero(np.all(panel[row] == CLASS_COLOURS[2], axis=1))[0]
    assert xs.min() == 30 and abs((xs.max() - 30 + 1) - 0.6 * bar_w) <= 1.5


def test_seg_layer_from_message_checks_payloads() -> None:
    cmap = np.full((40, 50), 4, np.uint8)
    _, msg, payloads = sample.seg_message(1, cmap, (0, 0, 50, 40), (40, 50), 10)
    wire.validate("seg", msg, payloads)
    assert SegLayer.from_message(msg, payloads).class_map.shape == (40, 50)
    with pytest.raises(ValueError, match="not a decodable PNG"):
        SegLayer.from_message(msg, [b"\x89PNG broken"])
    msg["class_map"]["hw"] = [20, 20]
    with pytest.raises(ValueError, match="hw"):
        SegLayer.from_message(msg, payloads)


def test_docs_overlay_png(tmp_path: Path) -> None:
    """The README/docs still: a synthetic frame with a demo-like message set, through the viewer's path.

    Written to a temporary folder; ``LUS_UPDATE_DOC_IMAGES=1`` also writes it to docs/img (a test run
    must not change tracked files)."""
    sim = synth.LiveSimulator(seed=3, schedule=[(0, 2)])
    for _ in range(5):
        image, score, mask = sim.next()
    exam = sample.demo_exam([0, 1, 2, 3, 1, 2, None, None, None, None, None, None, None, None], current=6)
    view = StreamView()
    for topic, msg, payloads in sample.demo_scene_messages(image, mask, score, exam_msg=exam):
        assert view.ingest(wire.encode(topic, msg, payloads)) is not None, view.errors
    picture, rect, seq = view.current_image()
    out = render(picture, view.scene(seq), rect, Style(show_uncertainty=True), min_height=540)
    png = tmp_path / DOC_PNG.name
    assert cv2.imwrite(str(png), out)
    if os.environ.get("LUS_UPDATE_DOC_IMAGES") == "1":
        assert cv2.imwrite(str(DOC_PNG), out)
    back = cv2.imread(str(png))
    assert back.shape == out.shape and back.shape[0] == 540
    assert np.all(back == BOX_COLOURS[0], axis=2).sum() > 100
    assert np.all(back == CLASS_COLOURS[score], axis=2).sum() > 100


WARNING = "frame model trained on synthetic data only; this is real video (clip): scores are not meaningful"


def _near(img: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return np.abs(img.astype(np.int16) - np.array(colour, np.int16)).max(axis=2) <= tol


def test_domain_warning_is_a_banner_and_spelt_out_in_the_panel() -> None:
    """A status with ``domain_warning`` (synthetic-only model on real video): a coloured banner over the
    image, the warning in the panel in the same colour, the model line with its domain; none without it."""
    t = 1_000
    warned = sample.status_message(3, t, source_kind="clip", domain_warning=WARNING)
    wire.validate("status", warned)
    colour = overlay.BANNER_COLOURS["domain"]
    out = render(np.zeros((480, 640, 3), np.uint8), Scene(status=warned))
    assert tuple(out[10, 600]) == colour  # banner across the top of the picture
    panel = out[:, 640:]
    warn_px = _near(panel, colour)  # the warning's anti-aliased text in the panel
    assert warn_px.sum() > 100 and np.all(out[27:, :640] == 0)  # the picture below the banner untouched
    assert overlay.scoring_model_line(warned) == "model: regstn-synthetic - synthetic"
    assert overlay.domain_warning(warned) == WARNING
    # the same status without the warning: no banner, nothing in the warning colour
    plain = sample.status_message(3, t)
    clean = render(np.zeros((480, 640, 3), np.uint8), Scene(status=plain))
    assert tuple(clean[10, 600]) == (0, 0, 0) and not _near(clean, colour).any()
    # the viewer's receive path: the validated message becomes the same overlay, and --print says it
    view = StreamView()
    assert view.ingest(wire.encode("status", warned)) is not None, view.errors
    through = render(np.zeros((480, 640, 3), np.uint8), view.scene(now=0.0))
    assert tuple(through[10, 600]) == colour and _near(through[:, 640:], colour).sum() == warn_px.sum()
    from stream.view.subscriber import describe

    line = describe("status", warned)
    assert "domain=synthetic" in line and f"WARNING: {WARNING}" in line


def test_wire_accepts_domain_fields_and_rejects_wrong_types() -> None:
    msg, _ = wire.example("status")
    wire.validate("status", msg)
    assert msg["lanes"]["scoring"]["domain"] == "synthetic"
    for ok in (WARNING, None):
        wire.validate("status", msg | {"domain_warning": ok})
    old = {**msg, "lanes": {k: {f: v for f, v in lane.items() if f not in ("domain", "dataset")}
                            for k, lane in msg["lanes"].items()}}  # fmt: skip
    wire.validate("status", old)  # an engine from before these fields
    seg_lane = {**msg["lanes"]["segmentation"], "domain": None, "dataset": None}
    nulls = {**msg, "lanes": {**msg["lanes"], "segmentation": seg_lane}}
    wire.validate("status", nulls)
    bad = [
        msg | {"domain_warning": 1},
        msg | {"domain_warning": ["x"]},
        {**msg, "lanes": {**msg["lanes"], "scoring": {**msg["lanes"]["scoring"], "domain": 3}}},
        {**msg, "lanes": {**msg["lanes"], "scoring": {**msg["lanes"]["scoring"], "dataset": True}}},
    ]
    for b in bad:
        with pytest.raises(wire.WireError):
            wire.validate("status", b)
