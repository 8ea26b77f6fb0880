"""The trainable uninorm layer (train/models/uninorm.py): reference values worked out from the definition,
the closed form against the literal fold, the e = 0 / e = 1 edges, gradients into e, and the clamp."""

from __future__ import annotations

import pytest
import torch

from train.models.uninorm import (
    UninormAggregator,
    uninorm,
    uninorm_fold,
    uninorm_fold_sequential,
)

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


@pytest.mark.parametrize(
    ("a", "b", "e", "want"),
    [(0.2, 0.3, 0.5, 0.12), (0.6, 0.8, 0.5, 0.84), (0.2, 0.8, 0.5, 0.2), (0.3, 0.9, 0.25, 0.906667)],
)
def test_binary_reference_numbers(a, b, e, want):
    assert float(uninorm(t(a), t(b), e)) == pytest.approx(want, abs=1e-6)
    assert float(uninorm(t(b), t(a), e)) == pytest.approx(want, abs=1e-6)


def test_fold_reference_number():
    values = t([0.1, 0.2, 0.3, 0.4, 0.05])[:, None]
    assert float(uninorm_fold_sequential(values, 0.0)) == pytest.approx(0.71272, abs=1e-9)
    assert float(uninorm_fold(values, t([0.0]))) == pytest.approx(0.71272, abs=1e-9)


def test_binary_against_hand_formula_everywhere():
    """The torch op is the three-branch formula on a grid that hits every region and the boundaries."""
    grid = torch.linspace(0, 1, 21, dtype=D)
    a, b = torch.meshgrid(grid, grid, indexing="ij")
    for e in (0.0, 0.25, 0.5, 0.9, 1.0):
        got = uninorm(a, b, e)
        for i in range(21):
            for j in range(21):
                x, y = float(a[i, j]), float(b[i, j])
                if x <= e and y <= e:
                    want = x * y / e if e > 0 else 0.0
                elif x >= e and y >= e:
                    want = 1 - (1 - x) * (1 - y) / (1 - e) if e < 1 else 1.0
                else:
                    want = min(x, y)
                assert float(got[i, j]) == pytest.approx(want, abs=1e-12), (x, y, e)


@pytest.mark.parametrize("e_value", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_closed_form_equals_sequential_fold(e_value):
    torch.manual_seed(0)
    values = torch.rand(40, 4, dtype=D)
    values[5, 1] = e_value  # the neutral element itself
    values[7, 2] = 0.0
    values[9, 3] = 1.0
    e = torch.full((4,), e_value, dtype=D)
    torch.testing.assert_close(
        uninorm_fold(values, e), uninorm_fold_sequential(values, e_value), rtol=0, atol=1e-12
    )


def test_mixed_neutral_elements_and_padding_mask():
    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(3, 25, 4, dtype=D), dim=-1)
    mask = torch.ones(3, 25, dtype=torch.bool)
    mask[1, 10:] = False
    mask[2, 3:] = False
    layer = UninormAggregator().double()
    with torch.no_grad():
        layer.e.copy_(t([0.0, 0.15, 0.3, 1.0]))
    got = layer.aggregates(probs, mask)
    for i, n in enumerate((25, 10, 3)):
        want = torch.stack(
            [uninorm_fold_sequential(probs[i, :n, c], layer.neutral_elements[c]) for c in range(4)]
        )
        torch.testing.assert_close(got[i], want, rtol=0, atol=1e-12)
    out = layer(probs, mask)
    torch.testing.assert_close(out, torch.softmax(got, dim=-1))


@pytest.mark.parametrize("e_value", [0.0, 1.0, 0.3])
def test_no_nan_at_edges_and_gradient_reaches_e(e_value):
    torch.manual_seed(2)
    probs = torch.softmax(torch.randn(2, 6, 4, dtype=D), dim=-1)
    probs[0, 0] = t([1.0, 0.0, 0.0, 0.0])  # exact 0 and 1 in the input too
    layer = UninormAggregator(init=e_value).double()
    out = layer(probs)
    loss = -(torch.log(out[:, 2])).sum()
    loss.backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(layer.e.grad).all()
    if e_value == 0.3:
        assert (layer.e.grad.abs() > 0).all()


def test_gradient_matches_finite_differences():
    torch.manual_seed(3)
    probs = torch.softmax(torch.randn(4, 8, 4, dtype=D), dim=-1)
    layer = UninormAggregator().double()
    with torch.no_grad():
        layer.e.copy_(t([0.05, 0.1, 0.15, 0.2]))

    def f():
        return -(torch.log(layer(probs)[:, 1])).sum()

    f().backward()
    analytic = layer.e.grad.clone()
    for c in range(4):
        with torch.no_grad():
            layer.e[c] += 1e-6
            up = float(f())
            layer.e[c] -= 2e-6
            down = float(f())
            layer.e[c] += 1e-6
        assert analytic[c] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-9)


def test_clamp_keeps_e_in_unit_interval_and_init_validated():
    layer = UninormAggregator()
    with torch.no_grad():
        layer.e.copy_(torch.tensor([-0.3, 0.4, 1.7, 1.0]))
    layer.clamp_()
    assert layer.e.tolist() == pytest.approx([0.0, 0.4, 1.0, 1.0])
    assert UninormAggregator().neutral_elements == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="init"):
        UninormAggregator(init=1.5)
