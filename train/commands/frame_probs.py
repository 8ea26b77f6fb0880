"""``lus-train frame-probs``: run a trained frame model over a dataset and write its per-frame
probabilities in the aggregator's input format (``train.aggregator.data``; written by
``train.frame.probs``).

    lus-train frame-probs runs/frame/regstn --data data/new-patients --out probs.json

The dataset need not be the one the model was trained on: scoring patients the frame model never
saw is how the clip aggregator gets honest inputs (paper §IV-B.4). ``--split`` keeps only the run's
own train or test patients (with the training dataset); ``all`` (default) scores every clip.

``run`` may also be a shipped model's ``torch.export`` program (``models/demo/frame/regstn.torch.pt2``):
its softmax output is used as is (the training run need not exist any more), its input size comes from
the ONNX manifest beside it, and ``--split`` must be ``all`` (a program records no patients).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from train.commands import load_run
from train.frame.sources import add_data_args, add_video_label_arg, load_table


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lus-train frame-probs",
        description="Per-frame probabilities of a trained frame model, in the aggregator's JSON format.",
    )
    ap.add_argument("run", type=Path,
                    help="run folder (or last.pt) of lus-train frame, or a shipped NAME.torch.pt2 program")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="all clips (default), or only the run's own train / test patients",
    )
    add_video_label_arg(ap)
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_args(ap)
    return ap


def exported_frame_model(program: Path):  # -> (nn.Module, (H, W))
    """A shipped frame model's ``torch.export`` program as the module ``predict`` expects: ``{"logits",
    "theta"}`` with logits = log of the program's softmax output (so softmax gives the probabilities back)."""
    import torch

    from engines.manifest import load_manifest

    torch.set_num_threads(1)
    onnx_manifest = load_manifest(program.with_name(program.name.replace(".torch.pt2", ".json")))
    exported = torch.export.load(str(program)).module()

    class Exported(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            probs, theta = exported(x)
            return {"logits": probs.clamp_min(1e-30).log(), "theta": theta}

    return Exported(), tuple(onnx_manifest["preprocessing"]["size_hw"])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from train.frame.probs import dump_frame_probs

    if args.run.suffix == ".pt2":
        if args.split != "all":
            raise SystemExit(f"{args.run}: a torch.export program records no patients; use --split all")
        model, input_hw = exported_frame_model(args.run)
        table = load_table(args, input_hw, progress=not args.quiet)
        path = dump_frame_probs(model, table, args.out, 64, video_label=args.video_label)
        print(f"{path}: {len(table.videos)} clips, {len(table)} frames ({args.run})")
        return 0
    model, cfg, ckpt, ckpt_path = load_run(args.run)
    table = load_table(args, tuple(cfg.input_hw), progress=not args.quiet)
    if args.split != "all":
        patients = ckpt.get("splits", {}).get(args.split)
        if not patients:
            raise SystemExit(f"{ckpt_path}: the checkpoint records no {args.split} patients; use --split all")
        missing = sorted(set(patients) - set(table.patients()))
        if missing:
            raise SystemExit(
                f"--split {args.split}: patients {missing[:5]} of {ckpt_path} are not in this dataset; "
                "use the run's training data or --split all"
            )
        table = table.select_patients(patients)
    path = dump_frame_probs(model, table, args.out, cfg.eval_batch, video_label=args.video_label)
    print(f"{path}: {len(table.videos)} clips, {len(table)} frames ({cfg.model}, {ckpt_path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
