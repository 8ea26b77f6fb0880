"""Write per-frame probabilities in the aggregator's input format (``train.aggregator.data``):
``{"videos": [{"video_id", "patient_id", "label", "probs": [[p0, p1, p2, p3], ...], "fold"?}]}``,
one row per frame in frame order; ``label`` is the clip label (by default the majority of the
clinicians' scores, ties → lower; ``video_label="first"`` takes the first clinician's, as the paper
does — see :func:`train.frame.data.clip_label`). ``fold`` is written only when given.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch import nn

from train.frame.data import FrameTable
from train.frame.evaluate import predict


def frame_probs_document(
    table: FrameTable, probs: np.ndarray, folds: dict[str, int] | None = None, video_label: str = "majority"
) -> dict:
    """The JSON document for ``table`` given its per-frame probabilities [N, 4]."""
    videos = []
    for vi, v in enumerate(table.videos):
        idx = np.nonzero(table.video == vi)[0]
        idx = idx[np.argsort(table.frame[idx])]
        rows = probs[idx].astype(np.float64)
        rows = rows / rows.sum(1, keepdims=True)
        entry = {
            "video_id": v.video_id,
            "patient_id": v.patient_id,
            "label": v.label_by(video_label),
            "probs": [[round(float(p), 6) for p in r] for r in rows],
        }
        if folds is not None and v.patient_id in folds:
            entry["fold"] = int(folds[v.patient_id])
        videos.append(entry)
    return {"videos": videos}


def dump_frame_probs(
    model: nn.Module,
    table: FrameTable,
    path: str | Path,
    batch: int = 64,
    folds: dict[str, int] | None = None,
    video_label: str = "majority",
) -> Path:
    """Run ``model`` over every frame of ``table`` and write the document to ``path``."""
    probs, _ = predict(model, table, batch)
    doc = frame_probs_document(table, probs, folds, video_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":")))
    return path
