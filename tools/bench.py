#!/usr/bin/env python
"""Benchmark the lus-stream engine on this machine (= ``lus-stream bench``); see ``docs/performance.md``.

    tools/bench.py --clip ../shared/data/real-clips/pocus__Cov_convex_volpecelli_sonographic_v1.mov \\
        --json results/bench.json --out results/latest
    tools/bench.py --synthetic --out results/synthetic

The served models (``docs/serving.md``): ``lus-serve`` (Triton, started and stopped by the benchmark)
against in-process ONNX Runtime, per-frame latency and server batch sizes for 1, 2 and 4 streams::

    tools/bench.py triton --clip CLIP --out results/triton --seconds 15 --streams 1,2,4 --fps 30
"""

from __future__ import annotations

import sys

from stream.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
