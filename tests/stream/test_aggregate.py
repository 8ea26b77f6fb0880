"""Streaming clip aggregation (stream/aggregate.py): the uninorm state against direct float64 folds,
the uninorm's algebra (hypothesis), exactness over 10⁵ frames, sliding windows against recomputation,
the baselines, and reading the neutral elements from a manifest."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.aggregate import TwoStackWindow, load_neutral_elements, make_aggregator


# ------------------------------------------------------------------- the direct formulas (references)
def uninorm(a: float, b: float, e: float) -> float:
    """The binary min-uninorm ``U_e(a, b)`` (direct formula, float64): the reference for the streaming
    state. The neutral element is returned exactly and each region's result is kept inside the region
    (rounding cannot move a value across ``e``)."""
    if a == e:
        return b
    if b == e:
        return a
    if a <= e and b <= e:  # e > 0 here: a = b = e = 0 returned above
        return min(a * b / e, a, b)
    if a >= e and b >= e:  # e < 1 here
        return max(1.0 - (1.0 - a) * (1.0 - b) / (1.0 - e), a, b)
    return min(a, b)


def fold(values: Sequence[float], e: float) -> float:
    """Direct left fold ``U_e(…U_e(U_e(e, v_1), v_2)…, v_n)`` in float64 (underflows on long inputs)."""
    state = float(e)
    for v in values:
        state = uninorm(state, float(v), e)
    return state


unit = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)
inner = st.floats(0.0, 1.0, exclude_min=True, exclude_max=True, allow_subnormal=False)


def softmax(v):
    z = np.exp(np.asarray(v, dtype=float))
    return z / z.sum()


def random_probs(rng, n):
    return rng.dirichlet(np.full(4, 0.7), size=n)


# ------------------------------------------------------------------------------- reference numbers


@pytest.mark.parametrize(
    ("a", "b", "e", "want"),
    [(0.2, 0.3, 0.5, 0.12), (0.6, 0.8, 0.5, 0.84), (0.2, 0.8, 0.5, 0.2), (0.3, 0.9, 0.25, 0.906667)],
)
def test_binary_uninorm_reference_numbers(a, b, e, want):
    assert uninorm(a, b, e) == pytest.approx(want, abs=1e-6)


def test_streaming_fold_reference_number():
    agg = make_aggregator("uninorm", [0.0, 0.0, 0.0, 0.0])
    for p in [0.1, 0.2, 0.3, 0.4, 0.05]:
        agg.update([p, 1.0 - p, 0.0, 0.0])
    assert agg.aggregates()[0] == pytest.approx(0.71272, abs=1e-9)
    assert fold([0.1, 0.2, 0.3, 0.4, 0.05], 0.0) == pytest.approx(0.71272, abs=1e-12)


# --------------------------------------------------------------------- streaming == direct fold


@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_direct_float64_fold(seed):
    rng = np.random.default_rng(seed)
    es = rng.uniform(0, 1, 4).tolist() if seed else [0.0, 1.0, 0.5, 0.25]  # seed 0: the edge values
    probs = random_probs(rng, int(rng.integers(1, 200)))
    agg = make_aggregator("uninorm", es)
    for t, row in enumerate(probs):
        out = agg.update(row)
        want = [fold(probs[: t + 1, c], es[c]) for c in range(4)]
        np.testing.assert_allclose(agg.aggregates(), want, rtol=0, atol=1e-6)
        np.testing.assert_allclose(out, softmax(want), rtol=0, atol=1e-9)
        assert agg.count == t + 1


def test_value_before_any_frame_is_softmax_of_neutral_elements():
    es = [0.1, 0.2, 0.3, 0.9]
    agg = make_aggregator("uninorm", es)
    np.testing.assert_allclose(agg.value(), softmax(es))
    agg.update([0.7, 0.1, 0.1, 0.1])
    agg.reset()
    assert agg.count == 0
    np.testing.assert_allclose(agg.value(), softmax(es))


def test_exact_zeros_and_ones():
    agg = make_aggregator("uninorm", [0.5, 0.5, 0.2, 0.0])
    agg.update([0.0, 1.0, 0.0, 1.0])  # 0 below e, 1 above e, 0 below e, 1 above e = 0
    agg.update([0.3, 0.9, 0.5, 0.5])
    np.testing.assert_array_equal(agg.aggregates(), [0.0, 1.0, 0.0, 1.0])
    assert np.isfinite(agg.value()).all()
    assert agg.score() in (1, 3)


# ---------------------------------------------------------------------- algebra (hypothesis)


@settings(max_examples=300, deadline=None)
@given(unit, unit, unit, inner)
def test_associativity(a, b, c, e):
    left = uninorm(uninorm(a, b, e), c, e)
    right = uninorm(a, uninorm(b, c, e), e)
    assert left == pytest.approx(right, rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(unit, unit, unit)
def test_commutativity_and_neutral_element(a, b, e):
    assert uninorm(a, b, e) == uninorm(b, a, e)
    assert uninorm(a, e, e) == a
    assert uninorm(e, a, e) == a


@settings(max_examples=300, deadline=None)
@given(unit, unit, unit, unit)
def test_monotonicity(a, a2, b, e):
    lo, hi = min(a, a2), max(a, a2)
    assert uninorm(lo, b, e) <= uninorm(hi, b, e)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(unit, unit, unit, unit), min_size=1, max_size=30),
    st.tuples(unit, unit, unit, unit),
    st.randoms(use_true_random=False),
)
def test_streaming_is_order_free_and_ignores_neutral_frames(rows, es, rnd):
    """Commutativity + associativity of the streamed fold: any order, plus frames equal to e, same state."""
    es = list(es)
    a = make_aggregator("uninorm", es)
    for r in rows:
        a.update(list(r))
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    b = make_aggregator("uninorm", es)
    for r in shuffled:
        b.update(list(r))
        b.update(es)  # the neutral element: changes nothing
    np.testing.assert_allclose(a.aggregates(), b.aggregates(), rtol=1e-9, atol=1e-12)
    assert a.score() == b.score() or np.isclose(a.aggregates()[a.score()], a.aggregates()[b.score()])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(unit, unit, unit, unit, unit), min_size=1, max_size=30), unit)
def test_streaming_monotone_in_every_frame(rows, e):
    """Raising any frame's probability never lowers the aggregate (checked on score 0)."""
    lo, hi = make_aggregator("uninorm", [e] * 4), make_aggregator("uninorm", [e] * 4)
    for p, q, *_ in rows:
        lo.update([min(p, q), 0, 0, 0])
        hi.update([max(p, q), 0, 0, 0])
    assert lo.aggregates()[0] <= hi.aggregates()[0] + 1e-12


# ------------------------------------------------------------------------ long-stream exactness


def test_long_stream_state_exact_where_floats_saturate():
    """10⁵ frames: the value underflows to 0 (score 0) or rounds to 1 (scores 1-3) in float64, and a
    direct fold does so too — the log-domain state stays finite and equal to the exact sum."""
    n = 100_000
    rng = np.random.default_rng(7)
    es = [0.5, 0.3, 0.3, 0.2]
    p0 = rng.uniform(0.2, 0.45, n)  # below e0: conjunctive, v0 ≈ 0.5 · 10^-12000
    p1 = rng.uniform(0.31, 0.6, n)  # above e1: disjunctive, 1 − v1 ≈ 10^-15000
    p2 = rng.uniform(0.31, 0.62, n)  # score 2 slightly more evidence than score 1
    p3 = np.full(n, 0.2)  # = e3: neutral throughout
    agg = make_aggregator("uninorm", es)
    for row in np.stack([p0, p1, p2, p3], axis=1):
        out = agg.update(row)
    state = agg.log_state()
    want0 = math.log(0.5) + math.fsum(np.log(p0 / 0.5))
    want1 = math.log(0.7) + math.fsum(np.log((1 - p1) / 0.7))
    want2 = math.log(0.7) + math.fsum(np.log((1 - p2) / 0.7))
    assert state[0][0] == "low" and state[0][1] == pytest.approx(want0, rel=1e-12)
    assert state[1][0] == "high" and state[1][1] == pytest.approx(want1, rel=1e-12)
    assert state[2][0] == "high" and state[2][1] == pytest.approx(want2, rel=1e-12)
    assert state[3] == ("neutral", pytest.approx(math.log(0.2)))
    assert -1e6 < want0 < -1000 and -1e6 < want1 < -1000  # far beyond float64's range as values
    assert np.isfinite(out).all() and out.sum() == pytest.approx(1.0)
    # Scores 1 and 2 both round to v = 1.0; the exact order still says 2 (smaller log(1 − v)).
    assert agg.aggregates()[1] == agg.aggregates()[2] == 1.0
    assert (want2 < want1) and agg.score() == 2
    # The naive fold has lost it: v0 is exactly 0 and v1 stuck within an ulp of 1 (true 1 − v1 ≈ 1e-1500).
    assert fold(p0[:5000], 0.5) == 0.0 and fold(p1[:5000], 0.3) > 1 - 1e-15


def test_long_stream_matches_direct_fold_where_representable():
    """10⁵ frames close to e: the direct float64 fold stays representable; both agree to 1e-6."""
    n = 100_000
    rng = np.random.default_rng(3)
    es = [0.4, 0.4, 0.6, 0.6]
    rows = np.stack([
        0.4 * np.exp(-rng.uniform(0, 2e-5, n)),  # just below e: v0 = 0.4·exp(−Σ) ≈ 0.4·e^-1
        1 - 0.6 * np.exp(-rng.uniform(0, 2e-5, n)),  # just above e
        rng.uniform(0.3, 0.9, n),  # mixed: drops to ~0
        np.full(n, 0.6),
    ], axis=1)  # fmt: skip
    agg = make_aggregator("uninorm", es)
    for row in rows:
        agg.update(row)
    want = [fold(rows[:, c], es[c]) for c in range(4)]
    assert 0.1 < want[0] < 0.2 and 0.6 < want[1] < 0.9
    np.testing.assert_allclose(agg.aggregates(), want, rtol=0, atol=1e-6)


# -------------------------------------------------------------------------------- sliding windows


@pytest.mark.parametrize("kind", ["uninorm", "max_argmax", "argmax_mean"])
@pytest.mark.parametrize("window", [1, 7, 64])
def test_window_equals_recomputing_the_window(kind, window):
    rng = np.random.default_rng(window)
    es = [0.05, 0.2, 0.4, 0.1]
    probs = random_probs(rng, 300)
    probs[::17, 0] = 0.0  # exact zeros (log −inf) must leave the window cleanly
    probs[::17] /= probs[::17].sum(axis=1, keepdims=True)
    win = make_aggregator(kind, es, window_frames=window)
    for t, row in enumerate(probs):
        out = win.update(row, t_ns=t)
        ref = make_aggregator(kind, es)
        for r in probs[max(0, t + 1 - window) : t + 1]:
            ref.update(r)
        assert win.count == min(t + 1, window)
        np.testing.assert_allclose(out, ref.value(), rtol=0, atol=1e-9)
        assert win.score() == ref.score()
        if kind == "uninorm":
            np.testing.assert_allclose(win.aggregates(), ref.aggregates(), rtol=0, atol=1e-9)


def test_time_window_keeps_the_last_seconds_and_grows():
    rng = np.random.default_rng(1)
    es = [0.1, 0.2, 0.3, 0.4]
    probs = random_probs(rng, 2000)
    times = np.cumsum(rng.integers(1, 60, 2000)) * 1_000_000  # irregular frame gaps, in ns
    win = make_aggregator("uninorm", es, window_seconds=1.5)  # up to ~1000 frames: the ring must grow
    for t, row in enumerate(probs):
        win.update(row, t_ns=int(times[t]))
        if t % 97 == 0 or t == len(probs) - 1:
            inside = times > times[t] - 1_500_000_000
            inside[t + 1 :] = False
            ref = make_aggregator("uninorm", es)
            for r in probs[inside]:
                ref.update(r)
            assert win.count == inside.sum()
            np.testing.assert_allclose(win.aggregates(), ref.aggregates(), rtol=0, atol=1e-9)


def test_two_stack_window_max_over_many_flips():
    win = TwoStackWindow(1, np.maximum, -math.inf, max_frames=5, max_seconds=None)
    values = np.random.default_rng(0).permutation(200).astype(float)
    for t, v in enumerate(values):
        win.push([v], t)
        assert win.aggregate()[0] == values[max(0, t - 4) : t + 1].max()


# -------------------------------------------------------------------------------------- baselines


def test_baselines_stream_like_the_paper_rules():
    probs = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6], [0.6, 0.3, 0.05, 0.05], [0.5, 0.4, 0.05, 0.05]]
    )
    mx, mean = make_aggregator("max_argmax"), make_aggregator("argmax_mean")
    np.testing.assert_allclose(mx.value(), [0.25] * 4)
    for row in probs:
        mx.update(row)
        mean.update(row)
    assert mx.score() == 3 and mx.value().tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(mean.value(), probs.mean(axis=0))
    assert mean.score() == 0


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bad", [[0.5, 0.5, 0.0], [float("nan"), 0.5, 0.5, 0.0], [2.0, -1.0, 0.0, 0.0]])
def test_bad_frame_probabilities_are_refused(bad):
    agg = make_aggregator("uninorm", [0.1] * 4)
    with pytest.raises(ValueError, match="aggregator"):
        agg.update(bad)
    assert agg.count == 0


def test_bad_construction():
    with pytest.raises(ValueError, match="unknown kind"):
        make_aggregator("mean")
    with pytest.raises(ValueError, match="neutral_elements"):
        make_aggregator("uninorm", [0.1, 0.2, 1.5, 0.0])
    with pytest.raises(ValueError, match="window_frames"):
        make_aggregator("uninorm", [0.1] * 4, window_frames=0)


# ------------------------------------------------------------------------------------- manifest


def aggregator_manifest_dict(es):
    return {
        "schema_version": 1, "name": "uninorm-aggregator", "version": "1", "task": "aggregator",
        "format": "none", "file": None, "sha256": None, "onnx_sha256": None, "inputs": [], "outputs": [],
        "preprocessing": None, "class_names": ["score 0", "score 1", "score 2", "score 3"],
        "training": {"data": "toy", "synthetic_only": True, "clinical_use": False, "command": "test"},
        "metrics": {}, "parameters": {"neutral_elements": es, "sord_gap": 0.5}, "tensorrt": None,
    }  # fmt: skip


def test_load_neutral_elements(tmp_path):
    path = tmp_path / "aggregator.json"
    path.write_text(json.dumps(aggregator_manifest_dict([0.1, 0.0, 1.0, 0.25])))
    assert load_neutral_elements(path) == [0.1, 0.0, 1.0, 0.25]


def test_load_neutral_elements_errors_name_file_and_fix(tmp_path):
    from engines.manifest import ManifestError

    path = tmp_path / "aggregator.json"
    path.write_text(json.dumps(aggregator_manifest_dict([0.1, 0.2, 0.3])))
    with pytest.raises(ManifestError, match=r"aggregator\.json.*neutral_elements.*lus-train aggregator"):
        load_neutral_elements(path)
    m = aggregator_manifest_dict([0.1] * 4)
    m["task"] = "frame-score"
    path.write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="not 'aggregator'"):
        load_neutral_elements(path)


def test_module_imports_without_torch_or_train():
    import subprocess
    import sys

    code = (
        "import sys; import stream.aggregate as a; "
        "a.make_aggregator('uninorm', [0.1] * 4).update([0.25] * 4); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'train')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------ calibrated clip probabilities


def test_calibrated_probabilities_stay_informative_on_a_long_clip() -> None:
    """500 frames favouring score 2: the paper's softmax(v) flattens to ~0.25 each, the calibrated one
    (learned temperature over the length-normalised order logits) keeps a confident, same-score answer."""
    rng = np.random.default_rng(0)
    es = [0.2, 0.25, 0.2, 0.15]
    paper, calibrated = make_aggregator("uninorm", es), make_aggregator("uninorm", es, temperature=3.0)
    for _ in range(500):
        p = rng.dirichlet([1.0, 2.0, 6.0, 1.0])
        paper.update(p)
        out = calibrated.update(p)
    assert np.allclose(paper.value(), 0.25, atol=0.05)  # the defect: uniform-looking
    assert paper.score() == calibrated.score() == 2
    assert out.argmax() == 2 and out.max() > 0.4 and np.isclose(out.sum(), 1.0)
    np.testing.assert_allclose(out, calibrated.value())


def test_calibrated_probabilities_against_a_hand_computed_fold() -> None:
    """Two frames, e = 0.5 for every score: per score the fold is low (product) or high (co-product);
    the probabilities are softmax(τ · logit(v) / 2)."""
    frames = [[0.1, 0.2, 0.6, 0.1], [0.3, 0.1, 0.55, 0.05]]
    agg = make_aggregator("uninorm", [0.5] * 4, temperature=2.0)
    for f in frames:
        agg.update(f)
    v = [0.5 * (0.1 / 0.5) * (0.3 / 0.5), 0.5 * (0.2 / 0.5) * (0.1 / 0.5),
         1 - 0.5 * (0.4 / 0.5) * (0.45 / 0.5), 0.5 * (0.1 / 0.5) * (0.05 / 0.5)]  # fmt: skip
    z = np.array([2.0 * math.log(x / (1 - x)) / 2 for x in v])
    want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(agg.value(), want, rtol=1e-12)
    windowed = make_aggregator("uninorm", [0.5] * 4, window_frames=10, temperature=2.0)
    for f in frames:
        windowed.update(f)
    np.testing.assert_allclose(windowed.value(), want, rtol=1e-12)


def test_temperature_must_be_positive() -> None:
    with pytest.raises(ValueError, match="temperature"):
        make_aggregator("uninorm", [0.1] * 4, temperature=0.0)
