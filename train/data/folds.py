"""Patient-level, score-stratified k-fold cross-validation and validation splits for clip-labelled
data (the evaluation protocol of the real-scan models: every patient in exactly one test fold,
model selection only on patients of the training folds).

Stratification: each patient gets a stratum, the highest clip score among their clips (a patient
with any score-3 zone is a "3" patient). Within each stratum the patients are shuffled with the
seed and dealt to folds one at a time, each to the fold that holds the fewest clips so far (ties:
the lowest fold index), so folds get similar score mixes and similar clip counts. The same seed and
the same patients always give the same folds; the folds are written to a JSON file
(:func:`write_folds`) so that every run of a protocol reads the same ones.

A validation split (:func:`validation_split`) is drawn from the training patients of a fold only,
with the same stratification; it is never a test fold's patient.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

FOLDS_SCHEMA = "lus-stream/folds/1"


def patient_strata(clip_patients: Sequence[str], clip_scores: Sequence[int]) -> dict[str, int]:
    """Each patient's stratum: the highest score among their clips."""
    if len(clip_patients) != len(clip_scores):
        raise ValueError(f"{len(clip_patients)} patients but {len(clip_scores)} clip scores")
    strata: dict[str, int] = {}
    for p, s in zip(clip_patients, clip_scores, strict=True):
        strata[str(p)] = max(int(s), strata.get(str(p), -1))
    return strata


def _deal(strata: Mapping[str, int], n_clips: Mapping[str, int], k: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for stratum in sorted(set(strata.values()), reverse=True):  # rarest (most severe) first
        members = sorted(p for p, s in strata.items() if s == stratum)
        for p in rng.permutation(members).tolist():
            # fewest patients of this stratum first, then fewest clips, then lowest index
            per_stratum = [sum(1 for q in f if strata[q] == stratum) for f in folds]
            i = min(range(k), key=lambda j: (per_stratum[j], load[j], j))
            folds[i].append(p)
            load[i] += n_clips[p]
    return [sorted(f) for f in folds]


def stratified_patient_folds(
    clip_patients: Sequence[str], clip_scores: Sequence[int], k: int = 5, seed: int = 0
) -> list[list[str]]:
    """``k`` disjoint lists of patient ids covering every patient, stratified by patient stratum."""
    strata = patient_strata(clip_patients, clip_scores)
    if not 2 <= k <= len(strata):
        raise ValueError(f"k-fold needs 2 <= k <= number of patients ({len(strata)}), got k={k}")
    n_clips: dict[str, int] = {}
    for p in clip_patients:
        n_clips[str(p)] = n_clips.get(str(p), 0) + 1
    return _deal(strata, n_clips, k, seed)


def validation_split(
    train_patients: Sequence[str],
    clip_patients: Sequence[str],
    clip_scores: Sequence[int],
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """(fit, validation) patients, both drawn from ``train_patients`` only, stratified like the folds.

    About ``fraction`` of the patients go to validation (at least one, at most all but one).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    wanted = {str(p) for p in train_patients}
    if len(wanted) < 2:
        raise ValueError(f"a validation split needs at least 2 training patients, got {len(wanted)}")
    pairs = [(str(p), int(s)) for p, s in zip(clip_patients, clip_scores, strict=True) if str(p) in wanted]
    missing = sorted(wanted - {p for p, _ in pairs})
    if missing:
        raise ValueError(f"training patients without clips: {missing}")
    k = max(2, round(1 / fraction))
    folds = stratified_patient_folds([p for p, _ in pairs], [s for _, s in pairs], k=min(k, len(wanted)),
                                     seed=seed)  # fmt: skip
    val = folds[0]
    fit = sorted(wanted - set(val))
    return fit, val


def check_folds(folds: Sequence[Sequence[str]], patients: Sequence[str]) -> list[str]:
    """Every problem of a fold list against the dataset's patients (empty = OK)."""
    problems: list[str] = []
    owner: dict[str, int] = {}
    for i, fold in enumerate(folds):
        for p in fold:
            if p in owner:
                problems.append(f"patient {p} is in fold {owner[p]} and fold {i}")
            owner.setdefault(p, i)
    known = set(patients)
    problems += [f"patient {p} is in no fold" for p in sorted(known - set(owner))]
    problems += [
        f"patient {p} (fold {owner[p]}) has no clips in the dataset" for p in sorted(set(owner) - known)
    ]
    return problems


def write_folds(path: str | Path, folds: Sequence[Sequence[str]], *, seed: int, dataset: str = "") -> None:
    """Write the folds as JSON: {"schema", "seed", "dataset", "folds": [[patient ids], ...]}."""
    data = {"schema": FOLDS_SCHEMA, "seed": seed, "dataset": dataset, "folds": [list(f) for f in folds]}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def read_folds(path: str | Path) -> list[list[str]]:
    """The folds of a file written by :func:`write_folds` (clear errors for anything else)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the folds file: {exc}") from exc
    if (
        not isinstance(data, dict)
        or data.get("schema") != FOLDS_SCHEMA
        or not isinstance(data.get("folds"), list)
    ):
        raise ValueError(
            f"{path}: not a folds file (schema {FOLDS_SCHEMA}); make one with `lus-train real-cv`"
        )
    return [[str(p) for p in f] for f in data["folds"]]
