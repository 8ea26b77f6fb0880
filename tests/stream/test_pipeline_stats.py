"""Rolling statistics used by ``status``, and the thread budget, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from stream.pipeline import LatestSlot, thread_budget
from stream.stats import RateMeter, RollingPercentiles

S = 1_000_000_000


def test_percentiles_over_the_window_only() -> None:
    rp = RollingPercentiles(window_s=5.0)
    old = np.arange(1000, 1100)
    for i, v in enumerate(old):
        rp.add(float(v), t_ns=i)  # all at t ≈ 0
    recent = np.random.default_rng(0).normal(20, 5, 500)
    for v in recent:
        rp.add(float(v), t_ns=10 * S)
    got = rp.percentiles(now_ns=12 * S)  # the old samples are > 5 s old: gone
    ref = np.percentile(recent, [50, 95, 99])
    assert got["n"] == 500
    assert [got["p50"], got["p95"], got["p99"]] == pytest.approx(list(ref))
    empty = rp.percentiles(now_ns=100 * S)
    assert empty == {"p50": None, "p95": None, "p99": None, "n": 0}


def test_rate_meter() -> None:
    rm = RateMeter(window_s=2.0)
    rm._started = 0
    for i in range(90):  # 30 per second for 3 s
        rm.tick(1, t_ns=i * S // 30)
    assert rm.rate(now_ns=3 * S) == pytest.approx(30.0, abs=0.6)
    assert rm.total == 90
    assert rm.rate(now_ns=10 * S) == 0.0


@pytest.mark.parametrize(("cores", "seg", "expected"),
                         [(1, True, (1, 1)), (2, True, (1, 2)), (2, False, (1, 0)), (4, True, (1, 3)),
                          (16, True, (7, 9)), (16, False, (15, 0)), (None, True, (1, 1))])
def test_thread_budget(cores, seg, expected) -> None:
    assert thread_budget(cores, seg) == expected


def test_latest_slot_keeps_only_the_newest() -> None:
    slot = LatestSlot()
    for i in range(5):
        slot.offer(i)
    assert slot.take(0.01) == 4 and slot.replaced == 4
    assert slot.take(0.01) is None
    slot.close()
    assert slot.take(10.0) is None  # closed: returns at once
