"""``lus-train frame``: train a frame scorer (Reg-STN or a Table I baseline).

Examples::

    lus-train frame --data data/synth --cache data/synth/frames-128.npz --out runs/regstn
    lus-train frame --data DIR --config paper --model regstn --out runs/paper     # Roy et al. settings
    torchrun --nproc_per_node 2 -m train.cli frame --data DIR --out runs/ddp       # same command, DDP

Writes ``last.pt`` (resumable: rerun the same command), ``history.json``, ``curves.png``,
``config.json``, ``splits.json``; ``--dump-frame-probs FILE`` also writes the per-frame
probabilities of every video (train and test patients) in the aggregator's JSON format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from train.frame.config import MODELS, PRESETS, make_config
from train.frame.sources import add_data_args, add_video_label_arg, load_table, make_splits


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lus-train frame", description="Train a frame scorer (Reg-STN / Table I)."
    )
    ap.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, curves, history)")
    ap.add_argument("--config", default="cpu", help=f"preset {sorted(PRESETS)} or a JSON file (default cpu)")
    ap.add_argument(
        "--model", default="regstn", choices=sorted(MODELS), help="Table I variant (default regstn)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set epochs=30 --set input_hw=[96,96]",
    )
    ap.add_argument("--epochs", type=int, help="shortcut for --set epochs=N")
    ap.add_argument(
        "--time-budget-min", type=float, help="stop after this many wall minutes (end of an epoch)"
    )
    ap.add_argument("--cpu-budget-min", type=float, help="stop after this many CPU minutes of training steps")
    ap.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    ap.add_argument(
        "--dump-frame-probs",
        type=Path,
        metavar="FILE",
        help="after training, write per-frame probabilities (aggregator JSON format)",
    )
    ap.add_argument(
        "--dump-split",
        choices=("all", "train", "test"),
        default="all",
        help="which patients --dump-frame-probs covers (default all)",
    )
    add_video_label_arg(ap)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.set)
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    if args.time_budget_min is not None:
        overrides.append(f"time_budget_min={args.time_budget_min}")
    if args.cpu_budget_min is not None:
        overrides.append(f"cpu_budget_min={args.cpu_budget_min}")
    cfg = make_config(args.config, args.model, overrides)
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))

    import torch

    from train.frame.loop import load_checkpoint, train_frame_model
    from train.frame.probs import dump_frame_probs

    torch.set_num_threads(cfg.threads)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    table = load_table(args, cfg.input_hw, progress=rank0 and not args.quiet)
    splits = make_splits(args, table)
    train_t, test_t = table.select_patients(splits["train"]), table.select_patients(splits["test"])
    if rank0:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        (args.out / "splits.json").write_text(json.dumps(splits, indent=1))
        (args.out / "command.txt").write_text(
            "lus-train frame " + " ".join(sys.argv[1:] if argv is None else argv)
        )
        print(
            f"[{cfg.model}] {len(train_t)} training frames ({len(splits['train'])} patients), "
            f"{len(test_t)} test frames ({len(splits['test'])} patients), input {cfg.input_hw}",
            flush=True,
        )
    result = train_frame_model(
        cfg, train_t, test_t, args.out, resume=not args.no_resume, progress=not args.quiet, splits=splits
    )
    if rank0:
        print(f"[{cfg.model}] done: {result['epochs_done']} epochs ({result['stopped']})")
        if args.dump_frame_probs is not None:
            model, _, _ = load_checkpoint(result["checkpoint"])
            which = {"all": table, "train": train_t, "test": test_t}[args.dump_split]
            path = dump_frame_probs(
                model, which, args.dump_frame_probs, cfg.eval_batch, video_label=args.video_label
            )
            print(f"[{cfg.model}] frame probabilities of {len(which.videos)} videos -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
