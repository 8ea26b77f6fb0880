"""The bounded frame buffer between the capture process and the inference lanes.

A ring of ``capacity`` fixed-size slots in one ``multiprocessing.shared_memory`` block, plus a
small header (counters, per-slot metadata, a JSON status text) in the same block, one
process-shared lock and two doorbell semaphores (``filled``: the ring went from empty to not
empty; ``freed``: a full ring got space). The image bytes are copied once into a slot by the
producer and once out by the consumer; nothing is pickled per frame.

Every lock acquisition has a timeout and re-checks the stop flag, and stop/close are plain flag
stores plus doorbells: if the other process dies at any moment (kill -9 while it held the lock),
this side gives up instead of hanging.

Policies:
- live / paced (``lossless=False``): when the ring is full the OLDEST frame is overwritten and
  counted in ``dropped``; the producer never waits, so capture never waits for inference;
- lossless (``as_fast_as_possible`` on a file): the producer waits for a free slot instead.

Why shared memory and not ZeroMQ ipc: an ipc socket copies every frame through the kernel (twice)
and needs its own drop-oldest logic (ZeroMQ's high-water mark drops the NEWEST message); the ring
costs two memcpy per frame and implements drop-oldest exactly under one lock. See docs/capture.md.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import time
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from stream.frames import Frame

# Header: int64 counters.
_HEAD, _COUNT, _WRITTEN, _DROPPED, _TAKEN, _CLOSED, _STOP = range(7)
_READ, _STATE, _FPS_MILLI, _LAST_T_NS, _TEXT_LEN, _LOST_EVENTS, _RECOVERIES = range(7, 14)
_N_HEADER = 16
# Per-slot metadata: seq, t_capture_ns, h, w, roi x, y, w, h, source h, w.
_N_META = 10
_TEXT_BYTES = 16384

STATES = ("starting", "running", "lost", "finished", "failed", "stopped")


class FrameRing:
    """Shared-memory ring of uint8 grey frames; drop-oldest (counted) or lossless.

    Create it in the consumer's process, pass it to the producer process as a
    ``multiprocessing`` argument (the lock and conditions travel at spawn time; the memory
    re-attaches by name), and call :meth:`release` in the creator when both are done.
    """

    def __init__(
        self,
        capacity: int = 8,
        max_frame_hw: tuple[int, int] = (1200, 1920),
        source_id: str = "",
        ctx: Any = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"FrameRing capacity must be >= 1, got {capacity}")
        ctx = ctx or mp.get_context("spawn")
        self.capacity = int(capacity)
        self.max_frame_hw = (int(max_frame_hw[0]), int(max_frame_hw[1]))
        self.slot_bytes = self.max_frame_hw[0] * self.max_frame_hw[1]
        self.source_id = source_id
        size = self._data_offset(self.capacity) + self.capacity * self.slot_bytes
        self._shm: SharedMemory | None = SharedMemory(create=True, size=size)
        self._owner = True
        self._lock = ctx.Lock()
        self._filled = ctx.Semaphore(0)
        self._freed = ctx.Semaphore(0)
        self._last_status: dict[str, Any] = {}
        self._attach_views()
        self._header[:] = 0

    # -- layout -------------------------------------------------------------------------------
    @staticmethod
    def _data_offset(capacity: int) -> int:
        return 8 * (_N_HEADER + capacity * _N_META) + _TEXT_BYTES

    def _memory(self) -> SharedMemory:
        if self._shm is None:
            raise ValueError(f"FrameRing {self.source_id!r} was released; make a new one")
        return self._shm

    def _attach_views(self) -> None:
        buf = self._memory().buf
        self._header = np.ndarray((_N_HEADER,), np.int64, buffer=buf, offset=0)
        self._meta = np.ndarray((self.capacity, _N_META), np.int64, buffer=buf, offset=8 * _N_HEADER)
        self._text = np.ndarray(
            (_TEXT_BYTES,), np.uint8, buffer=buf, offset=8 * (_N_HEADER + self.capacity * _N_META)
        )
        self._data = np.ndarray(
            (self.capacity, self.slot_bytes), np.uint8, buffer=buf, offset=self._data_offset(self.capacity)
        )

    def __getstate__(self) -> dict[str, Any]:
        return {
            "name": self._memory().name,
            "capacity": self.capacity,
            "max_frame_hw": self.max_frame_hw,
            "slot_bytes": self.slot_bytes,
            "source_id": self.source_id,
            "lock": self._lock,
            "filled": self._filled,
            "freed": self._freed,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.capacity = state["capacity"]
        self.max_frame_hw = state["max_frame_hw"]
        self.slot_bytes = state["slot_bytes"]
        self.source_id = state["source_id"]
        self._lock = state["lock"]
        self._filled = state["filled"]
        self._freed = state["freed"]
        self._last_status = {}
        self._shm = SharedMemory(name=state["name"])
        self._owner = False
        self._attach_views()

    # -- locking ------------------------------------------------------------------------------
    def _acquire(self, deadline: float | None) -> bool:
        """Take the lock; False at the deadline or once a stop is requested (the other process may
        have died holding the lock: never wait on it unconditionally)."""
        while True:
            step = 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))
            if self._lock.acquire(timeout=step):
                return True
            if self._header[_STOP] or (deadline is not None and time.monotonic() >= deadline):
                return False

    def lock_usable(self, timeout: float = 0.05) -> bool:
        """Whether the lock can be taken (False: a dead process holds it)."""
        if self._lock.acquire(timeout=timeout):
            self._lock.release()
            return True
        return False

    @staticmethod
    def _drain(bell: Any) -> None:
        while bell.acquire(False):
            pass

    # -- producer side ------------------------------------------------------------------------
    def put(
        self,
        image: np.ndarray,
        seq: int,
        t_capture_ns: int,
        roi: tuple[int, int, int, int],
        source_hw: tuple[int, int],
        lossless: bool = False,
    ) -> bool:
        """Store one frame. Returns False only when a stop was requested (while waiting for space in
        lossless mode, or for a lock a dead consumer held).

        ``image`` may be a non-contiguous view (an ROI crop): it is copied straight into the slot.
        """
        h, w = image.shape
        if h * w > self.slot_bytes:
            raise ValueError(
                f"frame {h}x{w} is larger than the frame buffer's slots "
                f"({self.max_frame_hw[0]}x{self.max_frame_hw[1]} pixels): raise SourceSpec.max_frame_hw"
            )
        hdr = self._header
        if not self._acquire(None):
            return False
        locked = True
        try:
            while hdr[_COUNT] >= self.capacity:
                if not lossless:
                    hdr[_COUNT] -= 1  # the oldest slot is (head - count); dropping it = shrinking count
                    hdr[_DROPPED] += 1
                    break
                self._drain(self._freed)  # under the lock: any token left is stale
                self._lock.release()
                locked = False
                self._freed.acquire(timeout=0.1)
                if hdr[_STOP] or not self._acquire(None):
                    return False
                locked = True
            slot = int(hdr[_HEAD])
            self._data[slot, : h * w].reshape(h, w)[...] = image
            self._meta[slot] = (seq, t_capture_ns, h, w, *roi, *source_hw)
            hdr[_HEAD] = (slot + 1) % self.capacity
            hdr[_COUNT] += 1
            hdr[_WRITTEN] += 1
            was_empty = hdr[_COUNT] == 1
        finally:
            if locked:
                self._lock.release()
        if was_empty:
            self._filled.release()  # ring the consumer's doorbell on empty → not empty
        return True

    def close(self) -> None:
        """Producer side: no more frames will come (consumers drain what is left, then get None)."""
        self._header[_CLOSED] = 1
        self._filled.release()

    # -- consumer side ------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest buffered frame, waiting up to ``timeout`` s (None: forever while open).

        Returns None on timeout, or at once when the producer has closed and the ring is empty.
        """
        frames = self.get_batch(1, timeout)
        return frames[0] if frames else None

    def get_batch(self, max_n: int, timeout: float | None = None) -> list[Frame]:
        """Wait (up to ``timeout``) for at least one frame, then take up to ``max_n`` buffered ones."""
        hdr = self._header
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._acquire(deadline):
                return []
            out: list[Frame] = []
            try:
                was_full = hdr[_COUNT] >= self.capacity
                while hdr[_COUNT] > 0 and len(out) < max_n:
                    slot = int((hdr[_HEAD] - hdr[_COUNT]) % self.capacity)
                    seq, t_ns, h, w, rx, ry, rw, rh, sh, sw = (int(v) for v in self._meta[slot])
                    image = self._data[slot, : h * w].reshape(h, w).copy()
                    hdr[_COUNT] -= 1
                    hdr[_TAKEN] += 1
                    out.append(Frame(seq, t_ns, image, (rx, ry, rw, rh), (sh, sw), self.source_id))
                ended = bool(hdr[_CLOSED] or hdr[_STOP])
                if not out:
                    self._drain(self._filled)  # under the lock with an empty ring: tokens are stale
            finally:
                self._lock.release()
            if out:
                if was_full:
                    self._freed.release()  # a lossless producer may be waiting for this space
                return out
            if ended:
                return []
            remaining = 0.2 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._filled.acquire(timeout=min(remaining, 0.2))

    def request_stop(self) -> None:
        """Wake everybody: a lossless producer stops waiting, consumers return at once when empty."""
        self._header[_STOP] = 1
        self._filled.release()
        self._freed.release()

    # -- shared stats (written by the producer, read by anybody) -------------------------------
    @property
    def stop_requested(self) -> bool:
        return bool(self._header[_STOP])

    @property
    def closed(self) -> bool:
        return bool(self._header[_CLOSED])

    def __len__(self) -> int:
        return int(self._header[_COUNT])

    def counters(self) -> dict[str, int]:
        hdr = self._header
        return {
            "read": int(hdr[_READ]),
            "written": int(hdr[_WRITTEN]),
            "dropped": int(hdr[_DROPPED]),
            "taken": int(hdr[_TAKEN]),
            "queued": int(hdr[_COUNT]),
            "lost_events": int(hdr[_LOST_EVENTS]),
            "recoveries": int(hdr[_RECOVERIES]),
            "last_t_capture_ns": int(hdr[_LAST_T_NS]),
        }

    def note_read(self, t_capture_ns: int, fps: float) -> None:
        self._header[_READ] += 1
        self._header[_LAST_T_NS] = t_capture_ns
        self._header[_FPS_MILLI] = round(fps * 1000)

    def set_fps(self, fps: float) -> None:
        self._header[_FPS_MILLI] = round(fps * 1000)

    @property
    def fps(self) -> float:
        return float(self._header[_FPS_MILLI]) / 1000.0

    def set_state(self, state: str) -> None:
        code = STATES.index(state)
        if state == "lost" and self._header[_STATE] != code:
            self._header[_LOST_EVENTS] += 1
        if state == "running" and self._header[_STATE] == STATES.index("lost"):
            self._header[_RECOVERIES] += 1
        self._header[_STATE] = code

    @property
    def state(self) -> str:
        return STATES[int(self._header[_STATE])]

    def write_status(self, status: dict[str, Any]) -> None:
        """Store a small JSON status (source info, errors); too long strings are cut to keep it JSON."""
        data = json.dumps(status, default=str).encode()
        if len(data) > _TEXT_BYTES:
            status = {k: (str(v)[:1000] if isinstance(v, str) else v) for k, v in status.items()}
            data = json.dumps(status, default=str).encode()[:_TEXT_BYTES]
        if not self._acquire(time.monotonic() + 1.0):
            return
        try:
            self._text[: len(data)] = np.frombuffer(data, np.uint8)
            self._header[_TEXT_LEN] = len(data)
        finally:
            self._lock.release()

    def read_status(self) -> dict[str, Any]:
        """The last status written (the previous one read if the lock is not available now)."""
        if not self._acquire(time.monotonic() + 0.2):
            return dict(self._last_status)
        try:
            n = int(self._header[_TEXT_LEN])
            data = self._text[:n].tobytes()
        finally:
            self._lock.release()
        with contextlib.suppress(json.JSONDecodeError):  # never half-written: the lock orders it
            self._last_status = json.loads(data) if n else {}
        return dict(self._last_status)

    # -- lifetime -----------------------------------------------------------------------------
    def release(self) -> None:
        """Detach from the shared memory (and free it when this process created it)."""
        shm = self._shm
        if shm is None:
            return
        del self._header, self._meta, self._text, self._data
        shm.close()
        if self._owner:
            shm.unlink()
        self._shm = None


# ---------------------------------------------------------------------------------------------
# Benchmark: python -m stream.framebuffer [--frames N] [--fps F] [--hw 480 640]
# ---------------------------------------------------------------------------------------------
def _bench_producer(ring: FrameRing, n: int, hw: tuple[int, int], fps: float | None, lossless: bool) -> None:
    image = np.random.default_rng(0).integers(0, 255, hw, dtype=np.uint8)
    roi = (0, 0, hw[1], hw[0])
    period_ns = int(1e9 / fps) if fps else 0
    t_next = time.monotonic_ns()
    try:
        for seq in range(n):
            if period_ns:
                t_next += period_ns
                while time.monotonic_ns() < t_next:
                    time.sleep(max(0.0, (t_next - time.monotonic_ns()) / 1e9 - 0.0005))
            if not ring.put(image, seq, time.monotonic_ns(), roi, hw, lossless=lossless):
                break
        ring.close()
    finally:
        ring.release()


def benchmark(n: int = 2000, hw: tuple[int, int] = (480, 640), fps: float = 100.0, capacity: int = 8) -> dict:
    """Capture→get latency at ``fps`` (paced producer, blocking consumer) and the maximum
    lossless frames/s, both across two real processes."""
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {"hw": list(hw), "capacity": capacity}
    for mode in ("latency", "throughput"):
        ring = FrameRing(capacity, hw, "bench", ctx=ctx)
        proc = ctx.Process(
            target=_bench_producer,
            args=(ring, n, hw, fps if mode == "latency" else None, mode == "throughput"),
        )
        proc.start()
        lat: list[int] = []
        t_first: int | None = None
        count = 0
        while True:
            frame = ring.get(timeout=10.0)
            if frame is None:
                break
            now = time.monotonic_ns()
            t_first = t_first or now
            lat.append(now - frame.t_capture_ns)
            count += 1
        t_last = time.monotonic_ns()
        proc.join()
        dropped = ring.counters()["dropped"]
        ring.release()
        if mode == "latency":
            us = np.array(lat) / 1e3
            out["latency_us"] = {
                "p50": float(np.percentile(us, 50)),
                "p99": float(np.percentile(us, 99)),
                "max": float(us.max()),
                "fps": fps,
                "frames": count,
                "dropped": dropped,
            }
        else:
            span_s = (t_last - t_first) / 1e9 if t_first is not None else 0.0
            out["throughput_fps"] = (count - 1) / span_s if count > 1 else 0.0
            out["throughput_mb_s"] = out["throughput_fps"] * hw[0] * hw[1] / 1e6
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Benchmark the capture→lanes frame ring (two processes).")
    parser.add_argument("--frames", type=int, default=2000, help="frames per measurement (default 2000)")
    parser.add_argument(
        "--fps", type=float, default=100.0, help="producer rate for the latency run (default 100)"
    )
    parser.add_argument(
        "--hw", type=int, nargs=2, default=(480, 640), help="frame height width (default 480 640)"
    )
    parser.add_argument("--capacity", type=int, default=8, help="ring slots (default 8)")
    a = parser.parse_args()
    print(json.dumps(benchmark(a.frames, tuple(a.hw), a.fps, a.capacity), indent=2))
