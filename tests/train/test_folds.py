"""Stratified patient-level folds (``train.data.folds``): disjoint, complete, stratified, seeded;
validation splits drawn from training patients only; the folds file and its check; and the
``python -m train.data folds`` / ``check --folds`` commands on a clip-level dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.data.__main__ import main as data_main
from train.data.folds import (
    check_folds,
    patient_strata,
    read_folds,
    stratified_patient_folds,
    validation_split,
    write_folds,
)
from train.data.layout import LayoutWriter, write_video


def collection(n_patients: int = 37, seed: int = 3) -> tuple[list[str], list[int]]:
    """Clips of ``n_patients`` patients (2-7 clips each, scores 0-3, severe patients rarer)."""
    rng = np.random.default_rng(seed)
    patients, scores = [], []
    for p in range(n_patients):
        worst = int(rng.choice(4, p=[0.3, 0.3, 0.25, 0.15]))
        for _ in range(int(rng.integers(2, 8))):
            patients.append(f"P{p + 1}")
            scores.append(int(rng.integers(0, worst + 1)))
    return patients, scores


PATIENTS, SCORES = collection()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_are_disjoint_complete_and_stratified(k: int) -> None:
    folds = stratified_patient_folds(PATIENTS, SCORES, k=k, seed=0)
    assert len(folds) == k
    flat = [p for f in folds for p in f]
    assert len(flat) == len(set(flat)) and set(flat) == set(PATIENTS)  # disjoint, everyone
    assert check_folds(folds, sorted(set(PATIENTS))) == []
    strata = patient_strata(PATIENTS, SCORES)
    for s in set(strata.values()):
        per_fold = [sum(1 for p in f if strata[p] == s) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (s, per_fold)


def test_folds_are_reproducible_for_a_seed_and_differ_for_another() -> None:
    a = stratified_patient_folds(PATIENTS, SCORES, k=5, seed=0)
    assert a == stratified_patient_folds(PATIENTS, SCORES, k=5, seed=0)
    assert a != stratified_patient_folds(PATIENTS, SCORES, k=5, seed=1)
    with pytest.raises(ValueError, match="2 <= k <= number of patients"):
        stratified_patient_folds(PATIENTS, SCORES, k=38)


def test_validation_split_never_holds_a_test_fold_patient() -> None:
    folds = stratified_patient_folds(PATIENTS, SCORES, k=5, seed=0)
    for i, test in enumerate(folds):
        train = sorted(p for j, f in enumerate(folds) if j != i for p in f)
        fit, val = validation_split(train, PATIENTS, SCORES, fraction=0.2, seed=i)
        assert val and fit and not set(val) & set(test) and not set(fit) & set(test)
        assert not set(fit) & set(val) and sorted(fit + val) == train
        assert (fit, val) == validation_split(train, PATIENTS, SCORES, fraction=0.2, seed=i)


def test_folds_file_round_trip_and_check(tmp_path: Path) -> None:
    folds = stratified_patient_folds(PATIENTS, SCORES, k=3, seed=7)
    path = tmp_path / "folds.json"
    write_folds(path, folds, seed=7, dataset="d")
    assert read_folds(path) == folds and json.loads(path.read_text())["seed"] == 7
    bad = [[*folds[0], folds[1][0]], folds[1], [*folds[2][1:], "P999"]]
    problems = check_folds(bad, sorted(set(PATIENTS)))
    assert f"patient {folds[1][0]} is in fold 0 and fold 1" in problems
    assert f"patient {folds[2][0]} is in no fold" in problems
    assert "patient P999 (fold 2) has no clips in the dataset" in problems
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a folds file"):
        read_folds(tmp_path / "other.json")


def test_folds_and_check_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.zeros((3, 32, 32), np.uint8), 10)
    w = LayoutWriter(tmp_path / "ds", "ds", {"synthetic": False})
    for i, (p, s) in enumerate(zip(PATIENTS[:40], SCORES[:40], strict=True)):
        copy = tmp_path / "clips" / f"c{i}.mp4"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(clip.read_bytes())
        w.add_clip(
            video_id=f"c{i}", patient_id=p, path=copy, fps=10, n_frames=3, probe="convex", hospital="h",
            clinician_scores=[s],
        )  # fmt: skip
    w.close()
    out = tmp_path / "folds.json"
    assert data_main(["folds", str(tmp_path / "ds"), "--k", "3", "--seed", "2", "--out", str(out)]) == 0
    folds = read_folds(out)
    assert folds == stratified_patient_folds(PATIENTS[:40], SCORES[:40], k=3, seed=2)
    assert data_main(["check", str(tmp_path / "ds"), "--no-decode", "--folds", str(out)]) == 0
    assert "folds" in capsys.readouterr().out
    write_folds(out, [folds[0], folds[1]], seed=2)  # a fold's patients left out
    assert data_main(["check", str(tmp_path / "ds"), "--no-decode", "--folds", str(out)]) == 1
    assert f"patient {folds[2][0]} is in no fold" in capsys.readouterr().out
