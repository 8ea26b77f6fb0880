"""tools/build_engine.py and tools/inspect_engine.py: argument handling, plan naming, frame sampling,
and their one-line refusals (run as real subprocesses)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _load_tool(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


be = _load_tool("build_engine")
ie = _load_tool("inspect_engine")


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / tool), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_parse_batch() -> None:
    assert be.parse_batch("1:4:16") == (1, 4, 16)
    assert be.parse_batch("2:2:2") == (2, 2, 2)
    for bad in ("4:2:8", "0:1:2", "1:2", "a:b:c", "1:2:3:4"):
        with pytest.raises(argparse.ArgumentTypeError, match="MIN:OPT:MAX"):
            be.parse_batch(bad)


def test_parse_args_and_precision() -> None:
    ns = be.parse_args(["m.onnx", "--fp16", "--batch", "1:2:4", "--workspace", "512"])
    assert ns.model == Path("m.onnx") and ns.batch == (1, 2, 4) and ns.workspace == 512
    assert be.precision_of(ns) == "fp16"
    assert be.precision_of(be.parse_args(["m.onnx"])) == "fp32"
    assert be.precision_of(be.parse_args(["m.onnx", "--fp16", "--int8", "--calib-clips", "d"])) == "int8"
    ns = be.parse_args(["--all", "models", "--check", "--max-flip", "0.1"])
    assert ns.all == Path("models") and ns.check and ns.max_flip == 0.1
    for bad in (
        [],
        ["m.onnx", "--all", "d"],
        ["m.onnx", "--int8"],
        ["m.onnx", "--max-flip", "2"],
        ["m.onnx", "--calib-frames", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            be.parse_args(bad)
        assert exc.value.code == 2


def test_plan_naming(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from engines import load_manifest

    m = load_manifest(tiny_models["frame"])
    gpu = {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    plan, manifest = be.plan_paths(m, tiny_models["frame"], None, gpu, "10.3.0.26", "fp16")
    assert plan.name == "tiny-frame__NVIDIA-H100-80GB-HBM3__sm90__trt10.3.0.26__fp16.plan"
    assert manifest == plan.with_suffix(".json") and plan.parent == tiny_models["frame"].parent
    plan, _ = be.plan_paths(
        m,
        tiny_models["frame"],
        tmp_path,
        {"gpu_name": "Tesla T4", "compute_capability": "7.5"},
        "10.0.1",
        "int8",
    )
    assert plan == tmp_path / "tiny-frame__Tesla-T4__sm75__trt10.0.1__int8.plan"
    cache = be.default_timing_cache(tmp_path, gpu, "10.3.0.26")
    assert cache.name == "timing__NVIDIA-H100-80GB-HBM3__sm90__trt10.3.0.26.cache"


def test_resolve_models(tiny_models: dict[str, Path]) -> None:
    folder = tiny_models["frame"].parent
    found = be.resolve_models(be.parse_args(["--all", str(folder)]))
    assert [p.name for p in found] == ["tiny-frame.json", "tiny-seg-a.json", "tiny-seg-b.json"]
    one = be.resolve_models(be.parse_args([str(tiny_models["frame"].with_suffix(".onnx"))]))
    assert one == [tiny_models["frame"]]


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_says_one_sentence(tiny_models: dict[str, Path]) -> None:
    res = _run("build_engine.py", str(tiny_models["frame"].with_suffix(".onnx")), "--fp16")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith("build_engine.py: TensorRT is not installed here, so no plan was built")


def test_build_engine_refuses_missing_model(tmp_path: Path) -> None:
    res = _run("build_engine.py", str(tmp_path / "gone.onnx"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (
        f"build_engine.py: {tmp_path / 'gone.json'}: manifest not found (check the path); "
        "export the model with a manifest"
    )


def _write_clip(path: Path, n: int = 12) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(n):
        frame = np.full((48, 64, 3), 20 * i % 255, np.uint8)
        writer.write(frame)
    writer.release()


def test_sample_frames_through_preprocess(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    from engines import load_manifest

    _write_clip(tmp_path / "a.avi")
    _write_clip(tmp_path / "b.avi")
    frames = be.sample_frames(tmp_path, 6)
    assert len(frames) == 6 and frames[0].shape[:2] == (48, 64)
    m = load_manifest(tiny_models["seg_a"])
    x = be.model_inputs(frames, m)
    assert x.shape == (6, 1, 20, 16) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.all(x[:, :, 0, :] == -1.0)  # 48x64 → 12x16 inside 20x16: the top padding rows read -1
    feed = be.feeds_for(m, x)
    assert feed["dropout_mask"].shape == (6, 4, 10, 8) and np.all(feed["dropout_mask"] == 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(be.ToolError, match="no clips or images"):
        be.sample_frames(tmp_path / "empty", 3)


@pytest.mark.realclips
def test_sample_frames_from_real_clips(real_clips_dir: Path, tiny_models: dict[str, Path]) -> None:
    from engines import load_manifest

    frames = be.sample_frames(real_clips_dir, 14)
    assert len(frames) == 14
    x = be.model_inputs(frames, load_manifest(tiny_models["frame"]))
    assert x.shape == (14, 1, 16, 16) and x.min() >= 0 and x.max() <= 1 and x.std() > 0


def test_compare_outputs_by_hand() -> None:
    ref = {"probs": np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5 - 1e-3]], np.float32)}
    cand = {"probs": np.array([[0.69, 0.31], [0.6, 0.4], [0.5, 0.5 - 1e-3]], np.float32)}
    rep = be.compare_outputs(ref, cand)
    assert rep["outputs"]["probs"]["max_abs"] == pytest.approx(0.2, abs=1e-6)
    assert rep["outputs"]["probs"]["mean_abs"] == pytest.approx((0.01 * 2 + 0.2 * 2) / 6, abs=1e-6)
    assert rep["class_flip_fraction"] == pytest.approx(1 / 3)


def test_inspect_engine_prints_io_and_times(tiny_models: dict[str, Path]) -> None:
    res = _run(
        "inspect_engine.py", str(tiny_models["seg_a"]), "--threads", "1", "--iterations", "3", "--json"
    )
    assert res.returncode == 0, res.stderr
    assert "input      dropout_mask   float32  ['batch', 4, 10, 8]" in res.stdout
    assert "backend    onnxruntime on cpu" in res.stdout
    timing = json.loads(res.stdout.strip().splitlines()[-1])
    assert timing["model"] == "tiny-seg-a" and timing["iterations"] == 3 and timing["median_ms"] > 0


def test_inspect_engine_refusals(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    res = _run("inspect_engine.py", str(tmp_path / "nope.onnx"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "manifest not found (nope.json is missing beside it)" in res.stderr
    if not HAVE_TRT:
        res = _run("inspect_engine.py", str(tiny_models["frame"]), "--backend", "tensorrt")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.count("\n") == 1 and "TensorRT is not installed" in res.stderr


def test_time_engine_reports(tiny_models: dict[str, Path]) -> None:
    from engines import load_engine

    t = ie.time_engine(load_engine(tiny_models["frame"], "onnxruntime", threads=1), batch=2, iterations=4)
    assert t["batch"] == 2 and t["min_ms"] <= t["median_ms"] <= t["p90_ms"]


def test_gpu_check_without_models_skips_gracefully(tmp_path: Path) -> None:
    res = _run("gpu_check.py", "--models", str(tmp_path / "none"), "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "no shipped models yet" in res.stdout
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert data["parity"] == [] and data["skipped"][0]["why"].startswith("no shipped models yet")
    assert (tmp_path / "out" / "gpu_check.md").read_text().startswith("# GPU check")


def test_gpu_check_on_tiny_models(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    gc = _load_tool("gpu_check")
    assert (
        gc.main(
            [
                "--models",
                str(tiny_models["frame"].parent),
                "--out",
                str(tmp_path),
                "--budget-s",
                "120",
                "--slice-s",
                "0.05",
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {r["model"] for r in data["parity"]} == {"tiny-frame", "tiny-seg-a", "tiny-seg-b"}
    assert all(r["probs_max_abs"] <= 1e-4 for r in data["parity"] if r["precision"] == "fp32")
    assert [r["what"] for r in data["timing"]][-2:] == ["ensemble of 2", "MC dropout K=10 x 2"]
    assert "| ensemble of 2 | 1 |" in (tmp_path / "gpu_check.md").read_text()


def test_inspect_engine_parameter_only_manifest(tmp_path: Path) -> None:
    from engines import build_manifest, write_manifest

    m = build_manifest(
        name="agg",
        version="1",
        task="aggregator",
        format="none",
        inputs=[],
        outputs=[],
        class_names=[],
        training={"data": "x", "synthetic_only": True, "clinical_use": False, "command": "x"},
        parameters={"neutral_elements": [0.1, 0.2, 0.3, 0.4], "sord_gap": 0.5},
    )
    res = _run("inspect_engine.py", str(write_manifest(m, tmp_path / "agg.json")))
    assert res.returncode == 0, res.stderr
    assert '"neutral_elements": [0.1, 0.2, 0.3, 0.4]' in res.stdout and "nothing to run" in res.stdout
