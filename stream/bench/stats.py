"""Summary statistics for benchmark samples: latency percentiles and rates.

Percentiles use linear interpolation between order statistics (numpy's default, "type 7" in
Hyndman & Fan 1996), so ``p50`` of ``[1, 2, 3, 4]`` is 2.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class LatencySummary:
    """Latency samples summarised in milliseconds."""

    n: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarise_ns(samples_ns: Sequence[int] | np.ndarray) -> LatencySummary:
    """Summarise latencies given in nanoseconds (NaN everywhere when there are none)."""
    x = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if x.size == 0:
        nan = float("nan")
        return LatencySummary(0, nan, nan, nan, nan, nan)
    p50, p95, p99 = np.percentile(x, PERCENTILES)
    return LatencySummary(int(x.size), float(x.mean()), float(p50), float(p95), float(p99), float(x.max()))


def rate_per_s(count: int, t_first_ns: int, t_last_ns: int) -> float:
    """Events per second over ``count`` events spanning ``[t_first, t_last]``.

    ``count`` events span ``count - 1`` intervals, so the rate is ``(count - 1) / span``; a single
    event (or a zero span) has no measurable rate and gives NaN.
    """
    span = (t_last_ns - t_first_ns) / 1e9
    if count < 2 or span <= 0:
        return float("nan")
    return (count - 1) / span


def missing_sequence_numbers(seqs: Sequence[int]) -> list[int]:
    """Sequence numbers absent between the first and last seen (the frames a consumer never got)."""
    if len(seqs) == 0:
        return []
    seen = set(int(s) for s in seqs)
    return [s for s in range(min(seen), max(seen) + 1) if s not in seen]


def cpu_percent(cpu_seconds: float, wall_seconds: float) -> float:
    """Process CPU use as a percentage of one core (200 % = two cores busy)."""
    if wall_seconds <= 0:
        return float("nan")
    return 100.0 * cpu_seconds / wall_seconds
