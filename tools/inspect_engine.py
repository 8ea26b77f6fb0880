#!/usr/bin/env python
"""Print a model's manifest and inputs/outputs, then time it on random input.

    tools/inspect_engine.py models/frame/regstn.onnx
    tools/inspect_engine.py models/seg/unet.json --backend torch --threads 1 --batch 1 --iterations 50

A model it cannot load (missing file, sha256 mismatch, plan for another GPU, backend not available)
is refused with the engine's own message and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from engines import BACKENDS, Engine, EngineError, ManifestError, load_engine, load_manifest


def time_engine(engine: Engine, batch: int = 1, iterations: int = 30, warmup: int = 3) -> dict[str, Any]:
    """Latency of ``engine.infer`` on random input (ms): median, p90, mean, min; and throughput."""
    feed = engine.random_inputs(batch)
    for _ in range(warmup):
        engine.infer(feed)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        engine.infer(feed)
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    return {
        "backend": engine.backend,
        "device": engine.device,
        "batch": batch,
        "iterations": iterations,
        "median_ms": float(np.median(arr)),
        "p90_ms": float(np.percentile(arr, 90)),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
        "samples_per_s": float(batch * 1e3 / np.median(arr)),
    }


def describe(engine: Engine) -> str:
    """Human-readable summary of the manifest and I/O."""
    m = engine.manifest
    lines = [
        f"model      {m['name']} {m['version']}  ({m['task']}, {m['format']})",
        f"file       {engine.manifest_path.parent / (m['file'] or '-')}",
        f"sha256     {m['sha256']}",
        f"backend    {engine.backend} on {engine.device}  [{engine.selection}]",
        f"training   {json.dumps(m['training'])}",
        f"classes    {m['class_names']}",
    ]
    if m["preprocessing"]:
        lines.append(f"preprocess {json.dumps(m['preprocessing'])}")
    if m["tensorrt"]:
        lines.append(f"tensorrt   {json.dumps(m['tensorrt'])}")
    if m["metrics"]:
        lines.append(f"metrics    {json.dumps(m['metrics'])}")
    if m["parameters"]:
        lines.append(f"parameters {json.dumps(m['parameters'])}")
    for kind, specs in (("input ", engine.inputs), ("output", engine.outputs)):
        for t in specs:
            lines.append(f"{kind}     {t.name:14s} {t.dtype:8s} {list(t.shape)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inspect_engine.py", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model file (.onnx/.plan/.pt2) or its manifest (.json)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--device", default="auto", help="torch backend: auto|cpu|cuda")
    p.add_argument("--precision", default=None, help="torch: fp32|fp16; tensorrt: which plan")
    p.add_argument("--cuda-graph", action="store_true", help="torch/tensorrt: replay a captured CUDA graph")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--json", action="store_true", help="print the timing as one JSON line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        manifest = load_manifest(ns.model)
        if manifest["format"] == "none":  # e.g. the aggregator: parameters only
            print(f"model      {manifest['name']} {manifest['version']}  ({manifest['task']}, no model file)")
            print(f"training   {json.dumps(manifest['training'])}")
            print(f"parameters {json.dumps(manifest['parameters'])}")
            print(f"metrics    {json.dumps(manifest['metrics'])}")
            print("timing     nothing to run: this manifest holds parameters only")
            return 0
        engine = load_engine(
            ns.model,
            ns.backend,
            threads=ns.threads,
            device=ns.device,
            precision=ns.precision,
            cuda_graph=ns.cuda_graph,
        )
        print(describe(engine))
        timing = time_engine(engine, batch=ns.batch, iterations=ns.iterations)
    except (ManifestError, EngineError, ValueError) as exc:
        print(f"inspect_engine.py: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps({"model": engine.name, **timing}))
    else:
        print(
            f"timing     batch {ns.batch}: median {timing['median_ms']:.3f} ms, "
            f"p90 {timing['p90_ms']:.3f} ms, "
            f"{timing['samples_per_s']:.1f} samples/s over {ns.iterations} runs"
        )
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
