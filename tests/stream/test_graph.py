"""The engine's graph (stream.pipeline.compose): every stage and connection with its queue policy, the
README's dataflow picture box for box, and stage timings taken before anything is published."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from engines import testing
from stream.pipeline import (
    DIRECT,
    DROP_OLDEST,
    IN_ORDER,
    LATEST_ONLY,
    LOSSLESS,
    NON_BLOCKING,
    REQUEST_REPLY,
    TIMER,
    EngineConfig,
    FrameSource,
    StreamEngine,
    compose,
    describe,
)
from stream.recorder import read_results

REPO = Path(__file__).resolve().parents[2]
STAGES = {"source", "prepare", "score", "segment", "aggregate", "exam", "publish", "record", "status",
          "control", "displays"}


def _free() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    testing.make_tiny_onnx(root / "frame", "frame", size_hw=(32, 32), torch_export=False)
    testing.make_tiny_onnx(root / "seg", "seg", size_hw=(32, 32), torch_export=False)
    return root


def test_every_stage_and_connection_with_its_policy(models: Path, list_source) -> None:
    src = list_source(1)
    assert isinstance(src, FrameSource)
    g = compose(EngineConfig(source=None, engines_dir=models, pub=_free(), ctrl=_free()), source=src)
    try:
        assert set(g.stages) == STAGES
        edges = {(c.src, c.dst): c.policy for c in g.connections}
        assert edges[("source", "prepare")] == DROP_OLDEST  # an unknown (in-process) source is not lossless
        assert edges[("prepare", "segment")] == LATEST_ONLY and edges[("prepare", "score")] == DIRECT
        assert edges[("score", "aggregate")] == DIRECT and edges[("aggregate", "exam")] == DIRECT
        assert edges[("publish", "record")] == IN_ORDER and edges[("publish", "displays")] == NON_BLOCKING
        assert edges[("control", "aggregate")] == edges[("control", "exam")] == REQUEST_REPLY
        assert edges[("status", "publish")] == TIMER
        text = describe(g)
        assert all(f"{c.src} → {c.dst}" in text and c.policy in text for c in g.connections)
        assert g.exam is not None and g.control is not None and "exam_start" in g.control.commands
    finally:
        g.control.close()
        g.publisher.close()


def test_a_lossless_file_source_is_stated(models: Path, list_source) -> None:
    from stream.capture import SourceSpec

    spec = SourceSpec("clip", path="x.mp4", as_fast_as_possible=True)
    g = compose(EngineConfig(source=spec, engines_dir=models, pub=_free(), ctrl=None, exam=False),
                source=list_source(1))
    try:
        assert {(c.src, c.dst): c.policy for c in g.connections}[("source", "prepare")] == LOSSLESS
        assert g.exam is None and "exam" not in g.stages
    finally:
        g.publisher.close()


def test_the_readme_picture_shows_the_graph_box_for_box() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("```\n [source]"):]
    block = block[: block.index("\n```", 4)]
    assert set(re.findall(r"\[([a-z]+)\]", block)) == STAGES
    for words in ("drop-oldest ring", "lossless ring", "latest-only slot", "direct call", "1/s timer",
                  "publish order", "PUB"):
        assert words in block, words


def test_stage_timings_are_taken_before_anything_is_published(models: Path, tmp_path: Path,
                                                             list_source) -> None:
    """A slow socket (20 ms per message) must show up in `publish`, never in a later frame's `aggregate`;
    the five stages still add up exactly to t_publish - t_capture."""
    cfg = EngineConfig(source=None, engines_dir=models, pub=_free(), ctrl=None, record_dir=tmp_path,
                       max_batch=4, exam=False)
    engine = StreamEngine(cfg, source=list_source(8))
    publish = engine.g.publisher.publish

    def slow(topic, msg, payloads=(), ready_ns=None):
        time.sleep(0.02)
        return publish(topic, msg, payloads, ready_ns)

    engine.g.publisher.publish = slow
    assert engine.run() == 0
    frames = [r.msg for r in read_results(next(tmp_path.glob("*.lusr.msgpack"))).topic("frame")]
    assert [f["batch"] for f in frames] == [4] * 8
    for i, f in enumerate(frames):
        st = f["stages_ns"]
        assert sum(st.values()) == f["t_publish_ns"] - f["t_capture_ns"]
        assert st["aggregate"] < 10_000_000, (i, st)  # its own fold only: well under one slow publish
        # frame i of its batch waited for the i earlier frames' frame + video messages (2 × 20 ms each)
        assert st["publish"] >= (i % 4) * 2 * 20_000_000 + 20_000_000 - 2_000_000, (i, st)
