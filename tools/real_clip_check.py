#!/usr/bin/env python
"""Score the labelled real clips end to end with the shipped models: how far do models trained on
synthetic frames carry to real scanner output? (README "What the models know about real scans".)

    tools/real_clip_check.py --clips ../shared/data/real-clips --out results/real-clips

Each clip listed in ``CLIPS/index.csv`` runs through the real engine (``lus-stream --clip FILE
--as-fast-as-possible --record``: decode, region of interest, preprocessing, the frame model on the
chosen backend, the streaming uninorm) in a subprocess; the recorded ``frame`` and ``video``
messages give the per-frame probabilities and the uninorm clip score the product published. The
baselines ``max_argmax`` and ``argmax_mean`` are folded over the same probabilities with the
runtime's own aggregators (``stream.aggregate``). Writes ``real_clips.json`` (per clip: label,
frame-score counts, mean probabilities, the three clip scores, the per-frame probabilities),
``real_clips.md`` and ``real_clips.png`` (each clip's frame probabilities over time).

The severity labels (0–3, column ``severity_0_3``; Gare et al. 2022, CC BY-NC 4.0) are for
evaluation only. Six labelled clips are a domain-gap check, not a metric.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from stream.aggregate import make_aggregator
from stream.recorder import read_results

ROOT = Path(__file__).resolve().parents[1]

SCORE_COLOURS = ("#2c7bb6", "#abd9e9", "#fdae61", "#d7191c")
BASELINES = ("max_argmax", "argmax_mean")


def read_index(clips: Path) -> list[dict[str, Any]]:
    """Rows of ``index.csv`` whose file exists: ``file``, ``probe``, ``label`` (int or None)."""
    index = clips / "index.csv"
    if not index.is_file():
        raise SystemExit(f"{index}: no index.csv; point --clips at shared/data/real-clips")
    rows = []
    with index.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if "file" not in row or "severity_0_3" not in row:
                raise SystemExit(f"{index}: needs the columns 'file' and 'severity_0_3'")
            text = (row["severity_0_3"] or "").strip()
            label = int(text) if text else None
            rows.append({"file": row["file"], "probe": row.get("probe", ""), "label": label})
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_engine(clip: Path, engines: Path, backend: str, timeout_s: float, out: Path) -> Path:
    """``lus-stream`` over ``clip`` as fast as possible, recording into ``out``; returns the results file."""
    cmd = [
        sys.executable, "-m", "stream.cli", "--clip", str(clip), "--as-fast-as-possible",
        "--record", str(out), "--ctrl", "none", "--pub", f"tcp://127.0.0.1:{_free_port()}",
        "--seg-every", "1000000000", "--engines", str(engines), "--backend", backend,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"lus-stream failed on {clip} (exit {res.returncode}): {tail[0]}")
    files = sorted(out.glob("*.lusr.msgpack"))
    if not files:
        raise RuntimeError(f"lus-stream wrote no results file for {clip} in {out}")
    return files[0]


def summarise_clip(results_file: Path) -> dict[str, Any]:
    """Per-frame probabilities, frame-score counts and the three clip scores from one recording."""
    results = read_results(results_file)
    frames = results.topic("frame")
    videos = results.topic("video")
    if not frames or not videos:
        raise RuntimeError(f"{results_file}: no frame/video messages (the frame lane did not run)")
    probs = np.array([r.msg["probs"] for r in frames], dtype=np.float64)
    scores = {"uninorm": int(videos[-1].msg["score"])}
    for kind in BASELINES:
        agg = make_aggregator(kind)
        for row in probs:
            agg.update(row)
        scores[kind] = agg.score()
    return {
        "frames": len(frames),
        "roi": frames[0].msg["roi"],
        "frame_score_counts": np.bincount(probs.argmax(axis=1), minlength=4).tolist(),
        "mean_probs": probs.mean(axis=0).round(4).tolist(),
        "clip_scores": scores,
        "probs": probs.tolist(),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| clip | probe | label | frames | frame scores 0/1/2/3 | uninorm | max_argmax | argmax_mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["clip_scores"]
        label = "–" if r["label"] is None else str(r["label"])
        counts = "/".join(map(str, r["frame_score_counts"]))
        lines.append(
            f"| {r['file']} | {r['probe']} | {label} | {r['frames']} | {counts} | "
            f"{s['uninorm']} | {s['max_argmax']} | {s['argmax_mean']} |"
        )
    labelled = [r for r in rows if r["label"] is not None]
    if labelled:
        lines.append("")
        for kind in ("uninorm", *BASELINES):
            hits = sum(r["clip_scores"][kind] == r["label"] for r in labelled)
            lines.append(f"- {kind}: {hits} of {len(labelled)} labelled clips scored as labelled")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.6 * len(rows) + 0.6), squeeze=False)
    for ax, r in zip(axes[:, 0], rows, strict=True):
        p = np.asarray(r["probs"])
        ax.stackplot(np.arange(len(p)), p.T, colors=SCORE_COLOURS, labels=[f"score {c}" for c in range(4)])
        s = r["clip_scores"]
        label = "unlabelled" if r["label"] is None else f"label {r['label']}"
        ax.set_title(
            f"{r['file']} ({label}) - uninorm {s['uninorm']}, max_argmax {s['max_argmax']}, "
            f"argmax_mean {s['argmax_mean']}",
            fontsize=8,
        )
        ax.set_xlim(0, max(len(p) - 1, 1))
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(loc="upper right", fontsize=6, ncol=4)
    axes[-1, 0].set_xlabel("frame")
    fig.suptitle("Shipped frame model on real clips: per-frame score probabilities", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_clips = os.environ.get("LUS_REAL_CLIPS", str(ROOT.parent / "shared" / "data" / "real-clips"))
    ap.add_argument("--clips", type=Path, default=Path(default_clips), help="folder with index.csv")
    ap.add_argument("--out", type=Path, required=True, help="folder for real_clips.{json,md,png}")
    ap.add_argument("--engines", type=Path, default=ROOT / "models", help="model folder (default models/)")
    ap.add_argument("--backend", default="auto", help="lus-stream --backend (default auto)")
    ap.add_argument("--only", action="append", default=[], metavar="FILE", help="only this clip (repeatable)")
    ap.add_argument("--all", action="store_true", help="also the clips without a severity label")
    ap.add_argument("--timeout-s", type=float, default=600.0, help="per clip (default 600)")
    args = ap.parse_args(argv)

    rows = read_index(args.clips)
    if args.only:
        unknown = sorted(set(args.only) - {r["file"] for r in rows})
        if unknown:
            raise SystemExit(f"--only {unknown}: not in {args.clips / 'index.csv'}")
        rows = [r for r in rows if r["file"] in args.only]
    elif not args.all:
        rows = [r for r in rows if r["label"] is not None]
    args.out.mkdir(parents=True, exist_ok=True)
    missing = [str(args.clips / r["file"]) for r in rows if not (args.clips / r["file"]).is_file()]
    if missing:
        raise SystemExit(f"listed in index.csv but missing: {missing}")
    done: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="real-clips-") as tmp:
        for i, row in enumerate(rows):
            print(f"[{i + 1}/{len(rows)}] {row['file']} ...", flush=True)
            try:
                recording = run_engine(
                    args.clips / row["file"], args.engines, args.backend, args.timeout_s, Path(tmp) / str(i)
                )
                summary = summarise_clip(recording)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # keep the other clips' results
                print(f"  skipped: {exc}", file=sys.stderr)
                continue
            done.append({**row, **summary})
            scores = summary["clip_scores"]
            print(f"  {summary['frames']} frames, clip scores {scores} (label {row['label']})")
    if not done:
        raise SystemExit("no clip could be scored; see the messages above")
    (args.out / "real_clips.json").write_text(json.dumps({"engines": str(args.engines), "clips": done}))
    (args.out / "real_clips.md").write_text(markdown(done))
    plot(done, args.out / "real_clips.png")
    print((args.out / "real_clips.md").read_text(), end="")
    print(f"-> {args.out}/real_clips.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
