"""Suite-wide test settings: one thread per library (2-core CI), full wire validation, real clips."""

from __future__ import annotations

import os
from pathlib import Path

# Before any numerical library starts its pools: on 2 cores oversubscription is catastrophic.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Tests check every published message against the wire schema (engines default to a 1-in-100 sample);
# inherited by the engines and viewers the tests start as subprocesses.
os.environ.setdefault("LUS_WIRE_VALIDATE", "all")

import pytest  # noqa: E402

try:  # torch is optional: the runtime tests run without it
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
except ImportError:  # pragma: no cover - runtime-only environments
    pass


@pytest.fixture(scope="session")
def real_clips_dir() -> Path:
    """The folder of real LUS clips (``LUS_REAL_CLIPS``); skips with the reason when absent."""
    value = os.environ.get("LUS_REAL_CLIPS")
    if not value:
        pytest.skip("LUS_REAL_CLIPS is not set: point it at shared/data/real-clips to run real-clip tests")
    path = Path(value)
    if not (path / "index.csv").is_file():
        pytest.skip(f"LUS_REAL_CLIPS={value} has no index.csv: point it at shared/data/real-clips")
    return path
