"""End to end on a tiny U-Net: ``lus-train seg`` → ``evaluate-seg`` → ``export-seg``; the files
each step promises exist and decode (table rows, PNG panels, ONNX + manifest engines can load)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from engines.manifest import load_manifest
from train.cli import main


@pytest.mark.slow
def test_train_evaluate_export_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "seg",
                "--members",
                "unet",
                "--set",
                "unet.filters=[4,4,4]",
                "--set",
                "unet.latent_channels=8",
                "--synthetic",
                "4",
                "--synthetic-clips",
                "1",
                "--synthetic-frames",
                "8",
                "--synthetic-stride",
                "4",
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--eval-every",
                "2",
                "--batch-size",
                "1",
                "--val-frames",
                "1",
            ]
        )
        == 0
    )
    split = json.loads((run / "split.json").read_text())
    assert not set(split["test"]) & set(split["train"])  # patient-level split
    assert (
        main(
            [
                "evaluate-seg",
                "--run",
                str(run),
                "--members",
                "unet",
                "--mc-k",
                "3",
                "--panels",
                "2",
                "--uncertainty-panels",
                "1",
            ]
        )
        == 0
    )
    table = (run / "eval" / "table.md").read_text()
    assert "| U-Net |" in table and "Ensemble" in table
    for png in ("fig5.png", "fig6.png"):
        img = cv2.imread(str(run / "eval" / png))
        assert img is not None and img.shape[0] > 100
    # Any dataset folder, restricted to its splits.json test patients (here: the simulator's files).
    from train.data.layout import read_splits
    from train.data.synthetic import generate

    ds = tmp_path / "ds"
    generate(ds, patients=3, clips_per_patient=1, seed=2, frames=(6, 6), size_hw=(120, 160),
             masks_per_clip=2, test_fraction=0.34, as_frames=True)  # fmt: skip
    args = ["evaluate-seg", "--run", str(run), "--members", "unet", "--mc-k", "2", "--panels", "1",
            "--uncertainty-panels", "1", "--data", str(ds), "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main([*args, "--split", "test"]) == 0
    n_test = len(read_splits(ds)["test"])
    assert f"2 frames, {n_test} patients" in (tmp_path / "ev" / "table.md").read_text()
    with pytest.raises(SystemExit, match="needs --data"):
        main(["evaluate-seg", "--run", str(run), "--members", "unet", "--synthetic", "2", "--split", "test"])
    (ds / "splits.json").unlink()
    with pytest.raises(SystemExit, match=r"splits\.json: no 'test' patient list"):
        main([*args, "--split", "test"])
    out = tmp_path / "models"
    assert main(["export-seg", "--run", str(run), "--members", "unet", "--out", str(out)]) == 0
    m = load_manifest(out / "unet.json")
    assert m["task"] == "segmentation" and m["training"]["synthetic_only"] is True
    assert m["parameters"]["mc_dropout"]["shape"] == [8, 13, 10]
    assert m["metrics"]["onnx_parity_max_abs"] <= 1e-4
    assert "Not for clinical use" in (out / "MODEL_CARD.md").read_text()


def test_one_vocabulary_with_the_old_spellings_kept(capsys: pytest.CaptureFixture[str]) -> None:
    """``lus-train seg`` speaks ``lus-train frame``'s options (``--synthetic N``, resume unless
    ``--no-resume``); the old ``--sim*`` and ``--resume`` still work, hidden, with a note on stderr."""
    from train.commands.seg import parse

    new = parse(["--out", "r", "--synthetic", "3", "--synthetic-clips", "1", "--synthetic-frames", "8",
                 "--synthetic-stride", "2"])  # fmt: skip
    assert (new.synthetic, new.synthetic_clips, new.synthetic_frames, new.synthetic_stride) == (3, 1, 8, 2)
    assert new.no_resume is False  # resumes by default, as lus-train frame does
    assert capsys.readouterr().err == ""
    old = parse(["--out", "r", "--sim", "3", "--sim-clips", "1", "--sim-frames", "8", "--sim-stride", "2",
                 "--resume"])  # fmt: skip
    assert vars(old) == vars(new)
    err = capsys.readouterr().err
    assert "--sim is deprecated; use --synthetic" in err and "--sim-stride is deprecated" in err
    assert "--resume is deprecated" in err
    assert parse(["--out", "r", "--synthetic", "3", "--no-resume"]).no_resume is True
    with pytest.raises(SystemExit):
        parse(["--out", "r", "--sim"])  # the alias still needs its value
