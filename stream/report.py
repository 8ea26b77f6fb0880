"""``lus-stream report RESULTS_FILE``: a one-page exam report from the recorder's results file.

Reads the file with :func:`stream.recorder.read_results` (a tail cut short by a crash or ``kill -9`` is
dropped and said so on the page) and writes, beside it or into ``--out``:

* ``<name>.report.html`` — self-contained (every image embedded as base64 PNG);
* ``<name>.report.png`` and ``<name>.report.pdf`` — the same page drawn with matplotlib (no extra system
  dependencies).

The page: the exam's zone diagram with the zone scores and the total LUS score (sum of the 14 Soldati zone
scores, 0-42, or 0-36 for 12 zones; "partial" while zones are missing), the zone table (probabilities,
frames the score rests on), a timeline of frame and clip scores with the frozen zone windows, representative
frames with the overlay (when the ``image`` topic was recorded: ``lus-stream --record-frames``), and the
models used. It always states that the output is decision support; when a model's manifest says
``training.synthetic_only`` it states that the models are NOT for clinical use.
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
from matplotlib.patches import Rectangle

from stream import wire
from stream.exam import PROTOCOLS, REGIONS, SIDES, validate_exam, zone_label
from stream.recorder import Record, read_results

log = logging.getLogger(__name__)

SCORE_RGB = {0: "#0060ff", 1: "#a0ff00", 2: "#ff9600", 3: "#ff0000"}  # = overlay.CLASS_COLOURS (BGR there)
UNSCORED_RGB = "#d0d0d0"
DECISION_SUPPORT = ("Decision support only: the scores are computed by machine-learning models and must be "
                    "reviewed by a qualified clinician; they are not a diagnosis.")
NOT_CLINICAL = ("NOT FOR CLINICAL USE: the models that produced these results were trained on synthetic "
                "(simulated) data only.")
UNKNOWN_PROVENANCE = ("Model provenance is not recorded in this file: check the models' manifests before "
                      "any clinical use.")
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
    models: list[dict[str, Any]] = field(default_factory=list)  # {"name", "synthetic_only": bool|None}

    @property
    def synthetic_only(self) -> bool | None:
        """True if any model is synthetic-only, False if all are known not to be, None if unknown."""
        flags = [m["synthetic_only"] for m in self.models]
        if any(f is True for f in flags):
            return True
        if flags and all(f is False for f in flags):
            return False
        return None


def _manifest_flag(path: Path) -> bool | None:
    """``training.synthetic_only`` of the manifest beside a model file (``NAME.json``), None if unreadable."""
    candidates = [path] if path.suffix == ".json" else [path.with_suffix(".json")]
    for cand in candidates:
        try:
            manifest = json.loads(cand.read_text())
        except (OSError, ValueError):
            continue
        flag = (manifest.get("training") or {}).get("synthetic_only")
        if isinstance(flag, bool):
            return flag
    return None


def _models(header: dict[str, Any], status: dict[str, Any] | None, manifests: list[Path]) -> list[dict]:
    meta = header.get("meta") or {}
    out: list[dict[str, Any]] = []
    paths = [meta.get("frame_model"), *(meta.get("seg_models") or [])]
    for p in paths:
        if p:
            out.append({"name": Path(p).stem, "path": str(p), "synthetic_only": _manifest_flag(Path(p))})
    for m in manifests:
        out.append({"name": m.stem, "path": str(m), "synthetic_only": _manifest_flag(m)})
    if not out and status is not None:  # only names from the status message
        for lane in status["lanes"].values():
            if lane.get("model"):
                out.append({"name": lane["model"], "path": None,
                            "synthetic_only": True if "synthetic" in lane["model"].lower() else None})
    return out


def load_run(path: str | Path, exam_id: str | None = None, manifests: list[Path] | None = None) -> ExamRun:
    """Read a results file and keep the messages of one exam (default: the last exam in the file)."""
    results = read_results(path)
    frames, videos, segs, exams = [], [], [], []
    images: dict[int, Record] = {}
    status = None
    skipped = 0
    for rec in results.records:
        try:
            wire.validate(rec.topic, rec.msg, rec.payloads)
            if rec.topic == "exam":
                validate_exam(rec.msg)
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


def draw_zone_diagram(ax: Any, exam: dict[str, Any] | None) -> None:
    """Right and left chest, columns posterior / lateral / anterior, rows cranial → caudal."""
    ax.set_axis_off()
    protocol = exam["protocol"] if exam else "soldati14"
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


def _zone_spans(run: ExamRun) -> list[tuple[str, int, int, int | None]]:
    """(zone, first_seq, last_seq, score) of every scored zone."""
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
    spans = _zone_spans(run) or [("recording", int(image_seqs[0]), int(image_seqs[-1]), None)]
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
    if synthetic is True:
        lines.append(("danger", NOT_CLINICAL))
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
    models = ", ".join(f"{m['name']}{' (synthetic data)' if m['synthetic_only'] else ''}" for m in run.models)
    fig.text(0.05, 0.012, f"models: {models or 'unknown'} · source file {run.path.name} · generated by "
                          f"lus-stream report", fontsize=6, color="#666666")
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
    models = "".join(f"<li>{esc(m['name'])}: "
                     f"{'synthetic data only' if m['synthetic_only'] else 'provenance unknown' if m['synthetic_only'] is None else 'see manifest'}"  # noqa: E501
                     f"</li>" for m in run.models)
    parts.append(f"<h2>Models</h2><ul>{models or '<li>not recorded</li>'}</ul>")
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
