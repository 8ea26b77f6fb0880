"""``lus-train evaluate-seg``: Table IV (Roy et al. 2020) for a trained run's members and ensemble.

    lus-train evaluate-seg --run runs/seg-lite            # held-out patients saved by training
    lus-train evaluate-seg --run runs/seg-lite --data DIR # or any dataset folder / --synthetic N
    lus-train evaluate-seg --run runs/seg-lite --data DIR --split test  # its splits.json test patients

Writes RUN/eval/{table.md, metrics.json, fig5.png, fig6.png}.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from train.seg.sources import add_source_args, load_samples, load_source, split_patients


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lus-train evaluate-seg", description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="run folder written by `lus-train seg`")
    ap.add_argument("--members", default="unet,unetpp,deeplabv3p")
    ap.add_argument("--checkpoint", default="best.pt", help="file inside RUN/MEMBER/ (best.pt or last.pt)")
    ap.add_argument("--out", type=Path, default=None, help="default RUN/eval")
    add_source_args(ap)
    ap.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="with --data: only the patients its splits.json lists under this key (default all)",
    )
    ap.add_argument("--mc-k", type=int, default=40, help="MC-dropout samples for the uncertainty panels")
    ap.add_argument("--panels", type=int, default=4, help="frames in the Fig. 5 panel")
    ap.add_argument("--uncertainty-panels", type=int, default=2, help="frames in the Fig. 6 panel")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from train.seg.data import split_by_patients
    from train.seg.evaluate import run_evaluation
    from train.seg.loop import load_member

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    models = {}
    for name in [n.strip() for n in args.members.split(",") if n.strip()]:
        models[name], _, _ = load_member(args.run / name / args.checkpoint)
    if args.split != "all" and args.data is None:
        raise SystemExit(f"--split {args.split} needs --data DIR (a dataset folder with splits.json)")
    if args.data is not None or args.synthetic is not None:
        samples = load_source(args, seed=args.seed + 1000)
        source = str(args.data or f"synthetic:{args.synthetic}")
        if args.split != "all":
            samples = split_by_patients(samples, split_patients(args.data, args.split))[1]
            source += f", {args.split} patients of its splits.json"
    else:
        samples, source = load_samples(args.run / "test.npz"), f"held-out patients of {args.run}"
    out = args.out or args.run / "eval"
    caption = (
        f"Segmentation on {samples.describe()} ({source}); pixel accuracy over all 260×200 pixels, "
        f"Dice pooled over the set."
    )
    result = run_evaluation(
        models,
        samples,
        out,
        mc_k=args.mc_k,
        panels=args.panels,
        uncertainty_panels=args.uncertainty_panels,
        batch=args.batch,
        caption=caption,
        seed=args.seed,
    )
    print((out / "table.md").read_text())
    print(
        f"[evaluate-seg] ensemble beats every member on COVID Dice: "
        f"{result['ensemble_beats_every_member_covid_dice']}; files in {out}"
    )
    return 0
