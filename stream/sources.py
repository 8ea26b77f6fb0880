"""Frame sources for the capture process: V4L2 device, recorded clip or network stream (PyAV),
folder of images, DICOM multi-frame cine loop (pydicom) and the synthetic live simulator (the
scripted-outage wrapper for fault tests lives in :mod:`stream.faults`).

Every source has the same small interface, used only inside the capture process:

- ``open() -> dict``: open (or re-open) the source; returns facts about it (size, rate, backend);
  raises :class:`SourceOpenError` naming the source and what was tried.
- ``read() -> (image, t_media_s) | None``: the next frame (uint8 grey or BGR) and its media time in
  seconds (None when unknown); None at the end of a finite source. Raises :class:`SourceReadError`
  (transient: a live source retries) or :class:`SourceDecodeError` (a file is truncated or corrupt).
- ``rewind()`` (finite sources, for ``loop``), ``close()``.
- attributes ``source_id``, ``live`` (a lost source is retried, frames are never waited for),
  ``self_paced`` (frames arrive in real time by themselves: device, rtsp; the others are paced by
  the capture loop unless ``as_fast_as_possible``), ``finite`` (a file-like source that ends),
  ``nominal_fps``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
LIVE_URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtp", "udp", "srt", "tcp")


def redact_url(url: str) -> str:
    """The URL without credentials or query (they must not reach logs, status or the wire)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class SourceError(RuntimeError):
    """Base class of source errors."""


class SourceOpenError(SourceError):
    """The source cannot be opened; the message names it, what was tried, and the fix."""


class SourceReadError(SourceError):
    """A read failed (device unplugged, network stream broke); live sources retry."""


class SourceDecodeError(SourceError):
    """A file is truncated or corrupt; ``frame`` is the index of the first frame not decoded,
    ``byte`` the file offset where decoding stopped (None when unknown)."""

    def __init__(self, message: str, frame: int, byte: int | None) -> None:
        super().__init__(message)
        self.frame = frame
        self.byte = byte


class Source:
    """Interface (see the module docstring)."""

    source_id: str = ""
    live: bool = False
    self_paced: bool = False
    finite: bool = True
    nominal_fps: float | None = None

    def open(self) -> dict[str, Any]:
        raise NotImplementedError

    def read(self) -> tuple[np.ndarray, float | None] | None:
        raise NotImplementedError

    def rewind(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        pass

    def shutdown(self) -> None:
        """Release the source for good (the capture is ending): :meth:`close`, and for a wrapper whose
        ``close`` keeps its inner source open across a retry, that inner source too."""
        self.close()


# ---------------------------------------------------------------------------------------------
# Recorded clip or network stream (PyAV / FFmpeg)
# ---------------------------------------------------------------------------------------------
class ClipSource(Source):
    """Any container/codec FFmpeg decodes, from a file path or a URL (file://, http(s)://, rtsp://...).

    Decode errors in single packets are skipped (and remembered); demuxer errors end the clip. At
    the end of a file the source checks the decoded count against the container's frame count (or,
    when the container has none, its duration) and raises :class:`SourceDecodeError` saying where
    decoding stopped, after every decodable frame was delivered.
    """

    def __init__(self, path_or_url: str, fps: float | None = None, open_timeout_s: float = 10.0) -> None:
        self.target = str(path_or_url)
        scheme = self.target.split("://", 1)[0].lower() if "://" in self.target else ""
        self.is_url = bool(scheme)
        self.live = scheme in LIVE_URL_SCHEMES
        self.self_paced = self.live
        self.finite = not self.live
        self.shown = redact_url(self.target) if self.is_url else self.target  # for messages and status
        self.source_id = self.shown if self.is_url else Path(self.target).name
        self._fps_override = fps
        self._open_timeout_s = open_timeout_s
        self._container: Any = None
        self._frames: Iterator[tuple[np.ndarray, float | None]] | None = None
        self.decoded = 0
        self._last_time: float | None = None
        self.errors: list[str] = []
        self.first_error: tuple[int, int | None, str] | None = None
        self.info: dict[str, Any] = {}

    def open(self) -> dict[str, Any]:
        import av

        if not self.is_url and not Path(self.target).is_file():
            raise SourceOpenError(f"clip {self.shown!r} does not exist or is not a file: check the path")
        options = {}
        if self.live:
            options = {"flags": "low_delay"}  # (no "nobuffer": it discards what the probe read)
            if self.target.lower().startswith("rtsp"):
                options["rtsp_transport"] = "tcp"
        try:
            self._container = av.open(self.target, options=options, timeout=self._open_timeout_s)
        except (av.error.FFmpegError, OSError) as exc:
            why = str(exc).replace(self.target, self.shown)
            hint = (
                "check the address, that the stream is up, and the network"
                if self.is_url
                else "the file may be truncated before its header/index (e.g. an MP4 whose 'moov' atom "
                "is missing) or not a video"
            )
            raise SourceOpenError(
                f"cannot open {'stream' if self.is_url else 'clip'} {self.shown!r} with PyAV/FFmpeg "
                f"({type(exc).__name__}: {why}); {hint}"
            ) from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceOpenError(f"{self.shown!r} has no video stream (streams: {self._container.streams})")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = self._fps_override or (float(rate) if rate else None)
        self.nominal_fps = fps
        duration_s = None
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration_s = self._container.duration / 1e6
        self.info = {
            "kind": "url" if self.is_url else "clip",
            "target": self.shown,
            "container": self._container.format.name,
            "codec": stream.codec_context.name,
            "hw": [stream.height, stream.width],
            "fps": fps,
            "frames": int(stream.frames) or None,
            "duration_s": duration_s,
            "size_bytes": None if self.is_url else os.path.getsize(self.target),
        }
        self.decoded = 0
        self._last_time = None
        self.errors = []
        self.first_error = None
        self._frames = self._iter_frames(stream)
        return dict(self.info)

    def _iter_frames(self, stream: Any) -> Iterator[tuple[np.ndarray, float | None]]:
        import av

        last_pos: int | None = 0
        demux = self._container.demux(stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                why = str(exc).replace(self.target, self.shown)
                self._note_error(f"demuxer stopped: {why}", last_pos)
                if self.live:
                    raise SourceReadError(f"stream {self.shown!r} broke: {why}") from None
                break
            if packet.pos is not None and packet.pos >= 0:
                last_pos = packet.pos
            try:
                frames = packet.decode()  # an empty packet (size 0) flushes the decoder at the end
            except av.error.FFmpegError as exc:
                self._note_error(f"packet at byte {packet.pos} did not decode: {exc}", packet.pos)
                continue
            for frame in frames:
                image = frame.to_ndarray(format="gray")
                t = float(frame.time) if frame.time is not None else None
                self.decoded += 1
                self._last_time = t
                yield image, t
        self._check_complete(last_pos)

    def _note_error(self, message: str, byte: int | None) -> None:
        self.errors.append(message)
        if self.first_error is None:
            self.first_error = (self.decoded, byte, message)

    def _check_complete(self, last_pos: int | None) -> None:
        """Raise :class:`SourceDecodeError` if the file ended before its header says it should."""
        expected = self.info.get("frames")
        why = None
        if expected is not None and self.decoded < expected:
            why = "the file ends early"
        elif (expected is None or self.info.get("container") == "gif") and not self.is_url:
            why = self._short_without_count()
        if why is None and self.first_error is None:
            return
        size = self.info.get("size_bytes")
        if self.first_error is not None:
            frame, byte, why = self.first_error
        else:
            frame, byte = self.decoded, last_pos
        where = f"byte {byte}" if byte is not None else "an unknown byte offset"
        of_size = f" of {size}" if size else ""
        total = f" of {expected}" if expected is not None else ""
        raise SourceDecodeError(
            f"clip {self.shown!r} is truncated or corrupt: decoded {self.decoded}{total} frames; "
            f"decoding stopped at frame {frame}, {where}{of_size} ({why}; {len(self.errors)} decode errors)",
            frame=frame,
            byte=byte,
        )

    def _short_without_count(self) -> str | None:
        """Containers without a frame count: compare with the header's duration (Matroska/WebM) or
        the format's end marker (GIF trailer). MPEG program/transport streams carry neither: a clean
        cut at a packet boundary looks like a normal end there."""
        if self.info.get("container") == "gif":
            with open(self.target, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b";":
                    return "the GIF trailer is missing"
            return None
        duration, fps, last_t = self.info.get("duration_s"), self.info.get("fps"), self._last_time
        if self.info.get("container", "").startswith(("mpeg", "mpegts")) or not (duration and fps):
            return None
        if last_t is None or last_t + 1 / fps < duration - max(3 / fps, 0.25):
            return f"the header says {duration:.2f} s but the last frame is at {last_t or 0:.2f} s"
        return None

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._frames is None:
            raise SourceReadError(f"{self.shown!r} is not open")
        try:
            return next(self._frames)
        except StopIteration:
            if self.live:  # a network stream has no end: the server or the network dropped it
                raise SourceReadError(f"stream {self.shown!r} ended (connection closed)") from None
            return None

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None


# ---------------------------------------------------------------------------------------------
# V4L2 device
# ---------------------------------------------------------------------------------------------
class DeviceSource(Source):
    """A V4L2 capture device (frame grabber, webcam) through OpenCV's V4L2 backend, with PyAV's
    ``v4l2`` demuxer as the fallback. Driver buffering is set to one frame (freshest frame, least
    latency); size and rate are read back after opening and reported (``requested`` vs ``got``)."""

    live = True
    self_paced = True
    finite = False

    def __init__(
        self,
        device: str | int,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
    ) -> None:
        if fourcc is not None and len(fourcc) != 4:
            raise ValueError(f"fourcc must be 4 characters (e.g. MJPG, YUYV), got {fourcc!r}")
        self.device = device
        self.source_id = str(device)
        self.fourcc = fourcc
        self.requested = {"width": width, "height": height, "fps": fps}
        self._cap: Any = None
        self._av: Any = None
        self._av_frames: Iterator[Any] | None = None
        self.nominal_fps = fps

    def _device_path(self) -> str:
        if isinstance(self.device, int) or str(self.device).isdigit():
            return f"/dev/video{int(self.device)}"
        return str(self.device)

    def open(self) -> dict[str, Any]:
        import cv2

        path = self._device_path()
        tried: list[str] = []
        if not Path(path).exists():
            present = sorted(str(p) for p in Path("/dev").glob("video*"))
            raise SourceOpenError(
                f"video device {path!r} not found: tried to open the device node {path}, which does not "
                f"exist (video devices present: {', '.join(present) or 'none'}). Fix: plug in the frame "
                f"grabber, check `v4l2-ctl --list-devices`, or pass the right --device"
            )
        cap = cv2.VideoCapture(path, cv2.CAP_V4L2)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.fourcc:  # e.g. MJPG: USB HDMI grabbers give 1080p30 only compressed
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.fourcc))
            if self.requested["width"]:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.requested["width"])
            if self.requested["height"]:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.requested["height"])
            if self.requested["fps"]:
                cap.set(cv2.CAP_PROP_FPS, self.requested["fps"])
            got_fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
            got: dict[str, Any] = {
                "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                "fps": got_fps,
                "buffersize": int(cap.get(cv2.CAP_PROP_BUFFERSIZE)),
                "fourcc": int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1"),
            }
            self._cap = cap
            self.nominal_fps = got_fps or self.requested["fps"]
            return {
                "kind": "device",
                "target": path,
                "backend": "opencv-v4l2",
                "requested": self.requested,
                "got": got,
                "hw": [got["height"], got["width"]],
                "fps": self.nominal_fps,
                "mismatch": self._mismatch(got),
            }
        cap.release()
        tried.append("OpenCV VideoCapture(CAP_V4L2): isOpened() is False")
        try:
            import av

            opts = {}
            if self.requested["fps"]:
                opts["framerate"] = str(self.requested["fps"])
            if self.requested["width"] and self.requested["height"]:
                opts["video_size"] = f"{self.requested['width']}x{self.requested['height']}"
            if self.fourcc:
                opts["input_format"] = "mjpeg" if self.fourcc.upper() == "MJPG" else self.fourcc.lower()
            self._av = av.open(path, format="v4l2", options=opts)
            stream = self._av.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            got_fps = float(rate) if rate else None
            got = {"width": stream.width, "height": stream.height, "fps": got_fps}
            self.nominal_fps = got_fps or self.requested["fps"]
            self._av_frames = self._av.decode(stream)
            return {
                "kind": "device",
                "target": path,
                "backend": "pyav-v4l2",
                "requested": self.requested,
                "got": got,
                "hw": [got["height"], got["width"]],
                "fps": self.nominal_fps,
                "mismatch": self._mismatch(got),
            }
        except Exception as exc:
            tried.append(f"PyAV av.open(format='v4l2'): {type(exc).__name__}: {exc}")
        raise SourceOpenError(
            f"cannot open video device {path!r}; tried: {'; '.join(tried)}. Fix: check that no other "
            f"program holds the device, that this user may read it (group 'video'), and "
            f"`v4l2-ctl -d {path} --list-formats-ext`"
        )

    def _mismatch(self, got: dict[str, Any]) -> list[str]:
        out = []
        for key, want in self.requested.items():
            have = got.get(key)
            if want and have and abs(float(have) - float(want)) > 0.01 * float(want):
                out.append(f"{key}: requested {want}, device gives {have}")
        return out

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._cap is not None:
            ok, image = self._cap.read()
            if not ok or image is None:
                raise SourceReadError(f"video device {self._device_path()!r}: read failed (unplugged?)")
            return image, None
        if self._av_frames is not None:
            try:
                frame = next(self._av_frames)
            except Exception as exc:
                raise SourceReadError(f"video device {self._device_path()!r}: read failed ({exc})") from exc
            return frame.to_ndarray(format="gray"), None
        raise SourceReadError(f"video device {self._device_path()!r} is not open")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._av is not None:
            self._av.close()
            self._av = None
            self._av_frames = None


# ---------------------------------------------------------------------------------------------
# Folder of images
# ---------------------------------------------------------------------------------------------
class FolderSource(Source):
    """The image files of a folder in name order (natural: frame2 before frame10), at ``fps``."""

    def __init__(self, folder: str | Path, fps: float = 30.0) -> None:
        self.folder = Path(folder)
        self.source_id = self.folder.name
        self.nominal_fps = fps
        self.files: list[Path] = []
        self._i = 0

    def open(self) -> dict[str, Any]:
        import re

        if not self.folder.is_dir():
            raise SourceOpenError(f"image folder {str(self.folder)!r} does not exist or is not a folder")

        def natural(p: Path) -> list[Any]:
            return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]

        self.files = sorted(
            (p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural
        )
        if not self.files:
            raise SourceOpenError(
                f"image folder {str(self.folder)!r} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        self._i = 0
        return {
            "kind": "folder",
            "target": str(self.folder),
            "frames": len(self.files),
            "fps": self.nominal_fps,
        }

    def read(self) -> tuple[np.ndarray, float | None] | None:
        import cv2

        if self._i >= len(self.files):
            return None
        path = self.files[self._i]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SourceDecodeError(f"image {str(path)!r} (frame {self._i}) does not decode", self._i, None)
        if image.dtype != np.uint8:  # 16-bit PNG/TIFF: keep the top 8 bits of the used range
            image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        t = self._i / self.nominal_fps if self.nominal_fps else None
        self._i += 1
        return image, t

    def rewind(self) -> None:
        self._i = 0


# ---------------------------------------------------------------------------------------------
# DICOM multi-frame ultrasound cine loop
# ---------------------------------------------------------------------------------------------
class DicomSource(Source):
    """A DICOM (multi-frame) ultrasound cine loop read with pydicom, frame by frame.

    The frame rate comes from ``fps`` if given, else Frame Time (0018,1063), Cine Rate (0018,0040) or
    Recommended Display Frame Rate (0008,2144). YBR colour data is converted to RGB."""

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        self.source_id = self.path.name
        self._fps_override = fps
        self._iter: Iterator[np.ndarray] | None = None
        self._i = 0
        self._n = 0
        self._photometric = "MONOCHROME2"

    def open(self) -> dict[str, Any]:
        import pydicom

        if not self.path.is_file():
            raise SourceOpenError(f"DICOM file {str(self.path)!r} does not exist")
        try:
            ds = pydicom.dcmread(self.path, stop_before_pixels=True)
        except Exception as exc:
            raise SourceOpenError(f"{str(self.path)!r} is not a readable DICOM file: {exc}") from exc
        self._n = int(getattr(ds, "NumberOfFrames", 1) or 1)
        self._photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
        fps = self._fps_override
        if fps is None and getattr(ds, "FrameTime", None):
            fps = 1000.0 / float(ds.FrameTime)
        if fps is None and getattr(ds, "CineRate", None):
            fps = float(ds.CineRate)
        if fps is None and getattr(ds, "RecommendedDisplayFrameRate", None):
            fps = float(ds.RecommendedDisplayFrameRate)
        self.nominal_fps = fps or 30.0
        self._i = 0
        self._iter = self._frames()
        syntax = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in ds.file_meta else "unknown"
        return {
            "kind": "dicom",
            "target": str(self.path),
            "frames": self._n,
            "fps": self.nominal_fps,
            "fps_from": "argument" if self._fps_override else "dicom",
            "transfer_syntax": syntax,
            "photometric": self._photometric,
            "hw": [int(ds.Rows), int(ds.Columns)],
        }

    def _frames(self) -> Iterator[np.ndarray]:
        from pydicom.pixels import iter_pixels

        try:
            yield from iter_pixels(self.path, as_rgb=True)
        except Exception as exc:
            raise SourceDecodeError(
                f"DICOM {str(self.path)!r}: frame {self._i} does not decode ({type(exc).__name__}: {exc}); "
                f"compressed transfer syntaxes need a pixel-data plugin (e.g. pip install pylibjpeg)",
                self._i,
                None,
            ) from exc

    def read(self) -> tuple[np.ndarray, float | None] | None:
        import cv2

        if self._iter is None:
            raise SourceReadError(f"DICOM {str(self.path)!r} is not open")
        try:
            arr = next(self._iter)
        except StopIteration:
            return None
        if arr.dtype != np.uint8:
            arr = cv2.normalize(arr, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
        t = self._i / self.nominal_fps if self.nominal_fps else None
        self._i += 1
        return arr, t

    def close(self) -> None:
        self._iter = None


# ---------------------------------------------------------------------------------------------
# Synthetic live source (the simulator)
# ---------------------------------------------------------------------------------------------
class _SimulatorArgs(TypedDict):
    """The ``synth.LiveSimulator`` arguments a synthetic source passes (and reports on open)."""

    seed: int
    probe: str
    fps: float
    schedule: list[tuple[int, int]] | None
    height: int
    width: int


class SyntheticSource(Source):
    """``synth.LiveSimulator`` frames, endless, paced by the capture loop at ``fps``."""

    live = True
    finite = False

    def __init__(
        self,
        seed: int = 0,
        fps: float = 30.0,
        probe: str = "convex",
        schedule: list[tuple[int, int]] | None = None,
        height: int = 480,
        width: int = 640,
    ) -> None:
        self.kwargs: _SimulatorArgs = {
            "seed": seed,
            "probe": probe,
            "fps": fps,
            "schedule": schedule,
            "height": height,
            "width": width,
        }
        self.nominal_fps = fps
        self.source_id = f"synthetic-{probe}-seed{seed}"
        self._sim: Any = None
        self._i = 0

    def open(self) -> dict[str, Any]:
        if self._sim is None:
            try:
                from synth import LiveSimulator
            except ImportError as exc:
                raise SourceOpenError(
                    f"synthetic source needs synth.LiveSimulator, which is missing: {exc}"
                ) from exc
            self._sim = LiveSimulator(**self.kwargs)
        return {"kind": "synthetic", **self.kwargs, "hw": [self.kwargs["height"], self.kwargs["width"]]}

    def read(self) -> tuple[np.ndarray, float | None] | None:
        image, _score, _mask = self._sim.next()
        t = self._i / self.nominal_fps if self.nominal_fps else None
        self._i += 1
        return image, t
