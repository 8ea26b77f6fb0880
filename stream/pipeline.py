"""The streaming engine: capture → preprocess → lanes → aggregator → publisher/recorder, + control.

The whole graph is built in ONE function, :func:`build`, where each stage's inputs and outputs are
spelled out (Holoscan style); :class:`StreamEngine` runs it:

* main thread — the scoring loop: take every frame waiting in the capture buffer (up to
  ``max_batch``), prepare them once (:class:`~stream.lanes.Prepared`), score them as one batch,
  fold each frame's probabilities into the clip aggregator, publish ``frame`` + ``video``;
  offer the newest prepared frame to the segmentation lane;
* ``segmentation`` thread — takes the newest offered frame whenever it is free (older offers are
  replaced, counted as skipped), runs the ensemble (MC-dropout every ``mc_every``-th run),
  publishes ``seg``. It runs at a lower OS priority (nice +10): on a CPU the scoring lane wins;
* ``status`` thread — one ``status`` message per second (and a ``--print`` line);
* ``control`` thread — the REP command table (``status``, ``reset``, ``stop`` + what later
  features register).

Thread budget (cores = ``os.cpu_count()``): the capture process takes one core; the rest is split
between the lanes' ONNX Runtime intra-op pools, scoring ``max(1, (cores−1)//2)`` and segmentation
``max(1, cores−1−scoring)`` (without a segmentation model the scoring lane gets ``cores−1``).
Each lane needs at least one thread, so on 2 cores the engine uses 3 busy threads on 2 cores;
that is why segmentation runs niced. ``--threads`` overrides the scoring lane's count.

Losslessness: with a finite file source and ``as_fast_as_possible`` the capture process blocks
instead of dropping, and this loop scores every frame it gets, so every decoded frame is
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream import wire
from stream.control import DEFAULT_CTRL, ControlServer
from stream.lanes import (
    UNCERTAINTY_SCALE,
    FrameResult,
    ModelSet,
    Prepared,
    ScoringLane,
    SegmentationLane,
    encode_jpeg,
    encode_png,
    find_models,
    load_model,
)
from stream.publisher import DEFAULT_PUB, Publisher
from stream.recorder import Recorder, results_path
from stream.stats import RateMeter, RollingPercentiles

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


@dataclass
class Graph:
    """The stages :func:`build` wires together (each documented with its input → output)."""

    source: Any  # capture process: (nothing) → Frame
    scoring: ScoringLane | None  # list[Prepared] → list[FrameResult]
    segmentation: SegmentationLane | None  # Prepared → SegResult
    aggregator: Any  # probs[4] → video probs[4]
    recorder: Recorder | None  # published (topic, map, payloads) → results file
    publisher: Publisher  # (topic, map, payloads) → PUB socket (+ recorder)
    control: ControlServer | None  # REP requests → command table → replies
    models: ModelSet
    notes: list[str]
    threads: tuple[int, int]
    curve: Any = None  # stream.security.CurveServer when keys were given


def build(cfg: EngineConfig, source: Any = None) -> Graph:
    """Construct every stage of the engine from ``cfg`` (``source`` overrides the capture process)."""
    from stream.aggregate import load_neutral_elements, load_temperature, make_aggregator

    stream_id = cfg.stream_id or "lus"
    models = find_models(cfg.engines_dir)
    notes = list(models.notes)
    threads = thread_budget(os.cpu_count(), with_seg=bool(models.seg))
    if cfg.threads:
        threads = (cfg.threads, threads[1])

    # capture: frames (seq, t_capture_ns, ROI-cropped grey image) → bounded buffer
    if source is None:
        from stream.capture import CaptureProcess

        source = CaptureProcess(cfg.source, capacity=cfg.capacity)

    # scoring lane: list[Prepared] → probs, score, STN boxes (every frame)
    scoring = None
    if models.frame is not None:
        scoring = ScoringLane(load_model(models.frame, cfg.backend, threads[0]), max_batch=cfg.max_batch)

    # segmentation lane: newest Prepared → class map (+ MC uncertainty) (best effort)
    segmentation = None
    if models.seg:
        members = [load_model(p, cfg.backend, threads[1]) for p in models.seg]
        segmentation = SegmentationLane(members, cfg.mc_samples, cfg.mc_every, seed=cfg.seed)
    warning = domain_warning(scoring.domain if scoring else None, str(getattr(cfg.source, "kind", "unknown")))
    if warning is not None:  # logged once at start; every status message carries it too
        notes.append(warning)

    # aggregator: frame probs → clip probs (uninorm fold, or a baseline), optional sliding window
    neutral, temperature = None, None
    if cfg.aggregator == "uninorm" and models.aggregator is not None:
        neutral, temperature = load_neutral_elements(models.aggregator), load_temperature(models.aggregator)
    aggregator = make_aggregator(cfg.aggregator, neutral, window_frames=cfg.window,
                                 window_seconds=cfg.window_s, temperature=temperature)

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

    # transport security: CURVE server keys + client allow-list, shared by both sockets
    curve = None
    if cfg.keys_dir is not None:
        import zmq

        from stream.security import CurveServer

        curve = CurveServer.from_dir(zmq.Context.instance(), cfg.keys_dir)

    # publisher: wire messages → PUB socket (non-blocking) and the recorder
    publisher = Publisher(cfg.pub, stream_id=stream_id, recorder=recorder, insecure=cfg.insecure, curve=curve)
    if not cfg.record_frames:  # frames are big (≈1.5 MB/s as JPEG): recorded only when asked
        publisher.unrecorded.add("image")

    # control: REP requests → command table (the engine registers status/reset/stop)
    control = ControlServer(cfg.ctrl, insecure=cfg.insecure, curve=curve) if cfg.ctrl else None

    return Graph(
        source, scoring, segmentation, aggregator, recorder, publisher, control, models, notes, threads, curve
    )


# Source kinds that are real video (everything but the simulator); "unknown" = an in-process source
# without a SourceSpec (tests), which is not called real.
REAL_SOURCE_KINDS = ("device", "clip", "folder", "dicom", "url")


def domain_warning(scoring_domain: str | None, source_kind: str) -> str | None:
    """The ``status`` message's ``domain_warning``: set when the scoring model was trained on
    synthetic data only and the source is real video; None otherwise."""
    if scoring_domain == "synthetic" and source_kind in REAL_SOURCE_KINDS:
        return (f"frame model trained on synthetic data only; this is real video ({source_kind}): "
                "scores are not meaningful")  # fmt: skip
    return None


class StreamEngine:
    """Runs a :class:`Graph`: the scoring loop in the calling thread, the other lanes in threads."""

    def __init__(self, cfg: EngineConfig, source: Any = None) -> None:
        self.cfg = cfg
        self.stream_id = cfg.stream_id or "lus"
        self._owns_source = source is None  # an injected source is started by its owner
        self.g = build(cfg, source)
        for note in self.g.notes:
            log.warning(note)
        self._stop = threading.Event()
        self._agg_lock = threading.Lock()
        self._seg_slot = LatestSlot()
        self.clip = 0
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
        self.state_override: str | None = None
        self.on_video: list[Callable[[dict[str, Any]], None]] = []  # e.g. the exam session
        self.status_fields: dict[str, Callable[[], Any]] = {}  # extra status fields, e.g. "exam"
        self._threads: list[threading.Thread] = []
        if self.g.control is not None:
            self.g.control.register("status", lambda req: {"status": self.status_message()},
                                    "the current status map (same fields as the status topic)")
            self.g.control.register("reset", lambda req: {"clip": self.reset_clip()},
                                    "reset the clip aggregate; reply: the new clip number")
            self.g.control.register("stop", self._stop_cmd, "stop the engine cleanly (drain, flush, exit 0)")

    # ------------------------------------------------------------------------------ control
    def _stop_cmd(self, _req: dict[str, Any]) -> dict[str, Any]:
        self.request_stop()
        return {"stopping": True}

    def request_stop(self) -> None:
        self._stop.set()

    def reset_clip(self) -> int:
        """Start a new clip aggregate (zone change, new view); returns the new clip number."""
        with self._agg_lock:
            self.g.aggregator.reset()
            self.clip += 1
            clip = self.clip
        if self.g.recorder is not None:
            self.g.recorder.sync()
        return clip

    # ------------------------------------------------------------------------------ status
    def _source_stats(self) -> dict[str, Any]:
        try:
            return self.g.source.stats()
        except Exception as err:  # a stopped capture has final stats; anything else: report it
            return {"state": "failed", "error": str(err), "read": 0, "dropped": 0, "fps": 0.0}

    def _lane(self, lane: Any, fps: float, what: str) -> dict[str, Any]:
        if lane is None:
            return {"enabled": False, "fps": 0.0, "model": None, "backend": None,
                    "reason": f"no {what} model in {self.cfg.engines_dir}", "domain": None, "dataset": None}
        engines = lane.members if isinstance(lane, SegmentationLane) else [lane.engine]
        return {"enabled": True, "fps": round(fps, 3), "model": lane.label,
                "backend": ",".join(sorted({str(e.backend) for e in engines})), "reason": None,
                "domain": lane.domain, "dataset": lane.dataset}

    def status_message(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        st = self._source_stats()
        lat = self.latency.percentiles(now_ns=now)
        seg = self._lane(self.g.segmentation, self.seg_rate.rate(now), "segmentation")
        if self.g.segmentation is not None:
            seg |= {"runs": self.seg_runs, "members": len(self.g.segmentation.members),
                    "mc_samples": self.g.segmentation.mc_samples, "every": self.cfg.seg_every,
                    "threads": self.g.threads[1]}
        scoring = self._lane(self.g.scoring, self.score_rate.rate(now), "frame-score")
        if self.g.scoring is not None:
            scoring |= {"runs": self.frames_scored, "threads": self.g.threads[0]}
        source_kind = str(getattr(self.cfg.source, "kind", "unknown"))
        state = self.state_override or str(st.get("state") or "running")
        if state not in wire.SOURCE_STATES:
            state = "running"
        msg = wire.header(self.stream_id, self.status_seq, now, now)
        msg |= {
            "uptime_s": (now - self.started_ns) / 1e9,
            "input_fps": float(st.get("fps") or 0.0),
            "lanes": {"scoring": scoring, "segmentation": seg},
            "drops": {"capture": int(st.get("dropped") or 0), "publish": self.g.publisher.dropped,
                      "segmentation_skipped": self._seg_slot.replaced,
                      "roi_search": int(st.get("roi_search") or 0)},
            "latency_ms": {k: (None if lat[k] is None else lat[k] / 1e6) for k in ("p50", "p95", "p99")}
            | {"n": lat["n"], "window_s": LATENCY_WINDOW_S},
            "source": {"kind": source_kind, "state": state,
                       "id": str(st.get("source_id") or getattr(self.g.source, "source_id", "?")),
                       "error": st.get("exit_error") or st.get("error"), "read": int(st.get("read") or 0),
                       "fps": float(st.get("fps") or 0.0)},
            "frames_scored": self.frames_scored,
            "last_frame_seq": self.last_seq,
            "aggregator": {"kind": self.cfg.aggregator, "window": self.cfg.window,
                           "window_s": self.cfg.window_s},
            "security": self.g.publisher.security,
            "recording": str(self.g.recorder.path) if self.g.recorder else None,
            "domain_warning": domain_warning(scoring.get("domain"), source_kind),
        }
        for name, field_fn in self.status_fields.items():
            msg[name] = field_fn()
        return msg

    def publish_status(self) -> dict[str, Any]:
        msg = self.status_message()
        self.status_seq += 1
        self.g.publisher.publish("status", msg)
        if self.cfg.print_status:
            print(self.status_line(msg), flush=True)
        return msg

    def status_line(self, st: dict[str, Any]) -> str:
        lat = st["latency_ms"]
        p50, p99 = ("-" if lat[k] is None else f"{lat[k]:.0f}" for k in ("p50", "p99"))
        line = (f"[{st['uptime_s']:6.1f}s] {st['source']['state']:<8} in {st['input_fps']:5.1f} fps | "
                f"score {st['lanes']['scoring']['fps']:5.1f} fps p50 {p50} p99 {p99} ms | "
                f"seg {st['lanes']['segmentation']['fps']:4.1f} fps | drops {st['drops']['capture']}")
        if self.last_frame is not None and self.last_video is not None:
            f, v = self.last_frame, self.last_video
            line += (f" | frame {f['score']} ({max(f['probs']):.2f}) clip {v['score']} "
                     f"({max(v['probs']):.2f}, {v['frames']} fr)")
        return line

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
    def _score(self, batch: list[Prepared]) -> None:
        lane, pub = self.g.scoring, self.g.publisher
        if lane is None:
            self.frames_seen += len(batch)
            self.last_seq = batch[-1].frame.seq
            return
        results: list[FrameResult] = lane.run(batch)
        for prep, res in zip(batch, results, strict=True):
            fr = prep.frame
            with self._agg_lock:
                video_probs = self.g.aggregator.update(res.probs, t_ns=fr.t_capture_ns)
                video_score = int(self.g.aggregator.score())
                video_tie = self.g.aggregator.tie()
                count, clip = int(self.g.aggregator.count), self.clip
            t_agg = time.monotonic_ns()
            msg = wire.header(self.stream_id, fr.seq, fr.t_capture_ns)
            msg |= {
                "probs": res.probs, "score": res.score, "boxes": res.boxes,
                "roi": list(fr.roi), "source_hw": list(fr.source_hw),
                "stages_ns": {"wait": max(0, res.t_start_ns - fr.t_capture_ns),
                              "preprocess": res.t_inputs_ns - res.t_start_ns,
                              "infer": res.t_inferred_ns - res.t_inputs_ns,
                              "aggregate": t_agg - res.t_inferred_ns, "publish": 0},
                "batch": res.batch, "clip": clip,
            }
            t_pub = pub.publish("frame", msg, ready_ns=t_agg)
            if self.cfg.publish_frames:
                self._publish_image(fr)
            self.latency.add(t_pub - fr.t_capture_ns, t_pub)
            self.score_rate.tick(1, t_pub)
            video = wire.header(self.stream_id, fr.seq, fr.t_capture_ns)
            video |= {"probs": video_probs / video_probs.sum(), "score": video_score, "tie": video_tie,
                      "kind": self.cfg.aggregator, "window": self.cfg.window, "window_s": self.cfg.window_s,
                      "frames": count, "clip": clip}
            pub.publish("video", video)
            self.frames_scored += 1
            self.frames_seen += 1
            self.last_seq = fr.seq
            self.last_frame, self.last_video = msg, video
            for hook in self.on_video:
                hook(video)

    def _publish_image(self, fr: Any) -> None:
        """The ROI-cropped frame as JPEG on topic ``image`` (for displays on another host)."""
        h, w = fr.image.shape
        msg = wire.header(self.stream_id, fr.seq, fr.t_capture_ns)
        msg |= {"image": {"payload": 0, "encoding": "jpeg", "hw": [h, w]}, "roi": list(fr.roi),
                "source_hw": list(fr.source_hw)}
        self.g.publisher.publish("image", msg, [encode_jpeg(fr.image)])

    def _seg_loop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # best effort: scoring wins the CPU
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: per-thread nice
        lane = self.g.segmentation
        assert lane is not None
        while True:
            prep = self._seg_slot.take(0.2)
            if prep is None:
                if self._seg_slot.closed:
                    return
                continue
            try:
                self._segment(lane, prep)
            except Exception:
                log.exception("segmentation lane failed on frame %d", prep.frame.seq)

    def _segment(self, lane: SegmentationLane, prep: Prepared) -> None:
        fr = prep.frame
        t_start = time.monotonic_ns()
        res = lane.run(prep)
        t_done = time.monotonic_ns()
        payloads = [encode_png(res.class_map)]
        h, w = res.class_map.shape
        unc = None
        if res.uncertainty is not None:
            payloads.append(encode_png(res.uncertainty))
            unc = {"payload": 1, "encoding": "png", "hw": [h, w], "scale": UNCERTAINTY_SCALE,
                   "samples": res.samples}
        self.seg_runs += 1
        self.seg_rate.tick(1, t_done)
        msg = wire.header(self.stream_id, fr.seq, fr.t_capture_ns)
        msg |= {
            "class_map": {"payload": 0, "encoding": "png", "hw": [h, w]},
            "classes": list(wire.SEG_CLASSES),
            "roi": list(fr.roi), "source_hw": list(fr.source_hw),
            "uncertainty": unc,
            "rate_hz": round(self.seg_rate.rate(t_done), 3),
            "members": len(lane.members),
            "stages_ns": {"wait": max(0, t_start - fr.t_capture_ns), "preprocess": res.preprocess_ns,
                          "infer": res.infer_ns, "publish": 0},
            "class_fractions": res.class_fractions,
        }
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

    def _take(self, timeout: float) -> list[Any]:
        src = self.g.source
        if hasattr(src, "get_batch"):
            limit = self.g.scoring.max_batch if self.g.scoring is not None else self.cfg.max_batch
            return list(src.get_batch(limit, timeout))  # never more than the model takes (TensorRT profile)
        frame = src.get(timeout)
        return [] if frame is None else [frame]

    def _handle(self, frames: list[Any]) -> None:
        if self.cfg.max_frames is not None:
            frames = frames[: max(0, self.cfg.max_frames - self.frames_seen)]
        if not frames:
            return
        batch = [Prepared(f) for f in frames]
        self._score(batch)
        if self.g.segmentation is not None and self.frames_seen - self._last_seg_offer >= self.cfg.seg_every:
            self._last_seg_offer = self.frames_seen
            self._seg_slot.offer(batch[-1])

    def run(self) -> int:
        """Run until the source ends, ``max_frames``, a stop command or :meth:`request_stop`."""
        self._last_seg_offer = -(10**9)
        self._start_threads()
        if self._owns_source:
            self.g.source.start()
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
        self._seg_slot.close()
        for t in self._threads:
            t.join(timeout=30.0)
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
