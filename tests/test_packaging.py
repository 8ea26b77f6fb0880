"""The wheel's contents, checked from the project's configuration (the full install is `make check-install`).

* every Python package of the source tree is listed in ``pyproject.toml`` (the list is explicit because the
  shipped models are mapped in as ``lus_stream_models``: a new subpackage must not be left out silently);
* the package data carries each default model a lane would load (manifest + ONNX file) and the aggregator
  parameters, for both model sets (real-scan and demo), and each model card.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from setuptools import find_packages

from stream.lanes import find_models

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _shipped(path: Path) -> bool:
    """Would ``path`` (a file under models/) go into the wheel?"""
    rel = path.relative_to(REPO / "models")
    package = ".".join(("lus_stream_models", *rel.parent.parts))
    return package in CONFIG["packages"] and any(
        fnmatch.fnmatch(rel.name, pattern) for pattern in CONFIG["package-data"].get(package, []))


def test_every_source_package_is_listed() -> None:
    found = find_packages(str(REPO), include=["stream*", "engines*", "train*", "synth*"])
    listed = [p for p in CONFIG["packages"] if not p.startswith("lus_stream_models")]
    assert sorted(found) == sorted(listed)
    assert CONFIG["package-dir"] == {"lus_stream_models": "models"}


def test_package_data_carries_every_default_model() -> None:
    for model_set in (REPO / "models", REPO / "models" / "demo"):
        found = find_models(model_set)
        assert found.frame is not None and found.aggregator is not None and len(found.seg) == 3
        for manifest in [found.frame, found.aggregator, *found.seg]:
            manifest = manifest.resolve()
            assert _shipped(manifest), manifest
            onnx = manifest.with_suffix(".onnx")
            assert not onnx.exists() or _shipped(onnx), onnx
    assert _shipped(REPO / "models" / "demo" / "models.json")
    for card in (REPO / "models").rglob("MODEL_CARD.md"):
        assert _shipped(card), card
    assert not any(_shipped(p) for p in (REPO / "models").rglob("*.torch.*"))  # training artefacts stay out
