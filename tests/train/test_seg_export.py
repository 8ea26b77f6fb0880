"""ONNX export of a member: parity with PyTorch, dynamic batch, the dropout-mask input as the MC
variant, and a manifest that engines.manifest loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.manifest import load_manifest
from train.models.seg_models import build_member
from train.seg.config import MemberConfig
from train.seg.export import check_parity, export_onnx, member_manifest, ort_session

HW = (40, 60)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_member(MemberConfig("unet", "unet", filters=(4, 4, 8), latent_channels=8)).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "unet.onnx", size_hw=HW)
    return model, path


@pytest.mark.parametrize(
    "cfg",
    [
        MemberConfig("unetpp", "unetpp", encoder="resnet18", encoder_depth=4, decoder_channels=(16, 8, 8, 4)),
        MemberConfig("deeplabv3p", "deeplabv3p", encoder="mobilenet_v2", decoder_channels=16),
    ],
    ids=lambda c: c.arch,
)
def test_smp_members_export_with_parity(cfg: MemberConfig, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_member(cfg).eval()
    path = export_onnx(model, tmp_path / f"{cfg.name}.onnx", size_hw=(36, 52))
    assert check_parity(model, path, size_hw=(36, 52), batch=1) <= 1e-4


def test_parity_and_dynamic_batch(exported: tuple[torch.nn.Module, Path]) -> None:
    model, path = exported
    assert check_parity(model, path, size_hw=HW, batch=3) <= 1e-4
    sess = ort_session(path)
    assert [i.name for i in sess.get_inputs()] == ["image", "dropout_mask"]
    assert [o.name for o in sess.get_outputs()] == ["probs"]
    shape = model.latent_shape(*HW)
    out = sess.run(
        ["probs"],
        {"image": np.zeros((5, 1, *HW), np.float32), "dropout_mask": np.ones((5, *shape), np.float32)},
    )[0]
    assert out.shape == (5, 5, *HW)
    assert np.allclose(out.sum(1), 1.0, atol=1e-5)


def test_mc_variant_gives_k_different_samples_converging_as_p_to_zero(exported) -> None:
    model, path = exported
    sess = ort_session(path)
    shape = model.latent_shape(*HW)
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, 1, *HW)).astype(np.float32)
    det = sess.run(["probs"], {"image": image, "dropout_mask": np.ones((1, *shape), np.float32)})[0][0]
    k = 8
    errs = []
    for p in (0.5, 0.05, 0.001):
        masks = ((rng.random((k, *shape)) >= p) / (1 - p)).astype(np.float32)
        samples = sess.run(["probs"], {"image": np.repeat(image, k, 0), "dropout_mask": masks})[0]
        if p == 0.5:  # one batched call, K distinct samples, each equal to PyTorch with that mask
            assert all(not np.allclose(samples[0], samples[i]) for i in range(1, k))
            with torch.no_grad():
                ref = torch.softmax(
                    model(torch.from_numpy(np.repeat(image, k, 0)), torch.from_numpy(masks)), 1
                )
            assert np.abs(samples - ref.numpy()).max() <= 1e-4
        errs.append(float(np.abs(samples.mean(0) - det).max()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-2


def test_manifest_round_trips_through_engines(exported) -> None:
    model, path = exported
    cfg = MemberConfig("unet", "unet", filters=(4, 4, 8), latent_channels=8)
    m = member_manifest(
        cfg,
        model,
        path,
        version="0.0.1",
        size_hw=HW,
        training={"data": "none (test)", "synthetic_only": True, "clinical_use": False, "command": "pytest"},
        metrics={},
    )
    from engines.manifest import write_manifest

    write_manifest(m, path.with_suffix(".json"))
    loaded = load_manifest(path.with_suffix(".json"))
    assert loaded["parameters"]["mc_dropout"] == {
        "input": "dropout_mask",
        "p": 0.5,
        "shape": list(model.latent_shape(*HW)),
    }
    assert loaded["inputs"][1]["shape"] == ["batch", *model.latent_shape(*HW)]
    assert loaded["class_names"][-1] == "background"


def test_engines_runtime_loads_the_member_and_samples_it(exported, tmp_path: Path) -> None:
    """The runtime side (engines, no torch) runs the exported member: deterministic ensemble equals
    PyTorch, and engines.mc_dropout draws distinct samples through the dropout_mask input."""
    import shutil

    from engines import Ensemble, load_engine, mc_dropout
    from engines.manifest import write_manifest

    model, path = exported
    cfg = MemberConfig("unet", "unet", filters=(4, 4, 8), latent_channels=8)
    onnx = shutil.copy(path, tmp_path / "unet.onnx")
    m = member_manifest(
        cfg,
        model,
        Path(onnx),
        version="0.0.1",
        size_hw=HW,
        training={"data": "none (test)", "synthetic_only": True, "clinical_use": False, "command": "pytest"},
        metrics={},
    )
    write_manifest(m, tmp_path / "unet.json")
    eng = load_engine(tmp_path / "unet.json", backend="onnxruntime", threads=1)
    image = np.random.default_rng(1).uniform(-1, 1, (1, 1, *HW)).astype(np.float32)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(image)), 1).numpy()
    assert np.abs(Ensemble([eng]).infer(image) - ref).max() <= 1e-4
    res = mc_dropout([eng], image, k=4, seed=0, keep_samples=True)
    assert res.samples.shape == (4, 5, *HW) and not np.allclose(res.samples[0], res.samples[1])


def test_export_seg_domain_options_are_checked_before_any_work(tmp_path: Path) -> None:
    """``lus-train export-seg`` shares ``--domain``/``--dataset``/``--licence`` with ``lus-train export``;
    a contradiction stops it before a checkpoint is read."""
    from train.commands.export_seg import main

    with pytest.raises(SystemExit, match="contradicts"):
        main(["--run", str(tmp_path / "none"), "--real-data", "--domain", "synthetic"])
    with pytest.raises(SystemExit):
        main(["--run", str(tmp_path / "none"), "--domain", "clinical"])
