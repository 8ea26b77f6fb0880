"""The lus-stream wire format: topics, the schema of every message, one validator, encode/decode.

A message on the PUB socket is a ZeroMQ multipart message::

    part 0   topic, ASCII (``frame`` | ``video`` | ``seg`` | ``status`` | ``exam`` | ``image``)
    part 1   a msgpack map (string keys), the fields below
    part 2…  optional binary payloads (PNG/JPEG bytes) that the map refers to by index

Every map carries ``v`` (:data:`SCHEMA_VERSION`), ``stream_id``, ``seq``, ``t_capture_ns`` and
``t_publish_ns`` (``time.monotonic_ns`` of this host: comparable across its processes). The
schema is documented field by field in ``docs/wire.md``; :func:`validate` enforces it and is the
single validator used by the publisher's tests, the recorder reader and ``lus-view``.

Compatibility rule: a reader accepts extra fields it does not know (additive changes keep the
version); a message whose ``v`` is newer than this module's is rejected with
:class:`WireVersionError` so that a display can say "upgrade" rather than misdraw. Nothing on the
wire is ever unpickled: msgpack only, with string map keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import numpy as np

from stream import exam_schema  # a leaf module (no stream imports): the exam protocols' zone tables

SCHEMA_VERSION = 1
TOPICS = ("frame", "video", "seg", "status", "exam", "image")
N_SCORES = 4
SEG_CLASSES = ("0", "1", "2", "3", "BG")
STAGES_FRAME = ("wait", "preprocess", "infer", "aggregate", "publish")
AGGREGATOR_KINDS = ("uninorm", "max_argmax", "argmax_mean")
SECURITY_MODES = ("loopback", "curve", "insecure")
SOURCE_STATES = ("starting", "running", "lost", "reconnecting", "finished", "failed", "stopped")
MAX_PARTS = 8


class WireError(ValueError):
    """A message does not follow the wire schema; the text names the topic, field and problem."""


class WireVersionError(WireError):
    """A message was written by a newer schema version than this reader understands."""


# --------------------------------------------------------------------------- field checkers
Check = Callable[[Any, str], None]


def _fail(path: str, problem: str) -> None:
    raise WireError(f"{path}: {problem}")


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(x: Any, path: str) -> None:
        if isinstance(x, bool) or not isinstance(x, int):
            _fail(path, f"expected an integer, got {type(x).__name__}")
        if lo is not None and x < lo:
            _fail(path, f"must be >= {lo}, got {x}")
        if hi is not None and x > hi:
            _fail(path, f"must be <= {hi}, got {x}")

    return check


def _num(lo: float | None = None, hi: float | None = None) -> Check:
    def check(x: Any, path: str) -> None:
        if isinstance(x, bool) or not isinstance(x, int | float):
            _fail(path, f"expected a number, got {type(x).__name__}")
        if not math.isfinite(x):
            _fail(path, f"must be finite, got {x}")
        if lo is not None and x < lo:
            _fail(path, f"must be >= {lo}, got {x}")
        if hi is not None and x > hi:
            _fail(path, f"must be <= {hi}, got {x}")

    return check


def _str(choices: Sequence[str] | None = None) -> Check:
    def check(x: Any, path: str) -> None:
        if not isinstance(x, str):
            _fail(path, f"expected a string, got {type(x).__name__}")
        if choices is not None and x not in choices:
            _fail(path, f"must be one of {list(choices)}, got {x!r}")

    return check


def _bool(x: Any, path: str) -> None:
    if not isinstance(x, bool):
        _fail(path, f"expected true/false, got {type(x).__name__}")


def _nullable(inner: Check) -> Check:
    def check(x: Any, path: str) -> None:
        if x is not None:
            inner(x, path)

    return check


def _list(item: Check, length: int | None = None, min_len: int = 0) -> Check:
    def check(x: Any, path: str) -> None:
        if not isinstance(x, list | tuple):
            _fail(path, f"expected a list, got {type(x).__name__}")
        if length is not None and len(x) != length:
            _fail(path, f"expected {length} items, got {len(x)}")
        if len(x) < min_len:
            _fail(path, f"expected at least {min_len} items, got {len(x)}")
        for i, v in enumerate(x):
            item(v, f"{path}[{i}]")

    return check


def _map(fields: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    def check(x: Any, path: str) -> None:
        if not isinstance(x, dict):
            _fail(path, f"expected a map, got {type(x).__name__}")
        _check_fields(x, fields, optional or {}, path)

    return check


def _values(item: Check) -> Check:
    """A map from string keys to values that all pass ``item``."""

    def check(x: Any, path: str) -> None:
        if not isinstance(x, dict):
            _fail(path, f"expected a map, got {type(x).__name__}")
        for k, v in x.items():
            if not isinstance(k, str):
                _fail(path, f"keys must be strings, got {k!r}")
            item(v, f"{path}.{k}")

    return check


def _probs(n: int) -> Check:
    items = _list(_num(0.0, 1.0), length=n)

    def check(x: Any, path: str) -> None:
        items(x, path)
        total = float(sum(x))
        if abs(total - 1.0) > 1e-3:
            _fail(path, f"probabilities must sum to 1 (±1e-3), got {total:.6f}")

    return check


def _tie(x: Any, path: str) -> None:
    """``video.tie``: [] when one score leads, else the tied scores (2-4 distinct, ascending)."""
    _list(_int(0, N_SCORES - 1))(x, path)
    if len(x) == 1 or list(x) != sorted(set(x)):
        _fail(path, f"must be [] or 2-{N_SCORES} distinct scores in ascending order, got {list(x)}")


def _check_fields(msg: dict, fields: dict[str, Check], optional: dict[str, Check], path: str) -> None:
    for name, check in fields.items():
        if name not in msg:
            _fail(f"{path}.{name}", "required field is missing")
        check(msg[name], f"{path}.{name}")
    for name, check in optional.items():
        if name in msg:
            check(msg[name], f"{path}.{name}")


_point = _list(_num(), length=2)
_polygon = _list(_point, length=4)
_roi = _list(_int(0), length=4)
_hw = _list(_int(1), length=2)
_ns = _int(0)


def _image_ref(encodings: Sequence[str]) -> Check:
    return _map({"payload": _int(0), "encoding": _str(encodings), "hw": _hw})


COMMON: dict[str, Check] = {
    "v": _int(1),
    "stream_id": _str(),
    "seq": _int(0),
    "t_capture_ns": _ns,
    "t_publish_ns": _ns,
}

LANE_STATES = ("ok", "lost")
_lane_status = _map(
    {"enabled": _bool, "fps": _num(0.0), "model": _nullable(_str()), "backend": _nullable(_str())},
    {
        "reason": _nullable(_str()),
        "runs": _int(0),
        "members": _int(0),
        "mc_samples": _int(0),
        "every": _int(1),
        "threads": _int(1),
        # what the lane's model was trained on (its manifest's training.domain / training.dataset)
        "domain": _nullable(_str()),  # "synthetic" | "real" | "mixed" | "unknown"
        "dataset": _nullable(_str()),
        # a remote (Triton) model: "ok", or "lost" while the server or the model is unreachable
        "state": _str(LANE_STATES),
        "lost_frames": _int(0),  # frames this lane could not run because its model was unreachable
    },
)

# ``exam``: the exam protocol's zone table (stream.exam publishes it; the zone tables are in
# stream.exam_schema). This module owns the schema, so it never imports stream.exam.
_probs_or_none = _nullable(_probs(N_SCORES))
_seq_or_none = _nullable(_int(0))
_zone_score = _nullable(_int(0, exam_schema.MAX_ZONE_SCORE))
_zone_entry = _map(
    {"zone": _str(), "score": _zone_score, "probs": _probs_or_none, "frames": _int(0),
     "first_seq": _seq_or_none, "last_seq": _seq_or_none},
    {"label": _str(), "clip": _seq_or_none, "frozen_unix_s": _nullable(_num(0.0))},
)
EXAM_REQUIRED: dict[str, Check] = {
    "exam_id": _nullable(_str()),
    "state": _str(exam_schema.EXAM_STATES),
    "protocol": _str(tuple(exam_schema.PROTOCOLS)),
    "zone": _nullable(_str()),
    "zones": _list(_zone_entry),
    "scored": _int(0),
    "n_zones": _int(1),
    "partial_total": _int(0),
    "total": _nullable(_int(0)),
    "max_total": _int(0),
}
EXAM_OPTIONAL: dict[str, Check] = {
    "event": _str(exam_schema.EVENTS),
    "patient": _nullable(_str()),
    "patient_id_stored": _bool,
    "current": _map({}, {"score": _zone_score, "probs": _probs_or_none, "frames": _int(0),
                         "first_seq": _seq_or_none, "last_seq": _seq_or_none, "clip": _seq_or_none}),
    "started_unix_s": _nullable(_num(0.0)),
    "stopped_unix_s": _nullable(_num(0.0)),
}


def _check_exam_totals(msg: dict) -> None:
    """Cross-field checks of an ``exam`` map: the totals are the sum of the zone scores."""
    scored = [z for z in msg["zones"] if z["score"] is not None]
    if msg["partial_total"] != sum(z["score"] for z in scored):
        raise WireError("exam.partial_total: does not equal the sum of the zone scores")
    complete = len(scored) == len(msg["zones"])
    if msg["total"] is not None and (not complete or msg["total"] != msg["partial_total"]):
        raise WireError("exam.total: set although not every zone is scored, or differs from the sum")


SCHEMAS: dict[str, tuple[dict[str, Check], dict[str, Check]]] = {
    # topic: (required fields, optional fields) beyond COMMON
    "frame": (
        {
            "probs": _probs(N_SCORES),
            "score": _int(0, N_SCORES - 1),
            "boxes": _nullable(_list(_polygon, length=2)),
            "roi": _roi,
            "source_hw": _hw,
            "stages_ns": _map({s: _ns for s in STAGES_FRAME}),
            "batch": _int(1),
        },
        {"clip": _int(0)},
    ),
    "video": (
        {
            "probs": _probs(N_SCORES),
            "score": _int(0, N_SCORES - 1),
            "kind": _str(AGGREGATOR_KINDS),
            "window": _nullable(_int(1)),
            "frames": _int(0),
            "clip": _int(0),
        },
        {"window_s": _nullable(_num(0.0)), "tie": _tie},
    ),
    "seg": (
        {
            "class_map": _image_ref(("png",)),
            "classes": _list(_str(), length=len(SEG_CLASSES)),
            "roi": _roi,
            "source_hw": _hw,
            "uncertainty": _nullable(
                _map(
                    {"payload": _int(0), "encoding": _str(("png",)), "hw": _hw, "scale": _num(0.0),
                     "samples": _int(2)}
                )
            ),
            "rate_hz": _num(0.0),
            "members": _int(1),
            "stages_ns": _map({"wait": _ns, "preprocess": _ns, "infer": _ns, "publish": _ns}),
        },
        {"class_fractions": _list(_num(0.0, 1.0), length=len(SEG_CLASSES))},
    ),
    "status": (
        {
            "uptime_s": _num(0.0),
            "input_fps": _num(0.0),
            "lanes": _map({"scoring": _lane_status, "segmentation": _lane_status}),
            "drops": _map(
                {"capture": _int(0), "publish": _int(0), "segmentation_skipped": _int(0)},
                {"roi_search": _int(0), "scoring_lost": _int(0)},
            ),
            "latency_ms": _map(
                {"p50": _nullable(_num(0.0)), "p95": _nullable(_num(0.0)), "p99": _nullable(_num(0.0)),
                 "n": _int(0), "window_s": _num(0.0)}
            ),
            "source": _map(
                {"kind": _str(), "state": _str(SOURCE_STATES), "id": _str(), "error": _nullable(_str())},
                {"read": _int(0), "fps": _num(0.0)},
            ),
            "frames_scored": _int(0),
            "last_frame_seq": _int(-1),
            "aggregator": _map(
                {"kind": _str(AGGREGATOR_KINDS), "window": _nullable(_int(1))},
                {"window_s": _nullable(_num(0.0))},
            ),
            "security": _str(SECURITY_MODES),
        },
        {"recording": _nullable(_str()), "exam": _nullable(_values(lambda x, p: None)),
         "domain_warning": _nullable(_str())},
    ),
    "exam": (EXAM_REQUIRED, EXAM_OPTIONAL),  # + _check_exam_totals (in validate)
    # Optional ROI-cropped frame as JPEG (``--publish-frames``), for displays on another host.
    "image": ({"image": _image_ref(("jpeg", "png")), "roi": _roi, "source_hw": _hw}, {}),
}


def _payload_indices(topic: str, msg: dict) -> list[int]:
    if topic == "seg":
        refs = [msg["class_map"]["payload"]]
        if msg.get("uncertainty") is not None:
            refs.append(msg["uncertainty"]["payload"])
        return refs
    if topic == "image":
        return [msg["image"]["payload"]]
    return []


def validate(topic: str, msg: Any, payloads: Sequence[bytes] | None = None) -> None:
    """Check one message against the schema; raise :class:`WireError` naming what is wrong.

    ``payloads`` (the binary parts after the map), when given, are checked against the payload
    indices the map refers to. A newer ``v`` raises :class:`WireVersionError`.
    """
    if topic not in TOPICS:
        raise WireError(f"unknown topic {topic!r}: expected one of {list(TOPICS)}")
    if not isinstance(msg, dict):
        raise WireError(f"{topic}: the message must be a map, got {type(msg).__name__}")
    v = msg.get("v")
    if isinstance(v, int) and not isinstance(v, bool) and v > SCHEMA_VERSION:
        raise WireVersionError(
            f"{topic}: message schema v{v} is newer than this reader (v{SCHEMA_VERSION}): upgrade lus-stream"
        )
    _check_fields(msg, COMMON, {}, topic)
    required, optional = SCHEMAS[topic]
    _check_fields(msg, required, optional, topic)
    if topic == "exam":
        _check_exam_totals(msg)
    if topic == "video" and msg.get("tie") and msg["score"] != msg["tie"][0]:
        raise WireError(f"video.score: {msg['score']} on a tie must be the lowest tied score {msg['tie'][0]}")
    if msg["t_publish_ns"] < msg["t_capture_ns"]:
        raise WireError(
            f"{topic}.t_publish_ns: earlier than t_capture_ns ({msg['t_publish_ns']} < {msg['t_capture_ns']})"
        )
    if payloads is not None:
        for idx in _payload_indices(topic, msg):
            if idx >= len(payloads):
                raise WireError(f"{topic}: refers to payload {idx} but the message has {len(payloads)}")


# --------------------------------------------------------------------------- encode / decode
def _default(obj: Any) -> Any:
    """msgpack hook: numpy scalars and arrays become plain numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot put {type(obj).__name__} on the wire (msgpack types only, no pickle)")


def pack(obj: Any) -> bytes:
    """msgpack bytes of one map (numpy values converted)."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Inverse of :func:`pack`; raises :class:`WireError` on bytes that are not msgpack."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError) as err:
        raise WireError(f"not a msgpack map: {err}") from err


def encode(topic: str, msg: dict, payloads: Sequence[bytes] = (), check: bool = True) -> list[bytes]:
    """Multipart frames for one message; validated first unless ``check`` is false."""
    payloads = [bytes(p) for p in payloads]
    data = pack(msg)
    if check:  # validate exactly what goes on the wire (numpy values already converted)
        validate(topic, unpack(data), payloads)
    return [topic.encode("ascii"), data, *payloads]


def decode(parts: Sequence[bytes], check: bool = True) -> tuple[str, dict, list[bytes]]:
    """(topic, map, payloads) from multipart frames; validated unless ``check`` is false."""
    if len(parts) < 2:
        raise WireError(f"a message needs at least 2 parts (topic, map), got {len(parts)}")
    if len(parts) > MAX_PARTS:
        raise WireError(f"a message has at most {MAX_PARTS} parts, got {len(parts)}")
    try:
        topic = bytes(parts[0]).decode("ascii")
    except UnicodeDecodeError as err:
        raise WireError(f"topic is not ASCII: {bytes(parts[0])[:32]!r}") from err
    msg = unpack(bytes(parts[1]))
    payloads = [bytes(p) for p in parts[2:]]
    if check:
        validate(topic, msg, payloads)
    elif not isinstance(msg, dict):
        raise WireError(f"{topic}: the message must be a map, got {type(msg).__name__}")
    return topic, msg, payloads


def header(stream_id: str, seq: int, t_capture_ns: int, t_publish_ns: int = 0) -> dict[str, Any]:
    """The common fields every map starts with (``t_publish_ns`` is filled by the publisher)."""
    return {
        "v": SCHEMA_VERSION,
        "stream_id": stream_id,
        "seq": int(seq),
        "t_capture_ns": int(t_capture_ns),
        "t_publish_ns": int(t_publish_ns),
    }


def example(topic: str, seq: int = 0, stream_id: str = "example") -> tuple[dict[str, Any], list[bytes]]:
    """A valid message of ``topic`` with its payloads (for docs, tests and viewer development)."""
    import cv2  # local: only the examples need image encoding

    t0 = 1_000_000_000 + seq * 33_000_000
    msg = header(stream_id, seq, t0, t0 + 20_000_000)
    payloads: list[bytes] = []
    roi, source_hw = [40, 30, 200, 260], [320, 280]
    if topic == "frame":
        msg |= {
            "probs": [0.1, 0.2, 0.6, 0.1],
            "score": 2,
            "boxes": [[[60.0, 50.0], [200.0, 50.0], [200.0, 190.0], [60.0, 190.0]],
                      [[80.0, 70.0], [180.0, 70.0], [180.0, 170.0], [80.0, 170.0]]],
            "roi": roi,
            "source_hw": source_hw,
            "stages_ns": {"wait": 1_000_000, "preprocess": 2_000_000, "infer": 15_000_000,
                          "aggregate": 10_000, "publish": 1_990_000},
            "batch": 1,
            "clip": 0,
        }
    elif topic == "video":
        msg |= {"probs": [0.05, 0.15, 0.7, 0.1], "score": 2, "tie": [], "kind": "uninorm", "window": None,
                "frames": seq + 1, "clip": 0}
    elif topic == "seg":
        cls = np.full((260, 200), 4, np.uint8)
        cls[100:160, 50:150] = 2
        unc = np.zeros((260, 200), np.uint8)
        payloads = [cv2.imencode(".png", cls)[1].tobytes(), cv2.imencode(".png", unc)[1].tobytes()]
        msg |= {
            "class_map": {"payload": 0, "encoding": "png", "hw": [260, 200]},
            "classes": list(SEG_CLASSES),
            "roi": roi,
            "source_hw": source_hw,
            "uncertainty": {"payload": 1, "encoding": "png", "hw": [260, 200], "scale": 0.5 / 255,
                            "samples": 8},
            "rate_hz": 2.5,
            "members": 3,
            "stages_ns": {"wait": 0, "preprocess": 1_000_000, "infer": 15_000_000, "publish": 4_000_000},
        }
    elif topic == "status":
        lane = {"enabled": True, "fps": 30.0, "model": "regstn 1.0", "backend": "onnxruntime",
                "domain": "synthetic", "dataset": "synthetic LUS (synth simulator)"}
        msg |= {
            "uptime_s": 12.5,
            "input_fps": 30.0,
            "lanes": {"scoring": lane, "segmentation": lane | {"fps": 2.5, "members": 3, "mc_samples": 0}},
            "drops": {"capture": 0, "publish": 0, "segmentation_skipped": 0, "roi_search": 0},
            "latency_ms": {"p50": 20.0, "p95": 25.0, "p99": 30.0, "n": 150, "window_s": 5.0},
            "source": {"kind": "synthetic", "state": "running", "id": "synthetic:0", "error": None},
            "frames_scored": 375,
            "last_frame_seq": 374,
            "aggregator": {"kind": "uninorm", "window": None},
            "security": "loopback",
        }
    elif topic == "image":
        img = np.zeros((260, 200), np.uint8)
        payloads = [cv2.imencode(".jpg", img)[1].tobytes()]
        msg |= {"image": {"payload": 0, "encoding": "jpeg", "hw": [260, 200]}, "roi": roi,
                "source_hw": source_hw}
    elif topic == "exam":  # an exam just started (what stream.exam.ExamSession publishes then)
        zones = exam_schema.PROTOCOLS[exam_schema.DEFAULT_PROTOCOL]
        empty = {"probs": None, "frames": 0, "first_seq": None, "last_seq": None, "clip": None}
        msg |= {
            "exam_id": "example-exam", "state": "running", "event": "start",
            "protocol": exam_schema.DEFAULT_PROTOCOL, "patient": None, "patient_id_stored": False,
            "zone": None,
            "zones": [{"zone": z, "label": exam_schema.zone_label(z), "score": None, **empty,
                       "frozen_unix_s": None} for z in zones],
            "current": {"score": None, **empty}, "scored": 0, "n_zones": len(zones), "partial_total": 0,
            "total": None, "max_total": exam_schema.max_total(exam_schema.DEFAULT_PROTOCOL),
            "started_unix_s": 1_700_000_000.0, "stopped_unix_s": None,
        }
    else:
        raise WireError(f"unknown topic {topic!r}: expected one of {list(TOPICS)}")
    validate(topic, msg, payloads)
    return msg, payloads
