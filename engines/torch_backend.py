"""PyTorch backend (CPU and CUDA): for GPU machines without TensorRT and for parity checks.

Artefact: a ``torch.export`` program (``NAME.torch.pt2``, :func:`save_torch_export`) or a TorchScript
file, with its own manifest ``NAME.torch.json`` (``format: "torch-export"``) whose ``onnx_sha256``
ties it to the ONNX file it was exported beside. Why not run the ONNX file through a converter:
there is no maintained ONNX→torch converter in our dependencies, and a converter would re-implement
every op a second time — a parity check between ONNX Runtime and such a conversion would test the
converter, not the model. An exported program is the model's own graph, loads without ``train/``
(no model classes, no pickled code) and keeps the dynamic batch dimension.

torch is imported only inside this module's functions: ``import engines`` works without it.
Options: ``device`` ("auto" → CUDA when available), ``precision`` ("fp32" | "fp16", CUDA only),
``cuda_graph`` (capture one CUDA graph per batch size on first use; replay copies the inputs into
static buffers — fixed shapes only, which is how the stream calls it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BackendUnavailableError, Engine, EngineError
from engines.manifest import build_manifest, load_manifest, require_model_file, write_manifest

TORCH_SUFFIX = ".torch"  # NAME.onnx → NAME.torch.pt2 + NAME.torch.json


def torch_manifest_path(onnx_manifest_path: str | Path) -> Path:
    """Where the torch artefact's manifest for an ONNX manifest lives (``NAME.torch.json``)."""
    p = Path(onnx_manifest_path)
    return p.with_name(p.stem + TORCH_SUFFIX + ".json")


def save_torch_export(module: Any, example_inputs: Sequence[Any], onnx_manifest_path: str | Path) -> Path:
    """Export ``module`` with ``torch.export`` (dynamic batch) beside its ONNX file; returns the manifest.

    Call it from the ONNX export with the same module and example inputs (batch ≥ 2, so the batch
    dimension stays symbolic). The manifest copies the ONNX manifest, with ``format:
    "torch-export"`` and ``onnx_sha256`` = the ONNX file's sha256.
    """
    import torch

    onnx_manifest_path = Path(onnx_manifest_path)
    m = load_manifest(onnx_manifest_path)
    if m["format"] != "onnx":
        raise EngineError(f"{onnx_manifest_path}: expected an ONNX manifest, got format {m['format']!r}")
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = tuple({0: batch} for _ in example_inputs)
    ep = torch.export.export(module.eval(), tuple(example_inputs), dynamic_shapes=dynamic)
    out_manifest = torch_manifest_path(onnx_manifest_path)
    pt2 = out_manifest.with_suffix(".pt2")
    torch.export.save(ep, str(pt2))
    fields = {k: v for k, v in m.items() if k not in ("file", "sha256", "format", "onnx_sha256")}
    manifest = build_manifest(model_file=pt2, format="torch-export", onnx_sha256=m["sha256"], **fields)
    return write_manifest(manifest, out_manifest)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "torch is not installed; pip install torch (the torch backend is optional: use onnxruntime)"
        ) from exc
    return torch


class TorchEngine(Engine):
    """A ``torch.export`` program (or TorchScript module) run by PyTorch."""

    backend = "torch"

    def __init__(
        self,
        manifest: Mapping[str, Any],
        manifest_path: str | Path,
        *,
        device: str = "auto",
        precision: str = "fp32",
        cuda_graph: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__(manifest, manifest_path)
        torch = _torch()
        if manifest["format"] != "torch-export":
            raise EngineError(
                f"{manifest_path}: the torch backend runs torch-export artefacts, this manifest is "
                f"{manifest['format']!r}; export one with engines.torch_backend.save_torch_export"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"{manifest_path}: device {device!r} asked for but torch sees no CUDA GPU; use device='cpu'"
            )
        if precision not in ("fp32", "fp16"):
            raise EngineError(f"{manifest_path}: precision {precision!r}: use 'fp32' or 'fp16'")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailableError(
                f"{manifest_path}: fp16 needs a CUDA device; use precision='fp32' on CPU"
            )
        if cuda_graph and not device.startswith("cuda"):
            raise BackendUnavailableError(f"{manifest_path}: CUDA graphs need a CUDA device; drop cuda_graph")
        if threads:
            torch.set_num_threads(int(threads))  # process-wide: torch has one intra-op pool
        self.device = device
        self.precision = precision
        self.cuda_graph = cuda_graph
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        path = require_model_file(manifest, manifest_path)
        try:
            if path.suffix == ".pt2":
                program = torch.export.load(str(path))
                if device != "cpu":  # also rewrites device constants baked into the graph (device="cpu")
                    from torch.export.passes import move_to_device_pass

                    program = move_to_device_pass(program, device)
                module = program.module()
            else:
                module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise EngineError(f"{path}: torch cannot load this file ({exc}); re-export the model") from exc
        module = module.to(device)
        if precision == "fp16":
            module = module.half()
        self.module = module
        self._graphs: dict[int, tuple[Any, list[Any], list[Any]]] = {}

    # -------------------------------------------------------------------------------------- run
    def _forward(self, tensors: list[Any]) -> list[Any]:
        out = self.module(*tensors)
        if isinstance(out, Mapping):
            out = [out[t.name] for t in self.outputs]
        elif not isinstance(out, list | tuple):
            out = [out]
        if len(out) < len(self.outputs):
            raise EngineError(
                f"{self.manifest_path}: the torch module returned {len(out)} outputs, the manifest lists "
                f"{len(self.outputs)}; re-export the model"
            )
        return list(out[: len(self.outputs)])

    def _to_device(self, arr: np.ndarray) -> Any:
        torch = _torch()
        t = torch.from_numpy(arr)
        if t.is_floating_point():
            t = t.to(self._dtype)
        return t.to(self.device, non_blocking=False)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        arrays = [inputs[t.name] for t in self.inputs]
        with torch.inference_mode():
            if self.cuda_graph:
                outs = self._replay(arrays)
            else:
                outs = self._forward([self._to_device(a) for a in arrays])
            return {
                spec.name: o.detach().to("cpu", torch.float32).numpy()
                for spec, o in zip(self.outputs, outs, strict=True)
            }

    def _replay(self, arrays: list[np.ndarray]) -> list[Any]:
        """Run through a CUDA graph captured for this batch size (captured on first use)."""
        torch = _torch()
        batch = arrays[0].shape[0]
        if batch not in self._graphs:
            static_in = [self._to_device(a).clone() for a in arrays]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm up allocator/cudnn autotuning outside the capture
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[batch] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[batch]
        for buf, arr in zip(static_in, arrays, strict=True):
            buf.copy_(torch.from_numpy(arr), non_blocking=False)
        graph.replay()
        return static_out

    def close(self) -> None:
        self._graphs.clear()
        self.module = None
