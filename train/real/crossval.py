"""The real-scan evaluation protocol: patient-level, score-stratified k-fold cross-validation.

For each fold k (its patients are the test set) and each run (a method with its settings):
1. the remaining patients are split into fit and validation patients (``train.data.folds``,
   stratified, seeded per fold); the validation patients choose the model state and fit the clip
   aggregator of methods that do not learn one; the test patients are used for nothing but scoring;
2. the frame model is trained (:func:`train.real.loop.train_clip_model`);
3. every frame of every test clip is scored (out-of-fold frame probabilities, saved), and each clip
   method turns them into a clip score and a clip probability:
   ``engine`` — the clip score the engine publishes: the runtime's own streaming uninorm
   (:class:`stream.aggregate.UninormClipAggregator`) folded over all frames, with the neutral
   elements learned end to end (``mil-uninorm``) or fitted by the published procedure on the
   validation clips' frame probabilities (the other methods); ``head`` — the mean-logit head's
   own clip score (``mil-mean``); ``max_argmax`` and ``argmax_mean`` — the paper's baselines;
4. the fold's results are written (``RUN/foldK/result.json``) as soon as it ends, so an interrupted
   protocol resumes where it stopped.
:func:`summary` folds everything into one table (mean ± std over folds) and a pooled confusion PNG.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.data.folds import validation_split
from train.real.cache import ClipCache
from train.real.loop import ClipTrainConfig, frame_logits, spaced, train_clip_model
from train.real.metrics import clip_metrics, summarise

CLIP_METHODS = ("engine", "head", "max_argmax", "argmax_mean")


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def uninorm_order_logits(probs: np.ndarray, neutral_elements: Sequence[float]) -> np.ndarray:
    """Exact order logits [4] of the four min-uninorm folds over a clip's frame probabilities [T, 4]."""
    from train.models.uninorm import state_to_logit, uninorm_log_state

    p = torch.from_numpy(np.asarray(probs, np.float64))
    e = torch.tensor(list(neutral_elements), dtype=torch.float64)
    return state_to_logit(*uninorm_log_state(p, e), e).clamp(-1e4, 1e4).numpy()


def engine_clip_score(probs: np.ndarray, neutral_elements: Sequence[float]) -> int:
    """The clip score as the engine publishes it: the runtime's streaming uninorm over every frame."""
    from stream.aggregate import UninormClipAggregator

    agg = UninormClipAggregator(neutral_elements)
    for row in probs:
        agg.update(row)
    return agg.score()


def clip_outputs(
    probs: np.ndarray, logits: np.ndarray, neutral_elements: Sequence[float], temperature: float, head: str
) -> dict[str, tuple[int, float]]:
    """(clip score, P(abnormal)) of one clip under every clip method that applies."""
    out: dict[str, tuple[int, float]] = {}
    z = temperature * uninorm_order_logits(probs, neutral_elements) / len(probs)
    out["engine"] = (engine_clip_score(probs, neutral_elements), float(1 - softmax(z)[0]))
    if head == "mil-mean":
        pm = softmax(logits.mean(0))
        out["head"] = (int(pm.argmax()), float(1 - pm[0]))
    out["max_argmax"] = (int(probs.argmax(1).max()), float((1 - probs[:, 0]).max()))
    mean = probs.mean(0)
    out["argmax_mean"] = (int(mean.argmax()), float(1 - mean[0]))
    return out


def fit_neutral_elements(clip_probs: list[np.ndarray], labels: Sequence[int]) -> list[float]:
    """The published aggregator fit (``lus-train aggregator`` defaults) on clips' frame probabilities."""
    from train.aggregator.data import ClipProbs
    from train.aggregator.training import fit_uninorm

    clips = [
        ClipProbs(str(i), "", int(y), p.astype(np.float64))
        for i, (p, y) in enumerate(zip(clip_probs, labels, strict=True))
    ]
    return fit_uninorm(clips).neutral_elements


def score_clips(
    model: torch.nn.Module, cache: ClipCache, ids: Sequence[int], max_frames: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per clip: frame logits [T, 4], probabilities [T, 4] and θ (all frames, or ``max_frames`` spaced)."""
    logits, probs, thetas = [], [], []
    for c in ids:
        n = int(cache.length[c])
        idx = int(cache.start[c]) + (np.arange(n) if max_frames is None else spaced(n, max_frames))
        lg, th = frame_logits(model, cache.images[idx])
        logits.append(lg)
        probs.append(softmax(lg.astype(np.float64)))
        thetas.append(th)
    return logits, probs, thetas


def crop_stats(thetas: list[np.ndarray]) -> dict[str, float] | None:
    """Where the Reg-STN crops sit: mean centre, scale, rotation (degrees) and the share of crop
    corners outside the frame, per crop."""
    th = [t for t in thetas if t.size]
    if not th:
        return None
    t = np.concatenate(th)  # [N, K, 2, 3]
    corners = np.array([[-1, -1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, 1]], float)
    xy = np.einsum("nkij,cj->nkci", t, corners)
    out: dict[str, float] = {}
    for k in range(t.shape[1]):
        out[f"crop{k + 1}_centre_x"] = float(t[:, k, 0, 2].mean())
        out[f"crop{k + 1}_centre_y"] = float(t[:, k, 1, 2].mean())
        out[f"crop{k + 1}_scale"] = float(t[:, k, 0, 0].mean())
        out[f"crop{k + 1}_rotation_deg"] = float(np.degrees(np.arctan2(t[:, k, 1, 0], t[:, k, 0, 0])).mean())
        out[f"crop{k + 1}_corners_outside"] = float((np.abs(xy[:, k]) > 1.0).any(-1).mean())
    return out


def run_fold(
    cache: ClipCache,
    folds: Sequence[Sequence[str]],
    k: int,
    name: str,
    cfg: ClipTrainConfig,
    out_root: str | Path,
    val_fraction: float = 0.2,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score run ``name`` on fold ``k``; cached in ``out_root/name/fold{k}/result.json``."""
    out = Path(out_root) / name / f"fold{k}"
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    test_p = list(folds[k])
    train_p = sorted({p for i, f in enumerate(folds) if i != k for p in f})
    fit_p, val_p = validation_split(train_p, cache.patients, cache.labels, val_fraction, seed=cfg.seed + k)
    assert not set(val_p) & set(test_p) and not set(fit_p) & set(test_p)
    fit_ids, val_ids, test_ids = (cache.clip_indices(p) for p in (fit_p, val_p, test_p))
    trained = train_clip_model(cfg, cache, fit_ids, val_ids, out, progress=progress, label=f"{name} fold {k}")
    from train.real.loop import load_clip_checkpoint

    model, ckpt = load_clip_checkpoint(trained["checkpoint"])
    head = ckpt["head"]
    _, val_probs, _ = score_clips(model, cache, val_ids)
    if cfg.method == "mil-uninorm":
        es, tau = head["neutral_elements"], head["temperature"]
    else:
        es, tau = fit_neutral_elements(val_probs, cache.labels[val_ids]), 1.0
    test_logits, test_probs, test_thetas = score_clips(model, cache, test_ids)
    _, fit_probs, _ = score_clips(model, cache, fit_ids, max_frames=cfg.val_frames)
    np.savez_compressed(
        out / "oof_probs.npz",
        probs=np.concatenate(test_probs).astype(np.float32),
        lengths=np.array([len(p) for p in test_probs]),
        video_ids=np.array([cache.clips[c].video_id for c in test_ids]),
    )
    clips = []
    for c, lg, pr in zip(test_ids, test_logits, test_probs, strict=True):
        ref = cache.clips[c]
        outs = clip_outputs(pr, lg, es, tau, cfg.method)
        clips.append(
            {
                "video_id": ref.video_id,
                "patient_id": ref.patient_id,
                "zone": ref.zone,
                "label": ref.label,
                "frames": len(pr),
                **{m: {"score": s, "p_abnormal": pa} for m, (s, pa) in outs.items()},
            }
        )
    metrics = {}
    for m in CLIP_METHODS:
        if m not in clips[0]:
            continue
        metrics[m] = clip_metrics(
            [c["label"] for c in clips],
            [c[m]["score"] for c in clips],
            [c[m]["p_abnormal"] for c in clips],
            [c["patient_id"] for c in clips],
        )
    fit_pred = [
        int(p.argmax(1).max()) if cfg.method == "inherit" else engine_clip_score(p, es) for p in fit_probs
    ]
    result = {
        "run": name,
        "fold": k,
        "config": asdict(cfg),
        "patients": {"fit": fit_p, "validation": val_p, "test": test_p},
        "best_step": trained["best_step"],
        "train_seconds": trained["seconds"],
        "neutral_elements": es,
        "temperature": tau,
        "fit_clips_engine": clip_metrics(
            cache.labels[fit_ids].tolist(),
            fit_pred,
            [0.0] * len(fit_pred),
            [cache.clips[c].patient_id for c in fit_ids],
        ),
        "crops": crop_stats(test_thetas),
        "metrics": metrics,
        "clips": clips,
    }
    done.write_text(json.dumps(result, indent=1))
    return result


def summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{run: {clip method: {metric: [mean, std]}, "folds": n, "fit_f1": [mean, std]}} over fold results."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_run.setdefault(r["run"], []).append(r)
    out: dict[str, Any] = {}
    for run, rs in by_run.items():
        entry: dict[str, Any] = {"folds": sorted(r["fold"] for r in rs)}
        for m in CLIP_METHODS:
            per = [r["metrics"][m] for r in rs if m in r["metrics"]]
            if per:
                entry[m] = summarise(per)
        fit = np.array([r["fit_clips_engine"]["f1"] for r in rs])
        entry["fit_f1"] = [float(fit.mean()), float(fit.std())]
        out[run] = entry
    return out


def markdown_table(summ: dict[str, Any]) -> str:
    def cell(v: list[float] | None, digits: int = 2) -> str:
        return "–" if v is None else f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"

    lines = [
        "| run | clip method | folds | weighted F1 | accuracy | QWK | MAE | AUC 0 vs ≥1 "
        "| Spearman (patient sums) | training-clip F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run, entry in summ.items():
        for m in CLIP_METHODS:
            if m not in entry:
                continue
            s = entry[m]
            lines.append(
                f"| {run} | {m} | {len(entry['folds'])} | {cell(s['f1'])} | {cell(s['accuracy'])} | "
                f"{cell(s['kappa'])} | {cell(s['mae'])} | {cell(s['auc'])} | {cell(s['spearman'])} | "
                f"{cell(entry['fit_f1']) if m == 'engine' else ''} |"
            )
    return "\n".join(lines)


def pooled_confusions(results: Sequence[dict[str, Any]], method: str = "engine") -> dict[str, np.ndarray]:
    from sklearn.metrics import confusion_matrix

    by_run: dict[str, tuple[list[int], list[int]]] = {}
    for r in results:
        t, p = by_run.setdefault(r["run"], ([], []))
        for c in r["clips"]:
            if method in c:
                t.append(c["label"])
                p.append(c[method]["score"])
    return {run: confusion_matrix(t, p, labels=[0, 1, 2, 3]) for run, (t, p) in by_run.items()}
