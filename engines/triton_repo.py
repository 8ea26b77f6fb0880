"""A standard Triton model repository written from the shipped manifests (``lus-serve repo``).

One folder per model, the layout a stock ``tritonserver`` container loads::

    OUT/<name>/config.pbtxt          platform, max_batch_size, inputs/outputs (dims without the batch
                                     dimension), dynamic_batching, instance_group, lus_* parameters
    OUT/<name>/1/model.onnx          the ONNX file (platform onnxruntime_onnx), or
    OUT/<name>/1/model.plan          a TensorRT plan built by tools/build_engine.py (tensorrt_plan)
    OUT/<name>/lus_manifest.json     the manifest the folder was made from (Triton ignores it)

The model name is the manifest's ``name``, so a client engine opened from the same manifest
(``load_engine(manifest, backend="triton", triton_url=...)``) finds it. Every ``config.pbtxt`` is
parsed back with Triton's own model-config protobuf (``tritonclient.grpc.model_config_pb2``) and
compared with the manifest before the function returns; a config that does not parse or says
something else than the manifest is an error, never a file left for the server to refuse.

The segmentation members take two inputs, ``image`` and ``dropout_mask`` (ones for a deterministic
pass, an MC-dropout mask otherwise; see ``engines.ensemble.mc_dropout``): both are required inputs
of the served model, exactly as in the ONNX file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import BackendUnavailableError, EngineError
from engines.manifest import BATCH_DIM, ManifestError, load_manifest
from engines.model_folders import lane_dirs, manifest_kind
from engines.plans import PRECISION_PREFERENCE, plan_candidates

#: manifest dtype → model-config data type
CONFIG_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
#: manifest format → (Triton platform, file name in the version folder)
PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "tensorrt-plan": ("tensorrt_plan", "model.plan")}
SERVED_TASKS = ("frame-score", "segmentation")
INSTANCE_KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
MANIFEST_COPY = "lus_manifest.json"


class RepositoryError(EngineError):
    """A model repository cannot be written as asked; the message names the file and the fix."""


@dataclass(frozen=True)
class BatchingPolicy:
    """Triton's dynamic batcher for one model: the largest batch, preferred sizes and queue delay."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (2, 4, 8)
    max_queue_delay_us: int = 2000

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size {self.max_batch_size} must be >= 1")
        if self.max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us {self.max_queue_delay_us} must be >= 0")
        if any(b < 1 for b in self.preferred_batch_sizes):
            raise ValueError(f"preferred batch sizes {self.preferred_batch_sizes} must be >= 1")

    def capped(self, limit: int | None) -> BatchingPolicy:
        """This policy with max_batch_size (and the preferred sizes) no larger than ``limit``."""
        top = self.max_batch_size if limit is None else min(self.max_batch_size, limit)
        return BatchingPolicy(top, self.preferred(top), self.max_queue_delay_us)

    def preferred(self, top: int | None = None) -> tuple[int, ...]:
        """The preferred sizes that fit ``top`` (default: max_batch_size), sorted, without duplicates."""
        top = self.max_batch_size if top is None else top
        return tuple(sorted({b for b in self.preferred_batch_sizes if b <= top}))


@dataclass
class ServedModel:
    """One model as a repository (or a server) serves it."""

    name: str
    manifest: dict[str, Any]
    manifest_path: Path  # the manifest that is served: the ONNX one, or a plan's
    onnx_manifest_path: Path  # the ONNX manifest a client opens (same name, same tensors)
    notes: list[str] = field(default_factory=list)

    @property
    def platform(self) -> str:
        return PLATFORMS[self.manifest["format"]][0]

    @property
    def model_file(self) -> Path:
        return (self.manifest_path.parent / self.manifest["file"]).resolve()


@dataclass(frozen=True)
class RepositoryModel:
    """What :func:`write_repository` wrote for one model."""

    name: str
    platform: str
    config_path: Path
    model_path: Path
    max_batch_size: int


# ----------------------------------------------------------------------------------------- finding
def _lane_dirs(root: Path) -> list[Path]:
    """``frame/`` and ``seg/`` of a model folder, or where its ``models.json`` points them."""
    try:
        return [d.resolve() for d in lane_dirs(root)]
    except ValueError as err:
        raise RepositoryError(str(err)) from None


def find_manifests(paths: Iterable[str | Path]) -> list[Path]:
    """The ONNX manifests of the frame-score and segmentation models under ``paths``.

    A manifest file is taken as it is. A model folder contributes ``frame/*.json`` and ``seg/*.json``
    (or the folders its ``models.json`` names), like the engine's own model lookup; a folder without
    those sub-folders contributes its own ``*.json``. Aggregator parameters, torch programs and
    TensorRT plan manifests are not models of their own (plans are found from their ONNX manifest).
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path.resolve())
            continue
        if not path.is_dir():
            raise RepositoryError(
                f"{path}: no such model folder or manifest; pass a model folder (e.g. models/)"
            )
        lanes = [d for d in _lane_dirs(path) if d.is_dir()]
        for folder in lanes or [path]:
            for cand in sorted(folder.glob("*.json")):
                task, fmt = manifest_kind(cand)
                if task in SERVED_TASKS and fmt == "onnx":
                    found.append(cand.resolve())
    unique = list(dict.fromkeys(found))
    if not unique:
        raise RepositoryError(
            f"no frame-score or segmentation ONNX manifest under {[str(p) for p in paths]}; "
            "pass a model folder with frame/ and seg/ (e.g. models/) or manifest files"
        )
    return unique


def _pick_plan(
    onnx_manifest: Mapping[str, Any], onnx_path: Path, plan_gpu: str | None, precision: str | None
) -> tuple[Path | None, list[str]]:
    """The plan manifest beside an ONNX manifest to serve instead of it, and why others were refused."""
    refused: list[str] = []
    fits: list[tuple[Path, dict[str, Any]]] = []
    for cand in plan_candidates(onnx_path, str(onnx_manifest["name"])):
        try:
            m = load_manifest(cand)
        except ManifestError as exc:
            refused.append(str(exc))
            continue
        info = m["tensorrt"] or {}
        if m["format"] != "tensorrt-plan":
            continue
        if m["onnx_sha256"] != onnx_manifest["sha256"]:
            refused.append(f"{cand.name}: built from a different ONNX file (stale); rebuild it")
        elif plan_gpu is not None and info.get("gpu_name") != plan_gpu:
            refused.append(f"{cand.name}: built for {info.get('gpu_name')}, not {plan_gpu}")
        elif precision is not None and info.get("precision") != precision:
            refused.append(f"{cand.name}: precision {info.get('precision')}, asked for {precision}")
        else:
            fits.append((cand, m))
    if not fits:
        return None, refused
    gpus = sorted({str(m["tensorrt"]["gpu_name"]) for _, m in fits})
    if len(gpus) > 1:
        raise RepositoryError(
            f"{onnx_path}: plans for several GPUs fit ({', '.join(gpus)}); a repository serves one plan per "
            "model: pass --plan-gpu with the server's GPU name"
        )
    for prec in PRECISION_PREFERENCE:
        for cand, m in fits:
            if m["tensorrt"]["precision"] == prec:
                return cand, refused
    return fits[0][0], refused


def served_models(
    manifests: Sequence[str | Path],
    *,
    plans: bool = False,
    plan_gpu: str | None = None,
    precision: str | None = None,
    require_plans: bool = False,
) -> list[ServedModel]:
    """Load and check each manifest; with ``plans`` serve the TensorRT plan beside each ONNX file.

    ``require_plans``: a model without a fitting plan is an error (else it is served from ONNX, noted).
    Two manifests with one ``name`` are refused (Triton addresses models by name).
    """
    out: list[ServedModel] = []
    by_name: dict[str, Path] = {}
    for raw in manifests:
        path = Path(raw)
        m = load_manifest(path)
        if path.suffix != ".json":
            path = path.with_suffix(".json")
        if m["format"] not in PLATFORMS:
            raise RepositoryError(
                f"{path}: format {m['format']!r} cannot be served by Triton here; pass the model's ONNX "
                "manifest (or a TensorRT plan manifest from tools/build_engine.py)"
            )
        if m["task"] not in SERVED_TASKS:
            raise RepositoryError(f"{path}: task {m['task']!r} is not a served model ({list(SERVED_TASKS)})")
        name = str(m["name"])
        if name in by_name:
            raise RepositoryError(
                f"{path}: model name {name!r} is also the name of {by_name[name]}; Triton serves models by "
                "name, so serve only one of them"
            )
        by_name[name] = path
        model = ServedModel(name, m, path, path)
        if m["format"] == "onnx" and plans:
            plan, refused = _pick_plan(m, path, plan_gpu, precision)
            if plan is not None:
                model = ServedModel(name, load_manifest(plan), plan, path)
                model.notes.append(f"{name}: serving plan {plan.name}")
            elif require_plans:
                why = "; ".join(refused) if refused else "no plan beside it"
                raise RepositoryError(
                    f"{path}: no TensorRT plan to serve ({why}); build one on the server's GPU with "
                    f"tools/build_engine.py {path.parent / m['file']}"
                )
            else:
                model.notes.append(f"{name}: no fitting TensorRT plan, serving the ONNX file")
        out.append(model)
    return out


# ------------------------------------------------------------------------------------------- config
def _dims(shape: Sequence[int | str], where: str) -> list[int]:
    """Config dims of a manifest shape: the leading batch dimension dropped, every other fixed."""
    if not shape or shape[0] != BATCH_DIM:
        raise RepositoryError(
            f"{where}: shape {list(shape)} has no leading 'batch' dimension; Triton's batcher needs one "
            "(re-export the model with a dynamic batch axis)"
        )
    rest = list(shape[1:])
    if any(d == BATCH_DIM for d in rest):
        raise RepositoryError(f"{where}: shape {list(shape)} has 'batch' after the first axis")
    return [int(d) for d in rest]


def _config_dtype(dtype: str, where: str) -> str:
    if dtype not in CONFIG_DTYPES:
        raise RepositoryError(f"{where}: dtype {dtype!r} has no Triton data type ({sorted(CONFIG_DTYPES)})")
    return CONFIG_DTYPES[dtype]


def _tensor_block(kind: str, tensors: Sequence[Mapping[str, Any]], where: str) -> list[str]:
    lines = [f"{kind} ["]
    for i, t in enumerate(tensors):
        dims = ", ".join(str(d) for d in _dims(t["shape"], f"{where} {kind} {t['name']!r}"))
        lines += [
            "  {",
            f"    name: {json.dumps(str(t['name']))}",
            f"    data_type: {_config_dtype(str(t['dtype']), where)}",
            f"    dims: [ {dims} ]",
            "  }" + ("," if i < len(tensors) - 1 else ""),
        ]
    return [*lines, "]"]


def model_batch_limit(manifest: Mapping[str, Any]) -> int | None:
    """The largest batch the model file itself takes: a TensorRT plan's profile max, else None."""
    trt = manifest.get("tensorrt") or {}
    profile = trt.get("batch_profile")
    return int(profile[2]) if manifest.get("format") == "tensorrt-plan" and profile else None


def config_text(
    model: ServedModel, policy: BatchingPolicy, *, instances: int = 1, kind: str = "gpu"
) -> str:
    """The ``config.pbtxt`` text for one model (not yet validated: see :func:`validate_config`)."""
    m, where = model.manifest, str(model.manifest_path)
    if instances < 1:
        raise RepositoryError(f"instance count {instances} must be >= 1")
    if kind not in INSTANCE_KINDS:
        raise RepositoryError(f"instance kind {kind!r}: use one of {sorted(INSTANCE_KINDS)}")
    if m["format"] == "tensorrt-plan":
        if kind != "gpu":
            raise RepositoryError(f"{where}: a TensorRT plan runs only on a GPU; use --kind gpu")
        profile = m["tensorrt"]["batch_profile"]
        if int(profile[0]) > 1:
            raise RepositoryError(
                f"{where}: the plan's batch profile starts at {profile[0]}, so Triton could not run a single "
                "frame; rebuild it with tools/build_engine.py --batch 1:OPT:MAX"
            )
    policy = policy.capped(model_batch_limit(m))
    onnx_sha = m["onnx_sha256"] or m["sha256"]
    lines = [
        f"# written by lus-serve repo from {model.manifest_path.name} ({m['name']} {m['version']}); "
        "do not edit, regenerate",
        f"name: {json.dumps(model.name)}",
        f"platform: {json.dumps(model.platform)}",
        f"max_batch_size: {policy.max_batch_size}",
        "version_policy: { latest: { num_versions: 1 } }",
        *_tensor_block("input", m["inputs"], where),
        *_tensor_block("output", m["outputs"], where),
        "dynamic_batching {",
    ]
    if policy.preferred():
        lines.append(f"  preferred_batch_size: [ {', '.join(str(b) for b in policy.preferred())} ]")
    lines += [
        f"  max_queue_delay_microseconds: {policy.max_queue_delay_us}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {instances}",
        f"    kind: {INSTANCE_KINDS[kind]}",
        "  }",
        "]",
    ]
    for key, value in (
        ("lus_version", str(m["version"])),
        ("lus_task", str(m["task"])),
        ("lus_manifest_sha256", str(m["sha256"])),
        ("lus_onnx_sha256", str(onnx_sha)),
    ):
        value_text = f"{{ string_value: {json.dumps(value)} }}"
        lines.append(f"parameters {{ key: {json.dumps(key)} value: {value_text} }}")
    return "\n".join(lines) + "\n"


def _model_config_pb2() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise BackendUnavailableError(
            "tritonclient is not installed, so generated configs cannot be checked against Triton's "
            "model-config schema; pip install 'tritonclient[grpc]' (the project's 'serve' extra)"
        ) from exc
    return model_config_pb2


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """Parse config text with Triton's ``ModelConfig`` protobuf; a RepositoryError names ``source``."""
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    config = pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise RepositoryError(f"{source}: not a valid Triton model config ({exc}); regenerate it") from None
    return config


def validate_config(text: str, model: ServedModel, source: str = "config.pbtxt") -> Any:
    """Parse ``text`` as a Triton model config and check it says what the manifest says."""
    config = parse_config(text, source)
    pb2 = _model_config_pb2()
    m = model.manifest
    problems: list[str] = []
    if config.name != model.name:
        problems.append(f"name {config.name!r} is not {model.name!r}")
    if config.platform != model.platform:
        problems.append(f"platform {config.platform!r} is not {model.platform!r}")
    if config.max_batch_size < 1:
        problems.append("max_batch_size must be >= 1 (the batcher needs a batch dimension)")
    blocks = (("input", config.input, m["inputs"]), ("output", config.output, m["outputs"]))
    for kind, tensors, specs in blocks:
        got = {t.name: (pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors}
        want = {
            str(s["name"]): (CONFIG_DTYPES[str(s["dtype"])], _dims(s["shape"], source)) for s in specs
        }
        if got != want:
            problems.append(f"{kind}s {got} are not the manifest's {want}")
    batching = config.dynamic_batching
    if not config.HasField("dynamic_batching"):
        problems.append("no dynamic_batching block")
    elif any(b > config.max_batch_size for b in batching.preferred_batch_size):
        problems.append(
            f"preferred_batch_size {list(batching.preferred_batch_size)} exceeds max_batch_size "
            f"{config.max_batch_size}"
        )
    limit = model_batch_limit(m)
    if limit is not None and config.max_batch_size > limit:
        problems.append(f"max_batch_size {config.max_batch_size} exceeds the plan's profile max {limit}")
    if not config.instance_group or any(g.count < 1 for g in config.instance_group):
        problems.append("instance_group needs at least one instance")
    if problems:
        raise RepositoryError(
            f"{source}: " + "; ".join(problems) + f" (model {model.manifest_path}); regenerate it"
        )
    return config


# -------------------------------------------------------------------------------------------- write
def write_repository(
    models: Sequence[ServedModel],
    out: str | Path,
    policy: BatchingPolicy | None = None,
    *,
    instances: int = 1,
    kind: str = "gpu",
    force: bool = False,
) -> list[RepositoryModel]:
    """Write one Triton model folder per model into ``out``; returns what was written.

    Each config is validated (:func:`validate_config`) before anything is written. ``force``
    replaces existing folders of the same model names (other folders in ``out`` are left alone).
    """
    policy = policy or BatchingPolicy()
    out = Path(out)
    texts = []
    for model in models:
        text = config_text(model, policy, instances=instances, kind=kind)
        validate_config(text, model, f"{out / model.name / 'config.pbtxt'}")
        texts.append(text)
    for model in models:
        folder = out / model.name
        if folder.exists() and not force:
            raise RepositoryError(
                f"{folder} already exists; pass --force to replace it (or write to an empty folder)"
            )
    written = []
    for model, text in zip(models, texts, strict=True):
        folder = out / model.name
        if folder.exists():
            shutil.rmtree(folder)
        version = folder / "1"
        version.mkdir(parents=True)
        target = version / PLATFORMS[model.manifest["format"]][1]
        shutil.copyfile(model.model_file, target)
        (folder / MANIFEST_COPY).write_text(json.dumps(model.manifest, indent=2) + "\n", encoding="utf-8")
        config_path = folder / "config.pbtxt"
        config_path.write_text(text, encoding="utf-8")
        # what is on disk is what was validated
        cfg = validate_config(config_path.read_text(encoding="utf-8"), model, str(config_path))
        written.append(RepositoryModel(model.name, model.platform, config_path, target, cfg.max_batch_size))
    return written
