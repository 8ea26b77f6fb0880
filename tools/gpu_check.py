#!/usr/bin/env python
"""GPU check for a lent GPU machine (PyTorch with CUDA; no TensorRT, no network needed).

    python tools/gpu_check.py --out results/gpu-check            # the shipped models in models/
    python tools/gpu_check.py --out results/gpu-check --tiny     # tiny generated models (smoke test)

1. Parity: the PyTorch backend on CUDA (fp32 with TF32 off, and fp16) against ONNX Runtime on the
   CPU (or PyTorch on the CPU when onnxruntime is not installed), on every shipped model that has a
   ``NAME.torch.json`` artefact beside its ONNX file: max/mean abs difference, argmax agreement.
2. Timing at batch 1: frame scoring and the segmentation ensemble (all members, and MC dropout with
   K samples as one batched call per member), fp32 and fp16, with and without CUDA graphs; the ONNX
   Runtime CPU time as the reference.

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out``. Bounded by ``--budget-s`` (default
240 s) so it finishes in under 5 minutes; without shipped models (and without ``--tiny``) or without
CUDA it says so and writes what it could.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines import Engine, EngineError, Ensemble, load_engine, load_manifest, mc_dropout
from engines.torch_backend import torch_manifest_path

REPO = Path(__file__).resolve().parents[1]


def discover(models_dir: Path) -> dict[str, list[Path]]:
    """ONNX manifests by task under ``models_dir`` (frame-score and segmentation only)."""
    found: dict[str, list[Path]] = {"frame-score": [], "segmentation": []}
    if not models_dir.is_dir():
        return found
    for path in sorted(models_dir.rglob("*.json")):
        try:
            m = load_manifest(path, verify_file=False)
        except Exception:
            continue  # not a manifest (timing caches, metrics files ...)
        if m["format"] == "onnx" and m["task"] in found:
            found[m["task"]].append(path)
    return found


def timed(
    fn: Callable[[], Any], budget_s: float, max_iter: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median/p90 latency of ``fn`` (ms) over up to ``max_iter`` runs or ``budget_s`` seconds."""
    for _ in range(3):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_iter and (time.perf_counter() - start) < budget_s:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)), "runs": len(times)}


def compare(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, Any]:
    rep: dict[str, Any] = {}
    for k, v in ref.items():
        d = np.abs(v.astype(np.float64) - out[k])
        rep[f"{k}_max_abs"] = float(d.max())
        rep[f"{k}_mean_abs"] = float(d.mean())
    if "probs" in ref:
        rep["argmax_agreement"] = float(np.mean(ref["probs"].argmax(1) == out["probs"].argmax(1)))
    return rep


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.torch = torch
        self.args = args
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        if self.cuda:  # fp32 means fp32: TF32 convs/matmuls would differ from ONNX Runtime by ~1e-3
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
        self.deadline = time.monotonic() + args.budget_s
        self.results: dict[str, Any] = {
            "environment": self.environment(),
            "parity": [],
            "timing": [],
            "skipped": [],
        }

    def environment(self) -> dict[str, Any]:
        torch = self.torch
        env = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu": platform.processor() or platform.machine(),
        }
        try:
            import onnxruntime as ort

            env["onnxruntime"] = ort.__version__
        except ImportError:
            env["onnxruntime"] = None
        return env

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def slice_s(self) -> float:
        """Seconds one timing may take: the remaining budget spread thinly, at most 3 s."""
        if self.args.slice_s:
            return float(self.args.slice_s)
        return max(0.2, min(3.0, (self.deadline - time.monotonic()) / 20))

    def over_budget(self, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return False
        self.skip(what, "time budget used up")
        return True

    def skip(self, what: str, why: str) -> None:
        print(f"skip {what}: {why}", flush=True)
        self.results["skipped"].append({"what": what, "why": why})

    def reference(self, manifest: Path) -> Engine:
        if self.results["environment"]["onnxruntime"]:
            return load_engine(manifest, "onnxruntime")
        return load_engine(manifest, "torch", device="cpu")

    def torch_engine(self, manifest: Path, precision: str, graph: bool) -> Engine:
        return load_engine(manifest, "torch", device=self.device, precision=precision, cuda_graph=graph)

    def configs(self) -> list[tuple[str, bool]]:
        if not self.cuda:
            return [("fp32", False)]
        return [("fp32", False), ("fp32", True), ("fp16", False), ("fp16", True)]

    # ------------------------------------------------------------------------------------ steps
    def parity(self, manifest: Path) -> None:
        ref = self.reference(manifest)
        for precision in ["fp32", "fp16"] if self.cuda else ["fp32"]:
            eng = self.torch_engine(manifest, precision, graph=False)
            for batch in (1, 4):
                feed = ref.random_inputs(batch, seed=batch)
                mc = (ref.manifest["parameters"] or {}).get("mc_dropout")
                if mc:  # a real dropout pattern
                    keep = np.random.default_rng(batch).random(feed[mc["input"]].shape) >= mc["p"]
                    feed[mc["input"]] = keep.astype(np.float32) / np.float32(1 - mc["p"])
                rep = compare(ref.infer(feed), eng.infer(feed))
                row = {
                    "model": ref.name,
                    "reference": ref.backend,
                    "precision": precision,
                    "batch": batch,
                    **rep,
                }
                self.results["parity"].append(row)
                print(f"parity {ref.name} {precision} b{batch}: {rep}", flush=True)
            eng.close()

    def time_model(self, manifest: Path) -> None:
        ref = self.reference(manifest)
        feed = ref.random_inputs(1)
        row = {"what": ref.name, "kind": ref.manifest["task"], "batch": 1}
        row[f"{ref.backend}_cpu"] = timed(lambda: ref.infer(feed), self.slice_s(), 200, lambda: None)
        for precision, graph in self.configs():
            if self.over_budget(f"{precision}{' graph' if graph else ''}"):
                break
            eng = self.torch_engine(manifest, precision, graph)
            key = f"torch_{self.device}_{precision}{'_graph' if graph else ''}"
            row[key] = timed(lambda eng=eng: eng.infer(feed), self.slice_s(), 500, self.sync)
            eng.close()
        self.results["timing"].append(row)
        print(f"timing {row}", flush=True)

    def time_ensemble(self, manifests: list[Path]) -> None:
        image = np.random.default_rng(0).uniform(-1, 1, (1, 1, *self._hw(manifests[0]))).astype(np.float32)
        refs = [self.reference(m) for m in manifests]
        ens_ref = Ensemble(refs)
        row: dict[str, Any] = {"what": f"ensemble of {len(manifests)}", "kind": "segmentation", "batch": 1}
        row[f"{refs[0].backend}_cpu"] = timed(lambda: ens_ref.infer(image), self.slice_s(), 100, lambda: None)
        mc_row: dict[str, Any] = {
            "what": f"MC dropout K={self.args.mc_k} x {len(manifests)}",
            "kind": "segmentation",
        }
        mc_row["batch"] = self.args.mc_k
        for precision, graph in self.configs():
            if self.over_budget(f"{precision}{' graph' if graph else ''}"):
                break
            ens = Ensemble([self.torch_engine(m, precision, graph) for m in manifests])
            key = f"torch_{self.device}_{precision}{'_graph' if graph else ''}"
            row[key] = timed(lambda ens=ens: ens.infer(image), self.slice_s(), 300, self.sync)
            if all((e.manifest["parameters"] or {}).get("mc_dropout") for e in ens):
                mc_row[key] = timed(
                    lambda ens=ens: mc_dropout(ens, image, self.args.mc_k, seed=0),
                    self.slice_s(),
                    100,
                    self.sync,
                )
            ens.close()
        self.results["timing"].append(row)
        print(f"timing {row}", flush=True)
        if len(mc_row) > 3:
            self.results["timing"].append(mc_row)
            print(f"timing {mc_row}", flush=True)

    @staticmethod
    def _hw(manifest: Path) -> tuple[int, int]:
        m = load_manifest(manifest, verify_file=False)
        shape = m["inputs"][0]["shape"]
        return int(shape[-2]), int(shape[-1])

    def run(self, found: dict[str, list[Path]]) -> None:
        runnable: dict[str, list[Path]] = {}
        for task, manifests in found.items():
            for mp in manifests:
                if not torch_manifest_path(mp).is_file():
                    self.skip(str(mp), f"no torch artefact {torch_manifest_path(mp).name} beside it")
                    continue
                runnable.setdefault(task, []).append(mp)
        for mp in [*runnable.get("frame-score", []), *runnable.get("segmentation", [])]:
            if time.monotonic() > self.deadline:
                self.skip(str(mp), "time budget used up")
                continue
            try:
                self.parity(mp)
                self.time_model(mp)
            except EngineError as exc:
                self.skip(str(mp), str(exc))
        seg = runnable.get("segmentation", [])
        if seg and time.monotonic() < self.deadline:
            try:
                self.time_ensemble(seg)
            except EngineError as exc:
                self.skip("ensemble", str(exc))


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# GPU check",
        "",
        f"GPU: {env['gpu'] or 'none (CUDA not available)'} · torch {env['torch']} · "
        f"onnxruntime {env['onnxruntime']} · models: {results['models']}",
        "",
    ]
    if results["parity"]:
        lines += [
            "## Parity (torch vs reference)",
            "",
            "| model | ref | precision | batch | max abs | argmax agree |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for r in results["parity"]:
            lines.append(
                f"| {r['model']} | {r['reference']} | {r['precision']} | {r['batch']} | "
                f"{r.get('probs_max_abs', np.nan):.2e} | {r.get('argmax_agreement', np.nan):.4f} |"
            )
        lines.append("")
    if results["timing"]:
        keys: list[str] = []
        for r in results["timing"]:
            keys += [k for k, v in r.items() if isinstance(v, dict) and k not in keys]
        lines += ["## Latency, median ms (p90)", "", "| what | batch | " + " | ".join(keys) + " |"]
        lines.append("|---|---|" + "---|" * len(keys))
        for r in results["timing"]:
            cells = [f"{r[k]['median_ms']:.3f} ({r[k]['p90_ms']:.3f})" if k in r else "–" for k in keys]
            lines.append(f"| {r['what']} | {r['batch']} | " + " | ".join(cells) + " |")
        lines.append("")
    for s in results["skipped"]:
        lines.append(f"- skipped {s['what']}: {s['why']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=REPO / "models")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tiny", action="store_true", help="use tiny generated models when none are shipped")
    p.add_argument("--mc-k", type=int, default=10, help="MC-dropout samples per member (default 10)")
    p.add_argument("--budget-s", type=float, default=240.0, help="overall time budget (default 240 s)")
    p.add_argument(
        "--slice-s", type=float, default=None, help="seconds per timing (default: from the budget)"
    )
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        check = Check(args)
    except ImportError:
        print("gpu_check: torch is not installed here; nothing to check", file=sys.stderr)
        return 2
    found = discover(args.models)
    source = str(args.models)
    if not any(found.values()) and args.tiny:
        from engines.testing import make_tiny_onnx

        tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        found = {
            "frame-score": [make_tiny_onnx(tmp, "frame", size_hw=(128, 128))],
            "segmentation": [
                make_tiny_onnx(tmp, "seg", name=f"tiny-seg-{i}", seed=i, size_hw=(260, 200)) for i in range(3)
            ],
        }
        source = "tiny generated models (engines.testing)"
    check.results["models"] = source
    if not any(found.values()):
        check.skip(str(args.models), "no shipped models yet (rerun with --tiny for a smoke test)")
    elif not check.cuda:
        check.skip("CUDA", "torch sees no CUDA GPU: timings below are torch on the CPU")
    check.run(found)
    check.results["wall_s"] = round(time.monotonic() - t0, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(check.results, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(check.results))
    print(f"wrote {args.out / 'gpu_check.json'} and gpu_check.md in {check.results['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
