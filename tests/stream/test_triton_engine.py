"""`lus-stream --backend triton`: whole engines scoring through one lus-serve (Triton) server.

* two engines on two clips at the same time through one server: both lossless (every frame scored and
  recorded), every frame's probabilities equal to the same engine on local ONNX Runtime within 1e-4,
  and the server's metrics count fewer executions than inferences (batched requests);
* the server killed mid-stream: the scoring lane reports ``state: lost`` in ``status``, the frames it
  could not score are counted (``drops.scoring_lost``) and never published, and after a restart on the
  same ports the same engine scores again without being restarted; every frame it did publish equals
  local ONNX Runtime.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed: pip install '.[serve]'")

from stream.control import request
from stream.recorder import read_results

REPO = Path(__file__).resolve().parents[2]
FRAME = REPO / "models" / "frame" / "regstn.json"
TOL = 1e-4
pytestmark = pytest.mark.timeout(300)


def _free() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped real-scan frame model alone (segmentation off to spare the CPU)."""
    root = tmp_path_factory.mktemp("engines")
    (root / "frame").symlink_to(REPO / "models" / "frame", target_is_directory=True)
    return root


def lus_stream(engines: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "stream.cli", *args, "--engines", str(engines), "--record", str(out),
           "--pub", _free(), "--threads", "1"]
    if "--ctrl" not in args:
        cmd += ["--ctrl", "none"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def recorded(out: Path):
    return read_results(next(out.glob("*.lusr.msgpack")), validate=True)


def probs_by_seq(rec) -> dict[int, np.ndarray]:
    return {r.msg["seq"]: np.array(r.msg["probs"]) for r in rec.topic("frame")}


def local_reference(engines: Path, clip: Path, out: Path) -> dict[int, np.ndarray]:
    proc = lus_stream(engines, out, "--clip", str(clip), "--as-fast-as-possible", "--backend", "onnxruntime")
    assert proc.wait(120) == 0, proc.stderr.read()
    return probs_by_seq(recorded(out))


def _metric(text: str, name: str, model: str) -> float:
    m = re.search(rf'^{name}\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} ([0-9.e+]+)$', text, re.M)
    assert m, f"{name} for {model} not in the metrics"
    return float(m.group(1))


def test_two_engines_through_one_server_are_lossless_and_equal_local_onnxruntime(
        tmp_path: Path, engines: Path, lus_serve, sim_clip) -> None:
    clips = [sim_clip(tmp_path / f"clip{i}.mp4", i + 1, n=48, seed=i) for i in range(2)]
    server = lus_serve(tmp_path / "serve", [FRAME], None, "--max-batch", "8")
    procs = [lus_stream(engines, tmp_path / f"triton{i}", "--clip", str(c), "--as-fast-as-possible",
                        "--backend", "triton", "--triton-url", server.url) for i, c in enumerate(clips)]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    for i, clip in enumerate(clips):
        rec = recorded(tmp_path / f"triton{i}")
        got = probs_by_seq(rec)
        assert sorted(got) == list(range(48))  # lossless: every decoded frame scored, published, recorded
        status = rec.topic("status")[-1].msg
        lane = status["lanes"]["scoring"]
        assert lane["backend"] == "triton" and lane["state"] == "ok"
        assert status["drops"].get("scoring_lost", 0) == 0
        want = local_reference(engines, clip, tmp_path / f"local{i}")
        assert sorted(want) == sorted(got)
        worst = max(float(np.abs(got[s] - want[s]).max()) for s in got)
        assert worst < TOL, worst
    metrics = server.metrics_text()
    name = "regstn-real-cpu-lite"
    executions = _metric(metrics, "nv_inference_exec_count", name)
    inferences = _metric(metrics, "nv_inference_count", name)
    assert inferences == 96 and executions < inferences, (executions, inferences)


def test_server_lost_mid_stream_then_recovered_without_restarting_the_engine(
        tmp_path: Path, engines: Path, lus_serve, sim_clip) -> None:
    clip = sim_clip(tmp_path / "long.mp4", 2, n=240, seed=7)  # 8 s at 30 fps
    ports = lus_serve.free_ports(3)
    server = lus_serve(tmp_path / "serve", [FRAME], ports)
    ctrl = _free()
    proc = lus_stream(engines, tmp_path / "rec", "--clip", str(clip), "--fps", "30", "--backend", "triton",
                      "--triton-url", server.url, "--ctrl", ctrl)

    def scoring() -> dict:
        return request(ctrl, "status", timeout_ms=5000)["status"]["lanes"]["scoring"]

    def wait_for(pred, what: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lane = scoring()
            if pred(lane):
                return lane
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {scoring()}")

    try:
        wait_for(lambda lane: lane["runs"] >= 20, "20 frames scored")
        server.kill()  # SIGKILL: the server is gone mid-stream
        lost = wait_for(lambda lane: lane["state"] == "lost", "the lane to report lost", 15)
        assert lost["reason"] and "unreachable" in lost["reason"]
        dropping = wait_for(lambda lane: lane["lost_frames"] >= 10, "frames dropped while lost")
        runs_while_lost = dropping["runs"]
        server = lus_serve(tmp_path / "serve", [FRAME], ports)  # the same ports: the engine finds it again
        back = wait_for(lambda lane: lane["state"] == "ok" and lane["runs"] > runs_while_lost + 10,
                        "scoring again after the restart", 30)
        assert back["reason"] is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read()
    rec = recorded(tmp_path / "rec")
    statuses = [r.msg for r in rec.topic("status")]
    assert any(s["lanes"]["scoring"].get("state") == "lost" for s in statuses)
    assert statuses[-1]["drops"]["scoring_lost"] > 0
    got = probs_by_seq(rec)
    assert statuses[-1]["drops"]["scoring_lost"] + len(got) == statuses[-1]["last_frame_seq"] + 1
    want = local_reference(engines, clip, tmp_path / "local")
    worst = max(float(np.abs(got[s] - want[s]).max()) for s in got)  # no frame scored with a missing result
    assert worst < TOL, worst
