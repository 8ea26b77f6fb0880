"""Frame-model training loop (Roy et al. 2020 §IV-A.4): Adam, step decay, class-balanced sampling,
augmentation, the joint loss; tqdm progress, per-epoch test F1, checkpoints (``last.pt``) with
resume, PNG training curves, and a history JSON. Runs unchanged under ``torchrun`` (DDP through
:mod:`train.distributed`; only rank 0 logs, evaluates and writes).

Checkpoint format (``torch.save`` dict): ``config`` (FrameConfig as dict), ``model`` (state dict),
``optimizer``, ``scheduler``, ``epoch`` (completed epochs), ``history`` (list of per-epoch dicts),
``splits`` ({"train": [patients], "test": [patients]}).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from train import distributed
from train.frame.config import FrameConfig
from train.frame.data import FrameTable, FrameTensorDataset, balanced_sampler, build_augment
from train.frame.evaluate import predict, weighted_f1
from train.losses import FrameLoss, FrameLossWeights
from train.models import build_frame_model


def model_from_config(cfg: FrameConfig) -> torch.nn.Module:
    return build_frame_model(
        cfg.arch, cfg.input_hw, width=cfg.width, loc_width=cfg.loc_width, loc_downsample=cfg.loc_downsample,
        scale_mode=cfg.scale_mode, scale_priors=cfg.scale_priors, init_translation=cfg.init_translation,
    )  # fmt: skip


def loss_from_config(cfg: FrameConfig) -> FrameLoss:
    weights = FrameLossWeights(cfg.w_cls, cfg.w_consistency, cfg.w_scale_prior)
    return FrameLoss(cfg.loss, weights, m=cfg.sord_m, gap=cfg.sord_gap, scale_priors=cfg.scale_priors)


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, FrameConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint (eval mode) with its config; returns (model, config, raw)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = FrameConfig.from_dict(ckpt["config"])
    model = model_from_config(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg, ckpt


def save_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss terms and test weighted F1 per epoch, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key in ("total", "cls", "consistency", "scale_prior"):
        if any(h["train"].get(key, 0) for h in history):
            a1.plot(ep, [h["train"][key] for h in history], marker=".", label=key)
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    a1.legend(fontsize=7)
    f1 = [(h["epoch"], h["test_f1"]) for h in history if h.get("test_f1") is not None]
    if f1:
        a2.plot(*zip(*f1, strict=True), marker="o", color="tab:green")
    a2.set_xlabel("epoch")
    a2.set_ylabel("test weighted F1 (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_frame_model(
    cfg: FrameConfig,
    train_table: FrameTable,
    test_table: FrameTable | None,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    splits: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Train, writing ``last.pt``, ``history.json`` and ``curves.png`` into ``out_dir``.

    Returns {"checkpoint": path, "history": [...], "epochs_done": n, "stopped": reason}.
    """
    out = Path(out_dir)
    ctx = distributed.setup(cfg.device)
    torch.set_num_threads(max(1, cfg.threads))
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    distributed.seed_everything(cfg.seed)
    if train_table.input_hw != tuple(cfg.input_hw):
        raise ValueError(
            f"training frames are {train_table.input_hw} but the config says input_hw={cfg.input_hw}"
        )

    model = model_from_config(cfg).to(ctx.device)
    criterion = loss_from_config(cfg).to(ctx.device)
    heads = model.theta_head_parameters() if hasattr(model, "theta_head_parameters") else []
    head_ids = {id(p) for p in heads}
    groups = [{"params": [p for p in model.parameters() if id(p) not in head_ids]}]
    if heads:
        groups.append({"params": heads, "lr": cfg.lr * cfg.theta_lr_mult})
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma)
    start_epoch, history = 0, []
    ckpt_path = out / "last.pt"
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["config"] != cfg.to_dict():
            raise ValueError(f"{ckpt_path} was written with another config; use a new --out or --no-resume")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
    ddp_model = distributed.wrap_model(model, ctx)

    dataset = FrameTensorDataset(train_table, build_augment(cfg.augment, cfg.input_hw))
    n_samples = cfg.samples_per_epoch or len(dataset)
    base = balanced_sampler(train_table.labels, n_samples, cfg.seed, cfg.class_balanced)
    sampler = distributed.make_sampler(dataset, ctx, seed=cfg.seed, base=base)
    per_rank_batch = max(1, cfg.batch_size // ctx.world_size)
    loader = DataLoader(dataset, batch_size=per_rank_batch, sampler=sampler, drop_last=True, num_workers=0)

    t_start, stopped = time.monotonic(), "epochs"
    cpu_used = float(history[-1].get("train_cpu_s", 0.0)) if history else 0.0  # resumed runs keep counting
    for epoch in range(start_epoch, cfg.epochs):
        distributed.set_epoch(sampler, epoch)
        if not ctx.distributed:
            base.generator.manual_seed(cfg.seed + epoch)  # resumable: the epoch fixes the draw
        ddp_model.train()
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(
            loader,
            desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and ctx.is_main),
            leave=False,
            mininterval=5,
        )
        cpu0 = time.process_time()
        for x, y in bar:
            x, y = x.to(ctx.device), y.to(ctx.device)
            opt.zero_grad(set_to_none=True)
            loss, parts = criterion(ddp_model(x), y)
            loss.backward()
            opt.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            steps += 1
            bar.set_postfix(loss=f"{sums['total'] / steps:.3f}")
        sched.step()
        cpu_used += time.process_time() - cpu0
        train_means = {k: distributed.all_reduce_mean(v / max(1, steps), ctx) for k, v in sums.items()}
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train": train_means,
            "lr": opt.param_groups[0]["lr"],
            "elapsed_s": round(time.monotonic() - t_start, 1),
            "train_cpu_s": round(cpu_used, 1),
            "test_f1": None,
        }
        over_wall = cfg.time_budget_min is not None and time.monotonic() - t_start > 60 * cfg.time_budget_min
        over_cpu = cfg.cpu_budget_min is not None and cpu_used > 60 * cfg.cpu_budget_min
        stop = distributed.all_reduce_mean(float(over_wall or over_cpu), ctx) > 0
        last = stop or epoch + 1 == cfg.epochs
        if ctx.is_main:
            if test_table is not None and len(test_table) and ((epoch + 1) % cfg.eval_every == 0 or last):
                probs, _ = predict(model, test_table, cfg.eval_batch)
                record["test_f1"] = weighted_f1(test_table.labels, probs.argmax(1))
            history.append(record)
            torch.save(
                {
                    "config": cfg.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "splits": splits or {},
                },
                ckpt_path,
            )
            (out / "history.json").write_text(json.dumps(history, indent=1))
            save_curves(history, out / "curves.png")
            f1 = f"{record['test_f1']:.1f}" if record["test_f1"] is not None else "-"
            print(
                f"[{cfg.model}] epoch {epoch + 1}/{cfg.epochs} loss {train_means.get('total', 0):.4f} "
                f"(cls {train_means.get('cls', 0):.4f}) test wF1 {f1}% lr {record['lr']:.1e} "
                f"wall {record['elapsed_s']:.0f}s, training CPU {cpu_used:.0f}s",
                flush=True,
            )
        else:
            history.append(record)
        if stop:
            stopped = f"budget reached after {cpu_used / 60:.1f} CPU min of training steps"
            break
    distributed.barrier(ctx)
    distributed.cleanup(ctx)
    return {"checkpoint": ckpt_path, "history": history, "epochs_done": len(history), "stopped": stopped}
