"""Training loop for one segmentation member (Roy et al. 2020 §IV-C.3-4).

Pixel-wise cross-entropy, Adam (the paper's lr is 1e-5; the CPU default here is 1e-3 so that a
few hundred steps converge on synthetic data — say which you used), batches balanced across
patients and scores (:mod:`train.seg.sampler`), on-line augmentation (:mod:`train.seg.augment`).
Training stops at ``max_steps``; at ``max_minutes`` (wall clock, or process CPU time with
``budget_clock="cpu"`` — the compute actually used when the machine is shared — plus an optional
``max_wall_minutes`` cap); when the validation Dice has not improved for ``patience`` evaluations;
or when the training loss has converged (the mean loss of the last ``window`` steps is within
``loss_tol`` (relative) of the window before).

Runs unchanged under ``torchrun`` (DDP via :mod:`train.distributed`; gloo on CPU, NCCL on GPU):
rank 0 evaluates, logs, draws the progress bar and writes files. Checkpoints (``last.pt``, with
optimizer and sampler state for ``resume``) and the best weights by validation Dice (``best.pt``)
go to ``out_dir``; ``curves.png`` plots training loss and validation metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from train import distributed
from train.models.seg_models import build_member
from train.seg.augment import paper_augmentation
from train.seg.config import MemberConfig
from train.seg.data import SegSamples, SegTorchDataset
from train.seg.metrics import SegMeter
from train.seg.sampler import PAPER_PATTERN, BalancedSampler


@dataclass
class TrainOptions:
    """Everything that controls a training run (stored in the checkpoint)."""

    lr: float = 1e-3
    batch_size: int = 4
    max_steps: int = 400
    max_minutes: float = 0.0  # 0: no time limit
    budget_clock: str = "wall"  # "wall" or "cpu" (process CPU time: the compute used on a shared machine)
    max_wall_minutes: float = 0.0  # with budget_clock="cpu": a wall-clock cap as well (0: none)
    eval_every: int = 50
    patience: int = 4  # evaluations without validation-Dice improvement
    window: int = 50  # steps per loss window for the convergence test
    loss_tol: float = 0.0  # 0: convergence test off
    augment: bool = True
    pattern: tuple[int, ...] = PAPER_PATTERN
    seed: int = 0
    device: str = "cpu"
    val_batch: int = 4
    val_frames: int = 32  # at most this many validation frames per evaluation (0: all)
    progress: bool = True
    class_weights: str = "none"  # "none" (paper: plain pixel CE) or "sqrt" (sqrt inverse frequency)


def class_weights(masks: np.ndarray, mode: str, n_classes: int = 5) -> torch.Tensor | None:
    """Per-class CE weights: None for ``none``; ``sqrt``: (f_BG / f_c)^0.5 clipped to [1, 20].

    A CPU-budget option, not the paper's: with few hundred steps the plain CE sits at the
    all-background solution for a long time (markers cover ~5 % of the pixels).
    """
    if mode == "none":
        return None
    if mode != "sqrt":
        raise ValueError(f"class_weights {mode!r}: use 'none' (paper) or 'sqrt'")
    freq = np.bincount(masks.ravel(), minlength=n_classes)[:n_classes].astype(np.float64)
    freq /= freq.sum()
    w = np.where(freq > 0, np.sqrt(freq[-1] / np.maximum(freq, 1e-12)), 1.0)
    return torch.tensor(np.clip(w, 1.0, 20.0), dtype=torch.float32)


@torch.no_grad()
def predict_labels(model: nn.Module, samples: SegSamples, batch: int = 4, device: str = "cpu") -> np.ndarray:
    """Deterministic label maps [N, H, W] (uint8) of a member on un-augmented samples."""
    model.eval()
    ds = SegTorchDataset(samples)
    out = []
    for i in range(0, len(ds), batch):
        x = torch.stack([ds[j][0] for j in range(i, min(len(ds), i + batch))]).to(device)
        out.append(model(x).argmax(1).to(torch.uint8).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *samples.images.shape[1:]), np.uint8)


def evaluate(model: nn.Module, samples: SegSamples, batch: int = 4, device: str = "cpu") -> dict[str, float]:
    meter = SegMeter()
    meter.update(predict_labels(model, samples, batch, device), samples.masks)
    return meter.result()


def _val_subset(val: SegSamples | None, n: int, seed: int) -> SegSamples | None:
    if val is None or len(val) == 0:
        return None
    if n <= 0 or len(val) <= n:
        return val
    return val.subset(np.sort(np.random.default_rng(seed).choice(len(val), n, replace=False)))


def save_curves(history: dict[str, list], path: Path, title: str) -> None:
    """PNG: training loss per step (and its running mean), validation Dice/accuracy per evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps, losses = history["step"], history["loss"]
    a.plot(steps, losses, lw=0.5, alpha=0.5, label="batch")
    if len(losses) >= 10:
        k = max(5, len(losses) // 20)
        a.plot(steps[k - 1 :], np.convolve(losses, np.ones(k) / k, mode="valid"), label=f"mean of {k}")
    a.set(xlabel="step", ylabel="pixel cross-entropy", title=f"{title}: training loss")
    a.set_yscale("log")
    a.legend()
    for key in ("covid_dice", "categorical_dice", "pixel_accuracy"):
        b.plot(history["val_step"], history[f"val_{key}"], marker="o", label=key)
    b.set(xlabel="step", ylim=(0, 1), title="validation")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_member(
    cfg: MemberConfig,
    train: SegSamples,
    val: SegSamples | None,
    opts: TrainOptions,
    out_dir: str | Path,
    resume: bool = False,
) -> dict[str, Any]:
    """Train one member; returns a summary (steps, why it stopped, best validation metrics)."""
    out_dir = Path(out_dir)
    ctx = distributed.setup(device=opts.device)
    distributed.seed_everything(opts.seed)
    model = build_member(cfg).to(ctx.device)
    optim = torch.optim.Adam(model.parameters(), lr=opts.lr)
    history: dict[str, list] = {
        "step": [],
        "loss": [],
        "val_step": [],
        "val_covid_dice": [],
        "val_categorical_dice": [],
        "val_pixel_accuracy": [],
    }
    step, best, best_step, stale = 0, -math.inf, 0, 0
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        ck = torch.load(last_path, map_location="cpu", weights_only=False)
        if ck["config"] != cfg.to_dict():
            raise ValueError(
                f"{last_path} was trained with another config: use a fresh --out or --no-resume"
            )
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optimizer"] if "optimizer" in ck else ck["optim"])  # "optim": older runs
        step, best, best_step, stale, history = (
            ck["step"],
            ck["best"],
            ck["best_step"],
            ck["stale"],
            ck["history"],
        )
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    ddp = distributed.wrap_model(model, ctx)

    remaining = max(1, opts.max_steps - step)
    base = BalancedSampler(
        train.scores,
        train.patients,
        num_samples=opts.batch_size * ctx.world_size * remaining,
        pattern=opts.pattern,
        seed=opts.seed,
    )
    sampler = distributed.make_sampler(None, ctx, seed=opts.seed, base=base)  # type: ignore[arg-type]
    distributed.set_epoch(sampler, step)  # a resumed run draws fresh batches
    if not ctx.distributed:
        base.generator.manual_seed(opts.seed + step)
    pipeline = paper_augmentation(seed=opts.seed + 7919 * ctx.rank + step) if opts.augment else None
    loader = DataLoader(
        SegTorchDataset(train, pipeline),
        batch_size=opts.batch_size,
        sampler=sampler or base,
        num_workers=0,
        drop_last=True,
    )
    val_sub = _val_subset(val, opts.val_frames, opts.seed)
    weights = class_weights(train.masks, opts.class_weights)
    if weights is not None:
        weights = weights.to(ctx.device)
        if ctx.is_main:
            print(f"[seg {cfg.name}] class weights [0,1,2,3,BG] = {[round(float(w), 2) for w in weights]}")

    t0, c0 = time.monotonic(), time.process_time()
    if opts.budget_clock not in ("wall", "cpu"):
        raise ValueError(f"budget_clock {opts.budget_clock!r}: use 'wall' or 'cpu'")

    def used_minutes() -> float:
        return ((time.process_time() - c0) if opts.budget_clock == "cpu" else (time.monotonic() - t0)) / 60

    reason = "max_steps"
    bar = None
    if ctx.is_main and opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=opts.max_steps, initial=step, desc=f"seg {cfg.name}", unit="step", mininterval=5)
    it = iter(loader)
    while step < opts.max_steps:
        ddp.train()
        x, y = next(it)
        x, y = x.to(ctx.device), y.to(ctx.device)
        loss = F.cross_entropy(ddp(x), y, weight=weights)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        loss_v = distributed.all_reduce_mean(loss.detach(), ctx)
        history["step"].append(step)
        history["loss"].append(loss_v)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.4f}", best_dice=f"{best:.3f}" if best > -math.inf else "-")
        stop = None
        if opts.max_minutes and used_minutes() >= opts.max_minutes:
            stop = "max_minutes"
        if opts.max_wall_minutes and (time.monotonic() - t0) / 60 >= opts.max_wall_minutes:
            stop = "max_wall_minutes"
        w = opts.window
        if opts.loss_tol and len(history["loss"]) >= 2 * w:
            cur, prev = np.mean(history["loss"][-w:]), np.mean(history["loss"][-2 * w : -w])
            if prev - cur < opts.loss_tol * prev:
                stop = "train_loss_converged"
        if ctx.distributed:  # every rank must leave the loop at the same step (time limits differ)
            any_stop = distributed.all_reduce_mean(float(stop is not None), ctx) > 0
            stop = stop or ("max_minutes" if any_stop else None)
        at_eval = step % opts.eval_every == 0 or stop is not None or step == opts.max_steps
        if at_eval:
            if ctx.is_main:
                metrics = evaluate(model, val_sub, opts.val_batch, str(ctx.device)) if val_sub else {}
                score = metrics.get("covid_dice", float("nan"))
                history["val_step"].append(step)
                for key in ("covid_dice", "categorical_dice", "pixel_accuracy"):
                    history[f"val_{key}"].append(metrics.get(key, float("nan")))
                if val_sub is None or (not np.isnan(score) and score > best):
                    best, best_step, stale = (score if val_sub else -math.inf), step, 0
                    torch.save(
                        {
                            "config": cfg.to_dict(),
                            "model": model.state_dict(),
                            "step": step,
                            "val": metrics,
                            "options": asdict(opts),
                        },
                        best_path,
                    )
                else:
                    stale += 1
                torch.save(
                    {
                        "config": cfg.to_dict(),
                        "model": model.state_dict(),
                        "optimizer": optim.state_dict(),
                        "step": step,
                        "best": best,
                        "best_step": best_step,
                        "stale": stale,
                        "history": history,
                        "options": asdict(opts),
                    },
                    last_path,
                )
                save_curves(history, out_dir / "curves.png", cfg.name)
                msg = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not k.startswith("dice_"))
                line = f"[seg {cfg.name}] step {step} loss {loss_v:.4f} {msg} (best {best:.4f} @ {best_step})"
                (bar.write if bar is not None else print)(line)
            stale_all = int(distributed.all_reduce_mean(float(stale), ctx))
            if stop is None and val_sub is not None and opts.patience and stale_all >= opts.patience:
                stop = "val_dice_plateau"
        if stop is not None:
            reason = stop
            break
    if bar is not None:
        bar.close()
    # parameters only: BatchNorm running statistics stay per-rank on CPU (no SyncBatchNorm there)
    digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.parameters()))
    summary = {
        "member": cfg.name,
        "steps": step,
        "rank": ctx.rank,
        "param_sha256": digest.hexdigest(),
        "stopped": reason,
        "best_step": best_step,
        "best_val_covid_dice": best if best > -math.inf else None,
        "minutes": round((time.monotonic() - t0) / 60, 2),
        "cpu_minutes": round((time.process_time() - c0) / 60, 2),
        "options": asdict(opts),
        "config": cfg.to_dict(),
    }
    if ctx.is_main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    distributed.barrier(ctx)
    distributed.cleanup(ctx)
    return summary


def load_member(
    path: str | Path, map_location: str = "cpu"
) -> tuple[nn.Module, MemberConfig, dict[str, Any]]:
    """Load a member checkpoint (``best.pt``/``last.pt``): (model in eval mode, config, checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no segmentation checkpoint at {path}: train one with `lus-train seg`")
    ck = torch.load(path, map_location=map_location, weights_only=False)
    cfg = MemberConfig.from_dict(ck["config"])
    model = build_member(cfg)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg, ck
