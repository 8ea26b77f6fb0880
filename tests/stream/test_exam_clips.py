"""``lus-stream exam-clips``: an exam from recorded clips (one per zone) through the real engine with the
shipped frame model: zone scores, total, one recording and a report; a missing or undecodable clip exits
3 with the zones before it kept; folder names (``patient_10_L1.mp4``, ``_2`` repeats) and bad options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stream import exam_clips
from stream.exam_clips import UsageError, ZoneClip, parse_clip_name, parse_pairs, scan_folder
from stream.recorder import read_results

REPO = Path(__file__).resolve().parents[2]
BLUE = ("L1", "L2", "L3", "R1", "R2", "R3")
SEVERITY = {"L1": 0, "L2": 1, "L3": 2, "R1": 3, "R2": 1, "R3": 2}
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped frame model and aggregator (models/frame); the segmentation lane off to spare the CPU."""
    root = tmp_path_factory.mktemp("engines")
    (root / "frame").symlink_to(REPO / "models" / "frame", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, sim_clip) -> Path:
    folder = tmp_path_factory.mktemp("patient_10")
    for i, zone in enumerate(BLUE):
        sim_clip(folder / f"patient_10_{zone}.mp4", SEVERITY[zone], seed=i)
    return folder


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", "exam-clips", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=150)


def exam_table(out: Path) -> tuple[Path, dict]:
    (recording,) = out.glob("*.lusr.msgpack")
    results = read_results(recording, validate=True)
    return recording, results.topic("exam")[-1].msg


def test_three_blue_zones_give_scores_partial_total_and_report(clips: Path, engines: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("--protocol", "blue6", *(f"{z.lower()}={clips / f'patient_10_{z}.mp4'}" for z in BLUE[:3]),
                   "--out", str(out), "--exam-id", "bed4", "--patient-id", "MRN-7", "--engines", str(engines),
                   "--backend", "onnxruntime", "--", "--threads", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recording, table = exam_table(out)
    assert table["protocol"] == "blue6" and table["state"] == "stopped" and table["exam_id"] == "bed4"
    scores = {z["zone"]: z["score"] for z in table["zones"]}
    assert [scores[z] is not None for z in BLUE] == [True, True, True, False, False, False]
    assert table["scored"] == 3 and table["total"] is None and table["max_total"] == 18
    assert table["partial_total"] == sum(scores[z] for z in BLUE[:3])
    assert table["patient"] != "MRN-7"  # hashed
    done = [z for z in table["zones"] if z["score"] is not None]
    assert all(z["frames"] == 12 for z in done)  # lossless: every frame of each clip in its zone score
    assert [z["first_seq"] for z in done] == [0, 12, 24] and done[-1]["last_seq"] == 35  # seq runs on
    results = read_results(recording)
    frames = [r.msg["seq"] for r in results.topic("frame")]
    assert frames == list(range(36))
    events = [r.msg["event"] for r in results.topic("exam")]
    assert events == ["start", "zone", "freeze", "zone", "freeze", "zone", "freeze", "stop"]
    assert results.header["meta"]["source"] == "clip"
    for zone in BLUE[:3]:
        assert f"{zone} = {scores[zone]} (12 frames, patient_10_{zone}.mp4)" in proc.stdout
    assert f"partial LUS score {table['partial_total']} (3 of 6 zones scored; max 18)" in proc.stdout
    html = (out / f"{recording.name.split('.')[0]}_bed4.report.html").read_text()
    assert f"partial LUS score {table['partial_total']}" in html and "protocol blue6" in html
    assert "<td>L2</td><td>left lower BLUE point</td>" in html
    frame_manifest = json.loads((REPO / "models" / "frame" / "regstn.json").read_text())
    synthetic_only = bool(frame_manifest["training"].get("synthetic_only"))
    # the warning and the notice are there exactly when the shipped frame model never saw real scans
    assert ("SYNTHETIC-ONLY MODEL ON REAL VIDEO" in html) == synthetic_only
    assert ("NOT FOR CLINICAL USE" in html) == synthetic_only and "Decision support only" in html
    assert {p.suffix for p in out.glob("*.report.*")} == {".html", ".png", ".pdf"}


def test_folder_walk_scores_every_zone_with_the_later_repeat(clips: Path, engines: Path, tmp_path: Path,
                                                             sim_clip) -> None:
    folder = tmp_path / "patient_10"
    folder.mkdir()
    for path in clips.iterdir():
        (folder / path.name).symlink_to(path)
    sim_clip(folder / "patient_10_R1_2.mp4", 3, n=16, seed=11)  # a repeat of R1: used (later)
    (folder / "notes.txt").write_text("not a clip")
    out = tmp_path / "out"
    proc = run_cli("--protocol", "blue6", "--folder", str(folder), "--out", str(out), "--engines",
                   str(engines), "--no-pdf", "--", "--threads", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "patient_10_R1.mp4: skipped, patient_10_R1_2.mp4 is the later recording of R1" in proc.stdout
    _recording, table = exam_table(out)
    assert table["exam_id"] == "patient_10" and table["scored"] == 6
    assert table["total"] == sum(z["score"] for z in table["zones"]) and table["max_total"] == 18
    assert {z["zone"]: z["frames"] for z in table["zones"]}["R1"] == 16
    assert f"LUS score {table['total']} / 18" in proc.stdout
    assert not list(out.glob("*.pdf")) and len(list(out.glob("*.report.html"))) == 1


def test_missing_clip_exits_3_and_keeps_the_zones_before_it(clips: Path, engines: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "nowhere" / "R1.mp4"
    pairs = [f"L1={clips / 'patient_10_L1.mp4'}", f"L2={clips / 'patient_10_L2.mp4'}", f"R1={missing}",
             f"R2={clips / 'patient_10_R2.mp4'}"]
    proc = run_cli("--protocol", "blue6", *pairs, "--out", str(out), "--exam-id", "bed5", "--engines",
                   str(engines), "--no-pdf", "--", "--threads", "1")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"zone R1: clip {missing}" in proc.stderr and "does not exist" in proc.stderr
    recording, table = exam_table(out)
    assert table["state"] == "stopped" and table["scored"] == 2
    assert [z["zone"] for z in table["zones"] if z["score"] is not None] == ["L1", "L2"]
    assert table["partial_total"] == sum(z["score"] for z in table["zones"] if z["score"] is not None)
    assert "R2 (" not in proc.stdout  # the walk stops at the failed clip
    assert (out / f"{recording.name.split('.')[0]}_bed5.report.html").is_file()


def test_undecodable_clip_names_zone_and_file(engines: Path, tmp_path: Path) -> None:
    bad = tmp_path / "L3.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    out = tmp_path / "out"
    proc = run_cli("--protocol", "blue6", f"L3={bad}", "--out", str(out), "--engines", str(engines),
                   "--no-pdf", "--", "--threads", "1")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"zone L3: clip {bad}: cannot open clip" in proc.stderr
    _recording, table = exam_table(out)
    assert table["scored"] == 0 and table["state"] == "stopped"
    assert list(out.glob("*.report.html"))


# ---------------------------------------------------------------------- names and options (no engine)
def test_clip_names() -> None:
    assert parse_clip_name("patient_10_L1", BLUE) == ("patient_10", "L1", 1)
    assert parse_clip_name("patient_10_l1_2", BLUE) == ("patient_10", "L1", 2)
    assert parse_clip_name("R3", BLUE) == ("", "R3", 1)
    assert parse_clip_name("patient_10", BLUE) is None
    assert parse_clip_name("patient_10_RP1", BLUE) is None


def test_zone_pairs_are_checked_against_the_protocol() -> None:
    assert parse_pairs(["r2=b.mp4", "L1=a.mp4"], "blue6") == [ZoneClip("R2", Path("b.mp4")),
                                                               ZoneClip("L1", Path("a.mp4"))]
    with pytest.raises(UsageError, match=r"unknown zone 'RP1' for protocol blue6: .*'L1', 'L2', 'L3', 'R1'"):
        parse_pairs(["RP1=a.mp4"], "blue6")
    with pytest.raises(UsageError, match="twice"):
        parse_pairs(["L1=a.mp4", "l1=b.mp4"], "blue6")
    with pytest.raises(UsageError, match="ZONE=FILE"):
        parse_pairs(["a.mp4"], "blue6")


def test_folder_scan(tmp_path: Path) -> None:
    for name in ("p_3_R1.mp4", "p_3_L1.mp4", "p_3_L1_2.mp4", "p_3_LP1.mp4", "readme.md"):
        (tmp_path / name).write_bytes(b"x")
    clips, prefix, notes = scan_folder(tmp_path, "blue6")
    assert clips == [ZoneClip("L1", tmp_path / "p_3_L1_2.mp4"), ZoneClip("R1", tmp_path / "p_3_R1.mp4")]
    assert prefix == "p_3" and any("p_3_LP1.mp4: skipped" in n for n in notes)
    (tmp_path / "p_4_R2.mp4").write_bytes(b"x")
    with pytest.raises(UsageError, match="more than one exam"):
        scan_folder(tmp_path, "blue6")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no clip"):
        scan_folder(tmp_path / "empty", "blue6")


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exam_clips.main(["--protocol", "blue6"]) == 2
    assert "ZONE=FILE clips or --folder" in capsys.readouterr().err
    assert exam_clips.main(["--protocol", "blue6", "LA1=x.mp4"]) == 2
    assert "use one of ['L1', 'L2', 'L3', 'R1', 'R2', 'R3']" in capsys.readouterr().err
