"""ONNX export of frame models: parity with PyTorch through ONNX Runtime, the I/O contract
(``frame`` → ``probs`` [batch,4], ``theta`` [batch,2,2,3]), dynamic batch, no AffineGrid op, and
a manifest that ``engines.manifest`` loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engines.manifest import load_manifest
from train.frame.export import FrameScorer, check_parity, export_frame_model, ort_session
from train.models import build_frame_model

TRAINING = {"data": "toy", "synthetic_only": True, "clinical_use": False, "command": "pytest"}


@pytest.mark.parametrize(("arch", "loc_ds"), [("regstn", 2), ("cnn", 1)])
def test_export_parity_and_contract(tmp_path: Path, arch: str, loc_ds: int) -> None:
    torch.manual_seed(0)
    model = build_frame_model(arch, (64, 64), width=0.25, loc_downsample=loc_ds)
    with torch.no_grad():  # make BatchNorm statistics non-trivial so parity tests real numbers
        model.train()
        for _ in range(3):
            model(torch.rand(8, 1, 64, 64))
    model.eval()
    onnx_path, manifest_path, diff = export_frame_model(
        model,
        tmp_path / f"{arch}.onnx",
        (64, 64),
        arch,
        "0.0.1",
        TRAINING,
        {"weighted_f1_percent": {"Setting 1": 50.0}},
    )
    assert diff <= 1e-4
    graph = onnx.load(str(onnx_path))
    ops = {n.op_type for n in graph.graph.node}
    assert "AffineGrid" not in ops
    if arch == "regstn":
        assert {"GridSample", "MatMul"} <= ops
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
    sess = ort_session(onnx_path)
    assert [i.name for i in sess.get_inputs()] == ["frame"]
    assert [o.name for o in sess.get_outputs()] == ["probs", "theta"]
    x = np.random.default_rng(1).random((5, 1, 64, 64), dtype=np.float32)
    probs, theta = sess.run(None, {"frame": x})
    assert probs.shape == (5, 4) and theta.shape == (5, 2, 2, 3)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        ref_p, ref_t = FrameScorer(model)(torch.from_numpy(x))
    assert np.max(np.abs(probs - ref_p.numpy())) <= 1e-4 and np.max(np.abs(theta - ref_t.numpy())) <= 1e-4
    m = load_manifest(manifest_path)
    assert m["task"] == "frame-score" and m["inputs"][0]["shape"] == ["batch", 1, 64, 64]
    assert m["preprocessing"] == {
        "size_hw": [64, 64],
        "scale": "unit",
        "padding": "letterbox-zero",
        "channels": 1,
    }
    assert m["training"]["clinical_use"] is False and m["metrics"]["onnx_parity_max_abs_diff"] == diff
    if arch == "cnn":  # no STN: the crop is the whole frame
        assert np.allclose(theta, np.array([[1, 0, 0], [0, 1, 0]], np.float32))


def test_parity_check_catches_a_different_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a = build_frame_model("regstn", (64, 64), width=0.25).eval()
    export_frame_model(a, tmp_path / "a.onnx", (64, 64), "a", "1", TRAINING)
    b = build_frame_model("regstn", (64, 64), width=0.25).eval()
    assert check_parity(b, tmp_path / "a.onnx", (64, 64)) > 1e-3


def test_export_command_writes_the_training_domain(tmp_path: Path) -> None:
    """``lus-train export`` writes training.domain/dataset/licence (synthetic by default, or as given)."""
    from train.commands.export import SYNTHETIC_DATASET, build_parser, domain_fields, main
    from train.frame.config import FrameConfig
    from train.frame.loop import model_from_config

    parse = build_parser().parse_args
    defaults = domain_fields(parse(["run", "--out", "m.onnx"]))
    assert defaults["synthetic_only"] is True and defaults["domain"] == "synthetic"
    assert defaults["dataset"] == SYNTHETIC_DATASET and isinstance(defaults["licence"], str)
    assert domain_fields(parse(["run", "--out", "m.onnx", "--real-data"])) == {
        "synthetic_only": False,
        "domain": "real",
    }
    with pytest.raises(SystemExit, match="contradicts"):
        domain_fields(parse(["run", "--out", "m.onnx", "--real-data", "--domain", "synthetic"]))
    with pytest.raises(SystemExit):
        parse(["run", "--out", "m.onnx", "--domain", "clinical"])

    torch.manual_seed(0)
    cfg = FrameConfig(input_hw=(64, 64), width=0.25)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"config": cfg.to_dict(), "model": model_from_config(cfg).state_dict(), "epoch": 1,
                "splits": {}}, run / "last.pt")  # fmt: skip
    out = tmp_path / "models" / "m.onnx"
    args = [str(run), "--out", str(out), "--domain", "real", "--dataset", "COVID-BLUES, 48 patients",
            "--licence", "CC BY-NC-SA 4.0", "--command", "pytest"]  # fmt: skip
    assert main(args) == 0
    tr = load_manifest(out.with_suffix(".json"))["training"]
    assert tr["domain"] == "real" and tr["synthetic_only"] is False
    assert tr["dataset"] == "COVID-BLUES, 48 patients" and tr["licence"] == "CC BY-NC-SA 4.0"
