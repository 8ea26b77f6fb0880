"""Sub-commands of ``lus-train`` (one module each, see ``train.cli``), and what several share."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_checkpoint(run: Path) -> Path:
    """The checkpoint of a ``lus-train frame`` run folder (its ``last.pt``) or the file given.

    Exits with a message that names the missing file and the command that makes it.
    """
    path = run / "last.pt" if run.is_dir() else run
    if not path.is_file():
        raise SystemExit(f"{path}: no checkpoint; train one with `lus-train frame --out {run}`")
    return path


def load_run(run: Path) -> tuple[Any, Any, dict[str, Any], Path]:
    """(model in eval mode, its FrameConfig, the raw checkpoint, the checkpoint path) of a run, with
    torch on one thread (the commands that read runs are single-threaded by design)."""
    import torch

    from train.frame.loop import load_checkpoint

    torch.set_num_threads(1)
    path = run_checkpoint(run)
    model, cfg, ckpt = load_checkpoint(path)
    return model, cfg, ckpt, path
