"""make_synthetic → layout → reader round trip (videos really decode), the check command listing
every problem of a broken dataset in one run, and clear reader errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train.data.labelme import rasterise
from train.data.layout import DatasetError, LayoutWriter, read_dataset, read_frames

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--patients",
    "3",
    "--clips-per-patient",
    "2",
    "--seed",
    "5",
    "--frames",
    "8:12",
    "--size",
    "120x160",
    "--masks-per-clip",
    "2",
    "--no-progress",
]


def make(out: Path, *extra: str) -> dict:
    res = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_synthetic.py"), "--out", str(out), *ARGS, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train.data", "check", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("synth")
    summary = make(base / "mp4")
    make(base / "png", "--frame-folders")
    return base / "mp4", base / "png", summary


def test_make_synthetic_writes_a_layout_the_reader_loads(datasets: tuple[Path, Path, dict]) -> None:
    mp4, _png, summary = datasets
    recs = read_dataset(mp4)
    assert len(recs) == 6 == summary["videos"] and len({r.patient_id for r in recs}) == 3
    assert (mp4 / "contact_sheet.png").stat().st_size > 10_000
    meta = json.loads((mp4 / "dataset.json").read_text())
    assert meta["synthetic"] is True and meta["clinical_use"] is False and meta["seed"] == 5
    splits = json.loads((mp4 / "splits.json").read_text())
    assert not set(splits["train"]) & set(splits["test"])
    assert sorted(splits["train"] + splits["test"]) == sorted({r.patient_id for r in recs})
    for r in recs:
        assert (
            r.path.suffix == ".mp4" and r.probe in ("convex", "linear") and r.hospital.startswith("hospital-")
        )
        assert 8 <= r.n_frames <= 12 and len(r.frame_scores) == r.n_frames
        assert len(r.clinician_scores) == 5 and len(r.mask_files) == 2
    assert sum(np.bincount(np.concatenate([r.frame_scores for r in recs]), minlength=4)) == summary["frames"]


def test_videos_decode_and_match_the_lossless_frame_folders(datasets: tuple[Path, Path, dict]) -> None:
    mp4, png, _ = datasets
    a, b = read_dataset(mp4), read_dataset(png)
    assert [r.video_id for r in a] == [r.video_id for r in b]  # same seed → same dataset
    for ra, rb in zip(a, b, strict=True):
        assert rb.path.is_dir() and np.array_equal(ra.frame_scores, rb.frame_scores)
        assert ra.clinician_scores == rb.clinician_scores and sorted(ra.mask_files) == sorted(rb.mask_files)
        fa, fb = read_frames(ra), read_frames(rb)
        assert fa.shape == fb.shape == (ra.n_frames, 120, 160) and fa.dtype == np.uint8
        assert np.abs(fa.astype(int) - fb.astype(int)).mean() < 4  # H.264 is lossy, but only a little
        idx = sorted(ra.mask_files)[::-1]
        assert np.array_equal(read_frames(rb, idx), fb[idx])  # chosen frames, in the order asked
        for i in idx:  # masks are consistent with the frame score
            m = rasterise(ra.mask_files[i], fa.shape[1:])
            present = set(np.unique(m).tolist()) - {4}
            assert present and max(present) == ra.frame_scores[i]
            assert np.array_equal(m, rasterise(rb.mask_files[i], fb.shape[1:]))


def test_check_passes_on_a_good_dataset(datasets: tuple[Path, Path, dict]) -> None:
    res = check(datasets[0])
    assert res.returncode == 0 and res.stdout.startswith("OK:"), res.stdout + res.stderr


def test_check_lists_every_problem_in_one_run(datasets: tuple[Path, Path, dict], tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(datasets[0], root)
    recs = read_dataset(root)
    r0, r1, r2, r3 = recs[:4]
    (root / r0.path).unlink()  # 1. missing video
    masks1 = root / "masks" / r1.video_id
    shutil.copy(next(iter(r1.mask_files.values())), masks1 / "000500.json")  # 2. frame index beyond the video
    next(iter(r2.mask_files.values())).write_text('{"shapes": [')  # 3. malformed JSON
    doc = json.loads(next(iter(r3.mask_files.values())).read_text())
    doc["shapes"][0]["label"] = "consolidation"
    next(iter(r3.mask_files.values())).write_text(json.dumps(doc))  # 4. unknown polygon label
    splits = json.loads((root / "splits.json").read_text())
    splits["test"].append(splits["train"][0])
    (root / "splits.json").write_text(json.dumps(splits))  # 5. patient in both splits
    rows = list(csv.DictReader((root / "videos.csv").open()))
    rows[4]["n_frames"] = str(int(rows[4]["n_frames"]) + 3)  # 6. more frames declared than the video holds
    with (root / "frame_scores" / f"{rows[4]['video_id']}.csv").open("a") as fh:
        fh.write("".join(f"{int(rows[4]['n_frames']) - 3 + k},0\n" for k in range(3)))
    rows[5]["probe"] = "sector"  # 7. unknown probe
    with (root / "videos.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    (root / "frame_scores" / f"{r3.video_id}.csv").write_text("frame,score\n0,1\n1,7\n")  # 8. bad scores

    res = check(root)
    out = res.stdout
    assert res.returncode == 1
    expect = [
        f"missing video (file or frame folder) for video {r0.video_id}",
        "000500.json: frame index 500 is beyond the video",
        "malformed JSON",
        "unknown label 'consolidation'",
        f"patient {splits['train'][0]} is in both 'train' and 'test'",
        "frames but videos.csv says n_frames=",
        "probe 'sector' must be 'convex' or 'linear'",
        "scores [7] are not scores 0-3",
    ]
    for e in expect:
        assert e in out, f"{e!r} not reported:\n{out}"
    # The reader refuses the same folder, naming the files.
    with pytest.raises(DatasetError) as err:
        read_dataset(root)
    assert str(root / r0.path) in str(err.value) and len(err.value.problems) >= 4


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"videos\.csv: missing"):
        read_dataset(tmp_path)
    w = LayoutWriter(tmp_path / "d", "t")
    rec = w.add_video(
        video_id="P1_V1",
        patient_id="P1",
        frames=np.zeros((4, 32, 32), np.uint8),
        fps=10,
        probe="linear",
        hospital="h",
        frame_scores=[0, 0, 1, 1],
    )
    w.close()
    with pytest.raises(ValueError, match=r"P1_V1\.mp4: frame index 9 is beyond the video \(4 frames\)"):
        read_frames(rec, [1, 9])
    with pytest.raises(ValueError, match="even frame sizes"):
        w.add_video(
            video_id="P1_V2",
            patient_id="P1",
            frames=np.zeros((2, 31, 32), np.uint8),
            fps=10,
            probe="linear",
            hospital="h",
            frame_scores=[0, 0],
        )
    with pytest.raises(ValueError, match="2 frames but 3 frame scores"):
        w.add_video(
            video_id="P1_V3",
            patient_id="P1",
            frames=np.zeros((2, 32, 32), np.uint8),
            fps=10,
            probe="linear",
            hospital="h",
            frame_scores=[0, 0, 1],
        )
    (tmp_path / "d" / "videos.csv").write_text("video_id,patient_id\nA,B\n")
    with pytest.raises(DatasetError, match="missing columns"):
        read_dataset(tmp_path / "d")


def test_make_synthetic_refuses_bad_arguments(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_synthetic.py"),
            "--out",
            str(tmp_path / "x"),
            "--size",
            "121x160",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 2 and "even sizes" in res.stderr
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_synthetic.py"),
            "--out",
            str(tmp_path / "x"),
            "--patients",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 2 and "at least 2 patients" in res.stderr
