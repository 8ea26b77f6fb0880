"""The clip-probability temperature (train/aggregator/temperature.py) against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from stream.aggregate import UninormClipAggregator
from train.aggregator.temperature import clip_logits_per_frame, fit_temperature, nll


def test_nll_by_hand() -> None:
    z = np.array([[1.0, 0.0, 0.0, 0.0]])
    # softmax(2·[1,0,0,0])[0] = e²/(e²+3)
    assert nll(2.0, z, np.array([0])) == pytest.approx(-np.log(np.e**2 / (np.e**2 + 3)))
    assert nll(2.0, z, np.array([1])) == pytest.approx(-np.log(1 / (np.e**2 + 3)))


def test_fit_matches_a_brute_force_grid() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    z = rng.normal(0, 1, (300, 4))
    z[np.arange(300), labels] += 0.8  # informative but noisy logits: an interior optimum
    tau = fit_temperature(z, labels)
    grid = np.exp(np.linspace(np.log(0.01), np.log(100), 20001))
    best = grid[np.argmin([nll(t, z, labels) for t in grid])]
    assert tau == pytest.approx(best, rel=2e-3)
    assert nll(tau, z, labels) <= nll(1.0, z, labels)


def test_constant_logits_give_tau_one_and_bad_shapes_are_refused() -> None:
    assert fit_temperature(np.zeros((5, 4)), [0, 1, 2, 3, 0]) == 1.0
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        fit_temperature(np.zeros((5, 3)), [0] * 5)
    with pytest.raises(ValueError, match="N labels"):
        fit_temperature(np.zeros((5, 4)), [0] * 4)


def test_clip_logits_are_the_runtime_order_keys_over_n() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), 37)
    es = [0.1, 0.2, 0.25, 0.15]
    agg = UninormClipAggregator(es)
    for row in probs:
        agg.update(row)
    assert np.array_equal(clip_logits_per_frame(probs, es), np.array(agg.order_keys()) / 37)


def test_frame_probs_from_a_shipped_program_match_its_onnx_model() -> None:
    """lus-train frame-probs on models/demo/frame/regstn.torch.pt2 (no training run needed) gives the
    probabilities the runtime's ONNX model gives on the same frames."""
    from pathlib import Path

    import torch

    from engines import load_engine
    from train.commands.frame_probs import exported_frame_model

    frame = Path(__file__).resolve().parents[2] / "models" / "demo" / "frame"
    model, hw = exported_frame_model(frame / "regstn.torch.pt2")
    assert hw == (128, 128)
    x = np.random.default_rng(0).random((3, 1, *hw), dtype=np.float32)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x))["logits"], 1).numpy()
    onnx = load_engine(frame / "regstn.json", backend="onnxruntime", threads=1)
    out = onnx.infer({"frame": x})
    assert np.allclose(probs, out["probs"], atol=1e-5)
