"""Where the shipped models are, wherever lus-stream is installed.

The default models travel with the package: the wheel carries the repository's ``models/`` folder as the
data-only package ``lus_stream_models`` (ONNX files, manifests, aggregator parameters, model cards; not
the torch programs or figures), found by :func:`engines.model_folders.models_root` (shared with
``lus-serve``); a source checkout run without installing uses its ``models/``. ``--engines DIR``
overrides both.

Two model sets:

* ``real`` — ``<root>/``: the real-scan frame model (``frame/``) and the segmentation ensemble (``seg/``);
  the default for cameras, clips, folders, DICOM and URLs.
* ``demo`` — ``<root>/demo/``: the synthetic-data frame model; the simulator's default. Its
  ``models.json`` points its segmentation lane at ``../seg`` (see :func:`stream.lanes.find_models`).
"""

from __future__ import annotations

from pathlib import Path

from engines.model_folders import models_root

__all__ = ["default_engines", "models_root"]


def default_engines(source_kind: str | None = None) -> Path | None:
    """The model folder used without ``--engines``: the real-scan models, or the synthetic-data
    demonstration models (``demo/``) for the simulator's sources. None when no models are installed."""
    root = models_root()
    if root is None:
        return None
    if source_kind == "synthetic" and (root / "demo" / "frame").is_dir():
        return root / "demo"
    return root
