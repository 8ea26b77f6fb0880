"""Model folders on disk: where the shipped models are, and which folder holds each lane's manifests.

One owner for what the engine (``stream.lanes.find_models``, ``stream.default_models``) and the model
server (``engines.triton_repo``, ``lus-serve``) both read:

* :func:`models_root` — the models installed with the package: the wheel carries the repository's
  ``models/`` as the data-only package ``lus_stream_models`` (in an editable install that is the
  checkout's ``models/``); a source checkout run without installing uses ``models/`` beside ``engines/``.
* :func:`lane_dirs` — a model folder's ``frame/`` and ``seg/``, or where its ``models.json`` index points
  them (relative paths: ``models/demo/models.json`` is ``{"frame": "frame", "seg": "../seg"}``).
* :func:`manifest_kind` — a manifest's ``(task, format)`` without validating it (a lookup, not a load).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

MODELS_PACKAGE = "lus_stream_models"
SOURCE_TREE = Path(__file__).resolve().parents[1] / "models"
MODEL_INDEX = "models.json"


def models_root() -> Path | None:
    """The installed ``lus_stream_models`` folder (it wins over a checkout's ``models/`` when both exist:
    in an editable install they are the same folder), else the source tree's ``models/``; None if
    neither holds a ``frame/`` folder (a broken install)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(location, "frame").is_dir():
            return Path(location)
    return SOURCE_TREE if (SOURCE_TREE / "frame").is_dir() else None


def lane_dirs(root: Path) -> tuple[Path, Path]:
    """``(frame folder, seg folder)`` of a model folder; a bad ``models.json`` raises ValueError naming
    the file and the fix."""
    index: dict[str, object] = {}
    if (root / MODEL_INDEX).is_file():
        try:
            index = json.loads((root / MODEL_INDEX).read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{root / MODEL_INDEX} is not valid JSON ({err}); fix or delete it") from None
        if not isinstance(index, dict):
            raise ValueError(f"{root / MODEL_INDEX} must be a JSON object like {{\"seg\": \"../seg\"}}")
    frame, seg = index.get("frame", "frame"), index.get("seg", "seg")
    for lane, rel in (("frame", frame), ("seg", seg)):
        if not isinstance(rel, str):
            raise ValueError(f"{root / MODEL_INDEX}: \"{lane}\" must be a folder path, got {rel!r}")
    return root / str(frame), root / str(seg)


def manifest_kind(path: Path) -> tuple[str | None, str | None]:
    """``(task, format)`` of a manifest file; ``(None, None)`` for anything that is not a JSON object."""
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(m, dict):
        return None, None
    return m.get("task"), m.get("format")
