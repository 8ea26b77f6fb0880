"""Benchmark support for ``lus-stream bench`` / ``tools/bench.py``: the real engine and a subscriber
process per run (:mod:`.engine_run`, :mod:`.subscriber`, :mod:`.procmon`), isolated stage timings
(:mod:`.isolated`), ONNX FLOP counting (:mod:`.flops`), the thread-budget matrix (:mod:`.threads`),
statistics (:mod:`.stats`), machine description (:mod:`.machine`) and the report (:mod:`.report`).
Torch-free; the naive PyTorch reference loop (``tools/naive_loop.py``) runs in its own process."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``lus-stream bench`` entry point (see :mod:`stream.bench.cli`)."""
    from stream.bench.cli import main as cli_main

    return cli_main(argv)
