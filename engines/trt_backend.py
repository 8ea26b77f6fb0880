"""TensorRT backend (TensorRT ≥ 10 named-tensor API + pycuda).

Deserialises a plan, allocates page-locked host buffers and device buffers ONCE for the profile's
maximum batch, and runs each call as H2D copies → ``execute_async_v3`` → D2H copies on one CUDA
stream, then synchronises. The batch may vary within the plan's optimisation profile
(``set_input_shape`` per call when it changes). With ``cuda_graph=True`` the whole
copy-execute-copy sequence is captured once per batch size and replayed (fixed shapes).

Importable without TensorRT, pycuda or a GPU: the libraries are imported when an engine is built,
and their absence is a :class:`BackendUnavailableError` naming the fix. This module has not been
run on a GPU with TensorRT in this project (no such machine was available); its tests are marked
``gpu`` and run where one exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BackendUnavailableError, Engine, EngineError, PlanMismatchError
from engines.manifest import require_model_file


def import_tensorrt() -> Any:
    """``tensorrt`` module, or BackendUnavailableError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not installed; pip install 'lus-stream[gpu]' (tensorrt>=10, pycuda) on a machine "
            "with an NVIDIA GPU, or use backend='onnxruntime'"
        ) from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} is too old; this backend needs TensorRT >= 10"
        )
    return trt


_PRIMARY: dict[str, Any] = {}  # GPU 0's primary context, retained once per process


def import_pycuda() -> Any:
    """``pycuda.driver``, initialised, or BackendUnavailableError saying what is missing."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendUnavailableError(
            "pycuda is not installed; pip install pycuda (needs the CUDA toolkit) "
            "or use backend='onnxruntime'"
        ) from exc
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            raise RuntimeError("the driver reports no device")
    except Exception as exc:  # pycuda raises its own errors when there is no driver/GPU
        raise BackendUnavailableError(f"no usable CUDA GPU ({exc}); use backend='onnxruntime'") from exc
    return cuda


@contextmanager
def cuda_scope() -> Iterator[Any]:
    """Make GPU 0's primary context current on this thread (the one TensorRT's and torch's runtime
    use), yield ``pycuda.driver``, and pop it again — so engines work from any thread."""
    cuda = import_pycuda()
    ctx = _PRIMARY.get("ctx")
    if ctx is None:
        ctx = _PRIMARY["ctx"] = cuda.Device(0).retain_primary_context()
    ctx.push()
    try:
        yield cuda
    finally:
        cuda.Context.pop()


def current_gpu() -> dict[str, str] | None:
    """``{"gpu_name", "compute_capability"}`` of GPU 0 via pycuda, or None without GPU/pycuda."""
    try:
        cuda = import_pycuda()
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        return {"gpu_name": str(dev.name()), "compute_capability": f"{major}.{minor}"}
    except Exception:
        return None


def rebuild_hint(manifest: Mapping[str, Any], manifest_path: str | Path) -> str:
    """'rebuild with tools/build_engine.py X.onnx': X is the ONNX beside the plan it was built from."""
    folder = Path(manifest_path).parent
    onnx = "the model's .onnx file"
    for cand in sorted(folder.glob("*.json")):
        try:
            other = json.loads(cand.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            isinstance(other, dict)
            and other.get("format") == "onnx"
            and other.get("name") == manifest["name"]
        ):
            onnx = str(folder / str(other.get("file")))
            break
    return f"rebuild with tools/build_engine.py {onnx} (on this machine)"


def check_plan_matches(
    manifest: Mapping[str, Any],
    manifest_path: str | Path,
    trt_version: str,
    gpu: Mapping[str, str],
    onnx_sha256: str | None = None,
) -> None:
    """Raise PlanMismatchError (with the rebuild command) unless the plan fits this GPU/TensorRT/ONNX."""
    info = manifest["tensorrt"]
    fix = rebuild_hint(manifest, manifest_path)
    if info["tensorrt_version"] != trt_version:
        raise PlanMismatchError(
            f"{manifest_path}: plan built with TensorRT {info['tensorrt_version']}, this machine has "
            f"TensorRT {trt_version}; {fix}"
        )
    if info["compute_capability"] != gpu["compute_capability"] or info["gpu_name"] != gpu["gpu_name"]:
        raise PlanMismatchError(
            f"{manifest_path}: plan built for {info['gpu_name']} (sm {info['compute_capability']}), "
            f"this GPU is {gpu['gpu_name']} (sm {gpu['compute_capability']}); {fix}"
        )
    if onnx_sha256 is not None and manifest["onnx_sha256"] != onnx_sha256:
        raise PlanMismatchError(
            f"{manifest_path}: plan was built from a different ONNX file (onnx_sha256 differs); {fix}"
        )


class TrtEngine(Engine):
    """A serialized TensorRT plan run with pycuda buffers on one stream."""

    backend = "tensorrt"

    def __init__(
        self,
        manifest: Mapping[str, Any],
        manifest_path: str | Path,
        *,
        cuda_graph: bool = False,
        onnx_sha256: str | None = None,
    ) -> None:
        super().__init__(manifest, manifest_path)
        if manifest["format"] != "tensorrt-plan":
            raise EngineError(
                f"{manifest_path}: the tensorrt backend runs plans, this manifest is {manifest['format']!r}; "
                f"build one with tools/build_engine.py {Path(manifest_path).with_suffix('.onnx')}"
            )
        trt = import_tensorrt()
        gpu = current_gpu()
        if gpu is None:
            raise BackendUnavailableError(f"{manifest_path}: no CUDA GPU visible; use backend='onnxruntime'")
        check_plan_matches(manifest, manifest_path, str(trt.__version__), gpu, onnx_sha256)
        self.device = "cuda"
        self.cuda_graph = cuda_graph
        self._dev: dict[str, Any] = {}
        with cuda_scope() as cuda:
            self._cuda = cuda
            self._setup(trt, cuda, manifest, manifest_path)

    def _setup(self, trt: Any, cuda: Any, manifest: Mapping[str, Any], manifest_path: str | Path) -> None:
        """Deserialize the plan and allocate host/device buffers for the profile's max batch."""
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        plan = require_model_file(manifest, manifest_path).read_bytes()
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise PlanMismatchError(
                f"{manifest_path}: TensorRT could not deserialize the plan; "
                + rebuild_hint(manifest, manifest_path)
            )
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        in_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(in_names) != sorted(t.name for t in self.inputs):
            raise EngineError(
                f"{manifest_path}: plan inputs {in_names} differ from the manifest's; rebuild the plan"
            )
        # profile 0's max batch bounds every buffer; read it from the first input
        first = self.inputs[0].name
        _, _, max_shape = self._engine.get_tensor_profile_shape(first, 0)
        self.max_batch = int(max_shape[0])
        self._host: dict[str, np.ndarray] = {}
        for name in names:
            spec = next((t for t in (*self.inputs, *self.outputs) if t.name == name), None)
            if spec is not None:
                shape = spec.concrete(self.max_batch)
            else:  # an extra plan output the manifest does not expose: still needs an address
                shape = tuple(self.max_batch if d < 0 else d for d in self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._host[name] = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            self._dev[name] = cuda.mem_alloc(self._host[name].nbytes)
            self._context.set_tensor_address(name, int(self._dev[name]))
        self._batch: int | None = None
        self._graphs: dict[int, Any] = {}

    def _set_batch(self, inputs: dict[str, np.ndarray]) -> int:
        """Set the context's input shapes for this batch (only when it changed); returns the batch size."""
        batch = int(next(iter(inputs.values())).shape[0])
        if batch != self._batch:
            for name, arr in inputs.items():
                if not self._context.set_input_shape(name, tuple(arr.shape)):
                    raise EngineError(
                        f"{self.manifest_path}: TensorRT refused input shape {arr.shape} for {name!r}; "
                        "rebuild the plan with a --batch profile that covers it"
                    )
            self._batch = batch
        return batch

    def _enqueue(self, inputs: dict[str, np.ndarray]) -> None:
        cuda = self._cuda
        for name, arr in inputs.items():
            cuda.memcpy_htod_async(self._dev[name], self._host[name][: arr.size], self._stream)
        if not self._context.execute_async_v3(stream_handle=self._stream.handle):
            raise EngineError(f"{self.manifest_path}: TensorRT execution failed (see the TensorRT log above)")
        for spec in self.outputs:
            n = int(np.prod(tuple(self._context.get_tensor_shape(spec.name))))
            cuda.memcpy_dtoh_async(self._host[spec.name][:n], self._dev[spec.name], self._stream)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with cuda_scope():
            return self._run_current(inputs)

    def _run_current(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = self._set_batch(inputs)
        for name, arr in inputs.items():
            self._host[name][: arr.size] = arr.ravel()
        if not self.cuda_graph:
            self._enqueue(inputs)
        else:
            if batch not in self._graphs:
                self._enqueue(inputs)  # one plain run first: TensorRT finishes shape-dependent setup
                self._stream.synchronize()
                self._stream.begin_capture()
                self._enqueue(inputs)
                self._graphs[batch] = self._stream.end_capture().instantiate()
            self._graphs[batch].launch(self._stream)
        self._stream.synchronize()
        out = {}
        for spec in self.outputs:
            shape = tuple(self._context.get_tensor_shape(spec.name))
            out[spec.name] = self._host[spec.name][: int(np.prod(shape))].reshape(shape).astype(np.float32)
        return out

    def close(self) -> None:
        if not getattr(self, "_dev", None):
            return
        with cuda_scope():
            self._graphs.clear()
            for buf in self._dev.values():
                buf.free()
            self._dev = {}
            self._context = None
            self._engine = None
