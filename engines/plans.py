"""TensorRT plan naming and discovery: a plan is named by model, GPU, compute capability, TensorRT
version and precision, and sits beside its ONNX file with a manifest of the same stem.

Discovery never trusts a file name: it reads each candidate plan manifest and compares its
``tensorrt`` block and ``onnx_sha256`` with this machine and the ONNX file, so a renamed or stale
plan (ONNX changed since the build) is never picked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engines.manifest import ManifestError, load_manifest

PLAN_SUFFIX = ".plan"
PRECISION_PREFERENCE = ("fp16", "fp32", "int8")  # auto: fast and accurate first; int8 only if alone


def slug(text: str) -> str:
    """File-name-safe form of a GPU name: 'NVIDIA H100 80GB HBM3' → 'NVIDIA-H100-80GB-HBM3'."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "unknown"


def plan_stem(model: str, gpu_name: str, compute_capability: str, trt_version: str, precision: str) -> str:
    """``MODEL__GPU__smXY__trtVERSION__PRECISION`` (the plan is STEM.plan, its manifest STEM.json)."""
    cc = compute_capability.replace(".", "")
    return f"{model}__{slug(gpu_name)}__sm{cc}__trt{slug(trt_version)}__{precision}"


def plan_candidates(onnx_manifest_path: str | Path, model: str) -> list[Path]:
    """Plan manifests beside the ONNX manifest whose name says they belong to ``model``."""
    folder = Path(onnx_manifest_path).parent
    return sorted(p for p in folder.glob(f"{model}__*.json") if p.with_suffix(PLAN_SUFFIX).is_file())


def find_plan(
    onnx_manifest: Mapping[str, Any],
    onnx_manifest_path: str | Path,
    gpu: Mapping[str, str],
    trt_version: str,
    precision: str | None = None,
) -> tuple[Path | None, list[str]]:
    """The best plan manifest for this GPU/TensorRT/ONNX, and why each other candidate was refused."""
    refused: list[str] = []
    fits: dict[str, Path] = {}
    for cand in plan_candidates(onnx_manifest_path, onnx_manifest["name"]):
        try:
            m = load_manifest(cand, verify_file=False)
        except ManifestError as exc:
            refused.append(str(exc))
            continue
        info = m["tensorrt"] or {}
        trt_v, cc = info.get("tensorrt_version"), info.get("compute_capability")
        gpu_name = info.get("gpu_name")
        if m["format"] != "tensorrt-plan":
            continue
        if m["onnx_sha256"] != onnx_manifest["sha256"]:
            refused.append(f"{cand.name}: built from a different ONNX file (stale)")
        elif trt_v != trt_version:
            refused.append(f"{cand.name}: TensorRT {trt_v}, this machine has {trt_version}")
        elif gpu_name != gpu["gpu_name"] or cc != gpu["compute_capability"]:
            refused.append(f"{cand.name}: built for {gpu_name} (sm {cc})")
        elif precision is not None and info.get("precision") != precision:
            refused.append(f"{cand.name}: precision {info.get('precision')}, asked for {precision}")
        else:
            fits.setdefault(info["precision"], cand)
    for prec in PRECISION_PREFERENCE:
        if prec in fits:
            return fits[prec], refused
    return None, refused
