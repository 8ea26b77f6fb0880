"""GPU-only checks (marked ``gpu``): torch CUDA parity and CUDA graphs, and the TensorRT backend
end to end (build a plan with tools/build_engine.py, auto-select it, compare with ONNX Runtime).
They skip with the reason on machines without CUDA / TensorRT."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engines import load_engine

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[2]


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU visible to torch (CUDA)")
needs_trt = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None or not _cuda(),
    reason="needs TensorRT >= 10, pycuda and an NVIDIA GPU",
)


@needs_cuda
@pytest.mark.parametrize("kind", ["frame", "seg_a"])
def test_torch_cuda_parity_and_graph(tiny_models: dict[str, Path], kind: str) -> None:
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    ref = load_engine(tiny_models[kind], "onnxruntime", threads=1)
    eng = load_engine(tiny_models[kind], "torch", device="cuda")
    graph = load_engine(tiny_models[kind], "torch", device="cuda", cuda_graph=True)
    half = load_engine(tiny_models[kind], "torch", device="cuda", precision="fp16")
    for batch in (1, 3):
        feed = ref.random_inputs(batch, seed=batch)
        want = ref.infer(feed)
        for name, arr in eng.infer(feed).items():
            assert np.max(np.abs(arr - want[name])) <= 1e-4
        for _ in range(2):  # replayed graph, same answer
            for name, arr in graph.infer(feed).items():
                assert np.max(np.abs(arr - want[name])) <= 1e-4
        assert np.max(np.abs(half.infer(feed)["probs"] - want["probs"])) <= 1e-2


@needs_trt
def test_tensorrt_plan_build_autoselect_and_parity(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    spec = importlib.util.spec_from_file_location("build_engine", REPO / "tools" / "build_engine.py")
    be = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(be)  # type: ignore[union-attr]
    for f in tiny_models["frame"].parent.glob("tiny-frame.*"):
        shutil.copy(f, tmp_path / f.name)
    onnx_manifest = tmp_path / "tiny-frame.json"
    assert (
        be.main(
            [str(onnx_manifest.with_suffix(".onnx")), "--batch", "1:2:4", "--check", "--check-frames", "8"]
        )
        == 0
    )
    eng = load_engine(onnx_manifest)  # auto: the plan beside the ONNX
    assert eng.backend == "tensorrt" and eng.max_batch == 4
    ref = load_engine(onnx_manifest, "onnxruntime", threads=1)
    graph = load_engine(onnx_manifest, "tensorrt", cuda_graph=True)
    for batch in (1, 3, 4):
        feed = ref.random_inputs(batch, seed=batch)
        want = ref.infer(feed)
        for e in (eng, graph, graph):
            for name, arr in e.infer(feed).items():
                assert np.max(np.abs(arr - want[name])) <= 1e-3
