"""The capture process: reads a source in its own OS process, stamps every frame (``seq``,
``t_capture_ns``) the moment it is read, crops it to the ultrasound region and puts it in the
bounded shared-memory ring (:mod:`stream.framebuffer`) that the inference lanes read.

Policies (the source → prepare connection of ``stream.pipeline.compose``; docs/capture.md):
- capture never waits for inference: live sources (device, rtsp, synthetic) and paced playback
  of files drop the OLDEST buffered frame when the ring is full, and count it;
- ``as_fast_as_possible`` on a source that is not real-time by itself (clip, folder, DICOM,
  synthetic) is lossless: the reader waits for a free slot, so every decoded frame reaches the lanes;
- with ``roi="auto"``, frames read before the ultrasound region is first found (a grabber's
  start-up or menu screen) are held back, counted in ``roi_search``, and leave a gap in ``seq``;
  after ``ROI_SEARCH_MAX_FRAMES`` of them in a row the whole frame is used (with a warning);
- a live source that fails mid-stream (read error, or no frame for ``lost_after_periods`` frame
  periods) is reported ``state="lost"``, re-opened with exponential backoff, and marked
  ``running`` again when frames come back; the process never exits on its own;
- a truncated or corrupt file is decoded as far as it goes; then ``exit_error`` says where it
  stopped (the CLI exits non-zero).

The process is started with the ``spawn`` method: the parent (the engine) holds ONNX Runtime and
ZeroMQ threads, and forking a process that has threads can deadlock the child on a lock some
thread held at fork time. Spawn costs about a second once per stream; see docs/capture.md.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from stream.framebuffer import FrameRing
from stream.frames import Frame
from stream.roi import RoiTracker
from stream.sources import (
    ClipSource,
    DeviceSource,
    DicomSource,
    FolderSource,
    Source,
    SourceDecodeError,
    SourceOpenError,
    SourceReadError,
    SyntheticSource,
)

SourceKind = Literal["device", "clip", "folder", "dicom", "url", "synthetic"]
KINDS = ("device", "clip", "folder", "dicom", "url", "synthetic")
ROI_SEARCH_MAX_FRAMES = 45  # frames held back while no ultrasound region is found (~1.5 s at 30 fps)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    """What to capture and how.

    kind: ``device`` (``path`` = /dev/videoN or N), ``clip`` (a video file), ``folder`` (images),
        ``dicom`` (a cine loop), ``url`` (rtsp/http/file URL via PyAV), ``synthetic`` (simulator).
    fps: frame rate to request (device), to play at (folder; synthetic), or to override the file's.
    loop: restart a finite source at its end (clip, folder, DICOM).
    as_fast_as_possible: no pacing, lossless (files, synthetic); ignored for device and rtsp.
    roi: ``"auto"`` (detect the ultrasound region, re-detect on geometry change), ``"off"`` (whole
        frame) or a fixed ``(x, y, w, h)``; None = ``"off"`` for synthetic, ``"auto"`` otherwise.
    width/height: the size to request from a device (the synthetic frame size).
    fourcc: the pixel format to request from a device (e.g. ``"MJPG"``; default: the driver's).
    seed, probe, schedule: synthetic source settings (``synth.LiveSimulator``).
    lost_after_periods: a live source with no frame for this many frame periods (at least
        ``lost_after_min_s``) is ``lost``.
    retry_backoff_s: (first, max) wait between re-open attempts of a lost live source.
    outage: ``(after_frames, seconds, "error"|"stall")`` scripted outage for tests and demos.
    max_frame_hw: largest (cropped) frame the ring's slots hold.
    """

    kind: SourceKind
    path: str | None = None
    fps: float | None = None
    loop: bool = False
    as_fast_as_possible: bool = False
    roi: str | tuple[int, int, int, int] | None = None
    width: int | None = None
    height: int | None = None
    fourcc: str | None = None
    seed: int = 0
    probe: str = "convex"
    schedule: list[tuple[int, int]] | None = None
    lost_after_periods: float = 10.0
    lost_after_min_s: float = 0.5
    retry_backoff_s: tuple[float, float] = (0.1, 2.0)
    outage: tuple[int, float, str] | None = None
    max_frame_hw: tuple[int, int] = (1200, 1920)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"SourceSpec.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind != "synthetic" and not self.path:
            raise ValueError(f"SourceSpec(kind={self.kind!r}) needs path= (the device, file, folder or URL)")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"SourceSpec.fps must be positive, got {self.fps}")

    @property
    def roi_mode(self) -> str | tuple[int, int, int, int]:
        if self.roi is None:
            return "off" if self.kind == "synthetic" else "auto"
        return self.roi

    @property
    def source_id(self) -> str:
        return make_source(self).source_id


def make_source(spec: SourceSpec) -> Source:
    """The :class:`~stream.sources.Source` for a spec (not opened)."""
    source: Source
    if spec.kind == "device":
        dev: str | int = int(str(spec.path)) if str(spec.path).isdigit() else str(spec.path)
        source = DeviceSource(dev, width=spec.width, height=spec.height, fps=spec.fps, fourcc=spec.fourcc)
    elif spec.kind in ("clip", "url"):
        source = ClipSource(str(spec.path), fps=spec.fps)
    elif spec.kind == "folder":
        source = FolderSource(str(spec.path), fps=spec.fps or 30.0)
    elif spec.kind == "dicom":
        source = DicomSource(str(spec.path), fps=spec.fps)
    else:
        source = SyntheticSource(
            seed=spec.seed,
            fps=spec.fps or 30.0,
            probe=spec.probe,
            schedule=spec.schedule,
            height=spec.height or 480,
            width=spec.width or 640,
        )
    if spec.outage is not None:
        from stream.faults import OutageSource

        after, seconds, *mode = spec.outage
        source = OutageSource(source, int(after), float(seconds), mode[0] if mode else "error")
    return source


# ---------------------------------------------------------------------------------------------
# The loop that runs inside the capture process
# ---------------------------------------------------------------------------------------------
RETRY = object()  # read_next: a live source was re-opened, read again
END = object()  # read_next: stop reading (an error in exit_error, or a stop request)


class Pacer:
    """Plays a source that is not real-time by itself (clip, folder, DICOM, simulator) at its media
    clock: each frame is due at ``anchor_wall + (t_media − anchor_media)``.

    Re-anchors at the first frame, when the media time goes back (a loop restart) or jumps by more than
    5 s, after a reconnect (:meth:`reset`), and when it has fallen behind by more than
    ``max(0.25 s, 3 periods)`` (slow decode, an outage): it then plays on from now instead of racing
    to catch up. Frames without a media time are spaced one period apart (30 fps if unknown).
    """

    JUMP_S = 5.0

    def __init__(self, period: float | None, sleep: Callable[[float], bool]) -> None:
        self.period = period
        self._sleep = sleep
        self.reset()

    def reset(self) -> None:
        self.anchor: tuple[float, float] | None = None  # (monotonic s, media s)
        self.last_media = -1.0
        self.n_since_anchor = 0

    def wait(self, t_media: float | None) -> bool:
        """Sleep until the frame is due; False if a stop was requested meanwhile."""
        if t_media is None:
            t_media = self.n_since_anchor * (self.period or 1 / 30)
        now = time.monotonic()
        if self.anchor is None or t_media <= self.last_media or t_media - self.last_media > self.JUMP_S:
            self.anchor = (now, t_media)
            self.n_since_anchor = 0
        due = self.anchor[0] + (t_media - self.anchor[1])
        if due > now and not self._sleep(due - now):
            return False
        if now - due > max(0.25, 3 * (self.period or 0.0)):
            self.anchor = (now, t_media)
        self.last_media = t_media
        self.n_since_anchor += 1
        return True


class _Capture:
    def __init__(self, spec: SourceSpec, ring: FrameRing) -> None:
        self.spec = spec
        self.ring = ring
        self.source = make_source(spec)
        self.tracker = RoiTracker(spec.roi_mode)
        self.status: dict[str, Any] = {
            "info": None, "error": None, "exit_error": None, "roi": None, "roi_search": 0,
        }  # fmt: skip
        self.roi_wait = 0  # frames held back in a row while no ultrasound region is found
        self.last_frame = time.monotonic()
        self.times: collections.deque[int] = collections.deque(maxlen=64)
        self.period: float | None = None
        self.exit_error: str | None = None  # why reading ended with an error (read_next sets it)

    def publish_status(self, **changes: Any) -> None:
        self.status.update(changes)
        self.ring.write_status(self.status)

    def sleep(self, seconds: float) -> bool:
        """Sleep unless a stop is requested; True if it slept the whole time."""
        end = time.monotonic() + seconds
        while not self.ring.stop_requested:
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False

    def watchdog(self) -> None:
        """Live sources: no frame for N frame periods → state ``lost`` (a read may block for long)."""
        limit = max(self.spec.lost_after_min_s, self.spec.lost_after_periods * (self.period or 0.1))
        while not self.ring.stop_requested and not self.ring.closed:
            if self.ring.state == "running" and time.monotonic() - self.last_frame > limit:
                self.ring.set_state("lost")
                self.publish_status(
                    error=f"no frame for {limit:.2f} s (limit: {self.spec.lost_after_periods} frame periods)"
                )
            time.sleep(min(0.05, limit / 4))

    def reconnect(self, why: str) -> bool:
        """Re-open a lost live source with exponential backoff; False if stopped meanwhile."""
        self.ring.set_state("lost")
        self.publish_status(error=why)
        self.source.close()
        backoff, backoff_max = self.spec.retry_backoff_s
        attempts = 0
        while self.sleep(backoff):
            attempts += 1
            try:
                info = self.source.open()
            except SourceOpenError as exc:
                self.publish_status(error=f"{why}; re-open attempt {attempts} failed: {exc}")
                backoff = min(backoff * 2, backoff_max)
                continue
            if info:
                self.publish_status(info=info)
            return True
        return False

    def run(self) -> None:
        """Open, then read → (pace) → crop → ring until the source ends, fails or a stop is asked."""
        ring, spec = self.ring, self.spec
        ring.set_state("starting")
        try:
            info = self.source.open()
        except SourceOpenError as exc:
            self.publish_status(error=str(exc), exit_error=str(exc))  # the reason first: whoever sees
            ring.set_state("failed")  # "failed" can read why
            ring.close()
            return
        fps = self.source.nominal_fps
        self.period = 1.0 / fps if fps else None
        self.publish_status(info=info)
        live = self.source.live
        lossless = spec.as_fast_as_possible and not self.source.self_paced
        paced = not spec.as_fast_as_possible and not self.source.self_paced
        if live and not lossless:  # a lossless reader waits for the lanes: that is not a lost source
            threading.Thread(target=self.watchdog, name="capture-watchdog", daemon=True).start()
        pacer = Pacer(self.period, self.sleep) if paced else None
        seq = 0
        self.exit_error = None
        try:
            while not ring.stop_requested:
                item = self.read_next(live)
                if item is RETRY:
                    if pacer is not None:
                        pacer.reset()
                    continue
                if item is END:
                    break
                if item is None:  # end of the source
                    if spec.loop and self.source.finite:
                        self.source.rewind()
                        continue
                    break
                image, t_media = item
                if pacer is not None and not pacer.wait(t_media):
                    break
                delivered = self.deliver(image, seq, lossless)
                if delivered is None:
                    break
                seq = delivered
        except Exception as exc:  # an unexpected bug: report it instead of dying silently
            self.exit_error = f"capture crashed: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        finally:
            self.source.shutdown()
            if self.exit_error:
                self.publish_status(exit_error=self.exit_error, error=self.exit_error)
                ring.set_state("failed")
            else:
                ring.set_state("stopped" if ring.stop_requested else "finished")
            ring.close()

    def read_next(self, live: bool) -> Any:
        """One read, its errors classified: the frame ``(image, t_media)``, ``None`` at the source's end,
        :data:`RETRY` after a live source was re-opened, or :data:`END` (``self.exit_error`` says why, or
        a stop came during the reconnect). A file's read or decode error ends it; a live source's read
        error or driver exception reconnects with backoff."""
        try:
            return self.source.read()
        except SourceReadError as exc:
            why = str(exc)
            if not live:
                self.exit_error = why
                return END
        except SourceDecodeError as exc:
            self.exit_error = str(exc)
            return END
        except Exception as exc:  # a driver/library error: a live source retries, a file ends
            why = f"read failed: {type(exc).__name__}: {exc}"
            if not live:
                self.exit_error = why
                return END
        return RETRY if self.reconnect(why) else END

    def deliver(self, image: np.ndarray, seq: int, lossless: bool) -> int | None:
        """Stamp, grey, track the ROI and put the crop into the ring; the next ``seq`` (a held-back
        frame still takes a number: a gap in ``seq`` = frames not scored), or None if the ring closed."""
        ring = self.ring
        t_ns = time.monotonic_ns()
        self.last_frame = time.monotonic()
        if ring.state != "running":
            ring.set_state("running")
            if self.status["error"] and self.source.live:
                self.publish_status(error=None)
        gray = _to_gray(image)
        roi, changed = self.tracker.update(gray)
        self.times.append(t_ns)
        ring.note_read(t_ns, self._fps())
        if self.hold_back(self.tracker.located):
            return seq + 1
        if changed or self.status["roi"] is None:  # (a held-back start may hide the change)
            self.publish_status(roi=list(roi))
        x, y, w, h = roi
        if not ring.put(gray[y : y + h, x : x + w], seq, t_ns, roi, gray.shape, lossless=lossless):
            return None
        return seq + 1

    def hold_back(self, located: bool) -> bool:
        """True for a frame taken before the ultrasound region was found (``roi="auto"``): a
        frame grabber's start-up or menu screen must not be scored into the clip. After
        ``ROI_SEARCH_MAX_FRAMES`` such frames in a row the whole frame is used, with a warning."""
        if located:
            self.roi_wait = 0
            return False
        if self.roi_wait >= ROI_SEARCH_MAX_FRAMES:
            return False
        self.roi_wait += 1
        if self.roi_wait == ROI_SEARCH_MAX_FRAMES:
            log.warning(
                "%s: no ultrasound region found in %d frames; scoring the whole frame "
                "(pass --roi X,Y,W,H for this scanner's layout, or --roi off)",
                self.spec.path or self.spec.kind, ROI_SEARCH_MAX_FRAMES,
            )
        self.publish_status(roi_search=int(self.status["roi_search"]) + 1)
        return True

    def _fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = (self.times[-1] - self.times[0]) / 1e9
        return (len(self.times) - 1) / span if span > 0 else 0.0


def _to_gray(image: np.ndarray) -> np.ndarray:
    from engines.preprocess import to_gray

    return to_gray(image)


def _watch_parent(ring: FrameRing, done: threading.Event) -> None:
    """Stop capturing when the engine process is gone (even after kill -9): no orphan holds the device."""
    parent = mp.parent_process()
    while parent is not None and not done.wait(0.25):
        if not parent.is_alive():
            ring.request_stop()
            return


def capture_main(spec: SourceSpec, ring: FrameRing) -> None:
    """Entry point of the capture process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the engine decides
    done = threading.Event()
    watch = threading.Thread(target=_watch_parent, args=(ring, done), name="parent-watch", daemon=True)
    watch.start()
    try:
        _Capture(spec, ring).run()
    finally:
        done.set()
        watch.join(1.0)
        ring.release()


# ---------------------------------------------------------------------------------------------
# The parent-side handle
# ---------------------------------------------------------------------------------------------
class CaptureProcess:
    """Run a source in its own process; take frames with :meth:`get` / :meth:`get_batch`.

    ``stats()`` → ``read`` (frames read), ``dropped`` (overwritten in the ring), ``state``
    (starting|running|lost|finished|failed|stopped), ``fps`` (measured input rate), ``error``
    (last error, also transient ones while ``lost``), plus ``queued``, ``delivered``,
    ``lost_events``, ``recoveries``, ``source`` (what was opened: size, rate, backend) and ``roi``.
    """

    def __init__(self, spec: SourceSpec, capacity: int = 8, start_method: str = "spawn") -> None:
        self.spec = spec
        self.capacity = capacity
        self.source_id = spec.source_id
        self._ctx: Any = mp.get_context(start_method)  # SpawnContext (typeshed types it as BaseContext)
        self._ring: FrameRing | None = None
        self._proc: Any = None
        self._final_stats: dict[str, Any] | None = None

    def start(self) -> CaptureProcess:
        if self._proc is not None:
            raise RuntimeError("CaptureProcess.start() called twice")
        self._ring = FrameRing(self.capacity, self.spec.max_frame_hw, self.source_id, ctx=self._ctx)
        self._proc = self._ctx.Process(
            target=capture_main, args=(self.spec, self._ring), name=f"capture:{self.source_id}", daemon=True
        )
        self._proc.start()
        return self

    def __enter__(self) -> CaptureProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest buffered frame (None on timeout, or at once once the source ended and all frames
        were taken)."""
        frames = self.get_batch(1, timeout)
        return frames[0] if frames else None

    def get_batch(self, max_n: int, timeout: float | None = None) -> list[Frame]:
        """Wait up to ``timeout`` for one frame, then take up to ``max_n`` that are waiting (oldest first)."""
        ring = self._require_ring()
        if timeout is None:  # wait in slices so that a dead capture process cannot hang the caller
            while True:
                frames = ring.get_batch(max_n, 0.2)
                if frames or self.finished:
                    return frames
        return ring.get_batch(max_n, timeout)

    def _require_ring(self) -> FrameRing:
        if self._ring is None:
            raise RuntimeError("CaptureProcess is not running: call start() first (or it was stopped)")
        return self._ring

    @property
    def finished(self) -> bool:
        """The source ended (or failed, or the process died) and every buffered frame was taken."""
        if self._ring is None:
            return self._final_stats is not None
        dead = self._proc is not None and not self._proc.is_alive()
        if not (self._ring.closed or dead):
            return False
        # frames left behind by a process that died holding the lock cannot be taken any more
        return len(self._ring) == 0 or (dead and not self._ring.lock_usable())

    @property
    def exit_error(self) -> str | None:
        """Why the source ended abnormally (truncated clip, device missing at start, crash), else None."""
        stats = self.stats()
        return stats["exit_error"]

    def stats(self) -> dict[str, Any]:
        if self._ring is None:
            if self._final_stats is None:
                raise RuntimeError("CaptureProcess was never started")
            return dict(self._final_stats)
        ring = self._ring
        status = ring.read_status()
        counters = ring.counters()
        exit_error = status.get("exit_error")
        state = ring.state
        if exit_error is None and self._proc is not None and not self._proc.is_alive() and not ring.closed:
            exit_error = f"capture process died with exit code {self._proc.exitcode}"
            state = "failed"
        return {
            "read": counters["read"],
            "dropped": counters["dropped"],
            "state": state,
            "fps": 0.0 if state == "lost" else ring.fps,
            "error": status.get("error"),
            "exit_error": exit_error,
            "queued": counters["queued"],
            "delivered": counters["taken"],
            "lost_events": counters["lost_events"],
            "recoveries": counters["recoveries"],
            "last_t_capture_ns": counters["last_t_capture_ns"],
            "source": status.get("info"),
            "roi": status.get("roi"),
            "roi_search": int(status.get("roi_search") or 0),
            "source_id": self.source_id,
            "capacity": self.capacity,
        }

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the capture process (frames still buffered are discarded) and free the ring."""
        if self._ring is None:
            return
        self._ring.request_stop()
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(1.0)
        self._final_stats = self.stats()
        self._ring.release()
        self._ring = None


# ---------------------------------------------------------------------------------------------
# A bedside check: python -m stream.capture --device /dev/video0 --seconds 5 --snapshot roi.png
# ---------------------------------------------------------------------------------------------
def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(
        prog="python -m stream.capture",
        description="Open a source in the capture process, print what was opened and one stats line per "
        "second, and optionally save the last frame with its ROI (setting up a frame grabber).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    for kind in ("device", "clip", "folder", "dicom", "url"):
        src.add_argument(f"--{kind}", metavar="PATH")
    src.add_argument("--synthetic", action="store_true")
    p.add_argument("--fps", type=float, default=None, help="rate to request/play (default: the source's)")
    p.add_argument("--size", default=None, metavar="WxH", help="device size to request, e.g. 1920x1080")
    p.add_argument("--fourcc", default=None, help="device pixel format to request, e.g. MJPG")
    p.add_argument("--roi", default="auto", help="auto, off, or X,Y,W,H")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to watch")
    p.add_argument("--snapshot", default=None, metavar="PNG", help="save the last ROI crop here")
    a = p.parse_args(argv)
    kind = next(k for k in ("device", "clip", "folder", "dicom", "url", "synthetic") if getattr(a, k))
    roi: Any = a.roi if a.roi in ("auto", "off") else tuple(int(v) for v in a.roi.split(","))
    width, height = (int(v) for v in a.size.lower().split("x")) if a.size else (None, None)
    spec = SourceSpec(
        kind,  # type: ignore[arg-type]
        None if kind == "synthetic" else getattr(a, kind),
        fps=a.fps,
        roi=roi,
        width=width,
        height=height,
        fourcc=a.fourcc,
    )
    last = None
    with CaptureProcess(spec) as cap:
        t_end = time.monotonic() + a.seconds
        t_print = time.monotonic() + 1.0
        printed_source = False
        while time.monotonic() < t_end and not cap.finished:
            for frame in cap.get_batch(64, 0.1):
                last = frame
            st = cap.stats()
            if st["source"] and not printed_source:
                print("source:", json.dumps(st["source"]))
                printed_source = True
            if time.monotonic() >= t_print:
                t_print += 1.0
                print(
                    f"state={st['state']} read={st['read']} dropped={st['dropped']} fps={st['fps']:.1f} "
                    f"roi={st['roi']} error={st['error']}"
                )
        st = cap.stats()
    if a.snapshot and last is not None:
        import cv2

        cv2.imwrite(a.snapshot, last.image)
        print(
            f"saved seq {last.seq} ({last.image.shape[1]}x{last.image.shape[0]} ROI {last.roi} of "
            f"{last.source_hw[1]}x{last.source_hw[0]}) to {a.snapshot}"
        )
    if st["exit_error"]:
        print("error:", st["exit_error"])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
