"""Lanes and post-processing: STN boxes in source pixels (hand-computed), shared preprocessing,
batched scoring equal to single-frame scoring, segmentation maps and MC uncertainty as decodable PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines import testing
from engines.preprocess import letterbox_geometry, preprocess
from stream.frames import Frame
from stream.lanes import (
    MASK_BG,
    UNCERTAINTY_SCALE,
    Prepared,
    ScoringLane,
    SegmentationLane,
    decode_png,
    encode_png,
    find_models,
    load_model,
    theta_to_boxes,
)


def _frame(seq: int = 0, hw=(100, 200), roi_xy=(10, 20), seed: int = 0) -> Frame:
    img = np.random.default_rng(seed).integers(0, 256, hw, dtype=np.uint8)
    h, w = hw
    return Frame(seq, 1_000 + seq, img, (roi_xy[0], roi_xy[1], w, h), (h + 40, w + 30), "test")


def test_boxes_hand_computed() -> None:
    # ROI 200×100 (w×h) into a 32×32 model: scale 0.16, resized 16×32, padding 8 rows on top.
    geo = letterbox_geometry((100, 200), (32, 32))
    assert geo.resized_hw == (16, 32) and geo.offset_yx == (8, 0)
    half = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    shifted = np.array([[0.25, 0.0, 0.5], [0.0, 0.25, 0.0]])  # quarter size, centred right of middle
    boxes = theta_to_boxes(np.stack([half, shifted]), geo, (10, 20, 200, 100))
    # half: model px x ∈ {8, 24}, y ∈ {8, 24} → ROI x = 8/0.16 = 50 … 150, y = (8−8)/0.16 = 0 … 100
    assert np.allclose(boxes[0], [[60, 20], [160, 20], [160, 120], [60, 120]])
    # shifted: normalised x ∈ 0.5 ± 0.25 → px 20 … 28 → ROI 125 … 175; y ± 0.25 → px 12 … 20 → 25 … 75
    assert np.allclose(boxes[1], [[135, 45], [185, 45], [185, 95], [135, 95]])


def test_boxes_rotation_keeps_corner_order() -> None:
    geo = letterbox_geometry((64, 64), (64, 64))  # identity letterbox
    c, s = np.cos(np.pi / 2), np.sin(np.pi / 2)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0]]) * 0.5
    box = np.array(theta_to_boxes(np.stack([rot, rot]), geo, (0, 0, 64, 64))[0])
    # (−1,−1) → θ → (0.5, −0.5) → px (48, 16): the top-left corner turned to the top right
    assert np.allclose(box, [[48, 16], [48, 48], [16, 48], [16, 16]])


def test_prepared_shares_the_letterbox_and_matches_preprocess() -> None:
    fr = _frame()
    prep = Prepared(fr)
    unit = {"size_hw": [32, 32], "scale": "unit", "padding": "letterbox-zero", "channels": 1}
    sym = unit | {"scale": "symmetric"}
    x_unit, geo = prep.input(unit)
    x_sym, geo2 = prep.input(sym)
    assert geo == geo2 and len(prep._boxed) == 1  # one resize for both lanes
    ref_unit, _ = preprocess(fr.image, unit)
    ref_sym, _ = preprocess(fr.image, sym)
    assert np.array_equal(x_unit, ref_unit) and np.array_equal(x_sym, ref_sym)
    assert prep.input(unit)[0] is x_unit  # cached


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    root = tmp_path_factory.mktemp("models")
    testing.make_tiny_onnx(root / "frame", "frame", size_hw=(32, 32), torch_export=False)
    testing.make_tiny_onnx(root / "seg", "seg", name="seg-a", seed=1, size_hw=(26, 20), torch_export=False)
    testing.make_tiny_onnx(root / "seg", "seg", name="seg-b", seed=2, size_hw=(26, 20), torch_export=False)
    return root


def test_find_models(tiny_models: Path, tmp_path: Path) -> None:
    found = find_models(tiny_models)
    assert found.frame is not None and found.frame.name == "tiny-frame.json"
    assert [p.name for p in found.seg] == ["seg-a.json", "seg-b.json"]
    assert found.aggregator is None and any("aggregator" in n for n in found.notes)
    empty = find_models(tmp_path)
    assert empty.frame is None and empty.seg == []
    assert any("scoring lane off" in n for n in empty.notes)
    assert any("segmentation lane off" in n for n in empty.notes)
    (tmp_path / "frame").mkdir()
    (tmp_path / "frame" / "agg.json").write_text(json.dumps({"task": "aggregator"}))
    assert find_models(tmp_path).aggregator == tmp_path / "frame" / "agg.json"


def test_find_models_counts_each_model_once_beside_its_torch_program(tmp_path: Path) -> None:
    # NAME.torch.json (and plan manifests) sit beside NAME.json: one model, not two
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    testing.make_tiny_onnx(tmp_path / "seg", "seg", name="seg-a", seed=1, size_hw=(26, 20), torch_export=True)
    assert (tmp_path / "seg" / "seg-a.torch.json").is_file()
    assert [p.name for p in find_models(tmp_path).seg] == ["seg-a.json"]


def test_find_models_on_the_shipped_models() -> None:
    found = find_models(Path(__file__).resolve().parents[2] / "models")
    if found.frame is None:
        pytest.skip("no shipped models in models/")
    assert found.frame.name == "regstn.json" and found.aggregator is not None
    assert sorted(p.name for p in found.seg) == ["deeplabv3p.json", "unet.json", "unetpp.json"]


def test_demo_model_set_shares_the_segmentation_ensemble_through_its_index() -> None:
    """models/demo/models.json points its seg lane at ../seg: one copy of the ensemble, two model sets."""
    models = Path(__file__).resolve().parents[2] / "models"
    demo = find_models(models / "demo")
    assert demo.frame is not None and demo.frame.parent == models / "demo" / "frame"
    assert [p.resolve() for p in demo.seg] == [p.resolve() for p in find_models(models).seg]
    assert demo.seg and not (models / "demo" / "seg").exists()


def test_model_index_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "models.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"models\.json is not valid JSON"):
        find_models(tmp_path)
    (tmp_path / "models.json").write_text('{"seg": 3}')
    with pytest.raises(ValueError, match="must be a folder path"):
        find_models(tmp_path)
    (tmp_path / "models.json").write_text('{"seg": "elsewhere"}')
    assert find_models(tmp_path).seg == [] and "segmentation lane off" in find_models(tmp_path).notes[-1]


def test_default_model_sets() -> None:
    from stream.default_models import default_engines, models_root

    root = models_root()
    assert root is not None and (root / "frame" / "regstn.json").is_file()
    assert default_engines("clip") == root and default_engines("device") == root
    assert default_engines("synthetic") == root / "demo"


def test_scoring_batch_equals_single_frames(tiny_models: Path) -> None:
    lane = ScoringLane(load_model(tiny_models / "frame" / "tiny-frame.json", "onnxruntime", threads=1))
    frames = [Prepared(_frame(i, seed=i)) for i in range(3)]
    batched = lane.run(frames)
    singles = [lane.run([Prepared(_frame(i, seed=i))])[0] for i in range(3)]
    for b, s in zip(batched, singles, strict=True):
        assert b.batch == 3 and s.batch == 1
        assert np.allclose(b.probs, s.probs, atol=1e-5) and b.score == s.score
        assert abs(b.probs.sum() - 1) < 1e-12
        assert np.allclose(b.boxes, s.boxes, atol=1e-3)
        assert b.t_start_ns <= b.t_inputs_ns <= b.t_inferred_ns


def test_segmentation_maps_and_uncertainty(tiny_models: Path) -> None:
    from engines import Ensemble

    members = [load_model(tiny_models / "seg" / f"seg-{n}.json", "onnxruntime", threads=1) for n in "ab"]
    lane = SegmentationLane(members, mc_samples=6, mc_every=2, seed=0)
    prep = Prepared(_frame(hw=(100, 200)))
    first = lane.run(prep)  # run 0: MC
    second = lane.run(prep)  # run 1: deterministic
    # the 26×20 model input holds the 100×200 ROI as 10×20 rows (padding cut off)
    geo = letterbox_geometry((100, 200), (26, 20))
    assert first.class_map.shape == second.class_map.shape == geo.resized_hw
    x, _ = prep.input(members[0].manifest["preprocessing"])
    y0, x0 = geo.offset_yx
    h, w = geo.resized_hw
    expected = Ensemble(members).infer(x)[0].argmax(axis=0)[y0 : y0 + h, x0 : x0 + w]
    assert np.array_equal(second.class_map, expected)
    assert second.uncertainty is None and second.samples == 0
    assert first.samples == 6 and first.uncertainty is not None and first.uncertainty.dtype == np.uint8
    assert first.uncertainty.max() > 0  # random masks do change the output
    assert first.class_map.max() <= MASK_BG and abs(sum(second.class_fractions) - 1) < 1e-9
    for arr in (first.class_map, first.uncertainty):
        assert np.array_equal(decode_png(encode_png(arr)), arr)
    # the uint8 code × scale is the MC std of the predicted class's probability (same seed, same draws)
    from engines import mc_dropout

    ref = mc_dropout(Ensemble(members), x, 6, np.random.default_rng(0)).std[y0 : y0 + h, x0 : x0 + w]
    assert np.abs(first.uncertainty * UNCERTAINTY_SCALE - ref).max() <= UNCERTAINTY_SCALE / 2 + 1e-6
