"""``lus-stream``: run the streaming engine on a device, file, folder, DICOM cine, URL or the simulator.

``lus-stream [run] [options]`` runs the engine (``run`` is the default subcommand); other
subcommands dispatch on the first argument: ``keygen`` (CURVE keys), ``exam-clips`` (an exam from
recorded clips, one per zone), and ``report`` / ``bench`` when their modules are installed.
Exit codes: 0 clean stop or end of source, 2 bad options or startup failure, 3 the source ended
with an error (truncated clip, device missing) after what decoded was published and recorded.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream import exam
from stream.control import DEFAULT_CTRL
from stream.default_models import default_engines
from stream.publisher import DEFAULT_PUB

DEMO_SCHEDULE = [(0, 0), (150, 1), (300, 2), (450, 3), (600, 1)]  # 5 s per score at 30 fps
EXIT_USAGE = 2

# subcommand → "module:function" taking argv (later issues add theirs here)
SUBCOMMANDS: dict[str, str] = {
    "keygen": "stream.security:keygen_main",
    "report": "stream.report:main",
    "bench": "stream.bench:main",
    "exam-clips": "stream.exam_clips:main",
}


def _roi(text: str) -> str | tuple[int, int, int, int]:
    if text in ("auto", "off"):
        return text
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--roi must be auto, off or X,Y,W,H; got {text!r}") from None
    return (x, y, w, h)


def _window(text: str) -> tuple[int | None, float | None]:
    try:
        if text.endswith("s"):
            seconds = float(text[:-1])
            if seconds > 0:
                return None, seconds
        elif int(text) > 0:
            return int(text), None
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"--window takes N frames or Ns seconds (e.g. 90 or 3s), got {text!r}")


def _outage(text: str) -> tuple[int, float, str]:
    parts = text.split(":")
    try:
        after, seconds = int(parts[0]), float(parts[1])
        mode = parts[2] if len(parts) > 2 else "error"
        if after >= 0 and seconds > 0 and mode in ("error", "stall") and len(parts) <= 3:
            return after, seconds, mode
    except (ValueError, IndexError):
        pass
    msg = f"--outage takes AFTER:SECONDS[:error|stall], e.g. 60:2:stall; got {text!r}"
    raise argparse.ArgumentTypeError(msg)


def _positive(kind: Callable[[str], float | int]) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` where an option has a default its help text does not already name."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        if action.default is False:
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lus-stream",
        formatter_class=_HelpFormatter,
        description="Score lung-ultrasound video in real time (Reg-STN frame scores, streaming uninorm clip "
        "score, segmentation ensemble) and publish the results over ZeroMQ. Subcommands: "
        "`lus-stream keygen DIR`, `lus-stream report FILE`, `lus-stream exam-clips ZONE=FILE ...`, "
        "`lus-stream bench` (where installed). "
        "Decision support only; the shipped models are trained on synthetic data and not for clinical use.",
    )
    src = p.add_argument_group("source (exactly one)").add_mutually_exclusive_group(required=True)
    src.add_argument("--device", metavar="DEV", help="V4L2 capture device, e.g. /dev/video0 (or its index)")
    src.add_argument("--clip", metavar="FILE", help="a recorded clip (any container/codec FFmpeg decodes)")
    src.add_argument("--folder", metavar="DIR", help="a folder of images, played in natural name order")
    src.add_argument("--dicom", metavar="FILE", help="a DICOM multi-frame ultrasound cine loop")
    src.add_argument("--url", metavar="URL", help="a network stream (rtsp://, http://) read through PyAV")
    src.add_argument("--synthetic", action="store_true", help="the live LUS simulator (see --fps)")
    src.add_argument("--demo", action="store_true",
                     help="synthetic live source walking through scores 0-3 + the shipped models, "
                     "with a status line per second (what `make demo` runs)")
    s = p.add_argument_group("source options")
    s.add_argument("--loop", action="store_true",
                   help="restart a clip/folder/DICOM at its end")
    s.add_argument("--as-fast-as-possible", action="store_true",
                   help="no pacing; lossless for files (capture waits for the lanes): offline evaluation "
                   "(default: paced at the source's frame rate)")
    s.add_argument("--fps", type=_positive(float), default=None,
                   help="frame rate: synthetic/folder playback rate, device request, or clip override "
                   "(default: the source's own; 30 for synthetic and folders)")
    s.add_argument("--roi", type=_roi, default=None,
                   help="ultrasound region: auto (detect, re-detect on geometry change), off, or X,Y,W,H "
                   "(default: auto; off for synthetic)")
    s.add_argument("--buffer", type=_positive(int), default=8,
                   help="frames held between capture and the lanes (oldest dropped when full, live sources)")
    s.add_argument("--outage", type=_outage, default=None, metavar="AFTER:SECONDS[:error|stall]",
                   help="scripted outage for tests and demos: after AFTER frames the source fails (error) or "
                   "goes silent (stall) for SECONDS, then recovers (default: none)")
    s.add_argument("--seed", type=int, default=0, help="simulator and MC-dropout seed")
    s.add_argument("--probe", choices=("convex", "linear"), default="convex", help="simulator probe geometry")
    m = p.add_argument_group("models and lanes")
    m.add_argument("--engines", type=Path, default=None, metavar="DIR",
                   help="model folder with frame/ (frame scorer + aggregator manifests) and seg/ "
                   "(segmentation members); without a frame model the engine refuses to start unless "
                   "--no-scoring; a missing segmentation model switches that lane off (default: the "
                   "models installed with lus-stream: the real-scan models, or the synthetic-data "
                   "demonstration models for --synthetic and --demo)")
    m.add_argument("--no-scoring", action="store_true",
                   help="run without a frame-score model (no frame or clip scores: capture, segmentation "
                   "and recording only)")
    m.add_argument("--backend", default="auto",
                   choices=("auto", "tensorrt", "onnxruntime", "torch", "triton"),
                   help="inference backend (auto: the fastest available here; triton: the models served by a "
                   "Triton Inference Server at --triton-url, e.g. lus-serve)")
    m.add_argument("--triton-url", default=None, metavar="HOST:PORT",
                   help="with --backend triton: the server's gRPC address (default 127.0.0.1:8001)")
    m.add_argument("--threads", type=_positive(int), default=None,
                   help="scoring-lane intra-op threads (default: from the core count, see docs/wire.md)")
    m.add_argument("--max-batch", type=_positive(int), default=8,
                   help="largest batch of waiting frames the scoring lane scores in one call")
    m.add_argument("--seg-every", type=_positive(int), default=1, metavar="N",
                   help="offer the segmentation lane at most one frame per N scored frames (it always "
                   "takes the newest frame when free)")
    m.add_argument("--mc-samples", type=int, default=0, metavar="K",
                   help="MC-dropout samples per member for the uncertainty map (0: off; paper: 40)")
    m.add_argument("--mc-every", type=_positive(int), default=5, metavar="M",
                   help="run MC-dropout on every M-th segmentation run (the others are deterministic)")
    m.add_argument("--aggregator", choices=("uninorm", "max_argmax", "argmax_mean"), default="uninorm",
                   help="clip aggregation: streaming uninorm (paper) or a baseline")
    m.add_argument("--window", type=_window, default=None, metavar="N|Ns",
                   help="sliding-window clip score over the last N frames, or N seconds with a suffix s "
                   "(e.g. 90 or 3s; default: whole clip since the last reset)")
    m.add_argument("--max-frames", type=_positive(int), default=None,
                   help="stop after scoring this many frames (default: no limit)")
    o = p.add_argument_group("output")
    o.add_argument("--pub", default=DEFAULT_PUB, help="ZeroMQ PUB endpoint for results (loopback only "
                   "unless CURVE keys or --insecure)")
    o.add_argument("--ctrl", default=DEFAULT_CTRL, help="ZeroMQ REP control endpoint ('none' to disable)")
    o.add_argument("--record", type=Path, default=None, metavar="DIR",
                   help="append every published message to DIR/<time>_<stream>.lusr.msgpack "
                   "(default: no recording)")
    o.add_argument("--publish-frames", action="store_true",
                   help="also publish each ROI-cropped frame as JPEG on topic 'image' (remote displays)")
    o.add_argument("--record-frames", action="store_true",
                   help="with --record, also record the 'image' messages (about 1.5 MB/s at 30 fps)")
    o.add_argument("--stream-id", default=None, help="stream name in every message (default: the source id)")
    o.add_argument("--print", dest="print_status", action="store_true",
                   help="print a status line per second (default: off; on with --demo)")
    o.add_argument("--keys", type=Path, default=None, metavar="DIR",
                   help="CURVE-encrypt and authenticate both sockets with the keys `lus-stream keygen DIR` "
                   "wrote (server secret key + authorized_clients/); required to bind off loopback "
                   "(default: no keys, loopback only)")
    o.add_argument("--insecure", action="store_true",
                   help="allow binding off loopback WITHOUT encryption (logged loudly; patient data!)")
    e = p.add_argument_group("exam", "control commands exam_start, zone, freeze, redo, exam_stop, exam "
                             "(docs/exam.md); status messages carry `exam`")
    e.add_argument("--store-patient-id", action="store_true",
                   help="write exam patient ids in the clear (default: salted sha256; salt from "
                   "LUS_PATIENT_SALT, else a random per-exam salt)")
    e.add_argument("--exam-demo", action="store_true",
                   help="with --demo: the simulator walks the 14 lung zones (3 s each + 1 s lead-in, "
                   "severities stream.exam.DEMO_SCORES), a scripted exam freezes each zone and stops, "
                   "then the engine stops")
    e.add_argument("--exam-dwell-s", type=_positive(float), default=3.0, help=argparse.SUPPRESS)
    o.add_argument("--validate", choices=("all", "sample", "off"), default="sample",
                   help="check published messages against the wire schema: every one (debug, tests), "
                   "the first of each topic and then 1 in 100 (default), or none; a failure is a bug: it "
                   "stops the engine on the scoring path, is logged elsewhere (docs/wire.md)")
    o.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="logging level")
    return p


def exam_demo_frames(args: argparse.Namespace) -> tuple[int, int]:
    """--exam-demo: (frames per zone, lead-in frames) = (--exam-dwell-s, 1 s) at the source's frame rate."""
    fps = args.fps or 30.0
    return max(8, round(args.exam_dwell_s * fps)), max(4, round(fps))


def source_spec(args: argparse.Namespace):  # -> stream.capture.SourceSpec
    from stream.capture import SourceKind, SourceSpec

    common = {"fps": args.fps, "roi": args.roi, "outage": args.outage}
    if args.device is not None:
        return SourceSpec("device", path=args.device, **common)
    if args.synthetic or args.demo:
        schedule = DEMO_SCHEDULE if args.demo else None
        if args.exam_demo:
            from stream.exam import DEMO_SCORES, demo_schedule

            schedule = demo_schedule(DEMO_SCORES, *exam_demo_frames(args))
        return SourceSpec("synthetic", fps=args.fps or 30.0, roi=args.roi, seed=args.seed, probe=args.probe,
                          schedule=schedule, as_fast_as_possible=args.as_fast_as_possible, outage=args.outage)
    kinds: tuple[SourceKind, ...] = ("clip", "folder", "dicom", "url")
    kind, path = next((k, getattr(args, k)) for k in kinds if getattr(args, k))
    return SourceSpec(kind, path=str(path), loop=args.loop, as_fast_as_possible=args.as_fast_as_possible,
                      **common)


def engine_config(args: argparse.Namespace, spec: Any = None) -> Any:  # -> stream.pipeline.EngineConfig
    """The engine configuration for parsed ``lus-stream`` options (``spec``: the source, default from args);
    also used by ``lus-stream exam-clips`` so that its lanes are exactly those of ``lus-stream --clip``."""
    from stream.lanes import find_models
    from stream.pipeline import EngineConfig

    spec = source_spec(args) if spec is None else spec
    engines_dir = args.engines or default_engines(spec.kind)
    if getattr(args, "triton_url", None) and getattr(args, "backend", "auto") != "triton":
        raise ValueError(f"--triton-url {args.triton_url} needs --backend triton (the other backends run the "
                         "models in this process)")
    if engines_dir is None:
        raise ValueError("no models are installed with this lus-stream (the package data lus_stream_models "
                         "is missing): reinstall lus-stream, or give a model folder with --engines DIR")
    if not getattr(args, "no_scoring", False) and find_models(engines_dir).frame is None:
        raise ValueError(f"no frame-score model in {engines_dir} (looked for frame/*.json, or where its "
                         "models.json points, with task 'frame-score'): give a model folder with --engines "
                         "DIR, reinstall lus-stream for its shipped models, or add --no-scoring to run "
                         "without scores")
    return EngineConfig(
        source=spec, engines_dir=engines_dir, backend=args.backend,
        pub=args.pub,
        ctrl=None if args.ctrl == "none" else args.ctrl, record_dir=args.record,
        seg_every=args.seg_every, mc_samples=args.mc_samples, mc_every=args.mc_every,
        window=(args.window or (None, None))[0], window_s=(args.window or (None, None))[1],
        aggregator=args.aggregator, max_frames=args.max_frames,
        max_batch=args.max_batch, capacity=args.buffer, threads=args.threads,
        stream_id=args.stream_id or spec.source_id, print_status=args.print_status or args.demo,
        insecure=args.insecure, seed=args.seed, publish_frames=args.publish_frames,
        record_frames=args.record_frames, keys_dir=args.keys,
        store_patient_id=getattr(args, "store_patient_id", False),
        triton_url=(getattr(args, "triton_url", None) or "127.0.0.1:8001")
        if getattr(args, "backend", "auto") == "triton" else None,
        validate=getattr(args, "validate", "sample"),
    )


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.exam_demo and not args.demo:
        parser.error("--exam-demo needs --demo (it scripts the synthetic demo source)")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from stream.pipeline import StreamEngine

    try:
        cfg = engine_config(args)
        engine = StreamEngine(cfg)  # the exam stage is part of the graph (stream.pipeline.compose)
        if args.exam_demo:
            exam.start_demo_walk(engine, cfg.pub, cfg.ctrl, exam.DEMO_SCORES, *exam_demo_frames(args))
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        print(f"lus-stream: {err}", file=sys.stderr)
        return EXIT_USAGE

    signals = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        if len(signals) > 1:  # a second Ctrl-C: results are already flushed per message, leave now
            print("lus-stream: second signal, exiting without draining", file=sys.stderr)
            os._exit(130)
        engine.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = engine.run()
    if code:
        print(f"lus-stream: source ended with an error: {engine.g.source.stats().get('exit_error')}",
              file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        return run(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        module, func = SUBCOMMANDS[argv[0]].split(":")
        try:
            entry = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError):
            print(f"lus-stream {argv[0]}: not available in this build ({module} is missing)", file=sys.stderr)
            return EXIT_USAGE
        return int(entry(argv[1:]) or 0)
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
