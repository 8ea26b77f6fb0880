"""Clips and live streams of synthetic LUS: :class:`ClipSpec` → :func:`simulate_clip` → :class:`SimClip`,
and the infinite :class:`LiveSimulator` (the runtime's synthetic source).

A schedule ``[(start_frame, score), ...]`` says which score each frame carries; at every change
the lung's signs cross-fade over ``SimConfig.transition_frames`` frames centred on the scheduled
frame (the frame label switches exactly there, as an annotator would mark it). Everything random
is drawn from ``numpy.random.default_rng`` streams spawned from the seed: same spec → same bytes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .anatomy import LungState, make_lung_state
from .config import SCANNERS, SimConfig, scanners_for
from .render import Renderer

Schedule = list[tuple[int, int]]


@dataclass(frozen=True)
class ClipSpec:
    """What to simulate. ``schedule`` = [(start_frame, score), ...], first start 0, increasing."""

    seed: int
    n_frames: int
    probe: str = "convex"
    schedule: Schedule = field(default_factory=lambda: [(0, 0)])
    scanner: str | None = None  # a name in synth.SCANNERS; None = drawn from the probe's profiles
    fps: float = 30.0
    height: int = 480
    width: int = 640


@dataclass
class SimClip:
    frames: np.ndarray  # uint8 [T, H, W]
    masks: np.ndarray  # uint8 [T, H, W]: 0..3 score classes, 4 = background
    scores: np.ndarray  # int64 [T]
    meta: dict[str, Any]


def validate_schedule(schedule: Schedule, n_frames: int | None = None) -> Schedule:
    """Check a schedule and return it as a list of int pairs (clear error otherwise)."""
    out = [(int(s), int(c)) for s, c in schedule]
    if not out:
        raise ValueError("schedule is empty: give at least [(0, score)]")
    if out[0][0] != 0:
        raise ValueError(f"schedule must start at frame 0, got {out[0][0]}: e.g. [(0, 0), (40, 2)]")
    for (a, _), (b, _) in itertools.pairwise(out):
        if b <= a:
            raise ValueError(f"schedule start frames must increase, got {a} then {b}")
    for _, c in out:
        if c not in (0, 1, 2, 3):
            raise ValueError(f"schedule score {c} is not a score 0-3")
    if n_frames is not None and out[-1][0] >= n_frames:
        raise ValueError(f"schedule start {out[-1][0]} is beyond the clip's {n_frames} frames")
    return out


def _resolve_scanner(probe: str, scanner: str | None, rng: np.random.Generator) -> str:
    names = scanners_for(probe)
    if scanner is None:
        return str(rng.choice(names))
    if scanner not in SCANNERS:
        raise ValueError(f"unknown scanner {scanner!r}: choose one of {sorted(SCANNERS)}")
    if SCANNERS[scanner].probe != probe:
        raise ValueError(
            f"scanner {scanner!r} has a {SCANNERS[scanner].probe} probe, not {probe}: use one of {names}"
        )
    return scanner


class _Engine:
    """Shared frame generator for clips and live streams (sequential frame indices)."""

    def __init__(
        self,
        seed: int,
        probe: str,
        scanner: str | None,
        fps: float,
        schedule: Schedule | None,
        frame_hw: tuple[int, int],
        cfg: SimConfig,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.cfg, self.fps, self.seed = cfg, float(fps), int(seed)
        ss = np.random.SeedSequence(int(seed))
        r_choice, r_world, self.r_states, self.r_sched = (np.random.default_rng(s) for s in ss.spawn(4))
        self.scanner = _resolve_scanner(probe, scanner, r_choice)
        self.profile = SCANNERS[self.scanner]
        self.renderer = Renderer(r_world, self.profile, frame_hw, cfg)
        self.fixed = validate_schedule(schedule) if schedule is not None else None
        # Segment j -> (start, score, state); only the ones around the current frame are kept, so an
        # endless live stream does not accumulate lung states.
        self.segments: dict[int, tuple[int, int, LungState]] = {}
        self._n_made = 0
        self._last: tuple[int, int] | None = None
        self._k = 0  # current segment
        self.index = 0

    def _random_next(self, prev: tuple[int, int] | None) -> tuple[int, int]:
        cfg = self.cfg
        w = np.array(cfg.score_weights, float)
        if prev is not None:
            w[prev[1]] *= 0.15  # a new segment mostly means a new score
        score = int(self.r_sched.choice(4, p=w / w.sum()))
        if prev is None:
            return 0, score
        return prev[0] + max(1, round(self.r_sched.uniform(*cfg.segment_seconds) * self.fps)), score

    def _ensure(self, k: int) -> bool:
        """Make segment ``k`` exist; False if a fixed schedule has no segment ``k``."""
        while self._n_made <= k:
            j = self._n_made
            if self.fixed is not None:
                if j >= len(self.fixed):
                    return False
                start, score = self.fixed[j]
            else:
                start, score = self._random_next(self._last)
            state = make_lung_state(score, self.r_states, self.renderer.geo, self.renderer.wall, self.cfg)
            self.segments[j] = (start, score, state)
            self._last = (start, score)
            self._n_made += 1
        return True

    def _half(self, b: int) -> float:
        """Half-width (frames) of the cross-fade at the boundary between segments b-1 and b."""
        prev_len = self.segments[b][0] - self.segments[b - 1][0]
        next_len = self.segments[b + 1][0] - self.segments[b][0] if self._ensure(b + 1) else float("inf")
        return min(self.cfg.transition_frames / 2.0, prev_len / 2.0, next_len / 2.0)

    def _mix(self, i: int) -> tuple[list[tuple[LungState, float]], LungState]:
        while self._ensure(self._k + 1) and self.segments[self._k + 1][0] <= i:
            self._k += 1
        k = self._k
        for old in [j for j in self.segments if j < k - 1]:
            del self.segments[old]
        start, _, cur = self.segments[k]
        if self.cfg.transition_frames > 0:
            if self._ensure(k + 1):  # fading towards the next segment?
                nstart, _, nxt = self.segments[k + 1]
                h = self._half(k + 1)
                if i >= nstart - h:
                    w = (i - (nstart - h) + 0.5) / (2 * h)
                    return [(cur, 1.0 - w), (nxt, w)], cur
            if k > 0:  # still fading in from the previous one?
                _, _, prv = self.segments[k - 1]
                h = self._half(k)
                if i < start + h:
                    w = (i - (start - h) + 0.5) / (2 * h)
                    return [(prv, 1.0 - w), (cur, w)], cur
        return [(cur, 1.0)], cur

    def next(self) -> tuple[np.ndarray, int, np.ndarray]:
        i = self.index
        states, label = self._mix(i)
        states = [(s, w) for s, w in states if w > 1e-3]
        img, mask = self.renderer.render(i / self.fps, states, label, i)
        self.index += 1
        return img, label.score, mask

    def meta(self) -> dict[str, Any]:
        geo = self.renderer.geo
        return {
            "seed": self.seed,
            "probe": self.profile.probe,
            "scanner": self.scanner,
            "hospital": self.profile.hospital,
            "fps": self.fps,
            "depth_cm": round(geo.depth_cm, 3),
            "px_per_cm": round(geo.px_per_cm, 3),
            "pleura_depth_cm": round(float(self.renderer.wall.pleura_rows.mean()) / geo.rows_per_cm, 3),
            "roi_xywh": list(geo.bbox),
            "frame_hw": list(geo.frame_hw),
            "synthetic": True,
        }


def simulate_clip(spec: ClipSpec, config: SimConfig | None = None) -> SimClip:
    """Render a whole clip: frames, masks, per-frame scores and metadata."""
    if spec.n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {spec.n_frames}")
    schedule = validate_schedule(spec.schedule, spec.n_frames)
    eng = _Engine(
        spec.seed,
        spec.probe,
        spec.scanner,
        spec.fps,
        schedule,
        (spec.height, spec.width),
        config or SimConfig(),
    )
    frames = np.empty((spec.n_frames, spec.height, spec.width), np.uint8)
    masks = np.empty_like(frames)
    scores = np.empty(spec.n_frames, np.int64)
    for i in range(spec.n_frames):
        frames[i], scores[i], masks[i] = eng.next()
    meta = eng.meta() | {"schedule": [list(p) for p in schedule], "n_frames": spec.n_frames}
    return SimClip(frames, masks, scores, meta)


class LiveSimulator:
    """An endless synthetic stream; ``schedule=None`` draws score segments of a few seconds at random."""

    def __init__(
        self,
        seed: int,
        probe: str = "convex",
        fps: float = 30.0,
        schedule: Schedule | None = None,
        height: int = 480,
        width: int = 640,
        scanner: str | None = None,
        config: SimConfig | None = None,
    ) -> None:
        self._eng = _Engine(seed, probe, scanner, fps, schedule, (height, width), config or SimConfig())

    @property
    def meta(self) -> dict[str, Any]:
        return self._eng.meta()

    @property
    def frame_index(self) -> int:
        """Index of the frame the next call to :meth:`next` returns."""
        return self._eng.index

    def next(self) -> tuple[np.ndarray, int, np.ndarray]:
        """(image uint8 [H, W], score, mask uint8 [H, W]) of the next frame."""
        return self._eng.next()

    def __iter__(self) -> LiveSimulator:
        return self

    def __next__(self) -> tuple[np.ndarray, int, np.ndarray]:
        return self.next()
