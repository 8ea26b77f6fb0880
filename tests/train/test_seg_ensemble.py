"""Ensemble mean, the authors' weighting, and MC-dropout statistics against direct computations."""

from __future__ import annotations

import torch

from train.models.seg_models import build_member
from train.seg.config import MemberConfig
from train.seg.ensemble import draw_masks, ensemble_labels, ensemble_mean, mc_dropout, mc_samples

TINY = MemberConfig("unet", "unet", filters=(4, 4, 8), latent_channels=8)


def _members(n: int = 2) -> list[torch.nn.Module]:
    out = []
    for s in range(n):
        torch.manual_seed(s)
        out.append(build_member(TINY).eval())
    return out


def test_ensemble_mean_is_the_unweighted_softmax_mean() -> None:
    x = torch.randn(2, 1, 40, 20)
    models = _members(3)
    with torch.no_grad():
        probs = [torch.softmax(m(x), 1) for m in models]
    direct = (probs[0] + probs[1] + probs[2]) / 3
    assert torch.allclose(ensemble_mean(probs), direct, atol=1e-7)
    assert torch.equal(ensemble_labels(probs), direct.argmax(1))


def test_authors_weighting_doubles_covid_scores_and_never_downgrades_score3() -> None:
    # one pixel each; classes [0, 1, 2, 3, BG]
    a = torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.7], [0.6, 0.0, 0.0, 0.0, 0.4], [0.1, 0.0, 0.0, 0.5, 0.4]])
    b = torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.7], [0.6, 0.0, 0.0, 0.0, 0.4], [0.0, 0.0, 0.0, 0.1, 0.9]])
    pa, pb = (t.T.reshape(1, 5, 1, 3) for t in (a, b))
    plain = ensemble_labels([pa, pb])[0, 0].tolist()
    weighted = ensemble_labels([pa, pb], authors_weighting=True)[0, 0].tolist()
    assert plain == [4, 0, 4]
    # pixel 0: 0.3*2 = 0.6 < 0.7 stays BG; pixel 2: member a says 3 -> stays 3
    assert weighted == [4, 0, 3]
    pa2 = pa.clone()
    pa2[0, 1, 0, 0], pa2[0, 4, 0, 0] = 0.4, 0.6  # mean COVID 0.35*2 = 0.7 > 0.65 -> score 1
    assert ensemble_labels([pa2, pb], authors_weighting=True)[0, 0, 0].item() == 1


def test_mc_dropout_mean_and_std_match_a_direct_computation() -> None:
    models = _members(2)
    x = torch.randn(1, 1, 40, 20)
    k, p = 6, 0.5
    mean, std, covid_std = mc_dropout(models, x, k=k, p=p, seed=11)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        per_member = []
        for m in models:
            masks = draw_masks(k, m.latent_shape(40, 20), p, g)
            per_member.append(torch.stack([torch.softmax(m(x, masks[i : i + 1]), 1)[0] for i in range(k)]))
    samples = (per_member[0] + per_member[1]) / 2  # [K, 5, H, W]
    assert torch.allclose(mean, samples.mean(0), atol=1e-6)
    ref_std = ((samples - samples.mean(0)) ** 2).mean(0).sqrt()
    assert torch.allclose(std, ref_std, atol=1e-6)
    covid = samples[:, 1:4].sum(1)
    assert torch.allclose(covid_std, ((covid - covid.mean(0)) ** 2).mean(0).sqrt(), atol=1e-6)


def test_masks_are_scaled_bernoulli_and_mc_mean_approaches_deterministic_as_p_goes_to_zero() -> None:
    masks = draw_masks(200, (8, 4, 4), 0.5, torch.Generator().manual_seed(0))
    assert set(masks.unique().tolist()) == {0.0, 2.0}
    assert abs(masks.mean().item() - 1.0) < 0.05
    (model,) = _members(1)
    x = torch.randn(1, 1, 40, 20)
    with torch.no_grad():
        det = torch.softmax(model(x), 1)[0]
    errs = []
    for p in (0.5, 0.1, 0.01):
        s = mc_samples(model, x, k=8, p=p, generator=torch.Generator().manual_seed(1))
        if p == 0.5:
            assert all(not torch.allclose(s[0], s[i]) for i in range(1, 8))  # K different samples
        errs.append((s.mean(0) - det).abs().max().item())
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-2
