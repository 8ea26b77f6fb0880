"""Backends on real tiny models: ORT vs torch parity, auto selection here, and every refusal."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines import (
    BackendUnavailableError,
    EngineError,
    EngineInputError,
    ManifestError,
    PlanMismatchError,
    build_manifest,
    load_engine,
    load_manifest,
    write_manifest,
)
from engines.plans import find_plan, plan_stem
from engines.trt_backend import check_plan_matches

REPO = Path(__file__).resolve().parents[2]
HAVE_TRT = shutil.which("nvidia-smi") is not None and importlib.util.find_spec("tensorrt") is not None


def _copy_model(src_manifest: Path, dst: Path) -> Path:
    """Copy a model (ONNX + manifest, and its torch artefact) into ``dst``; returns the manifest."""
    dst.mkdir(parents=True, exist_ok=True)
    stem = src_manifest.stem
    for f in src_manifest.parent.glob(f"{stem}.*"):
        shutil.copy(f, dst / f.name)
    return dst / src_manifest.name


@pytest.mark.parametrize("kind", ["frame", "seg_a"])
@pytest.mark.parametrize("batch", [1, 3])
def test_ort_torch_parity(tiny_models: dict[str, Path], kind: str, batch: int) -> None:
    ort_eng = load_engine(tiny_models[kind], "onnxruntime", threads=1)
    torch_eng = load_engine(tiny_models[kind], "torch", threads=1, device="cpu")
    assert (ort_eng.backend, torch_eng.backend) == ("onnxruntime", "torch")
    feed = ort_eng.random_inputs(batch, seed=batch)
    if kind.startswith("seg"):  # a real dropout pattern, not only ones
        rng = np.random.default_rng(0)
        feed["dropout_mask"] = (rng.random(feed["dropout_mask"].shape) > 0.5).astype(np.float32) * 2
    a, b = ort_eng.infer(feed), torch_eng.infer(feed)
    assert set(a) == set(b) == {t.name for t in ort_eng.outputs}
    specs = {t.name: t for t in ort_eng.outputs}
    for name in a:
        assert a[name].shape == b[name].shape == specs[name].concrete(batch)
        assert a[name].dtype == np.float32
        assert np.max(np.abs(a[name] - b[name])) <= 1e-4, name
    np.testing.assert_allclose(a["probs"].sum(axis=1), 1.0, atol=1e-5)


def test_ort_io_binding_matches_plain_run(tiny_models: dict[str, Path]) -> None:
    from engines.ort_backend import OrtEngine

    m = load_manifest(tiny_models["frame"])
    plain = OrtEngine(m, tiny_models["frame"], threads=1, io_binding=False)
    bound = OrtEngine(m, tiny_models["frame"], threads=1, io_binding=True)
    feed = plain.random_inputs(2)
    for name, arr in plain.infer(feed).items():
        np.testing.assert_array_equal(arr, bound.infer(feed)[name])


@pytest.mark.skipif(HAVE_TRT, reason="this machine has TensorRT and a GPU: auto would pick tensorrt")
def test_auto_picks_onnxruntime_cpu_here(tiny_models: dict[str, Path]) -> None:
    eng = load_engine(tiny_models["frame"], threads=1)
    assert eng.backend == "onnxruntime"
    assert eng.providers[-1] == "CPUExecutionProvider"
    assert "tensorrt skipped" in eng.selection
    assert eng.threads == 1
    eng.warmup()


def test_model_file_path_accepted_for_manifest(tiny_models: dict[str, Path]) -> None:
    eng = load_engine(tiny_models["frame"].with_suffix(".onnx"), "onnxruntime", threads=1)
    assert eng.manifest_path == tiny_models["frame"]


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_explicit_tensorrt_without_tensorrt_is_an_error(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(BackendUnavailableError, match=r"TensorRT is not installed; pip install"):
        load_engine(tiny_models["frame"], "tensorrt")


def test_explicit_torch_without_artefact(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    mp = _copy_model(tiny_models["frame"], tmp_path)
    (tmp_path / "tiny-frame.torch.json").unlink()
    with pytest.raises(BackendUnavailableError, match=r"no torch artefact tiny-frame\.torch\.json .*save_t"):
        load_engine(mp, "torch")


def test_stale_torch_artefact_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from engines.testing import make_tiny_onnx

    mp = _copy_model(tiny_models["frame"], tmp_path)
    make_tiny_onnx(tmp_path, "frame", seed=5, torch_export=False)  # new ONNX + manifest, old torch artefact
    with pytest.raises(BackendUnavailableError, match=r"tiny-frame\.torch\.json: .*different ONNX file"):
        load_engine(mp, "torch")


def test_missing_model_file_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    mp = _copy_model(tiny_models["frame"], tmp_path)
    (tmp_path / "tiny-frame.onnx").unlink()
    with pytest.raises(ManifestError, match=r"tiny-frame\.json: model file .*tiny-frame\.onnx is missing"):
        load_engine(mp)


def test_sha256_mismatch_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    mp = _copy_model(tiny_models["frame"], tmp_path)
    with open(tmp_path / "tiny-frame.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match=r"tiny-frame\.onnx: sha256 .* does not match .* re-export the"):
        load_engine(mp, "onnxruntime")


def test_manifest_io_must_match_onnx(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    mp = _copy_model(tiny_models["frame"], tmp_path)
    m = json.loads(mp.read_text())
    m["inputs"][0]["name"] = "image"
    mp.write_text(json.dumps(m))
    with pytest.raises(EngineError, match=r"manifest I/O \['image'\].*does not match the ONNX file's \['fr"):
        load_engine(mp, "onnxruntime")


def test_aggregator_manifest_is_not_an_engine(tmp_path: Path) -> None:
    m = build_manifest(
        name="agg",
        version="1",
        task="aggregator",
        format="none",
        inputs=[],
        outputs=[],
        class_names=[],
        training={"data": "x", "synthetic_only": True, "clinical_use": False, "command": "x"},
        parameters={"neutral_elements": [0.5] * 4, "sord_gap": 0.5},
    )
    path = write_manifest(m, tmp_path / "agg.json")
    with pytest.raises(EngineError, match=r"agg\.json: an aggregator manifest has no model file to run"):
        load_engine(path)


@pytest.mark.parametrize(
    ("feed", "pattern"),
    [
        ({"frame": np.zeros((1, 1, 16, 16), np.float64)}, r"dtype float64, the model takes float32; convert"),
        ({"frame": np.zeros((16, 16), np.float32)}, r"shape \(16, 16\), the model takes \['batch', 1, 16"),
        ({"frame": np.zeros((1, 1, 32, 16), np.float32)}, r"axis 2 must be 16\); preprocess with engines"),
        ({"image": np.zeros((1, 1, 16, 16), np.float32)}, r"inputs \['image'\] do not match .*\['frame'\]"),
        ({"frame": np.zeros((0, 1, 16, 16), np.float32)}, r"empty batch"),
    ],
)
def test_wrong_inputs_refused(tiny_models: dict[str, Path], feed: dict, pattern: str) -> None:
    eng = load_engine(tiny_models["frame"], "onnxruntime", threads=1)
    with pytest.raises(EngineInputError, match=r"tiny-frame\.json: .*" + pattern):
        eng.infer(feed)


def test_inputs_must_share_batch(tiny_models: dict[str, Path]) -> None:
    eng = load_engine(tiny_models["seg_a"], "onnxruntime", threads=1)
    feed = eng.random_inputs(2)
    feed["dropout_mask"] = feed["dropout_mask"][:1]
    with pytest.raises(EngineInputError, match="has batch 1 but another input has 2"):
        eng.infer(feed)


# ------------------------------------------------------------------------------ TensorRT plan logic
def _plan_manifest(onnx_mp: Path, gpu: str, cc: str, trt: str, prec: str, onnx_sha: str = "") -> Path:
    onnx_m = load_manifest(onnx_mp)
    stem = plan_stem(onnx_m["name"], gpu, cc, trt, prec)
    plan = onnx_mp.parent / f"{stem}.plan"
    plan.write_bytes(f"fake plan {stem}".encode())
    drop = ("file", "sha256", "format", "onnx_sha256", "tensorrt")
    fields = {k: v for k, v in onnx_m.items() if k not in drop}
    info = {
        "gpu_name": gpu,
        "compute_capability": cc,
        "tensorrt_version": trt,
        "precision": prec,
        "batch_profile": [1, 1, 8],
    }
    m = build_manifest(
        model_file=plan,
        format="tensorrt-plan",
        onnx_sha256=onnx_sha or onnx_m["sha256"],
        tensorrt=info,
        **fields,
    )
    return write_manifest(m, plan.with_suffix(".json"))


def test_plan_discovery_and_mismatch_messages(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    mp = _copy_model(tiny_models["frame"], tmp_path)
    here = {"gpu_name": "NVIDIA L4", "compute_capability": "8.9"}
    good = _plan_manifest(mp, "NVIDIA L4", "8.9", "10.3.0", "fp16")
    fp32 = _plan_manifest(mp, "NVIDIA L4", "8.9", "10.3.0", "fp32")
    other_gpu = _plan_manifest(mp, "NVIDIA H100 80GB HBM3", "9.0", "10.3.0", "fp16")
    stale = _plan_manifest(mp, "NVIDIA L4", "8.9", "10.3.0", "int8", onnx_sha="0" * 64)
    assert good.name == "tiny-frame__NVIDIA-L4__sm89__trt10.3.0__fp16.json"
    onnx_m = load_manifest(mp)
    found, refused = find_plan(onnx_m, mp, here, "10.3.0")
    assert found == good  # fp16 preferred
    assert find_plan(onnx_m, mp, here, "10.3.0", precision="fp32")[0] == fp32
    assert any(other_gpu.name in r and "built for NVIDIA H100" in r for r in refused)
    assert any(stale.name in r and "different ONNX" in r for r in refused)
    found, refused = find_plan(onnx_m, mp, here, "10.5.0")
    assert found is None and len(refused) == 4

    plan_m = load_manifest(other_gpu)
    with pytest.raises(
        PlanMismatchError,
        match=r"plan built for NVIDIA H100 .* this GPU is NVIDIA L4 .*"
        r"rebuild with tools/build_engine\.py .*tiny-frame\.onnx \(on this machine\)",
    ):
        check_plan_matches(plan_m, other_gpu, "10.3.0", here)
    with pytest.raises(PlanMismatchError, match=r"TensorRT 10\.3\.0, this machine has TensorRT 10\.0\.1;"):
        check_plan_matches(load_manifest(good), good, "10.0.1", here)
    with pytest.raises(PlanMismatchError, match=r"different ONNX file .* rebuild with tools/build_engine"):
        check_plan_matches(load_manifest(stale), stale, "10.3.0", here, onnx_sha256=onnx_m["sha256"])
    check_plan_matches(load_manifest(good), good, "10.3.0", here, onnx_sha256=onnx_m["sha256"])


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_plan_manifest_needs_tensorrt(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    mp = _copy_model(tiny_models["frame"], tmp_path)
    plan = _plan_manifest(mp, "NVIDIA L4", "8.9", "10.3.0", "fp16")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        load_engine(plan)
    with pytest.raises(BackendUnavailableError, match=r"runs only on backend 'tensorrt'; load the ONNX"):
        load_engine(plan, "onnxruntime")


def test_engines_import_and_run_without_torch(tiny_models: dict[str, Path]) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "import numpy as np, engines\n"
        f"e = engines.load_engine({str(tiny_models['frame'])!r}, threads=1)\n"
        "out = e.infer(e.random_inputs(2))\n"
        "assert out['probs'].shape == (2, 4), out\n"
        "try:\n"
        f"    engines.load_engine({str(tiny_models['frame'])!r}, 'torch')\n"
        "except engines.BackendUnavailableError as exc:\n"
        "    print('REFUSED', exc)\n"
        "print(e.backend, sorted(m for m in ('tensorrt', 'pycuda') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "REFUSED torch is not installed; pip install torch" in res.stdout
    assert res.stdout.strip().endswith("onnxruntime []")


@pytest.mark.filterwarnings("ignore")  # TorchScript's deprecation notes
def test_torchscript_artefact_runs_too(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from engines.torch_backend import torch_manifest_path

    mp = _copy_model(tiny_models["frame"], tmp_path)
    tm_path = torch_manifest_path(mp)
    tm = load_manifest(tm_path)
    exported = torch.export.load(str(tmp_path / tm["file"])).module()
    scripted = torch.jit.trace(exported, (torch.rand(2, 1, 16, 16),), check_trace=False)
    ts_file = tmp_path / "tiny-frame.torch.ts"
    scripted.save(str(ts_file))
    fields = {k: v for k, v in tm.items() if k not in ("file", "sha256")}
    write_manifest(build_manifest(model_file=ts_file, **fields), tm_path)
    eng = load_engine(mp, "torch", threads=1)
    ref = load_engine(mp, "onnxruntime", threads=1)
    feed = ref.random_inputs(3)
    for name, arr in ref.infer(feed).items():
        assert np.max(np.abs(eng.infer(feed)[name] - arr)) <= 1e-4
