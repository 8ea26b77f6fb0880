"""``load_engine``: open a model by its manifest and pick the backend that runs it.

``backend="auto"`` picks, in order:

1. ``tensorrt`` — if TensorRT and pycuda import, a GPU is visible, and a plan manifest beside the
   ONNX file was built for this GPU, this TensorRT version and this exact ONNX file (onnx_sha256);
2. ``onnxruntime`` — if installed, with the best provider it offers (TensorRT EP, CUDA EP, CPU);
3. ``torch`` — if installed and a ``NAME.torch.json`` artefact sits beside the ONNX file.

``backend="triton"`` (never picked by ``auto``) runs the model on a Triton Inference Server at
``triton_url`` (``HOST:PORT``, gRPC): the served model named by the manifest's ``name``, checked
against the manifest's tensors at load (``engines.triton_backend``; start a server with ``lus-serve``).

An explicit backend that cannot be met raises :class:`BackendUnavailableError` (or its subclass
:class:`PlanMismatchError`) with the reason and the fix — it never silently falls back.
``engine.selection`` records why the backend was chosen.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engines.base import BackendUnavailableError, Engine, EngineError, PlanMismatchError
from engines.manifest import load_manifest

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch", "triton")


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _plan_for(m: dict[str, Any], path: Path, precision: str | None) -> tuple[Path | None, str]:
    """(plan manifest, reason) for this machine; plan None with the reason when there is none."""
    from engines.plans import find_plan
    from engines.trt_backend import current_gpu, import_tensorrt

    try:
        trt = import_tensorrt()
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"{path}: {exc}") from None
    gpu = current_gpu()
    if gpu is None:
        raise BackendUnavailableError(f"{path}: no CUDA GPU visible (pycuda); TensorRT needs one")
    plan, refused = find_plan(m, path, gpu, str(trt.__version__), precision)
    if plan is not None:
        return plan, f"plan {plan.name} matches {gpu['gpu_name']} and TensorRT {trt.__version__}"
    why = "; ".join(refused) if refused else "no plan beside it"
    return None, (
        f"{path}: no TensorRT plan for {gpu['gpu_name']} (sm {gpu['compute_capability']}), TensorRT "
        f"{trt.__version__} and this ONNX file ({why}); build one with "
        f"tools/build_engine.py {path.parent / m['file']}"
    )


def _torch_engine(m: dict[str, Any], path: Path, **kw: Any) -> Engine:
    from engines.torch_backend import TorchEngine, torch_manifest_path

    if m["format"] == "torch-export":
        return TorchEngine(m, path, **kw)
    tpath = torch_manifest_path(path)
    if not tpath.is_file():
        raise BackendUnavailableError(
            f"{path}: no torch artefact {tpath.name} beside it; export one with "
            "engines.torch_backend.save_torch_export (or use backend='onnxruntime')"
        )
    tm = load_manifest(tpath)
    if tm["onnx_sha256"] != m["sha256"]:
        raise BackendUnavailableError(
            f"{tpath}: torch artefact was exported with a different ONNX file (onnx_sha256 differs); "
            "re-export it with engines.torch_backend.save_torch_export"
        )
    return TorchEngine(tm, tpath, **kw)


def load_engine(
    manifest_path: str | Path,
    backend: str = "auto",
    *,
    threads: int | None = None,
    device: str = "auto",
    precision: str | None = None,
    cuda_graph: bool = False,
    providers: Sequence[str] | None = None,
    triton_url: str | None = None,
    triton_options: Mapping[str, Any] | None = None,
) -> Engine:
    """Load the model a manifest (or a model file with its manifest beside it) describes.

    ``threads``: CPU threads (ORT intra-op; torch's process-wide pool). ``device``/``precision``/
    ``cuda_graph``: torch backend (precision also picks among TensorRT plans). ``providers``: ORT.
    ``triton_url`` (``HOST:PORT``) and ``triton_options`` (keywords of
    :class:`engines.triton_backend.TritonEngine`: ``timeout_s``, ``retry``, TLS files): backend ``triton``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: use one of {list(BACKENDS)}")
    if (triton_url is not None or triton_options) and backend != "triton":
        raise ValueError(f"triton_url/triton_options are for backend 'triton', not {backend!r}")
    path = Path(manifest_path)
    m = load_manifest(path)  # validates and checks the model file's sha256
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    if m["format"] == "none":
        raise EngineError(
            f"{path}: an {m['task']} manifest has no model file to run; read its parameters instead "
            "(e.g. stream.aggregate.load_neutral_elements)"
        )
    if backend == "triton":
        # the model runs on the server, addressed by name: any manifest of it (ONNX, plan, torch) will do
        from engines.triton_backend import TritonEngine

        if not triton_url:
            raise BackendUnavailableError(
                f"{path}: backend 'triton' needs the server's address, triton_url='HOST:PORT' "
                "(lus-serve listens on 127.0.0.1:8001 by default)"
            )
        remote = TritonEngine(m, path, triton_url, **dict(triton_options or {}))
        remote.selection = f"asked for: Triton server at {remote.url}"
        return remote
    torch_kw = dict(device=device, precision=precision or "fp32", cuda_graph=cuda_graph, threads=threads)

    if m["format"] == "tensorrt-plan":
        if backend not in ("auto", "tensorrt"):
            raise BackendUnavailableError(
                f"{path}: a TensorRT plan runs only on backend 'tensorrt'; load the ONNX manifest instead"
            )
        from engines.trt_backend import TrtEngine

        eng: Engine = TrtEngine(m, path, cuda_graph=cuda_graph)
        eng.selection = "a plan manifest was given"
        return eng
    if m["format"] == "torch-export":
        if backend not in ("auto", "torch"):
            raise BackendUnavailableError(
                f"{path}: a torch artefact runs only on backend 'torch'; load the ONNX manifest instead"
            )
        eng = _torch_engine(m, path, **torch_kw)
        eng.selection = "a torch-export manifest was given"
        return eng

    # an ONNX model
    if backend == "tensorrt":
        from engines.trt_backend import TrtEngine

        plan, reason = _plan_for(m, path, precision)
        if plan is None:
            raise PlanMismatchError(reason)
        eng = TrtEngine(load_manifest(plan), plan, cuda_graph=cuda_graph, onnx_sha256=m["sha256"])
        eng.selection = reason
        return eng
    if backend == "onnxruntime":
        from engines.ort_backend import OrtEngine

        eng = OrtEngine(m, path, threads=threads, providers=providers)
        eng.selection = "asked for"
        return eng
    if backend == "torch":
        eng = _torch_engine(m, path, **torch_kw)
        eng.selection = "asked for"
        return eng

    # auto
    notes: list[str] = []
    if _have("tensorrt") and _have("pycuda"):
        try:
            plan, reason = _plan_for(m, path, precision)
        except BackendUnavailableError as exc:
            plan, reason = None, str(exc)
        if plan is not None:
            from engines.trt_backend import TrtEngine

            eng = TrtEngine(load_manifest(plan), plan, cuda_graph=cuda_graph, onnx_sha256=m["sha256"])
            eng.selection = f"auto: {reason}"
            return eng
        notes.append(f"tensorrt skipped ({reason})")
    else:
        notes.append("tensorrt skipped (tensorrt/pycuda not installed)")
    if _have("onnxruntime"):
        from engines.ort_backend import OrtEngine

        eng = OrtEngine(m, path, threads=threads, providers=providers)
        eng.selection = f"auto: onnxruntime {eng.providers[0]}; " + "; ".join(notes)
        return eng
    notes.append("onnxruntime not installed")
    if _have("torch"):
        eng = _torch_engine(m, path, **torch_kw)
        eng.selection = "auto: torch; " + "; ".join(notes)
        return eng
    raise BackendUnavailableError(
        f"{path}: no backend can run this model here ({'; '.join(notes)}); pip install onnxruntime"
    )
