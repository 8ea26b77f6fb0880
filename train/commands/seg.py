"""``lus-train seg``: train segmentation members of a preset (Roy et al. 2020 §IV-C).

Example (the shipped ``lite`` ensemble, see docs/segmentation.md)::

    lus-train seg --preset lite --data data/synth --out runs/seg-lite --max-minutes 12

Splits patients 70/30 (train/test), carves a validation set from the training patients, then
trains each member in turn (or one with ``--members``). Under ``torchrun`` the same command
trains with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from train.commands import deprecated_alias
from train.seg.config import member, override, preset
from train.seg.data import patient_split, split_by_patients
from train.seg.loop import TrainOptions, train_member
from train.seg.sources import add_source_args, load_source, save_samples, write_split


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="lus-train seg", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="lite", choices=["lite", "paper"])
    ap.add_argument("--members", default=None, help="comma-separated subset, e.g. unet,deeplabv3p")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MEMBER.FIELD=VALUE",
        help="override a member config field, e.g. unetpp.decoder_channels=[16,16,8,8]",
    )
    ap.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, curves, split)")
    add_source_args(ap)
    ap.add_argument("--test-fraction", type=float, default=0.3, help="patients held out for testing")
    ap.add_argument(
        "--own-split",
        action="store_true",
        help="split --data by --test-fraction even when it has a splits.json (default: use it)",
    )
    ap.add_argument("--val-fraction", type=float, default=0.2, help="training patients used for validation")
    o = TrainOptions()
    ap.add_argument(
        "--lr", type=float, default=o.lr, help="Adam learning rate (paper: 1e-5; CPU default 1e-3)"
    )
    ap.add_argument("--batch-size", type=int, default=o.batch_size, help="per process (paper: 32)")
    ap.add_argument("--max-steps", type=int, default=o.max_steps)
    ap.add_argument(
        "--max-minutes",
        default=str(o.max_minutes),
        help="per member; 0 = no limit; or per member name, e.g. unet=13,unetpp=16,deeplabv3p=10",
    )
    ap.add_argument(
        "--budget-clock",
        default="wall",
        choices=["wall", "cpu"],
        help="what --max-minutes counts: wall time, or this process's CPU time (shared machines)",
    )
    ap.add_argument(
        "--max-wall-minutes", default="0", help="wall-clock cap per member (same forms as --max-minutes)"
    )
    ap.add_argument("--eval-every", type=int, default=o.eval_every)
    ap.add_argument(
        "--patience", type=int, default=o.patience, help="evaluations without val-Dice gain; 0 = off"
    )
    ap.add_argument(
        "--loss-tol", type=float, default=o.loss_tol, help="relative train-loss convergence; 0 = off"
    )
    ap.add_argument("--val-frames", type=int, default=o.val_frames)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument(
        "--class-weights",
        default="none",
        choices=["none", "sqrt"],
        help="pixel-CE class weights (paper: none; sqrt: sqrt inverse frequency, a CPU-budget aid)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--no-resume",
        action="store_true",
        help="start over even if RUN/MEMBER/last.pt exists (default: continue from it)",
    )
    deprecated_alias(ap, "--resume", "resuming is the default (--no-resume starts over)", dest="no_resume",
                     takes_value=False, const=False)  # fmt: skip
    return ap.parse_args(argv)


def read_dataset_split(args: argparse.Namespace) -> list[str] | None:
    """Test patients from DATA/splits.json unless --own-split (or the source is --synthetic)."""
    if args.data is None or args.own_split:
        return None
    from train.data.layout import read_splits

    splits = read_splits(args.data)
    return None if not splits or "test" not in splits else splits["test"]


def write_summary(args: argparse.Namespace, summaries: list[dict], command: str, minutes: float) -> None:
    """RUN/train_summary.json; a run that trains some members again (resumed, or ``--members``)
    replaces their entries, keeps the others, and appends its command to ``commands``. Unless
    ``--no-resume``, a member's ``cpu_minutes_all``/``minutes_all`` add up all its sessions."""
    path = args.out / "train_summary.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if old.get("preset") not in (None, args.preset):
        old = {}
    previous = {m["member"]: m for m in old.get("members", [])}
    for s in summaries:
        before = previous.get(s["member"], {}) if not args.no_resume else {}
        s["cpu_minutes_all"] = round(
            before.get("cpu_minutes_all", before.get("cpu_minutes", 0.0)) + s["cpu_minutes"], 2
        )
        s["minutes_all"] = round(before.get("minutes_all", before.get("minutes", 0.0)) + s["minutes"], 2)
    trained = {s["member"] for s in summaries}
    merged = [m for m in old.get("members", []) if m["member"] not in trained] + summaries
    order = {m.name: i for i, m in enumerate(preset(args.preset))}
    merged.sort(key=lambda m: order.get(m["member"], 99))
    commands = [*old.get("commands", [old["command"]] if "command" in old else []), command]
    doc = {
        "preset": args.preset,
        "members": merged,
        "data": str(args.data or f"synthetic:{args.synthetic}"),
        "command": " && ".join(commands),
        "commands": commands,
        "minutes_total": round(float(old.get("minutes_total", 0.0)) + minutes, 2),
        "cpu_minutes_total": round(sum(m.get("cpu_minutes_all", m["cpu_minutes"]) for m in merged), 2),
    }
    path.write_text(json.dumps(doc, indent=2))


def parse_minutes(text: str, names: list[str]) -> dict[str, float]:
    """``12`` → every member 12 min; ``unet=13,unetpp=16`` → per member (others: no limit)."""
    if "=" not in text:
        return dict.fromkeys(names, float(text))
    out = dict.fromkeys(names, 0.0)
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in out:
            raise SystemExit(
                f"--max-minutes names {name.strip()!r}, which is not a member being trained ({names})"
            )
        out[name.strip()] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rank0 = int(os.environ.get("RANK", "0")) == 0
    members = list(preset(args.preset))
    if args.members:
        members = [member(args.preset, n.strip()) for n in args.members.split(",")]
    for item in args.set:
        name, _, rest = item.partition(".")
        members = [override(m, [rest]) if m.name == name else m for m in members]

    t0 = time.monotonic()
    samples = load_source(args, seed=args.seed)
    dataset_split = read_dataset_split(args)
    if dataset_split is not None:  # the dataset's own patient-level split (splits.json)
        train_all, test = split_by_patients(samples, dataset_split)
    else:
        train_all, test = patient_split(samples, args.test_fraction, seed=args.seed)
    train, val = (
        patient_split(train_all, args.val_fraction, seed=args.seed + 1)
        if args.val_fraction > 0
        else (train_all, None)
    )
    if rank0:
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"[seg] data in {time.monotonic() - t0:.0f}s: train {train.describe()}")
        print(f"[seg] validation {val.describe() if val is not None else 'none'}; test {test.describe()}")
        write_split(
            args.out / "split.json", train=train, **({"val": val} if val is not None else {}), test=test
        )
        save_samples(test, args.out / "test.npz")
    opts = TrainOptions(
        lr=args.lr,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        budget_clock=args.budget_clock,
        patience=args.patience,
        loss_tol=args.loss_tol,
        augment=not args.no_augment,
        seed=args.seed,
        device=args.device,
        val_frames=args.val_frames,
        class_weights=args.class_weights,
        progress=rank0,
    )
    minutes = parse_minutes(args.max_minutes, [m.name for m in members])
    wall = parse_minutes(args.max_wall_minutes, [m.name for m in members])
    summaries = []
    for cfg in members:
        member_opts = dataclasses.replace(
            opts, max_minutes=minutes[cfg.name], max_wall_minutes=wall[cfg.name]
        )
        resume = not args.no_resume
        summaries.append(train_member(cfg, train, val, member_opts, args.out / cfg.name, resume=resume))
    for s in summaries:  # every rank: replicas must agree (checked by tests/train/test_seg_ddp.py)
        print(f"[seg] rank {s['rank']} {s['member']} params sha256 {s['param_sha256']}", flush=True)
    if rank0:
        write_summary(
            args,
            summaries,
            "lus-train seg " + " ".join(sys.argv[2:] if argv is None else argv),
            round((time.monotonic() - t0) / 60, 2),
        )
        for s in summaries:
            print(
                f"[seg] {s['member']}: {s['steps']} steps in {s['minutes']} min "
                f"({s['cpu_minutes']} CPU min), "
                f"stopped: {s['stopped']}, "
                f"best val COVID Dice {s['best_val_covid_dice']}"
            )
    return 0
