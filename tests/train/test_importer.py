"""``lus-train import``: clip collections (one score per clip) into the dataset layout — round trips
for the COVID-BLUES repository layout and a generic CSV index (real little H.264 clips written at
test time), ``--copy`` byte for byte, every bad input reported at once with nothing written, the
layout's clip-level labels (no frame scores) refused by Settings 2/3 and the frame trainer, and a
real-data import of two COVID-BLUES patients when the shared copy is present."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from train.cli import main as lus_train
from train.data.importer import ImportProblems, detect_preset, import_clips, parse_score, patient_key
from train.data.layout import (
    LayoutWriter,
    VideoRecord,
    check_dataset,
    read_dataset,
    read_frames,
    write_video,
)
from train.data.splits import setting2, setting3

REPO = Path(__file__).resolve().parents[2]
COVID_BLUES = Path(os.environ.get("LUS_COVID_BLUES", REPO.parent / "shared/data/covid-blues"))


def clip(path: Path, n: int, fps: float = 25.0, seed: int = 0) -> Path:
    """A real little H.264 clip: ``n`` frames of 32x32 gray noise."""
    frames = np.random.default_rng(seed).integers(0, 255, (n, 32, 32), dtype=np.uint8)
    write_video(path, frames, fps)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(header)
        wr.writerows(rows)
    return path


# (file stem, frames, severity, A-lines, B-lines, comments) in the public repository's format
GITHUB = [
    ("patient_1_L1", 4, "0.0", "yes", "no", ""),
    ("patient_1_R2", 5, "2.0", "yes ", "yes ", "broken pleura line, B-lines"),
    ("patient_1_R2_2", 6, "3.0", "no", "yes", ""),
    ("patient_2_L1", 4, "1.0", "no", "no ", "liver\non the right"),
    ("patient_12_R3", 5, "2.0", "yes", "yes", ""),
]


@pytest.fixture(scope="module")
def github_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("covid-blues-github")
    for i, (stem, n, *_rest) in enumerate(GITHUB):
        clip(src / "lus_videos" / f"{stem}.mp4", n, seed=i)
    write_csv(
        src / "severity.csv",
        ["video_file", "Severity Score", "A-lines", "B-lines", "comments"],
        [[stem, sev, a, b, c] for stem, _n, sev, a, b, c in GITHUB],
    )
    write_csv(
        src / "clinical_variables.csv",
        ["patient_id", "cov_test", "pat_age", "patient_symp#Fever"],
        [[1, 1, 70, 1], [2, 0, 55, 0], [12, 1, 61, 0]],
    )
    return src


@pytest.fixture(scope="module")
def csv_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generic CSV index: two raters, per-row probe, one absolute path, an extra column."""
    src = tmp_path_factory.mktemp("generic")
    clip(src / "clips" / "a one.mp4", 3, fps=10)
    clip(src / "clips" / "b.mp4", 5, fps=10, seed=1)
    far = clip(tmp_path_factory.mktemp("elsewhere") / "c.mp4", 4, fps=30, seed=2)
    write_csv(
        src / "index.csv",
        ["file", "patient", "score", "score2", "zone", "probe", "hospital", "note"],
        [
            ["clips/a one.mp4", "007", "1", "2", "R1", "linear", "", "first"],
            ["clips/b.mp4", "site-A_3", "3", "3", "", "convex", "H2", ""],
            [str(far), "007", "0.0", "0", "L2", "linear", "", "absolute path"],
        ],
    )
    return src


def test_github_layout_round_trip(github_src: Path, tmp_path: Path) -> None:
    assert detect_preset(github_src) == "covid-blues-github"
    out = tmp_path / "ds"
    meta = import_clips(github_src, out)
    assert meta["labels"] == {"frame_scores": False, "video_raters": 1, "masks": False}
    assert meta["synthetic"] is False and meta["preset"] == "covid-blues-github"
    assert "CC BY-NC-ND 4.0" in meta["licence"] and "10.1109/JBHI.2025.3543686" in meta["attribution"]
    assert meta["source"] == str(github_src.resolve()) and meta["name"] == "ds"
    recs = {r.video_id: r for r in read_dataset(out)}
    assert sorted(recs) == sorted(stem for stem, *_ in GITHUB)
    for stem, n, sev, *_ in GITHUB:
        r = recs[stem]
        assert r.frame_scores is None and r.mask_files == {}
        assert r.clinician_scores == [int(float(sev))] and r.clip_score == int(float(sev))
        assert r.fps == 25.0 and r.n_frames == n == len(read_frames(r))
        assert r.path == (github_src / "lus_videos" / f"{stem}.mp4").resolve() and r.path.is_absolute()
        assert r.probe == "convex" and r.scanner == "Philips Lumify" and r.hospital == "Maastricht UMC+"
    r = recs["patient_1_R2_2"]
    assert (r.patient_id, r.zone, r.extra["repeat"]) == ("P1", "R2", "2")
    assert r.extra["a_lines"] == "0" and r.extra["b_lines"] == "1" and r.extra["cov_test"] == "1"
    r = recs["patient_1_R2"]
    assert r.extra["a_lines"] == "1" and r.extra["b_lines"] == "1"  # "yes " with a stray space
    assert r.extra["comments"] == "broken pleura line, B-lines" and r.extra["repeat"] == "1"
    assert recs["patient_2_L1"].extra["comments"] == "liver on the right"  # one line in videos.csv
    assert recs["patient_12_R3"].patient_id == "P12" and recs["patient_2_L1"].extra["cov_test"] == "0"
    assert "pat_age" not in recs["patient_1_L1"].extra  # only cov_test of the clinical variables
    assert check_dataset(out) == []


def test_copy_gives_byte_identical_files_via_the_cli(
    github_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "copied"
    rc = lus_train(
        ["import", str(github_src), "--out", str(out), "--copy", "--name", "cb", "--hospital", "H"]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "OK:" in text and "CC BY-NC-ND 4.0" in text
    recs = read_dataset(out)
    assert len(recs) == len(GITHUB) and all(r.hospital == "H" for r in recs)
    for r in recs:
        assert r.path.parent == out / r.patient_id and r.path.name == f"{r.video_id}.mp4"
        assert r.path.read_bytes() == (github_src / "lus_videos" / f"{r.video_id}.mp4").read_bytes()
    rows = list(csv.DictReader((out / "videos.csv").open()))
    assert all(not Path(row["path"]).is_absolute() for row in rows)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["name"] == "cb" and meta["command"].startswith("lus-train import")
    assert check_dataset(out) == []


def test_generic_csv_round_trip(csv_src: Path, tmp_path: Path) -> None:
    assert detect_preset(csv_src / "index.csv") == "csv" == detect_preset(csv_src)
    out = tmp_path / "ds"
    meta = import_clips(csv_src / "index.csv", out, "csv", hospital="fallback")
    assert meta["labels"] == {"frame_scores": False, "video_raters": 2, "masks": False}
    assert "licence" not in meta
    recs = {r.video_id: r for r in read_dataset(out)}
    assert sorted(recs) == ["a_one", "b", "c"]
    a, b, c = recs["a_one"], recs["b"], recs["c"]
    assert (a.patient_id, a.zone, a.probe, a.hospital) == ("P7", "R1", "linear", "fallback")
    assert a.clinician_scores == [1, 2] and a.clip_score == 1  # tie -> the lower score
    assert (a.fps, a.n_frames, a.extra) == (10.0, 3, {"note": "first"})
    assert (b.patient_id, b.zone, b.hospital, b.clip_score, b.n_frames) == ("site-A_3", "", "H2", 3, 5)
    assert c.path == (c.path.resolve()) and c.path.name == "c.mp4" and (c.fps, c.n_frames) == (30.0, 4)
    assert c.clinician_scores == [0, 0] and c.extra["note"] == "absolute path"
    assert check_dataset(out) == []
    # two raters: Setting 3 is defined (b and c have 2 agreeing raters), Setting 2 still is not
    assert [r.video_id for r in setting3(list(recs.values()), 2)] == ["b", "c"]
    with pytest.raises(ValueError, match="Setting 2 needs frame scores"):
        setting2(list(recs.values()), 1)


def test_bad_input_lists_every_problem_and_writes_nothing(
    csv_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    clip(bad / "ok.mp4", 3)
    clip(bad / "other" / "ok.mp4", 3)  # same video id as ok.mp4
    (bad / "garbage.mp4").write_bytes(b"not a video at all" * 10)
    index = write_csv(
        bad / "index.csv",
        ["file", "patient", "score", "probe"],
        [
            ["ok.mp4", "1", "2", "convex"],
            ["missing.mp4", "2", "1", "convex"],  # missing video
            ["garbage.mp4", "3", "1", "convex"],  # undecodable
            ["other/ok.mp4", "4", "4", "convex"],  # score outside 0-3 + duplicate video id
            ["ok.mp4", "5", "x", "convex"],  # not a number + the same file twice
            ["ok.mp4", "", "1.5", "sector"],  # missing patient, fractional score, bad probe
        ],
    )
    out = tmp_path / "out" / "ds"
    rc = lus_train(["import", str(index), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    expect = [
        "missing.mp4: missing video",
        "garbage.mp4: cannot open or decode the video",
        "score '4' is outside 0-3",
        "score 'x' is not a number",
        "score '1.5' is outside 0-3",
        "missing patient id",
        "duplicate clip: video id ok",
        "duplicate clip: " + str((bad / "ok.mp4").resolve()),
        "probe 'sector' must be convex or linear",
    ]
    for e in expect:
        assert e in text, f"{e!r} not reported:\n{text}"
    assert not (tmp_path / "out").exists()  # nothing written, not even the parent folder

    # missing columns, an unknown preset's files, a clip without a score in the github layout
    no_score = write_csv(tmp_path / "cols.csv", ["file", "patient"], [["ok.mp4", "1"]])
    with pytest.raises(ImportProblems, match=r"missing columns \['score'\]"):
        import_clips(no_score, tmp_path / "x", "csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportProblems, match="cannot tell the preset"):
        import_clips(tmp_path / "empty", tmp_path / "x")
    gh = tmp_path / "gh"
    clip(gh / "lus_videos" / "patient_3_L1.mp4", 3)
    clip(gh / "lus_videos" / "patient_3_L2.mp4", 3)
    write_csv(gh / "severity.csv", ["video_file", "Severity Score"], [["patient_3_L1", "nan"], ["p3", "1"]])
    with pytest.raises(ImportProblems) as err:
        import_clips(gh, tmp_path / "x")
    msg = "\n".join(err.value.problems)
    assert "patient_3_L2.mp4: clip without a score" in msg and "score 'nan' is outside 0-3" in msg
    assert "cannot read patient and zone from 'p3'" in msg and len(err.value.problems) == 3
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_existing_output_is_refused_unless_forced(csv_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ImportProblems, match="exists and is not empty"):
        import_clips(csv_src, out, probe="linear")
    assert (out / "keep.txt").read_text() == "mine"
    import_clips(csv_src, out, force=True)
    assert not (out / "keep.txt").exists() and len(read_dataset(out)) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    import_clips(csv_src, empty)  # an empty folder is fine
    assert len(read_dataset(empty)) == 3


def test_settings_2_and_3_and_the_frame_trainer_refuse_clip_level_data(
    github_src: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cb"
    import_clips(github_src, out)
    recs = read_dataset(out)
    with pytest.raises(ValueError, match=rf"Setting 2 needs frame scores; {out} has clip-level labels only"):
        setting2(recs, 2)
    for a in (1, 2, 3):
        with pytest.raises(ValueError, match="Setting 3 is not defined for one rater"):
            setting3(recs, a)
    from train.frame.data import load_layout

    with pytest.raises(ValueError, match=r"no frame labels .*lus-train real-cv"):
        load_layout(out, (32, 32), progress=False)
    from train.data.torch_datasets import FrameDataset

    with pytest.raises(ValueError, match="FrameDataset needs frame scores"):
        FrameDataset(recs, (32, 32))


def test_check_lists_every_clip_level_problem_in_one_list(github_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "cb"
    import_clips(github_src, out, copy=True)
    rows = list(csv.DictReader((out / "videos.csv").open()))
    fields = list(rows[0])
    rows[0]["clinician_scores"] = "5"  # score outside 0-3
    rows[1]["patient_id"] = ""  # missing patient id
    rows[2]["n_frames"] = str(int(rows[2]["n_frames"]) + 2)  # n_frames mismatch
    (out / rows[3]["path"]).write_bytes(b"broken")  # undecodable
    (out / rows[4]["path"]).unlink()  # missing video
    rows.append(dict(rows[2]))  # the same video_id twice
    rows.append(dict(rows[2], video_id="again"))  # the same file referenced twice
    with (out / "videos.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=fields)
        wr.writeheader()
        wr.writerows(rows)
    (out / "splits.json").write_text(json.dumps({"train": ["P1", "P2"], "test": ["P2", "P12"]}))
    problems = "\n".join(check_dataset(out))
    expect = [
        "clinician scores [5] must be scores 0-3",
        "missing patient id",
        f"holds {int(rows[2]['n_frames']) - 2} frames but videos.csv says n_frames={rows[2]['n_frames']}",
        "cannot decode the video",
        "missing video (file or frame folder)",
        f"duplicate clip: video_id {rows[2]['video_id']} repeats",
        f"duplicate clip: {out / rows[2]['path']} is also video {rows[2]['video_id']}",
        "patient P2 is in both 'train' and 'test'",
    ]
    for e in expect:
        assert e in problems, f"{e!r} not reported:\n{problems}"


def test_frame_labelled_layouts_still_read_as_before(tmp_path: Path) -> None:
    w = LayoutWriter(tmp_path / "d", "t")
    w.add_video(
        video_id="P1_V1",
        patient_id="P1",
        frames=np.zeros((4, 32, 32), np.uint8),
        fps=10,
        probe="linear",
        hospital="h",
        frame_scores=[0, 0, 1, 1],
        clinician_scores=[1, 1, 0],
    )
    with pytest.raises(ValueError, match="not both"):
        w.add_clip(
            video_id="x",
            patient_id="P1",
            path=tmp_path,
            fps=1,
            n_frames=1,
            probe="linear",
            hospital="",
            clinician_scores=[1],
        )
    w.close()
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["labels"] == {
        "frame_scores": True,
        "video_raters": 3,
        "masks": False,
    }
    assert (
        next(csv.reader((tmp_path / "d" / "videos.csv").open()))[-1] == "clinician_scores"
    )  # no new columns
    for drop_labels in (False, True):
        if drop_labels:  # a dataset.json of before the labels block
            meta = json.loads((tmp_path / "d" / "dataset.json").read_text())
            del meta["labels"]
            (tmp_path / "d" / "dataset.json").write_text(json.dumps(meta))
        (r,) = read_dataset(tmp_path / "d")
        assert r.frame_scores is not None and r.frame_scores.tolist() == [0, 0, 1, 1]
        assert (r.zone, r.extra, r.clip_score) == ("", {}, 1)
        assert [x.tolist() for _, x in setting2([r], 1)] == [[0, 3]]
    assert check_dataset(tmp_path / "d") == []


def test_small_parsers() -> None:
    assert [parse_score(s) for s in ("0", "2.0", " 3 ")] == [0, 2, 3]
    for bad, why in (("", "missing"), ("-1", "outside"), ("2.5", "outside"), ("two", "not a number")):
        with pytest.raises(ValueError, match=why):
            parse_score(bad)
    assert [patient_key(p) for p in ("10", "010", "10.0", "P10", "site-A_3")] == [
        "P10",
        "P10",
        "P10",
        "P10",
        "site-A_3",
    ]
    rec = VideoRecord("v", "p", "convex", "h", Path("v.mp4"), 25.0, 3, None, [2, 1, 1, 2, 3])
    assert (
        rec.clip_score == 1 and VideoRecord("v", "p", "convex", "h", Path("v"), 1, 1, None).clip_score is None
    )


def test_real_covid_blues_two_patients(tmp_path: Path) -> None:
    if not (COVID_BLUES / "index.csv").is_file():
        pytest.skip(f"no COVID-BLUES copy at {COVID_BLUES} (set LUS_COVID_BLUES to run the real-data test)")
    rows = list(csv.DictReader((COVID_BLUES / "index.csv").open()))
    first_two = list(dict.fromkeys(r["patient_id"] for r in rows))[:2]
    want = {r["file"].removesuffix(".mp4"): r for r in rows if r["patient_id"] in first_two}
    out = tmp_path / "cb"
    meta = import_clips(COVID_BLUES, out, patients=first_two)  # referenced in place, never copied
    assert meta["preset"] == "covid-blues-index" and "CC BY-NC-ND 4.0" in meta["licence"]
    recs = read_dataset(out)
    assert sorted(r.video_id for r in recs) == sorted(want)
    assert {r.patient_id for r in recs} == {f"P{int(p)}" for p in first_two}
    for r in recs:
        row = want[r.video_id]
        assert r.path == (COVID_BLUES / "videos" / row["file"]).resolve()
        assert r.zone == row["zone"] and r.clinician_scores == [int(row["label"])] and r.frame_scores is None
        assert r.fps == float(row["fps"]) and r.n_frames == int(row["frames"])
        assert {k: r.extra[k] for k in ("a_lines", "b_lines", "cov_test", "repeat")} == {
            k: row[k] for k in ("a_lines", "b_lines", "cov_test", "repeat")
        }
    assert check_dataset(out, decode=False) == []
    assert not any(p.suffix == ".mp4" for p in out.rglob("*"))
    shutil.rmtree(out)
