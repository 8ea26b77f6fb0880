"""``lus-train real-cv`` and ``lus-train real-fit`` end to end on a generated clip-scored collection:
folds written and reused, one result per (run, fold), the table, the confusion PNG; then the shipped
export — an ONNX frame model the engine loads, its manifest stating the real domain and the CV numbers,
and an aggregator manifest whose neutral elements and temperature the runtime reads."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines import load_engine
from engines.manifest import load_manifest
from stream.aggregate import load_neutral_elements, load_temperature
from train.cli import main as lus_train
from train.data.layout import LayoutWriter, write_video


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 patients x 2 clips of 6 frames (48x48 H.264); score c draws c + 1 bright stripes."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    writer = LayoutWriter(root / "ds", "toy-clips", {"synthetic": False})
    for p in range(6):
        for j in range(2):
            score = (p + j) % 4
            frames = (rng.random((6, 48, 48)) * 50).astype(np.uint8)
            for k in range(score + 1):
                frames[:, 12:, 6 + 10 * k : 9 + 10 * k] = 220
            path = root / "videos" / f"p{p}_{j}.mp4"
            write_video(path, frames, 25.0)
            writer.add_clip(
                video_id=f"p{p}_L{j + 1}",
                patient_id=f"P{p}",
                path=path,
                fps=25.0,
                n_frames=6,
                probe="convex",
                hospital="toy",
                clinician_scores=[score],
                zone=f"L{j + 1}",
            )
    writer.close()
    return root


def test_real_cv_then_real_fit_ship_loadable_models(collection: Path, tmp_path: Path) -> None:
    data, cv = collection / "ds", tmp_path / "cv"
    tiny = [
        "--set",
        "preset=tiny",
        "--set",
        "pretrained=none",
        "--set",
        "eval_every=2",
        "--set",
        "val_frames=4",
    ]
    args = ["real-cv", "--data", str(data), "--out", str(cv), "--k", "3", "--steps", "4", "--quiet", *tiny]
    assert lus_train([*args, "--methods", "mil-uninorm,inherit", "--only-folds", "0"]) == 0
    folds = json.loads((cv / "folds.json").read_text())["folds"]
    assert sorted(p for f in folds for p in f) == [f"P{i}" for i in range(6)] and len(folds) == 3
    assert {p.parent.parent.name for p in cv.glob("*/fold0/result.json")} == {"mil-uninorm", "inherit"}
    # a second call reads the same folds and adds only the missing fold
    assert lus_train([*args, "--methods", "mil-uninorm", "--only-folds", "1"]) == 0
    assert json.loads((cv / "folds.json").read_text())["folds"] == folds
    summary = json.loads((cv / "summary.json").read_text())
    assert summary["mil-uninorm"]["folds"] == [0, 1] and summary["inherit"]["folds"] == [0]
    assert "| mil-uninorm | engine | 2 |" in (cv / "table.md").read_text()
    assert cv2.imread(str(cv / "confusion.png")) is not None

    export = tmp_path / "models" / "frame"
    fit = [
        "real-fit",
        "--data",
        str(data),
        "--cv",
        str(cv),
        "--run",
        "mil-uninorm",
        "--out",
        str(tmp_path / "final"),
        "--export",
        str(export),
        "--version",
        "9.9.9",
        "--quiet",
    ]
    assert lus_train(fit) == 0
    manifest = load_manifest(export / "regstn.json")
    assert manifest["training"]["domain"] == "real" and manifest["training"]["synthetic_only"] is False
    assert manifest["metrics"]["cross_validation"]["folds"] == [0, 1]
    engine = load_engine(export / "regstn.json", backend="onnxruntime", threads=1)
    out = engine.infer({"frame": np.zeros((2, 1, 64, 64), np.float32)})
    assert out["probs"].shape == (2, 4) and np.allclose(out["probs"].sum(1), 1, atol=1e-5)
    final = json.loads((tmp_path / "final" / "final.json").read_text())
    assert load_neutral_elements(export / "aggregator.json") == pytest.approx(final["neutral_elements"])
    assert load_temperature(export / "aggregator.json") == pytest.approx(final["temperature"])
    assert not set(final["patients"]["fit"]) & set(final["patients"]["validation"])


def test_real_fit_names_a_missing_cv_run(collection: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no finished CV folds"):
        lus_train(
            [
                "real-fit",
                "--data",
                str(collection / "ds"),
                "--cv",
                str(tmp_path),
                "--run",
                "nope",
                "--out",
                str(tmp_path / "o"),
            ]
        )
