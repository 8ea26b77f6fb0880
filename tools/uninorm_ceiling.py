#!/usr/bin/env python
"""The best weighted F1 the uninorm aggregation layer can reach on a ``--frame-probs`` file: a grid
search over its four neutral elements, in sample and cross-validated (``train.aggregator.ceiling``;
docs/aggregation.md, "How far can the layer go?").

    tools/uninorm_ceiling.py --frame-probs probs.json --folds 5 --seed 0 --out ceiling.json

The folds are those of ``lus-train aggregator`` with the same ``--folds``/``--seed`` (or the file's own).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frame-probs", type=Path, required=True, help="aggregator input JSON")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="JSON file for the results (also printed)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from train.aggregator.ceiling import uninorm_ceiling
    from train.aggregator.data import FrameProbsError, load_frame_probs
    from train.aggregator.folds import assign_folds

    torch.set_num_threads(1)
    try:
        clips = load_frame_probs(args.frame_probs)
        folds, note = assign_folds(clips, args.folds, args.seed)
    except (FrameProbsError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    result = {"frame_probs": str(args.frame_probs), "folds": note, **uninorm_ceiling(clips, folds)}
    ins, cv = result["in_sample"], result["cross_validated"]
    print(f"{len(clips)} clips; folds {note}")
    print(f"uninorm, grid fit in sample (upper bound): F1 {ins['f1']:.3f} at e = {ins['neutral_elements']}")
    print(f"uninorm, grid fit cross-validated:        F1 {cv['f1'][0]:.3f} ± {cv['f1'][1]:.3f}")
    for name in ("max_argmax", "argmax_mean"):
        print(f"{name:<41} F1 {result[name]['f1'][0]:.3f} ± {result[name]['f1'][1]:.3f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
