"""Train one frame model from clip-level scores (one fold of the protocol, or the shipped fit).

Methods (one compute budget each: the same number of frames through the frame model per step and
the same number of steps):

- ``inherit`` — baseline (a): every sampled frame is given its clip's score; SORD on frames.
- ``mil-uninorm`` — multiple-instance learning through the uninorm layer, trained end to end with
  the frame model (:class:`train.real.heads.UninormHead`); SORD on the clip.
- ``mil-mean`` — the control pooling: mean of the frame logits; SORD on the clip.

A step draws ``clips_per_step`` clips (class-balanced by clip score) and ``frames_per_clip``
frames of each (without replacement where the clip is long enough, kept in time order), augments
every frame (``train.frame.data.build_augment``), and adds the Reg-STN regularisers (consistency
between the two crops, the scale priors, eq. (5)-(6)) and a containment penalty that keeps both
crops inside the frame (the squared distance of each crop corner beyond the [−1, 1] frame).

Model selection uses a validation split of the training patients only: every ``eval_every`` steps
the validation clips (up to ``val_frames`` evenly spaced frames each) are scored and the state with
the best validation clip loss is kept. Torch threads are set from ``threads`` here and nowhere else.
The checkpoint has the ``lus-train frame`` format (``config``, ``model``), so ``lus-train export``
and ``frame-probs`` read it, plus ``head`` and the clip-training settings.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engines.preprocess import scale_intensity
from train.frame.config import FrameConfig, make_config
from train.frame.data import build_augment
from train.frame.loop import model_from_config
from train.losses.sord import sord_loss
from train.real.cache import ClipCache
from train.real.heads import MeanHead, UninormHead

METHODS = ("inherit", "mil-uninorm", "mil-mean")


@dataclass
class ClipTrainConfig:
    """Settings of one clip-level training run (frame model shape comes from ``frame``)."""

    method: str = "mil-uninorm"
    arch: str = "regstn"  # a Table I model name: regstn, cnn-sord, ...
    preset: str = (
        "cpu"  # the frame model's shape: a ``train.frame.config`` preset (cpu: 128x128; tiny: tests)
    )
    steps: int = 800
    clips_per_step: int = 4
    frames_per_clip: int = 8
    lr: float = 1e-3
    head_lr: float = 1e-2  # the clip head's own parameters (neutral elements, temperature): the paper's 1e-2
    weight_decay: float = 1e-4
    sord_m: float = 2.0
    sord_gap: float = 0.5  # video-level SORD, as for the aggregator (§IV-B)
    w_consistency: float = 0.1
    w_scale_prior: float = 1.0
    w_inside: float = 10.0
    # start of the neutral elements; the published 0 does not move end to end (the gradient pushes e below 0)
    uninorm_init: float = 0.25
    appearance_p: float = 0.0
    pretrained: str | None = None  # a torch.export program (NAME.torch.pt2) or a checkpoint of the same model
    eval_every: int = 100
    val_frames: int = 24
    threads: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def frame_config(self) -> FrameConfig:
        cfg = make_config(self.preset, self.arch)
        cfg.seed, cfg.threads, cfg.lr, cfg.weight_decay = self.seed, self.threads, self.lr, self.weight_decay
        cfg.theta_lr_mult, cfg.w_consistency, cfg.w_scale_prior = 1.0, self.w_consistency, self.w_scale_prior
        cfg.sord_gap = self.sord_gap
        cfg.augment.appearance_p = self.appearance_p
        return cfg


def load_pretrained(model: torch.nn.Module, path: str | Path) -> None:
    """Copy weights from a ``torch.export`` program (``.pt2``) or a ``lus-train`` checkpoint (``.pt``)."""
    path = Path(path)
    if path.suffix == ".pt2":
        state = {k.removeprefix("model."): v for k, v in torch.export.load(str(path)).state_dict.items()}
    else:
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    own = model.state_dict()
    wrong = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path}: weights do not fit this model ({len(wrong)} tensors, e.g. {wrong[:3]})")
    model.load_state_dict({k: state[k] for k in own})


def corner_excess(theta: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the crop corners (θ·[±1, ±1, 1]) beyond the frame's [−1, 1] square."""
    corners = theta.new_tensor([[-1, -1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, 1]])
    xy = torch.einsum("nkij,cj->nkci", theta, corners)
    return torch.relu(xy.abs() - 1).pow(2).sum(-1).mean()


class ClipSampler:
    """Class-balanced clips, then frames within each clip, from a seeded generator."""

    def __init__(self, cache: ClipCache, clip_ids: np.ndarray, seed: int) -> None:
        self.cache, self.ids = cache, np.asarray(clip_ids)
        labels = cache.labels[self.ids]
        counts = np.bincount(labels, minlength=4).astype(float)
        w = 1.0 / counts[labels]
        self.p = w / w.sum()
        self.rng = np.random.default_rng(seed)

    def clips(self, n: int) -> np.ndarray:
        return self.rng.choice(self.ids, size=n, p=self.p)

    def frames(self, c: int, t: int) -> np.ndarray:
        n = int(self.cache.length[c])
        idx = self.rng.choice(n, size=t, replace=n < t)
        return int(self.cache.start[c]) + np.sort(idx)


def _batch(images: np.ndarray, augment: Any) -> torch.Tensor:
    out = []
    for img in images:
        if augment is not None:
            img = augment(image=img)["image"]
        out.append(scale_intensity(np.ascontiguousarray(img), "unit"))
    return torch.from_numpy(np.stack(out))[:, None]


@torch.no_grad()
def frame_logits(
    model: torch.nn.Module, images: np.ndarray, batch: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, 4] and θ [N, K, 2, 3] (empty for models without crops) of uint8 frames, no augmentation."""
    model.eval()
    logits, thetas = [], []
    for i in range(0, len(images), batch):
        out = model(_batch(images[i : i + batch], None))
        logits.append(out["logits"].numpy())
        if "theta" in out:
            thetas.append(out["theta"].numpy())
    th = np.concatenate(thetas) if thetas else np.zeros((0,))
    return np.concatenate(logits), th


def spaced(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.unique(np.linspace(0, n - 1, k).round().astype(int))


class ClipModel(torch.nn.Module):
    """Frame model + clip head (``head`` None for the ``inherit`` baseline)."""

    def __init__(self, frame_model: torch.nn.Module, head: torch.nn.Module | None) -> None:
        super().__init__()
        self.frame_model, self.head = frame_model, head

    def clip_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, T, 4] frame logits → [B, 4] clip logits (the inherit baseline: mean of the logits)."""
        return logits.mean(-2) if self.head is None else self.head(logits)


def make_clip_model(cfg: ClipTrainConfig) -> ClipModel:
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}: use one of {list(METHODS)}")
    frame = model_from_config(cfg.frame_config())
    if cfg.pretrained:
        load_pretrained(frame, cfg.pretrained)
    head = {"inherit": None, "mil-uninorm": UninormHead(cfg.uninorm_init), "mil-mean": MeanHead()}[cfg.method]
    return ClipModel(frame, head)


def clip_loss_of(
    model: ClipModel, cache: ClipCache, clip_ids: np.ndarray, cfg: ClipTrainConfig
) -> tuple[float, np.ndarray]:
    """Mean clip SORD loss and clip logits [C, 4] over ``clip_ids`` (``val_frames`` frames each)."""
    rows = []
    for c in clip_ids:
        idx = int(cache.start[c]) + spaced(int(cache.length[c]), cfg.val_frames)
        logits, _ = frame_logits(model.frame_model, cache.images[idx])
        with torch.no_grad():
            rows.append(model.clip_logits(torch.from_numpy(logits)[None])[0].numpy())
    z = torch.from_numpy(np.stack(rows))
    y = torch.from_numpy(cache.labels[clip_ids])
    return float(sord_loss(z, y, cfg.sord_m, cfg.sord_gap)), z.numpy()


def train_clip_model(
    cfg: ClipTrainConfig,
    cache: ClipCache,
    fit_ids: np.ndarray,
    val_ids: np.ndarray | None,
    out_dir: str | Path,
    progress: bool = True,
    label: str = "",
) -> dict[str, Any]:
    """Train; write ``best.pt`` (the best validation state, or the last one without validation),
    ``history.json``; return {"checkpoint", "history", "best_step", "seconds"}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    model = make_clip_model(cfg)
    fcfg = cfg.frame_config()
    augment = build_augment(fcfg.augment, fcfg.input_hw)
    groups = [{"params": list(model.frame_model.parameters())}]
    if model.head is not None and list(model.head.parameters()):
        groups.append({"params": list(model.head.parameters()), "lr": cfg.head_lr, "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    sampler = ClipSampler(cache, fit_ids, cfg.seed)
    priors = torch.tensor(fcfg.scale_priors)
    history: list[dict[str, Any]] = []
    best = (float("inf"), -1)
    t0 = time.monotonic()
    sums: dict[str, float] = {}
    bar = tqdm(range(1, cfg.steps + 1), desc=f"{label or cfg.method}", disable=not progress, mininterval=10)
    for step in bar:
        model.train()
        clips = sampler.clips(cfg.clips_per_step)
        idx = np.concatenate([sampler.frames(int(c), cfg.frames_per_clip) for c in clips])
        x = _batch(cache.images[idx], augment)
        y = torch.from_numpy(cache.labels[clips])
        outputs = model.frame_model(x)
        logits = outputs["logits"]
        if model.head is None:
            cls = sord_loss(logits, y.repeat_interleave(cfg.frames_per_clip), cfg.sord_m, cfg.sord_gap)
        else:
            z = model.clip_logits(logits.reshape(len(clips), cfg.frames_per_clip, -1))
            cls = sord_loss(z, y, cfg.sord_m, cfg.sord_gap)
        zero = logits.new_zeros(())
        cons = ((logits - outputs["logits2"]) ** 2).mean() if "logits2" in outputs else zero
        prior = (
            (outputs["sigma"] - priors[: outputs["sigma"].shape[1]]).abs().mean()
            if "sigma" in outputs
            else zero
        )
        inside = corner_excess(outputs["theta"]) if "theta" in outputs else zero
        loss = cls + cfg.w_consistency * cons + cfg.w_scale_prior * prior + cfg.w_inside * inside
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if isinstance(model.head, UninormHead):
            model.head.clamp_()
        for k, v in (("loss", loss), ("cls", cls), ("inside", inside)):
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            n = cfg.eval_every if step % cfg.eval_every == 0 else step % cfg.eval_every
            rec: dict[str, Any] = {
                "step": step,
                **{k: v / n for k, v in sums.items()},
                "seconds": round(time.monotonic() - t0, 1),
            }
            sums = {}
            if isinstance(model.head, UninormHead):
                rec["neutral_elements"], rec["temperature"] = (
                    model.head.neutral_elements,
                    model.head.temperature,
                )
            if val_ids is not None and len(val_ids):
                rec["val_loss"], z = clip_loss_of(model, cache, val_ids, cfg)
                rec["val_acc"] = float((z.argmax(1) == cache.labels[val_ids]).mean())
                score = rec["val_loss"]
            else:
                score = -step  # no validation: keep the last state
            if score < best[0]:
                best = (score, step)
                save_checkpoint(model, cfg, out / "best.pt", step)
            history.append(rec)
            (out / "history.json").write_text(json.dumps(history, indent=1))
            bar.set_postfix(loss=f"{rec['loss']:.3f}", val=f"{rec.get('val_loss', float('nan')):.3f}")
            if not progress:
                print(
                    f"[{label or cfg.method}] step {step}/{cfg.steps} "
                    + json.dumps(
                        {
                            k: (round(v, 4) if isinstance(v, float) else v)
                            for k, v in rec.items()
                            if k != "step"
                        }
                    ),
                    flush=True,
                )
    return {
        "checkpoint": out / "best.pt",
        "history": history,
        "best_step": best[1],
        "seconds": round(time.monotonic() - t0, 1),
    }


def save_checkpoint(model: ClipModel, cfg: ClipTrainConfig, path: Path, step: int) -> None:
    """``lus-train frame`` checkpoint format (config + model) plus the clip head and settings."""
    head: dict[str, Any] = {"kind": cfg.method}
    if isinstance(model.head, UninormHead):
        head |= {"neutral_elements": model.head.neutral_elements, "temperature": model.head.temperature}
    torch.save(
        {
            "config": cfg.frame_config().to_dict(),
            "model": model.frame_model.state_dict(),
            "head": head,
            "clip_training": asdict(cfg),
            "step": step,
            "epoch": 0,
            "history": [],
            "splits": {},
        },
        path,
    )


def load_clip_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The frame model (eval mode) and the raw checkpoint of :func:`save_checkpoint`."""
    from train.frame.loop import load_checkpoint

    model, _, ckpt = load_checkpoint(path)
    return model, ckpt
