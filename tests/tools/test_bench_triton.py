"""``tools/bench.py triton`` (:mod:`stream.bench.triton`): server statistics → batch-size histogram, summary
rows and the Markdown table against hand-computed numbers, the pacing of the client streams, the refusal
without a server environment, and one short real run against ``lus-serve`` (skipped without it)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.base import EngineError
from stream.bench import report, triton
from stream.bench.triton import StreamResult, counts_delta, model_counts, run_streams, summary_row

REPO = Path(__file__).resolve().parents[2]
MODEL = "regstn-real-cpu-lite"


def _batch(size: int, count: int) -> dict[str, Any]:
    c = {"count": str(count), "ns": "1000"}
    return {"batch_size": str(size), "compute_input": c, "compute_infer": c, "compute_output": c}


def _stats(inferences: int, executions: int, sizes: dict[int, int]) -> dict[str, Any]:
    """What ``get_inference_statistics(as_json=True)`` returns (protobuf JSON: uint64 as strings)."""
    return {
        "model_stats": [
            {"name": "other", "version": "1", "inference_count": "999", "execution_count": "999",
             "batch_stats": [_batch(1, 999)]},
            {"name": MODEL, "version": "1", "inference_count": str(inferences),
             "execution_count": str(executions), "batch_stats": [_batch(s, n) for s, n in sizes.items()]},
        ]
    }  # fmt: skip


def test_model_counts_reads_the_models_batch_histogram() -> None:
    counts = model_counts(_stats(8, 6, {3: 1, 1: 5}), MODEL)
    assert counts == {"inferences": 8, "executions": 6, "batch_sizes": {1: 5, 3: 1}}
    assert model_counts({"model_stats": []}, MODEL) == {"inferences": 0, "executions": 0, "batch_sizes": {}}
    # a fresh model: batch_stats absent, zero counts are left out of the protobuf JSON
    assert model_counts({"model_stats": [{"name": MODEL}]}, MODEL)["batch_sizes"] == {}


def test_counts_delta_is_what_happened_between_snapshots() -> None:
    before = model_counts(_stats(8, 6, {1: 5, 3: 1}), MODEL)
    after = model_counts(_stats(1208, 646, {1: 85, 2: 560, 3: 1}), MODEL)
    # 80 singles + 560 pairs = 80 + 1120 = 1200 frames in 640 executions; the batch of 3 was before
    want = {"inferences": 1200, "executions": 640, "batch_sizes": {1: 80, 2: 560}}
    assert counts_delta(before, after) == want


def test_summary_rows_pool_the_streams() -> None:
    a = StreamResult([0.001, 0.002, 0.003, 0.004], errors=1, late=0)
    b = StreamResult([0.040], late=1, last_error=None)
    server = {"inferences": 1200, "executions": 640, "batch_sizes": {1: 80, 2: 560}}
    row = summary_row(2, "triton", [a, b], server)
    # pooled 1, 2, 3, 4, 40 ms: p50 = 3, p99 = 4 + 0.96 · 36 = 38.56 (linear interpolation), max 40
    assert row["frames"] == 5 and row["errors"] == 1 and row["late"] == 1
    assert row["p50_ms"] == pytest.approx(3.0)
    assert row["p99_ms"] == pytest.approx(38.56)
    assert row["max_ms"] == pytest.approx(40.0)
    assert row["mean_batch"] == pytest.approx(1.875)
    assert row["batch_source"] == "server"
    assert [s["n"] for s in row["per_stream"]] == [4, 1]
    assert row["per_stream"][0]["p50_ms"] == pytest.approx(2.5)
    ort = summary_row(2, "onnxruntime", [a, b])
    assert (ort["inferences"], ort["executions"], ort["mean_batch"]) == (5, 5, 1.0)
    assert ort["batch_sizes"] == {1: 5} and ort["batch_source"].startswith("client")
    unknown = summary_row(1, "triton", [a], None)
    assert unknown["executions"] is None and unknown["mean_batch"] is None
    assert math.isnan(summary_row(1, "triton", [StreamResult()], None)["p50_ms"])


def test_markdown_table_and_batch_lines() -> None:
    row = summary_row(2, "triton", [StreamResult([0.00814] * 3)],
                      {"inferences": 1200, "executions": 640, "batch_sizes": {2: 560, 1: 80}})  # fmt: skip
    ort = summary_row(2, "onnxruntime", [StreamResult([0.0018, 0.0020])])
    unknown = summary_row(4, "triton", [StreamResult([0.01])], None)
    lines = report.triton_table([row, ort, unknown])
    assert lines[0] == (
        "| streams | backend | p50 ms | p99 ms | max ms | frames | executions | mean batch | batch sizes |"
    )
    assert lines[2] == "| 2 | triton | 8.14 | 8.14 | 8.14 | 3 | 640 | 1.88 | {1: 80, 2: 560} |"
    assert lines[3] == "| 2 | onnxruntime | 1.90 | 2.00 | 2.00 | 2 | 2 | 1.00 | {1: 2} |"
    assert lines[4] == "| 4 | triton | 10.00 | 10.00 | 10.00 | 1 | – | – | – |"
    result = {"fps": 30.0, "seconds": 15.0, "phase": "random", "rows": [row, ort], "notes": ["a note"],
              "model": MODEL, "clip": "/x/clip.mov", "server": {"ready": "lus-serve: ready"}}  # fmt: skip
    md = report.triton_markdown(result)
    assert "\n".join(lines[:4]) in md
    assert "- N=2 triton: 1200 inferences in 640 executions, batch sizes {1: 80, 2: 560}; 0 of 3" in md
    assert "every 33.3 ms (30 fps) for 15 s, frame clocks at random offsets" in md
    assert "- a note" in md


def test_streams_are_paced_and_send_their_own_frames() -> None:
    feeds = [{"frame": np.full((1, 1, 2, 2), i, np.float32)} for i in range(10)]
    seen: list[list[int]] = [[], []]

    def make(i: int) -> Any:
        def infer(feed: dict[str, np.ndarray]) -> None:
            seen[i].append(int(feed["frame"][0, 0, 0, 0]))
            if len(seen[i]) == 2 and i == 1:
                raise EngineError("server gone")

        return infer

    t0 = time.monotonic()
    results = run_streams([make(0), make(1)], feeds, fps=50.0, seconds=0.2, offsets_s=[0.0, 0.01])
    took = time.monotonic() - t0
    assert seen[0] == list(range(10))  # 0.2 s × 50 fps = 10 frames, from the clip's start
    assert seen[1] == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]  # the second stream starts half-way through the clip
    assert len(results[0].latencies_s) == 10 and results[0].errors == 0
    assert len(results[1].latencies_s) == 9 and results[1].errors == 1
    assert results[1].last_error == "server gone"
    assert 0.38 <= took < 2.0  # 0.2 s head start + 9 intervals of 20 ms (+ the 10 ms offset)


def test_refuses_without_a_server_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tritonclient.grpc")
    import engines.triton_server as ts

    monkeypatch.setattr(ts, "server_env_problem", lambda: "nvidia-pytriton is not installed here")
    monkeypatch.setattr(ts, "find_serve_python", lambda explicit=None: None)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    code = triton.main(["--clip", str(clip), "--out", str(tmp_path / "out"), "--seconds", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "no lus-serve environment" in err and "make serve-env" in err and "lus-serve setup-env" in err
    assert not (tmp_path / "out").exists()


def _write_sim_clip(path: Path, n: int) -> Path:
    import cv2

    from synth import ClipSpec, simulate_clip

    clip = simulate_clip(ClipSpec(seed=3, n_frames=n, schedule=[(0, 2)], height=240, width=320))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (320, 240), isColor=False)
    for frame in clip.frames:
        writer.write(frame)
    writer.release()
    return path


def test_short_real_run_against_lus_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (the serve extra)")
    from engines.triton_server import find_serve_python, server_env_problem

    if server_env_problem() is not None and find_serve_python() is None:
        pytest.skip(f"no lus-serve environment ({server_env_problem()}): `make serve-env`")
    started: list[triton.ServeProcess] = []

    class Recorded(triton.ServeProcess):
        def start(self) -> None:
            started.append(self)
            super().start()

    monkeypatch.setattr(triton, "ServeProcess", Recorded)
    clip = _write_sim_clip(tmp_path / "sim.mp4", 24)
    out = tmp_path / "out"
    code = triton.main(["--clip", str(clip), "--out", str(out), "--seconds", "2", "--streams", "1,2",
                        "--fps", "20", "--max-frames", "24"])  # fmt: skip
    assert code == 0
    (server,) = started
    assert server.proc is not None and server.proc.poll() is not None  # stopped at the end
    assert server.dir is None  # its folder (workspace, log, token) removed
    result = json.loads((out / "triton.json").read_text())
    rows = {(r["streams"], r["backend"]): r for r in result["rows"]}
    assert set(rows) == {(1, "triton"), (1, "onnxruntime"), (2, "triton"), (2, "onnxruntime")}
    for (n, _), r in rows.items():
        assert r["frames"] == n * 40 and r["errors"] == 0, r  # 2 s × 20 fps per stream
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert 1 <= r["executions"] <= r["inferences"]
        assert sum(int(k) * v for k, v in r["batch_sizes"].items()) == r["inferences"]
    assert rows[(2, "triton")]["inferences"] == 80  # exactly the frames sent in that phase (warm-up excluded)
    assert rows[(2, "triton")]["batch_source"] == "server"
    md = (out / "triton.md").read_text()
    assert "| 2 | triton |" in md and "| 1 | onnxruntime |" in md
