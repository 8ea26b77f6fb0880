"""The exam protocol wired into ``lus-stream`` (a real engine in a subprocess, real sockets): the control
commands walk zones and the table and ``status.exam`` follow; and the exam demo (``python -m stream.demo``
at a reduced dwell) records an exam, renders the overlay MP4 (decoded with PyAV) and builds the report."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
import zmq

from engines import testing
from stream import wire
from stream.control import request
from stream.exam import DEMO_SCORES

REPO = Path(__file__).resolve().parents[2]


def _free() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _wait_frames(pub: str, n: int, timeout_s: float = 30.0) -> int:
    """Block until ``n`` more frame messages arrived; returns the last frame seq."""
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"frame")
    sub.connect(pub)
    deadline, seen, seq = time.monotonic() + timeout_s, 0, -1
    try:
        while seen < n:
            assert time.monotonic() < deadline, f"only {seen} of {n} frames from {pub}"
            if sub.poll(200):
                _topic, msg, _ = wire.decode(sub.recv_multipart())
                seen, seq = seen + 1, msg["seq"]
        return seq
    finally:
        sub.close()


@pytest.mark.timeout(90)
def test_exam_commands_on_a_cli_engine(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    testing.make_tiny_onnx(tmp_path / "frame", "frame", size_hw=(32, 32), torch_export=False)
    pub, ctrl = _free(), _free()
    engine = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "--synthetic", "--engines", str(tmp_path), "--pub", pub,
         "--ctrl", ctrl, "--threads", "1", "--record", str(tmp_path / "rec")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_frames(pub, 5)
        assert request(ctrl, "exam")["exam"]["state"] == "idle"
        reply = request(ctrl, "exam_start", exam_id="bed3", patient_id="MRN-0042", protocol="soldati12")
        assert reply["ok"] and reply["exam"]["n_zones"] == 12 and reply["exam"]["max_total"] == 36
        assert reply["exam"]["patient"] != "MRN-0042" and not reply["exam"]["patient_id_stored"]
        assert request(ctrl, "zone", zone="RP1")["exam"]["zone"] == "RP1"
        _wait_frames(pub, 10)
        rp1 = request(ctrl, "freeze")["exam"]["zones"][0]
        assert rp1["zone"] == "RP1" and rp1["score"] in (0, 1, 2, 3) and rp1["frames"] >= 5
        assert rp1["score"] == max(range(4), key=rp1["probs"].__getitem__)
        assert rp1["first_seq"] <= rp1["last_seq"]
        assert request(ctrl, "zone", zone="next")["exam"]["zone"] == "RP2"
        _wait_frames(pub, 10)
        table = request(ctrl, "freeze")["exam"]
        rp2 = table["zones"][1]
        assert rp2["first_seq"] > rp1["last_seq"]  # the zone change reset the clip aggregate
        assert table["scored"] == 2 and table["partial_total"] == rp1["score"] + rp2["score"]
        assert table["total"] is None  # only once all 12 zones are scored
        table = request(ctrl, "redo", zone="RP1")["exam"]
        assert table["zone"] == "RP1" and table["zones"][0]["score"] is None and table["scored"] == 1
        assert not request(ctrl, "freeze", zone="LA2")["ok"]  # not the current zone: refused, engine lives
        status = request(ctrl, "status")["status"]
        assert status["exam"] == {"exam_id": "bed3", "state": "running", "zone": "RP1", "scored": 1,
                                  "n_zones": 12, "partial_total": rp2["score"], "total": None}
        assert request(ctrl, "exam_stop")["exam"]["state"] == "stopped"
        assert request(ctrl, "stop")["ok"]
        assert engine.wait(30) == 0, engine.stderr.read()
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    recorded = next((tmp_path / "rec").glob("*.lusr.msgpack")).read_bytes()
    assert b"bed3" in recorded and b"MRN-0042" not in recorded  # patient id hashed on disk


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_exam_demo_writes_overlay_video_and_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "stream.demo", "--out", str(out), "--pub", _free(), "--ctrl", _free(),
         "--", "--exam-dwell-s", "0.4", "--seg-every", "4", "--threads", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    zones = next(ln for ln in lines if ln.startswith("demo: exam demo-exam:")).split(": ", 2)[2].split()
    assert len(zones) == len(DEMO_SCORES) and all(z.split("=")[1] in "0123" for z in zones)
    total = sum(int(z.split("=")[1]) for z in zones)
    assert any(ln.startswith(f"demo: total LUS score {total} / 42") for ln in lines), done.stdout

    with av.open(str(out / "overlay.mp4")) as container:  # the overlay video decodes
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) >= 30 and frames[0].shape[0] >= 540 and frames[-1].std() > 5

    assert sorted((out / "snapshots").glob("overlay_*.png"))  # docs/img/overlay_demo.png is such a still
    html = next(out.glob("*.report.html")).read_text()
    assert f"LUS score {total} / 42" in html and "NOT FOR CLINICAL USE" in html
    assert next(out.glob("*.report.png")).stat().st_size > 10_000
    assert sum(1 for ln in lines if ln.startswith("demo: report ")) >= 2
