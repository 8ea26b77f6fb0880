"""The engine in-process with a list-backed source (same interface as the capture process): clip
resets mid-stream, the video hooks and extra status fields later features rely on, lossless order."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from stream.pipeline import EngineConfig, StreamEngine
from stream.recorder import read_results


def _free() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    from engines import testing

    root = tmp_path_factory.mktemp("models")
    testing.make_tiny_onnx(root / "frame", "frame", size_hw=(32, 32), torch_export=False)
    return root


def test_reset_hooks_and_status_fields(models: Path, tmp_path: Path, list_source) -> None:
    cfg = EngineConfig(source=None, engines_dir=models, pub=_free(), ctrl=None, record_dir=tmp_path,
                       aggregator="argmax_mean", max_batch=4, stream_id="inproc")
    src = list_source(40)
    engine = StreamEngine(cfg, source=src)
    seen: list[tuple[int, int, int]] = []

    def hook(video: dict) -> None:
        seen.append((video["seq"], video["clip"], video["frames"]))
        if video["seq"] == 19:
            assert engine.reset_clip() == 1

    engine.on_video.append(hook)
    engine.status_fields["exam"] = lambda: {"state": "idle"}
    assert engine.run() == 0 and src.stopped
    assert [s for s, _, _ in seen] == list(range(40))
    assert [(c, n) for s, c, n in seen if s in (0, 19, 20, 39)] == [(0, 1), (0, 20), (1, 1), (1, 20)]
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True)
    frames = rec.topic("frame")
    assert [f.msg["clip"] for f in frames] == [0] * 20 + [1] * 20
    assert max(f.msg["batch"] for f in frames) <= 4
    # frames are scored against the argmax_mean of their own clip only
    probs = np.array([f.msg["probs"] for f in frames[20:]])
    assert np.allclose(rec.topic("video")[-1].msg["probs"], probs.mean(axis=0), atol=1e-9)
    last = rec.topic("status")[-1].msg
    assert last["exam"] == {"state": "idle"} and last["source"]["state"] == "finished"
    assert last["frames_scored"] == 40 and last["last_frame_seq"] == 39
    assert all(len(f.msg["boxes"]) == 2 and f.msg["roi"] == [5, 6, 50, 40] for f in frames)


def test_status_reports_the_training_domain_and_warns_on_real_video(models: Path, tmp_path: Path,
                                                                    list_source) -> None:
    """Lane ``domain``/``dataset`` come from the manifests; ``domain_warning`` is set when the frame
    model is synthetic-only and the source is real video (any kind but the simulator)."""
    from stream.capture import SourceSpec
    from stream.pipeline import REAL_SOURCE_KINDS, domain_warning

    last = {}
    for spec in (SourceSpec("clip", path="exam.mp4"), SourceSpec("synthetic")):
        out = tmp_path / spec.kind
        cfg = EngineConfig(source=spec, engines_dir=models, pub=_free(), ctrl=None, record_dir=out,
                           aggregator="argmax_mean", stream_id=f"dom-{spec.kind}")  # fmt: skip
        assert StreamEngine(cfg, source=list_source(3)).run() == 0
        rec = read_results(next(out.glob("*.lusr.msgpack")), validate=True)
        last[spec.kind] = rec.topic("status")[-1].msg
    clip, synthetic = last["clip"], last["synthetic"]
    # the fixture's manifest says synthetic_only and no domain: read as "synthetic"; no dataset given
    assert clip["lanes"]["scoring"]["domain"] == "synthetic" and clip["lanes"]["scoring"]["dataset"] is None
    assert clip["lanes"]["segmentation"]["domain"] is None  # no segmentation model: lane off
    assert clip["domain_warning"] is not None and "real video (clip)" in clip["domain_warning"]
    assert "synthetic data only" in clip["domain_warning"] and "not meaningful" in clip["domain_warning"]
    assert synthetic["domain_warning"] is None
    assert all(domain_warning("synthetic", k) for k in REAL_SOURCE_KINDS)
    assert domain_warning("real", "device") is None and domain_warning(None, "clip") is None
    assert domain_warning("synthetic", "unknown") is None  # an in-process source without a spec


def test_lane_domain_of_an_ensemble() -> None:
    from stream.lanes import combined_dataset, combined_domain

    assert combined_domain(["synthetic"] * 3) == "synthetic"
    assert combined_domain(["synthetic", "real"]) == "mixed"
    assert combined_domain(["real", "unknown"]) == "unknown"
    assert combined_dataset(["a", None, "a", "b"]) == "a; b" and combined_dataset([None]) is None
