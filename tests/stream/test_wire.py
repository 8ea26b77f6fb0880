"""The wire schema: examples validate and round-trip; each kind of violation is named clearly."""

from __future__ import annotations

import copy
import re

import msgpack
import numpy as np
import pytest

from stream import wire


@pytest.mark.parametrize("topic", wire.TOPICS)
def test_examples_round_trip(topic: str) -> None:
    msg, payloads = wire.example(topic, seq=7)
    parts = wire.encode(topic, msg, payloads)
    assert parts[0] == topic.encode()
    got_topic, got, got_payloads = wire.decode(parts)
    assert (got_topic, got, got_payloads) == (topic, msg, payloads)


def test_numpy_values_are_converted_not_pickled() -> None:
    msg, _ = wire.example("video")
    msg["probs"] = np.array([0.25, 0.25, 0.25, 0.25], dtype=np.float32)
    msg["score"] = np.int64(1)
    _, got, _ = wire.decode(wire.encode("video", msg))
    assert got["probs"] == [0.25] * 4 and got["score"] == 1
    with pytest.raises(TypeError, match="msgpack types only"):
        wire.pack({"x": object()})


def _broken(topic: str, edit) -> dict:
    msg, _ = wire.example(topic)
    msg = copy.deepcopy(msg)
    edit(msg)
    return msg


@pytest.mark.parametrize(
    ("topic", "edit", "needle"),
    [
        ("frame", lambda m: m.pop("probs"), "frame.probs: required field is missing"),
        ("frame", lambda m: m.__setitem__("probs", [0.5, 0.5, 0.5, 0.5]), "must sum to 1"),
        ("frame", lambda m: m.__setitem__("probs", [1.0, 0.0, 0.0]), "expected 4 items"),
        ("frame", lambda m: m.__setitem__("score", 4), "frame.score: must be <= 3"),
        ("frame", lambda m: m.__setitem__("score", True), "expected an integer"),
        ("frame", lambda m: m["boxes"][1].pop(), "frame.boxes[1]: expected 4 items"),
        ("frame", lambda m: m["stages_ns"].pop("infer"), "frame.stages_ns.infer: required"),
        ("frame", lambda m: m.__setitem__("t_publish_ns", 1), "earlier than t_capture_ns"),
        ("frame", lambda m: m.__setitem__("seq", -1), "frame.seq: must be >= 0"),
        ("video", lambda m: m.__setitem__("kind", "median"), "video.kind: must be one of"),
        ("video", lambda m: m.__setitem__("probs", [float("nan")] * 4), "must be finite"),
        ("seg", lambda m: m["class_map"].__setitem__("encoding", "raw"), "seg.class_map.encoding"),
        ("status", lambda m: m["source"].__setitem__("state", "dancing"), "status.source.state"),
        ("status", lambda m: m["lanes"].pop("segmentation"), "status.lanes.segmentation: required"),
        ("status", lambda m: m.pop("v"), "status.v: required field is missing"),
        ("status", lambda m: m.__setitem__("stream_id", 3), "status.stream_id: expected a string"),
    ],
)
def test_violations_are_named(topic: str, edit, needle: str) -> None:
    with pytest.raises(wire.WireError, match=re.escape(needle)):
        wire.validate(topic, _broken(topic, edit))


def test_newer_version_is_rejected_distinctly() -> None:
    msg, _ = wire.example("frame")
    msg["v"] = wire.SCHEMA_VERSION + 1
    with pytest.raises(wire.WireVersionError, match="newer than this reader"):
        wire.validate("frame", msg)
    # ... even when the rest of a future message is unrecognisable
    with pytest.raises(wire.WireVersionError):
        wire.validate("video", {"v": wire.SCHEMA_VERSION + 1})


def test_extra_fields_are_accepted() -> None:
    msg, _ = wire.example("video")
    msg["future_field"] = {"anything": [1, 2]}
    wire.validate("video", msg)


def test_unknown_topic_and_garbage_parts() -> None:
    msg, _ = wire.example("video")
    with pytest.raises(wire.WireError, match="unknown topic 'audio'"):
        wire.validate("audio", msg)
    with pytest.raises(wire.WireError, match="at least 2 parts"):
        wire.decode([b"video"])
    with pytest.raises(wire.WireError, match="not a msgpack map"):
        wire.decode([b"video", b"\xc1\xc1\xc1"])
    with pytest.raises(wire.WireError, match="must be a map"):
        wire.decode([b"video", msgpack.packb([1, 2, 3])])
    with pytest.raises(wire.WireError, match="not ASCII"):
        wire.decode([b"\xff\xfe", msgpack.packb({})])


def test_missing_payload_is_detected() -> None:
    msg, payloads = wire.example("seg")
    with pytest.raises(wire.WireError, match="refers to payload 1"):
        wire.decode(wire.encode("seg", msg, payloads, check=False)[:-1])


def test_exam_fields_are_checked_through_the_one_validator() -> None:
    msg, _ = wire.example("exam")
    assert msg["zones"] and msg["n_zones"] == len(msg["zones"])
    del msg["zones"]
    with pytest.raises(wire.WireError, match=r"exam\.zones: required field is missing"):
        wire.validate("exam", msg)
