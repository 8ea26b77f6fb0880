"""Cross-validation folds for the aggregator (paper §IV-B.4: k = 5, split at the patient level).

If every clip carries ``fold`` those folds are used exactly as given (that is how a published split is
reproduced); otherwise patients are assigned to folds from the seed, stratified by clip label where the
data allow it (scikit-learn's ``StratifiedGroupKFold``), so that no patient is in two folds.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from train.aggregator.data import ClipProbs


def assign_folds(clips: list[ClipProbs], n_folds: int, seed: int) -> tuple[np.ndarray, str]:
    """Fold index per clip and a short description of where the folds came from.

    Given folds are renumbered 0..k-1 in sorted order of their values (``n_folds`` is then ignored,
    and a mismatch is reported in the description).
    """
    given = [c.fold for c in clips]
    if all(f is not None for f in given):
        values = sorted(set(given))
        index = {v: i for i, v in enumerate(values)}
        note = f"given in the file ({len(values)} folds: {values})"
        if len(values) != n_folds:
            note += f"; --folds {n_folds} ignored"
        if len(values) < 2:
            raise ValueError(
                f"the file gives a single fold {values}; cross-validation needs at least 2 folds"
            )
        return np.array([index[f] for f in given]), note
    patients = sorted({c.patient_id for c in clips})
    if n_folds < 2:
        raise ValueError(f"--folds {n_folds}: cross-validation needs at least 2 folds")
    if len(patients) < n_folds:
        raise ValueError(
            f"{len(patients)} patient(s) cannot fill {n_folds} patient-level folds; "
            f"use --folds {len(patients)} "
            "or fewer, or add patients"
        )
    groups = np.array([c.patient_id for c in clips])
    labels = np.array([c.label for c in clips])
    folds = np.full(len(clips), -1)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer than n_splits members": expected
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(clips)), labels, groups)):
            folds[test] = k
    ignored = sum(f is not None for f in given)
    note = f"patient-level, {n_folds} folds from seed {seed} (stratified by label)"
    if ignored:
        note += f"; the {ignored} clip(s) with a 'fold' were re-split because not every clip has one"
    return folds, note
