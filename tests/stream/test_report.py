"""Exam report from recorder files: complete walk, a tail cut mid-record, and a writer killed with SIGKILL."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream import report
from stream.recorder import read_results
from stream.view import sample

REPO = Path(__file__).resolve().parents[2]
SCORES = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1]  # total 19


def _manifest(tmp: Path, name: str, synthetic: bool) -> Path:
    (tmp / f"{name}.onnx").write_bytes(b"not a model")
    (tmp / f"{name}.json").write_text(json.dumps({"name": name, "training": {"synthetic_only": synthetic}}))
    return tmp / f"{name}.onnx"


def _images(html: str) -> list[np.ndarray]:
    out = []
    for b64 in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html):
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None
        out.append(img)
    return out


@pytest.fixture(scope="module")
def synthetic_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rec")
    model = _manifest(tmp, "regstn-demo", synthetic=True)
    return sample.write_demo_recording(tmp / "exam.lusr.msgpack", SCORES, meta={"frame_model": str(model)})


def test_report_from_a_complete_exam(synthetic_recording: Path, tmp_path: Path) -> None:
    assert report.main([str(synthetic_recording), "--out", str(tmp_path)]) == 0
    html_path = tmp_path / "exam_demo-walk.report.html"
    html = html_path.read_text()
    assert "LUS score 19 / 42" in html
    assert "Decision support only" in html and "NOT FOR CLINICAL USE" in html
    assert "cut short" not in html and "demo-patient" not in html  # patient id only hashed
    for zone, score in zip(("RP1", "RL1", "LA2"), (0, 3, 1), strict=True):
        assert re.search(rf"<td>{zone}</td><td>[a-z 0-9]+</td><td>{score}</td>", html), zone
    images = _images(html)
    assert len(images) == 2 + report.MAX_THUMBS  # zone diagram, timeline, one frame per zone (capped)
    png = cv2.imread(str(tmp_path / "exam_demo-walk.report.png"))
    assert png is not None and png.shape[0] > png.shape[1]  # one A4 portrait page
    assert (tmp_path / "exam_demo-walk.report.pdf").read_bytes()[:5] == b"%PDF-"
    run = report.load_run(synthetic_recording)
    assert run.synthetic_only is True and run.exam["total"] == 19 and run.exam["state"] == "stopped"


def test_clinical_notice_follows_the_manifest(tmp_path: Path) -> None:
    model = _manifest(tmp_path, "regstn-hospital", synthetic=False)
    rec = sample.write_demo_recording(tmp_path / "r.lusr.msgpack", [1] * 12, frames_per_zone=4,
                                      images_per_zone=0, meta={"frame_model": str(model)})
    paths = report.write_report(rec, tmp_path / "out", pdf=False)
    html = paths["html"].read_text()
    assert "Decision support only" in html and "NOT FOR CLINICAL USE" not in html
    assert "LUS score 12 / 36" in html and "No frames were recorded" in html


def test_report_from_a_file_cut_mid_record(synthetic_recording: Path, tmp_path: Path) -> None:
    data = synthetic_recording.read_bytes()
    cut = tmp_path / "cut.lusr.msgpack"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    results = read_results(cut)
    assert results.truncated_bytes > 0
    paths = report.write_report(cut, tmp_path, pdf=False)
    html = paths["html"].read_text()
    assert "cut short" in html and "partial LUS score" in html and "was not stopped" in html
    run = report.load_run(cut)
    scored = [z["score"] for z in run.exam["zones"] if z["score"] is not None]
    assert 0 < len(scored) < 14 and scored == SCORES[: len(scored)]
    assert run.exam["partial_total"] == sum(scored)
    assert cv2.imread(str(paths["png"])) is not None


def test_report_after_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "killed.lusr.msgpack"
    code = ("import sys; from stream.view.sample import write_demo_recording; "
            f"write_demo_recording(sys.argv[1], {SCORES!r}, frames_per_zone=300, images_per_zone=1)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        # wait until a few zones are frozen, then kill -9 in the middle of writing
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.read_bytes().count(b"\xa6freeze") >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the writer finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    paths = report.write_report(path, tmp_path / "out", pdf=False)
    run = report.load_run(path)
    assert run.exam is not None and run.exam["state"] == "running" and run.exam["total"] is None
    assert run.exam["scored"] >= 3
    html = paths["html"].read_text()
    assert "partial LUS score" in html and "was not stopped" in html


def test_report_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(tmp_path / "missing.lusr.msgpack")]) == 2
    bogus = tmp_path / "bogus.lusr.msgpack"
    bogus.write_bytes(b"\x93\x01\x02\x03")
    assert report.main([str(bogus)]) == 2
    assert "not a lus-stream results file" in capsys.readouterr().err


# ---------------------------------------------------------------------- training domain, BLUE diagram
def _domain_manifest(tmp: Path, name: str, training: dict) -> Path:
    (tmp / f"{name}.onnx").write_bytes(b"not a model")
    (tmp / f"{name}.json").write_text(json.dumps({"name": name, "task": "frame", "training": training}))
    return tmp / f"{name}.onnx"


@pytest.mark.parametrize(
    ("training", "source", "on_real", "not_clinical", "shown"),
    [
        ({"domain": "synthetic", "dataset": "synth-v2"}, "clip", True, True,
         "trained on synthetic data only (dataset: synth-v2)"),
        ({"synthetic_only": True, "domain": "synthetic"}, "synthetic", False, True,
         "trained on synthetic data only"),
        ({"synthetic_only": True}, "device", True, True, "trained on synthetic data only"),  # old manifest
        ({"synthetic_only": False, "domain": "real", "dataset": "COVID-BLUES"}, "clip", False, False,
         "trained on real scans (dataset: COVID-BLUES)"),
        ({"domain": "mixed", "dataset": "COVID-BLUES + synth"}, "dicom", False, False,
         "trained on real and synthetic data (dataset: COVID-BLUES + synth)"),
    ],
)
def test_model_domain_and_the_synthetic_model_on_real_video_warning(
        tmp_path: Path, training: dict, source: str, on_real: bool, not_clinical: bool, shown: str) -> None:
    model = _domain_manifest(tmp_path, "regstn-x", training)
    rec = sample.write_demo_recording(tmp_path / "r.lusr.msgpack", [1] * 12, frames_per_zone=4,
                                      images_per_zone=0, meta={"frame_model": str(model), "source": source})
    html = report.write_report(rec, tmp_path / "out", pdf=False)["html"].read_text()
    assert ("SYNTHETIC-ONLY MODEL ON REAL VIDEO" in html) is on_real
    assert ("NOT FOR CLINICAL USE" in html) is not_clinical
    assert f"regstn-x [scoring]: {shown}" in html and "Decision support only" in html
    assert f"Video source: {source}" in html
    run = report.load_run(rec)
    assert run.source_kind == source and (run.synthetic_model_on_real_video == "regstn-x") is on_real


def test_domain_from_status_lanes_when_no_manifest_is_readable(tmp_path: Path) -> None:
    from stream.recorder import Recorder

    path = tmp_path / "lanes.lusr.msgpack"
    with Recorder(path, "demo", meta={}) as rec:  # no model paths, no source in the header
        status = sample.status_message(5, time.monotonic_ns())
        status["lanes"]["scoring"] |= {"model": "regstn 1.0", "domain": "synthetic"}
        status["lanes"]["segmentation"] |= {"model": "seg 2.0", "domain": "real"}
        status["source"] |= {"kind": "device", "id": "/dev/video0"}
        rec.append("status", status, [])
    run = report.load_run(path)
    roles = {m["role"]: (m["domain"], m["synthetic_only"]) for m in run.models}
    assert roles == {"scoring": ("synthetic", True), "segmentation": ("real", False)}
    assert run.source_kind == "device" and run.synthetic_model_on_real_video == "regstn 1.0"
    assert any("SYNTHETIC-ONLY MODEL ON REAL VIDEO" in text for _, text in report.notices(run))


def test_manifest_without_training_fields_stays_unknown(tmp_path: Path) -> None:
    from stream.recorder import Recorder

    model = _domain_manifest(tmp_path, "old", {})
    rec = tmp_path / "old.lusr.msgpack"
    with Recorder(rec, "demo", meta={"frame_model": str(model), "source": "clip"}) as recorder:
        status = sample.status_message(5, time.monotonic_ns())  # lanes as before domain/dataset existed
        for lane in status["lanes"].values():
            lane.pop("domain", None)
            lane.pop("dataset", None)
        status.pop("domain_warning", None)
        recorder.append("status", status, [])
    run = report.load_run(rec)
    assert run.models[0] | {"path": None} == {"name": "old", "path": None, "role": "scoring",
                                              "synthetic_only": None, "domain": None, "dataset": None}
    html = report.write_report(rec, tmp_path / "out", pdf=False)["html"].read_text()
    assert "provenance unknown" in html and "Model provenance is not recorded" in html
    assert "SYNTHETIC-ONLY MODEL ON REAL VIDEO" not in html


def test_blue_zone_diagram_draws_six_points_and_total_of_18(tmp_path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    from stream import wire
    from stream.exam import ExamSession

    session = ExamSession()
    session.start("blue", protocol="blue6")
    for clip, (zone, score) in enumerate(zip(("L1", "L2", "L3", "R1", "R2", "R3"), (1, 2, 3, 0, 1, 2),
                                             strict=True), start=1):
        session.set_zone(zone, clip)
        probs = [0.7 if i == score else 0.1 for i in range(4)]
        session.observe_video({**wire.header("t", clip, clip, clip), "probs": probs, "score": score,
                               "frames": 1, "clip": clip})
        session.freeze()
    msg = session.message("t")
    fig = Figure()
    ax = fig.add_subplot()
    report.draw_zone_diagram(ax, msg)
    points = [p for p in ax.patches if isinstance(p, Circle)]
    assert len(points) == 6
    texts = {t.get_text() for t in ax.texts}
    assert {"L1", "L2", "L3", "R1", "R2", "R3", "right", "left", "PLAPS"} <= texts
    centre = {t.get_text(): t.get_position() for t in ax.texts if t.get_text() in ("L1", "L3", "R1", "R3")}
    assert centre["R1"][0] < centre["L1"][0]  # patient's right drawn on the left (front view)
    assert centre["L3"][1] < centre["L1"][1] and centre["R3"][1] < centre["R1"][1]  # PLAPS low
    assert abs(centre["L3"][0] - 3.3) > abs(centre["L1"][0] - 3.3)  # PLAPS lateral of the BLUE points
    assert report.total_text(msg) == "LUS score 9 / 18"


def test_not_for_clinical_use_names_the_synthetic_models_beside_a_real_scan_model(tmp_path: Path) -> None:
    frame = _domain_manifest(tmp_path, "regstn-real", {"synthetic_only": False, "domain": "real"})
    seg = _domain_manifest(tmp_path, "unet-synth", {"synthetic_only": True, "domain": "synthetic"})
    meta = {"frame_model": str(frame), "seg_models": [str(seg)], "source": "clip"}
    rec = sample.write_demo_recording(tmp_path / "r.lusr.msgpack", [1] * 12, frames_per_zone=4,
                                      images_per_zone=0, meta=meta)
    html = report.write_report(rec, tmp_path / "out", pdf=False)["html"].read_text()
    assert "NOT FOR CLINICAL USE: of the models that produced these results, unet-synth were trained" in html
    assert "SYNTHETIC-ONLY MODEL ON REAL VIDEO" not in html  # the scoring model saw real scans
