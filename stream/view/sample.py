"""Hand-made, schema-valid engine messages around a synthetic frame: for the docs still, tests and the report.

They look like what ``lus-stream --demo`` publishes (same topics, fields and payload encodings) but the
scores come from the simulator's ground truth, not from a model: nothing here runs inference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from stream import wire

Message = tuple[str, dict[str, Any], list[bytes]]


def image_roi(image: np.ndarray, threshold: int = 8) -> tuple[int, int, int, int]:
    """Bounding box (x, y, w, h) of the non-black picture (the fan of a synthetic frame)."""
    ys, xs = np.nonzero(image > threshold)
    if ys.size == 0:
        return 0, 0, image.shape[1], image.shape[0]
    x0, y0 = int(xs.min()), int(ys.min())
    return x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1


def square(cx: float, cy: float, side: float, angle_deg: float = 0.0) -> list[list[float]]:
    """Corners of a rotated square (the shape of a Reg-STN crop: rotation, translation, isotropic scale)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    half = side / 2
    return [[cx + c * dx - s * dy, cy + s * dx + c * dy]
            for dx, dy in ((-half, -half), (half, -half), (half, half), (-half, half))]


def one_hot_probs(score: int, confidence: float = 0.8) -> list[float]:
    p = [(1.0 - confidence) / 3] * 4
    p[score] = confidence
    return p


def frame_message(seq: int, score: int, probs: Sequence[float], boxes: Sequence[Any] | None,
                  roi: Sequence[int], source_hw: Sequence[int], t_capture_ns: int, stream_id: str = "demo",
                  latency_ms: float = 12.0) -> dict[str, Any]:
    msg = wire.header(stream_id, seq, t_capture_ns, t_capture_ns + int(latency_ms * 1e6))
    share = int(latency_ms * 1e6) // 5
    msg.update({"probs": [float(p) for p in probs], "score": int(score), "boxes": boxes,
                "roi": [int(v) for v in roi], "source_hw": [int(v) for v in source_hw],
                "stages_ns": dict.fromkeys(wire.STAGES_FRAME, share), "batch": 1})
    return msg


def video_message(seq: int, probs: Sequence[float], frames: int, clip: int, t_capture_ns: int,
                  stream_id: str = "demo") -> dict[str, Any]:
    msg = wire.header(stream_id, seq, t_capture_ns, t_capture_ns + 13_000_000)
    msg.update({"probs": [float(p) for p in probs], "score": int(np.argmax(probs)), "kind": "uninorm",
                "window": None, "frames": int(frames), "clip": int(clip)})
    return msg


def seg_message(seq: int, class_map: np.ndarray, roi: Sequence[int], source_hw: Sequence[int],
                t_capture_ns: int, uncertainty: np.ndarray | None = None, stream_id: str = "demo"
                ) -> Message:
    """A ``seg`` message: PNG class-index map (covering ``roi``) and optional 8-bit uncertainty PNG."""
    ok, png = cv2.imencode(".png", class_map.astype(np.uint8))
    assert ok
    payloads = [png.tobytes()]
    msg = wire.header(stream_id, seq, t_capture_ns, t_capture_ns + 80_000_000)
    unc = None
    if uncertainty is not None:
        scale = float(max(uncertainty.max(), 1e-6))
        ok, upng = cv2.imencode(".png", np.clip(uncertainty / scale * 255, 0, 255).astype(np.uint8))
        assert ok
        payloads.append(upng.tobytes())
        unc = {"payload": 1, "encoding": "png", "hw": list(uncertainty.shape[:2]), "scale": scale / 255,
               "samples": 8}
    fractions = np.bincount(class_map.ravel(), minlength=5)[:5] / class_map.size
    msg.update({"class_map": {"payload": 0, "encoding": "png", "hw": list(class_map.shape[:2])},
                "classes": list(wire.SEG_CLASSES), "roi": [int(v) for v in roi],
                "source_hw": [int(v) for v in source_hw], "uncertainty": unc, "rate_hz": 6.0, "members": 3,
                "stages_ns": {"wait": 0, "preprocess": 1_000_000, "infer": 70_000_000, "publish": 1_000_000},
                "class_fractions": [float(f) for f in fractions]})
    return "seg", msg, payloads


def image_message(seq: int, image: np.ndarray, roi: Sequence[int], source_hw: Sequence[int],
                  t_capture_ns: int, stream_id: str = "demo", quality: int = 85) -> Message:
    """An ``image`` message: the ROI crop as JPEG."""
    x, y, w, h = roi
    ok, jpg = cv2.imencode(".jpg", image[y:y + h, x:x + w], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    msg = wire.header(stream_id, seq, t_capture_ns, t_capture_ns + 5_000_000)
    msg.update({"image": {"payload": 0, "encoding": "jpeg", "hw": [h, w]}, "roi": [int(v) for v in roi],
                "source_hw": [int(v) for v in source_hw]})
    return "image", msg, [jpg.tobytes()]


def status_message(seq: int, t_capture_ns: int, stream_id: str = "demo", state: str = "running",
                   security: str = "loopback", source_kind: str = "synthetic",
                   domain_warning: str | None = None) -> dict[str, Any]:
    msg = wire.header(stream_id, seq, t_capture_ns, t_capture_ns + 1_000_000)
    lane = {"enabled": True, "fps": 30.0, "model": "regstn-synthetic", "backend": "onnxruntime",
            "domain": "synthetic", "dataset": "synthetic LUS (synth simulator)"}
    if domain_warning is not None:
        msg["domain_warning"] = domain_warning
    msg.update({
        "uptime_s": 12.0, "input_fps": 30.0,
        "lanes": {"scoring": lane, "segmentation": {**lane, "fps": 6.0, "model": "seg-ensemble"}},
        "drops": {"capture": 0, "publish": 0, "segmentation_skipped": 120},
        "latency_ms": {"p50": 12.0, "p95": 18.0, "p99": 25.0, "n": 300, "window_s": 10.0},
        "source": {"kind": source_kind, "state": state, "id": f"{source_kind}:7", "error": None},
        "frames_scored": seq + 1, "last_frame_seq": seq,
        "aggregator": {"kind": "uninorm", "window": None}, "security": security,
    })
    return msg


def demo_scene_messages(image: np.ndarray, mask: np.ndarray, score: int, seq: int = 100,
                        exam_msg: dict[str, Any] | None = None, stream_id: str = "demo",
                        with_uncertainty: bool = True) -> list[Message]:
    """All topics for one synthetic frame: frame (boxes), video, seg (true mask), image, status, exam."""
    t = time.monotonic_ns() - 20_000_000
    source_hw = image.shape[:2]
    roi = image_roi(image)
    x, y, w, h = roi
    # two crops as the Reg-STN draws them: θ1 (σ≈0.5) on the pleura, θ2 (σ≈0.75) around it
    cx, cy = x + w / 2, y + h * 0.45
    boxes = [square(cx, cy, 0.5 * min(w, h), 8.0), square(cx, cy + 0.05 * h, 0.75 * min(w, h), -5.0)]
    probs = one_hot_probs(score)
    class_map = mask[y:y + h, x:x + w]
    unc = None
    if with_uncertainty:
        inside = (class_map < 4).astype(np.uint8)
        edges = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((9, 9), np.uint8))
        unc = cv2.GaussianBlur(edges.astype(np.float32), (0, 0), 6) * 0.2
    msgs: list[Message] = [
        image_message(seq, image, roi, source_hw, t, stream_id),
        ("frame", frame_message(seq, score, probs, boxes, roi, source_hw, t, stream_id), []),
        ("video", video_message(seq, one_hot_probs(score, 0.9), 60, 3, t, stream_id), []),
        seg_message(seq, class_map, roi, source_hw, t, unc, stream_id),
        ("status", status_message(seq, t, stream_id), []),
    ]
    if exam_msg is not None:
        msgs.append(("exam", exam_msg, []))
    return msgs


def demo_exam(scores: Sequence[int | None] | None = None, current: int | None = None, stream_id: str = "demo",
              protocol: str = "soldati14") -> dict[str, Any]:
    """An ``exam`` message after walking the zones with ``scores`` (None entries stay unscored)."""
    from stream.exam import PROTOCOLS, ExamSession

    zones = PROTOCOLS[protocol]
    scores = list(scores) if scores is not None else [(i * 5) % 4 for i in range(len(zones))]
    session = ExamSession()
    session.start("demo-exam", patient_id="demo-patient", protocol=protocol)
    seq = 0
    for clip, (zone, score) in enumerate(zip(zones, scores, strict=False), start=1):
        if score is None:
            continue
        session.set_zone(zone, clip)
        for k in range(30):
            seq += 1
            session.observe_video(video_message(seq, one_hot_probs(score, 0.85), k + 1, clip, 1000 + seq))
        session.freeze()
    if current is not None:
        session.set_zone(zones[current])
    return session.message(stream_id)


def write_demo_recording(path: Any, scores: Sequence[int | None], frames_per_zone: int = 12,
                         images_per_zone: int = 2, seed: int = 0, hw: tuple[int, int] = (240, 320),
                         stop: bool = True, meta: dict[str, Any] | None = None) -> Any:
    """A results file as the engine would record a scripted exam walk (simulated scores, no model).

    Zone ``i`` is scanned for ``frames_per_zone`` frames of a synthetic clip of severity ``scores[i]`` (None:
    skipped); frame probabilities are noisy around that score, the clip aggregate is their running mean,
    ``images_per_zone`` frames per zone are recorded as ``image`` + ``seg`` messages. Returns the Recorder's
    path (the recorder is closed).
    """
    from stream.exam import PROTOCOLS, ExamSession
    from stream.recorder import Recorder

    synth_mod: Any
    try:
        import synth as synth_mod
    except ImportError:  # pragma: no cover - synth ships with the repo
        synth_mod = None
    rng = np.random.default_rng(seed)
    protocol = "soldati14" if len(scores) == 14 else "soldati12"
    zones = PROTOCOLS[protocol]
    rec = Recorder(path, "demo", meta=meta or {})
    session = ExamSession()
    t = time.monotonic_ns()
    seq = 0

    def publish(topic: str, msg: dict[str, Any], payloads: Sequence[bytes] = ()) -> None:
        wire.validate(topic, msg, list(payloads))
        rec.append(topic, msg, list(payloads))

    session.start("demo-walk", patient_id="demo-patient", protocol=protocol)
    publish("exam", session.message("demo"))
    image = np.zeros(hw, np.uint8)
    mask = np.full(hw, 4, np.uint8)
    for clip, (zone, score) in enumerate(zip(zones, scores, strict=False), start=1):
        if score is None:
            continue
        session.set_zone(zone, clip)
        publish("exam", session.message("demo"))
        sim = synth_mod.LiveSimulator(seed=seed + clip, schedule=[(0, score)], height=hw[0], width=hw[1]) \
            if synth_mod is not None else None
        total = np.zeros(4)
        image_at = set(np.linspace(frames_per_zone // 2, frames_per_zone - 1, images_per_zone).astype(int))
        for k in range(frames_per_zone):
            seq += 1
            t += 33_333_333
            logits = -2.0 * (np.arange(4) - score) ** 2 + rng.normal(0, 0.8, 4)
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            total += probs
            roi = image_roi(image) if image.any() else (0, 0, hw[1], hw[0])
            if k in image_at:
                if sim is not None:
                    image, _, mask = sim.next()
                roi = image_roi(image) if image.any() else (0, 0, hw[1], hw[0])
                publish(*image_message(seq, image, roi, hw, t))
                x, y, w, h = roi
                publish(*seg_message(seq, mask[y:y + h, x:x + w], roi, hw, t))
            x, y, w, h = roi
            boxes = [square(x + w / 2, y + h * 0.45, 0.5 * min(w, h), 5.0),
                     square(x + w / 2, y + h * 0.5, 0.75 * min(w, h), -4.0)]
            publish("frame", frame_message(seq, int(np.argmax(probs)), probs, boxes, roi, hw, t))
            video = video_message(seq, total / total.sum(), k + 1, clip, t)
            publish("video", video)
            session.observe_video(video)
        session.freeze()
        publish("exam", session.message("demo"))
        publish("status", status_message(seq, t))
    if stop:
        session.stop()
        publish("exam", session.message("demo"))
    rec.close()
    return rec.path
