"""Table I evaluation pieces on hand-made cases: Setting 2 / Setting 3 masks, weighted F1, the
Markdown table, the confusion and crops PNGs, and the frame-probabilities JSON for the aggregator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from train.frame.data import FrameTable, VideoInfo, clip_label, toy_table
from train.frame.evaluate import (
    crop_corners,
    save_confusion_png,
    save_crops_png,
    setting2_mask,
    setting3_mask,
    table1_markdown,
    table1_scores,
    weighted_f1,
)
from train.frame.probs import dump_frame_probs, frame_probs_document
from train.models import build_frame_model


def _table(scores: list[list[int]], clinicians: list[list[int]]) -> FrameTable:
    videos = [
        VideoInfo(f"v{i}", f"p{i}", "convex", c, np.array(s))
        for i, (s, c) in enumerate(zip(scores, clinicians, strict=True))
    ]
    n = sum(len(s) for s in scores)
    return FrameTable(
        np.zeros((n, 4, 4), np.uint8),
        np.concatenate([np.array(s) for s in scores]),
        np.concatenate([np.full(len(s), i) for i, s in enumerate(scores)]),
        np.concatenate([np.arange(len(s)) for s in scores]),
        videos,
    )


def test_setting2_drops_k_frames_each_side_of_transitions() -> None:
    t = _table([[0, 0, 0, 0, 2, 2, 2, 2], [1, 1, 1, 3, 3, 1, 1, 1]], [[], []])
    keep = setting2_mask(t, 2)
    assert keep[:8].tolist() == [1, 1, 0, 0, 0, 0, 1, 1]
    # transitions at frames 3 and 5 of video 2: drop 1..4 and 3..6
    assert keep[8:].tolist() == [1, 0, 0, 0, 0, 0, 0, 1]
    assert setting2_mask(t, 0).all()


def test_setting3_keeps_videos_with_enough_agreement() -> None:
    t = _table([[0, 0], [1, 1], [2]], [[0, 0, 0, 1, 1], [1, 2, 3, 1, 0], []])
    assert setting3_mask(t, 3).tolist() == [1, 1, 0, 0, 0]
    assert setting3_mask(t, 2).tolist() == [1, 1, 1, 1, 0]
    assert setting3_mask(t, None).tolist() == [1, 1, 1, 1, 0]  # "Video Ann.": videos with scores


def test_clip_label_is_the_majority() -> None:
    assert clip_label([2, 2, 3, 1, 2]) == 2
    assert clip_label([1, 1, 3, 3, 0]) == 1  # tie -> lower score
    assert clip_label([], np.array([0, 2, 1])) == 2


def test_clip_label_first_annotator_rule() -> None:
    """The paper's aggregator labels: the first (most expert) clinician's score, not the majority."""
    assert clip_label([3, 2, 2, 2, 1], rule="first") == 3
    assert clip_label([3, 2, 2, 2, 1]) == 2
    assert clip_label([], np.array([0, 2, 1]), rule="first") == 2  # no clinicians: highest frame score
    with pytest.raises(ValueError, match=r"'last'.*majority"):
        clip_label([1, 2], rule="last")


def test_weighted_f1_and_table() -> None:
    y, p = np.array([0, 0, 1, 2, 3, 3]), np.array([0, 1, 1, 2, 3, 0])
    assert weighted_f1(y, p) == pytest.approx(100 * f1_score(y, p, average="weighted"))
    t = _table([[0, 0, 1, 2, 3, 3]], [[0, 0, 0, 0, 0]])
    probs = np.eye(4)[p]
    rows = {"A": table1_scores(t, probs, [1], [3]), "B": table1_scores(t, np.eye(4)[y], [1], [3])}
    assert rows["B"]["Setting 1"]["f1"] == 100.0
    md = table1_markdown(rows, [1], [3])
    assert "| B | **100.0** |" in md and "Setting 2, K=1" in md and md.count("\n") == 4


def test_crop_corners_of_half_scale_crop() -> None:
    c = crop_corners(np.array([[0.5, 0, 0.5], [0, 0.5, 0.5]]), (64, 64))
    assert np.allclose(c, [[32, 32], [64, 32], [64, 64], [32, 64]])


def test_pngs_are_written(tmp_path: Path) -> None:
    cm = save_confusion_png(np.array([0, 1, 2, 3, 3]), np.array([0, 1, 2, 2, 3]), tmp_path / "cm.png", "t")
    assert cm.tolist()[3] == [0, 0, 1, 1] and (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    model = build_frame_model("regstn", (64, 64), width=0.25)
    assert save_crops_png(model, toy_table(4, 4), tmp_path / "crops.png", per_class=1)
    assert (tmp_path / "crops.png").read_bytes()[:4] == b"\x89PNG"
    assert not save_crops_png(
        build_frame_model("cnn", (64, 64), width=0.25), toy_table(4, 4), tmp_path / "x.png"
    )


def test_frame_probs_json_format(tmp_path: Path) -> None:
    table = toy_table(n_videos=4, frames_per_video=5)
    torch.manual_seed(0)
    path = dump_frame_probs(build_frame_model("regstn", (64, 64), width=0.25), table, tmp_path / "p.json")
    doc = json.loads(path.read_text())
    assert len(doc["videos"]) == 4
    for v, info in zip(doc["videos"], table.videos, strict=True):
        assert set(v) == {"video_id", "patient_id", "label", "probs"}
        assert v["label"] == info.label and v["patient_id"] == info.patient_id
        assert len(v["probs"]) == 5 and all(len(r) == 4 and abs(sum(r) - 1) < 1e-3 for r in v["probs"])
    with_folds = frame_probs_document(table, np.full((len(table), 4), 0.25), folds={"T000": 0, "T001": 1})
    assert [v.get("fold") for v in with_folds["videos"]] == [0, 0, 1, 1]
    for info in table.videos:  # dissenting clinician first: the two label rules now differ
        info.clinician_scores = [(info.label + 1) % 4, *info.clinician_scores]
    first = frame_probs_document(table, np.full((len(table), 4), 0.25), video_label="first")
    majority = frame_probs_document(table, np.full((len(table), 4), 0.25))
    assert [v["label"] for v in first["videos"]] == [i.clinician_scores[0] for i in table.videos]
    assert all(f["label"] != m["label"] for f, m in zip(first["videos"], majority["videos"], strict=True))


def test_cli_train_evaluate_export_round_trip(tmp_path: Path) -> None:
    """lus-train frame → evaluate → export on a toy cache; the manifest carries the Table I numbers."""
    from engines.manifest import load_manifest
    from train.commands import evaluate as evaluate_cmd
    from train.commands import export as export_cmd
    from train.commands import frame as frame_cmd

    cache = tmp_path / "toy.npz"
    toy_table(n_videos=8, frames_per_video=6).save(cache)
    run = tmp_path / "run"
    probs = tmp_path / "probs.json"
    common = ["--cache", str(cache), "--split-seed", "1"]
    assert (
        frame_cmd.main(
            [
                "--config",
                "tiny",
                "--out",
                str(run),
                "--quiet",
                "--dump-frame-probs",
                str(probs),
                "--dump-split",
                "test",
                *common,
            ]
        )
        == 0
    )
    test_patients = json.loads((run / "splits.json").read_text())["test"]
    assert {v["patient_id"] for v in json.loads(probs.read_text())["videos"]} == set(test_patients)
    # lus-train frame-probs: the same model over a dataset, here all of it, then its own test split.
    from train.commands import frame_probs as frame_probs_cmd

    every = tmp_path / "every.json"
    assert frame_probs_cmd.main([str(run), "--out", str(every), "--quiet", *common]) == 0
    doc = json.loads(every.read_text())
    assert len(doc["videos"]) == 8 and sum(len(v["probs"]) for v in doc["videos"]) == 48
    again = tmp_path / "again.json"
    assert frame_probs_cmd.main([str(run), "--out", str(again), "--split", "test", "--quiet", *common]) == 0
    assert json.loads(again.read_text()) == json.loads(probs.read_text())  # same model, same frames
    with pytest.raises(SystemExit, match="no checkpoint"):
        frame_probs_cmd.main([str(tmp_path / "nowhere"), "--out", str(again), *common])
    out = tmp_path / "eval"
    eval_args = [str(run), "--out", str(out), "--k", "1", "--agree", "3", "--shifts", "noise", "blur"]
    assert evaluate_cmd.main([*eval_args, "--quiet", *common]) == 0
    assert "| Reg-STN" in (out / "table1.md").read_text()
    ((name, result),) = json.loads((out / "results.json").read_text()).items()
    shift_f1 = result["shifts_f1"]
    assert set(shift_f1) == {"noise", "blur"} and all(0 <= v <= 100 for v in shift_f1.values())
    row = f"| {name} | {result['settings']['Setting 1']['f1']:.1f} | {shift_f1['noise']:.1f} |"
    assert row in (out / "shifts.md").read_text()
    with pytest.raises(SystemExit, match="'speckle'"):
        evaluate_cmd.main([str(run), "--out", str(out), "--shifts", "speckle", "--quiet", *common])
    assert (out / "crops-run.png").is_file() and (out / "confusion-run.png").is_file()
    onnx_path = tmp_path / "models" / "toy.onnx"
    with pytest.raises(SystemExit, match="no checkpoint"):
        export_cmd.main([str(tmp_path / "nowhere"), "--out", str(onnx_path)])
    assert export_cmd.main([str(run), "--out", str(onnx_path), "--metrics", str(out / "results.json")]) == 0
    m = load_manifest(onnx_path.with_suffix(".json"))
    assert "Setting 1" in m["metrics"]["weighted_f1_percent"] and m["training"]["synthetic_only"] is True
    assert m["training"]["command"].startswith("lus-train frame --config tiny")
