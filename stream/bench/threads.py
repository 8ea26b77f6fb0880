"""Thread-budget experiment: ONNX Runtime intra-op threads (1 vs 2) for the scoring model, alone and
with the other lane (the segmentation members, one thread, in a second thread of this process as
in the engine), with ORT's spin-wait on and off (``session.intra_op.allow_spinning``).

For each configuration the scoring model runs back to back for ``seconds`` (batch 1, real
preprocessed frames) while the segmentation loop runs beside it when enabled. Reported per
configuration: scoring ms p50/p99 and frames/s, segmentation runs/s, and the process CPU % over
the window (200 % = both cores of a 2-core machine). Sessions are built like
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
    with_seg: bool,
    spinning: bool,
    seconds: float = 3.0,
) -> dict[str, Any]:
    """One configuration (see the module docstring)."""
    score = ort_session(frame_onnx, threads, spinning)
    segs = [(ort_session(p, 1, spinning), feed) for p, feed in seg_models] if with_seg else []
    for _ in range(3):
        score.run(None, frame_feeds[0])
    for s, feed in segs:
        s.run(None, feed)
    stop = threading.Event()
    seg_runs = [0]

    def seg_loop() -> None:
        while not stop.is_set():
            for s, feed in segs:
                s.run(None, feed)
            seg_runs[0] += 1

    t_seg = threading.Thread(target=seg_loop, daemon=True) if segs else None
    cpu0, wall0 = time.process_time(), time.monotonic()
    if t_seg is not None:
        t_seg.start()
    walls: list[int] = []
    i = 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t = time.perf_counter_ns()
        score.run(None, frame_feeds[i % len(frame_feeds)])
        walls.append(time.perf_counter_ns() - t)
        i += 1
    elapsed = time.monotonic() - wall0
    stop.set()
    if t_seg is not None:
        t_seg.join()
    cpu = time.process_time() - cpu0
    s = summarise_ns(walls)
    return {
        "threads": threads, "with_seg": with_seg, "spinning": spinning,
        "score_p50_ms": s.p50_ms, "score_p99_ms": s.p99_ms, "score_fps": len(walls) / elapsed,
        "seg_fps": seg_runs[0] / elapsed if segs else None,
        "cpu_percent": 100.0 * cpu / elapsed,
    }  # fmt: skip


def thread_matrix(
    frame_onnx: Path,
    frame_feeds: Sequence[dict[str, np.ndarray]],
    seg_models: Sequence[tuple[Path, dict[str, np.ndarray]]],
    seconds: float = 3.0,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Every combination of threads ∈ {1, 2}, other lane off/on, spinning on/off."""
    rows = []
    for with_seg in (False, True) if seg_models else (False,):
        for threads in (1, 2):
            for spinning in (True, False):
                rows.append(
                    run_config(frame_onnx, frame_feeds, seg_models, threads, with_seg, spinning, seconds)
                )
                if progress is not None:
                    progress.update(1)
    return rows
