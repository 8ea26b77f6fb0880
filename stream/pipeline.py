"""The streaming engine: the dataflow graph (:func:`compose`) and the engine that runs it.

:func:`compose` builds every stage and states every connection with its queue policy, in one function
you can read top to bottom (as Holoscan's ``compose()``); :func:`describe` prints it (logged at start
with ``--log-level INFO``) and the README's dataflow picture shows the same boxes.
:class:`StreamEngine` runs the graph:

* main thread — source → prepare → score → aggregate → publish: take every frame waiting in the
  capture buffer (up to ``max_batch``), prepare them once (:class:`~stream.lanes.Prepared`), score them
  as one batch, fold each frame into the clip aggregate (all stage timings are taken before anything
  is published), then publish ``frame`` + ``video`` per frame, hand each ``video`` to the exam stage, and
  offer the newest prepared frame to the segmentation lane;
* ``segmentation`` thread — takes the newest offered frame whenever it is free (older offers are
  replaced, counted as skipped), runs the ensemble (MC-dropout every ``mc_every``-th run), publishes
  ``seg``. It runs at a lower OS priority (nice +10): on a CPU the scoring lane wins;
* ``status`` thread — one ``status`` message per second (and a ``--print`` line);
* ``control`` thread — the REP command table: ``status``, ``reset``, ``stop`` and the exam's commands.

Thread budget (cores = ``os.cpu_count()``): the capture process takes one core; the rest is split
between the lanes' ONNX Runtime intra-op pools, scoring ``max(1, (cores−1)//2)`` and segmentation
``max(1, cores−1−scoring)`` (without a segmentation model the scoring lane gets ``cores−1``).
Each lane needs at least one thread, so on 2 cores the engine uses 3 busy threads on 2 cores;
that is why segmentation runs niced. ``--threads`` overrides the scoring lane's count.

Losslessness: with a finite file source and ``as_fast_as_possible`` the capture process blocks
instead of dropping, and the scoring loop scores every frame it gets, so every decoded frame is
published and recorded. Stopping (SIGINT/SIGTERM, ``stop`` command, ``--max-frames``): capture is
asked to stop, frames already buffered are drained and scored, the segmentation lane finishes its
current frame, a final ``status`` is published, the recorder is fsync'd and closed, the sockets
closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engines.base import EngineError
from engines.triton_backend import EngineUnavailableError
from stream import messages, wire
from stream.control import DEFAULT_CTRL, ControlServer
from stream.exam import ExamSession, ExamStage
from stream.frames import Frame
from stream.lanes import (
    FrameResult,
    ModelSet,
    Prepared,
    ScoringLane,
    SegmentationLane,
    find_models,
    load_model,
)
from stream.messages import REAL_SOURCE_KINDS, AggregatorSettings, ClipState, domain_warning
from stream.publisher import DEFAULT_PUB, Publisher
from stream.recorder import Recorder, results_path
from stream.stats import RateMeter, RollingPercentiles

__all__ = ["REAL_SOURCE_KINDS", "EngineConfig", "Graph", "StreamEngine", "compose", "describe",
           "domain_warning", "thread_budget"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SOURCE_ERROR = 3
LATENCY_WINDOW_S = 5.0


@dataclass
class EngineConfig:
    """Everything ``lus-stream`` can set (the CLI maps its options 1:1 onto these fields)."""

    source: Any  # stream.capture.SourceSpec
    engines_dir: Path = Path("models")
    backend: str = "auto"
    pub: str = DEFAULT_PUB
    ctrl: str | None = DEFAULT_CTRL
    record_dir: Path | None = None
    seg_every: int = 1
    mc_samples: int = 0
    mc_every: int = 5
    window: int | None = None
    window_s: float | None = None
    aggregator: str = "uninorm"
    max_frames: int | None = None
    max_batch: int = 8
    capacity: int = 8
    threads: int | None = None
    stream_id: str | None = None
    print_status: bool = False
    status_period_s: float = 1.0
    insecure: bool = False
    seed: int = 0
    publish_frames: bool = False
    record_frames: bool = False
    keys_dir: Path | None = None  # CURVE keys as written by `lus-stream keygen DIR`
    triton_url: str | None = None  # backend "triton": the inference server's gRPC HOST:PORT
    exam: bool = True  # the exam stage (control commands exam_start/zone/freeze/..., topic "exam")
    store_patient_id: bool = False  # exam patient ids in the clear (default: salted sha256)
    validate: str = "sample"  # wire validation of published messages: "all" | "sample" | "off"
    extra: dict[str, Any] = field(default_factory=dict)


def thread_budget(cores: int | None, with_seg: bool) -> tuple[int, int]:
    """(scoring, segmentation) ONNX Runtime intra-op threads for this many cores.

    The capture process needs ~12 % of a core at 39 fps, so no core is reserved for it. The scoring
    lane gets about half of the rest; the segmentation lane runs at nice +10 with ORT's spin-wait
    off, so it may use every core the scoring lane leaves idle — at least 2 where there are 2:
    measured on 2 cores (docs/performance.md), 2 segmentation threads ran the lite ensemble at
    10.3 runs/s against 6.3 with 1, with the paced scoring lane's p99 unchanged (7.6 ms); with
    spin-wait on, the same 2 threads fell to 5.0 runs/s.
    """
    cores = max(1, cores or 1)
    scoring = max(1, (cores - 1) // 2) if with_seg else max(1, cores - 1)
    if not with_seg:
        return scoring, 0
    return scoring, 1 if cores == 1 else max(2, cores - scoring)


# ------------------------------------------------------------------------------ stage interfaces
@runtime_checkable
class FrameSource(Protocol):
    """What the scoring loop takes frames from: :class:`stream.capture.CaptureProcess`, the exam-clips
    chain, an in-process test source."""

    @property
    def finished(self) -> bool: ...

    @property
    def exit_error(self) -> str | None: ...

    def get_batch(self, max_n: int, timeout: float | None = None) -> list[Frame]: ...

    def stats(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


class ClipAggregator(Protocol):
    """Frame probabilities → clip probabilities (:mod:`stream.aggregate`)."""

    count: int

    def update(self, probs: Any, t_ns: int | None = None) -> np.ndarray: ...

    def decision(self) -> tuple[int, list[int]]: ...

    def reset(self) -> None: ...


# ------------------------------------------------------------------------------ queues and stages
class LatestSlot:
    """A one-item mailbox: ``offer`` replaces what is waiting (counted), ``take`` waits for an item."""

    def __init__(self) -> None:
        self._item: Any = None
        self._cond = threading.Condition()
        self.replaced = 0
        self.closed = False

    def offer(self, item: Any) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None and not self.closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class ClipStage:
    """The aggregate stage: folds each scored frame into the clip aggregate; ``reset`` (control thread:
    the ``reset`` command, an exam zone change) starts a new clip. One lock orders the two threads."""

    def __init__(self, aggregator: ClipAggregator, on_reset: Callable[[], None] | None = None) -> None:
        self.aggregator = aggregator
        self.clip = 0
        self._lock = threading.Lock()
        self._on_reset = on_reset

    def fold(self, res: FrameResult, t_capture_ns: int) -> ClipState:
        t0 = time.monotonic_ns()
        with self._lock:
            probs = self.aggregator.update(res.probs, t_ns=t_capture_ns)
            score, tie = self.aggregator.decision()
            count, clip = int(self.aggregator.count), self.clip
        t1 = time.monotonic_ns()
        return ClipState(probs, score, tie, count, clip, t1, t1 - t0)

    def reset(self) -> int:
        """Start a new clip aggregate (zone change, new view); returns the new clip number."""
        with self._lock:
            self.aggregator.reset()
            self.clip += 1
            clip = self.clip
        if self._on_reset is not None:
            self._on_reset()
        return clip


@dataclass(frozen=True)
class Connection:
    """One edge of the graph: what flows from ``src`` to ``dst`` and through which queue."""

    src: str
    dst: str
    what: str
    policy: str


# Queue policies, as stated on each connection.
DROP_OLDEST = "drop-oldest ring (live sources: the newest frames win)"
LOSSLESS = "lossless ring (files as fast as possible: capture waits)"
LATEST_ONLY = "latest-only slot (a newer offer replaces the waiting one, counted as skipped)"
DIRECT = "direct call, same thread, in frame order"
NON_BLOCKING = "non-blocking PUB (a full subscriber queue drops, counted)"
IN_ORDER = "appended under the publisher's lock, in publish order"
TIMER = "timer, once per status period"
REQUEST_REPLY = "REQ/REP command (control thread)"


@dataclass
class Graph:
    """The stages :func:`compose` builds and the connections between them."""

    source: FrameSource  # capture process: (nothing) → Frame
    scoring: ScoringLane | None  # list[Prepared] → list[FrameResult]
    segmentation: SegmentationLane | None  # Prepared → SegResult
    clip: ClipStage  # FrameResult → ClipState (clip probs, score, tie)
    exam: ExamStage | None  # video → zone scores, exam table
    recorder: Recorder | None  # published (topic, map, payloads) → results file
    publisher: Publisher  # (topic, map, payloads) → PUB socket (+ recorder)
    control: ControlServer | None  # REP requests → command table → replies
    seg_slot: LatestSlot  # prepare → segment
    connections: list[Connection]
    models: ModelSet
    notes: list[str]
    threads: tuple[int, int]
    curve: Any = None  # stream.security.CurveServer when keys were given

    @property
    def aggregator(self) -> ClipAggregator:
        return self.clip.aggregator

    @property
    def stages(self) -> list[str]:
        """Stage names in the order they first appear in the connections."""
        names: list[str] = []
        for c in self.connections:
            for n in (c.src, c.dst):
                if n not in names:
                    names.append(n)
        return names


def compose(cfg: EngineConfig, source: FrameSource | None = None) -> Graph:
    """Build every stage of the engine from ``cfg`` and connect them (``source`` overrides capture)."""
    from stream.aggregate import load_neutral_elements, load_temperature, make_aggregator

    stream_id = cfg.stream_id or "lus"
    models = find_models(cfg.engines_dir)
    notes = list(models.notes)
    threads = thread_budget(os.cpu_count(), with_seg=bool(models.seg))
    if cfg.threads:
        threads = (cfg.threads, threads[1])
    wires: list[Connection] = []

    def connect(src: str, dst: str, what: str, policy: str) -> None:
        wires.append(Connection(src, dst, what, policy))

    # source: the capture process reads, crops to the ultrasound region and stamps each frame
    if source is None:
        from stream.capture import CaptureProcess

        source = CaptureProcess(cfg.source, capacity=cfg.capacity)
    kind = getattr(cfg.source, "kind", "")
    lossless = bool(getattr(cfg.source, "as_fast_as_possible", False)) and kind in (
        "clip", "folder", "dicom", "synthetic")
    connect("source", "prepare", "Frame (seq, t_capture_ns, ROI crop)", LOSSLESS if lossless else DROP_OLDEST)

    # prepare → score: every waiting frame (≤ max_batch) as one batch; letterbox shared by both lanes
    scoring = None
    if models.frame is not None:
        scoring = ScoringLane(load_model(models.frame, cfg.backend, threads[0], cfg.triton_url),
                              max_batch=cfg.max_batch)
    connect("prepare", "score", "list[Prepared], one model call", DIRECT)

    # prepare → segment: the newest prepared frame, whenever the (niced) lane is free
    segmentation = None
    if models.seg:
        members = [load_model(p, cfg.backend, threads[1], cfg.triton_url) for p in models.seg]
        segmentation = SegmentationLane(members, cfg.mc_samples, cfg.mc_every, seed=cfg.seed)
    seg_slot = LatestSlot()
    connect("prepare", "segment", "Prepared (every --seg-every frames)", LATEST_ONLY)
    warning = domain_warning(scoring.domain if scoring else None, str(getattr(cfg.source, "kind", "unknown")))
    if warning is not None:  # logged once at start; every status message carries it too
        notes.append(warning)

    # recorder: every published message → results file (flushed per message, fsync ≥ 1/s)
    recorder = None
    if cfg.record_dir is not None:
        meta = {
            "source": getattr(cfg.source, "kind", None),
            "path": getattr(cfg.source, "path", None),
            "frame_model": str(models.frame) if models.frame else None,
            "seg_models": [str(p) for p in models.seg],
            "aggregator": cfg.aggregator,
            "window": cfg.window,
            "window_s": cfg.window_s,
        }
        recorder = Recorder(results_path(cfg.record_dir, stream_id), stream_id, meta=meta)

    # score → aggregate: frame probabilities → clip probabilities (uninorm fold or a baseline, windowed)
    neutral, temperature = None, None
    if cfg.aggregator == "uninorm" and models.aggregator is not None:
        neutral, temperature = load_neutral_elements(models.aggregator), load_temperature(models.aggregator)
    aggregator = make_aggregator(cfg.aggregator, neutral, window_frames=cfg.window,
                                 window_seconds=cfg.window_s, temperature=temperature)
    clip = ClipStage(aggregator, on_reset=recorder.sync if recorder is not None else None)
    connect("score", "aggregate", "FrameResult (probs, score, STN boxes)", DIRECT)

    # transport security: CURVE server keys + client allow-list, shared by both sockets
    curve = None
    if cfg.keys_dir is not None:
        import zmq

        from stream.security import CurveServer

        curve = CurveServer.from_dir(zmq.Context.instance(), cfg.keys_dir)

    # publish: wire messages → PUB socket (non-blocking) → record
    publisher = Publisher(cfg.pub, stream_id=stream_id, recorder=recorder, insecure=cfg.insecure, curve=curve,
                          validate=cfg.validate)
    if not cfg.record_frames:  # frames are big (≈1.5 MB/s as JPEG): recorded only when asked
        publisher.unrecorded.add("image")
    connect("aggregate", "publish", "frame + video (+ image) messages", DIRECT)
    connect("segment", "publish", "seg messages", DIRECT)
    connect("publish", "record", "every published message", IN_ORDER)
    connect("publish", "displays", "ZeroMQ PUB, msgpack (docs/wire.md)", NON_BLOCKING)

    # control: REP requests → command table (reset → aggregate, exam commands → exam, stop → engine)
    control = ControlServer(cfg.ctrl, insecure=cfg.insecure, curve=curve) if cfg.ctrl else None
    connect("control", "aggregate", "reset", REQUEST_REPLY)

    # exam: video messages + exam commands → zone scores and the exam table (topic "exam")
    exam = None
    if cfg.exam:
        exam = ExamStage(ExamSession(store_patient_id=cfg.store_patient_id), stream_id,
                         publish=lambda msg: publisher.publish("exam", msg), reset_clip=clip.reset)
        if control is not None:
            exam.register(control)
        connect("aggregate", "exam", "video messages", DIRECT)
        connect("control", "exam", "exam_start, zone, freeze, redo, exam_stop, exam", REQUEST_REPLY)
        connect("exam", "publish", "exam messages (on every change)", DIRECT)

    # status: source, lanes, drops, latency, exam summary → one status message per period
    connect("status", "publish", "status message", TIMER)

    return Graph(source, scoring, segmentation, clip, exam, recorder, publisher, control, seg_slot, wires,
                 models, notes, threads, curve)


def describe(g: Graph) -> str:
    """The graph as text: one line per connection with its queue policy (logged at INFO at start)."""
    width = max(len(f"{c.src} → {c.dst}") for c in g.connections)
    lines = [f"{f'{c.src} → {c.dst}':<{width}}  {c.what}  [{c.policy}]" for c in g.connections]
    return "\n".join(lines)


class StreamEngine:
    """Runs a :class:`Graph`: the scoring loop in the calling thread, the other lanes in threads."""

    def __init__(self, cfg: EngineConfig, source: FrameSource | None = None) -> None:
        self.cfg = cfg
        self.stream_id = cfg.stream_id or "lus"
        self._owns_source = source is None  # an injected source is started by its owner
        self.g = compose(cfg, source)
        for note in self.g.notes:
            log.warning(note)
        log.info("graph:\n%s", describe(self.g))
        self.settings = AggregatorSettings(cfg.aggregator, cfg.window, cfg.window_s)
        self._stop = threading.Event()
        self.frames_scored = 0
        self.frames_seen = 0
        self.last_seq = -1
        self.last_frame: dict[str, Any] | None = None
        self.last_video: dict[str, Any] | None = None
        self.status_seq = 0
        self.started_ns = time.monotonic_ns()
        self.latency = RollingPercentiles(LATENCY_WINDOW_S)
        self.score_rate = RateMeter()
        self.seg_rate = RateMeter()
        self.seg_runs = 0
        self.scoring_lost = 0  # frames not scored: the (remote) frame model was unreachable
        self.seg_lost = 0  # segmentation runs not made for the same reason
        self._last_seg_offer = -(10**9)
        self.state_override: str | None = None
        self.on_video: list[Callable[[dict[str, Any]], None]] = []  # further video consumers (tests, tools)
        self.status_fields: dict[str, Callable[[], Any]] = {}  # further status fields
        if self.g.exam is not None:
            self.status_fields["exam"] = self.g.exam.summary
        self._threads: list[threading.Thread] = []
        if self.g.control is not None:
            self.g.control.register("status", lambda req: {"status": self.status_message()},
                                    "the current status map (same fields as the status topic)")
            self.g.control.register("reset", lambda req: {"clip": self.reset_clip()},
                                    "reset the clip aggregate; reply: the new clip number")
            self.g.control.register("stop", self._stop_cmd, "stop the engine cleanly (drain, flush, exit 0)")

    # ------------------------------------------------------------------------------ control
    @property
    def clip(self) -> int:
        return self.g.clip.clip

    def _stop_cmd(self, _req: dict[str, Any]) -> dict[str, Any]:
        self.request_stop()
        return {"stopping": True}

    def request_stop(self) -> None:
        self._stop.set()

    def reset_clip(self) -> int:
        """Start a new clip aggregate (zone change, new view); returns the new clip number."""
        return self.g.clip.reset()

    # ------------------------------------------------------------------------------ status
    def _source_stats(self) -> dict[str, Any]:
        try:
            return self.g.source.stats()
        except Exception as err:  # a stopped capture has final stats; anything else: report it
            return {"state": "failed", "error": str(err), "read": 0, "dropped": 0, "fps": 0.0}

    def _lane(self, lane: ScoringLane | SegmentationLane | None, fps: float, what: str) -> dict[str, Any]:
        if lane is None:
            return messages.lane_status(False, f"no {what} model in {self.cfg.engines_dir}")
        engines = lane.members if isinstance(lane, SegmentationLane) else [lane.engine]
        lost = [e for e in engines if getattr(e, "state", "ok") == "lost"]
        reason = f"model server unreachable: {getattr(lost[0], 'last_error', None)}" if lost else None
        return messages.lane_status(True, reason, fps=round(fps, 3), model=lane.label,
                                    backend=",".join(sorted({str(e.backend) for e in engines})),
                                    domain=lane.domain, dataset=lane.dataset, state="lost" if lost else "ok")

    def status_message(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        st = self._source_stats()
        g = self.g
        seg = self._lane(g.segmentation, self.seg_rate.rate(now), "segmentation")
        if g.segmentation is not None:
            seg |= {"runs": self.seg_runs, "lost_frames": self.seg_lost,
                    "members": len(g.segmentation.members), "mc_samples": g.segmentation.mc_samples,
                    "every": self.cfg.seg_every, "threads": g.threads[1]}
        scoring = self._lane(g.scoring, self.score_rate.rate(now), "frame-score")
        if g.scoring is not None:
            scoring |= {"runs": self.frames_scored, "threads": g.threads[0], "lost_frames": self.scoring_lost}
        state = self.state_override or str(st.get("state") or "running")
        if state not in wire.SOURCE_STATES:
            state = "running"
        return messages.status_message(messages.StatusInputs(
            stream_id=self.stream_id, seq=self.status_seq, now_ns=now, uptime_s=(now - self.started_ns) / 1e9,
            source_kind=str(getattr(self.cfg.source, "kind", "unknown")), source_stats=st,
            source_id=str(st.get("source_id") or getattr(g.source, "source_id", "?")), state=state,
            scoring=scoring, segmentation=seg,
            drops={"capture": int(st.get("dropped") or 0), "publish": g.publisher.dropped,
                   "segmentation_skipped": g.seg_slot.replaced, "roi_search": int(st.get("roi_search") or 0),
                   "scoring_lost": self.scoring_lost},
            latency_ns=self.latency.percentiles(now_ns=now), latency_window_s=LATENCY_WINDOW_S,
            frames_scored=self.frames_scored, last_frame_seq=self.last_seq, aggregator=self.settings,
            security=g.publisher.security, recording=str(g.recorder.path) if g.recorder else None,
            extra={name: fn() for name, fn in self.status_fields.items()},
        ))  # fmt: skip

    def publish_status(self) -> dict[str, Any]:
        msg = self.status_message()
        self.status_seq += 1
        self.g.publisher.publish("status", msg)
        if self.cfg.print_status:
            print(messages.status_line(msg, self.last_frame, self.last_video), flush=True)
        return msg

    def _status_loop(self) -> None:
        period = self.cfg.status_period_s
        next_t = time.monotonic() + period
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            next_t += period
            try:
                self.publish_status()
            except Exception:  # status must never take the engine down
                log.exception("status publishing failed")

    # ------------------------------------------------------------------------------ lanes
    def _score(self, batch: Sequence[Prepared]) -> None:
        """score → aggregate → publish (+ exam) for one batch; every stage timing is taken before the
        first message of the batch is published."""
        lane, g = self.g.scoring, self.g
        if lane is None:
            self.frames_seen += len(batch)
            self.last_seq = batch[-1].frame.seq
            return
        try:
            results: list[FrameResult] = lane.run(batch)
        except EngineError as err:
            # a served model is gone (or the server refused this request): these frames are dropped and
            # counted, never scored as zeros; the engine probes and recovers. Locally, an EngineError is
            # a bug (a wrong input) and stops the engine as before.
            if not (isinstance(err, EngineUnavailableError) or lane.engine.remote):
                raise
            self.scoring_lost += len(batch)
            self.frames_seen += len(batch)
            self.last_seq = batch[-1].frame.seq
            if self.scoring_lost == len(batch) or self.scoring_lost % 100 < len(batch):
                log.warning("scoring lane: %s (%d frames dropped so far)", err, self.scoring_lost)
            return
        clips = [g.clip.fold(res, prep.frame.t_capture_ns) for prep, res in zip(batch, results, strict=True)]
        for prep, res, clip in zip(batch, results, clips, strict=True):
            fr = prep.frame
            frame_msg = messages.frame_message(self.stream_id, fr, res, clip)
            t_pub = g.publisher.publish("frame", frame_msg, ready_ns=messages.frame_ready_ns(res, clip))
            if self.cfg.publish_frames:
                g.publisher.publish("image", *messages.image_message(self.stream_id, fr))
            self.latency.add(t_pub - fr.t_capture_ns, t_pub)
            self.score_rate.tick(1, t_pub)
            video = messages.video_message(self.stream_id, fr, clip, self.settings)
            g.publisher.publish("video", video)
            self.frames_scored += 1
            self.frames_seen += 1
            self.last_seq = fr.seq
            self.last_frame, self.last_video = frame_msg, video
            if g.exam is not None:
                g.exam.on_video(video)
            for hook in self.on_video:
                hook(video)

    def _seg_loop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # best effort: scoring wins the CPU
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: per-thread nice
        lane = self.g.segmentation
        assert lane is not None
        while True:
            prep = self.g.seg_slot.take(0.2)
            if prep is None:
                if self.g.seg_slot.closed:
                    return
                continue
            try:
                self._segment(lane, prep)
            except EngineError as err:  # a served member gone or refusing: counted, status says why
                if not (isinstance(err, EngineUnavailableError)
                        or any(m.remote for m in lane.members)):
                    log.exception("segmentation lane failed on frame %d", prep.frame.seq)
                self.seg_lost += 1
            except Exception:
                log.exception("segmentation lane failed on frame %d", prep.frame.seq)

    def _segment(self, lane: SegmentationLane, prep: Prepared) -> None:
        t_start = time.monotonic_ns()
        res = lane.run(prep)
        t_done = time.monotonic_ns()
        self.seg_runs += 1
        self.seg_rate.tick(1, t_done)
        msg, payloads = messages.seg_message(self.stream_id, prep.frame, res, t_start,
                                             self.seg_rate.rate(t_done), len(lane.members))
        self.g.publisher.publish("seg", msg, payloads, ready_ns=t_done)

    # ------------------------------------------------------------------------------ main loop
    def _start_threads(self) -> None:
        if self.g.control is not None:
            self.g.control.start()
        if self.g.segmentation is not None:
            t = threading.Thread(target=self._seg_loop, name="segmentation", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._status_loop, name="status", daemon=True)
        t.start()
        self._threads.append(t)

    def _take(self, timeout: float) -> list[Frame]:
        limit = self.g.scoring.max_batch if self.g.scoring is not None else self.cfg.max_batch
        return list(self.g.source.get_batch(limit, timeout))  # never more than the model takes (TensorRT)

    def _handle(self, frames: list[Frame]) -> None:
        if self.cfg.max_frames is not None:
            frames = frames[: max(0, self.cfg.max_frames - self.frames_seen)]
        if not frames:
            return
        batch = [Prepared(f) for f in frames]
        self._score(batch)
        if self.g.segmentation is not None and self.frames_seen - self._last_seg_offer >= self.cfg.seg_every:
            self._last_seg_offer = self.frames_seen
            self.g.seg_slot.offer(batch[-1])

    def run(self) -> int:
        """Run until the source ends, ``max_frames``, a stop command or :meth:`request_stop`."""
        self._start_threads()
        if self._owns_source:
            self.g.source.start()  # type: ignore[attr-defined]  # CaptureProcess (injected ones run)
        try:
            while not self._stop.is_set():
                frames = self._take(0.1)
                if frames:
                    self._handle(frames)
                elif self.g.source.finished:
                    break
                if self.cfg.max_frames is not None and self.frames_seen >= self.cfg.max_frames:
                    break
            return self._shutdown()
        except BaseException:
            self._shutdown(failed=True)
            raise

    def _close_models(self) -> None:
        """Release every lane's engines (sessions, a served model's gRPC channel and probe thread)."""
        engines = ([self.g.scoring.engine] if self.g.scoring is not None else []) + (
            list(self.g.segmentation.members) if self.g.segmentation is not None else [])
        for engine in engines:
            try:
                engine.close()
            except Exception:
                log.exception("closing %s failed", engine.name)

    def _shutdown(self, failed: bool = False) -> int:
        """Drain, stop the lanes, publish the final status, flush the recorder, close the sockets."""
        if getattr(self, "_shut", False):
            return EXIT_OK
        self._shut = True
        src = self.g.source
        if not failed:  # frames already buffered are scored (bounded: one buffer's worth)
            for _ in range(max(1, self.cfg.capacity)):
                if self.cfg.max_frames is not None and self.frames_seen >= self.cfg.max_frames:
                    break
                frames = self._take(0.0)
                if not frames:
                    break
                self._handle(frames)
        exit_error = None
        try:
            exit_error = src.exit_error
        except Exception:
            exit_error = None
        finished = bool(getattr(src, "finished", False))
        try:
            src.stop()
        except Exception:
            log.exception("stopping the capture failed")
        self._stop.set()
        self.g.seg_slot.close()
        for t in self._threads:
            t.join(timeout=30.0)
        self._close_models()
        self.state_override = "failed" if exit_error else ("finished" if finished else "stopped")
        try:
            self.publish_status()
        except Exception:
            log.exception("final status failed")
        if self.g.control is not None:
            self.g.control.close()
        if self.g.recorder is not None:
            self.g.recorder.close()
        self.g.publisher.close()
        if self.g.curve is not None:
            self.g.curve.stop()
        if exit_error:
            log.error("source ended with an error: %s", exit_error)
            return EXIT_SOURCE_ERROR
        return EXIT_OK

