"""SORD targets against reference numbers from the authors' SORD implementation, and the loss."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses.sord import sord_loss, sord_targets

REFERENCE = {
    (0.0, 0): [0.880537, 0.119168, 0.000295, 0.000000],
    (0.0, 1): [0.106479, 0.786778, 0.106479, 0.000264],
    (0.5, 0): [0.989009, 0.010987, 0.000004, 0.000000],
    (0.5, 1): [0.009687, 0.872007, 0.118013, 0.000293],
}


@pytest.mark.parametrize(("gap", "label"), list(REFERENCE))
def test_sord_targets_match_reference(gap: float, label: int) -> None:
    got = sord_targets(torch.tensor([label]), m=2.0, gap=gap)[0]
    assert torch.allclose(got.double(), torch.tensor(REFERENCE[(gap, label)], dtype=torch.float64), atol=1e-6)


def test_sord_targets_are_symmetric_distributions() -> None:
    t = sord_targets(torch.arange(4))
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert torch.allclose(t[3], t[0].flip(0), atol=1e-7)  # g = 0: score 3 mirrors score 0
    assert int(t.argmax(1).eq(torch.arange(4)).sum()) == 4


def test_sord_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    log_p = [v - math.log(sum(math.exp(u) for u in (2.0, 0.0, -1.0, 0.5))) for v in (2.0, 0.0, -1.0, 0.5)]
    target = REFERENCE[(0.0, 1)]
    expected = -sum(t * lp for t, lp in zip(target, log_p, strict=True))
    assert sord_loss(logits, torch.tensor([1])).item() == pytest.approx(expected, abs=1e-5)


def test_sord_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match=r"0\.\.3"):
        sord_targets(torch.tensor([4]))
    with pytest.raises(TypeError, match="integer"):
        sord_targets(torch.tensor([1.0]))
