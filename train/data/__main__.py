"""``python -m train.data``: dataset tools.

python -m train.data check data/synth                 # every problem, exit 1 if any (decodes every video)
python -m train.data check data/synth --no-decode     # labels and files only (fast)
python -m train.data check data/cb --folds folds.json # also the folds file against the dataset
python -m train.data folds data/cb --k 5 --seed 0 --out folds.json   # stratified patient folds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import folds as fold_tools
from .layout import DatasetError, VideoRecord, check_dataset, read_dataset, scan_dataset


def clip_scores(records: list[VideoRecord]) -> list[int]:
    """Each video's clip score: the clinicians' majority, else the highest frame score."""
    out, missing = [], []
    for r in records:
        s = r.clip_score
        if s is None and r.frame_scores is not None and len(r.frame_scores):
            s = int(r.frame_scores.max())
        if s is None:
            missing.append(r.video_id)
        out.append(-1 if s is None else s)
    if missing:
        raise DatasetError([f"video {v}: no clip score (no video scores, no frame scores)" for v in missing])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.data", description="ICLUS-DB-style dataset tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check", help="list every problem of a dataset folder (exit 1 if any)")
    chk.add_argument("root", help="dataset folder (with videos.csv)")
    chk.add_argument("--no-decode", action="store_true", help="do not decode videos (faster, fewer checks)")
    chk.add_argument("--folds", type=Path, help="also check this folds file against the dataset's patients")
    fld = sub.add_parser("folds", help="write stratified patient-level k folds (train.data.folds)")
    fld.add_argument("root", help="dataset folder (with videos.csv)")
    fld.add_argument("--k", type=int, default=5, help="number of folds (default 5)")
    fld.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle (default 0)")
    fld.add_argument("--out", type=Path, required=True, help="folds JSON file to write")
    args = ap.parse_args(argv)

    if args.cmd == "folds":
        return _folds(args)
    problems = check_dataset(args.root, decode=not args.no_decode)
    records, _ = scan_dataset(args.root)
    if args.folds is not None:
        try:
            folds = fold_tools.read_folds(args.folds)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            patients = sorted({r.patient_id for r in records})
            problems += [f"{args.folds}: {p}" for p in fold_tools.check_folds(folds, patients)]
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) in {args.root}", file=sys.stderr)
        return 1
    n_frames = sum(r.n_frames for r in records)
    n_masks = sum(len(r.mask_files) for r in records)
    patients = len({r.patient_id for r in records})
    print(
        f"OK: {args.root}: {len(records)} videos, {patients} patients, {n_frames} frames, "
        f"{n_masks} annotated frames" + (f"; folds {args.folds} OK" if args.folds is not None else "")
    )
    return 0


def _folds(args: argparse.Namespace) -> int:
    try:
        records = read_dataset(args.root)
        scores = clip_scores(records)
        folds = fold_tools.stratified_patient_folds(
            [r.patient_id for r in records], scores, k=args.k, seed=args.seed
        )
    except (DatasetError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    fold_tools.write_folds(args.out, folds, seed=args.seed, dataset=str(Path(args.root).resolve()))
    sizes = ", ".join(str(len(f)) for f in folds)
    print(f"OK: {args.out}: {args.k} folds of {sizes} patients (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
