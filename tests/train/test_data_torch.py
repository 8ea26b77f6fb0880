"""torch datasets over the layout: shapes, the runtime's letterbox, mask padding, the frame cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import synth
from engines.preprocess import letterbox, scale_intensity
from train.data.layout import LayoutWriter, read_dataset, read_frames
from train.data.splits import setting2
from train.data.torch_datasets import ClipDataset, FrameCache, FrameDataset, MaskDataset, letterbox_mask


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = tmp_path_factory.mktemp("ds")
    w = LayoutWriter(root, "t")
    for k, (probe, sched) in enumerate([("convex", [(0, 0), (4, 2)]), ("linear", [(0, 1), (5, 3)])]):
        c = synth.simulate_clip(
            synth.ClipSpec(seed=k, n_frames=8, probe=probe, schedule=sched, height=120, width=160)
        )
        w.add_video(
            video_id=f"P{k}_V1",
            patient_id=f"P{k}",
            frames=c.frames,
            fps=30,
            probe=probe,
            hospital="h",
            frame_scores=c.scores.tolist(),
            clinician_scores=[1, 1, 2, 1, 1],
            masks={2: c.masks[2], 6: c.masks[6]},
            as_frames=True,
        )
    w.close()
    return read_dataset(root)


def test_frame_dataset_uses_the_runtime_letterbox(records: list) -> None:
    ds = FrameDataset(records, (64, 64), scale="unit")
    assert len(ds) == 16
    x, y = ds[9]
    raw = read_frames(records[1], [1])[0]
    expect = scale_intensity(letterbox(raw, (64, 64))[0], "unit")
    assert x.shape == (1, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert np.array_equal(x[0].numpy(), expect) and int(y) == records[1].frame_scores[1]
    assert ds.labels.tolist() == np.concatenate([r.frame_scores for r in records]).tolist()
    # Decoded once: the cache holds the same array on the next access.
    assert ds.cache.frames(records[0]) is ds.cache.frames(records[0]) and ds.cache.nbytes == 16 * 64 * 64


def test_frame_dataset_with_setting2_indices(records: list) -> None:
    kept = {r.video_id: idx for r, idx in setting2(records, 1)}
    ds = FrameDataset(records, (32, 32), indices=kept)
    assert len(ds) == 16 - 2 * 2  # one transition per video: frames t-1 and t dropped


def test_clip_dataset_windows_and_video_labels(records: list) -> None:
    cache = FrameCache((48, 64))
    whole = ClipDataset(records, (48, 64), cache=cache)
    x, y, clin = whole[0]
    assert x.shape == (8, 1, 48, 64) and y.tolist() == records[0].frame_scores.tolist()
    assert clin.tolist() == [1, 1, 2, 1, 1]
    win = ClipDataset(records, (48, 64), clip_len=4, stride=2, cache=cache)
    assert len(win) == 2 * 3 and win[1][1].tolist() == records[0].frame_scores[2:6].tolist()
    with pytest.raises(ValueError, match="clip_len"):
        ClipDataset(records, (48, 64), clip_len=0)


def test_mask_dataset_letterboxes_masks_with_background_padding(records: list) -> None:
    ds = MaskDataset(records, (260, 200))
    assert len(ds) == 4
    x, m = ds[0]
    assert x.shape == (1, 260, 200) and m.shape == (260, 200) and m.dtype == torch.int64
    assert float(x.min()) == -1.0  # symmetric scaling, zero padding reads -1
    # 120x160 into 260x200: scale 1.25, 150 rows centred → 55 padding rows above and below.
    assert (m[:55] == 4).all() and (m[-55:] == 4).all()
    assert set(m.unique().tolist()) - {4} == {records[0].frame_scores[2]}


def test_letterbox_mask_geometry_matches_the_frame() -> None:
    mask = np.full((100, 50), 4, np.uint8)
    mask[:, :25] = 1
    out = letterbox_mask(mask, (50, 50))
    assert (
        out.shape == (50, 50)
        and (out[:, :12] == 4).all()
        and (out[:, 13:25] == 1).all()
        and (out[:, 38:] == 4).all()
    )
