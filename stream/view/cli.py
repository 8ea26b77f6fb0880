"""``lus-view``: subscribe to one or more engines and show, record or print the overlay.

    lus-view                                         # window on tcp://127.0.0.1:5555 (if a display answers)
    lus-view --out overlay.mp4 --duration 20         # headless: H.264 video of the overlay (PyAV)
    lus-view --snapshot-every 30 snaps/              # one PNG every 30 rendered frames
    lus-view --print                                 # one text line per message
    lus-view --connect tcp://10.0.0.5:5555 --client-key keys/client.key_secret --server-key keys/server.key

Pictures come from the engine's ``image`` topic (``lus-stream --publish-frames``) or from ``--frames-from``
(a local clip/camera, or ``synthetic[:SEED]``); without either, the overlay is drawn on black at the
source frame's size. The loop drains every socket each tick and renders only the newest state, so the viewer
never lags behind the engine: what it cannot draw it drops.

The window (``stream.view.window``) is drawn with the standard library's tkinter by default, or with OpenCV
highgui where OpenCV has a GUI (``--window-backend``). ``q``, ``Escape`` and the window's close button quit
with status 0. A missing or dead display never crashes the viewer: ``--window yes`` exits 2 with a one-line
reason, ``--window auto`` warns and carries on without a window.
"""

from __future__ import annotations

import argparse
import fractions
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import zmq

from stream.view.overlay import Style, render
from stream.view.subscriber import Received, StreamView, describe
from stream.view.window import BACKENDS, KEYS, Window, WindowError, check_display, choose_backend, open_window

log = logging.getLogger("lus-view")
DEFAULT_CONNECT = "tcp://127.0.0.1:5555"
WINDOW_PREFIX = "lus-view "
WINDOW_EVENTS_MS = 20  # longest wait between two rounds of window events


# ---------------------------------------------------------------------------- outputs
class VideoOut:
    """H.264 MP4 through PyAV, variable frame rate (pts = wall-clock ms since the first frame)."""

    x264_options: ClassVar[dict[str, str]] = {"preset": "veryfast", "tune": "zerolatency", "crf": "23",
                                              "threads": "2"}

    def __init__(self, path: str | os.PathLike, fps: float = 30.0) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._av = av
        self._container = av.open(str(self.path), "w")
        self._fps = fps
        self._stream: Any = None
        self._t0: float | None = None
        self._last_pts = -1
        self.frames = 0

    def write(self, bgr: np.ndarray, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        if self._stream is None:
            h, w = bgr.shape[:2]
            self._size = (w - w % 2, h - h % 2)
            codec = "libx264" if "libx264" in self._av.codecs_available else "h264"
            self._stream = self._container.add_stream(codec, rate=round(self._fps))
            self._stream.width, self._stream.height = self._size
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":  # the default preset costs ~30 ms/frame here; this keeps up with 30 fps
                self._stream.options = dict(self.x264_options)
            self._stream.codec_context.time_base = fractions.Fraction(1, 1000)
            self._t0 = t
        if (bgr.shape[1], bgr.shape[0]) != self._size:
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        t0 = t if self._t0 is None else self._t0
        pts = max(round((t - t0) * 1000), self._last_pts + 1)
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts, frame.time_base = pts, fractions.Fraction(1, 1000)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()


class LocalFrames:
    """Local pictures: a clip or camera (OpenCV) or the simulator, paced in real time, newest only."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._sim = None
        self._cap = None
        if spec.startswith("synthetic"):
            from synth import LiveSimulator

            seed = int(spec.split(":", 1)[1]) if ":" in spec else 0
            self._sim = LiveSimulator(seed=seed)
            self.fps = 30.0
        else:
            self._cap = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
            if not self._cap.isOpened():
                raise SystemExit(f"lus-view: --frames-from {spec!r} cannot be opened (a video file, a camera "
                                 f"index or synthetic[:SEED])")
            self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 30.0) or 30.0
        self._t0 = time.monotonic()
        self._read = 0
        self.image: np.ndarray | None = None

    def newest(self) -> np.ndarray | None:
        due = int((time.monotonic() - self._t0) * self.fps) + 1
        while self._read < due:
            self._read += 1
            if self._sim is not None:
                img = self._sim.next()[0]
            elif self._cap is not None:
                ok, img = self._cap.read()
                if not ok:  # end of the clip: keep the last picture
                    self._read = due
                    break
            self.image = img
        return self.image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


# ---------------------------------------------------------------------------- drawing one view
def draw_view(view: StreamView, style: Style, local: LocalFrames | None, min_height: int,
              render_fps: float | None = None) -> np.ndarray:
    image, rect, seq = None, None, None
    if local is not None:
        image = local.newest()
    else:
        got = view.current_image()
        if got is not None:
            image, rect, seq = got
    scene = view.scene(seq)
    scene.render_fps = render_fps
    blank = (480, 640)
    if image is None and scene.frame is not None:
        blank = tuple(scene.frame["source_hw"])
    return render(image, scene, rect, style, blank_hw=blank, min_height=min_height)


def tile(canvases: list[np.ndarray]) -> np.ndarray:
    if len(canvases) == 1:
        return canvases[0]
    h = max(c.shape[0] for c in canvases)
    return np.hstack([c if c.shape[0] == h else cv2.resize(c, (round(c.shape[1] * h / c.shape[0]), h))
                      for c in canvases])


def setup_window(mode: str, backend: str, title: str) -> tuple[Window | None, int | None, bool]:
    """The window for ``--window`` ``mode`` and ``--window-backend`` ``backend``.

    Returns (window or None, exit status or None, whether a warning was printed): (window, None, False);
    (None, None, warned) to go on without a window; (None, 2, True) when ``--window yes`` cannot be
    honoured. Nothing here can crash: the display is checked with a plain socket before any toolkit is
    loaded, and the toolkit's own refusal is caught. Every refusal is one line on stderr."""
    if mode == "no":
        return None, None, False

    def refuse(message: str) -> tuple[None, int | None, bool]:
        if mode == "yes":
            print(message, file=sys.stderr)
            return None, 2, True
        print(f"{message.rstrip('.')}. Continuing without a window.", file=sys.stderr)
        return None, None, True

    try:
        chosen = choose_backend(backend)
    except WindowError as err:
        if mode == "auto" and check_display(backend if backend != "auto" else "tk").state == "none":
            return None, None, False  # a server without any display: headless, as expected
        return refuse(str(err))
    display = check_display(chosen)
    if display.state == "none" and mode == "auto":
        return None, None, False
    if not display.ok:
        return refuse(display.message())
    try:
        return open_window(chosen, title), None, False
    except WindowError as err:
        return refuse(str(err))


# ---------------------------------------------------------------------------- main loop
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help; the epilog's lines kept as written."""


EPILOG = "window keys:\n" + "".join(f"  {key:14s} {what}\n" for key, what in KEYS) + """\
  (Ctrl+C in the terminal stops the viewer too)

--window yes exits 2 with a one-line reason when no window can be opened (no DISPLAY, no X server
answering on it, no window toolkit); --window auto then warns and goes on without a window."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lus-view", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=_HelpFormatter)
    p.add_argument("--connect", action="append", metavar="ENDPOINT",
                   help=f"engine PUB endpoint; repeat for one view per stream (default {DEFAULT_CONNECT})")
    p.add_argument("--client-key", help="CURVE: this viewer's secret key file (client.key_secret)")
    p.add_argument("--server-key", help="CURVE: the engine's public key file (server.key)")
    p.add_argument("--frames-from", metavar="SOURCE",
                   help="draw on local pictures (video file, camera index, synthetic[:SEED]) instead of the "
                        "engine's image topic")
    p.add_argument("--out", metavar="MP4", help="write the overlay as an H.264 video (PyAV)")
    p.add_argument("--snapshot-every", nargs=2, metavar=("N", "DIR"),
                   help="write every N-th rendered overlay as a PNG into DIR")
    p.add_argument("--print", action="store_true", help="print one line per received message")
    p.add_argument("--window", choices=("auto", "yes", "no"), default="auto",
                   help="on-screen window: auto = when a display answers and a window toolkit exists; yes = "
                        "exit 2 when it cannot be opened")
    p.add_argument("--window-backend", choices=BACKENDS, default="auto",
                   help="window toolkit: tk (standard library tkinter; Debian/Ubuntu: apt install "
                        "python3-tk), opencv (highgui; needs an OpenCV build with a GUI), auto = tk when "
                        "tkinter imports, else opencv")
    p.add_argument("--uncertainty", action="store_true", help="draw the MC-dropout uncertainty heat map")
    p.add_argument("--fill", type=float, default=0.0, metavar="ALPHA", help="tint segmentation regions")
    p.add_argument("--no-boxes", action="store_true", help="do not draw the STN crop boxes")
    p.add_argument("--max-fps", type=float, default=30.0, help="render at most this often")
    p.add_argument("--min-height", type=int, default=540, help="scale smaller pictures up to this height")
    p.add_argument("--stale-after", type=float, default=1.0, help="seconds without a message → STALE")
    p.add_argument("--disconnect-after", type=float, default=3.0,
                   help="seconds without a status message → DISCONNECTED")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--exit-on-disconnect", action="store_true",
                   help="stop when every engine has disconnected (after having sent something)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    endpoints = args.connect or [DEFAULT_CONNECT]
    if bool(args.client_key) != bool(args.server_key):
        print("lus-view: CURVE needs both --client-key and --server-key", file=sys.stderr)
        return 2
    window, refused, warned = setup_window(args.window, args.window_backend,
                                           WINDOW_PREFIX + ", ".join(endpoints))
    if refused is not None:
        return refused
    snapshot_n, snapshot_dir = (int(args.snapshot_every[0]), Path(args.snapshot_every[1])) \
        if args.snapshot_every else (0, None)
    if snapshot_dir is not None:
        snapshot_dir.mkdir(parents=True, exist_ok=True)
    rendering = window is not None or bool(args.out) or snapshot_n > 0
    printing = args.print or not rendering
    if not rendering and not args.print and not warned:
        print("lus-view: no display: printing messages (use --out or --snapshot-every for pictures)",
              file=sys.stderr)

    ctx = zmq.Context()
    try:
        views = [StreamView(ep, ctx, args.client_key, args.server_key, args.stale_after,
                            args.disconnect_after) for ep in endpoints]
    except Exception as err:
        print(f"lus-view: {err}", file=sys.stderr)
        ctx.term()
        if window is not None:
            window.close()
        return 2
    local = LocalFrames(args.frames_from) if args.frames_from else None
    style = Style(show_boxes=not args.no_boxes, show_uncertainty=args.uncertainty, fill_alpha=args.fill)
    video = VideoOut(args.out, args.max_fps) if args.out else None
    poller = zmq.Poller()
    for v in views:
        poller.register(v.sock, zmq.POLLIN)

    stop = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def on_message(view: StreamView, rec: Received | None) -> None:
        prefix = f"[{view.endpoint}] " if len(views) > 1 else ""
        if rec is None:
            print(f"{prefix}ERROR {view.errors[-1][1]}", flush=True)
        else:
            print(prefix + describe(rec.topic, rec.msg), flush=True)

    t_start = time.monotonic()
    period = 1.0 / max(args.max_fps, 0.1)
    next_render, last_render, rendered = t_start, 0.0, 0
    fps_t, fps_n, render_fps = t_start, 0, None
    dirty = True
    try:
        while not stop["flag"]:
            now = time.monotonic()
            if rendering:  # wake for the next render: at once when dirty, else when the banners tick
                wake = next_render if dirty or local is not None else max(next_render, last_render + 0.25)
                timeout_ms = max(0, math.ceil((wake - now) * 1000))
                if window is not None:
                    timeout_ms = min(timeout_ms, WINDOW_EVENTS_MS)  # keys and the close button stay prompt
            else:
                timeout_ms = 100
            poller.poll(timeout_ms)
            if window is not None and not window.pump():
                break  # q, Escape or the close button
            for v in views:
                if v.poll(on_message if printing else None):
                    dirty = True
            now = time.monotonic()
            if args.duration is not None and now - t_start >= args.duration:
                break
            if args.exit_on_disconnect and all(v.link_state(now) == "disconnected" for v in views):
                break
            if not rendering or now < next_render:
                continue
            if not dirty and local is None and now - last_render < 0.25:  # banners still tick at 4 Hz
                continue
            canvas = tile([draw_view(v, style, local, args.min_height, render_fps) for v in views])
            dirty, last_render, next_render = False, now, now + period
            rendered += 1
            fps_n += 1
            if now - fps_t >= 1.0:
                render_fps, fps_t, fps_n = fps_n / (now - fps_t), now, 0
            if video is not None:
                video.write(canvas, now)
            if snapshot_dir is not None and rendered % snapshot_n == 0:
                cv2.imwrite(str(snapshot_dir / f"overlay_{rendered:06d}.png"), canvas)
            if window is not None and not window.show(canvas):
                break
    finally:
        if video is not None:
            video.close()
        if local is not None:
            local.close()
        for v in views:
            v.close()
        ctx.term()
        if window is not None:
            window.close()
    errors = sum(v.n_errors for v in views)
    counts = {k: sum(v.counts.get(k, 0) for v in views) for k in ("frame", "video", "seg", "status", "exam")}
    log.info("received %s, %d bad message(s) skipped, %d overlays rendered", counts, errors, rendered)
    if video is not None:
        print(f"lus-view: wrote {video.frames} frames to {video.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
