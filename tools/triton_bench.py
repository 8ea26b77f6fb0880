#!/usr/bin/env python
"""Alias of ``tools/bench.py triton`` (:mod:`stream.bench.triton`): per-frame latency of the frame model
served by ``lus-serve`` (Triton, started and stopped here) against in-process ONNX Runtime, for 1, 2 and 4
concurrent streams, with the server's batch sizes; ``--url HOST:PORT`` measures a running server instead.

    python tools/triton_bench.py --clip CLIP --out results/triton --seconds 15 --streams 1,2,4 --fps 30
"""

from __future__ import annotations

import sys

from stream.bench.triton import main

if __name__ == "__main__":
    sys.exit(main())
