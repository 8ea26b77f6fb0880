"""Find the ultrasound image (convex fan or rectangle) in a full scanner screen and keep it.

Frame grabbers deliver the whole screen: the image plus patient/date text, depth scale dots,
icons and parameter panels. The image is a large, filled, textured region; UI text is thin and
static. Detection (:func:`find_roi`), on a copy scaled to at most 640 px:

1. background level = the histogram mode (the screen's dominant colour, usually black);
   content = pixels more than ``delta`` grey levels from it;
2. a 5×5 closing joins speckle into a filled region, then an opening with a kernel about 1/32 of
   the short side erases text strokes, scale dots and thin lines (text is thin);
3. connected components of at least ``min_area_frac`` of the screen are candidates; when a previous
   frame is given, each is weighted by the fraction of its pixels that changed (UI is static, the
   image moves), otherwise by area alone; the best one's bounding box is the ROI, and its fill
   ratio says ``fan`` (< 0.85 of the box) or ``rect``.

Tracking (:class:`RoiTracker`) runs a cheap check on every frame at quarter scale: the content
fill inside the ROI (drops when the image shrinks or moves), the content in a band around the ROI
(rises when the image grows or moves; static UI text there is in the reference) and the changing
pixels outside the ROI (appear when the image moves). Two suspicious frames in a row trigger a full
re-detection (at most every ``min_interval_frames``); the ROI only switches when the new box differs
(IoU < 0.9), so it does not jitter. If nothing is found (a black screen, probe lifted, a frozen
start-up screen) the previous ROI is kept, or the whole frame is returned until the first detection
with ``located`` False (the capture process holds such frames back instead of scoring them).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class RoiDetection:
    box: Box  # (x, y, w, h) in full-frame pixels
    shape: str  # "fan" | "rect"
    area_frac: float  # component area / frame area
    fill: float  # component area / box area


def _gray(frame: np.ndarray) -> np.ndarray:
    from engines.preprocess import to_gray

    return to_gray(frame)


def _background(small: np.ndarray) -> int:
    hist = np.bincount(small.ravel(), minlength=256)
    return int(np.argmax(hist))


def _content(small: np.ndarray, background: int, delta: int) -> np.ndarray:
    diff = cv2.absdiff(small, np.full_like(small, background))
    return (diff > delta).astype(np.uint8)


def find_roi(
    frame: np.ndarray,
    previous: np.ndarray | None = None,
    delta: int = 4,
    min_area_frac: float = 0.01,
    max_side: int = 640,
) -> RoiDetection | None:
    """Detect the ultrasound region of a BGR or grey screen; None when there is none."""
    gray = _gray(frame)
    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(gray, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else gray
    mask = _content(small, _background(small), delta)
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    k = max(5, round(min(sh, sw) / 32) | 1)
    mask = cv2.morphologyEx(closed, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    ok = areas >= min_area_frac * sw * sh
    if not ok.any():
        return None
    weights = np.ones_like(areas)
    if previous is not None:
        prev = _gray(previous)
        prev_small = cv2.resize(prev, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else prev
        moving = cv2.absdiff(small, prev_small) > delta
        if moving.any():
            moved = np.bincount(labels[moving], minlength=n)[1:].astype(np.float64)
            weights = 0.1 + moved / np.maximum(areas, 1)
    score = np.where(ok, areas * weights, -1.0)
    best = int(np.argmax(score)) + 1
    # The opening shaved thin parts of the image (a fan's corners): take the bounding box from the
    # closed mask, restricted to within one kernel of the chosen component.
    component = (labels == best).astype(np.uint8)
    near = cv2.bitwise_and(cv2.dilate(component, np.ones((k + 2, k + 2), np.uint8)), closed)
    x, y, bw, bh = cv2.boundingRect(near)
    area = int(stats[best, cv2.CC_STAT_AREA])
    x0, y0 = int(np.floor(x / scale)), int(np.floor(y / scale))
    x1, y1 = min(w, int(np.ceil((x + bw) / scale))), min(h, int(np.ceil((y + bh) / scale)))
    fill = area / float(bw * bh)
    return RoiDetection((x0, y0, x1 - x0, y1 - y0), "rect" if fill >= 0.85 else "fan", area / (sw * sh), fill)


def detect_roi(frame: np.ndarray, previous: np.ndarray | None = None) -> Box:
    """The ultrasound region ``(x, y, w, h)`` of a screen; the whole frame when none is found."""
    found = find_roi(frame, previous)
    if found is None:
        h, w = frame.shape[:2]
        return (0, 0, w, h)
    return found.box


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


class RoiTracker:
    """The ROI of one stream: ``mode`` "auto" (detect + track), "off" (whole frame) or a fixed box.

    ``update(gray) -> (box, changed)``; ``detections`` counts full detections, ``last`` is the last
    :class:`RoiDetection` (None before the first or in "off"/fixed mode).
    """

    def __init__(
        self,
        mode: str | Box = "auto",
        min_interval_frames: int = 8,
        retry_interval_frames: int = 2,
        delta: int = 4,
    ) -> None:
        if not (mode in ("auto", "off") or (isinstance(mode, tuple | list) and len(mode) == 4)):
            raise ValueError(f"ROI mode must be 'auto', 'off' or (x, y, w, h), got {mode!r}")
        self.mode = tuple(int(v) for v in mode) if isinstance(mode, tuple | list) else mode
        self.min_interval_frames = min_interval_frames
        self.retry_interval_frames = retry_interval_frames
        self.delta = delta
        self.roi: Box | None = None
        self.last: RoiDetection | None = None
        self.detections = 0
        self._found = False
        self._prev4: np.ndarray | None = None
        self._prev_full: np.ndarray | None = None
        self._bg = 0  # the screen's background level, from the last detection
        self._ref_fill = 0.0  # content fill inside the ROI (slow running mean while unchanged)
        self._ref_band = 0  # content pixels in the band around the ROI at detection (static UI)
        self._suspicious = 0
        self._last_try = -(10**9)
        self._n = 0

    @property
    def located(self) -> bool:
        """Whether the box is the ultrasound region: always for "off"/fixed modes; in "auto" mode once
        a detection succeeded (and again after a screen-size change re-detected it)."""
        return self.mode != "auto" or self._found

    def update(self, gray: np.ndarray) -> tuple[Box, bool]:
        h, w = gray.shape[:2]
        if self.mode == "off":
            return self._set((0, 0, w, h))
        if isinstance(self.mode, tuple):
            x, y, bw, bh = self.mode
            x, y = min(max(0, x), w - 1), min(max(0, y), h - 1)
            return self._set((x, y, min(bw, w - x), min(bh, h - y)))
        small = cv2.resize(gray, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        self._n += 1
        now = self._n
        box = self.roi
        if box is None or box[2] > w or box[3] > h or box[0] + box[2] > w or box[1] + box[3] > h:
            box, self._found = (0, 0, w, h), False  # first frame, or the screen size changed
        if not self._found:
            if now - self._last_try >= self.retry_interval_frames:
                box = self._detect(gray, small, now, box)
        elif self._geometry_changed(small, box):
            self._suspicious += 1
            if self._suspicious >= 2 and now - self._last_try >= self.min_interval_frames:
                box = self._detect(gray, small, now, box)
        else:
            self._suspicious = 0
            fill = self._fill(small, box)
            self._ref_fill = 0.95 * self._ref_fill + 0.05 * fill
        self._prev4 = small
        self._prev_full = gray
        return self._set(box)

    def _set(self, box: Box) -> tuple[Box, bool]:
        changed = box != self.roi
        self.roi = box
        return box, changed

    def _fill(self, small: np.ndarray, box: Box) -> float:
        x, y, bw, bh = (v // 4 for v in box)
        inner = small[y : y + max(1, bh), x : x + max(1, bw)]
        return float(_content(inner, self._bg, self.delta).mean()) if inner.size else 0.0

    def _band(self, small: np.ndarray, box: Box) -> int:
        """Content pixels in a band around the box (10% of its size, at least 4 px), outside it."""
        x, y, bw, bh = (v // 4 for v in box)
        mx, my = max(4, bw // 10), max(4, bh // 10)
        y0, x0 = max(0, y - my), max(0, x - mx)
        outer = _content(small[y0 : y + bh + my, x0 : x + bw + mx], self._bg, self.delta)
        outer[y - y0 : y - y0 + bh, x - x0 : x - x0 + bw] = 0
        return int(outer.sum())

    def _geometry_changed(self, small: np.ndarray, box: Box) -> bool:
        area = max(1, (box[2] // 4) * (box[3] // 4))
        if self._fill(small, box) < 0.7 * self._ref_fill:
            return True
        if self._band(small, box) - self._ref_band > 0.02 * area:
            return True
        if self._prev4 is None or self._prev4.shape != small.shape:
            return False
        moving = cv2.absdiff(small, self._prev4) > 2 * self.delta
        x, y, bw, bh = (v // 4 for v in box)
        m = 2  # margin (quarter-scale pixels) so that the ROI's own edge does not count
        moving[max(0, y - m) : y + bh + m, max(0, x - m) : x + bw + m] = False
        return int(moving.sum()) > 0.05 * max(1, bw * bh)

    def _detect(self, gray: np.ndarray, small: np.ndarray, now: int, current: Box) -> Box:
        self._last_try = now
        self._suspicious = 0
        prev = self._prev_full
        if prev is not None and prev.shape != gray.shape:
            prev = None
        found = find_roi(gray, prev, delta=self.delta)
        if found is None:
            return current
        self.detections += 1
        self.last = found
        self._bg = _background(small)
        if not self._found or iou(found.box, current) < 0.9:
            current = found.box
        self._found = True
        self._ref_fill = self._fill(small, current)
        self._ref_band = self._band(small, current)
        return current
