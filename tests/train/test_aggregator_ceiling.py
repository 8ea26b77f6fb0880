"""The uninorm ceiling analysis (train/aggregator/ceiling.py, tools/uninorm_ceiling.py): its F1 is
scikit-learn's, its predictions are the layer's, and on a hand-built case it finds the neutral
elements that the hard rule needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train.aggregator.ceiling import grid_predictions, uninorm_ceiling, weighted_f1_rows
from train.aggregator.data import ClipProbs, dump_frame_probs
from train.aggregator.metrics import fold_scores
from train.aggregator.toy import toy_clips
from train.aggregator.training import predict_uninorm

ROOT = Path(__file__).resolve().parents[2]


def test_vectorised_f1_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=40)  # score 3 absent from the truth: weight 0, as in scikit-learn
    preds = rng.integers(0, 4, size=(6, 40))
    ours = weighted_f1_rows(y, preds)
    assert ours == pytest.approx([fold_scores(y, p)["f1"] for p in preds], abs=1e-12)


def test_grid_predictions_are_the_layers_predictions() -> None:
    clips = toy_clips(seed=1, n_patients=4, clips_per_patient=2)
    grid = (0.0, 0.05, 0.5)
    combos, preds = grid_predictions(clips, grid)
    assert combos.shape == (81, 4) and preds.shape == (81, len(clips))
    for i in (0, 17, 40, 80):
        assert preds[i].tolist() == predict_uninorm(clips, combos[i].tolist()).tolist()


def _frames(scores: list[int], sure: float = 0.9) -> np.ndarray:
    probs = np.full((len(scores), 4), (1 - sure) / 3)
    probs[np.arange(len(scores)), scores] = sure
    return probs


def test_finds_the_hard_rule_on_a_hand_built_case() -> None:
    """Clip A: nine score-0 frames and one score-3 frame, label 3; clip B: ten score-0 frames, label 0.

    With every e = 0 (probabilistic sums) clip A's score-0 aggregate 1 − 0.1⁹·(1−0.0333) beats its
    score-3 aggregate 1 − 0.9667⁹·0.1 ≈ 0.926, so A is called 0. An e₀ above 0.0333 puts A's score-3
    frame (p₀ = 0.0333) below e₀: the min-uninorm makes A's score-0 aggregate tiny and A is called 3,
    while B (all p₀ = 0.9 > e₀) stays 0.
    """
    clips = [
        ClipProbs("a", "pa", 3, _frames([0] * 9 + [3])),
        ClipProbs("b", "pb", 0, _frames([0] * 10)),
    ]
    grid = (0.0, 0.01, 0.05, 0.5)
    assert predict_uninorm(clips, [0.0] * 4).tolist() == [0, 0]
    result = uninorm_ceiling(clips, np.array([0, 1]), grid)
    assert result["in_sample"]["f1"] == 1.0
    assert result["in_sample"]["neutral_elements"][0] == 0.05  # first e₀ on the grid above 0.0333
    assert result["max_argmax"]["per_fold"] == [1.0, 1.0]
    assert result["argmax_mean"]["per_fold"] == [0.0, 1.0]  # A's mean says 0


def test_tool_writes_its_json(tmp_path: Path) -> None:
    clips = toy_clips(seed=2, n_patients=10, clips_per_patient=2)
    src = dump_frame_probs(clips, tmp_path / "probs.json")
    out = tmp_path / "ceiling.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools/uninorm_ceiling.py"), "--frame-probs", str(src), "--folds", "3",
         "--out", str(out)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert len(doc["cross_validated"]["per_fold"]) == 3 and "3 folds from seed 0" in doc["folds"]
    labels = np.array([c.label for c in clips])
    for fold in doc["cross_validated"]["per_fold"]:  # the in-sample pick is the best on all clips
        on_all = fold_scores(labels, predict_uninorm(clips, fold["neutral_elements"]))["f1"]
        assert on_all <= doc["in_sample"]["f1"] + 1e-12
    assert f"F1 {doc['in_sample']['f1']:.3f}" in run.stdout
    missing = str(tmp_path / "none.json")
    bad = subprocess.run(
        [sys.executable, str(ROOT / "tools/uninorm_ceiling.py"), "--frame-probs", missing],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "none.json: file not found" in bad.stderr
