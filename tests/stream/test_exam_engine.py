"""The exam protocol on the real engine: a scripted 14-zone walk over the control socket while the synthetic
source shows each zone's severity; the viewer records the overlay; the report is built from the recording."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import av
import pytest

from engines import testing
from stream import exam, report
from stream.recorder import read_results

REPO = Path(__file__).resolve().parents[2]
DWELL = 16
LEAD_IN = 30  # frames before zone 1: the walk connects and starts the exam meanwhile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    from engines import build_manifest, write_manifest

    root = tmp_path_factory.mktemp("models")
    testing.make_tiny_onnx(root / "frame", "frame", size_hw=(32, 32), torch_export=False)
    testing.make_tiny_onnx(root / "seg", "seg", size_hw=(26, 20), torch_export=False)
    agg = build_manifest(
        name="tiny-aggregator", version="0.0.1", task="aggregator", format="none", file=None,
        inputs=[], outputs=[], class_names=["0", "1", "2", "3"], training=dict(testing.TRAINING_STUB),
        parameters={"neutral_elements": [0.3, 0.4, 0.5, 0.6], "sord_gap": 0.5},
    )
    write_manifest(agg, root / "frame" / "tiny-aggregator.json")
    return root


def test_scripted_zone_walk_on_the_engine(models: Path, tmp_path: Path) -> None:
    from stream.capture import SourceSpec
    from stream.pipeline import EngineConfig, StreamEngine

    pub, ctrl = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    spec = SourceSpec("synthetic", fps=60.0, height=120, width=160, seed=3,
                      schedule=exam.demo_schedule(exam.DEMO_SCORES, DWELL, LEAD_IN))
    cfg = EngineConfig(source=spec, engines_dir=models, pub=pub, ctrl=ctrl, record_dir=tmp_path / "rec",
                       publish_frames=True, record_frames=True, stream_id="exam-test", seg_every=4,
                       max_frames=LEAD_IN + len(exam.DEMO_SCORES) * DWELL + 120)
    engine = StreamEngine(cfg)
    assert engine.g.exam is not None  # the exam stage is part of the engine's graph (EngineConfig.exam)
    session = engine.g.exam.session
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    video = tmp_path / "overlay.mp4"
    viewer = subprocess.Popen([sys.executable, "-m", "stream.view.cli", "--connect", pub, "--window", "no",
                               "--out", str(video), "--exit-on-disconnect", "--duration", "60",
                               "--max-fps", "15"], env=env, stderr=subprocess.PIPE, text=True)
    result: dict = {}

    def walk() -> None:
        try:
            result["table"] = exam.run_scripted_exam(pub, ctrl, exam.DEMO_SCORES, DWELL, LEAD_IN,
                                                     timeout_s=40.0)
        except Exception as err:  # reported by the assertion below
            result["error"] = repr(err)
        finally:
            engine.request_stop()

    thread = threading.Thread(target=walk, daemon=True)
    try:
        thread.start()
        assert engine.run() == 0
        thread.join(10)
        _, stderr = viewer.communicate(timeout=30)
    finally:
        if viewer.poll() is None:
            viewer.kill()
    assert "error" not in result, result.get("error")
    table = result["table"]
    assert table["state"] == "stopped" and table["scored"] == 14 and table["total"] is not None
    assert session.state == "stopped"

    files = list((tmp_path / "rec").glob("*.lusr.msgpack"))
    assert len(files) == 1
    results = read_results(files[0], validate=True)
    videos = {r.msg["seq"]: r.msg for r in results.topic("video")}
    exams = [r.msg for r in results.topic("exam")]
    assert [m["event"] for m in exams][:3] == ["start", "zone", "freeze"] and exams[-1]["event"] == "stop"
    margin, previous_last = max(1, DWELL // 6), -1
    for i, z in enumerate(exams[-1]["zones"]):
        start = LEAD_IN + i * DWELL
        # the zone's clip starts after the zone came on screen and after the previous zone's freeze, and
        # is frozen no earlier than the walk asked (how much later depends on this machine's load) ...
        assert z["first_seq"] >= start + margin and z["first_seq"] > previous_last, z
        assert z["last_seq"] >= start + DWELL - margin - 1, z  # -1: a frame is published before its video
        previous_last = z["last_seq"]
        # ... and is exactly the engine's clip aggregate at the freeze
        v = videos[z["last_seq"]]
        assert v["clip"] == z["clip"] and v["score"] == z["score"] and v["probs"] == z["probs"]
        assert v["frames"] == z["frames"]
    assert exams[-1]["total"] == sum(z["score"] for z in exams[-1]["zones"])

    paths = report.write_report(files[0], tmp_path / "report", pdf=False)
    html = paths["html"].read_text()
    assert f"LUS score {exams[-1]['total']} / 42" in html and "NOT FOR CLINICAL USE" in html
    assert viewer.returncode == 0, stderr[-2000:]
    with av.open(str(video)) as container:
        n = sum(1 for _ in container.decode(video=0))
    assert n >= 5
