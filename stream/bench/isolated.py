"""Stages timed in isolation, with the same code the engine runs, where the wire messages cannot show
them: decode (``stream.capture.make_source`` → ``Source.read``), ROI detection/tracking
(``stream.roi.RoiTracker``), preprocessing (``stream.lanes.Prepared.input`` → ``engines.preprocess``),
each model on each backend (``engines.load_engine``, batch 1 and larger batches), serialisation
(``stream.wire.encode`` of a real ``frame`` message, validation included as the publisher does,
and the subscriber's unpack), and the streaming aggregator's per-update cost after 10² and 10⁵
frames (``stream.aggregate``).

Every timing is labelled ``isolated``: one thread of this process, nothing else of the engine
running; wall time and CPU time (``time.process_time``) are both given, the CPU time being the
better estimate on a machine shared with other work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.stats import summarise_ns


def _timed(fn: Callable[[], Any], n: int) -> tuple[list[int], float]:
    """Wall ns of ``n`` calls and the mean CPU seconds per call."""
    walls = []
    cpu0 = time.process_time()
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        walls.append(time.perf_counter_ns() - t)
    return walls, (time.process_time() - cpu0) / max(1, n)


def _summary(walls: Sequence[int], cpu_s: float | None = None) -> dict[str, Any]:
    s = summarise_ns(walls).as_dict()
    mean_s = s["mean_ms"] / 1e3 if s["n"] else float("nan")
    s["fps"] = 1.0 / mean_s if mean_s and mean_s > 0 else float("nan")
    if cpu_s is not None:
        s["cpu_ms"] = cpu_s * 1e3
    s["isolated"] = True
    return s


# --------------------------------------------------------------------------------- decode + ROI
def decode_and_roi(spec: Any, max_frames: int = 300) -> tuple[dict[str, Any], list[Any]]:
    """Decode up to ``max_frames`` of a source and run the ROI tracker on them, timed per frame.

    ``spec`` is a :class:`stream.capture.SourceSpec`. Returns the stats and the ROI-cropped
    :class:`stream.frames.Frame` list (inputs for the preprocessing and model timings).
    """
    from stream.capture import make_source
    from stream.frames import Frame
    from stream.roi import RoiTracker

    source = make_source(spec)
    source.open()
    decode_ns: list[int] = []
    roi_ns: list[int] = []
    frames: list[Frame] = []
    tracker = RoiTracker(spec.roi_mode)
    cpu_dec = cpu_roi = 0.0
    try:
        for seq in range(max_frames):
            c0, t0 = time.process_time(), time.perf_counter_ns()
            item = source.read()
            t1, c1 = time.perf_counter_ns(), time.process_time()
            if item is None:
                break
            decode_ns.append(t1 - t0)
            cpu_dec += c1 - c0
            image = item[0]
            c0, t0 = time.process_time(), time.perf_counter_ns()
            from engines.preprocess import to_gray

            gray = to_gray(image)
            (x, y, w, h), _ = tracker.update(gray)
            crop = np.ascontiguousarray(gray[y : y + h, x : x + w])
            roi_ns.append(time.perf_counter_ns() - t0)
            cpu_roi += time.process_time() - c0
            frames.append(Frame(seq, time.monotonic_ns(), crop, (x, y, w, h), gray.shape[:2], "bench"))
    finally:
        source.close()
    n = max(1, len(decode_ns))
    info = {
        "decode": _summary(decode_ns, cpu_dec / n),
        "roi": _summary(roi_ns, cpu_roi / n) | {"detections": tracker.detections},
        "frames": len(frames),
        "source_hw": list(frames[0].source_hw) if frames else None,
        "roi_hw": [frames[0].roi[3], frames[0].roi[2]] if frames else None,
    }
    return info, frames


def preprocess_times(frames: Sequence[Any], specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per model input geometry: ``Prepared(frame).input(spec)`` (letterbox + scaling), as the lanes do."""
    from stream.lanes import Prepared

    out: dict[str, Any] = {}
    for label, spec in specs.items():
        walls = []
        cpu0 = time.process_time()
        for f in frames:
            t = time.perf_counter_ns()
            Prepared(f).input(spec)
            walls.append(time.perf_counter_ns() - t)
        out[label] = _summary(walls, (time.process_time() - cpu0) / max(1, len(frames))) | {
            "size_hw": list(spec["size_hw"]),
            "scale": spec.get("scale"),
        }
    return out


# --------------------------------------------------------------------------------- models
def model_inputs(engine: Any, frames: Sequence[Any], batch: int = 1) -> list[dict[str, np.ndarray]]:
    """Real preprocessed inputs for ``engine`` (segmentation: a dropout mask of ones = deterministic)."""
    from stream.lanes import Prepared

    spec = engine.manifest["preprocessing"]
    xs = [Prepared(f).input(spec)[0] for f in frames[: max(batch, min(len(frames), 16))]]
    names = [t.name for t in engine.inputs]
    mc = (engine.manifest.get("parameters") or {}).get("mc_dropout")
    feeds = []
    for i in range(0, max(1, len(xs) - batch + 1), batch):
        x = np.concatenate(xs[i : i + batch], axis=0)
        feed = {names[0]: x}
        if mc and mc["input"] in names:
            feed[mc["input"]] = np.ones((batch, *mc["shape"]), dtype=np.float32)
        feeds.append(feed)
    return feeds


def time_model(
    manifest: Path,
    backend: str,
    frames: Sequence[Any],
    threads: int = 1,
    batches: Sequence[int] = (1,),
    budget_s: float = 3.0,
    min_calls: int = 5,
    max_calls: int = 200,
    peak_gflops: float | None = None,
) -> dict[str, Any]:
    """Time one model on one backend: per batch size, ms per call and per frame, GFLOP/s vs peak."""
    from engines import load_engine
    from engines.base import BackendUnavailableError, EngineError

    try:
        engine = load_engine(manifest, backend=backend, threads=threads)
    except (BackendUnavailableError, EngineError) as err:
        return {"available": False, "reason": str(err)}
    gflop = None
    try:
        from engines.manifest import load_manifest, require_model_file

        m = load_manifest(manifest, verify_file=False)
        if m["format"] == "onnx":
            from stream.bench.flops import count_flops

            fc = count_flops(require_model_file(m, manifest))
            gflop = fc.gflop
    except Exception:
        gflop = None
    out: dict[str, Any] = {
        "available": True,
        "backend": engine.backend,
        "threads": threads,
        "gflop_per_frame": gflop,
        "batches": {},
    }
    try:
        for b in batches:
            feeds = model_inputs(engine, frames, b)
            for _ in range(2):
                engine.infer(feeds[0])
            walls: list[int] = []
            cpu0 = time.process_time()
            t_end = time.monotonic() + budget_s
            i = 0
            while (len(walls) < min_calls or time.monotonic() < t_end) and len(walls) < max_calls:
                feed = feeds[i % len(feeds)]
                t = time.perf_counter_ns()
                engine.infer(feed)
                walls.append(time.perf_counter_ns() - t)
                i += 1
            cpu_ms = (time.process_time() - cpu0) / len(walls) * 1e3
            s = _summary(walls, cpu_ms / 1e3)
            per_frame_ms = s["p50_ms"] / b
            row = s | {
                "batch": b,
                "ms_per_frame": per_frame_ms,
                "fps": 1e3 / per_frame_ms,
                "cpu_ms_per_frame": cpu_ms / b,
            }
            if gflop:
                row["gflops_achieved"] = gflop / (per_frame_ms / 1e3)
                if peak_gflops:
                    row["percent_of_peak"] = 100.0 * row["gflops_achieved"] / peak_gflops
            out["batches"][str(b)] = row
    finally:
        engine.close()
    return out


# --------------------------------------------------------------------------------- serialisation
def serialise_times(msg: dict[str, Any], topic: str = "frame", n: int = 2000) -> dict[str, Any]:
    """``wire.encode`` (msgpack + validation, as the publisher does), without validation, and unpack."""
    import msgpack

    from stream import wire

    parts = wire.encode(topic, msg)
    out: dict[str, Any] = {}
    for label, fn in (
        ("encode_validated", lambda: wire.encode(topic, msg, check=True)),
        ("encode_unvalidated", lambda: wire.encode(topic, msg, check=False)),
        ("unpack_subscriber", lambda: msgpack.unpackb(parts[1], raw=False)),
        ("decode_validated", lambda: wire.decode(parts)),
    ):
        walls, cpu = _timed(fn, n)
        out[label] = _summary(walls, cpu)
    out["bytes"] = sum(len(p) for p in parts)
    out |= publish_times(msg, topic, n)
    return out


def publish_times(msg: dict[str, Any], topic: str = "frame", n: int = 2000) -> dict[str, Any]:
    """``Publisher.publish`` per message (stamp, pack, validate as configured, non-blocking send; no
    subscriber, no recorder) with ``--validate all``, ``sample`` (the default) and ``off``."""
    import os
    import socket

    from stream.publisher import Publisher

    out: dict[str, Any] = {}
    saved = os.environ.pop("LUS_WIRE_VALIDATE", None)  # measure the modes as configured
    try:
        for mode in ("all", "sample", "off"):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
            pub = Publisher(endpoint, validate=mode)

            def publish_one(p: Publisher = pub) -> None:
                p.publish(topic, dict(msg))

            try:
                walls, cpu = _timed(publish_one, n)
            finally:
                pub.close()
            out[f"publish_{mode}"] = _summary(walls, cpu)
    finally:
        if saved is not None:
            os.environ["LUS_WIRE_VALIDATE"] = saved
    return out


# --------------------------------------------------------------------------------- aggregator
def aggregator_times(
    neutral: Sequence[float] | None = None,
    n_total: int = 100_000,
    checkpoints: Sequence[int] = (100, 100_000),
    span: int = 100,
    kind: str = "uninorm",
    window: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """µs per ``update`` around each checkpoint count (median of the ``span`` updates before it)."""
    from stream.aggregate import make_aggregator

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), size=n_total)
    agg = make_aggregator(kind, neutral, window_frames=window)
    times = np.empty(n_total, dtype=np.int64)
    t_ns = 0
    for i in range(n_total):
        t_ns += 33_333_333
        t = time.perf_counter_ns()
        agg.update(probs[i], t_ns=t_ns)
        times[i] = time.perf_counter_ns() - t
    out: dict[str, Any] = {
        "kind": kind,
        "window": window,
        "frames": n_total,
        "isolated": True,
        "mean_us_all": float(times.mean() / 1e3),
    }
    for c in checkpoints:
        c = min(c, n_total)
        block = times[max(0, c - span) : c]
        out[f"update_us_at_{c}"] = float(np.median(block) / 1e3)
        out[f"update_us_p99_at_{c}"] = float(np.percentile(block, 99) / 1e3)
    first, last = out[f"update_us_at_{checkpoints[0]}"], out[f"update_us_at_{checkpoints[-1]}"]
    out["ratio_last_first"] = last / first if first > 0 else float("nan")
    return out


# --------------------------------------------------------------------------------- ORT graph optimisation
def ort_optimisation_levels(
    onnx_path: Path, feeds: Sequence[dict[str, np.ndarray]], budget_s: float = 2.0
) -> dict[str, Any]:
    """ms per batch-1 call of one model at each ONNX Runtime graph-optimisation level (one thread)."""
    import onnxruntime as ort

    levels = {
        "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    out: dict[str, Any] = {}
    for label, level in levels.items():
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        for _ in range(3):
            sess.run(None, feeds[0])
        walls: list[int] = []
        cpu0 = time.process_time()
        t_end = time.monotonic() + budget_s
        while time.monotonic() < t_end or len(walls) < 5:
            t = time.perf_counter_ns()
            sess.run(None, feeds[len(walls) % len(feeds)])
            walls.append(time.perf_counter_ns() - t)
        out[label] = _summary(walls, (time.process_time() - cpu0) / len(walls))
    return out
