"""Training loop: a tiny U-Net learns a trivially separable mask, checkpoints resume where they
stopped, and a class missing from the pattern is handled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from train.seg.config import MemberConfig
from train.seg.data import SegSamples
from train.seg.loop import TrainOptions, class_weights, evaluate, load_member, train_member

TINY = MemberConfig("unet", "unet", filters=(8, 8, 8), latent_channels=8, pools=(2, 2, 2))


def _squares(n: int = 16, hw: tuple[int, int] = (24, 24)) -> SegSamples:
    """Bright squares labelled with their score (intensity codes the score), dark background."""
    rng = np.random.default_rng(0)
    imgs = np.zeros((n, *hw), np.uint8)
    masks = np.full((n, *hw), 4, np.uint8)
    scores = np.arange(n) % 4
    for i, s in enumerate(scores):
        y, x = rng.integers(0, hw[0] - 8), rng.integers(0, hw[1] - 8)
        imgs[i, y : y + 8, x : x + 8] = 100 + 50 * s
        masks[i, y : y + 8, x : x + 8] = s
    patients = np.array([f"p{i % 4}" for i in range(n)], dtype=object)
    return SegSamples(imgs, masks, patients, scores.astype(np.int64), np.full(n, "convex", dtype=object))


def test_learns_and_resumes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = _squares()
    opts = TrainOptions(
        lr=3e-3,
        batch_size=4,
        max_steps=100,
        eval_every=50,
        augment=False,
        patience=0,
        val_frames=0,
        progress=False,
        class_weights="sqrt",
    )
    s1 = train_member(TINY, data, data, opts, tmp_path / "run")
    assert s1["steps"] == 100 and s1["stopped"] == "max_steps"
    model, cfg, _ = load_member(tmp_path / "run" / "best.pt")
    assert cfg == TINY
    assert evaluate(model, data)["covid_dice"] > 0.5  # learnt the squares (random init: ~0)
    longer = TrainOptions(**{**opts.__dict__, "max_steps": 110})
    s2 = train_member(TINY, data, data, longer, tmp_path / "run", resume=True)
    assert s2["steps"] == 110  # continued from step 100, not from 0
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert len(last["history"]["loss"]) == 110
    assert "optimizer" in last and "optim" not in last  # the key lus-train frame's checkpoints use


def test_resumes_a_checkpoint_with_the_old_optimizer_key(tmp_path: Path) -> None:
    """Checkpoints written before the key was renamed ("optim" → "optimizer") still resume."""
    data = _squares(8)
    opts = TrainOptions(lr=3e-3, batch_size=4, max_steps=4, eval_every=2, augment=False, patience=0,
                        val_frames=0, progress=False)  # fmt: skip
    train_member(TINY, data, data, opts, tmp_path / "run")
    path = tmp_path / "run" / "last.pt"
    ck = torch.load(path, weights_only=False)
    ck["optim"] = ck.pop("optimizer")
    torch.save(ck, path)
    longer = TrainOptions(**{**opts.__dict__, "max_steps": 6})
    assert train_member(TINY, data, data, longer, tmp_path / "run", resume=True)["steps"] == 6


def test_class_weights_follow_pixel_frequency() -> None:
    masks = np.array([4] * 80 + [0] * 20 + [3] * 5 + [1] * 0, np.uint8)
    w = class_weights(masks, "sqrt").numpy()
    assert np.allclose(w, [2.0, 1.0, 1.0, 4.0, 1.0], atol=1e-6)  # sqrt(80/20), absent -> 1, sqrt(80/5)
    assert class_weights(masks, "none") is None
