"""The shared-memory frame ring: drop-oldest with a drop count, lossless waiting, Frame contents."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from stream.framebuffer import FrameRing
from stream.frames import Frame


def _image(i: int, h: int = 12, w: int = 16) -> np.ndarray:
    return ((np.arange(h * w).reshape(h, w) + 7 * i) % 251).astype(np.uint8)


@pytest.fixture()
def ring():
    r = FrameRing(capacity=4, max_frame_hw=(40, 40), source_id="test")
    yield r
    r.release()


def test_drop_oldest_keeps_newest_and_counts(ring: FrameRing) -> None:
    for i in range(10):
        assert ring.put(_image(i), seq=i, t_capture_ns=1000 + i, roi=(2, 3, 16, 12), source_hw=(30, 40))
    assert ring.counters()["dropped"] == 6
    assert len(ring) == 4
    frames = [ring.get(timeout=0) for _ in range(4)]
    assert [f.seq for f in frames] == [6, 7, 8, 9]
    for f in frames:
        np.testing.assert_array_equal(f.image, _image(f.seq))
        assert f.t_capture_ns == 1000 + f.seq
        assert f.roi == (2, 3, 16, 12) and f.source_hw == (30, 40) and f.source_id == "test"
    assert ring.get(timeout=0) is None
    assert ring.counters()["taken"] == 4


def test_frames_of_varying_size_and_noncontiguous_crops(ring: FrameRing) -> None:
    full = np.arange(30 * 40, dtype=np.int64).reshape(30, 40).astype(np.uint8)
    crop = full[5:25, 3:33]  # a view, not contiguous
    ring.put(crop, 0, 1, (3, 5, 30, 20), (30, 40))
    ring.put(full[:7, :9], 1, 2, (0, 0, 9, 7), (30, 40))
    a, b = ring.get_batch(5, timeout=0)
    np.testing.assert_array_equal(a.image, crop)
    np.testing.assert_array_equal(b.image, full[:7, :9])


def test_too_large_frame_is_refused_with_the_fix(ring: FrameRing) -> None:
    with pytest.raises(ValueError, match="max_frame_hw"):
        ring.put(np.zeros((50, 50), np.uint8), 0, 0, (0, 0, 50, 50), (50, 50))


def test_lossless_producer_waits_instead_of_dropping(ring: FrameRing) -> None:
    n = 40

    def produce() -> None:
        for i in range(n):
            ring.put(_image(i), i, time.monotonic_ns(), (0, 0, 16, 12), (12, 16), lossless=True)
        ring.close()

    thread = threading.Thread(target=produce)
    thread.start()
    seqs = []
    while True:
        f = ring.get(timeout=2.0)
        if f is None:
            break
        np.testing.assert_array_equal(f.image, _image(f.seq))
        seqs.append(f.seq)
        time.sleep(0.001)  # a slow consumer
    thread.join()
    assert seqs == list(range(n))
    assert ring.counters()["dropped"] == 0
    assert ring.closed


def test_stop_wakes_a_waiting_lossless_producer(ring: FrameRing) -> None:
    for i in range(4):
        ring.put(_image(i), i, i, (0, 0, 16, 12), (12, 16), lossless=True)
    result = []
    thread = threading.Thread(
        target=lambda: result.append(ring.put(_image(9), 9, 9, (0, 0, 16, 12), (12, 16), lossless=True))
    )
    thread.start()
    time.sleep(0.05)
    assert thread.is_alive()  # waiting for space
    ring.request_stop()
    thread.join(2.0)
    assert result == [False]


def test_get_returns_at_once_when_closed_and_empty(ring: FrameRing) -> None:
    ring.close()
    t0 = time.monotonic()
    assert ring.get(timeout=5.0) is None
    assert time.monotonic() - t0 < 1.0


def test_status_text_round_trip(ring: FrameRing) -> None:
    ring.write_status({"info": {"hw": [720, 1280]}, "error": None, "exit_error": "x" * 50_000})
    status = ring.read_status()
    assert status["info"] == {"hw": [720, 1280]}
    assert status["exit_error"].startswith("xxx")


def test_frame_validates_its_fields() -> None:
    img = np.zeros((4, 6), np.uint8)
    Frame(0, 1, img, (1, 1, 6, 4), (10, 10), "s")
    with pytest.raises(ValueError, match="roi"):
        Frame(0, 1, img, (1, 1, 5, 4), (10, 10), "s")
    with pytest.raises(ValueError, match="outside"):
        Frame(0, 1, img, (6, 1, 6, 4), (10, 10), "s")
    with pytest.raises(ValueError, match="uint8"):
        Frame(0, 1, img.astype(np.float32), (1, 1, 6, 4), (10, 10), "s")


def test_a_peer_that_died_holding_the_lock_cannot_hang_this_side(ring: FrameRing) -> None:
    ring.put(_image(0), 0, 0, (0, 0, 16, 12), (12, 16))
    ring.write_status({"state": "ok"})
    assert ring.read_status() == {"state": "ok"}
    assert ring._lock.acquire(timeout=1.0)  # the other process took the lock ... and was killed
    t0 = time.monotonic()
    assert ring.get(timeout=0.3) is None  # gives up at its timeout
    assert ring.read_status() == {"state": "ok"}  # the last status read, not a hang
    assert not ring.lock_usable()
    ring.request_stop()  # a plain flag store: needs no lock
    assert ring.put(_image(1), 1, 1, (0, 0, 16, 12), (12, 16)) is False
    assert ring.get(timeout=None) is None  # even "wait forever" returns once stopped
    assert time.monotonic() - t0 < 5.0
