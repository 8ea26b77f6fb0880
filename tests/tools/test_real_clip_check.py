"""tools/real_clip_check.py on a real clip: the engine really runs in a subprocess, its recording is
read back, and the clip scores agree with the same aggregators folded offline over the recorded
per-frame probabilities."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.aggregate import load_neutral_elements, make_aggregator

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "real_clip_check.py"
CLIP = "pocus__Pneu_prospective_file3.mp4"

pytestmark = pytest.mark.realclips


def test_scores_a_labelled_real_clip_end_to_end(real_clips_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(TOOL), "--clips", str(real_clips_dir), "--only", CLIP, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    index = {r["file"]: r for r in csv.DictReader((real_clips_dir / "index.csv").open())}
    (clip,) = json.loads((out / "real_clips.json").read_text())["clips"]
    assert clip["file"] == CLIP and clip["label"] == int(index[CLIP]["severity_0_3"])
    probs = np.asarray(clip["probs"])
    assert clip["frames"] == len(probs) == int(index[CLIP]["frames"])  # lossless: every frame scored
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    assert clip["frame_score_counts"] == np.bincount(probs.argmax(axis=1), minlength=4).tolist()
    # The published uninorm score = the shipped neutral elements folded offline over the same frames.
    uninorm = make_aggregator("uninorm", load_neutral_elements(ROOT / "models/frame/aggregator.json"))
    for row in probs:
        uninorm.update(row)
    scores = clip["clip_scores"]
    assert scores["uninorm"] == uninorm.score()
    assert scores["max_argmax"] == int(probs.argmax(axis=1).max())
    assert scores["argmax_mean"] == int(probs.mean(axis=0).argmax())
    assert f"| {CLIP} |" in (out / "real_clips.md").read_text()
    png = cv2.imread(str(out / "real_clips.png"))
    assert png is not None and png.shape[0] > 100


def test_names_an_unknown_clip(real_clips_dir: Path, tmp_path: Path) -> None:
    args = ["--clips", str(real_clips_dir), "--only", "nope.mp4", "--out", str(tmp_path)]
    run = subprocess.run(
        [sys.executable, str(TOOL), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0 and "--only ['nope.mp4']: not in" in run.stderr
