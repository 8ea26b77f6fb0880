"""The aggregator's manifest: no model file (``format "none"``), the learned neutral elements in
``parameters`` — what ``stream.aggregate.load_neutral_elements`` reads at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.manifest import build_manifest, write_manifest

CLASS_NAMES = ["score 0", "score 1", "score 2", "score 3"]


def aggregator_manifest(
    neutral_elements: list[float],
    *,
    data: str,
    synthetic_only: bool,
    command: str,
    metrics: dict[str, Any] | None = None,
    sord_gap: float = 0.5,
    name: str = "uninorm-aggregator",
    version: str = "1",
    training_extra: dict[str, Any] | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """An aggregator manifest; ``temperature`` (τ of the calibrated clip probabilities, see
    ``train.aggregator.temperature``) is written to ``parameters.temperature`` when given."""
    if len(neutral_elements) != 4 or not all(0.0 <= float(e) <= 1.0 for e in neutral_elements):
        raise ValueError(f"neutral_elements {neutral_elements} must be 4 numbers in [0, 1]")
    return build_manifest(
        name=name,
        version=version,
        task="aggregator",
        format="none",
        file=None,
        sha256=None,
        inputs=[{"name": "frame_probs", "shape": ["batch", 4], "dtype": "float32", "layout": "NC",
                 "meaning": "per-frame score probabilities of one clip, one row per frame (batch = frames)"}],
        outputs=[{"name": "video_probs", "shape": [4], "dtype": "float32",
                  "meaning": "softmax(temperature * logit(v) / n) of the four per-score min-uninorm "
                             "folds v over n frames (without a temperature: softmax(v), the paper); "
                             "argmax = clip score"}],
        preprocessing=None,
        class_names=list(CLASS_NAMES),
        training={
            "data": data,
            "synthetic_only": synthetic_only,
            "clinical_use": False,
            "command": command,
            "method": "Roy et al. 2020 §IV-B: SORD (gap 0.5), Adam 1e-2, one summed step per epoch, "
            "≤30 epochs",
            **(training_extra or {}),
        },
        metrics=metrics or {},
        parameters={"neutral_elements": [float(e) for e in neutral_elements], "sord_gap": float(sord_gap)}
        | ({"temperature": float(temperature)} if temperature is not None else {}),
    )  # fmt: skip


def write_aggregator_manifest(manifest: dict[str, Any], path: str | Path) -> Path:
    return write_manifest(manifest, path)
