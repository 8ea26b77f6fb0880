"""Simulator: determinism, API contract, each score's signature measured on the pixels, masks,
transitions, the live stream and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import synth
from synth import ClipSpec, LiveSimulator, SimConfig, simulate_clip

H, W = 240, 320  # small frames keep the suite fast; geometry and signs scale with the frame


def clip(
    score: int | list[tuple[int, int]], probe: str = "linear", seed: int = 3, n: int = 4, **kw
) -> synth.SimClip:
    sched = [(0, score)] if isinstance(score, int) else score
    return simulate_clip(
        ClipSpec(seed=seed, n_frames=n, probe=probe, schedule=sched, height=H, width=W, **kw)
    )


def lung_box(c: synth.SimClip) -> tuple[slice, slice, int]:
    """Rows/cols of the imaged region (linear probe) and the pleural depth in pixels from its top."""
    x, y, w, h = c.meta["roi_xywh"]
    zp = round(c.meta["pleura_depth_cm"] * c.meta["px_per_cm"])
    return slice(y, y + h), slice(x, x + w), zp


def test_same_seed_same_bytes_and_different_seed_differs() -> None:
    a, b = clip([(0, 0), (2, 2)], probe="convex", seed=11), clip([(0, 0), (2, 2)], probe="convex", seed=11)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes()
    assert a.scores.tolist() == b.scores.tolist() and a.meta == b.meta
    c = clip([(0, 0), (2, 2)], probe="convex", seed=12)
    assert a.frames.tobytes() != c.frames.tobytes()


@pytest.mark.parametrize("probe", ["convex", "linear"])
def test_contract_shapes_dtypes_and_background_outside_the_image(probe: str) -> None:
    c = clip(1, probe=probe, n=3)
    assert c.frames.shape == (3, H, W) and c.frames.dtype == np.uint8
    assert c.masks.shape == (3, H, W) and c.masks.dtype == np.uint8
    assert c.scores.dtype == np.int64 and c.scores.tolist() == [1, 1, 1]
    assert set(np.unique(c.masks)) <= {0, 1, 2, 3, 4}
    for key in ("probe", "scanner", "hospital", "fps", "seed", "roi_xywh", "px_per_cm", "pleura_depth_cm"):
        assert key in c.meta
    assert c.meta["probe"] == probe and synth.SCANNERS[c.meta["scanner"]].probe == probe
    # Corners lie outside both geometries: black image, background mask.
    for y, x in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]:
        assert (c.frames[:, y, x] == 0).all() and (c.masks[:, y, x] == 4).all()
    if probe == "convex":  # the fan: black outside the sector even inside its bounding box
        x, y, w, h = c.meta["roi_xywh"]
        assert c.frames[0, y + h - 2, x + 1] == 0 and c.frames[0, y + h // 2, x + w // 2] > 0
        assert c.masks[0, y + h - 2, x + 1] == 4


def test_score0_alines_repeat_at_the_pleural_depth() -> None:
    """Autocorrelation of the depth profile below the pleura peaks at the pleural depth."""
    for seed in (1, 2, 5):
        c = clip(0, seed=seed, n=2)
        rows, cols, zp = lung_box(c)
        img = c.frames[1, rows, cols].astype(float)
        prof = np.median(img, axis=1)  # median over columns ignores rib shadows
        assert abs(int(np.argmax(prof[: 2 * zp])) - zp) <= max(3, 0.1 * zp)  # brightest = pleura
        seg = prof[int(0.5 * zp) :]  # pleura, then its reverberations
        k = zp // 2 * 2 + 1
        seg = seg - np.convolve(seg, np.ones(k) / k, mode="same")  # remove the depth trend
        ac = np.correlate(seg, seg, mode="full")[seg.size - 1 :]
        lag = int(np.argmax(ac[int(0.5 * zp) : int(1.5 * zp)])) + int(0.5 * zp)
        assert abs(lag - zp) <= max(3, 0.1 * zp), (seed, lag, zp)


def _bline_energy(c: synth.SimClip, i: int = -1) -> float:
    """Lateral contrast of the lung's column means (vertical bright bands) in the lower half."""
    rows, cols, _zp = lung_box(c)
    img = c.frames[i, rows, cols].astype(float)
    lower = img[img.shape[0] // 2 :]
    colmean = lower.mean(axis=0)[4:-4]
    return float(np.percentile(colmean, 98) - np.median(colmean))


def test_score1_has_vertical_bline_energy_score0_does_not() -> None:
    for seed in (1, 2, 3):
        e0, e1 = _bline_energy(clip(0, seed=seed, n=2)), _bline_energy(clip(1, seed=seed, n=2))
        assert e1 > 25 and e0 < 12, (seed, e0, e1)


def test_score2_and_3_have_a_distinct_subpleural_region() -> None:
    for seed in (1, 2, 3):
        c = clip(2, seed=seed, n=2)
        rows, cols, zp = lung_box(c)
        img, m = c.frames[-1, rows, cols].astype(float), c.masks[-1, rows, cols]
        cons = m == 2
        assert cons.sum() > 20
        rows = np.arange(img.shape[0])[:, None]
        haze = (m == 4) & (rows > 1.3 * zp) & (rows < 2 * zp)  # aerated lung at a similar depth
        # The consolidation's darker part (its bright lower margin aside) is hypoechoic.
        assert np.percentile(img[cons], 30) < np.median(img[haze]) - 12, seed
        ys = np.nonzero(cons.any(axis=1))[0]
        assert ys.min() <= zp + 0.3 * zp  # just below the pleura
    for seed in (1, 2, 3):
        c = clip(3, seed=seed, n=2)
        rows, cols, zp = lung_box(c)
        img, m = c.frames[-1, rows, cols].astype(float), c.masks[-1, rows, cols]
        big = m == 3
        lung = np.zeros_like(big)
        lung[zp + 5 :] = True
        assert big.sum() > 0.1 * lung.sum(), seed  # a large region ...
        haze = lung & (m == 4)
        assert abs(img[big & lung].mean() - np.median(img[haze])) > 12, seed  # ... unlike aerated lung


@pytest.mark.parametrize("probe", ["convex", "linear"])
def test_mask_classes_match_the_frame_score(probe: str) -> None:
    c = clip([(0, 0), (2, 1), (4, 2), (6, 3)], probe=probe, n=8, seed=7)
    for i in range(8):
        present = set(np.unique(c.masks[i]).tolist()) - {4}
        assert present, f"frame {i} has an empty mask"
        assert max(present) == c.scores[i], (i, present, c.scores[i])
    # Score 0 marks the healthy signs only: class 0 and nothing else.
    assert set(np.unique(c.masks[0]).tolist()) == {0, 4}


def test_transition_where_scheduled() -> None:
    cfg = SimConfig(transition_frames=4)
    spec = ClipSpec(seed=4, n_frames=16, probe="linear", schedule=[(0, 0), (8, 1)], height=H, width=W)
    c = simulate_clip(spec, cfg)
    assert c.scores.tolist() == [0] * 8 + [1] * 8
    assert (c.masks[:8] == 0).any(axis=(1, 2)).all() and not (c.masks[8:] == 0).any()
    assert (c.masks[8:] == 1).any(axis=(1, 2)).all() and not (c.masks[:8] == 1).any()
    # The pixels change around frame 8: B-line energy low before the cross-fade, high after it.
    energies = [_bline_energy(c, i) for i in (3, 12)]  # outside the 4-frame cross-fade
    assert energies[1] > energies[0] + 15


def test_live_simulator_matches_clip_and_runs_on() -> None:
    spec = ClipSpec(seed=9, n_frames=5, probe="convex", schedule=[(0, 0), (3, 2)], height=120, width=160)
    c = simulate_clip(spec)
    live = LiveSimulator(9, probe="convex", schedule=[(0, 0), (3, 2)], height=120, width=160)
    for i in range(5):
        img, score, mask = live.next()
        assert np.array_equal(img, c.frames[i]) and np.array_equal(mask, c.masks[i]) and score == c.scores[i]
    # Without a schedule it draws segments forever; short segments show several scores.
    cfg = SimConfig(segment_seconds=(0.2, 0.4))
    live = LiveSimulator(1, probe="linear", fps=30, height=120, width=160, config=cfg)
    scores = [live.next()[1] for _ in range(240)]
    assert len(set(scores)) >= 3 and live.frame_index == 240


def test_scanner_profiles_differ() -> None:
    a = clip(0, probe="convex", scanner="convex-c5", n=1)
    b = clip(0, probe="convex", scanner="convex-wifi", n=1)
    assert a.meta["scanner"] == "convex-c5" and b.meta["hospital"] != a.meta["hospital"]
    assert a.meta["roi_xywh"] != b.meta["roi_xywh"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": []}, "empty"),
        ({"schedule": [(1, 0)]}, "start at frame 0"),
        ({"schedule": [(0, 0), (0, 1)]}, "increase"),
        ({"schedule": [(0, 4)]}, "not a score"),
        ({"schedule": [(0, 0), (10, 1)]}, "beyond"),
        ({"probe": "sector"}, "unknown probe"),
        ({"scanner": "nope"}, "unknown scanner"),
        ({"scanner": "linear-l12"}, "linear probe"),
        ({"n_frames": 0}, "n_frames"),
        ({"height": 10}, "too small"),
    ],
)
def test_bad_specs_get_clear_errors(kwargs: dict, message: str) -> None:
    spec = {
        "seed": 0,
        "n_frames": 4,
        "probe": "convex",
        "schedule": [(0, 0)],
        "height": 120,
        "width": 160,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        simulate_clip(ClipSpec(**spec))


def test_cross_fade_is_continuous_and_live_stream_memory_is_bounded() -> None:
    # Short middle segment: the fades on both of its sides shrink to fit, weights stay in [0, 1].
    spec = ClipSpec(
        seed=6, n_frames=30, probe="linear", schedule=[(0, 0), (10, 3), (13, 1)], height=64, width=64
    )
    c = simulate_clip(spec, SimConfig(transition_frames=8))
    assert c.scores.tolist() == [0] * 10 + [3] * 3 + [1] * 17
    cfg = SimConfig(segment_seconds=(0.1, 0.2))
    live = LiveSimulator(2, probe="convex", fps=30, height=64, width=64, config=cfg)
    for _ in range(600):  # ~130 segments
        live.next()
    assert len(live._eng.segments) <= 4  # previous, current and the next two


def test_motion_moves_the_lung_against_the_chest_wall() -> None:
    """Lung sliding: below the pleura the image changes between frames more than the wall does."""
    c = clip(1, seed=8, n=20)
    rows, cols, zp = lung_box(c)
    f = c.frames[:, rows, cols].astype(float)
    wall = np.abs(np.diff(f[:, 5 : zp - 8], axis=0)).mean()
    lung = np.abs(np.diff(f[:, zp + 8 :], axis=0)).mean()
    assert lung > 1.2 * wall > 0


def test_findings_are_focal_alines_survive_outside_the_lesion() -> None:
    """Scores 1-2 live in a lateral lesion window: under it the A-lines fade, beside it they stay (as
    in score 0), and the annotated signs stay inside the window."""
    cfg = SimConfig(
        lesion_centre_frac=(0.5, 0.5),
        lesion_width_frac=((0.0, 0.0), (0.3, 0.3), (0.3, 0.3), (0.45, 0.45)),
        probe_drift_frac=0.0,
        rib_probability={"convex": 0.0, "linear": 0.0},
    )
    for score in (1, 2):
        for seed in (1, 2, 3):
            c = simulate_clip(
                ClipSpec(seed=seed, n_frames=2, probe="linear", schedule=[(0, score)], height=H, width=W), cfg
            )
            rows, cols, zp = lung_box(c)
            img, m = c.frames[-1, rows, cols].astype(float), c.masks[-1, rows, cols]
            n = img.shape[1]

            def aline_contrast(sel: np.ndarray, img: np.ndarray = img, zp: int = zp) -> float:
                prof = np.median(img[:, sel], axis=1)  # first A-line (2× the pleural depth) vs haze
                haze = np.median(prof[int(1.4 * zp) : int(1.7 * zp)])
                return float(prof[2 * zp - 2 : 2 * zp + 3].max() - haze)

            beside = np.r_[0 : int(0.15 * n), int(0.85 * n) : n]
            under = np.arange(int(0.42 * n), int(0.58 * n))
            a_beside, a_under = aline_contrast(beside), aline_contrast(under)
            assert a_beside > 30 and a_under < 0.5 * a_beside, (score, seed, a_beside, a_under)
            signed = np.nonzero((m < 4).any(axis=0))[0] / n
            assert signed.min() > 0.15 and signed.max() < 0.85, (score, seed, signed.min(), signed.max())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lesion_width_frac": ((0.0, 0.0), (0.3, 0.6))},  # one pair per score
        {"lesion_width_frac": ((0.0, 0.0), (0.6, 0.3), (0.3, 0.6), (0.45, 0.85))},  # min > max
        {"lesion_centre_frac": (0.5, 1.2)},
    ],
)
def test_bad_lesion_settings_are_named(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SimConfig(**kwargs)
