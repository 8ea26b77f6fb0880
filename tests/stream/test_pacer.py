"""The capture's Pacer (stream.capture.Pacer): frames due at the media clock, re-anchoring at a loop
restart, a jump, after falling behind, and after a reconnect; stop requests end the wait."""

from __future__ import annotations

import pytest

from stream import capture


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(round(seconds, 6))
        self.now += seconds
        return True


@pytest.fixture()
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(capture.time, "monotonic", c.monotonic)
    return c


def test_frames_are_due_at_their_media_time(clock: Clock) -> None:
    pacer = capture.Pacer(0.04, clock.sleep)
    for t in (0.0, 0.04, 0.08, 0.2):
        assert pacer.wait(t)
    assert clock.slept == [0.04, 0.04, 0.12]  # the first frame anchors and is due at once


def test_missing_media_times_are_one_period_apart(clock: Clock) -> None:
    pacer = capture.Pacer(0.05, clock.sleep)
    for _ in range(3):
        assert pacer.wait(None)
    assert clock.slept == [0.05, 0.05]


def test_loop_restart_and_jump_reanchor_instead_of_waiting(clock: Clock) -> None:
    pacer = capture.Pacer(0.04, clock.sleep)
    pacer.wait(10.0)
    pacer.wait(0.0)  # the clip looped: media time went back
    pacer.wait(60.0)  # a jump of more than 5 s
    assert clock.slept == []


def test_falling_behind_reanchors_rather_than_racing(clock: Clock) -> None:
    pacer = capture.Pacer(0.04, clock.sleep)
    pacer.wait(0.0)
    clock.now += 2.0  # a 2 s stall (slow decode, an outage)
    pacer.wait(0.04)  # late by ~2 s: played at once, and the clock is re-anchored here
    pacer.wait(0.08)
    assert clock.slept == [0.04]  # the next frame waits one period, not zero (no burst to catch up)


def test_reset_and_stop(clock: Clock) -> None:
    pacer = capture.Pacer(0.04, clock.sleep)
    pacer.wait(5.0)
    pacer.reset()  # after a reconnect
    assert pacer.wait(5.5) and clock.slept == []
    stopping = capture.Pacer(0.04, lambda s: False)
    stopping.wait(0.0)
    assert stopping.wait(0.04) is False
