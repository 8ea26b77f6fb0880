"""Where segmentation samples come from on the command line, and the run folder's split files.

``--data DIR`` reads an ICLUS-DB-style folder (``train.data``; ``tools/make_synthetic.py`` writes
one); ``--synthetic N`` simulates N patients in memory (``synth``; the same option as ``lus-train frame``,
``--sim N`` is its deprecated old spelling). Training writes the patient split to
``RUN/split.json`` and the held-out samples to ``RUN/test.npz`` so that evaluation uses exactly the
patients the members never saw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from train.commands import deprecated_alias
from train.data.layout import read_splits
from train.seg.data import SegSamples, from_layout, from_simulator


def add_source_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("data")
    g.add_argument("--data", type=Path, help="ICLUS-DB-style dataset folder (frames + LabelMe masks)")
    g.add_argument(
        "--synthetic", type=int, metavar="N", help="simulate N patients in memory instead of --data"
    )
    g.add_argument("--synthetic-clips", type=int, default=2, help="clips per simulated patient (default 2)")
    g.add_argument("--synthetic-frames", type=int, default=40, help="frames per simulated clip (default 40)")
    g.add_argument("--synthetic-stride", type=int, default=4, help="every k-th simulated frame (default 4)")
    for suffix in ("", "-clips", "-frames", "-stride"):  # the old spellings (before the two commands agreed)
        new = f"--synthetic{suffix}"
        deprecated_alias(g, f"--sim{suffix}", f"use {new}", dest=new[2:].replace("-", "_"), type=int)
    g.add_argument(
        "--probe",
        default="all",
        choices=["all", "convex", "linear"],
        help="keep only frames of this probe (the paper trains on convex)",
    )


def load_source(args: argparse.Namespace, seed: int = 0) -> SegSamples:
    if (args.data is None) == (args.synthetic is None):
        raise SystemExit(
            "give exactly one data source: --data DIR (dataset folder) or --synthetic N (simulate N patients)"
        )
    if args.data is not None:
        samples = from_layout(args.data, None if args.probe == "all" else args.probe)
    else:
        samples = from_simulator(
            args.synthetic, args.synthetic_clips, args.synthetic_frames, args.synthetic_stride, seed=seed
        )
    return samples.filter_probe(None if args.probe == "all" else args.probe)


def split_patients(root: Path, split: str) -> list[str]:
    """Patients listed under ``split`` in ``root/splits.json``; a clear error when there is none."""
    splits = read_splits(root)
    if splits is None or split not in splits:
        have = [] if splits is None else sorted(splits)
        raise SystemExit(
            f"{root}/splits.json: no {split!r} patient list (found: {have or 'no file'}); "
            "use --split all or add the file (tools/make_synthetic.py writes one)"
        )
    return splits[split]


def save_samples(samples: SegSamples, path: Path) -> None:
    np.savez_compressed(
        path,
        images=samples.images,
        masks=samples.masks,
        patients=samples.patients.astype(str),
        scores=samples.scores,
        probes=samples.probes.astype(str),
    )


def load_samples(path: Path) -> SegSamples:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{path} not found: train with `lus-train seg --out RUN` first, or pass --data/--synthetic"
        )
    z = np.load(path, allow_pickle=False)
    return SegSamples(
        z["images"], z["masks"], z["patients"].astype(object), z["scores"], z["probes"].astype(object)
    )


def write_split(path: Path, **sets: SegSamples) -> None:
    path.write_text(json.dumps({k: sorted(set(v.patients.tolist())) for k, v in sets.items()}, indent=2))
