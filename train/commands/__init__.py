"""Sub-commands of ``lus-train`` (one module each, see ``train.cli``), and what several share."""

from __future__ import annotations

from pathlib import Path


def run_checkpoint(run: Path) -> Path:
    """The checkpoint of a ``lus-train frame`` run folder (its ``last.pt``) or the file given.

    Exits with a message that names the missing file and the command that makes it.
    """
    path = run / "last.pt" if run.is_dir() else run
    if not path.is_file():
        raise SystemExit(f"{path}: no checkpoint; train one with `lus-train frame --out {run}`")
    return path
