"""Patient-level splits and the paper's evaluation settings (Roy et al. 2020, §IV-A4 and §V-A):

* train/test by patient (no patient in both; ``splits.json`` when the dataset has one);
* patient-level k-fold;
* Setting 2: drop, in every video, the K frames before and the K frames after each transition of
  the ground-truth frame score (frames t−K … t+K−1 around a change at frame t, where
  ``score[t] != score[t−1]``) — the ambiguous frames at the boundary between two scores;
* Setting 3: keep only the videos on which at least A of the clinicians agree (the most common
  video score was given by ≥ A of them); videos without video-level scores are dropped.

Clip-level data (one score per clip from one rater, ``VideoRecord.frame_scores is None``) has
neither: :func:`setting2` and :func:`setting3` refuse it by name rather than silently returning
Setting 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synth.clinicians import max_agreeing

from .layout import DatasetError, VideoRecord, read_splits


def patients_of(records: Sequence[VideoRecord]) -> list[str]:
    return sorted({r.patient_id for r in records})


def check_disjoint(train: Sequence[VideoRecord], test: Sequence[VideoRecord]) -> None:
    """Raise :class:`DatasetError` naming every patient found in both sets."""
    both = sorted(set(patients_of(train)) & set(patients_of(test)))
    if both:
        raise DatasetError([f"patient {p} is in both the train and the test split" for p in both])


def patient_split(
    records: Sequence[VideoRecord], test_fraction: float = 0.25, seed: int = 0
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Random patient-level split: ``round(test_fraction · P)`` patients (≥ 1, ≤ P − 1) to test."""
    patients = patients_of(records)
    if len(patients) < 2:
        raise ValueError(f"a patient-level split needs at least 2 patients, got {len(patients)}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = min(len(patients) - 1, max(1, round(test_fraction * len(patients))))
    test_p = set(np.random.default_rng(seed).permutation(patients)[:n_test].tolist())
    train = [r for r in records if r.patient_id not in test_p]
    test = [r for r in records if r.patient_id in test_p]
    check_disjoint(train, test)
    return train, test


def split_from_file(root, records: Sequence[VideoRecord]) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """The dataset's own ``splits.json`` train/test split (clear errors when absent or overlapping)."""
    splits = read_splits(root)
    if splits is None or "train" not in splits or "test" not in splits:
        raise DatasetError(
            [f"{root}/splits.json: missing or without 'train' and 'test'; use patient_split()"]
        )
    train_p, test_p = set(splits["train"]), set(splits["test"])
    both = sorted(train_p & test_p)
    if both:
        raise DatasetError([f"{root}/splits.json: patient {p} is in both 'train' and 'test'" for p in both])
    unknown = sorted({r.patient_id for r in records} - train_p - test_p)
    if unknown:
        raise DatasetError([f"{root}/splits.json: patient {p} is in no split" for p in unknown])
    return [r for r in records if r.patient_id in train_p], [r for r in records if r.patient_id in test_p]


def patient_kfold(
    records: Sequence[VideoRecord], k: int, seed: int = 0
) -> list[tuple[list[VideoRecord], list[VideoRecord]]]:
    """``k`` (train, validation) pairs; every patient is in exactly one validation fold."""
    patients = patients_of(records)
    if k < 2 or k > len(patients):
        raise ValueError(f"k-fold needs 2 <= k <= number of patients ({len(patients)}), got k={k}")
    order = np.random.default_rng(seed).permutation(patients)
    folds = [set(order[i::k].tolist()) for i in range(k)]
    out = []
    for f in folds:
        val = [r for r in records if r.patient_id in f]
        train = [r for r in records if r.patient_id not in f]
        check_disjoint(train, val)
        out.append((train, val))
    return out


def setting2_keep(frame_scores: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Boolean [T]: False for the K frames before and K frames after each score transition."""
    s = np.asarray(frame_scores, dtype=np.int64)
    if k < 0:
        raise ValueError(f"K must be >= 0, got {k}")
    keep = np.ones(s.size, bool)
    for t in np.flatnonzero(s[1:] != s[:-1]) + 1:
        keep[max(0, t - k) : t + k] = False
    return keep


def _dataset_name(records: Sequence[VideoRecord]) -> str:
    names = sorted({r.dataset for r in records if r.dataset})
    return ", ".join(names) if names else "this dataset"


def setting2(records: Sequence[VideoRecord], k: int) -> list[tuple[VideoRecord, np.ndarray]]:
    """(record, kept frame indices) per video under Setting 2; videos left empty are dropped.

    Raises ValueError for videos without frame scores (clip-level data): Setting 2 is defined by
    the frame-score transitions, which such data does not have.
    """
    unlabelled = [r for r in records if r.frame_scores is None]
    if unlabelled:
        raise ValueError(
            f"Setting 2 needs frame scores; {_dataset_name(unlabelled)} has clip-level labels only "
            f"({len(unlabelled)} of {len(records)} videos without frame scores)"
        )
    out = []
    for r in records:
        idx = np.flatnonzero(setting2_keep(r.frame_scores, k))
        if idx.size:
            out.append((r, idx))
    return out


def setting3(records: Sequence[VideoRecord], a: int) -> list[VideoRecord]:
    """Videos on which at least ``a`` clinicians gave the same video score.

    Raises ValueError when the videos were scored by one rater (Setting 3 measures agreement
    between raters; with one rater it would silently be Setting 1) or by none.
    """
    if a < 1:
        raise ValueError(f"A must be >= 1, got {a}")
    n = max((len(r.clinician_scores) for r in records), default=0)
    if records and n == 0:
        raise ValueError(f"Setting 3 needs the clinicians' video scores; {_dataset_name(records)} has none")
    if n == 1:
        raise ValueError(
            f"Setting 3 is not defined for one rater: {_dataset_name(records)} has one video score per "
            f"clip, so agreement of A={a} raters cannot be measured"
        )
    if n and a > n:
        raise ValueError(f"A={a} is more than the {n} clinicians who scored the videos")
    return [r for r in records if r.clinician_scores and max_agreeing(r.clinician_scores) >= a]
