r"""Streaming clip aggregation: the learned min-uninorm of Roy et al. 2020 (§IV-B, Eq. 8–9) and the
baselines ``max_argmax`` / ``argmax_mean`` (§V-B), frame by frame, numpy only (no torch, no ``train``).

The uninorm
-----------
For score ``c`` with neutral element ``e = e_c`` the product min-uninorm is::

    U(a, b) = a·b / e                        a, b ≤ e          (conjunctive part, product t-norm)
            = 1 − (1 − a)(1 − b)/(1 − e)     a, b ≥ e          (disjunctive part, product t-conorm)
            = min(a, b)                      otherwise

and the clip aggregate after frames ``p_1..p_n`` is ``v_n = U(v_{n−1}, p_n)``, ``v_0 = e``; the clip
probabilities are ``softmax(v^{(0)}, …, v^{(3)})``.

State (the log domain for both product regions)
-----------------------------------------------
Split the frames into ``L = {p < e}`` and ``H = {p > e}`` (``p = e`` is neutral). Then

    v = e · Π_{L} (p/e)                          if L ≠ ∅,
    v = 1 − (1 − e) · Π_{H} ((1 − p)/(1 − e))    if L = ∅.

Proof by induction over the fold: while every frame so far is ≥ e the state stays ≥ e and the
disjunctive part applies (``1 − v`` multiplies by ``(1 − p)/(1 − e)``); the first frame below ``e``
meets a state ≥ e, so the min picks the frame, and from then on the state is < e: a further low frame
multiplies it by ``p/e``, a high frame meets the min and leaves it unchanged. So the min region needs no
state at all — it "falls out" of the comparison ``n_low > 0``.

The state per score is therefore ``(n_low, λ_low, λ_high)`` with ``λ_low = Σ_L log(p/e) ≤ 0`` and
``λ_high = Σ_H log((1 − p)/(1 − e)) ≤ 0``, and ``log v = log e + λ_low`` (conjunctive) or
``log(1 − v) = log(1 − e) + λ_high`` (disjunctive). Neither sum underflows or saturates: after 10⁵
frames ``λ`` is a moderate negative number even when ``v`` itself would be 10⁻⁵⁰⁰⁰ or 1 − 10⁻⁵⁰⁰⁰.
Whole-clip sums are Neumaier-compensated, so their error does not grow with the number of frames.
Exact zeros (``p = 0`` below ``e``, ``p = 1`` above) are counted apart (``log 0 = −∞``).

The score is the argmax of ``logit(v) = log v − log(1 − v)``, computed from ``λ`` without forming ``v``,
so aggregates that round to the same float (two scores both at 1 − 10⁻²⁰) are still ordered exactly
(:meth:`StreamingAggregator.score`). The returned probabilities are the softmax of ``v`` as published.

Sliding windows
---------------
``(n_low, λ_low, λ_high)`` combine by addition, a monoid, so any window algorithm for monoids applies.
We use the two-stack queue (front stack of suffix aggregates + running back aggregate; a "flip"
rebuilds the suffixes with one vectorised ``accumulate`` when the front empties): O(1) amortised per
frame, no subtraction (so no cancellation, ``−∞`` is fine) and the same code serves ``max_argmax``,
whose ``max`` has no inverse. Windows count frames (``window_frames``), seconds (``window_seconds``,
using ``t_ns`` timestamps) or both.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

N_SCORES = 4
KINDS = ("uninorm", "max_argmax", "argmax_mean")
_LOOSE = 1e-3  # inputs this far outside [0, 1] are clipped (float error); beyond it they are refused
_UNIFORM = (0.25, 0.25, 0.25, 0.25)
_LOGIT_CAP = 1e4  # order logits of exact 0/1 folds are ±inf; capped before the calibrated softmax


def _as_probs(probs: Any) -> list[float]:
    """Frame probabilities → 4 Python floats in [0, 1]; refuses NaN, wrong length, non-probabilities."""
    vals = probs.tolist() if hasattr(probs, "tolist") else list(probs)
    if len(vals) != N_SCORES:
        raise ValueError(f"aggregator: expected {N_SCORES} frame probabilities, got {len(vals)}: {vals!r}")
    for i, v in enumerate(vals):
        if not (-_LOOSE <= v <= 1.0 + _LOOSE):  # also False for NaN
            raise ValueError(
                f"aggregator: frame probability {i} is {v!r}; pass softmax probabilities in [0, 1]"
            )
        if v < 0.0:
            vals[i] = 0.0
        elif v > 1.0:
            vals[i] = 1.0
    return vals


def _softmax(values: Sequence[float]) -> np.ndarray:
    m = max(values)
    z = [math.exp(v - m) for v in values]
    s = sum(z)
    return np.array([x / s for x in z])


def _argmax(values: Sequence[float]) -> int:
    best, arg = values[0], 0
    for i in range(1, len(values)):
        if values[i] > best:
            best, arg = values[i], i
    return arg


def _log(x: float) -> float:
    return math.log(x) if x > 0.0 else -math.inf


# ------------------------------------------------------------------------------------------ uninorm


class _UninormMath:
    """Per-score constants and the map from the log-domain state to value and ordering key."""

    def __init__(self, neutral_elements: Sequence[float], temperature: float | None = None) -> None:
        es = [float(e) for e in neutral_elements]
        if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"aggregator: temperature {temperature!r} must be a positive number")
        self.temperature = None if temperature is None else float(temperature)
        if len(es) != N_SCORES or not all(0.0 <= e <= 1.0 for e in es):
            raise ValueError(
                f"aggregator: neutral_elements {list(neutral_elements)!r} must be "
                f"{N_SCORES} numbers in [0, 1]"
            )
        self.e = es
        self.log_e = [_log(e) for e in es]
        self.log_1me = [_log(1.0 - e) for e in es]

    def contribution(self, c: int, p: float) -> tuple[int, float]:
        """Where one frame probability goes: ``(+1, log(p/e))`` below ``e`` (the conjunctive product),
        ``(−1, log((1−p)/(1−e)))`` above it (the disjunctive one), ``(0, 0.0)`` at ``e`` (neutral).
        The log term is ``−inf`` for an exact 0 below ``e`` or an exact 1 above it."""
        e = self.e[c]
        if p < e:
            return 1, _log(p) - self.log_e[c]
        if p > e:
            return -1, _log(1.0 - p) - self.log_1me[c]
        return 0, 0.0

    def probabilities(self, state: Sequence[tuple[int, float, float]], n: int,
                      logits: Sequence[float] | None = None) -> np.ndarray:
        """The published clip probabilities for the per-score states ``(n_low, λ_low, λ_high)`` over
        ``n`` frames: calibrated with a temperature, else the paper's softmax of the four folds."""
        if self.temperature is not None and n:
            return self.calibrated(self.logits(state) if logits is None else logits, n)
        return _softmax([self.value(c, *state[c]) for c in range(N_SCORES)])

    def value(self, c: int, n_low: float, lam_low: float, lam_high: float) -> float:
        if n_low > 0:
            return math.exp(self.log_e[c] + lam_low)
        return 1.0 - math.exp(self.log_1me[c] + lam_high)

    def calibrated(self, logits: Sequence[float], n: int) -> np.ndarray:
        """Clip probabilities ``softmax(τ · logit(v) / n)`` (the learned temperature τ, ``n`` frames).

        Dividing the four exact order logits by the number of frames keeps their order (the score is
        unchanged) and stops them from growing with the clip's length, so the probabilities stay
        informative over clips of any length (the paper's ``softmax(v)`` flattens towards 0.25 each).
        """
        tau = self.temperature or 1.0
        z = [tau * max(-_LOGIT_CAP, min(_LOGIT_CAP, x)) / max(1, n) for x in logits]
        return _softmax(z)

    def logits(self, state: Sequence[tuple[int, float, float]]) -> list[float]:
        """The four exact order logits of per-score states."""
        return [self.logit(c, *state[c]) for c in range(N_SCORES)]

    def logit(self, c: int, n_low: float, lam_low: float, lam_high: float) -> float:
        """log v − log(1 − v), exact where v rounds to 0 or 1 (±inf at exactly 0 / 1)."""
        if n_low > 0:
            lv = self.log_e[c] + lam_low
            if lv == -math.inf:
                return -math.inf
            ev = math.exp(lv)
            return math.inf if ev >= 1.0 else lv - math.log1p(-ev)
        lc = self.log_1me[c] + lam_high  # log(1 − v)
        if lc == -math.inf:
            return math.inf
        ec = math.exp(lc)
        return -math.inf if ec >= 1.0 else math.log1p(-ec) - lc


class CompensatedSums:
    """``n`` running sums, Neumaier-compensated (the error does not grow with the number of terms), that
    accept ``−inf`` terms (an exact zero factor in the log domain) by counting them apart."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self._sum = [0.0] * self.n
        self._comp = [0.0] * self.n
        self._neg_inf = [0] * self.n

    def add(self, i: int, x: float) -> None:
        if x == -math.inf:
            self._neg_inf[i] += 1
            return
        s = self._sum[i]
        t = s + x
        self._comp[i] += (s - t) + x if abs(s) >= abs(x) else (x - t) + s
        self._sum[i] = t

    def total(self, i: int) -> float:
        return -math.inf if self._neg_inf[i] else self._sum[i] + self._comp[i]


class StreamingAggregator:
    """Base: ``update(probs) -> clip probabilities``, ``value()``, ``score()``, ``reset()``, ``count``.

    ``update`` returns a new array (safe to keep). ``t_ns`` (monotonic ns, e.g. the frame's
    ``t_capture_ns``) is only used by time windows; it defaults to now.
    """

    kind = ""
    window_frames: int | None = None
    window_seconds: float | None = None

    def __init__(self) -> None:
        self.count = 0

    def update(self, probs: Any, t_ns: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def value(self) -> np.ndarray:
        raise NotImplementedError

    def order_keys(self) -> list[float]:
        """What the clip score is the argmax of: the aggregate itself, or for the uninorm the exact order
        logits (see the module doc)."""
        return [float(v) for v in self.value()]

    def decision(self) -> tuple[int, list[int]]:
        """``(score, tie)`` from one look at :meth:`order_keys` (what the engine asks after each frame):
        the score is the argmax, on a tie the lowest tied score; ``tie`` lists the scores that share the
        maximum exactly when there are several (the score is then no decision), else ``[]``.

        Exact equality on purpose: two order logits that differ in the last bit are still ordered (the
        module doc shows why that ordering is exact); equal ones arise when folds saturate alike
        (two scores at exactly 1, every score at exactly 0) or when no frame has been seen.
        """
        keys = self.order_keys()
        top = max(keys)
        tied = [c for c, k in enumerate(keys) if k == top]
        return tied[0], (tied if len(tied) > 1 else [])

    def score(self) -> int:
        """The clip score: argmax of :meth:`order_keys`; on a tie the lowest tied score (see :meth:`tie`)."""
        return self.decision()[0]

    def tie(self) -> list[int]:
        """The tied scores, or ``[]`` when one score leads (see :meth:`decision`)."""
        return self.decision()[1]

    def reset(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        win = (
            f", window_frames={self.window_frames}, window_seconds={self.window_seconds}"
            if self.windowed
            else ""
        )
        return f"{type(self).__name__}(kind={self.kind!r}, count={self.count}{win})"

    @property
    def windowed(self) -> bool:
        return self.window_frames is not None or self.window_seconds is not None


class UninormClipAggregator(StreamingAggregator):
    """Whole-clip min-uninorm per score, log-domain state with compensated sums (O(1) per frame)."""

    kind = "uninorm"

    def __init__(self, neutral_elements: Sequence[float], temperature: float | None = None) -> None:
        super().__init__()
        self._m = _UninormMath(neutral_elements, temperature)
        self.reset()

    @property
    def neutral_elements(self) -> list[float]:
        return list(self._m.e)

    def reset(self) -> None:
        self.count = 0
        self._n_low = [0] * N_SCORES
        self._n_high = [0] * N_SCORES
        self._low = CompensatedSums(N_SCORES)  # λ_low = Σ_L log(p/e)
        self._high = CompensatedSums(N_SCORES)  # λ_high = Σ_H log((1−p)/(1−e))
        self._cache: dict[str, Any] = {}  # state and logits of the current frame (value, score, tie)

    def update(self, probs: Any, t_ns: int | None = None) -> np.ndarray:
        vals = _as_probs(probs)
        for c in range(N_SCORES):
            side, term = self._m.contribution(c, vals[c])
            if side > 0:
                self._n_low[c] += 1
                self._low.add(c, term)
            elif side < 0:
                self._n_high[c] += 1
                self._high.add(c, term)
        self.count += 1
        self._cache.clear()
        return self.value()

    def log_state(self) -> list[tuple[str, float]]:
        """Exact state per score: ``("low", log v)``, ``("high", log(1 − v))`` or ``("neutral", log e)``."""
        out = []
        for c in range(N_SCORES):
            if self._n_low[c]:
                out.append(("low", self._m.log_e[c] + self._low.total(c)))
            elif self._n_high[c]:
                out.append(("high", self._m.log_1me[c] + self._high.total(c)))
            else:
                out.append(("neutral", self._m.log_e[c]))
        return out

    def _state(self) -> list[tuple[int, float, float]]:
        if "state" not in self._cache:
            self._cache["state"] = [(self._n_low[c], self._low.total(c), self._high.total(c))
                                    for c in range(N_SCORES)]
        return self._cache["state"]

    def _logits(self) -> list[float]:
        if "logits" not in self._cache:
            self._cache["logits"] = self._m.logits(self._state())
        return self._cache["logits"]

    def aggregates(self) -> np.ndarray:
        """The four uninorm folds ``v`` (the softmax's inputs)."""
        return np.array([self._m.value(c, *st) for c, st in enumerate(self._state())])

    def value(self) -> np.ndarray:
        with_logits = self._m.temperature is not None and self.count
        return self._m.probabilities(self._state(), self.count, self._logits() if with_logits else None)

    def order_keys(self) -> list[float]:
        return list(self._logits())


class MaxArgmaxClipAggregator(StreamingAggregator):
    """Hard rule: the highest per-frame argmax so far; ``value()`` is its one-hot (uniform if empty)."""

    kind = "max_argmax"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self._max = -1

    def update(self, probs: Any, t_ns: int | None = None) -> np.ndarray:
        a = _argmax(_as_probs(probs))
        if a > self._max:
            self._max = a
        self.count += 1
        return self.value()

    def value(self) -> np.ndarray:
        if self._max < 0:
            return np.array(_UNIFORM)
        out = np.zeros(N_SCORES)
        out[self._max] = 1.0
        return out

    def decision(self) -> tuple[int, list[int]]:
        if self._max < 0:  # nothing seen yet: no score leads
            return 0, list(range(N_SCORES))
        return self._max, []


class ArgmaxMeanClipAggregator(StreamingAggregator):
    """Mean of the frame probabilities so far (compensated sums); ``score()`` is its argmax."""

    kind = "argmax_mean"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self._sums = CompensatedSums(N_SCORES)

    def update(self, probs: Any, t_ns: int | None = None) -> np.ndarray:
        vals = _as_probs(probs)
        for c in range(N_SCORES):
            self._sums.add(c, vals[c])
        self.count += 1
        return self.value()

    def value(self) -> np.ndarray:
        if not self.count:
            return np.array(_UNIFORM)
        return np.array([self._sums.total(c) / self.count for c in range(N_SCORES)])


# ------------------------------------------------------------------------------------ sliding window


class TwoStackWindow:
    """Sliding-window fold of a monoid on fixed-length float vectors, O(1) amortised per push.

    ``combine`` is ``np.add`` or ``np.maximum`` (with ``identity`` 0 or −inf). Elements live in a ring
    buffer; the oldest ``n_front`` of them form the front stack, each holding the combination of itself
    and every newer front element (``suffix``); newer elements only update the running back aggregate.
    Evicting the oldest pops the front; when it is empty, a flip recomputes the suffixes of all
    elements with one ``combine.accumulate`` (each element is flipped at most once: amortised O(1)).
    """

    def __init__(
        self, dim: int, combine: np.ufunc, identity: float, max_frames: int | None, max_seconds: float | None
    ) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"aggregator: window_frames={max_frames} must be ≥ 1")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"aggregator: window_seconds={max_seconds} must be > 0")
        if max_frames is None and max_seconds is None:
            raise ValueError("aggregator: a window needs window_frames and/or window_seconds")
        self.dim, self.combine, self.identity = dim, combine, identity
        self.max_frames = max_frames
        self.max_ns = None if max_seconds is None else round(max_seconds * 1e9)
        cap = max_frames if max_frames is not None else 256
        self._elems = np.empty((cap, dim))
        self._suffix = np.empty((cap, dim))
        self._times = np.zeros(cap, dtype=np.int64)
        self._back = np.full(dim, identity)
        self._out = np.empty(dim)
        self.clear()

    def clear(self) -> None:
        self._head = 0
        self._n = 0
        self._n_front = 0
        self._back.fill(self.identity)

    def __len__(self) -> int:
        return self._n

    def _flip(self) -> None:
        cap = self._elems.shape[0]
        idx = (self._head + np.arange(self._n)) % cap
        block = self._elems[idx]
        self._suffix[idx] = self.combine.accumulate(block[::-1], axis=0)[::-1]
        self._n_front = self._n
        self._back.fill(self.identity)

    def _pop(self) -> None:
        if self._n_front == 0:
            self._flip()
        self._head = (self._head + 1) % self._elems.shape[0]
        self._n_front -= 1
        self._n -= 1

    def _grow(self) -> None:
        cap = self._elems.shape[0]
        idx = (self._head + np.arange(self._n)) % cap
        for name in ("_elems", "_suffix"):
            old = getattr(self, name)
            new = np.empty((2 * cap, self.dim))
            new[: self._n] = old[idx]
            setattr(self, name, new)
        times = np.zeros(2 * cap, dtype=np.int64)
        times[: self._n] = self._times[idx]
        self._times = times
        self._head = 0

    def push(self, element: Sequence[float], t_ns: int) -> None:
        if self.max_frames is not None:
            while self._n >= self.max_frames:
                self._pop()
        if self.max_ns is not None:
            horizon = t_ns - self.max_ns
            while self._n and self._times[self._head] <= horizon:
                self._pop()
        cap = self._elems.shape[0]
        if self._n == cap:
            self._grow()
            cap = self._elems.shape[0]
        pos = (self._head + self._n) % cap
        row = self._elems[pos]
        row[:] = element
        self._times[pos] = t_ns
        self._n += 1
        self.combine(self._back, row, out=self._back)

    def aggregate(self) -> np.ndarray:
        """The combination of every element in the window (a view into a reused buffer: copy to keep)."""
        if self._n_front:
            return self.combine(self._suffix[self._head], self._back, out=self._out)
        self._out[:] = self._back
        return self._out


class WindowedAggregator(StreamingAggregator):
    """Any of the three aggregators over the last ``window_frames`` frames and/or ``window_seconds``."""

    def __init__(
        self,
        kind: str,
        neutral_elements: Sequence[float] | None,
        window_frames: int | None,
        window_seconds: float | None,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.window_frames, self.window_seconds = window_frames, window_seconds
        if kind == "uninorm":
            es = neutral_elements if neutral_elements is not None else [0.0] * N_SCORES
            self._m = _UninormMath(es, temperature)
            # element: n_low[4], λ_low[4], λ_high[4]
            self._win = TwoStackWindow(3 * N_SCORES, np.add, 0.0, window_frames, window_seconds)
        elif kind == "max_argmax":
            self._win = TwoStackWindow(1, np.maximum, -math.inf, window_frames, window_seconds)
        elif kind == "argmax_mean":
            self._win = TwoStackWindow(N_SCORES, np.add, 0.0, window_frames, window_seconds)
        else:
            raise ValueError(f"aggregator: unknown kind {kind!r}; choose one of {list(KINDS)}")
        self._elem = [0.0] * self._win.dim
        self._agg: list[float] | None = None  # the window's aggregate, computed once per frame

    @property
    def neutral_elements(self) -> list[float] | None:
        return list(self._m.e) if self.kind == "uninorm" else None

    def reset(self) -> None:
        self._win.clear()
        self.count = 0
        self._agg = None

    def update(self, probs: Any, t_ns: int | None = None) -> np.ndarray:
        vals = _as_probs(probs)
        el = self._elem
        if self.kind == "uninorm":  # element: n_low[4], λ_low[4], λ_high[4] of this one frame
            for c in range(N_SCORES):
                side, term = self._m.contribution(c, vals[c])
                el[c] = float(side > 0)
                el[4 + c], el[8 + c] = (term, 0.0) if side > 0 else (0.0, term if side < 0 else 0.0)
        elif self.kind == "max_argmax":
            el[0] = float(_argmax(vals))
        else:
            el[:] = vals
        self._win.push(el, time.monotonic_ns() if t_ns is None else int(t_ns))
        self.count = len(self._win)
        self._agg = None
        return self.value()

    def _aggregate(self) -> list[float]:
        agg = self._agg
        if agg is None:
            agg = self._agg = self._win.aggregate().tolist()
        return agg

    def value(self) -> np.ndarray:
        if not self.count:
            if self.kind == "uninorm":
                return _softmax(self._m.e)
            return np.array(_UNIFORM)
        agg = self._aggregate()
        if self.kind == "uninorm":
            return self._m.probabilities(self._state(agg), self.count)
        if self.kind == "max_argmax":
            out = np.zeros(N_SCORES)
            out[int(agg[0])] = 1.0
            return out
        n = self.count
        return np.array([a / n for a in agg])

    @staticmethod
    def _state(agg: Sequence[float]) -> list[tuple[int, float, float]]:
        """The window's uninorm element ``n_low[4], λ_low[4], λ_high[4]`` as per-score states."""
        return [(int(agg[c]), agg[4 + c], agg[8 + c]) for c in range(N_SCORES)]

    def aggregates(self) -> np.ndarray:
        """Uninorm only: the four folds ``v`` over the window."""
        if self.kind != "uninorm":
            raise ValueError(f"aggregator: aggregates() is for the uninorm, this is {self.kind!r}")
        agg = self._aggregate() if self.count else [0.0] * 12
        return np.array([self._m.value(c, *st) for c, st in enumerate(self._state(agg))])

    def order_keys(self) -> list[float]:
        if self.kind == "uninorm" and self.count:
            return self._m.logits(self._state(self._aggregate()))
        return [float(v) for v in self.value()]


# ------------------------------------------------------------------------------------------ factory


def make_aggregator(
    kind: str = "uninorm",
    neutral_elements: Sequence[float] | None = None,
    window_frames: int | None = None,
    window_seconds: float | None = None,
    temperature: float | None = None,
) -> StreamingAggregator:
    """A streaming clip aggregator.

    ``kind``: ``uninorm`` (needs the learned ``neutral_elements``; ``None`` means all 0, the untrained
    layer = probabilistic sum), ``max_argmax`` or ``argmax_mean``. With ``window_frames`` and/or
    ``window_seconds`` it aggregates only the most recent frames; otherwise everything since ``reset()``.
    """
    if kind not in KINDS:
        raise ValueError(f"aggregator: unknown kind {kind!r}; choose one of {list(KINDS)}")
    if window_frames is not None or window_seconds is not None:
        return WindowedAggregator(kind, neutral_elements, window_frames, window_seconds, temperature)
    if kind == "uninorm":
        es = neutral_elements if neutral_elements is not None else [0.0] * N_SCORES
        return UninormClipAggregator(es, temperature)
    if kind == "max_argmax":
        return MaxArgmaxClipAggregator()
    return ArgmaxMeanClipAggregator()


def load_neutral_elements(manifest_path: str | Path) -> list[float]:
    """The four learned neutral elements from an aggregator manifest (``parameters.neutral_elements``)."""
    from engines.manifest import ManifestError, load_manifest

    path = Path(manifest_path)
    m = load_manifest(path, verify_file=False)
    if m["task"] != "aggregator":
        raise ManifestError(
            f"{path}: task is {m['task']!r}, not 'aggregator'; pass the aggregator manifest "
            "(models/frame/aggregator.json, written by `lus-train aggregator`)"
        )
    es = m["parameters"].get("neutral_elements")
    if not (
        isinstance(es, list) and len(es) == N_SCORES
        and all(isinstance(e, int | float) and not isinstance(e, bool) and 0.0 <= e <= 1.0 for e in es)
    ):  # fmt: skip
        raise ManifestError(
            f"{path}: parameters.neutral_elements {json.dumps(es)} must be {N_SCORES} numbers in [0, 1]; "
            "re-run `lus-train aggregator` to rewrite the manifest"
        )
    return [float(e) for e in es]


def load_temperature(manifest_path: str | Path) -> float | None:
    """The clip-probability temperature of an aggregator manifest (``parameters.temperature``), or None
    when it has none (the paper's ``softmax(v)`` is then published)."""
    from engines.manifest import ManifestError, load_manifest

    path = Path(manifest_path)
    tau = load_manifest(path, verify_file=False)["parameters"].get("temperature")
    if tau is None:
        return None
    if not (isinstance(tau, int | float) and not isinstance(tau, bool) and math.isfinite(tau) and tau > 0):
        raise ManifestError(f"{path}: parameters.temperature {tau!r} must be a positive number")
    return float(tau)
