"""The Reg-STN joint loss on a small case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses import FrameLoss, FrameLossWeights
from train.losses.sord import sord_targets


def _log_softmax(row: list[float]) -> list[float]:
    z = math.log(sum(math.exp(v) for v in row))
    return [v - z for v in row]


def test_frame_loss_hand_case() -> None:
    l1 = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]]
    l2 = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    sigma = [[0.6, 0.7], [0.5, 1.0]]
    labels = [0, 2]
    outputs = {"logits": torch.tensor(l1), "logits2": torch.tensor(l2), "sigma": torch.tensor(sigma)}
    # SORD by hand
    targets = sord_targets(torch.tensor(labels)).tolist()
    sord = (
        -sum(sum(t * lp for t, lp in zip(targets[i], _log_softmax(l1[i]), strict=True)) for i in range(2)) / 2
    )
    cons = (1.0 + 0 + 0 + 0 + 0 + 0 + 1.0 + 1.0) / 8  # mean squared difference
    prior = (abs(0.6 - 0.5) + abs(0.7 - 0.75) + abs(0.5 - 0.5) + abs(1.0 - 0.75)) / 4
    loss = FrameLoss("sord", FrameLossWeights(1.0, 2.0, 3.0))
    total, parts = loss(outputs, torch.tensor(labels))
    assert parts["cls"] == pytest.approx(sord, abs=1e-6)
    assert parts["consistency"] == pytest.approx(cons, abs=1e-7)
    assert parts["scale_prior"] == pytest.approx(prior, abs=1e-7)
    assert total.item() == pytest.approx(sord + 2 * cons + 3 * prior, abs=1e-5)


def test_ce_variant_and_missing_terms() -> None:
    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0]])
    total, parts = FrameLoss("ce")({"logits": logits}, torch.tensor([1]))
    assert parts["consistency"] == 0.0 and parts["scale_prior"] == 0.0
    assert total.item() == pytest.approx(-_log_softmax([0.0, 3.0, 0.0, 0.0])[1], abs=1e-6)
    with pytest.raises(ValueError, match="sord"):
        FrameLoss("hinge")
