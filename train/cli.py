"""``lus-train``: one command line over the training side's sub-commands.

Each sub-command lives in its own module under ``train.commands`` with a ``main(argv)``; this
file only dispatches, importing the module lazily so ``lus-train --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "frame": ("train.commands.frame", "train a frame scorer (Reg-STN or a Table I baseline)"),
    "aggregator": ("train.commands.aggregator", "train the uninorm clip aggregator from frame probabilities"),
    "frame-probs": ("train.commands.frame_probs", "per-frame probabilities of a trained frame model"),
    "real-cv": ("train.commands.real_cv", "clip-scored real clips: patient-level k-fold CV of frame models"),
    "real-fit": (
        "train.commands.real_fit",
        "train + export the shipped frame model and aggregator on all patients",
    ),
    "evaluate": ("train.commands.evaluate", "Table I: frame models under evaluation settings 1-3"),
    "export": ("train.commands.export", "export a frame model / aggregator to ONNX + manifest"),
    "seg": ("train.commands.seg", "train a segmentation model (U-Net, U-Net++, DeepLabv3+)"),
    "evaluate-seg": ("train.commands.evaluate_seg", "Table IV: segmentation members and the ensemble"),
    "export-seg": ("train.commands.export_seg", "export segmentation members to ONNX + manifests"),
    "import": ("train.commands.import_clips", "import real clips (one score per clip) as a dataset"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: lus-train COMMAND [options]   (lus-train COMMAND --help for its options)", ""]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lus-train: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
