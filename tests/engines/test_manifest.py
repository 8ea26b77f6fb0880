"""Manifest round trip, schema cross-check and every refusal with its message (engines/manifest.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from engines.manifest import (
    ManifestError,
    build_manifest,
    load_manifest,
    sha256_file,
    training_domain,
    validate_manifest,
    write_manifest,
)

SCHEMA = Path(__file__).resolve().parents[2] / "engines" / "manifest.schema.json"


def _fields(**over):
    base = dict(
        name="tiny",
        version="0.1",
        task="frame-score",
        format="onnx",
        inputs=[{"name": "frame", "shape": ["batch", 1, 8, 8], "dtype": "float32", "layout": "NCHW"}],
        outputs=[{"name": "probs", "shape": ["batch", 4], "dtype": "float32", "meaning": "softmax over 0-3"}],
        preprocessing={"size_hw": [8, 8], "scale": "unit", "padding": "letterbox-zero", "channels": 1},
        class_names=["0", "1", "2", "3"],
        training={"data": "synthetic", "synthetic_only": True, "clinical_use": False, "command": "none"},
    )
    base.update(over)
    return base


@pytest.fixture
def model(tmp_path: Path) -> Path:
    f = tmp_path / "tiny.onnx"
    f.write_bytes(b"not really onnx but bytes to hash")
    return f


def test_build_write_load_round_trip(model: Path) -> None:
    m = build_manifest(model_file=model, **_fields(metrics={"acc": 0.5}))
    assert m["file"] == "tiny.onnx"
    assert m["sha256"] == sha256_file(model) == m["onnx_sha256"]
    assert m["schema_version"] == 1 and m["tensorrt"] is None and m["parameters"] == {}
    path = write_manifest(m, model.with_suffix(".json"))
    loaded = load_manifest(path)
    assert loaded == m
    # naming the model file finds the manifest beside it
    assert load_manifest(model) == m


def test_hashlib_agrees(model: Path) -> None:
    import hashlib

    assert sha256_file(model) == hashlib.sha256(model.read_bytes()).hexdigest()


def test_schema_file_agrees_with_hand_validation(model: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    good = build_manifest(model_file=model, **_fields())
    jsonschema.validate(good, schema)
    plan = copy.deepcopy(good)
    plan.update(
        format="tensorrt-plan",
        tensorrt={
            "gpu_name": "NVIDIA H100",
            "compute_capability": "9.0",
            "tensorrt_version": "10.3.0",
            "precision": "fp16",
            "batch_profile": [1, 1, 8],
        },
    )
    validate_manifest(plan, "plan")
    jsonschema.validate(plan, schema)
    bad_cases = [
        {"task": "detection"},
        {"schema_version": 2},
        {"sha256": "ABC"},
        {"inputs": [{"name": "frame", "shape": [0, 1], "dtype": "float32", "layout": "NCHW"}]},
        {"preprocessing": {"size_hw": [8], "scale": "unit", "padding": "letterbox-zero", "channels": 1}},
        {"training": {"data": "x", "synthetic_only": True, "clinical_use": True, "command": ""}},
        {"extra_key": 1},
    ]
    for over in bad_cases:
        bad = {**good, **over}
        with pytest.raises(ManifestError):
            validate_manifest(bad, "bad")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_aggregator_manifest_has_no_file(tmp_path: Path) -> None:
    m = build_manifest(
        **_fields(task="aggregator", format="none", inputs=[], outputs=[], preprocessing=None),
        parameters={"neutral_elements": [0.1, 0.2, 0.3, 0.4], "sord_gap": 0.5},
    )
    assert m["file"] is None and m["sha256"] is None
    assert load_manifest(write_manifest(m, tmp_path / "agg.json")) == m


def test_missing_manifest_names_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nothere\.json: manifest not found .*export the model"):
        load_manifest(tmp_path / "nothere.json")
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(b"x")
    with pytest.raises(ManifestError, match=r"lone\.onnx: manifest not found \(lone\.json is missing"):
        load_manifest(lone)


def test_missing_model_file(model: Path) -> None:
    path = write_manifest(build_manifest(model_file=model, **_fields()), model.with_suffix(".json"))
    model.unlink()
    with pytest.raises(ManifestError, match=r"tiny\.json: model file .*tiny\.onnx is missing; copy it"):
        load_manifest(path)
    assert load_manifest(path, verify_file=False)["file"] == "tiny.onnx"


def test_sha256_mismatch(model: Path) -> None:
    path = write_manifest(build_manifest(model_file=model, **_fields()), model.with_suffix(".json"))
    model.write_bytes(b"tampered")
    with pytest.raises(ManifestError, match=r"tiny\.onnx: sha256 .* does not match .*re-export the model"):
        load_manifest(path)


def test_invalid_json_and_bad_fields(tmp_path: Path, model: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ManifestError, match=r"broken\.json: not valid JSON"):
        load_manifest(broken)
    m = build_manifest(model_file=model, **_fields())
    m["inputs"][0]["dtype"] = "float64"
    (tmp_path / "bad.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=r"bad\.json: inputs\[0\]\.dtype 'float64' .* fix the manifest"):
        load_manifest(tmp_path / "bad.json")


def test_write_refuses_manifest_pointing_nowhere(tmp_path: Path, model: Path) -> None:
    m = build_manifest(model_file=model, **_fields())
    with pytest.raises(ManifestError, match="not beside it"):
        write_manifest(m, tmp_path / "elsewhere" / "tiny.json")


def test_plan_needs_tensorrt_block(model: Path) -> None:
    with pytest.raises(ManifestError, match="tensorrt-plan needs the 'tensorrt' block"):
        build_manifest(model_file=model, **_fields(format="tensorrt-plan"))


def test_mc_dropout_parameters_checked(model: Path) -> None:
    with pytest.raises(ManifestError, match=r"mc_dropout\.input 'mask' is not one of the inputs"):
        mc = {"mc_dropout": {"input": "mask", "p": 0.5, "shape": [4]}}
        build_manifest(model_file=model, **_fields(parameters=mc))


def _training(**over):
    return {"data": "x", "synthetic_only": True, "clinical_use": False, "command": "none", **over}


def test_training_domain_dataset_licence(model: Path) -> None:
    """Optional training.domain/dataset/licence: checked by hand and by the schema, read by
    training_domain (absent domain: "synthetic" if synthetic_only, else "unknown")."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    good = [
        _training(domain="synthetic", dataset="synthetic ICLUS-style, 120 patients"),
        _training(
            synthetic_only=False, domain="real", dataset="COVID-BLUES, 48 patients", licence="CC BY 4.0"
        ),
        _training(synthetic_only=False, domain="mixed"),
        _training(),
    ]
    for tr in good:
        m = build_manifest(model_file=model, **_fields(training=tr))
        jsonschema.validate(m, schema)
        assert training_domain(m) == tr.get("domain", "synthetic")
    unknown = build_manifest(model_file=model, **_fields(training=_training(synthetic_only=False)))
    assert training_domain(unknown) == "unknown" and training_domain({}) == "unknown"
    bad = [
        (_training(domain="clinical"), r"training\.domain 'clinical' must be one of"),
        (_training(domain="real"), r"training\.domain 'real' contradicts training\.synthetic_only True"),
        (_training(synthetic_only=False, domain="synthetic"), "contradicts"),
        (_training(synthetic_only=False, domain="real", dataset=48), r"training\.dataset must be a string"),
        (_training(licence=None), r"training\.licence must be a string"),
    ]
    base = build_manifest(model_file=model, **_fields())
    for tr, message in bad:
        m = {**base, "training": tr}
        with pytest.raises(ManifestError, match=message):
            validate_manifest(m, "bad")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(m, schema)


def test_shipped_manifests_declare_their_training_domain() -> None:
    """models/frame/: the real-scan model (COVID-BLUES); models/demo/frame/ and models/seg/: synthetic."""
    models = Path(__file__).resolve().parents[2] / "models"
    expected = {"frame": "real", "demo/frame": "synthetic", "seg": "synthetic"}
    for folder, domain in expected.items():
        paths = sorted((models / folder).glob("*.json"))
        assert paths, folder
        for path in paths:
            m = load_manifest(path, verify_file=False)
            assert m["training"]["domain"] == domain == training_domain(m), path
            assert m["training"]["synthetic_only"] is (domain == "synthetic"), path
            assert isinstance(m["training"]["dataset"], str) and m["training"]["dataset"], path
