"""DDP helper: two gloo processes (launched by ``torchrun``) train a few steps; replicas end identical.

Real processes joined through torchrun's TCP rendezvous on localhost; the worker script is the
kind of loop a training command runs, using only :mod:`train.distributed`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from train import distributed

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from train import distributed

    torch.set_num_threads(1)
    ctx = distributed.setup(device="cpu")
    assert ctx.distributed and ctx.backend == "gloo" and ctx.world_size == 2, ctx
    # Different seeds per rank on purpose: DDP's initial broadcast must still make replicas equal.
    distributed.seed_everything(100 + ctx.rank)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 3))
    model = distributed.wrap_model(model, ctx)
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen))
    sampler = distributed.make_sampler(data, ctx, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=8, sampler=sampler)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    steps = 0
    for epoch in range(2):
        distributed.set_epoch(sampler, epoch)
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            steps += 1
    mean_steps = distributed.all_reduce_mean(float(steps), ctx)
    state = {k: v.detach().clone() for k, v in distributed.unwrap(model).state_dict().items()}
    torch.save({"state": state, "steps": steps, "mean_steps": mean_steps},
               Path(sys.argv[1]) / f"rank{ctx.rank}.pt")
    distributed.cleanup(ctx)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_replicas_stay_identical(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["steps"] == r1["steps"] == 8  # 64 samples / 2 ranks / batch 8, 2 epochs
    assert r0["mean_steps"] == 8.0
    compared = 0
    for name, tensor in r0["state"].items():
        if "running_" in name or name.endswith("num_batches_tracked"):
            continue  # BatchNorm statistics stay per-rank on CPU (SyncBatchNorm is CUDA-only)
        assert torch.equal(tensor, r1["state"][name]), f"replicas differ in {name}"
        compared += 1
    assert compared == 6


def test_single_process_context_is_plain() -> None:
    if distributed.launched_by_torchrun():
        pytest.skip("running under torchrun")
    ctx = distributed.setup(device="cpu")
    assert not ctx.distributed and ctx.is_main and ctx.world_size == 1
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, ctx) is model
    assert distributed.make_sampler(TensorDataset(torch.zeros(4, 2)), ctx) is None
    assert distributed.all_reduce_mean(3.0, ctx) == 3.0


@pytest.mark.slow
def test_frame_training_command_runs_under_torchrun(tmp_path: Path) -> None:
    """`lus-train frame` unchanged under torchrun: 2 gloo ranks, rank 0 writes one checkpoint."""
    from train.frame.data import toy_table

    toy_table(n_videos=8, frames_per_video=6).save(tmp_path / "toy.npz")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "train.cli",
        "frame",
        "--config",
        "tiny",
        "--epochs",
        "1",
        "--cache",
        str(tmp_path / "toy.npz"),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch 1/1") == 1  # only rank 0 logs
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["history"][0]["test_f1"] is not None
