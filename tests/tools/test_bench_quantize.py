"""tools/quantize.py: a static int8 QDQ model that loads in the engine, with the fp32 comparison written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _clip(path: Path, seed: int, n: int = 6) -> Path:
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(n):
        img = np.zeros((48, 64, 3), np.uint8)
        img[8:40, 12:52] = rng.integers(40, 255, (32, 40, 1), dtype=np.uint8)
        writer.write(img)
    writer.release()
    return path


def test_quantize_writes_a_loadable_int8_model_and_the_comparison(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the tiny test model is exported with torch")
    onnx = pytest.importorskip("onnx")
    from engines import load_engine
    from engines.testing import make_tiny_onnx

    spec = importlib.util.spec_from_file_location("tool_quantize", REPO / "tools" / "quantize.py")
    quantize = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(quantize)  # type: ignore[union-attr]

    manifest = make_tiny_onnx(tmp_path / "m", "frame", size_hw=(32, 32), torch_export=False)
    clips = tmp_path / "clips"
    clips.mkdir()
    _clip(clips / "a.mp4", 0)
    _clip(clips / "b.mp4", 1)
    out = tmp_path / "int8"
    assert quantize.main(["--manifest", str(manifest), "--clips", str(clips), "--out", str(out),
                          "--frames-per-clip", "4", "--seconds", "0.05"]) == 0  # fmt: skip
    result = json.loads((out / "quantize.json").read_text())
    assert result["calibration_clips"] == ["a.mp4"] and result["comparison_clips"] == ["b.mp4"]
    assert result["calibration_frames"] == 4 and result["comparison_frames"] == 4
    assert 0.0 <= result["score_agreement"] <= 1.0
    model = onnx.load(str(out / "tiny-frame-int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    engine = load_engine(out / "tiny-frame-int8.json", backend="onnxruntime", threads=1)
    probs = engine.infer({"frame": np.zeros((1, 1, 32, 32), np.float32)})["probs"]
    assert probs.shape == (1, 4) and abs(float(probs.sum()) - 1.0) < 0.05
