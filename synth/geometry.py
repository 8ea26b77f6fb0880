"""Probe geometry and scan conversion: the internal scan-line grid (rows = depth, columns = scan
lines) → the B-mode frame, for convex (fan/sector, black outside) and linear (rectangle) probes.

The conversion maps are computed once per clip; per frame one ``cv2.remap`` places the image
and one places the mask (nearest neighbour, background outside the imaged region).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .config import ScannerProfile, SimConfig


@dataclass
class ProbeGeometry:
    """Where the imaged region lies in the frame and how scan lines map onto it."""

    probe: str
    frame_hw: tuple[int, int]
    depth_cm: float
    px_per_cm: float
    rows: int  # scan-line grid size
    lines: int
    width_cm: float  # lateral extent of the image at the pleura (for converting cm to lines)
    map1: np.ndarray  # cv2.convertMaps output (fixed point) for fast bilinear remap
    map2: np.ndarray
    map_nearest: np.ndarray  # rounded integer map for nearest-neighbour remap (masks)
    inside: np.ndarray  # bool [H, W]: pixel lies in the imaged region
    bbox: tuple[int, int, int, int]  # (x, y, w, h) of the imaged region

    @property
    def rows_per_cm(self) -> float:
        return self.rows / self.depth_cm

    @property
    def lines_per_cm(self) -> float:
        return self.lines / self.width_cm

    def convert(self, scan: np.ndarray, border: int, nearest: bool = False) -> np.ndarray:
        """Scan-convert a [rows, lines] image to the frame."""
        if nearest:
            return cv2.remap(
                scan,
                self.map_nearest,
                None,
                cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=border,
            )
        return cv2.remap(
            scan, self.map1, self.map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border
        )


def make_geometry(
    profile: ScannerProfile, frame_hw: tuple[int, int], depth_cm: float, cfg: SimConfig
) -> ProbeGeometry:
    """Fit the profile's imaged region into the frame and build the scan-conversion maps."""
    h, w = frame_hw
    if h < 32 or w < 32:
        raise ValueError(f"frame size {frame_hw} is too small: use at least 32x32 pixels")
    margin = max(2, round(profile.margin_frac * min(h, w)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if profile.probe == "convex":
        r0, th = profile.radius_cm, math.radians(profile.half_angle_deg)
        extent_v = r0 + depth_cm - r0 * math.cos(th)
        extent_h = 2 * (r0 + depth_cm) * math.sin(th)
        s = min((h - 2 * margin) / extent_v, (w - 2 * margin) / extent_h)
        cx = w / 2.0
        apex_y = margin - r0 * math.cos(th) * s
        depth_px = depth_cm * s
        arc_px = (r0 + depth_cm / 2) * 2 * th * s
        rows = int(min(cfg.max_rows, max(16, round(depth_px * cfg.rows_per_px))))
        lines = int(min(cfg.max_lines, max(16, round(arc_px * cfg.lines_per_px))))
        dx, dy = xx - cx, yy - apex_y
        r = np.sqrt(dx * dx + dy * dy)
        ang = np.arctan2(dx, dy)
        map_y = (r - r0 * s) / depth_px * rows - 0.5
        map_x = (ang + th) / (2 * th) * lines - 0.5
        inside = (r >= r0 * s) & (r <= r0 * s + depth_px) & (np.abs(ang) <= th)
        width_cm = (r0 + 0.15 * depth_cm) * 2 * th  # arc length near the pleura
    elif profile.probe == "linear":
        s = min((h - 2 * margin) / depth_cm, (w - 2 * margin) / profile.width_cm)
        depth_px, width_px = depth_cm * s, profile.width_cm * s
        x0, y0 = (w - width_px) / 2.0, float(margin)
        rows = int(min(cfg.max_rows, max(16, round(depth_px * cfg.rows_per_px))))
        lines = int(min(cfg.max_lines, max(16, round(width_px * cfg.lines_per_px))))
        map_y = (yy - y0) / depth_px * rows - 0.5
        map_x = (xx - x0) / width_px * lines - 0.5
        inside = (yy >= y0) & (yy < y0 + depth_px) & (xx >= x0) & (xx < x0 + width_px)
        width_cm = profile.width_cm
    else:
        raise ValueError(f"unknown probe {profile.probe!r}: use 'convex' or 'linear'")
    # Outside the imaged region: point far outside the grid so the remap writes the border value.
    map_x = np.where(inside, map_x, -10.0).astype(np.float32)
    map_y = np.where(inside, map_y, -10.0).astype(np.float32)
    map1, map2 = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    # Nearest neighbour: integer cell = round(map) (the fixed-point maps above floor, which punches
    # pinholes into thin mask bands after the -0.5 centre offset).
    map_nearest = np.dstack([np.round(map_x), np.round(map_y)]).astype(np.int16)
    ys, xs = np.nonzero(inside)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return ProbeGeometry(
        profile.probe,
        (h, w),
        depth_cm,
        float(s),
        rows,
        lines,
        float(width_cm),
        map1,
        map2,
        map_nearest,
        inside,
        bbox,
    )
