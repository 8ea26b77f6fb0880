"""ONNX Runtime backend: the CPU default everywhere, CUDA / TensorRT execution providers when the
``onnxruntime-gpu`` build is installed.

Graph optimisation is on (``ORT_ENABLE_ALL``); intra-op threads default to the machine's physical
cores (the caller may pass ``threads``; the stream passes 1 per lane). On the CPU provider a plain
``session.run`` already reads contiguous numpy inputs in place, so nothing is gained by I/O
binding there; on GPU providers the inputs are bound from host memory and the outputs bound to
host memory (``io_binding``), so ORT copies H2D and D2H once each and allocates nothing per call
beyond the outputs it hands back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BackendUnavailableError, Engine, EngineError
from engines.manifest import model_file_path

#: fastest first; ``auto`` uses every one of these the installed build offers
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = frozenset(PROVIDER_PREFERENCE[:2])


def default_threads() -> int:
    """Physical cores if psutil knows them, else logical cores (never less than 1)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a runtime dependency
        n = None
    return max(1, int(n or os.cpu_count() or 1))


def available_providers() -> list[str]:
    """Providers this onnxruntime build offers, in our preference order ([] if ORT is missing)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = set(ort.get_available_providers())
    return [p for p in PROVIDER_PREFERENCE if p in have]


class OrtEngine(Engine):
    """An ONNX model run by ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(
        self,
        manifest: Mapping[str, Any],
        manifest_path: str | Path,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        io_binding: bool | None = None,
    ) -> None:
        super().__init__(manifest, manifest_path)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(
                f"{manifest_path}: onnxruntime is not installed; pip install onnxruntime (or onnxruntime-gpu)"
            ) from exc
        if manifest["format"] != "onnx":
            raise EngineError(
                f"{manifest_path}: the onnxruntime backend runs ONNX files, this manifest is "
                f"{manifest['format']!r}; load the model's .onnx manifest instead"
            )
        offered = available_providers()
        chosen = list(providers) if providers is not None else offered
        missing = [p for p in chosen if p not in offered]
        if missing:
            raise BackendUnavailableError(
                f"{manifest_path}: onnxruntime here offers {offered}, not {missing}; install onnxruntime-gpu "
                "(with CUDA/TensorRT libraries) or ask for the CPU provider"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = int(threads) if threads else default_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: provider fallbacks are reported by .providers
        if opts.intra_op_num_threads > 1:
            # spinning workers burn the cores another lane needs (measured: 2 segmentation threads
            # beside the scoring lane ran 5.0 runs/s spinning, 10.3 without; docs/performance.md)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = opts.intra_op_num_threads
        path = model_file_path(manifest, manifest_path)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise EngineError(
                f"{path}: onnxruntime cannot load this file ({exc}); re-export the model"
            ) from exc
        self.providers: list[str] = self.session.get_providers()
        self.device = "cuda" if GPU_PROVIDERS & set(self.providers) else "cpu"
        self.io_binding = (self.device == "cuda") if io_binding is None else bool(io_binding)
        self._check_graph_io()

    def _check_graph_io(self) -> None:
        """The ONNX file's own I/O names must be the manifest's (a stale manifest is refused)."""
        graph_in = [i.name for i in self.session.get_inputs()]
        graph_out = [o.name for o in self.session.get_outputs()]
        man_in = [t.name for t in self.inputs]
        man_out = [t.name for t in self.outputs]
        if sorted(graph_in) != sorted(man_in) or not set(man_out) <= set(graph_out):
            raise EngineError(
                f"{self.manifest_path}: manifest I/O {man_in} -> {man_out} does not match the ONNX file's "
                f"{graph_in} -> {graph_out}; re-export the model to rewrite its manifest"
            )

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        if not self.io_binding:
            results = self.session.run(names, inputs)
            return dict(zip(names, results, strict=True))
        binding = self.session.io_binding()
        for name, arr in inputs.items():
            binding.bind_cpu_input(name, arr)
        for name in names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=True))

    def close(self) -> None:
        self.session = None
