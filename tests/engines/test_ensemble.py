"""Ensemble averaging and batched MC dropout against hand computations on real tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines import Engine, EngineError, EngineInputError, Ensemble, load_engine, mc_dropout


@pytest.fixture
def members(tiny_models: dict[str, Path]) -> list[Engine]:
    return [load_engine(tiny_models[k], "onnxruntime", threads=1) for k in ("seg_a", "seg_b")]


def _image(seed: int = 0, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 1, 20, 16)).astype(np.float32)


def _count_calls(eng: Engine) -> list[int]:
    """Record the batch size of every infer call (real calls, real results)."""
    calls: list[int] = []
    real = eng.infer

    def counting(inputs):  # type: ignore[no-untyped-def]
        calls.append(next(iter(inputs.values())).shape[0])
        return real(inputs)

    eng.infer = counting  # type: ignore[method-assign]
    return calls


def test_ensemble_is_mean_of_member_softmax(members: list[Engine]) -> None:
    image = _image(batch=2)
    ones = np.ones((2, 4, 10, 8), np.float32)
    by_hand = [m.infer({"image": image, "dropout_mask": ones})["probs"] for m in members]
    assert not np.allclose(by_hand[0], by_hand[1])  # two different members
    expected = (by_hand[0].astype(np.float64) + by_hand[1]) / 2
    got = Ensemble(members).infer(image)
    assert got.shape == (2, 5, 20, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_ensemble_refuses_mixed_members(members: list[Engine], tiny_models: dict[str, Path]) -> None:
    frame = load_engine(tiny_models["frame"], "onnxruntime", threads=1)
    with pytest.raises(EngineError, match="disagree on the 'probs' shape"):
        Ensemble([members[0], frame])
    with pytest.raises(EngineError, match="has no output 'mask'"):
        Ensemble(members, output="mask")


@pytest.mark.parametrize("mode", ["ensemble", "mixture"])
def test_mc_dropout_one_call_per_member_k_distinct_samples(members: list[Engine], mode: str) -> None:
    k, seed = 6, 123
    calls = [_count_calls(m) for m in members]
    image = _image(1)
    res = mc_dropout(Ensemble(members), image, k=k, seed=seed, keep_samples=True, mode=mode)
    assert calls == [[k], [k]]  # ONE batched call of K per member

    # hand computation: redraw the same masks (same RNG order), run each sample on its own
    rng = np.random.default_rng(seed)
    per_member = []
    for m in members:
        keep = rng.random((k, 4, 10, 8)) >= 0.5
        masks = keep.astype(np.float32) * 2.0
        per_member.append(
            [m.infer({"image": image, "dropout_mask": masks[j : j + 1]})["probs"][0] for j in range(k)]
        )
    draws = np.asarray(per_member, dtype=np.float64)  # [M, K, C, H, W]
    hand = draws.mean(axis=0) if mode == "ensemble" else draws.reshape(-1, *draws.shape[2:])
    n = k if mode == "ensemble" else 2 * k
    assert res.samples is not None and res.samples.shape == (n, 5, 20, 16) and res.n_samples == n
    assert len({row.tobytes() for row in res.samples.reshape(n, -1)}) == n  # all samples distinct
    np.testing.assert_allclose(res.samples, hand, atol=1e-5)
    mean = hand.mean(axis=0)
    per_class = hand.std(axis=0)
    np.testing.assert_allclose(res.mean, mean, atol=1e-6)
    np.testing.assert_allclose(res.mean, draws.mean(axis=(0, 1)), atol=1e-6)  # same mean either way
    np.testing.assert_allclose(res.per_class_std, per_class, atol=1e-6)
    pred = mean.argmax(axis=0)
    yy, xx = np.indices(pred.shape)
    np.testing.assert_allclose(res.std, per_class[pred, yy, xx], atol=1e-6)
    np.testing.assert_allclose(res.covid_std, hand[:, 1:4].sum(axis=1).std(axis=0), atol=1e-6)
    assert res.std.max() > 0  # dropout really changes the output
    mean2, std2 = res  # unpacks as (mean, std)
    assert mean2 is res.mean and std2 is res.std


def test_mc_dropout_seeded_and_chunked(members: list[Engine]) -> None:
    image = _image(3)
    a = mc_dropout(members, image, k=5, seed=7)
    b = mc_dropout(members, image, k=5, seed=7)
    c = mc_dropout(members, image, k=5, seed=8)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert not np.array_equal(a.mean, c.mean)
    members[0].max_batch = 2  # e.g. a TensorRT profile's max: the call is split, the result is not
    calls = _count_calls(members[0])
    d = mc_dropout(members, image, k=5, seed=7)
    assert calls == [2, 2, 1]
    np.testing.assert_allclose(d.mean, a.mean, atol=1e-6)


def test_mc_dropout_refusals(members: list[Engine], tiny_models: dict[str, Path]) -> None:
    with pytest.raises(EngineInputError, match=r"ONE frame with a batch axis of 1, got shape \(2, 1, 20"):
        mc_dropout(members, _image(batch=2), k=3)
    frame = load_engine(tiny_models["frame"], "onnxruntime", threads=1)
    with pytest.raises(EngineError, match=r"tiny-frame\.json: no parameters\.mc_dropout .* dropout_mask"):
        mc_dropout(frame, np.zeros((1, 1, 16, 16), np.float32), k=2)
    with pytest.raises(ValueError, match="at least one"):
        mc_dropout(members, _image(), k=0)
    with pytest.raises(ValueError, match="use 'ensemble' or 'mixture'"):
        mc_dropout(members, _image(), k=2, mode="mean")
