"""``python -m train.data check DIR``: list every problem of a dataset folder (exit 1 if any).

python -m train.data check data/synth            # decodes every video
python -m train.data check data/synth --no-decode  # labels and files only (fast)
"""

from __future__ import annotations

import argparse
import sys

from .layout import check_dataset, scan_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.data", description="ICLUS-DB-style dataset tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check", help="list every problem of a dataset folder (exit 1 if any)")
    chk.add_argument("root", help="dataset folder (with videos.csv)")
    chk.add_argument("--no-decode", action="store_true", help="do not decode videos (faster, fewer checks)")
    args = ap.parse_args(argv)

    problems = check_dataset(args.root, decode=not args.no_decode)
    records, _ = scan_dataset(args.root)
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
        f"{n_masks} annotated frames"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
