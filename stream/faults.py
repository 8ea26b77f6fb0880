"""Fault injection for tests and demos: a source that goes away and comes back (``--outage``).

Not used on any production path: :func:`stream.capture.make_source` imports it only when a
``SourceSpec.outage`` is set (``lus-stream --outage AFTER:SECONDS[:error|stall]``), to show how the
engine reports a lost source and recovers.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from stream.sources import Source, SourceOpenError, SourceReadError


class OutageSource(Source):
    """Wrap a source so that after ``after_frames`` frames it is gone for ``seconds``.

    ``mode="error"``: reads raise :class:`SourceReadError` and re-opening fails (an unplugged
    device); ``mode="stall"``: reads block (a grabber that stops delivering). The wrapped source
    counts as live while wrapped, so the capture loop retries and recovers. Finite sources loop.
    """

    live = True
    finite = False

    def __init__(self, inner: Source, after_frames: int, seconds: float, mode: str = "error") -> None:
        if mode not in ("error", "stall"):
            raise ValueError(f"outage mode must be 'error' or 'stall', got {mode!r}")
        self.inner = inner
        self.after_frames = after_frames
        self.seconds = seconds
        self.mode = mode
        self.source_id = inner.source_id
        self.self_paced = inner.self_paced
        self._count = 0
        self._until: float | None = None
        self._done = False
        self._opened = False

    @property
    def nominal_fps(self) -> float | None:
        """The wrapped source's rate (known once it is open)."""
        return self.inner.nominal_fps

    @nominal_fps.setter
    def nominal_fps(self, value: float | None) -> None:
        self.inner.nominal_fps = value

    def _outage_left_s(self) -> float:
        """Seconds of the scripted outage still to come (0 outside it)."""
        return 0.0 if self._until is None else max(0.0, self._until - time.monotonic())

    def open(self) -> dict[str, Any]:
        if self._outage_left_s() > 0:
            raise SourceOpenError(f"{self.source_id}: scripted outage (source unplugged)")
        if not self._opened:
            info = self.inner.open()
            self._opened = True
            return {
                **info,
                "outage": {"after_frames": self.after_frames, "seconds": self.seconds, "mode": self.mode},
            }
        return {}

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if not self._done and self._until is None and self._count >= self.after_frames:
            self._until = time.monotonic() + self.seconds
            self._done = True
        left_s = self._outage_left_s()
        if left_s > 0:
            if self.mode == "error":
                raise SourceReadError(f"{self.source_id}: scripted outage (read failed)")
            time.sleep(left_s)
        out = self.inner.read()
        if out is None:
            self.inner.rewind()
            out = self.inner.read()
        self._count += 1
        return out

    def close(self) -> None:
        """Keep the inner source open: a retry's ``open()`` resumes it where it stopped."""

    def shutdown(self) -> None:
        self.inner.shutdown()
