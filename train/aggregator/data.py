"""Reading and checking a ``--frame-probs`` file: per-frame score probabilities of labelled clips.

Format (docs/aggregation.md, "Training: `lus-train aggregator`")::

    {"videos": [{"video_id": str, "patient_id": str, "label": int 0-3,
                 "probs": [[p0, p1, p2, p3], ... one row per frame ...], "fold": optional int}, ...]}

Any frame scorer can write it (``lus-train frame --dump-frame-probs``, or a hospital's own model), so
the aggregator never depends on our frame model. Every problem in the file is collected and reported
at once, each naming the video and the fix.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_SCORES = 4
SUM_TOLERANCE = 1e-3
REQUIRED = ("video_id", "patient_id", "label", "probs")


class FrameProbsError(ValueError):
    """The frame-probabilities file is malformed; the message lists every problem found."""


@dataclass(frozen=True)
class ClipProbs:
    """One labelled clip: its frames' score probabilities ``probs`` [T, 4] (float64)."""

    video_id: str
    patient_id: str
    label: int
    probs: np.ndarray
    fold: int | None = None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_video(i: int, v: Any) -> tuple[list[str], ClipProbs | None]:
    if not isinstance(v, dict):
        return [f"videos[{i}]: must be an object with keys {list(REQUIRED)}, got {type(v).__name__}"], None
    name = (
        f"videos[{i}] (video_id {v['video_id']!r})" if isinstance(v.get("video_id"), str) else f"videos[{i}]"
    )
    problems = [f"{name}: missing key {k!r}" for k in REQUIRED if k not in v]
    if "video_id" in v and not isinstance(v["video_id"], str):
        problems.append(f"{name}: video_id must be a string, got {v['video_id']!r}")
    if "patient_id" in v and not isinstance(v["patient_id"], str):
        problems.append(f"{name}: patient_id must be a string, got {v['patient_id']!r}")
    if "label" in v and not (_is_int(v["label"]) and 0 <= v["label"] < N_SCORES):
        problems.append(
            f"{name}: label {v['label']!r} is outside 0-3 (must be an integer score 0, 1, 2 or 3)"
        )
    if "fold" in v and v["fold"] is not None and not _is_int(v["fold"]):
        problems.append(f"{name}: fold {v['fold']!r} must be an integer (or left out)")
    probs = None
    if "probs" in v:
        rows = v["probs"]
        if not isinstance(rows, list) or not rows:
            problems.append(f"{name}: probs must be a non-empty list of rows [p0, p1, p2, p3], one per frame")
        else:
            bad_len = [t for t, r in enumerate(rows) if not isinstance(r, list) or len(r) != N_SCORES]
            if bad_len:
                t = bad_len[0]
                got = len(rows[t]) if isinstance(rows[t], list) else type(rows[t]).__name__
                problems.append(
                    f"{name}: probs row {t} has length {got} ({len(bad_len)} bad row(s)); "
                    f"each frame needs {N_SCORES} probabilities [p0, p1, p2, p3]"
                )
            else:
                try:
                    probs = np.asarray(rows, dtype=np.float64)
                except (TypeError, ValueError):
                    problems.append(f"{name}: probs must contain only numbers")
                if probs is not None:
                    bad_val = np.flatnonzero(
                        ~np.isfinite(probs).all(1) | (probs < 0).any(1) | (probs > 1).any(1)
                    )
                    sums = probs.sum(axis=1)
                    bad_sum = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
                    if bad_val.size:
                        problems.append(
                            f"{name}: probs row {int(bad_val[0])} has values outside [0, 1] or not finite "
                            f"({bad_val.size} bad row(s)); write probabilities, not logits"
                        )
                    elif bad_sum.size:
                        t = int(bad_sum[0])
                        problems.append(
                            f"{name}: probs row {t} sums to {sums[t]:.6f}, not 1 within {SUM_TOLERANCE} "
                            f"({bad_sum.size} bad row(s)); write softmax probabilities"
                        )
    if problems:
        return problems, None
    clip = ClipProbs(v["video_id"], v["patient_id"], int(v["label"]), probs, v.get("fold"))
    return [], clip


def parse_frame_probs(doc: Any, source: str = "frame-probs") -> list[ClipProbs]:
    """Validate a parsed ``--frame-probs`` document; raise :class:`FrameProbsError` listing all problems."""
    if not isinstance(doc, dict) or "videos" not in doc:
        raise FrameProbsError(f"{source}: missing key 'videos': the file must be {{\"videos\": [...]}}")
    videos = doc["videos"]
    if not isinstance(videos, list) or not videos:
        raise FrameProbsError(f"{source}: 'videos' must be a non-empty list of clip objects")
    problems: list[str] = []
    clips: list[ClipProbs] = []
    for i, v in enumerate(videos):
        found, clip = _check_video(i, v)
        problems += found
        if clip is not None:
            clips.append(clip)
    seen: dict[str, int] = {}
    for i, c in enumerate(clips):
        if c.video_id in seen:
            problems.append(
                f"video_id {c.video_id!r} appears twice (entries {seen[c.video_id]} and {i}); "
                "ids must be unique"
            )
        seen.setdefault(c.video_id, i)
    # A patient's videos must share one fold, or the cross-validation leaks the patient.
    folds_of: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for c in clips:
        if c.fold is not None:
            folds_of[c.patient_id][c.fold].append(c.video_id)
    for patient, by_fold in folds_of.items():
        if len(by_fold) > 1:
            where = "; ".join(f"fold {f}: {', '.join(ids)}" for f, ids in sorted(by_fold.items()))
            problems.append(
                f"patient {patient!r} is split across folds ({where}); "
                "put all of a patient's videos in one fold"
            )
    if problems:
        raise FrameProbsError(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return clips


def load_frame_probs(path: str | Path) -> list[ClipProbs]:
    """Read and validate a ``--frame-probs`` JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FrameProbsError(
            f"{path}: file not found; write it with `lus-train frame ... --dump-frame-probs FILE`"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameProbsError(f"{path}: not valid JSON ({exc})") from exc
    return parse_frame_probs(doc, str(path))


def patients_from_file(path: str | Path, key: str = "test") -> set[str]:
    """Patient ids listed under ``key`` in a JSON file (e.g. ``lus-train frame``'s ``splits.json``)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameProbsError(f"{path}: cannot read the patient list ({exc})") from exc
    ids = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        keys = list(doc) if isinstance(doc, dict) else []
        raise FrameProbsError(
            f"{path}: no list of patient ids under {key!r} (keys: {keys}); pass --patients-key"
        )
    return set(ids)


def select_patients(clips: list[ClipProbs], patients: set[str], source: str = "") -> list[ClipProbs]:
    """Keep the clips of ``patients`` (the frame model's held-out patients: the paper's T')."""
    kept = [c for c in clips if c.patient_id in patients]
    if not kept:
        raise FrameProbsError(
            f"none of the {len(clips)} clips belongs to the {len(patients)} patient(s) of "
            f"{source or 'the list'}; "
            "check that the frame-probs file and the patient list come from the same dataset"
        )
    return kept


def dump_frame_probs(clips: list[ClipProbs], path: str | Path) -> Path:
    """Write clips in the ``--frame-probs`` format (the inverse of :func:`load_frame_probs`)."""
    videos = []
    for c in clips:
        v: dict[str, Any] = {
            "video_id": c.video_id,
            "patient_id": c.patient_id,
            "label": int(c.label),
            "probs": [[round(float(p), 7) for p in row] for row in c.probs],
        }
        if c.fold is not None:
            v["fold"] = int(c.fold)
        videos.append(v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"videos": videos}) + "\n", encoding="utf-8")
    return path
