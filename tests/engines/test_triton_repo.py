"""The Triton pieces that need no server: the model repository writer (configs parsed with Triton's own
model-config protobuf), the client engine's checks and error classification, and lus-serve's refusals."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip(
    "tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[serve]')"
)

from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from engines import BackendUnavailableError, load_engine
from engines.manifest import build_manifest, load_manifest, write_manifest
from engines.triton_backend import (
    ServedModelMismatchError,
    check_served_model,
    is_unavailable,
    manifest_io,
    normalise_url,
)
from engines.triton_repo import (
    BatchingPolicy,
    RepositoryError,
    find_manifests,
    parse_config,
    served_models,
    validate_config,
    write_repository,
)
from engines.triton_server import ServeError, exposure, main, with_libpython_first

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
SHIPPED = {"regstn-real-cpu-lite", "seg-unet", "seg-unetpp", "seg-deeplabv3p"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ repository
def test_repository_from_shipped_models(tmp_path: Path) -> None:
    models = served_models(find_manifests([MODELS]))
    assert {m.name for m in models} == SHIPPED  # frame/ + seg/, not demo/ nor the aggregator
    written = write_repository(models, tmp_path / "repo", BatchingPolicy(8, (2, 4, 8), 2000), kind="cpu")
    assert {w.name for w in written} == SHIPPED
    for w in written:
        text = w.config_path.read_text()
        config = parse_config(text, str(w.config_path))  # Triton's own ModelConfig protobuf
        assert config.name == w.name == w.config_path.parent.name
        assert config.platform == "onnxruntime_onnx" and w.model_path.name == "model.onnx"
        assert config.max_batch_size == 8
        assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
        assert config.dynamic_batching.max_queue_delay_microseconds == 2000
        kind_cpu = model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert [(g.count, g.kind) for g in config.instance_group] == [(1, kind_cpu)]
        manifest = json.loads((w.config_path.parent / "lus_manifest.json").read_text())
        assert config.parameters["lus_onnx_sha256"].string_value == manifest["sha256"]
        assert w.model_path.read_bytes() == (MODELS / ("frame" if w.name.startswith("regstn") else "seg")
                                             / manifest["file"]).read_bytes()
        dims = {t.name: list(t.dims) for t in config.input}
        for spec in manifest["inputs"]:  # dims are the manifest's without the batch dimension
            assert dims[spec["name"]] == spec["shape"][1:]
        assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in [*config.input, *config.output])
    unet = parse_config((tmp_path / "repo" / "seg-unet" / "config.pbtxt").read_text())
    assert [t.name for t in unet.input] == ["image", "dropout_mask"]
    assert list(unet.input[1].dims) == [128, 13, 10]
    assert list(unet.output[0].dims) == [5, 260, 200]
    with pytest.raises(RepositoryError, match="--force"):
        write_repository(models, tmp_path / "repo")
    assert len(write_repository(models[:1], tmp_path / "repo", force=True)) == 1


def _fake_plan(folder: Path, onnx_manifest: Path, gpu: str, precision: str, profile: list[int]) -> Path:
    m = load_manifest(onnx_manifest)
    stem = f"{m['name']}__{gpu.replace(' ', '-')}__sm90__trt10.8__{precision}"
    plan = folder / f"{stem}.plan"
    plan.write_bytes(f"not a real plan {gpu} {precision}".encode())
    fields = {k: v for k, v in m.items() if k not in ("file", "sha256", "format", "onnx_sha256", "tensorrt")}
    pm = build_manifest(
        model_file=plan, format="tensorrt-plan", onnx_sha256=m["sha256"],
        tensorrt={"gpu_name": gpu, "compute_capability": "9.0", "tensorrt_version": "10.8",
                  "precision": precision, "batch_profile": profile},
        **fields,
    )
    return write_manifest(pm, folder / f"{stem}.json")


def test_repository_serves_tensorrt_plans(tmp_path: Path) -> None:
    folder = tmp_path / "frame"
    folder.mkdir()
    for name in ("regstn.onnx", "regstn.json"):
        shutil.copy(MODELS / "frame" / name, folder / name)
    onnx = folder / "regstn.json"
    _fake_plan(folder, onnx, "NVIDIA H200", "fp16", [1, 4, 16])
    _fake_plan(folder, onnx, "NVIDIA H200", "fp32", [1, 4, 16])
    models = served_models([onnx], plans=True)
    assert models[0].manifest["format"] == "tensorrt-plan" and "fp16" in models[0].manifest_path.name
    written = write_repository(models, tmp_path / "repo", BatchingPolicy(32, (2, 4, 8, 32), 1000))
    config = parse_config(written[0].config_path.read_text())
    assert config.platform == "tensorrt_plan" and written[0].model_path.name == "model.plan"
    assert config.max_batch_size == 16  # capped at the plan's profile max
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    with pytest.raises(RepositoryError, match="only on a GPU"):
        write_repository(models, tmp_path / "repo2", kind="cpu")
    # plans for two GPUs: the repository must be told which
    _fake_plan(folder, onnx, "NVIDIA L4", "fp16", [1, 4, 8])
    with pytest.raises(RepositoryError, match="--plan-gpu"):
        served_models([onnx], plans=True)
    assert "L4" in served_models([onnx], plans=True, plan_gpu="NVIDIA L4")[0].manifest_path.name
    # a model without a fitting plan: served from ONNX (noted), or refused with require_plans
    fallback = served_models([onnx], plans=True, plan_gpu="NVIDIA A100")
    assert fallback[0].manifest["format"] == "onnx" and fallback[0].notes
    with pytest.raises(RepositoryError, match="build_engine"):
        served_models([onnx], plans=True, plan_gpu="NVIDIA A100", require_plans=True)


def test_validate_config_refuses_what_the_manifest_does_not_say(tmp_path: Path) -> None:
    model = served_models([MODELS / "frame" / "regstn.json"])[0]
    good = write_repository([model], tmp_path / "repo")[0].config_path.read_text()
    validate_config(good, model)
    with pytest.raises(RepositoryError, match="not a valid Triton model config"):
        parse_config(good.replace("max_batch_size: 8", "max_batch_size: eight"), "x/config.pbtxt")
    with pytest.raises(RepositoryError, match="inputs"):
        validate_config(good.replace("dims: [ 1, 128, 128 ]", "dims: [ 1, 64, 64 ]"), model)
    with pytest.raises(RepositoryError, match="preferred_batch_size"):
        validate_config(good.replace("max_batch_size: 8", "max_batch_size: 2"), model)


def test_repo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    args = ["repo", "--models", str(MODELS), "--out", str(out), "--max-batch", "4", "--kind", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "docker run" in printed and "tritonserver --model-repository=/models" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(SHIPPED)
    for cfg in out.glob("*/config.pbtxt"):
        assert parse_config(cfg.read_text()).max_batch_size == 4
    assert main(["repo", "--models", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no such model folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- client checks
def _metadata_of(manifest: dict) -> dict:
    ins, outs = manifest_io(manifest)
    return {
        "inputs": [{"name": n, "datatype": dt, "shape": [str(d) for d in s]} for n, (dt, s) in ins.items()],
        "outputs": [{"name": n, "datatype": dt, "shape": [str(d) for d in s]} for n, (dt, s) in outs.items()],
    }


def test_served_model_check_names_both_sides() -> None:
    m = load_manifest(MODELS / "seg" / "unet.json")
    meta = _metadata_of(m)
    same = {"parameters": {"lus_onnx_sha256": {"string_value": m["sha256"]}}}
    check_served_model(m, "unet.json", "h:1", meta, same)
    meta["inputs"][1]["shape"] = ["-1", "64", "13", "10"]
    with pytest.raises(ServedModelMismatchError) as err:
        check_served_model(m, "unet.json", "h:1", meta)
    text = str(err.value)
    assert "dropout_mask FP32[-1, 64, 13, 10]" in text and "dropout_mask FP32[-1, 128, 13, 10]" in text
    assert "h:1" in text and text.count(".") >= 1
    with pytest.raises(ServedModelMismatchError, match="ONNX file"):
        check_served_model(m, "unet.json", "h:1", _metadata_of(m), {"parameters": {
            "lus_onnx_sha256": {"string_value": "0" * 64}}})
    fixed_batch = _metadata_of(m)
    fixed_batch["inputs"][0]["shape"][0] = "1"  # a server without a dynamic batch dimension
    with pytest.raises(ServedModelMismatchError):
        check_served_model(m, "unet.json", "h:1", fixed_batch)


def test_error_classification_and_urls() -> None:
    assert is_unavailable(InferenceServerException("connection refused", "StatusCode.UNAVAILABLE"))
    assert is_unavailable(InferenceServerException("deadline", "StatusCode.DEADLINE_EXCEEDED"))
    assert is_unavailable(InferenceServerException(
        "Request for unknown model: 'x' has no available versions", "StatusCode.NOT_FOUND"))
    assert not is_unavailable(
        InferenceServerException("unexpected shape for input", "StatusCode.INVALID_ARGUMENT"))
    assert not is_unavailable(InferenceServerException(
        "This protocol is restricted, expecting header 'x'", "StatusCode.UNAVAILABLE"))
    assert normalise_url("grpc://10.0.0.5:9001/") == "10.0.0.5:9001"
    assert normalise_url("triton.local") == "triton.local:8001"
    with pytest.raises(ValueError, match="HOST:PORT"):
        normalise_url("http://h:8000/v2")


def test_unreachable_server_is_refused_with_the_fix() -> None:
    port = _free_port()
    with pytest.raises(BackendUnavailableError) as err:
        load_engine(MODELS / "frame" / "regstn.json", backend="triton", triton_url=f"127.0.0.1:{port}",
                    triton_options={"connect_timeout_s": 2.0})
    assert f"127.0.0.1:{port}" in str(err.value) and "lus-serve" in str(err.value)
    with pytest.raises(BackendUnavailableError, match="triton_url"):
        load_engine(MODELS / "frame" / "regstn.json", backend="triton")
    with pytest.raises(ValueError, match="backend 'triton'"):
        load_engine(MODELS / "frame" / "regstn.json", backend="onnxruntime", triton_url="h:1")


# ------------------------------------------------------------------------------------ server refusals
def test_serving_off_loopback_needs_tls_or_insecure(capsys: pytest.CaptureFixture[str]) -> None:
    assert exposure("127.0.0.1", False, False) == ("127.0.0.1", "127.0.0.1", None)
    assert exposure("localhost", False, False)[2] is None
    with pytest.raises(ServeError, match="--insecure"):
        exposure("0.0.0.0", False, False)
    assert exposure("10.1.2.3", True, False) == ("10.1.2.3", "127.0.0.1", None)  # TLS: HTTP stays local
    grpc, http, warning = exposure("0.0.0.0", False, True)
    assert (grpc, http) == ("0.0.0.0", "0.0.0.0") and warning and "PLAINTEXT" in warning
    assert main(["--host", "0.0.0.0"]) == 2  # refused before anything starts
    assert "patient data" in capsys.readouterr().err


def test_server_environment_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("this venv has numpy<2, so it can host PyTriton itself")
    monkeypatch.setenv("LUS_SERVE_REEXEC", "1")  # no re-exec: report instead
    assert main(["--grpc-port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "numpy" in err and "setup-env" in err


def test_libpython_first_on_the_loader_path() -> None:
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR")
    env = with_libpython_first({"LD_LIBRARY_PATH": f"/x:{libdir}:/y"})
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/x:/y"
    assert with_libpython_first({})["LD_LIBRARY_PATH"] == libdir
