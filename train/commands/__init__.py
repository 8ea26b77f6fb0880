"""Sub-commands of ``lus-train`` (one module each, see ``train.cli``), and what several share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def deprecated_alias(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    old: str,
    advice: str,
    *,
    dest: str,
    takes_value: bool = True,
    type: Any = None,
    const: Any = None,
) -> None:
    """Accept ``old``, an option's earlier spelling, for existing scripts: hidden from ``--help``, it sets
    ``dest`` (to its value, or to ``const`` for a flag without one) and prints "OLD is deprecated; ADVICE" on
    stderr (``advice``: e.g. "use --synthetic")."""

    class _Alias(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: str | Sequence[Any] | None,
            option_string: str | None = None,
        ) -> None:
            print(f"{parser.prog}: {old} is deprecated; {advice}", file=sys.stderr)
            setattr(namespace, self.dest, values if takes_value else const)

    parser.add_argument(
        old,
        dest=dest,
        action=_Alias,
        nargs=None if takes_value else 0,
        type=type,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


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
