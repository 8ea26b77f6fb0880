"""Data-parallel training helper: one code path for a laptop, ``torchrun`` on CPUs and multi-GPU nodes.

A training loop calls :func:`setup` once; under ``torchrun`` (env ``WORLD_SIZE``/``RANK``/
``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` set) it joins the process group — NCCL when the
process has a CUDA device, gloo otherwise — and every helper below becomes collective-aware. Run
plainly it returns a single-process context and the helpers are no-ops, so the same loop runs
unchanged in both cases::

    ctx = distributed.setup()
    model = distributed.wrap_model(model.to(ctx.device), ctx)
    sampler = distributed.make_sampler(dataset, ctx, shuffle=True, seed=0)
    ...
    if ctx.is_main: save_checkpoint(...)      # rank-0-only logging / files
    distributed.cleanup(ctx)

Ranks must see the same data in the same order up to the sampler's shard, so seed every rank the
same (:func:`seed_everything`) — model initialisation is then identical as well, and DDP's
initial broadcast makes sure of it regardless.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: not distributed

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, draws progress bars and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the torchrun/``torch.distributed.launch`` environment variables are present."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device: str | None = None, backend: str | None = None) -> DistContext:
    """Join the process group if launched by torchrun, else return a single-process context.

    ``device``: ``"cpu"``, ``"cuda"`` or None (CUDA when available). ``backend``: override the
    choice of ``nccl`` (CUDA) / ``gloo`` (CPU).
    """
    want_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for but CUDA is not available: pass --device cpu")
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        dev = torch.device("cuda", 0) if want_cuda else torch.device("cpu")
        return DistContext(device=dev)
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if want_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    chosen = backend or ("nccl" if want_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=chosen, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev, backend=chosen)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (safe to call when not distributed)."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch identically (call with the same seed on every rank)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def wrap_model(model: torch.nn.Module, ctx: DistContext, **ddp_kwargs: Any) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when distributed (BatchNorm → SyncBatchNorm on CUDA)."""
    if not ctx.distributed:
        return model
    if ctx.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp_kwargs.setdefault("device_ids", [ctx.local_rank])
    return torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper (for checkpoints and export)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


class ShardedSampler(Sampler[int]):
    """Shard the indices drawn by any base sampler across ranks (e.g. a class-balanced sampler).

    The base sampler must draw the same sequence on every rank for a given epoch: it is reseeded
    with ``seed + epoch`` via :meth:`set_epoch` when it has a ``generator`` attribute.
    """

    def __init__(self, base: Sampler[int], ctx: DistContext, seed: int = 0) -> None:
        self.base, self.ctx, self.seed, self.epoch = base, ctx, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        gen = getattr(self.base, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed(self.seed + epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(iter(self.base))
        per_rank = len(indices) // self.ctx.world_size
        start = self.ctx.rank * per_rank
        return iter(indices[start : start + per_rank])

    def __len__(self) -> int:
        return len(self.base) // self.ctx.world_size


def make_sampler(
    dataset: Dataset, ctx: DistContext, shuffle: bool = True, seed: int = 0, base: Sampler[int] | None = None
) -> Sampler[int] | None:
    """The sampler for this rank.

    Not distributed: ``base`` (or None, letting the DataLoader shuffle). Distributed: a
    :class:`ShardedSampler` over ``base`` when given, else ``DistributedSampler`` (``drop_last``
    so every rank runs the same number of steps). Call ``sampler.set_epoch(epoch)`` every epoch.
    """
    if not ctx.distributed:
        return base
    if base is not None:
        return ShardedSampler(base, ctx, seed=seed)
    return DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed, drop_last=True
    )


def set_epoch(sampler: Sampler[int] | None, epoch: int) -> None:
    """Forward the epoch to samplers that reshuffle per epoch (no-op for others)."""
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def all_reduce_mean(value: float | torch.Tensor, ctx: DistContext) -> float:
    """Mean of a scalar over ranks (the value itself when not distributed)."""
    t = torch.as_tensor(value, dtype=torch.float64, device=ctx.device).detach().clone()
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world_size
    return float(t.item())


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if ctx.distributed:
        dist.barrier()
