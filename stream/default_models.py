"""Where the shipped models are, wherever lus-stream is installed.

The default models travel with the package: the wheel carries the repository's ``models/`` folder as the
data-only package ``lus_stream_models`` (ONNX files, manifests, aggregator parameters, model cards; not
the torch programs or figures). A source checkout run without installing uses ``models/`` beside
``stream/``. ``--engines DIR`` overrides both.

Two model sets:

* ``real`` — ``<root>/``: the real-scan frame model (``frame/``) and the segmentation ensemble (``seg/``);
  the default for cameras, clips, folders, DICOM and URLs.
* ``demo`` — ``<root>/demo/``: the synthetic-data frame model; the simulator's default. Its
  ``models.json`` points its segmentation lane at ``../seg`` (see :func:`stream.lanes.find_models`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "lus_stream_models"
SOURCE_TREE = Path(__file__).resolve().parents[1] / "models"


def models_root() -> Path | None:
    """The installed ``lus_stream_models`` package folder (it wins over a checkout's ``models/`` when both
    exist: in an editable install they are the same folder), else the source tree's ``models/``; None if
    neither holds a ``frame/`` folder (a broken install)."""
    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(location, "frame").is_dir():
            return Path(location)
    return SOURCE_TREE if (SOURCE_TREE / "frame").is_dir() else None


def default_engines(source_kind: str | None = None) -> Path | None:
    """The model folder used without ``--engines``: the real-scan models, or the synthetic-data
    demonstration models (``demo/``) for the simulator's sources. None when no models are installed."""
    root = models_root()
    if root is None:
        return None
    if source_kind == "synthetic" and (root / "demo" / "frame").is_dir():
        return root / "demo"
    return root
