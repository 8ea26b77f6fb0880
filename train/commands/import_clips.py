"""``lus-train import``: import a real clip collection (one score per clip) into the dataset layout.

    lus-train import /work/shared/data/covid-blues --out data/covid-blues
    lus-train import ~/COVID-BLUES --out data/covid-blues-gh --preset covid-blues-github --copy
    lus-train import clips.csv --out data/site-a --preset csv --probe linear --hospital site-a

Presets, ids and what is recorded as unknown: ``train.data.importer``. Bad input lists every
problem and exits 1 without writing anything.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from pathlib import Path

from train.data.importer import PRESETS, PROBES, ImportProblems, import_clips


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lus-train import",
        description="Import a clip collection with one severity score per clip (no frame scores, no "
        "masks) into the dataset layout; fps and frame counts are measured from the videos. Clips are "
        "referenced in place unless --copy. Any bad input: every problem listed, exit 1, nothing written.",
    )
    ap.add_argument("src", type=Path, help="the collection's folder, or a CSV index (csv preset)")
    ap.add_argument(
        "--out", type=Path, required=True, help="dataset folder to write (must not exist or be empty)"
    )
    ap.add_argument("--preset", choices=PRESETS, default="auto", help="source layout (default: detect)")
    ap.add_argument("--copy", action="store_true", help="copy the video files unchanged into --out")
    ap.add_argument("--name", help="dataset name in dataset.json (default: the --out folder's name)")
    ap.add_argument("--hospital", help="hospital for clips whose source does not say")
    ap.add_argument("--probe", choices=PROBES, help="probe for clips whose source does not say")
    ap.add_argument("--scanner", help="scanner for clips whose source does not say")
    ap.add_argument(
        "--patients",
        nargs="+",
        metavar="ID",
        help="import only these patients (source ids such as 10, or layout ids such as P10)",
    )
    ap.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        meta = import_clips(
            args.src,
            args.out,
            args.preset,
            copy=args.copy,
            name=args.name,
            hospital=args.hospital,
            probe=args.probe,
            scanner=args.scanner,
            patients=args.patients,
            force=args.force,
            command=shlex.join(["lus-train", "import", *argv]),
        )
    except ImportProblems as exc:
        for p in exc.problems:
            print(p)
        print(f"{len(exc.problems)} problem(s) in {args.src}; nothing was written", file=sys.stderr)
        return 1
    from train.data.layout import read_dataset

    records = read_dataset(args.out)
    scores = Counter(r.clip_score for r in records)
    print(
        f"OK: {args.out}: {meta['n_videos']} clips, {meta['n_patients']} patients ({meta['preset']}); "
        f"clip scores " + ", ".join(f"{s}: {scores[s]}" for s in sorted(scores, key=lambda s: (s is None, s)))
    )
    raters = meta["labels"]["video_raters"]
    print(f"labels: clip level, {raters} rater(s); no frame scores, no masks (recorded as unknown)")
    if "licence" in meta:
        print(f"licence: {meta['licence']}\ncite: {meta['attribution']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
