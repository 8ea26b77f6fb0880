"""``lus-stream report RESULTS_FILE``: a one-page exam report from the recorder's results file.

Reads the file with :func:`stream.recorder.read_results` (a tail cut short by a crash or ``kill -9`` is
dropped and said so on the page) and writes, beside it or into ``--out``:

* ``<name>.report.html`` — self-contained (every image embedded as base64 PNG);
* ``<name>.report.png`` and ``<name>.report.pdf`` — the same page drawn with matplotlib (no extra system
  dependencies).

The page: the exam's zone diagram with the zone scores and the total LUS score (sum of the 14 Soldati zone
scores, 0-42, 0-36 for 12 zones, 0-18 for the six BLUE points; "partial" while zones are missing), the zone
table (probabilities, frames the score rests on), a timeline of frame and clip scores with the frozen zone
windows, representative frames with the overlay (when the ``image`` topic was recorded: ``lus-stream
--record-frames``), and the models used with their training domain and data set. It always states that the
output is decision support; when a model's manifest says ``training.synthetic_only`` (or ``training.domain``
``"synthetic"``) it states that the models are NOT for clinical use, and when such a scoring model scored
anything but the simulator (a clip, device, DICOM, folder or stream: the recording's ``meta.source`` or
``status.source.kind``) it says prominently that its scores on real video mean nothing.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Polygon, Rectangle

from stream import wire
from stream.exam_schema import BLUE_POINTS, PROTOCOLS, REGIONS, SIDES, zone_label
from stream.recorder import Record, read_results

log = logging.getLogger(__name__)

SCORE_RGB = {0: "#0060ff", 1: "#a0ff00", 2: "#ff9600", 3: "#ff0000"}  # = overlay.CLASS_COLOURS (BGR there)
UNSCORED_RGB = "#d0d0d0"
DECISION_SUPPORT = ("Decision support only: the scores are computed by machine-learning models and must be "
                    "reviewed by a qualified clinician; they are not a diagnosis.")
NOT_CLINICAL = "NOT FOR CLINICAL USE: {which} trained on synthetic (simulated) data only."
UNKNOWN_PROVENANCE = ("Model provenance is not recorded in this file: check the models' manifests before "
                      "any clinical use.")
SYNTHETIC_ON_REAL = ("WARNING: SYNTHETIC-ONLY MODEL ON REAL VIDEO: the scoring model {model} was trained on "
                     "simulated data only and has never seen a real scan, but this recording's source is "
                     "{source}, not the simulator. Its scores here are not meaningful; do not use them.")
DOMAINS = ("synthetic", "real", "mixed")
MAX_THUMBS = 8


@dataclass
class ExamRun:
    """What the report needs, gathered from one results file."""

    path: Path
    header: dict[str, Any]
    truncated_bytes: int
    read_error: str | None
    exam: dict[str, Any] | None                 # the last exam message of the chosen exam
    exam_events: list[dict[str, Any]]           # every exam message of that exam, in order
    frames: list[dict[str, Any]]
    videos: list[dict[str, Any]]
    images: dict[int, Record]
    segs: list[Record]
    status: dict[str, Any] | None
    skipped: int = 0
    # {"name", "path", "role": "scoring"|"segmentation"|None, "synthetic_only": bool|None,
    #  "domain": "synthetic"|"real"|"mixed"|None, "dataset": str|None}
    models: list[dict[str, Any]] = field(default_factory=list)

    @property
    def source_kind(self) -> str | None:
        """What the engine read: ``synthetic``, ``clip``, ``device``, ... (header meta, else status)."""
        kind = (self.header.get("meta") or {}).get("source")
        if not kind and self.status is not None:
            kind = (self.status.get("source") or {}).get("kind")
        return str(kind) if kind and kind != "unknown" else None

    @property
    def synthetic_model_on_real_video(self) -> str | None:
        """The name of a synthetic-only scoring model that scored a non-simulator source, else None."""
        kind = self.source_kind
        if kind is None or kind == "synthetic":
            return None
        for m in self.models:
            if m.get("role") == "scoring" and m["synthetic_only"] is True:
                return str(m["name"])
        return None

    @property
    def synthetic_only(self) -> bool | None:
        """True if any model is synthetic-only, False if all are known not to be, None if unknown."""
        flags = [m["synthetic_only"] for m in self.models]
        if any(f is True for f in flags):
            return True
        if flags and all(f is False for f in flags):
            return False
        return None


def _manifest_training(path: Path) -> dict[str, Any] | None:
    """The ``training`` map of the manifest beside a model file (``NAME.json``), None if unreadable."""
    cand = path if path.suffix == ".json" else path.with_suffix(".json")
    try:
        manifest = json.loads(cand.read_text())
    except (OSError, ValueError):
        return None
    training = manifest.get("training") if isinstance(manifest, dict) else None
    return training if isinstance(training, dict) else {}


def _provenance(training: dict[str, Any] | None, lane: dict[str, Any] | None = None) -> dict[str, Any]:
    """``synthetic_only``, ``domain``, ``dataset`` from a manifest's ``training`` map, else from the
    ``status`` lane that ran the model (its optional ``domain``/``dataset``); each None where neither says.
    The flags are made consistent: ``domain`` "synthetic" ⇒ synthetic-only, "real"/"mixed" ⇒ not;
    ``synthetic_only: true`` ⇒ "synthetic"."""
    training, lane = training or {}, lane or {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value.strip() else None

    flag = training.get("synthetic_only")
    flag = flag if isinstance(flag, bool) else None
    domain = training.get("domain")
    domain = domain if domain in DOMAINS else None
    if flag is None and domain is None:  # the manifest says nothing: what the engine reported
        domain = lane.get("domain") if lane.get("domain") in DOMAINS else None
    dataset = text(training.get("dataset")) or text(lane.get("dataset"))
    if flag is None and domain is not None:
        flag = domain == "synthetic"
    if domain is None and flag is True:
        domain = "synthetic"
    return {"synthetic_only": flag, "domain": domain, "dataset": dataset}


def _models(header: dict[str, Any], status: dict[str, Any] | None, manifests: list[Path]) -> list[dict]:
    meta = header.get("meta") or {}
    lanes = (status or {}).get("lanes") or {}
    out: list[dict[str, Any]] = []
    roles = [(meta.get("frame_model"), "scoring")]
    roles += [(p, "segmentation") for p in meta.get("seg_models") or []]
    for p, role in roles:
        if p:
            out.append({"name": Path(p).stem, "path": str(p), "role": role,
                        **_provenance(_manifest_training(Path(p)), lanes.get(role))})
    for m in manifests:  # --manifest: a frame-model manifest stands for the scoring lane
        training = _manifest_training(m)
        try:
            task = json.loads(m.read_text()).get("task")
        except (OSError, ValueError, AttributeError):
            task = None
        m_role = {"frame": "scoring", "seg": "segmentation"}.get(task) if isinstance(task, str) else None
        out.append({"name": m.stem, "path": str(m), "role": m_role, **_provenance(training)})
    if not out:  # only names from the status message
        for role, lane in lanes.items():
            if lane.get("model"):
                prov = _provenance(None, lane)
                if prov["synthetic_only"] is None and "synthetic" in lane["model"].lower():
                    prov |= {"synthetic_only": True, "domain": "synthetic"}
                out.append({"name": lane["model"], "path": None, "role": role, **prov})
    return out


def model_text(m: dict[str, Any]) -> str:
    """``"regstn: trained on synthetic data (dataset: synth-frame)"``: what the report says of one model."""
    if m.get("domain") is not None:
        what = {"synthetic": "trained on synthetic data only", "real": "trained on real scans",
                "mixed": "trained on real and synthetic data"}[m["domain"]]
    elif m["synthetic_only"] is True:
        what = "trained on synthetic data only"
    elif m["synthetic_only"] is False:
        what = "training domain not stated (not synthetic-only; see manifest)"
    else:
        what = "provenance unknown"
    dataset = f" (dataset: {m['dataset']})" if m.get("dataset") else ""
    role = f" [{m['role']}]" if m.get("role") else ""
    return f"{m['name']}{role}: {what}{dataset}"


def load_run(path: str | Path, exam_id: str | None = None, manifests: list[Path] | None = None) -> ExamRun:
    """Read a results file and keep the messages of one exam (default: the last exam in the file)."""
    results = read_results(path, validate=True)  # the engine validated only a sample when it recorded
    frames, videos, segs, exams = [], [], [], []
    images: dict[int, Record] = {}
    status = None
    skipped = 0
    for rec in results.records:
        try:
            wire.validate(rec.topic, rec.msg, rec.payloads)  # exam: fields and totals
        except wire.WireError as err:
            skipped += 1
            log.warning("%s: skipping a %s message: %s", path, rec.topic, err)
            continue
        if rec.topic == "frame":
            frames.append(rec.msg)
        elif rec.topic == "video":
            videos.append(rec.msg)
        elif rec.topic == "seg":
            segs.append(rec)
        elif rec.topic == "image":
            images[rec.msg["seq"]] = rec
        elif rec.topic == "status":
            status = rec.msg
        elif rec.topic == "exam" and rec.msg.get("exam_id"):
            exams.append(rec.msg)
    if exam_id is None and exams:
        exam_id = exams[-1]["exam_id"]
    chosen = [m for m in exams if m["exam_id"] == exam_id]
    if exam_id is not None and not chosen:
        known = sorted({m["exam_id"] for m in exams})
        raise SystemExit(f"lus-stream report: exam {exam_id!r} is not in {path}; exams there: {known}")
    run = ExamRun(Path(path), results.header, results.truncated_bytes, results.error,
                  chosen[-1] if chosen else None, chosen, frames, videos, images, segs, status, skipped)
    run.models = _models(results.header, status, manifests or [])
    return run


# ------------------------------------------------------------------------------------------ figures
def _png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


# BLUE points on a front view of one half chest: (distance from the sternum, height) in diagram units,
# the half chest spanning 0..3 × 0..3.3; the PLAPS point sits low at the posterolateral edge.
BLUE_LAYOUT = {"1": (1.1, 2.35), "2": (1.35, 1.2), "3": (2.45, 0.45)}


def _zone_colour(exam: dict[str, Any] | None, name: str, zones: dict[str, Any]) -> tuple[str, Any, float]:
    score = zones.get(name, {}).get("score")
    lw = 2.5 if exam and exam.get("zone") == name else 0.8
    return (SCORE_RGB[score] if score is not None else UNSCORED_RGB), score, lw


def draw_blue_diagram(ax: Any, exam: dict[str, Any] | None) -> None:
    """BLUE protocol: both half chests seen from the front (patient's right on the left), each with its
    upper and lower BLUE point (anterior) and PLAPS point (posterolateral), coloured by score."""
    zones = {z["zone"]: z for z in exam["zones"]} if exam else {}
    for side in SIDES:  # R drawn on the left, sternum in the middle at x = 3.3
        sternum = 3.0 if side == "R" else 3.6
        sign = -1.0 if side == "R" else 1.0

        def xy(u: float, y: float, sternum: float = sternum, sign: float = sign) -> tuple[float, float]:
            return sternum + sign * u, y

        outline = [xy(0.0, 3.3), xy(2.4, 3.3), xy(3.0, 2.6), xy(3.0, 0.0), xy(0.4, 0.2), xy(0.0, 0.6)]
        ax.add_patch(Polygon(outline, closed=True, fill=False, ls="--", ec="#999999", lw=0.8))
        ax.text(xy(1.5, 3.45)[0], 3.45, SIDES[side], ha="center", va="bottom", fontsize=10, weight="bold")
        ax.text(xy(0.15, 3.1)[0], 3.1, "ant.", ha="center", va="center", fontsize=6, color="#666666")
        ax.text(xy(2.75, 2.4)[0], 2.4, "lat.", ha="center", va="center", fontsize=6, color="#666666")
        for point, (u, y) in BLUE_LAYOUT.items():
            name = f"{side}{point}"
            colour, score, lw = _zone_colour(exam, name, zones)
            cx, cy = xy(u, y)
            ax.add_patch(Circle((cx, cy), 0.42, fc=colour, ec="black", lw=lw))
            ax.text(cx, cy + 0.17, name, ha="center", va="center", fontsize=7)
            ax.text(cx, cy - 0.12, "-" if score is None else str(score), ha="center", va="center",
                    fontsize=12, weight="bold")
            caption = BLUE_POINTS[point].replace(" BLUE point", " BLUE").replace(" point", "")
            ax.text(cx, cy - 0.52, caption, ha="center", va="top", fontsize=5.5, color="#444444")
    ax.set_xlim(-0.1, 6.7)
    ax.set_ylim(-0.3, 3.9)
    ax.set_aspect("equal")


def draw_zone_diagram(ax: Any, exam: dict[str, Any] | None) -> None:
    """Right and left chest, columns posterior / lateral / anterior, rows cranial → caudal (Soldati); the
    six BLUE points on both half chests for ``blue6``."""
    ax.set_axis_off()
    protocol = exam["protocol"] if exam else "soldati14"
    if protocol == "blue6":
        draw_blue_diagram(ax, exam)
        return
    zones = {z["zone"]: z for z in exam["zones"]} if exam else {}
    names = set(PROTOCOLS[protocol])
    regions = list(REGIONS)  # P, L, A
    for s_i, side in enumerate(SIDES):
        order = regions if side == "R" else regions[::-1]  # anterior columns meet in the middle
        x_side = s_i * 3.6
        ax.text(x_side + 1.5, 3.45, f"{SIDES[side]}", ha="center", va="bottom", fontsize=10, weight="bold")
        for c_i, region in enumerate(order):
            ax.text(x_side + c_i + 0.5, 3.05, REGIONS[region][:4] + ".", ha="center", va="bottom", fontsize=7)
            for row in range(3):
                name = f"{side}{region}{row + 1}"
                y = 2 - row
                if name not in names:
                    ax.add_patch(Rectangle((x_side + c_i, y), 1, 1, fill=False, ls=":", ec="#bbbbbb"))
                    continue
                z = zones.get(name, {})
                score = z.get("score")
                colour = SCORE_RGB[score] if score is not None else UNSCORED_RGB
                lw = 2.5 if exam and exam.get("zone") == name else 0.8
                ax.add_patch(Rectangle((x_side + c_i, y), 1, 1, fc=colour, ec="black", lw=lw))
                ax.text(x_side + c_i + 0.5, y + 0.62, name, ha="center", va="center", fontsize=7)
                ax.text(x_side + c_i + 0.5, y + 0.3, "-" if score is None else str(score), ha="center",
                        va="center", fontsize=12, weight="bold")
    ax.set_xlim(-0.1, 6.7)
    ax.set_ylim(-0.1, 3.9)
    ax.set_aspect("equal")


def total_text(exam: dict[str, Any] | None) -> str:
    if exam is None:
        return "no exam in this recording"
    if exam["total"] is not None:
        return f"LUS score {exam['total']} / {exam['max_total']}"
    return (f"partial LUS score {exam['partial_total']} "
            f"({exam['scored']} of {exam['n_zones']} zones scored; max {exam['max_total']})")


def _zone_spans(run: ExamRun) -> list[tuple[str, int, int, int]]:
    """(zone, first_seq, last_seq, score) of every scored zone (zones without a score are left out)."""
    if run.exam is None:
        return []
    return [(z["zone"], z["first_seq"], z["last_seq"], z["score"]) for z in run.exam["zones"]
            if z["score"] is not None and z["first_seq"] is not None and z["last_seq"] is not None]


def draw_timeline(ax: Any, run: ExamRun) -> None:
    """Frame score (dots) and clip score (line) over time; the frames each zone score rests on shaded."""
    if not run.frames:
        ax.text(0.5, 0.5, "no frame results recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    t0 = run.frames[0]["t_capture_ns"]
    seq_t = {f["seq"]: (f["t_capture_ns"] - t0) / 1e9 for f in run.frames}
    seqs = np.array(sorted(seq_t))
    times = np.array([seq_t[s] for s in seqs])

    def t_of(seq: int) -> float:
        return float(np.interp(seq, seqs, times))

    for zone, first, last, score in _zone_spans(run):
        ax.axvspan(t_of(first), t_of(last), color=SCORE_RGB[score], alpha=0.18, lw=0)
        ax.text((t_of(first) + t_of(last)) / 2, 3.45, zone, ha="center", va="bottom", fontsize=6)
    ft = [(f["t_capture_ns"] - t0) / 1e9 for f in run.frames]
    ax.scatter(ft, [f["score"] for f in run.frames], s=3, c="#444444", label="frame score", zorder=3)
    if run.videos:
        vt = [(v["t_capture_ns"] - t0) / 1e9 for v in run.videos]
        expected = [float(np.dot(v["probs"], np.arange(4))) for v in run.videos]
        ax.plot(vt, [v["score"] for v in run.videos], drawstyle="steps-post", color="#d62728", lw=1.5,
                label="clip score", zorder=4)
        ax.plot(vt, expected, color="#1f77b4", lw=0.8, alpha=0.8, label="clip E[score]", zorder=4)
    ax.set_ylim(-0.3, 3.8)
    ax.set_yticks([0, 1, 2, 3])
    ax.set_xlabel("time since the first frame [s]")
    ax.set_ylabel("score")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=7, ncols=3, frameon=False)
    ax.grid(alpha=0.3)


def representative_frames(run: ExamRun, max_n: int = MAX_THUMBS) -> list[tuple[str, np.ndarray]]:
    """(caption, RGB thumbnail with overlay) per scored zone, from recorded ``image`` messages."""
    if not run.images:
        return []
    from stream.view.overlay import Scene, SegLayer, Style, render

    frames_by_seq = {f["seq"]: f for f in run.frames}
    seg_by_seq = {r.msg["seq"]: r for r in run.segs}
    image_seqs = np.array(sorted(run.images))
    out: list[tuple[str, np.ndarray]] = []
    spans: list[tuple[str, int, int, int | None]] = [*_zone_spans(run)] or [
        ("recording", int(image_seqs[0]), int(image_seqs[-1]), None)
    ]
    for zone, first, last, score in spans:
        inside = image_seqs[(image_seqs >= first) & (image_seqs <= last)]
        if inside.size == 0:
            continue
        seq = int(inside[-1])  # the settled end of the zone's clip
        rec = run.images[seq]
        buf = np.frombuffer(rec.payloads[rec.msg["image"]["payload"]], np.uint8)
        picture = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if picture is None:
            continue
        seg = None
        seg_seqs = [s for s in seg_by_seq if first <= s <= last]
        if seg_seqs:
            nearest = min(seg_seqs, key=lambda s: abs(s - seq))
            try:
                seg = SegLayer.from_message(seg_by_seq[nearest].msg, seg_by_seq[nearest].payloads)
            except (ValueError, IndexError, KeyError):
                seg = None
        scene = Scene(frame=frames_by_seq.get(seq), seg=seg)
        canvas = render(picture, scene, tuple(rec.msg["roi"]), Style(panel=False))
        h, w = canvas.shape[:2]
        thumb = cv2.resize(canvas, (240, max(1, round(h * 240 / w))), interpolation=cv2.INTER_AREA)
        caption = f"{zone}: score {score}" if score is not None else f"{zone} (seq {seq})"
        out.append((caption, cv2.cvtColor(thumb, cv2.COLOR_BGR2RGB)))
        if len(out) >= max_n:
            break
    return out


def notices(run: ExamRun) -> list[tuple[str, str]]:
    """(level, text) lines the page must show: decision support, clinical-use status, data completeness."""
    lines = [("info", DECISION_SUPPORT)]
    synthetic = run.synthetic_only
    on_real = run.synthetic_model_on_real_video
    engine_warning = (run.status or {}).get("domain_warning")  # the engine's own check (status)
    if on_real is not None:
        lines.append(("danger", SYNTHETIC_ON_REAL.format(model=on_real, source=run.source_kind)))
    elif isinstance(engine_warning, str) and engine_warning:
        lines.append(("danger", f"WARNING: {engine_warning}"))
    if synthetic is True:
        names = [m["name"] for m in run.models if m["synthetic_only"] is True]
        which = "the models that produced these results were"
        if len(names) < len(run.models):  # a real-scan scoring model beside the synthetic segmentation models
            which = f"of the models that produced these results, {', '.join(names)} were"
        lines.append(("danger", NOT_CLINICAL.format(which=which)))
    elif synthetic is None:
        lines.append(("warn", UNKNOWN_PROVENANCE))
    if run.truncated_bytes or run.read_error:
        last = run.frames[-1]["seq"] if run.frames else None
        lines.append(("warn", f"The results file was cut short (engine stopped abruptly): "
                              f"{run.truncated_bytes} bytes of an incomplete record dropped; results up to "
                              f"frame seq {last} are shown."))
    if run.exam is not None and run.exam["state"] != "stopped":
        lines.append(("warn", f"The exam was not stopped (last state: {run.exam['state']}): the table is the "
                              f"last one published."))
    if run.skipped:
        lines.append(("warn", f"{run.skipped} message(s) failed schema validation and were left out."))
    return lines


def _when(exam: dict[str, Any] | None, header: dict[str, Any]) -> str:
    t = (exam or {}).get("started_unix_s") or header.get("created_unix_s")
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "?"


def build_figures(run: ExamRun) -> dict[str, bytes]:
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot()
    draw_zone_diagram(ax, run.exam)
    ax.set_title(total_text(run.exam), fontsize=11)
    zones_png = _png(fig)
    fig = Figure(figsize=(8.0, 2.8))
    draw_timeline(fig.add_subplot(), run)
    return {"zones": zones_png, "timeline": _png(fig)}


def render_page(run: ExamRun, path_png: Path, path_pdf: Path | None = None,
                thumbs: list[tuple[str, np.ndarray]] | None = None) -> None:
    """The one-page report as PNG (and PDF): A4 portrait, matplotlib only."""
    thumbs = representative_frames(run) if thumbs is None else thumbs
    fig = Figure(figsize=(8.27, 11.69))
    exam = run.exam
    title = f"Lung ultrasound exam {exam['exam_id']}" if exam else f"lus-stream recording {run.path.name}"
    fig.text(0.05, 0.965, title, fontsize=15, weight="bold")
    sub = f"{_when(exam, run.header)} · protocol {exam['protocol'] if exam else '-'}"
    if exam and exam.get("patient"):
        sub += f" · patient {'id' if exam.get('patient_id_stored') else 'hash'} {exam['patient'][:16]}"
    fig.text(0.05, 0.945, sub, fontsize=8, color="#444444")
    y = 0.925
    colours = {"info": "#222222", "warn": "#a05a00", "danger": "#c00000"}
    for level, text in notices(run):
        fig.text(0.05, y, text, fontsize=7.5, color=colours[level], wrap=True,
                 weight="bold" if level == "danger" else "normal")
        y -= 0.02 if len(text) < 130 else 0.032
    top = y - 0.01
    ax = fig.add_axes((0.03, 0.6, 0.5, top - 0.6))
    draw_zone_diagram(ax, exam)
    ax.set_title(total_text(exam), fontsize=11, weight="bold")
    tab = fig.add_axes((0.56, 0.6, 0.41, top - 0.6))
    tab.set_axis_off()
    if exam:
        rows = [[z["zone"], "-" if z["score"] is None else str(z["score"]),
                 "-" if z["probs"] is None else " ".join(f"{p:.2f}" for p in z["probs"]), str(z["frames"])]
                for z in exam["zones"]]
        table = tab.table(cellText=rows, colLabels=["zone", "score", "P(0..3)", "frames"], loc="upper center",
                          cellLoc="center", colWidths=[0.17, 0.15, 0.5, 0.18])
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.scale(1, 1.05)
    draw_timeline(fig.add_axes((0.08, 0.37, 0.88, 0.19)), run)
    if thumbs:
        n = len(thumbs)
        cols = min(4, n)
        w = 0.9 / cols
        for i, (caption, img) in enumerate(thumbs):
            r, c = divmod(i, cols)
            a = fig.add_axes((0.05 + c * w, 0.175 - r * 0.145, w - 0.01, 0.125))
            a.imshow(img)
            a.set_axis_off()
            a.set_title(caption, fontsize=7)
    else:
        fig.text(0.05, 0.2, "No frames were recorded (start the engine with --record-frames to include "
                            "representative frames with overlays).", fontsize=8, color="#666666")
    models = "; ".join(model_text(m) for m in run.models)
    fig.text(0.05, 0.012, f"models: {models or 'unknown'} · source {run.source_kind or '?'}, file "
                          f"{run.path.name} · generated by lus-stream report", fontsize=6, color="#666666",
             wrap=True)
    fig.savefig(path_png, dpi=110)
    if path_pdf is not None:
        fig.savefig(path_pdf)


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(run: ExamRun, figures: dict[str, bytes], thumbs: list[tuple[str, np.ndarray]]) -> str:
    exam = run.exam
    esc = html.escape
    title = f"Lung ultrasound exam {exam['exam_id']}" if exam else f"lus-stream recording {run.path.name}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:sans-serif;max-width:960px;margin:auto;color:#222}"
             ".danger{color:#fff;background:#c00000;padding:6px;font-weight:bold}"
             ".warn{color:#a05a00}.info{font-style:italic}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:center}"
             ".thumbs figure{display:inline-block;margin:4px}"
             "</style></head><body>", f"<h1>{esc(title)}</h1>"]
    sub = f"{_when(exam, run.header)} · protocol {exam['protocol'] if exam else '-'}"
    if exam and exam.get("patient"):
        kind = "patient id" if exam.get("patient_id_stored") else "patient hash (sha256, salted)"
        sub += f" · {kind}: {exam['patient']}"
    parts.append(f"<p>{esc(sub)}</p>")
    for level, text in notices(run):
        parts.append(f"<p class='{level}'>{esc(text)}</p>")
    parts.append(f"<h2>{esc(total_text(exam))}</h2>")
    parts.append(f"<img alt='zone diagram' src='{_b64(figures['zones'])}'>")
    if exam:
        parts.append("<table><tr><th>zone</th><th>position</th><th>score</th><th>P(0) P(1) P(2) P(3)</th>"
                     "<th>frames</th><th>frame seq</th></tr>")
        for z in exam["zones"]:
            probs = "-" if z["probs"] is None else " ".join(f"{p:.2f}" for p in z["probs"])
            rng = "-" if z["first_seq"] is None else f"{z['first_seq']}–{z['last_seq']}"
            score = "-" if z["score"] is None else z["score"]
            parts.append(f"<tr><td>{esc(z['zone'])}</td><td>{esc(zone_label(z['zone']))}</td><td>{score}</td>"
                         f"<td>{probs}</td><td>{z['frames']}</td><td>{rng}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Timeline</h2>")
    parts.append(f"<img alt='timeline' style='max-width:100%' src='{_b64(figures['timeline'])}'>")
    parts.append("<h2>Representative frames</h2>")
    if thumbs:
        parts.append("<div class='thumbs'>")
        for caption, img in thumbs:
            ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if ok:
                parts.append(f"<figure><img src='{_b64(png.tobytes())}'><figcaption>{esc(caption)}"
                             f"</figcaption></figure>")
        parts.append("</div>")
    else:
        parts.append("<p>No frames were recorded (start the engine with --record-frames).</p>")
    models = "".join(f"<li>{esc(model_text(m))}</li>" for m in run.models)
    parts.append(f"<h2>Models</h2><ul>{models or '<li>not recorded</li>'}</ul>")
    parts.append(f"<p>Video source: {esc(run.source_kind or 'not recorded')}</p>")
    parts.append(f"<p style='font-size:11px;color:#666'>source: {esc(str(run.path))} · "
                 f"{len(run.frames)} frame results, {len(run.videos)} clip results, {len(run.segs)} "
                 f"segmentations, {len(run.images)} frames recorded · generated "
                 f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by lus-stream report</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results_file: str | Path, out_dir: str | Path | None = None, exam_id: str | None = None,
                 manifests: list[Path] | None = None, pdf: bool = True) -> dict[str, Path]:
    """Write the HTML, PNG (and PDF) report; returns their paths."""
    run = load_run(results_file, exam_id, manifests)
    out = Path(out_dir) if out_dir is not None else Path(results_file).parent
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(results_file).name.split(".")[0]
    if run.exam is not None:
        stem += "_" + "".join(c if c.isalnum() or c in "-_" else "-" for c in run.exam["exam_id"])
    paths = {"html": out / f"{stem}.report.html", "png": out / f"{stem}.report.png"}
    if pdf:
        paths["pdf"] = out / f"{stem}.report.pdf"
    thumbs = representative_frames(run)
    paths["html"].write_text(render_html(run, build_figures(run), thumbs), encoding="utf-8")
    render_page(run, paths["png"], paths.get("pdf"), thumbs)
    return paths


def main(argv: list[str] | None = None) -> int:
    """``lus-stream report RESULTS_FILE [--out DIR] [--exam ID] [--manifest M.json ...] [--no-pdf]``."""
    p = argparse.ArgumentParser(prog="lus-stream report", description="One-page exam report (HTML, PNG, PDF) "
                                "from a lus-stream results file.")
    p.add_argument("results", type=Path, help="the recorder's file (*.lusr.msgpack)")
    p.add_argument("--out", type=Path, help="output folder (default: beside the results file)")
    p.add_argument("--exam", help="exam id to report (default: the last exam in the file)")
    p.add_argument("--manifest", type=Path, action="append", default=[],
                   help="model manifest(s) giving provenance when the file's model paths are not readable")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF")
    args = p.parse_args(argv)
    if not args.results.is_file():
        print(f"lus-stream report: {args.results} does not exist (pass the file written by --record DIR)",
              file=sys.stderr)
        return 2
    try:
        paths = write_report(args.results, args.out, args.exam, args.manifest, pdf=not args.no_pdf)
    except ValueError as err:  # not a results file / newer format
        print(f"lus-stream report: {err}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
