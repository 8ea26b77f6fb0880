"""``lus-train seg`` under torchrun: two gloo processes train a few steps and the replicas'
parameters stay identical (each rank prints the sha256 of its parameters)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_replicas(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "train.cli",
        "seg",
        "--members",
        "unet",
        "--set",
        "unet.filters=[4,4,4]",
        "--set",
        "unet.latent_channels=8",
        "--synthetic",
        "4",
        "--synthetic-clips",
        "1",
        "--synthetic-frames",
        "8",
        "--synthetic-stride",
        "4",
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "3",
        "--eval-every",
        "3",
        "--batch-size",
        "1",
        "--val-frames",
        "2",
        "--seed",
        "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    digests = dict(re.findall(r"\[seg\] rank (\d) unet params sha256 ([0-9a-f]{64})", proc.stdout))
    assert set(digests) == {"0", "1"}, proc.stdout[-2000:]
    assert digests["0"] == digests["1"]
    summary = (tmp_path / "run" / "unet" / "summary.json").read_text()
    assert '"steps": 3' in summary
    assert (tmp_path / "run" / "unet" / "best.pt").is_file() and (
        tmp_path / "run" / "unet" / "curves.png"
    ).is_file()
