"""ROI detection: a real full-screen scanner capture, and synthetic images pasted into a fake UI."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import synth
from stream.roi import RoiTracker, detect_roi, find_roi, iou

H, W = 720, 1280


def _speckle_image(h: int, w: int, rng: np.random.Generator, convex: bool) -> np.ndarray:
    """A speckled ultrasound-like patch whose non-black pixels span exactly h × w (a fan when convex)."""
    speckle = rng.rayleigh(40.0, (h, w)) * np.linspace(1.3, 0.5, h)[:, None]
    speckle[h // 5 : h // 5 + 4] += 120  # a pleural-line-like bright band
    img = np.clip(cv2.GaussianBlur(speckle, (3, 3), 0) + 25, 0, 255).astype(np.uint8)
    if convex:  # a 70° sector between two arcs, drawn big and resized to the patch
        yy, xx = np.mgrid[0:400, 0:400].astype(np.float64)
        r = np.hypot(xx - 200, yy + 100)
        ang = np.abs(np.arctan2(xx - 200, yy + 100))
        fan = ((ang <= np.deg2rad(35)) & (r >= 120) & (r <= 480)).astype(np.uint8)
        ys, xs = np.nonzero(fan)
        fan = fan[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        img[cv2.resize(fan, (w, h), interpolation=cv2.INTER_NEAREST) == 0] = 0
    return img


def _ui_screen(rng: np.random.Generator, clock: str = "15:07:35") -> np.ndarray:
    screen = np.zeros((H, W), np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(screen, "92881881525065 - Quick ID", (5, 30), font, 0.9, 230, 2, cv2.LINE_AA)
    cv2.putText(screen, f"18.10.2021 {clock}", (1000, 30), font, 0.9, 230, 2, cv2.LINE_AA)
    panel = [("MI", "0,4"), ("Gain", "50"), ("Depth", "12,0 cm"), ("Preset", "LUNG")]
    for i, (label, value) in enumerate(panel):
        cv2.putText(screen, label, (1150, 80 + 70 * i), font, 0.5, 200, 1, cv2.LINE_AA)
        cv2.putText(screen, value, (1120, 110 + 70 * i), font, 1.0, 255, 2, cv2.LINE_AA)
    for y in range(100, 650, 45):  # depth scale dots
        cv2.rectangle(screen, (6, y), (9, y + 3), 255, -1)
    cv2.putText(screen, "FREEZE   SAVE   MEASURE", (40, 700), font, 1.2, 180, 2, cv2.LINE_AA)
    cv2.circle(screen, (300, 130), 16, 90, -1)  # an icon
    cv2.putText(screen, "P", (292, 139), font, 0.7, 255, 2, cv2.LINE_AA)
    return screen


def _paste(screen: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    out = screen.copy()
    region = out[y : y + patch.shape[0], x : x + patch.shape[1]]
    np.copyto(region, patch, where=patch > 0)
    return out


@pytest.mark.parametrize("convex", [True, False])
def test_synthetic_image_in_a_fake_ui_is_found(convex: bool) -> None:
    rng = np.random.default_rng(1)
    truth = (420, 90, 440, 520) if convex else (500, 120, 260, 480)
    x, y, w, h = truth
    patch = _speckle_image(h, w, rng, convex)
    screen = _paste(_ui_screen(rng), patch, x, y)
    found = find_roi(cv2.cvtColor(screen, cv2.COLOR_GRAY2BGR))  # BGR input works too
    assert found is not None
    assert iou(found.box, truth) > 0.95, (found.box, truth)
    assert all(abs(a - b) <= 6 for a, b in zip(found.box, truth, strict=True))
    assert found.shape == ("fan" if convex else "rect")
    assert detect_roi(screen) == found.box


def test_moving_image_beats_a_large_static_panel() -> None:
    """With a previous frame, a static UI panel larger than the image loses to the moving image."""
    rng = np.random.default_rng(2)
    screen = _ui_screen(rng)
    cv2.rectangle(screen, (30, 200), (400, 600), 70, -1)  # a big static grey panel (thumbnail strip)
    truth = (600, 150, 200, 300)
    frames = [_paste(screen, _speckle_image(300, 200, rng, False), 600, 150) for _ in range(2)]
    found = find_roi(frames[1], previous=frames[0])
    assert found is not None and iou(found.box, truth) > 0.9


def test_tracker_follows_a_geometry_change_and_ignores_ui_updates() -> None:
    rng = np.random.default_rng(3)
    box_a, box_b = (420, 90, 440, 520), (520, 90, 240, 600)  # e.g. convex → linear probe
    tracker = RoiTracker("auto")
    boxes = []
    for i in range(40):
        x, y, w, h = box_a if i < 20 else box_b
        screen = _ui_screen(rng, clock=f"15:07:{i:02d}")  # the clock ticks: a static-UI change
        boxes.append(tracker.update(_paste(screen, _speckle_image(h, w, rng, i < 20), x, y))[0])
    assert all(iou(b, box_a) > 0.95 for b in boxes[:20])
    switch = next(i for i in range(20, 40) if iou(boxes[i], box_b) > 0.95)
    assert switch <= 23  # re-detected within a few frames of the change
    assert all(iou(b, box_b) > 0.95 for b in boxes[switch:])
    assert tracker.detections <= 3  # ticking text and speckle did not cause re-detections


def test_black_screen_keeps_the_whole_frame_then_finds_the_image() -> None:
    rng = np.random.default_rng(4)
    tracker = RoiTracker("auto")
    ui = _ui_screen(rng)
    box, changed = tracker.update(ui)  # UI only (the capture's first frames look like this)
    assert box == (0, 0, W, H) and changed
    truth = (500, 120, 260, 480)
    for _ in range(3):
        box, _ = tracker.update(_paste(ui, _speckle_image(480, 260, rng, False), 500, 120))
    assert iou(box, truth) > 0.95
    box, _ = tracker.update(np.zeros((H, W), np.uint8))  # probe lifted / blank: keep the ROI
    assert iou(box, truth) > 0.95


def test_off_fixed_and_invalid_modes() -> None:
    img = np.zeros((100, 200), np.uint8)
    assert RoiTracker("off").update(img) == ((0, 0, 200, 100), True)
    assert RoiTracker((150, 10, 100, 50)).update(img)[0] == (150, 10, 50, 50)  # clipped to the frame
    with pytest.raises(ValueError, match="ROI mode"):
        RoiTracker("fan")


@pytest.mark.realclips
def test_real_full_screen_capture(real_clips_dir: Path) -> None:
    """citab__…mp4: a 1280×720 screen; the L12-4 image spans x 562-714, y 110-~390 (content; the
    depth below ~390 px is black), with patient/date text, depth dots and a 'P' icon around it."""
    tracker = RoiTracker("auto")
    boxes = []
    with av.open(str(real_clips_dir / "citab__image_93029618565613.mp4")) as container:
        for frame in container.decode(video=0):
            boxes.append(tracker.update(frame.to_ndarray(format="gray"))[0])
    assert boxes[0] == (0, 0, 1280, 720)  # the first two frames show the UI only
    settled = boxes[4:]
    assert len(set(settled)) == 1 and tracker.detections <= 2  # stable: one detection, no jitter
    x, y, w, h = settled[0]
    assert 552 <= x <= 564 and 100 <= y <= 112  # the left/top edge of the image, not the 'P' icon at x≈512
    assert 712 <= x + w <= 726 and 360 <= y + h <= 660
    assert w * h < 0.06 * 1280 * 720  # the UI (94% of the screen) is cut away


@pytest.mark.parametrize("probe", ["convex", "linear"])
def test_simulator_frames_in_a_fake_ui_are_found(probe: str) -> None:
    sim = synth.LiveSimulator(seed=5, probe=probe, height=480, width=640)
    rng = np.random.default_rng(5)
    tracker = RoiTracker("auto")
    for _ in range(4):
        image = sim.next()[0]
        screen = _paste(_ui_screen(rng), image, 320, 160)
        box, _ = tracker.update(screen)
    ys, xs = np.nonzero(cv2.medianBlur(image, 5) > 4)  # the simulator's image region (black outside)
    truth = (320 + xs.min(), 160 + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert iou(box, truth) > 0.9, (box, truth)


def test_grey_background_and_a_greyscale_bar_beside_the_image() -> None:
    """A mid-grey UI (background = histogram mode, not black) and a static greyscale bar 16 px to
    the right of the image: the ROI is the image alone."""
    rng = np.random.default_rng(7)
    truth = (500, 120, 260, 480)
    ui = _ui_screen(rng)
    ui = np.where(ui > 0, ui, 60).astype(np.uint8)
    screen = ui.copy()
    screen[120:600, 500:760] = _speckle_image(480, 260, rng, False)
    screen[150:450, 776:800] = np.linspace(255, 0, 300).astype(np.uint8)[:, None]
    found = find_roi(screen)
    assert found is not None and found.box == truth
