"""engines.trt_build on CPU machines: build options, the ROI the caller passes, check frames, the refusal
without TensorRT, and build_plan against a stand-in TensorRT module that records what it is asked (the
real build runs in tests/engines/test_gpu.py where TensorRT and a GPU exist)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engines import EngineError, load_manifest
from engines.plans import find_plan
from engines.preprocess import preprocess
from engines.trt_build import (
    PlanBuildError,
    PlanOptions,
    build_plan,
    model_inputs,
    require_tensorrt,
    sample_inputs,
)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
GPU = {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def test_plan_options_refusals() -> None:
    assert PlanOptions().precision == "fp32" and PlanOptions().batch == (1, 1, 8)
    with pytest.raises(PlanBuildError, match="precision 'bf16'"):
        PlanOptions(precision="bf16")
    with pytest.raises(PlanBuildError, match="int8 needs calib_clips"):
        PlanOptions(precision="int8")
    assert issubclass(PlanBuildError, EngineError)


def test_model_inputs_crops_with_the_callers_roi(tiny_models: dict[str, Path]) -> None:
    m = load_manifest(tiny_models["frame"])
    frame = np.zeros((48, 64), np.uint8)
    frame[8:40, 16:48] = np.arange(32, dtype=np.uint8)[None, :] * 7
    boxes: list[tuple[int, ...]] = []

    def roi(f: np.ndarray) -> tuple[int, int, int, int]:
        boxes.append(f.shape)
        return (16, 8, 32, 32)

    x = model_inputs([frame, frame], m, roi)
    assert boxes == [(48, 64), (48, 64)]
    want = preprocess(frame[8:40, 16:48], m["preprocessing"])[0][0]
    assert x.shape == (2, 1, 16, 16) and np.array_equal(x[0], want)
    assert not np.array_equal(model_inputs([frame], m)[0], want)  # without roi: the whole frame


def test_sample_inputs_from_the_simulator_without_clips(tiny_models: dict[str, Path]) -> None:
    x = sample_inputs(load_manifest(tiny_models["frame"]), 3)
    assert x.shape == (3, 1, 16, 16) and x.dtype == np.float32 and x.std() > 0


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_require_tensorrt_says_one_sentence() -> None:
    with pytest.raises(PlanBuildError) as exc:
        require_tensorrt()
    text = str(exc.value)
    assert text.startswith("TensorRT is not installed here, so no plan was built") and "\n" not in text


# ------------------------------------------------------------------------------- stand-in TensorRT
class _Recorder:
    def __init__(self, log: list[tuple[Any, ...]], what: str) -> None:
        self._log, self._what = log, what

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self._log.append((self._what, name, args, kwargs))

        return call


def _fake_trt(log: list[tuple[Any, ...]], parses: bool = True, builds: bool = True) -> Any:
    class Config(_Recorder):
        progress_monitor: Any = None

        def create_timing_cache(self, data: bytes) -> Any:
            log.append(("config", "create_timing_cache", (data,), {}))
            return SimpleNamespace(serialize=lambda: b"timing-cache")

        def get_timing_cache(self) -> Any:
            return SimpleNamespace(serialize=lambda: b"timing-cache")

    class Builder(_Recorder):
        def __init__(self, logger: Any) -> None:
            super().__init__(log, "builder")

        def create_network(self, flags: int) -> Any:
            return _Recorder(log, "network")

        def create_builder_config(self) -> Any:
            return Config(log, "config")

        def create_optimization_profile(self) -> Any:
            return _Recorder(log, "profile")

        def build_serialized_network(self, network: Any, config: Any) -> bytes | None:
            return b"not really a plan" if builds else None

    class OnnxParser:
        num_errors = 1

        def __init__(self, network: Any, logger: Any) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            log.append(("parser", "parse_from_file", (path,), {}))
            return parses

        def get_error(self, i: int) -> str:
            return "Unsupported operator XYZ"

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    return SimpleNamespace(
        __version__="10.3.0.26",
        Logger=Logger,
        Builder=Builder,
        OnnxParser=OnnxParser,
        IProgressMonitor=IProgressMonitor,
        MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"),
        BuilderFlag=SimpleNamespace(FP16="fp16", INT8="int8"),
    )


def _calls(log: list[tuple[Any, ...]], name: str) -> list[tuple[Any, ...]]:
    return [args for _, n, args, _ in log if n == name]


def test_build_plan_writes_plan_and_timing_cache(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    log: list[tuple[Any, ...]] = []
    trt = _fake_trt(log)
    onnx_manifest = tiny_models["frame"]
    options = PlanOptions(precision="fp16", batch=(1, 2, 4), workspace_mb=256, out=tmp_path)
    plan_manifest = build_plan(onnx_manifest, options, trt, GPU)

    stem = "tiny-frame__NVIDIA-H100-80GB-HBM3__sm90__trt10.3.0.26__fp16"
    assert plan_manifest == tmp_path / f"{stem}.json"
    assert (tmp_path / f"{stem}.plan").read_bytes() == b"not really a plan"
    cache = tmp_path / "timing__NVIDIA-H100-80GB-HBM3__sm90__trt10.3.0.26.cache"
    assert cache.read_bytes() == b"timing-cache"
    calls = {(what, name): (args, kwargs) for what, name, args, kwargs in log}
    assert calls[("config", "set_memory_pool_limit")][0] == ("workspace", 256 << 20)
    assert _calls(log, "set_flag") == [("fp16",)]
    assert calls[("profile", "set_shape")][0] == ("frame", (1, 1, 16, 16), (2, 1, 16, 16), (4, 1, 16, 16))
    assert calls[("config", "create_timing_cache")][0] == (b"",)
    assert calls[("config", "set_timing_cache")][1] == {"ignore_mismatch": False}

    m = load_manifest(plan_manifest)
    onnx = load_manifest(onnx_manifest)
    assert m["format"] == "tensorrt-plan" and m["onnx_sha256"] == onnx["sha256"]
    assert m["tensorrt"] == {
        **GPU,
        "tensorrt_version": "10.3.0.26",
        "precision": "fp16",
        "batch_profile": [1, 2, 4],
    }
    assert m["inputs"] == onnx["inputs"] and m["preprocessing"] == onnx["preprocessing"]
    assert json.loads(plan_manifest.read_text())["name"] == "tiny-frame"

    # a second build reads the timing cache it wrote
    log.clear()
    build_plan(onnx_manifest, options, trt, GPU)
    assert _calls(log, "create_timing_cache") == [(b"timing-cache",)]


def test_built_plan_is_what_discovery_finds(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    for f in tiny_models["frame"].parent.glob("tiny-frame.*"):
        shutil.copy(f, tmp_path / f.name)
    onnx_manifest = tmp_path / "tiny-frame.json"
    plan_manifest = build_plan(onnx_manifest, PlanOptions(precision="fp32"), _fake_trt([]), GPU)
    found, refused = find_plan(load_manifest(onnx_manifest), onnx_manifest, GPU, "10.3.0.26")
    assert found == plan_manifest and refused == []


def test_build_plan_refusals(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    options = PlanOptions(out=tmp_path)
    with pytest.raises(PlanBuildError, match=r"cannot parse this ONNX file \(Unsupported operator XYZ\)"):
        build_plan(tiny_models["frame"], options, _fake_trt([], parses=False), GPU)
    with pytest.raises(PlanBuildError, match="TensorRT failed to build a plan"):
        build_plan(tiny_models["frame"], options, _fake_trt([], builds=False), GPU)
    assert not list(tmp_path.glob("*.plan"))
