"""Wire messages built from stage outputs: one pure function per topic, next to the schemas in
:mod:`stream.wire` (which owns every field's type and meaning; ``docs/wire.md`` documents them).

Each function takes what a stage produced and returns the map (and, where the topic has them, the
binary payloads); none of them publishes, times or locks anything. The engine (``stream.pipeline``)
measures its stage timings first, then builds and publishes.

Adding a field to a topic: the schema in ``stream.wire.SCHEMAS``, the builder here, the row in
``docs/wire.md`` (and the viewer if it should show it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream import wire
from stream.frames import Frame
from stream.lanes import UNCERTAINTY_SCALE, FrameResult, SegResult, encode_jpeg, encode_png


@dataclass(frozen=True)
class ClipState:
    """The clip aggregate after one frame was folded in (the aggregate stage's output)."""

    probs: np.ndarray  # [4] clip probabilities
    score: int
    tie: list[int]  # [] when one score leads, else the tied scores (score = the first)
    frames: int  # frames in the aggregate
    clip: int  # clip number (0, +1 at every reset)
    t_done_ns: int  # when this frame's fold finished
    aggregate_ns: int  # this frame's own clip-aggregator fold


@dataclass(frozen=True)
class AggregatorSettings:
    """What the ``video`` message says about the aggregator (``--aggregator``, ``--window``)."""

    kind: str
    window: int | None
    window_s: float | None


def frame_message(stream_id: str, fr: Frame, res: FrameResult, clip: ClipState) -> dict[str, Any]:
    """``frame``: the frame's scores and STN boxes; ``stages_ns.publish`` is filled by the publisher."""
    msg = wire.header(stream_id, fr.seq, fr.t_capture_ns)
    msg |= {
        "probs": res.probs, "score": res.score, "boxes": res.boxes,
        "roi": list(fr.roi), "source_hw": list(fr.source_hw),
        "stages_ns": {"wait": max(0, res.t_start_ns - fr.t_capture_ns),
                      "preprocess": res.t_inputs_ns - res.t_start_ns,
                      "infer": res.t_inferred_ns - res.t_inputs_ns,
                      "aggregate": _postprocess_ns(res) + clip.aggregate_ns, "publish": 0},
        "batch": res.batch, "clip": clip.clip,
    }  # fmt: skip
    return msg


def _postprocess_ns(res: FrameResult) -> int:
    """The lane's post-processing of the batch's outputs (probabilities, STN boxes), per batch."""
    return max(0, res.t_done_ns - res.t_inferred_ns) if res.t_done_ns else 0


def frame_ready_ns(res: FrameResult, clip: ClipState) -> int:
    """The instant the ``frame`` message's stages up to ``aggregate`` (the batch's post-processing + this
    frame's fold) account for: ``publish`` is the rest (the batch's other frames being folded and
    published first, the socket lock), so that the five stages add up exactly to
    ``t_publish_ns − t_capture_ns``."""
    return res.t_inferred_ns + _postprocess_ns(res) + clip.aggregate_ns


def video_message(stream_id: str, fr: Frame, clip: ClipState, settings: AggregatorSettings) -> dict[str, Any]:
    """``video``: the clip score after this frame."""
    msg = wire.header(stream_id, fr.seq, fr.t_capture_ns)
    msg |= {"probs": clip.probs / clip.probs.sum(), "score": clip.score, "tie": list(clip.tie),
            "kind": settings.kind, "window": settings.window, "window_s": settings.window_s,
            "frames": clip.frames, "clip": clip.clip}  # fmt: skip
    return msg


def image_message(stream_id: str, fr: Frame) -> tuple[dict[str, Any], list[bytes]]:
    """``image``: the ROI-cropped frame as JPEG (displays on another host)."""
    h, w = fr.image.shape[:2]
    msg = wire.header(stream_id, fr.seq, fr.t_capture_ns)
    msg |= {"image": {"payload": 0, "encoding": "jpeg", "hw": [h, w]}, "roi": list(fr.roi),
            "source_hw": list(fr.source_hw)}
    return msg, [encode_jpeg(fr.image)]


def seg_message(stream_id: str, fr: Frame, res: SegResult, t_start_ns: int, rate_hz: float, members: int
                ) -> tuple[dict[str, Any], list[bytes]]:
    """``seg``: class map (+ uncertainty) PNG payloads and their description."""
    payloads = [encode_png(res.class_map)]
    h, w = res.class_map.shape
    unc = None
    if res.uncertainty is not None:
        payloads.append(encode_png(res.uncertainty))
        unc = {"payload": 1, "encoding": "png", "hw": [h, w], "scale": UNCERTAINTY_SCALE,
               "samples": res.samples}
    msg = wire.header(stream_id, fr.seq, fr.t_capture_ns)
    msg |= {
        "class_map": {"payload": 0, "encoding": "png", "hw": [h, w]},
        "classes": list(wire.SEG_CLASSES),
        "roi": list(fr.roi), "source_hw": list(fr.source_hw),
        "uncertainty": unc,
        "rate_hz": round(rate_hz, 3),
        "members": members,
        "stages_ns": {"wait": max(0, t_start_ns - fr.t_capture_ns), "preprocess": res.preprocess_ns,
                      "infer": res.infer_ns, "publish": 0},
        "class_fractions": res.class_fractions,
    }  # fmt: skip
    return msg, payloads


def lane_status(enabled: bool, reason: str | None = None, **fields: Any) -> dict[str, Any]:
    """One lane's entry in ``status.lanes`` (``reason`` says why a lane is off or degraded)."""
    base: dict[str, Any] = {"enabled": enabled, "fps": 0.0, "model": None, "backend": None, "reason": reason,
                            "domain": None, "dataset": None}
    return base | fields


# Source kinds that are real video (everything but the simulator); "unknown" = an in-process source
# without a SourceSpec (tests), which is not called real.
REAL_SOURCE_KINDS = ("device", "clip", "folder", "dicom", "url")


def domain_warning(scoring_domain: str | None, source_kind: str) -> str | None:
    """The ``status`` message's ``domain_warning``: set when the scoring model was trained on
    synthetic data only and the source is real video; None otherwise."""
    if scoring_domain == "synthetic" and source_kind in REAL_SOURCE_KINDS:
        return (f"frame model trained on synthetic data only; this is real video ({source_kind}): "
                "scores are not meaningful")  # fmt: skip
    return None


@dataclass(frozen=True)
class StatusInputs:
    """Everything a ``status`` message reports, gathered by the status stage from the other stages."""

    stream_id: str
    seq: int
    now_ns: int
    uptime_s: float
    source_kind: str
    source_stats: Mapping[str, Any]
    source_id: str
    state: str
    scoring: dict[str, Any]
    segmentation: dict[str, Any]
    drops: dict[str, int]
    latency_ns: Mapping[str, Any]  # p50/p95/p99 (ns or None), n
    latency_window_s: float
    frames_scored: int
    last_frame_seq: int
    aggregator: AggregatorSettings
    security: str
    recording: str | None
    extra: Mapping[str, Any]  # further top-level fields (e.g. ``exam``)


def status_message(s: StatusInputs) -> dict[str, Any]:
    """``status``: the engine's health once per second (and the final one at shutdown)."""
    st, lat = s.source_stats, s.latency_ns
    msg = wire.header(s.stream_id, s.seq, s.now_ns, s.now_ns)
    msg |= {
        "uptime_s": s.uptime_s,
        "input_fps": float(st.get("fps") or 0.0),
        "lanes": {"scoring": s.scoring, "segmentation": s.segmentation},
        "drops": s.drops,
        "latency_ms": {k: (None if lat[k] is None else lat[k] / 1e6) for k in ("p50", "p95", "p99")}
        | {"n": lat["n"], "window_s": s.latency_window_s},
        "source": {"kind": s.source_kind, "state": s.state, "id": s.source_id,
                   "error": st.get("exit_error") or st.get("error"), "read": int(st.get("read") or 0),
                   "fps": float(st.get("fps") or 0.0)},
        "frames_scored": s.frames_scored,
        "last_frame_seq": s.last_frame_seq,
        "aggregator": {"kind": s.aggregator.kind, "window": s.aggregator.window,
                       "window_s": s.aggregator.window_s},
        "security": s.security,
        "recording": s.recording,
        "domain_warning": domain_warning(s.scoring.get("domain"), s.source_kind),
    }  # fmt: skip
    msg.update(s.extra)
    return msg


def status_line(st: Mapping[str, Any], last_frame: Mapping[str, Any] | None,
                last_video: Mapping[str, Any] | None) -> str:
    """The one-line ``--print`` form of a status message (with the newest frame and clip score)."""
    lat = st["latency_ms"]
    p50, p99 = ("-" if lat[k] is None else f"{lat[k]:.0f}" for k in ("p50", "p99"))
    line = (f"[{st['uptime_s']:6.1f}s] {st['source']['state']:<8} in {st['input_fps']:5.1f} fps | "
            f"score {st['lanes']['scoring']['fps']:5.1f} fps p50 {p50} p99 {p99} ms | "
            f"seg {st['lanes']['segmentation']['fps']:4.1f} fps | drops {st['drops']['capture']}")
    if last_frame is not None and last_video is not None:
        f, v = last_frame, last_video
        clip = "tie " + "/".join(str(c) for c in v["tie"]) if v.get("tie") else str(v["score"])
        line += (f" | frame {f['score']} ({max(f['probs']):.2f}) clip {clip} "
                 f"({max(v['probs']):.2f}, {v['frames']} fr)")
    return line

