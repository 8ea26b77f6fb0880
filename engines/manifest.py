"""Model manifests: the JSON file beside every model file that says what the model is, how to feed
it, what it returns, what it was trained on, and (for TensorRT plans) which GPU and TensorRT
version it was built for.

The format is ``engines/manifest.schema.json`` (JSON Schema: every field and its meaning; docs/engines.md
"Manifests" explains them); the tests cross-check it against the validation here. The runtime validates by
hand, here, because ``jsonschema`` is not a runtime dependency.

Every error is a :class:`ManifestError` whose message names the file and says how to fix it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

SCHEMA_VERSION = 1
TASKS = ("frame-score", "segmentation", "aggregator")
FORMATS = ("onnx", "tensorrt-plan", "torch-export", "none")
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")
SCALES = ("unit", "symmetric")
PRECISIONS = ("fp32", "fp16", "int8")
BATCH_DIM = "batch"
DOMAINS = ("synthetic", "real", "mixed")  # training.domain: what the model was trained on

REQUIRED_KEYS = (
    "schema_version",
    "name",
    "version",
    "task",
    "format",
    "file",
    "sha256",
    "onnx_sha256",
    "inputs",
    "outputs",
    "preprocessing",
    "class_names",
    "training",
    "metrics",
    "parameters",
    "tensorrt",
)
TENSORRT_KEYS = ("gpu_name", "compute_capability", "tensorrt_version", "precision", "batch_profile")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

# Filled in by build_manifest when the caller leaves them out.
_DEFAULTS: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "onnx_sha256": None,
    "preprocessing": None,
    "metrics": {},
    "parameters": {},
    "tensorrt": None,
}


class ManifestError(ValueError):
    """A manifest (or the model file it names) cannot be trusted; the message says why and the fix."""


def sha256_file(path: str | Path) -> str:
    """Lower-case hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path_for(model_file: str | Path) -> Path:
    """The manifest that belongs beside ``model_file``: same folder, same stem, ``.json``."""
    return Path(model_file).with_suffix(".json")


def model_file_path(manifest: Mapping[str, Any], manifest_path: str | Path) -> Path | None:
    """Absolute path of the model file a manifest names (relative to the manifest), or None."""
    if manifest.get("file") is None:
        return None
    return (Path(manifest_path).parent / manifest["file"]).resolve()


def require_model_file(manifest: Mapping[str, Any], manifest_path: str | Path) -> Path:
    """Like :func:`model_file_path`, for callers that load the file: a manifest without one is refused."""
    path = model_file_path(manifest, manifest_path)
    if path is None:
        raise ManifestError(
            f"{manifest_path}: names no model file ('file' is null), so there is nothing to load; "
            "re-export the model with its manifest"
        )
    return path


# --------------------------------------------------------------------------------------------- build


def build_manifest(*, model_file: str | Path | None = None, **fields: Any) -> dict[str, Any]:
    """Assemble and validate a manifest; ``model_file`` (if given) fills ``file`` and ``sha256``.

    ``file`` is stored as the model file's name, because the manifest is written beside it. For an
    ONNX model ``onnx_sha256`` defaults to its own hash. Missing optional blocks get their empty
    defaults (``metrics``/``parameters`` ``{}``, ``preprocessing``/``tensorrt``/``onnx_sha256`` null).
    """
    m: dict[str, Any] = {**copy.deepcopy(_DEFAULTS), **copy.deepcopy(fields)}
    source = str(model_file) if model_file is not None else f"manifest for {fields.get('name', '?')!r}"
    if model_file is not None:
        model_file = Path(model_file)
        if not model_file.is_file():
            raise ManifestError(
                f"{model_file}: model file not found; export the model first, then build its manifest"
            )
        if fields.get("file") not in (None, model_file.name):
            raise ManifestError(
                f"{model_file}: file={fields['file']!r} disagrees with model_file; pass only model_file"
            )
        m["file"] = model_file.name
        m["sha256"] = sha256_file(model_file)
        if m.get("format") == "onnx" and m.get("onnx_sha256") is None:
            m["onnx_sha256"] = m["sha256"]
    else:
        m.setdefault("file", None)
        m.setdefault("sha256", None)
    validate_manifest(m, source)
    return {k: m[k] for k in (*REQUIRED_KEYS, *sorted(set(m) - set(REQUIRED_KEYS)))}


def write_manifest(manifest: Mapping[str, Any], path: str | Path) -> Path:
    """Validate ``manifest`` and write it as indented JSON to ``path``; returns the path.

    Refuses to write a manifest whose model file is not beside it (a manifest pointing nowhere).
    """
    path = Path(path)
    validate_manifest(manifest, str(path))
    target = model_file_path(manifest, path)
    if target is not None and not target.is_file():
        raise ManifestError(
            f"{path}: names model file {manifest['file']!r}, which is not beside it ({target}); "
            "write the manifest into the folder that holds the model file"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_manifest(path: str | Path, verify_file: bool = True) -> dict[str, Any]:
    """Read and validate a manifest; with ``verify_file`` also check its model file and sha256."""
    path = Path(path)
    if path.suffix != ".json":  # a model file was named: use the manifest beside it
        if not manifest_path_for(path).is_file():
            raise ManifestError(
                f"{path}: manifest not found ({manifest_path_for(path).name} is missing beside it); "
                "export the model with its manifest"
            )
        path = manifest_path_for(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (check the path); export the model with a manifest")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(
            f"{path}: not valid JSON ({exc}); re-export the model to rewrite its manifest"
        ) from exc
    validate_manifest(m, str(path))
    if verify_file:
        verify_model_file(m, path)
    return m


def verify_model_file(manifest: Mapping[str, Any], manifest_path: str | Path) -> Path | None:
    """Check the model file exists and matches the manifest's sha256; returns its path."""
    target = model_file_path(manifest, manifest_path)
    if target is None:
        return None
    if not target.is_file():
        raise ManifestError(
            f"{manifest_path}: model file {target} is missing; "
            "copy it beside the manifest or re-export the model"
        )
    actual = sha256_file(target)
    if actual != manifest["sha256"]:
        fix = (
            "rebuild the plan with tools/build_engine.py"
            if manifest["format"] == "tensorrt-plan"
            else "re-export the model (or rewrite its manifest with engines.manifest.build_manifest)"
        )
        raise ManifestError(
            f"{target}: sha256 {actual[:12]}… does not match {manifest['sha256'][:12]}… in {manifest_path}; "
            f"the file changed or is corrupt: {fix}"
        )
    return target


def training_domain(manifest: Mapping[str, Any]) -> str:
    """What the model was trained on: ``training.domain`` ("synthetic" | "real" | "mixed"), or for a
    manifest without it "synthetic" when ``training.synthetic_only`` is true, else "unknown"."""
    tr = manifest.get("training")
    if not isinstance(tr, Mapping):
        return "unknown"
    domain = tr.get("domain")
    if domain in DOMAINS:
        return str(domain)
    return "synthetic" if tr.get("synthetic_only") is True else "unknown"


# ------------------------------------------------------------------------------------------ validate


def _posint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def validate_manifest(m: Any, source: str) -> None:
    """Raise :class:`ManifestError` naming ``source`` on the first thing wrong with ``m``."""

    def fail(what: str) -> NoReturn:
        raise ManifestError(
            f"{source}: {what}; fix the manifest (see docs/engines.md, engines/manifest.schema.json)"
        )

    if not isinstance(m, Mapping):
        fail(f"manifest must be a JSON object, got {type(m).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        fail(f"missing key(s) {missing}")
    unknown = sorted(set(m) - set(REQUIRED_KEYS))
    if unknown:
        fail(f"unknown key(s) {unknown} (allowed: {list(REQUIRED_KEYS)})")
    if m["schema_version"] != SCHEMA_VERSION or isinstance(m["schema_version"], bool):
        fail(f"schema_version {m['schema_version']!r} is not supported (this code reads {SCHEMA_VERSION})")
    for key in ("name", "version"):
        if not isinstance(m[key], str) or not m[key]:
            fail(f"{key!r} must be a non-empty string")
    if m["task"] not in TASKS:
        fail(f"task {m['task']!r} must be one of {list(TASKS)}")
    if m["format"] not in FORMATS:
        fail(f"format {m['format']!r} must be one of {list(FORMATS)}")

    # file / hashes
    if m["format"] == "none":
        if m["file"] is not None or m["sha256"] is not None:
            fail("format 'none' must have file and sha256 null")
    else:
        f = m["file"]
        if not isinstance(f, str) or not f or Path(f).is_absolute() or "/" in f or "\\" in f:
            fail(f"file {m['file']!r} must be the model file's name, relative to the manifest (same folder)")
        if not isinstance(m["sha256"], str) or not _HEX64.match(m["sha256"]):
            fail("sha256 must be the 64-digit lower-case hex sha256 of the model file")
    osha = m["onnx_sha256"]
    if osha is not None and (not isinstance(osha, str) or not _HEX64.match(osha)):
        fail("onnx_sha256 must be null or a 64-digit lower-case hex sha256")

    # tensors
    for key in ("inputs", "outputs"):
        if not isinstance(m[key], list):
            fail(f"{key!r} must be a list of tensor descriptions")
        if m["format"] != "none" and not m[key]:
            fail(f"{key!r} must describe at least one tensor for a model file")
        names = set()
        for i, t in enumerate(m[key]):
            where = f"{key}[{i}]"
            if not isinstance(t, Mapping):
                fail(f"{where} must be an object")
            need = ("name", "shape", "dtype", "layout" if key == "inputs" else "meaning")
            lacking = [k for k in need if k not in t]
            if lacking:
                fail(f"{where} is missing {lacking}")
            if not isinstance(t["name"], str) or not t["name"]:
                fail(f"{where}.name must be a non-empty string")
            if t["name"] in names:
                fail(f"{where}.name {t['name']!r} is duplicated")
            names.add(t["name"])
            shape = t["shape"]
            if not isinstance(shape, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d > 0) or d == BATCH_DIM for d in shape
            ):
                fail(f"{where}.shape {shape!r} must be a list of positive ints or {BATCH_DIM!r}")
            if t["dtype"] not in DTYPES:
                fail(f"{where}.dtype {t['dtype']!r} must be one of {list(DTYPES)}")
            for k in ("layout", "meaning"):
                if k in t and not isinstance(t[k], str):
                    fail(f"{where}.{k} must be a string")

    # preprocessing
    pre = m["preprocessing"]
    if pre is not None:
        if not isinstance(pre, Mapping):
            fail("preprocessing must be null or an object")
        size = pre.get("size_hw")
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            fail(f"preprocessing.size_hw {size!r} must be [H, W] positive ints")
        if pre.get("scale") not in SCALES:
            fail(f"preprocessing.scale {pre.get('scale')!r} must be one of {list(SCALES)}")
        if pre.get("padding") != "letterbox-zero":
            fail(f"preprocessing.padding {pre.get('padding')!r} must be 'letterbox-zero'")
        if pre.get("channels") != 1:
            fail(f"preprocessing.channels {pre.get('channels')!r} must be 1 (grayscale)")

    if not isinstance(m["class_names"], list) or not all(isinstance(c, str) for c in m["class_names"]):
        fail("class_names must be a list of strings")

    tr = m["training"]
    if not isinstance(tr, Mapping):
        fail("training must be an object")
    for k, typ in (("data", str), ("synthetic_only", bool), ("command", str)):
        if not isinstance(tr.get(k), typ):
            fail(f"training.{k} must be a {typ.__name__}")
    if tr.get("clinical_use") is not False:
        fail("training.clinical_use must be false (these are research models)")
    for k in ("dataset", "licence"):
        if k in tr and not isinstance(tr[k], str):
            fail(f"training.{k} must be a string when present")
    if "domain" in tr:
        domain = tr["domain"]
        if domain not in DOMAINS:
            fail(f"training.domain {domain!r} must be one of {list(DOMAINS)}")
        if (domain == "synthetic") != tr["synthetic_only"]:
            fail(
                f"training.domain {domain!r} contradicts training.synthetic_only "
                f"{tr['synthetic_only']!r} ('synthetic' needs true, 'real'/'mixed' need false)"
            )
    for key in ("metrics", "parameters"):
        if not isinstance(m[key], Mapping):
            fail(f"{key!r} must be an object")
    mc = m["parameters"].get("mc_dropout")
    if mc is not None:
        if not isinstance(mc, Mapping) or not isinstance(mc.get("input"), str):
            fail("parameters.mc_dropout must be {'input': str, 'p': float, 'shape': [C, h, w]}")
        p = mc.get("p")
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p < 1:
            fail(f"parameters.mc_dropout.p {p!r} must be a number in [0, 1)")
        shp = mc.get("shape")
        if not isinstance(shp, list) or not all(_posint(d) for d in shp):
            fail(f"parameters.mc_dropout.shape {shp!r} must be a list of positive ints (per-sample shape)")
        if m["inputs"] and mc["input"] not in {t["name"] for t in m["inputs"]}:
            fail(f"parameters.mc_dropout.input {mc['input']!r} is not one of the inputs")

    # tensorrt
    trt = m["tensorrt"]
    if m["format"] == "tensorrt-plan" and trt is None:
        fail("a tensorrt-plan needs the 'tensorrt' block (gpu_name, compute_capability, ...)")
    if trt is not None:
        if not isinstance(trt, Mapping):
            fail("tensorrt must be null or an object")
        lacking = [k for k in TENSORRT_KEYS if k not in trt]
        if lacking:
            fail(f"tensorrt is missing {lacking}")
        for k in ("gpu_name", "compute_capability", "tensorrt_version"):
            if not isinstance(trt[k], str) or not trt[k]:
                fail(f"tensorrt.{k} must be a non-empty string (compute_capability like '8.9')")
        if not re.match(r"^[0-9]+\.[0-9]+$", trt["compute_capability"]):
            fail(f"tensorrt.compute_capability {trt['compute_capability']!r} must look like '8.9'")
        if trt["precision"] not in PRECISIONS:
            fail(f"tensorrt.precision {trt['precision']!r} must be one of {list(PRECISIONS)}")
        bp = trt["batch_profile"]
        if not (
            isinstance(bp, list)
            and len(bp) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in bp)
            and bp[0] <= bp[1] <= bp[2]
        ):
            fail(f"tensorrt.batch_profile {bp!r} must be [min, opt, max] positive ints, min <= opt <= max")
