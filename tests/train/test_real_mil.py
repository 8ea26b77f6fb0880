"""Clip-level training on real-style data: the MIL heads (uninorm end to end, mean of logits), the crop
containment penalty, clip metrics against hand-computed values, and one cross-validation fold on a
generated toy collection (written to disk, resumed without retraining)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stream.aggregate import UninormClipAggregator
from train.real.cache import ClipCache, ClipRef
from train.real.crossval import engine_clip_score, run_fold, uninorm_order_logits
from train.real.heads import MeanHead, UninormHead
from train.real.loop import ClipTrainConfig, corner_excess, make_clip_model, train_clip_model
from train.real.metrics import clip_metrics, summarise


def toy_cache(n_patients: int = 6, clips_per_patient: int = 4, frames: int = 10, seed: int = 0) -> ClipCache:
    """Clips of 64x64 noise where score c shows c + 1 bright vertical stripes in SOME frames only
    (the clip's worst finding), the other frames show one stripe (score 0): a bag problem."""
    rng = np.random.default_rng(seed)
    images, start, length, clips = [], [], [], []
    n = 0
    for p in range(n_patients):
        for j in range(clips_per_patient):
            label = (p + j) % 4
            imgs = (rng.random((frames, 64, 64)) * 60).astype(np.uint8)
            positive = rng.random(frames) < 0.5
            positive[0] = True
            for t in range(frames):
                s = label if positive[t] else 0
                for k in range(s + 1):
                    x0 = (k + 1) * 64 // (s + 2)
                    imgs[t, 16:, max(0, x0 - 2) : x0 + 2] = 220
            images.append(imgs)
            start.append(n)
            length.append(frames)
            n += frames
            clips.append(ClipRef(f"toy_{p}_{j}", f"P{p}", f"L{j + 1}", label, ""))
    return ClipCache(np.concatenate(images), np.array(start), np.array(length), clips)


def tiny_config(method: str, **kw) -> ClipTrainConfig:
    base = dict(
        method=method,
        preset="tiny",
        steps=30,
        clips_per_step=4,
        frames_per_clip=4,
        lr=3e-3,
        eval_every=10,
        val_frames=6,
        pretrained=None,
        uninorm_init=0.25,
        threads=1,
    )
    return ClipTrainConfig(**{**base, **kw})


def test_uninorm_head_predicts_the_runtime_clip_score() -> None:
    """argmax of the head's length-normalised logits == the runtime's streaming uninorm clip score."""
    rng = np.random.default_rng(3)
    head = UninormHead(init=0.0)
    with torch.no_grad():
        head.e.copy_(torch.tensor([0.3, 0.1, 0.05, 0.2]))
        head.log_tau.fill_(np.log(2.0))
    for t in (1, 5, 40):
        logits = rng.normal(size=(t, 4)) * 2
        z = head(torch.from_numpy(logits)[None].double())[0].detach().numpy()
        probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
        agg = UninormClipAggregator(head.neutral_elements)
        for row in probs:
            agg.update(row)
        assert int(z.argmax()) == agg.score() == engine_clip_score(probs, head.neutral_elements)
        # dividing by T and scaling by τ keeps the order of the exact order logits
        np.testing.assert_allclose(z, 2.0 * uninorm_order_logits(probs, head.neutral_elements) / t, rtol=1e-6)


def test_mean_head_ignores_padded_frames() -> None:
    logits = torch.tensor([[[1.0, 0, 0, 0], [3.0, 0, 0, 0], [100.0, 0, 0, 0]]])
    mask = torch.tensor([[True, True, False]])
    assert MeanHead()(logits, mask)[0, 0].item() == pytest.approx(2.0)


def test_mil_uninorm_gives_the_neutral_elements_a_gradient_through_the_frame_model() -> None:
    torch.manual_seed(0)
    cache = toy_cache(n_patients=2)
    model = make_clip_model(tiny_config("mil-uninorm"))
    model.train()
    x = torch.from_numpy(cache.images[:8].astype(np.float32) / 255)[:, None]
    out = model.frame_model(x)
    z = model.clip_logits(out["logits"].reshape(2, 4, 4))
    loss = torch.nn.functional.cross_entropy(z, torch.tensor([3, 0]))
    loss.backward()
    assert model.head.e.grad is not None and model.head.e.grad.abs().sum() > 0
    conv = model.frame_model.classifier.features[0][0].weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0
    # the e-gradient depends on the frame model's output: other weights, another gradient
    g1 = model.head.e.grad.clone()
    model.zero_grad()
    with torch.no_grad():
        model.frame_model.classifier.head[-1].weight.mul_(3.0)
    out = model.frame_model(x)
    torch.nn.functional.cross_entropy(
        model.clip_logits(out["logits"].reshape(2, 4, 4)), torch.tensor([3, 0])
    ).backward()
    assert not torch.allclose(g1, model.head.e.grad)


@pytest.mark.parametrize("method", ["mil-uninorm", "mil-mean", "inherit"])
def test_training_steps_lower_the_clip_loss(method: str) -> None:
    """Ten optimiser steps on one fixed bag batch lower that batch's clip loss."""
    from train.losses.sord import sord_loss

    torch.manual_seed(0)
    cache = toy_cache(n_patients=2)
    model = make_clip_model(tiny_config(method))
    model.train()
    y = torch.from_numpy(cache.labels[:4])
    idx = torch.cat([torch.arange(c * 10, c * 10 + 8) for c in range(4)])
    x = torch.from_numpy(cache.images[idx.numpy()].astype(np.float32) / 255)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def clip_loss() -> torch.Tensor:
        z = model.clip_logits(model.frame_model(x)["logits"].reshape(4, 8, 4))
        return sord_loss(z, y, 2.0, 0.5)

    with torch.no_grad():
        before = float(clip_loss())
    for _ in range(10):
        opt.zero_grad()
        if method == "inherit":
            loss = sord_loss(model.frame_model(x)["logits"], y.repeat_interleave(8), 2.0, 0.5)
        else:
            loss = clip_loss()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(clip_loss())
    assert after < before


def test_training_run_writes_checkpoint_history_and_learns_neutral_elements(tmp_path) -> None:
    cache = toy_cache()
    ids = np.arange(len(cache))
    result = train_clip_model(
        tiny_config("mil-uninorm", steps=20), cache, ids, ids[:8], tmp_path, progress=False
    )
    hist = result["history"]
    assert [h["step"] for h in hist] == [10, 20] and all("val_loss" in h for h in hist)
    assert (tmp_path / "best.pt").is_file() and json.loads((tmp_path / "history.json").read_text()) == hist
    es = hist[-1]["neutral_elements"]
    assert all(0.0 <= e <= 1.0 for e in es) and es != [0.25] * 4  # moved from the start, clamped
    ckpt = torch.load(tmp_path / "best.pt", weights_only=False)
    assert ckpt["head"]["kind"] == "mil-uninorm" and ckpt["step"] == result["best_step"]


def test_corner_excess_against_hand_computed_values() -> None:
    eye = torch.tensor([[[[1.0, 0, 0], [0, 1.0, 0]]]])
    assert corner_excess(eye).item() == 0.0
    shifted = torch.tensor([[[[1.0, 0, 0.5], [0, 1.0, 0]]]])  # x corners at -0.5 and 1.5
    # two of four corners 0.5 beyond x = 1: (0.25 + 0.25 + 0 + 0) / 4
    assert corner_excess(shifted).item() == pytest.approx(0.125)


def test_clip_metrics_against_hand_computed_values() -> None:
    y = [0, 0, 1, 2, 3, 3]
    p = [0, 1, 1, 2, 2, 3]
    m = clip_metrics(y, p, [0.1, 0.6, 0.7, 0.8, 0.9, 0.95], ["a", "a", "b", "b", "c", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["mae"] == pytest.approx(2 / 6)
    assert m["auc"] == pytest.approx(1.0)  # every abnormal clip above both healthy ones
    # QWK by hand: observed disagreement weights (i-j)^2/9: two errors of 1 step -> sum 2/9;
    # expected from the marginals rows (2,1,1,2) cols (1,2,2,1): sum_ij r_i c_j (i-j)^2/9 / 6
    r, c = np.array([2, 1, 1, 2]), np.array([1, 2, 2, 1])
    w = (np.subtract.outer(range(4), range(4)) ** 2) / 9
    expected = (np.outer(r, c) * w).sum() / 6
    assert m["kappa"] == pytest.approx(1 - (2 / 9) / expected)
    # patient sums: truth a=0, b=3, c=6; predicted a=1, b=3, c=5 -> same ranks
    assert m["spearman"] == pytest.approx(1.0)
    s = summarise([m, {**m, "f1": 0.0, "auc": None}])
    assert s["f1"][0] == pytest.approx(m["f1"] / 2) and s["auc"] == [1.0, 0.0]


def test_one_fold_writes_its_result_and_resumes(tmp_path) -> None:
    cache = toy_cache(n_patients=6)
    folds = [["P0", "P1"], ["P2", "P3"], ["P4", "P5"]]
    cfg = tiny_config("mil-uninorm", steps=10)
    r = run_fold(cache, folds, 1, "toy", cfg, tmp_path, progress=False)
    assert set(r["patients"]["test"]) == {"P2", "P3"}
    assert not set(r["patients"]["validation"]) & {"P2", "P3"}
    assert [c["patient_id"] for c in r["clips"]] == ["P2"] * 4 + ["P3"] * 4
    for c in r["clips"]:
        assert 0 <= c["engine"]["score"] <= 3 and 0 <= c["engine"]["p_abnormal"] <= 1
    assert set(r["metrics"]) == {"engine", "max_argmax", "argmax_mean"}
    oof = np.load(tmp_path / "toy" / "fold1" / "oof_probs.npz")
    assert oof["probs"].shape == (80, 4) and np.allclose(oof["probs"].sum(1), 1, atol=1e-5)
    done = tmp_path / "toy" / "fold1" / "result.json"
    stamp = done.stat().st_mtime_ns
    again = run_fold(cache, folds, 1, "toy", cfg, tmp_path, progress=False)
    assert done.stat().st_mtime_ns == stamp and again == json.loads(done.read_text())
