"""Split rules: patient-level train/test and k-fold, Setting 2 (drop K frames around transitions),
Setting 3 (>= A agreeing clinicians), and the errors for overlapping splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.data.layout import DatasetError, VideoRecord
from train.data.splits import (
    check_disjoint,
    patient_kfold,
    patient_split,
    setting2,
    setting2_keep,
    setting3,
    split_from_file,
)


def rec(vid: str, pid: str, scores: list[int], clinicians: list[int] | None = None) -> VideoRecord:
    return VideoRecord(
        vid, pid, "convex", "h", Path(vid), 30.0, len(scores), np.array(scores, np.int64), clinicians or []
    )


RECORDS = [rec(f"P{p}_V{v}", f"P{p}", [0] * 5) for p in range(7) for v in range(2)]


def test_patient_split_is_disjoint_complete_and_seeded() -> None:
    train, test = patient_split(RECORDS, test_fraction=0.3, seed=1)
    tp, sp = {r.patient_id for r in train}, {r.patient_id for r in test}
    assert not tp & sp and tp | sp == {f"P{p}" for p in range(7)} and len(sp) == 2  # round(0.3 * 7)
    assert len(train) + len(test) == len(RECORDS)
    assert patient_split(RECORDS, 0.3, seed=1) == (train, test)
    assert patient_split(RECORDS, 0.3, seed=2) != (train, test)
    with pytest.raises(ValueError, match="at least 2 patients"):
        patient_split(RECORDS[:2])


def test_kfold_puts_every_patient_in_exactly_one_validation_fold() -> None:
    folds = patient_kfold(RECORDS, k=3, seed=0)
    assert len(folds) == 3
    seen: list[str] = []
    for train, val in folds:
        vp = {r.patient_id for r in val}
        assert not vp & {r.patient_id for r in train} and len(train) + len(val) == len(RECORDS)
        seen += sorted(vp)
    assert sorted(seen) == sorted({r.patient_id for r in RECORDS})
    assert sorted(len({r.patient_id for r in v}) for _, v in folds) == [2, 2, 3]
    with pytest.raises(ValueError, match="2 <= k <= number of patients"):
        patient_kfold(RECORDS, k=8)


def test_setting2_drops_k_frames_before_and_after_each_transition() -> None:
    s = [0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1]  # transitions at frames 5 and 11
    keep = setting2_keep(s, 2)
    assert np.flatnonzero(~keep).tolist() == [3, 4, 5, 6, 9, 10, 11, 12]
    assert setting2_keep(s, 0).all()
    assert np.flatnonzero(~setting2_keep([1, 2, 1], 5)).tolist() == [0, 1, 2]  # clipped at the ends
    out = setting2([rec("a", "P", s), rec("b", "Q", [0, 1]), rec("c", "R", [3, 3, 3])], 1)
    assert [r.video_id for r, _ in out] == ["a", "c"]  # "b" lost every frame
    assert out[0][1].tolist() == [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14] and out[1][1].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="K must be >= 0"):
        setting2_keep(s, -1)


def test_setting3_keeps_videos_with_at_least_a_agreeing_clinicians() -> None:
    vids = [
        rec("a", "P", [0], [1, 1, 1, 1, 1]),
        rec("b", "P", [0], [2, 2, 2, 1, 3]),
        rec("c", "Q", [0], [0, 0, 1, 1, 2]),
        rec("d", "Q", [0], []),
    ]
    assert [r.video_id for r in setting3(vids, 1)] == ["a", "b", "c"]  # no video-level labels: dropped
    assert [r.video_id for r in setting3(vids, 3)] == ["a", "b"]
    assert [r.video_id for r in setting3(vids, 4)] == ["a"]
    assert [r.video_id for r in setting3(vids, 5)] == ["a"]
    with pytest.raises(ValueError, match="more than the 5 clinicians"):
        setting3(vids, 6)


def test_patient_in_both_splits_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="patient P1 is in both"):
        check_disjoint([RECORDS[2]], [RECORDS[3]])
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["P0", "P1"], "test": ["P1", "P2"]}))
    with pytest.raises(DatasetError, match="patient P1 is in both 'train' and 'test'"):
        split_from_file(tmp_path, RECORDS)
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["P0", "P1", "P2"], "test": ["P3"]}))
    with pytest.raises(DatasetError, match="patient P4 is in no split"):
        split_from_file(tmp_path, RECORDS)
    (tmp_path / "splits.json").write_text(
        json.dumps({"train": [f"P{p}" for p in range(5)], "test": ["P5", "P6"]})
    )
    train, test = split_from_file(tmp_path, RECORDS)
    assert len(test) == 4 and len(train) == 10
