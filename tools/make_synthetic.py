#!/usr/bin/env python
"""Write a synthetic lung-ultrasound dataset in the ICLUS-DB-style layout (docs/dataset.md).

    tools/make_synthetic.py --out data/synth --patients 24 --clips-per-patient 4 --seed 0
    tools/make_synthetic.py --bench            # simulator speed (frames/s, one core)

Videos are H.264 MP4 (PyAV) unless ``--frame-folders``; labels: frame scores, five simulated
clinicians' video scores, LabelMe masks for ``--masks-per-clip`` random frames of each clip, a
patient-level ``splits.json``. A contact sheet (``--contact-sheet``, default OUT/contact_sheet.png)
shows one example frame of each score for each probe, with its mask overlaid.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must look like 480x640 (HxW), got {text!r}") from exc
    if h < 32 or w < 32 or h % 2 or w % 2:
        raise argparse.ArgumentTypeError(
            f"size {text}: use even sizes of at least 32x32 (H.264 needs even sizes)"
        )
    return h, w


def _range(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.split(":")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"frames must be N or MIN:MAX, got {text!r}") from exc
    lo, hi = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if len(parts) > 2 or lo < 1 or hi < lo:
        raise argparse.ArgumentTypeError(f"frames must be N or MIN:MAX with 1 <= MIN <= MAX, got {text!r}")
    return lo, hi


def bench(seconds: float = 6.0, size_hw: tuple[int, int] = (480, 640)) -> dict[str, dict[str, float]]:
    """Frames/s of ``synth.LiveSimulator`` (image + mask) on one OpenCV thread, per probe/scanner.

    ``wall`` is frames per elapsed second; ``cpu`` frames per second of this process's CPU time,
    i.e. the speed on a core of its own (the two differ when other jobs share the cores).
    """
    import cv2

    import synth

    cv2.setNumThreads(1)
    out = {}
    for probe in ("convex", "linear"):
        for seed in (1, 2):
            sim = synth.LiveSimulator(seed, probe=probe, height=size_hw[0], width=size_hw[1])
            for _ in range(10):
                sim.next()
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds / 4:
                sim.next()
                n += 1
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            out[f"{probe}/{sim.meta['scanner']}/seed{seed}"] = {
                "wall": round(n / wall, 1),
                "cpu": round(n / max(cpu, 1e-9), 1),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="new dataset folder")
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--clips-per-patient", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=_range, default=(60, 120), help="frames per clip: N or MIN:MAX")
    ap.add_argument("--size", type=_size, default=(480, 640), help="frame size HxW (default 480x640)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--masks-per-clip", type=int, default=6, help="frames per clip with LabelMe masks")
    ap.add_argument("--test-fraction", type=float, default=0.25, help="patients in the test split")
    ap.add_argument("--agreement", type=float, default=None, help="clinicians' agreement (default 0.67)")
    ap.add_argument("--frame-folders", action="store_true", help="PNG frame folders instead of MP4 files")
    ap.add_argument(
        "--contact-sheet", type=Path, default=None, help="PNG path (default OUT/contact_sheet.png)"
    )
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--bench", action="store_true", help="measure the simulator's frames/s and exit")
    args = ap.parse_args(argv)

    if args.bench:
        h, w = args.size
        print(json.dumps({f"frames_per_s_{h}x{w}_one_thread": bench(size_hw=args.size)}, indent=2))
        return 0
    if args.out is None:
        ap.error("--out is required (a new folder for the dataset)")

    from tqdm import tqdm

    import synth
    from train.data.synthetic import generate

    cfg = synth.SimConfig() if args.agreement is None else synth.SimConfig(clinician_agreement=args.agreement)
    command = "tools/make_synthetic.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    sheet = args.contact_sheet or args.out / "contact_sheet.png"
    t0 = time.perf_counter()
    try:
        with tqdm(total=args.patients * args.clips_per_patient, unit="clip", disable=args.no_progress) as bar:
            summary = generate(
                args.out,
                args.patients,
                args.clips_per_patient,
                args.seed,
                frames=args.frames,
                size_hw=args.size,
                fps=args.fps,
                masks_per_clip=args.masks_per_clip,
                test_fraction=args.test_fraction,
                as_frames=args.frame_folders,
                config=cfg,
                contact_sheet_path=sheet,
                command=command,
                progress=bar.update,
            )
    except (ValueError, FileExistsError) as exc:
        print(f"make_synthetic: {exc}", file=sys.stderr)
        return 2
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["contact_sheet"] = str(sheet)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
