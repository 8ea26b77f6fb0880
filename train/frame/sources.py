"""Where frame-model commands get their frames: an ICLUS-DB-style folder (``--data``) or the
in-memory simulator (``--synthetic N`` patients), optionally cached as ``.npz`` (``--cache``), and
the patient-level train/test split recorded with every run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from train.frame.data import VIDEO_LABEL_RULES, FrameTable, load_layout, split_patients, synth_table


def add_video_label_arg(ap: argparse.ArgumentParser) -> None:
    """``--video-label``: which clinicians' score becomes a clip's label in the aggregator's file."""
    ap.add_argument(
        "--video-label",
        choices=VIDEO_LABEL_RULES,
        default="majority",
        help="clip label written with the probabilities: the clinicians' majority (default) or the "
        "first clinician's score (the paper's protocol, §IV-B.4: the most expert annotator, listed first)",
    )


def add_data_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument(
        "--data", type=Path, help="ICLUS-DB-style dataset folder (e.g. from tools/make_synthetic.py)"
    )
    src.add_argument("--synthetic", type=int, metavar="N", help="simulate N patients in memory instead")
    g.add_argument("--synthetic-clips", type=int, default=2, help="clips per simulated patient (default 2)")
    g.add_argument("--synthetic-frames", type=int, default=48, help="frames per simulated clip (default 48)")
    g.add_argument("--cache", type=Path, help="npz cache of the letterboxed frames (written if absent)")
    g.add_argument(
        "--test-fraction", type=float, default=0.25, help="patients held out for test (default 0.25)"
    )
    g.add_argument("--split-seed", type=int, default=0, help="seed of the patient-level split (default 0)")
    g.add_argument(
        "--splits", type=Path, help="JSON {'train': [patients], 'test': [patients]} to use instead"
    )


def load_table(args: argparse.Namespace, input_hw: tuple[int, int], progress: bool = True) -> FrameTable:
    """All frames of the chosen source at ``input_hw`` (through the cache when given)."""
    cache = args.cache
    if cache is not None and cache.is_file():
        table = FrameTable.load(cache)
        if table.input_hw == tuple(input_hw):
            return table
        cache = cache.with_name(f"{cache.stem}-{input_hw[0]}x{input_hw[1]}.npz")
        if cache.is_file():
            return FrameTable.load(cache)
    if args.data is not None:
        table = load_layout(args.data, input_hw, progress)
    elif args.synthetic is not None:
        table = synth_table(
            args.synthetic,
            input_hw,
            args.synthetic_clips,
            args.synthetic_frames,
            seed=args.split_seed,
            progress=progress,
        )
    else:
        raise SystemExit("no data: pass --data DIR (ICLUS-DB layout) or --synthetic N")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        table.save(cache)
    return table


def make_splits(args: argparse.Namespace, table: FrameTable) -> dict[str, list[str]]:
    """Patient split: --splits, else the dataset's splits.json, else drawn (--split-seed, --test-fraction)."""
    if args.splits is not None:
        splits = json.loads(Path(args.splits).read_text())
        missing = set(splits.get("train", []) + splits.get("test", [])) - set(table.patients())
        if missing:
            raise SystemExit(f"{args.splits}: patients {sorted(missing)[:5]} are not in the data")
        if set(splits["train"]) & set(splits["test"]):
            raise SystemExit(f"{args.splits}: a patient is in both train and test")
        return {"train": sorted(splits["train"]), "test": sorted(splits["test"])}
    if args.data is not None:  # a dataset may ship its own split (ICLUS-DB layout: splits.json)
        from train.data.layout import read_splits

        given = read_splits(args.data)
        if given and given.get("train") and given.get("test"):
            return {"train": sorted(given["train"]), "test": sorted(given["test"])}
    train, test = split_patients(table.patients(), args.test_fraction, args.split_seed)
    return {"train": train, "test": test}
