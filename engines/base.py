"""The one inference interface every backend implements, its tensor descriptions and its errors.

An :class:`Engine` is built from a validated manifest (``engines.manifest``). ``infer`` takes and
returns numpy arrays keyed by tensor name; it checks names, ranks, fixed dimensions, the shared
``batch`` dimension and dtypes against the manifest before the backend sees them, so a wrong input
is refused with a message that names the model file and the fix — never run on garbage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.manifest import BATCH_DIM


class EngineError(RuntimeError):
    """Base of every engine failure; the message names the model file and the fix."""


class BackendUnavailableError(EngineError):
    """The requested backend cannot run here (library missing, no GPU, no matching artefact)."""


class PlanMismatchError(BackendUnavailableError):
    """A TensorRT plan exists but was built for another GPU, TensorRT version or ONNX file."""


class EngineInputError(EngineError, ValueError):
    """An input has the wrong name, shape or dtype for the model."""


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: ``shape`` holds ints and ``"batch"`` for the dynamic batch dimension."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> TensorSpec:
        return cls(str(entry["name"]), tuple(entry["shape"]), str(entry["dtype"]))

    def concrete(self, batch: int) -> tuple[int, ...]:
        """The shape with the batch dimension filled in."""
        return tuple(batch if d == BATCH_DIM else int(d) for d in self.shape)


class Engine(ABC):
    """A loaded model. Subclasses implement :meth:`_run` (and may override :meth:`close`)."""

    backend: str = "?"
    #: largest batch one call accepts (TensorRT: the profile's max); None = no limit
    max_batch: int | None = None
    #: why the loader picked this backend (set by engines.loader.load_engine)
    selection: str = ""
    #: the model runs on a server: a failed call is the link's or the server's, not a bad input's
    remote: bool = False

    def __init__(self, manifest: Mapping[str, Any], manifest_path: str | Path) -> None:
        self.manifest: dict[str, Any] = dict(manifest)
        self.manifest_path = Path(manifest_path)
        self.inputs: list[TensorSpec] = [TensorSpec.from_manifest(t) for t in manifest["inputs"]]
        self.outputs: list[TensorSpec] = [TensorSpec.from_manifest(t) for t in manifest["outputs"]]
        self.device = "cpu"

    # ------------------------------------------------------------------------------------ public
    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model: numpy in (names and dtypes as in the manifest), numpy out (float32)."""
        arrays = self.check_inputs(inputs)
        return self._run(arrays)

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate inputs against the manifest; returns C-contiguous arrays (copies only if needed)."""
        where = self.manifest_path
        expected = {t.name for t in self.inputs}
        got = set(inputs)
        if got != expected:
            raise EngineInputError(
                f"{where}: inputs {sorted(got)} do not match the model's inputs {sorted(expected)}; "
                "pass exactly the inputs the manifest lists"
            )
        batch: int | None = None
        out: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            arr = inputs[spec.name]
            if not isinstance(arr, np.ndarray):
                raise EngineInputError(
                    f"{where}: input {spec.name!r} must be a numpy array, got {type(arr).__name__}"
                )
            if arr.dtype != np.dtype(spec.dtype):
                raise EngineInputError(
                    f"{where}: input {spec.name!r} has dtype {arr.dtype}, the model takes {spec.dtype}; "
                    f"convert it with .astype(np.{spec.dtype})"
                )
            if arr.ndim != len(spec.shape):
                raise EngineInputError(
                    f"{where}: input {spec.name!r} has shape {arr.shape}, "
                    f"the model takes {list(spec.shape)}; add the batch/channel axes, e.g. x[None, None]"
                )
            for axis, (have, want) in enumerate(zip(arr.shape, spec.shape, strict=True)):
                if want == BATCH_DIM:
                    if batch is None:
                        batch = have
                    elif have != batch:
                        raise EngineInputError(
                            f"{where}: input {spec.name!r} has batch {have} but another input has {batch}; "
                            "all inputs must share the batch size"
                        )
                elif have != want:
                    raise EngineInputError(
                        f"{where}: input {spec.name!r} has shape {arr.shape}, "
                        f"the model takes {list(spec.shape)} (axis {axis} must be {want}); "
                        "preprocess with engines.preprocess using the manifest"
                    )
            out[spec.name] = np.ascontiguousarray(arr)
        if batch is not None and batch < 1:
            raise EngineInputError(f"{where}: empty batch; pass at least one sample")
        if batch is not None and self.max_batch is not None and batch > self.max_batch:
            raise EngineInputError(
                f"{where}: batch {batch} exceeds this engine's maximum {self.max_batch}; split the batch "
                "or rebuild the plan with a larger --batch MIN:OPT:MAX (tools/build_engine.py)"
            )
        return out

    def random_inputs(self, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs of the right shapes and dtypes (uniform [0, 1); masks of ones) for timing/warm-up."""
        rng = np.random.default_rng(seed)
        mc = self.manifest.get("parameters", {}).get("mc_dropout") or {}
        out = {}
        for spec in self.inputs:
            shape = spec.concrete(batch)
            if spec.name == mc.get("input"):
                out[spec.name] = np.ones(shape, dtype=spec.dtype)
            else:
                out[spec.name] = rng.random(shape).astype(spec.dtype)
        return out

    def warmup(self, batch: int = 1, iterations: int = 2) -> None:
        """Run a few calls on random inputs so lazy allocations/autotuning happen before timing."""
        feed = self.random_inputs(batch)
        for _ in range(iterations):
            self.infer(feed)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends have nothing to free
        """Release backend resources (idempotent)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} backend={self.backend} device={self.device}>"

    # ----------------------------------------------------------------------------------- backend
    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run validated inputs; return outputs keyed by the manifest's output names."""
