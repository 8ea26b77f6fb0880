"""Thread-budget experiment: ONNX Runtime intra-op threads (1 vs 2) for the scoring model and for the
segmentation members, with ORT's spin-wait on and off (``session.intra_op.allow_spinning``).

Two views, each configuration for ``seconds``, batch 1, real preprocessed frames:

* scoring alone, back to back (throughput);
* scoring paced at the source rate (30 fps) while the segmentation lane runs beside it in a second
  thread, niced +10 as in the engine (its ORT pool threads are created by the main thread, as in
  the engine, so they are not niced) — the situation of the targets "p99 ≤ 50 ms" and "seg ≥ 5 fps".
  The scoring latency is measured from when the frame was due, so waiting for a core counts.

Reported per configuration: scoring ms p50/p99 and frames/s, segmentation runs/s, and the process
CPU % over the window (200 % = both cores of a 2-core machine). Sessions are built like
``engines.ort_backend.OrtEngine`` (``ORT_ENABLE_ALL``, sequential, inter-op 1); only the thread
count and the spin policy change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.stats import summarise_ns


def ort_session(onnx_path: Path, threads: int, spinning: bool) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_config(
    frame_onnx: Path,
    frame_feeds: Sequence[dict[str, np.ndarray]],
    seg_models: Sequence[tuple[Path, dict[str, np.ndarray]]],
    threads: int,
    seg_threads: int,
    spinning: bool,
    paced_fps: float | None = None,
    seconds: float = 3.0,
) -> dict[str, Any]:
    """One configuration (see the module docstring); ``seg_threads`` 0 = no segmentation lane."""
    import contextlib
    import os

    score = ort_session(frame_onnx, threads, spinning)
    segs = [(ort_session(p, seg_threads, spinning), feed) for p, feed in seg_models] if seg_threads else []
    for _ in range(3):
        score.run(None, frame_feeds[0])
    for s, feed in segs:
        s.run(None, feed)
    stop = threading.Event()
    seg_runs = [0]

    def seg_loop() -> None:
        with contextlib.suppress(OSError, AttributeError):  # as the engine: the segmentation thread is niced
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not stop.is_set():
            for s, feed in segs:
                s.run(None, feed)
            seg_runs[0] += 1

    t_seg = threading.Thread(target=seg_loop, daemon=True) if segs else None
    cpu0, wall0 = time.process_time(), time.monotonic()
    if t_seg is not None:
        t_seg.start()
    lat: list[int] = []
    i = 0
    period_ns = int(1e9 / paced_fps) if paced_fps else 0
    due = time.monotonic_ns()
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        if period_ns:
            now = time.monotonic_ns()
            if due > now:
                time.sleep((due - now) / 1e9)
            start = due  # latency from when the frame was due (as capture → scored)
            due += period_ns
        else:
            start = time.monotonic_ns()
        score.run(None, frame_feeds[i % len(frame_feeds)])
        lat.append(time.monotonic_ns() - start)
        i += 1
    elapsed = time.monotonic() - wall0
    stop.set()
    if t_seg is not None:
        t_seg.join()
    cpu = time.process_time() - cpu0
    s = summarise_ns(lat)
    return {
        "threads": threads, "seg_threads": seg_threads, "with_seg": bool(seg_threads), "spinning": spinning,
        "paced_fps": paced_fps, "score_p50_ms": s.p50_ms, "score_p99_ms": s.p99_ms,
        "score_fps": len(lat) / elapsed, "seg_fps": seg_runs[0] / elapsed if segs else None,
        "cpu_percent": 100.0 * cpu / elapsed,
    }  # fmt: skip


def thread_matrix(
    frame_onnx: Path,
    frame_feeds: Sequence[dict[str, np.ndarray]],
    seg_models: Sequence[tuple[Path, dict[str, np.ndarray]]],
    seconds: float = 3.0,
    paced_fps: float = 30.0,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Scoring alone as fast as possible (threads 1/2 × spinning on/off), then scoring paced at
    ``paced_fps`` with the segmentation lane running ((scoring, segmentation) threads ∈ {1, 2}² ×
    spinning on/off)."""
    configs: list[tuple[int, int, bool, float | None]] = [
        (t, 0, spin, None) for t in (1, 2) for spin in (True, False)
    ]
    if seg_models:
        configs += [(t, st, spin, paced_fps) for t in (1, 2) for st in (1, 2) for spin in (True, False)]
    rows = []
    for threads, seg_threads, spin, fps in configs:
        rows.append(run_config(frame_onnx, frame_feeds, seg_models, threads, seg_threads, spin, fps, seconds))
        if progress is not None:
            progress.update(1)
    return rows
