"""Running compiled models: one Engine interface over TensorRT, ONNX Runtime, PyTorch and Triton
Inference Server backends, engine manifests, ensembles and MC-dropout sampling. Knows nothing about
video or ZeroMQ.

Imports no torch, TensorRT, pycuda or tritonclient at import time (each backend imports its library
when used).
"""

from engines.base import (
    BackendUnavailableError,
    Engine,
    EngineError,
    EngineInputError,
    PlanMismatchError,
    TensorSpec,
)
from engines.ensemble import Ensemble, McDropoutResult, mc_dropout
from engines.loader import BACKENDS, load_engine
from engines.manifest import (
    ManifestError,
    build_manifest,
    load_manifest,
    sha256_file,
    validate_manifest,
    write_manifest,
)
from engines.triton_backend import EngineUnavailableError, ServedModelMismatchError

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "Engine",
    "EngineError",
    "EngineInputError",
    "EngineUnavailableError",
    "Ensemble",
    "ManifestError",
    "McDropoutResult",
    "PlanMismatchError",
    "ServedModelMismatchError",
    "TensorSpec",
    "build_manifest",
    "load_engine",
    "load_manifest",
    "mc_dropout",
    "sha256_file",
    "validate_manifest",
    "write_manifest",
]
