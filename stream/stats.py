"""Rolling measurements for ``status``: latency percentiles and event rates over a time window.

Both keep (time, value) samples for the last ``window_s`` seconds in a deque (O(1) amortised per
event); percentiles are computed only when a status message is built (once per second).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RollingPercentiles:
    """Values observed in the last ``window_s`` seconds; p50/p95/p99 on demand."""

    def __init__(self, window_s: float = 5.0, max_samples: int = 100_000) -> None:
        self.window_s = float(window_s)
        self._samples: deque[tuple[int, float]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, value: float, t_ns: int | None = None) -> None:
        with self._lock:
            self._samples.append((time.monotonic_ns() if t_ns is None else t_ns, float(value)))

    def _trim(self, now_ns: int) -> None:
        cutoff = now_ns - int(self.window_s * 1e9)
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()

    def percentiles(
        self, qs: tuple[float, ...] = (50, 95, 99), now_ns: int | None = None
    ) -> dict[str, float | None]:
        """``{"p50": …, "p95": …, "p99": …, "n": count}`` (None when no samples in the window)."""
        with self._lock:
            self._trim(time.monotonic_ns() if now_ns is None else now_ns)
            values = np.fromiter((v for _, v in self._samples), dtype=np.float64, count=len(self._samples))
        out: dict[str, float | None] = {f"p{q:g}": None for q in qs}
        if values.size:
            for q, p in zip(qs, np.percentile(values, qs), strict=True):
                out[f"p{q:g}"] = float(p)
        out["n"] = int(values.size)
        return out


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = float(window_s)
        self.total = 0
        self._times: deque[int] = deque()
        self._started = time.monotonic_ns()
        self._lock = threading.Lock()

    def tick(self, n: int = 1, t_ns: int | None = None) -> None:
        t = time.monotonic_ns() if t_ns is None else t_ns
        with self._lock:
            self.total += n
            self._times.extend([t] * n)

    def rate(self, now_ns: int | None = None) -> float:
        now = time.monotonic_ns() if now_ns is None else now_ns
        window_ns = int(self.window_s * 1e9)
        with self._lock:
            while self._times and self._times[0] < now - window_ns:
                self._times.popleft()
            span = min(window_ns, now - self._started)
            return len(self._times) / (span / 1e9) if span > 0 else 0.0
