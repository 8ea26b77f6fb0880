"""Ultrasound region of interest (interim: whole frame or a fixed box; detection lands next).

``RoiTracker(mode).update(gray) -> ((x, y, w, h), changed)``.
"""

from __future__ import annotations

import numpy as np


class RoiTracker:
    """Keeps the current ROI for a stream; ``mode`` is "auto", "off" or a fixed (x, y, w, h)."""

    def __init__(self, mode: str | tuple[int, int, int, int]) -> None:
        self.mode = mode
        self.roi: tuple[int, int, int, int] | None = None

    def update(self, gray: np.ndarray) -> tuple[tuple[int, int, int, int], bool]:
        h, w = gray.shape
        roi = (0, 0, w, h) if not isinstance(self.mode, tuple) else tuple(self.mode)
        changed = roi != self.roi
        self.roi = roi  # type: ignore[assignment]
        return roi, changed  # type: ignore[return-value]
