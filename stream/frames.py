"""The unit that flows from capture to the inference lanes: one grey, ROI-cropped frame with the
sequence number and monotonic capture time it got the moment it was read.

``time.monotonic_ns()`` is CLOCK_MONOTONIC on Linux: one clock for the whole machine, so a
``t_capture_ns`` stamped in the capture process is comparable with ``time.monotonic_ns()`` read in
the lanes or the publisher (end-to-end latency = ``t_publish_ns - t_capture_ns``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    ``seq`` counts frames read from the source (0, 1, 2, ...; a gap means the bounded buffer dropped
    frames). ``image`` is uint8 grey ``[H, W]`` already cropped to the ultrasound region ``roi``
    ``(x, y, w, h)``, given in pixels of the full source frame whose size is ``source_hw``.
    """

    seq: int
    t_capture_ns: int
    image: np.ndarray
    roi: tuple[int, int, int, int]
    source_hw: tuple[int, int]
    source_id: str

    def __post_init__(self) -> None:
        if self.image.ndim != 2 or self.image.dtype != np.uint8:
            raise ValueError(
                f"Frame.image must be a 2-D uint8 grey image, got shape {self.image.shape} dtype "
                f"{self.image.dtype}: convert with engines.preprocess.to_gray first"
            )
        x, y, w, h = self.roi
        if (h, w) != self.image.shape:
            raise ValueError(f"Frame.roi {self.roi} does not match the image shape {self.image.shape}")
        if x < 0 or y < 0 or x + w > self.source_hw[1] or y + h > self.source_hw[0]:
            raise ValueError(f"Frame.roi {self.roi} lies outside the source frame {self.source_hw}")
