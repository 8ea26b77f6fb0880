"""Tiny real models exported once per test session (engines.testing.make_tiny_onnx)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Manifests of a frame model and two segmentation members (each with a torch.export artefact)."""
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    from engines.testing import make_tiny_onnx

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "frame": make_tiny_onnx(root, "frame", seed=0),
        "seg_a": make_tiny_onnx(root, "seg", name="tiny-seg-a", seed=1, size_hw=(20, 16)),
        "seg_b": make_tiny_onnx(root, "seg", name="tiny-seg-b", seed=2, size_hw=(20, 16)),
    }
