"""``lus-stream exam-clips``: a whole exam from recorded clips, one per zone, through the real engine.

::

    lus-stream exam-clips --protocol blue6 L1=l1.mp4 L2=l2.mp4 ... --out DIR [--exam-id ID] [--patient-id P]
    lus-stream exam-clips --protocol blue6 --folder patient_10/ --out DIR [-- EXTRA lus-stream OPTIONS]

One :class:`stream.pipeline.StreamEngine`, configured exactly as ``lus-stream --clip FILE
--as-fast-as-possible`` (same lanes, lossless: every decoded frame is scored, published and recorded;
:func:`stream.cli.engine_config`), reads the clips in turn through :class:`ClipChain`, an engine source
that runs one capture process per clip. The exam is driven with the exam protocol's own command
handlers (:func:`stream.exam.control_commands`), in step with the engine's scoring loop: ``exam_start``,
then per clip ``zone`` (resets the clip aggregate) before its first frame, all its frames, ``freeze``
after its last frame has been scored, and ``exam_stop`` at the end. Everything goes to one
``DIR/<time>_<exam>.lusr.msgpack``; then the report (``lus-stream report``: HTML, PNG, PDF) is written
into ``DIR``. Frame ``seq`` keeps counting across clips (clip *k*'s frames follow clip *k-1*'s).

``--folder``: one clip per zone, the zone named by the file name: ``L1.mp4`` or ``patient_10_L1.mp4``
(the zone is the last ``_``-separated part); ``patient_10_L1_2.mp4`` is a repeat recording of L1, and
the LATER recording (the highest repeat number) is used, the other is listed as skipped. Files whose
name names no zone of the protocol are skipped with a note; clips of two patients in one folder are
refused.

A missing or undecodable clip (or one that yields no frame) stops the walk with an error naming the zone
and the file: the zones already frozen stay in the recording (flushed), the exam is stopped, the report
of what exists is written, and the exit code is 3. Exit codes: 0 every clip scored, 2 bad options or
engine start-up failure, 3 a clip failed, 1 the report could not be written.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream import exam
from stream.exam_schema import DEFAULT_PROTOCOL, PROTOCOLS

EXIT_OK, EXIT_REPORT, EXIT_USAGE, EXIT_CLIP = 0, 1, 2, 3
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".gif", ".wmv")
PROG = "lus-stream exam-clips"
STREAM_ID = "exam-clips"  # recording <time>_exam-clips.lusr.msgpack, report <time>_exam-clips_<exam>.*


class UsageError(ValueError):
    """Bad command line or folder contents (exit code 2)."""


@dataclass(frozen=True)
class ZoneClip:
    """One zone's recording."""

    zone: str
    path: Path


# ------------------------------------------------------------------------------------------ clip lists
def parse_pairs(pairs: Sequence[str], protocol: str) -> list[ZoneClip]:
    """``["L1=a.mp4", "r2=b.mp4"]`` → zone clips in the given order (zones case-insensitive)."""
    zones = PROTOCOLS[protocol]
    out: list[ZoneClip] = []
    for pair in pairs:
        zone, sep, path = pair.partition("=")
        if not sep or not zone or not path:
            raise UsageError(f"{pair!r}: give ZONE=FILE, e.g. {zones[0]}={zones[0]}.mp4")
        name = zone.strip().upper()
        if name not in zones:
            raise UsageError(f"unknown zone {zone!r} for protocol {protocol}: use one of {list(zones)}")
        if any(c.zone == name for c in out):
            raise UsageError(f"zone {name} is given twice: one clip per zone")
        out.append(ZoneClip(name, Path(path)))
    return out


def parse_clip_name(stem: str, zones: Sequence[str]) -> tuple[str, str, int] | None:
    """``"patient_10_L1_2"`` → ``("patient_10", "L1", 2)`` (prefix, zone, repeat; 1 without a suffix);
    None when the name names no zone of ``zones``."""
    parts = stem.split("_")
    repeat = 1
    if len(parts) >= 2 and parts[-1].isdigit() and parts[-2].upper() in zones:
        repeat, parts = int(parts[-1]), parts[:-1]
    if parts[-1].upper() not in zones:
        return None
    return "_".join(parts[:-1]), parts[-1].upper(), repeat


def scan_folder(folder: Path, protocol: str) -> tuple[list[ZoneClip], str | None, list[str]]:
    """(zone clips in protocol order, the file names' common prefix or None, notes on skipped files)."""
    if not folder.is_dir():
        raise UsageError(f"--folder {folder}: not a folder")
    zones = PROTOCOLS[protocol]
    found: dict[str, tuple[int, Path]] = {}
    prefixes: dict[str, list[str]] = {}
    notes: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        parsed = parse_clip_name(path.stem, zones)
        if parsed is None:
            notes.append(f"{path.name}: skipped, its name names no {protocol} zone ({' '.join(zones)})")
            continue
        prefix, zone, repeat = parsed
        prefixes.setdefault(prefix, []).append(path.name)
        if zone in found and found[zone][0] == repeat:
            raise UsageError(f"two clips for zone {zone} in {folder}: {found[zone][1].name} and {path.name}; "
                             f"keep one (a repeat recording is named like {path.stem}_2{path.suffix})")
        if zone in found:
            (keep, drop) = (path, found[zone][1]) if repeat > found[zone][0] else (found[zone][1], path)
            notes.append(f"{drop.name}: skipped, {keep.name} is the later recording of {zone}")
            if repeat < found[zone][0]:
                continue
        found[zone] = (repeat, path)
    if len(prefixes) > 1:
        shown = {p or "(none)": names[:2] for p, names in prefixes.items()}
        raise UsageError(f"{folder} holds clips of more than one exam (name prefixes {shown}): one exam "
                         f"per folder, or name the clips with ZONE=FILE")
    if not found:
        raise UsageError(f"no clip in {folder} names a {protocol} zone: name them like {zones[0]}.mp4 or "
                         f"patient_1_{zones[0]}.mp4 (zones: {' '.join(zones)})")
    clips = [ZoneClip(z, found[z][1]) for z in zones if z in found]
    common_prefix = next(iter(prefixes)) or None
    return clips, common_prefix, notes


# ------------------------------------------------------------------------------------------ the source
class ClipChain:
    """An engine source (``get_batch``/``finished``/``exit_error``/``stats``/``stop``, as
    :class:`stream.capture.CaptureProcess`) that plays the zone clips one after the other, each in its own
    capture process, and drives the exam between them.

    The engine's scoring loop calls :meth:`get_batch` and scores what it returns before it calls again,
    so ``on_zone(zone)`` runs before the first frame of a clip is scored and ``on_freeze(zone)`` after the
    last one was; ``on_end()`` runs once, when the last clip is done, a clip failed, or on :meth:`stop`.
    """

    def __init__(self, clips: Sequence[ZoneClip], spec: Any, on_zone: Callable[[str], object],
                 on_freeze: Callable[[str], object], on_end: Callable[[], object], capacity: int = 8,
                 echo: Callable[[str], None] = print) -> None:
        self.clips = list(clips)
        self.spec = spec  # the stream.capture.SourceSpec of `lus-stream --clip FILE ...`; path per clip
        self.on_zone, self.on_freeze, self.on_end = on_zone, on_freeze, on_end
        self.capacity = capacity
        self.echo = echo
        self.halt = threading.Event()  # set on SIGINT/SIGTERM: no further clip is opened
        self.error: str | None = None
        self.done_zones: list[str] = []
        self.frames: dict[str, int] = {}  # frames delivered per zone
        self.source_id = "exam-clips"
        self._lock = threading.Lock()  # the status thread reads stats() while the loop swaps captures
        self._next = 0
        self._cur: Any = None
        self._cur_clip: ZoneClip | None = None
        self._offset = 0
        self._next_seq = 0
        self._ended = False
        self._totals = {"read": 0, "dropped": 0, "roi_search": 0}

    # -------------------------------------------------------------- what the engine calls
    @property
    def finished(self) -> bool:
        return self._ended

    @property
    def exit_error(self) -> str | None:
        return self.error

    def get(self, timeout: float | None = None) -> Any:
        frames = self.get_batch(1, timeout)
        return frames[0] if frames else None

    def get_batch(self, max_n: int, timeout: float | None = None) -> list[Any]:
        if self._ended:
            return []
        if self._cur is None:
            if self.halt.is_set():
                return []
            self._open_next()
            if self._cur is None:
                return []
        frames = self._cur.get_batch(max_n, timeout)
        if frames:
            out = [dataclasses.replace(f, seq=f.seq + self._offset) for f in frames]
            self._next_seq = out[-1].seq + 1
            assert self._cur_clip is not None
            self.frames[self._cur_clip.zone] = self.frames.get(self._cur_clip.zone, 0) + len(out)
            return out
        if self._cur.finished:
            self._close_current()
        return []

    def stats(self) -> dict[str, Any]:
        with self._lock:
            cur = self._cur.stats() if self._cur is not None else {}
            totals = {k: v + int(cur.get(k) or 0) for k, v in self._totals.items()}
            clip = self._cur_clip
            state = "running" if not self._ended else ("failed" if self.error else "finished")
            return {**totals, "state": state, "fps": float(cur.get("fps") or 0.0),
                    "error": cur.get("error"), "exit_error": self.error if self._ended else None,
                    "source_id": f"{clip.zone}={clip.path.name}" if clip else self.source_id}

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            if self._cur is not None:
                self._cur.stop(timeout)
                self._cur = None
        self._end()

    # -------------------------------------------------------------- clips in turn
    def _open_next(self) -> None:
        if self._next >= len(self.clips):
            self._end()
            return
        clip = self.clips[self._next]
        self._next += 1
        if not clip.path.is_file():
            self._fail(clip, "the file does not exist or is not a file")
            return
        from stream.capture import CaptureProcess

        self.on_zone(clip.zone)
        self.echo(f"{PROG}: {clip.zone} ({self._next}/{len(self.clips)}): {clip.path}")
        capture = CaptureProcess(dataclasses.replace(self.spec, path=str(clip.path)), capacity=self.capacity)
        with self._lock:
            self._cur, self._cur_clip = capture.start(), clip
            self._offset = self._next_seq

    def _close_current(self) -> None:
        clip = self._cur_clip
        assert clip is not None
        with self._lock:
            stats = self._cur.stats()
            self._cur.stop()
            self._cur = None
            for k in self._totals:
                self._totals[k] += int(stats.get(k) or 0)
        self._next_seq = max(self._next_seq, self._offset + int(stats.get("read") or 0))
        if stats.get("exit_error"):
            self._fail(clip, str(stats["exit_error"]))
            return
        if not self.frames.get(clip.zone):
            self._fail(clip, "no frame was decoded and scored (empty clip, or no ultrasound region found)")
            return
        try:
            self.on_freeze(clip.zone)
        except Exception as err:  # a refused freeze (CommandError): the zone has no score
            self._fail(clip, f"freeze refused: {err}")
            return
        self.done_zones.append(clip.zone)

    def _fail(self, clip: ZoneClip, why: str) -> None:
        self.error = f"zone {clip.zone}: clip {clip.path}: {why}"
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.on_end()


# ------------------------------------------------------------------------------------------ command
def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run an exam from recorded clips, one per zone, through the real engine (the lanes of "
        "`lus-stream --clip FILE --as-fast-as-possible`, lossless), record it and write the report. "
        "Extra lus-stream engine options (e.g. --threads 1, --mc-samples 8, --roi off) go after `--`.",
        epilog="Folder names: L1.mp4 or patient_10_L1.mp4 (zone = last '_' part); a repeat like "
        "patient_10_L1_2.mp4 replaces the earlier recording. Exit codes: 0 all clips scored, 2 bad options "
        "or engine start-up failure, 3 a clip was missing/undecodable (earlier zones kept, report written), "
        "1 the report failed. Decision support only; the shipped models are synthetic-data demonstration "
        "models, not for clinical use.")
    p.add_argument("clips", nargs="*", metavar="ZONE=FILE", help="a clip per zone, e.g. L1=l1.mp4 (zones "
                   "case-insensitive, played in the given order)")
    p.add_argument("--folder", type=Path, metavar="DIR",
                   help="a folder with one clip per zone, named by zone")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=DEFAULT_PROTOCOL,
                   help="exam protocol (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                   help="folder for the recording and the report (default: %(default)s)")
    p.add_argument("--exam-id", default=None, help="exam id (default: the clips' name prefix, the folder's "
                   "name, or clips-<UTC time>)")
    p.add_argument("--patient-id", default=None, help="patient id (salted sha256 in the recording unless "
                   "--store-patient-id)")
    p.add_argument("--store-patient-id", action="store_true", help="write the patient id in the clear")
    p.add_argument("--engines", type=Path, default=None, metavar="DIR",
                   help="model folder (default: as lus-stream, the repository's models/)")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime", "torch"), default="auto",
                   help="inference backend (default: %(default)s)")
    p.add_argument("--pub", default=None, help="PUB endpoint, to watch with lus-view (default: a free "
                   "loopback port)")
    p.add_argument("--record-frames", action="store_true", help="also record the frames (JPEG) so that the "
                   "report shows representative frames with overlays (about 1.5 MB/s of video)")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF report")
    return p


def _exam_id(args: argparse.Namespace, prefix: str | None) -> str:
    if args.exam_id:
        return str(args.exam_id)
    if prefix:
        return prefix
    if args.folder is not None:
        return args.folder.resolve().name or "exam"
    return time.strftime("clips-%Y%m%dT%H%M%SZ", time.gmtime())


def main(argv: Sequence[str] | None = None) -> int:
    """``lus-stream exam-clips``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if bool(args.clips) == (args.folder is not None):
            raise UsageError("give ZONE=FILE clips or --folder DIR (one of the two)")
        notes: list[str] = []
        prefix = None
        if args.folder is not None:
            clips, prefix, notes = scan_folder(args.folder, args.protocol)
        else:
            clips = parse_pairs(args.clips, args.protocol)
    except UsageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_USAGE
    for note in notes:
        print(f"{PROG}: {note}")
    exam_id = _exam_id(args, prefix)
    return run_exam(clips, args, exam_id, extra)


def run_exam(clips: list[ZoneClip], args: argparse.Namespace, exam_id: str, extra: list[str]) -> int:
    import logging

    from stream import cli
    from stream.pipeline import StreamEngine

    engine_argv = ["--clip", str(clips[0].path), "--as-fast-as-possible", "--ctrl", "none",
                   "--pub", args.pub or _free_endpoint(), "--record", str(args.out), "--stream-id", STREAM_ID]
    if args.engines is not None:
        engine_argv += ["--engines", str(args.engines)]
    engine_argv += ["--backend", args.backend]
    if args.record_frames:
        engine_argv += ["--publish-frames", "--record-frames"]
    engine_args = cli.build_parser().parse_args([*engine_argv, *extra])  # same options as lus-stream
    logging.basicConfig(level=engine_args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    spec = cli.source_spec(engine_args)  # kind "clip", as-fast-as-possible, --roi/--fps from the options
    listing = ";".join(f"{c.zone}={c.path}" for c in clips)
    try:
        cfg = cli.engine_config(engine_args, dataclasses.replace(spec, path=listing))
        cfg = dataclasses.replace(cfg, exam=True, store_patient_id=args.store_patient_id)
        session_box: dict[str, Any] = {}
        chain = ClipChain(clips, spec, on_zone=lambda z: command("zone", zone=z),
                          on_freeze=lambda z: command("freeze", zone=z),
                          on_end=lambda: _stop_exam(session_box["session"], command),
                          capacity=cfg.capacity)
        engine = StreamEngine(cfg, source=chain)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_USAGE
    # The engine's exam stage (cfg.exam): zone changes reset the clip, every change is published and
    # recorded, status.exam is its summary. Its commands are run here, in-process (no control socket).
    stage = engine.g.exam
    if stage is None:
        raise RuntimeError("the engine was built without its exam stage (EngineConfig.exam is False)")
    session = stage.session
    session_box["session"] = session

    def command(name: str, **req: Any) -> dict[str, Any] | None:
        return stage.command(name, **req)

    command("exam_start", exam_id=exam_id, patient_id=args.patient_id, protocol=args.protocol)

    def on_signal(signum: int, _frame: object) -> None:
        chain.halt.set()
        engine.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = engine.run()
    recording = engine.g.recorder.path if engine.g.recorder is not None else None
    body = session.body()
    for z in body["zones"]:
        if z["score"] is not None:
            path = next(c.path for c in clips if c.zone == z["zone"])
            print(f"{PROG}: {z['zone']} = {z['score']} ({z['frames']} frames, {path.name})")
    if body["total"] is not None:
        print(f"{PROG}: exam {exam_id}: LUS score {body['total']} / {body['max_total']}")
    else:
        print(f"{PROG}: exam {exam_id}: partial LUS score {body['partial_total']} ({body['scored']} of "
              f"{body['n_zones']} zones scored; max {body['max_total']})")
    if recording is not None:
        print(f"{PROG}: recording {recording}")
    status = _write_report(recording, args, exam_id)
    if chain.error:
        print(f"{PROG}: {chain.error}; the zones before it are kept, the ones after it were not run",
              file=sys.stderr)
        return EXIT_CLIP
    if code:
        return code
    return status


def _stop_exam(session: exam.ExamSession, command: Callable[..., Any]) -> None:
    if session.state == "running":
        command("exam_stop")


def _write_report(recording: Path | None, args: argparse.Namespace, exam_id: str) -> int:
    from stream import report

    if recording is None or not recording.is_file():
        print(f"{PROG}: no recording was written, so no report", file=sys.stderr)
        return EXIT_REPORT
    try:
        paths = report.write_report(recording, args.out, exam_id=exam_id, pdf=not args.no_pdf)
    except (ValueError, OSError, SystemExit) as err:
        print(f"{PROG}: the report failed: {err}", file=sys.stderr)
        return EXIT_REPORT
    for kind, path in paths.items():
        print(f"{PROG}: report {kind}: {path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
