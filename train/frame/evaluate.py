"""Frame-model evaluation as in Roy et al. 2020 Table I (§V-A): weighted F1 on the test split under

- Setting 1: every test frame;
- Setting 2: per video, the K frames before and after each transition between two ground-truth
  scores dropped (ambiguous boundary frames);
- Setting 3: only videos where at least A of the clinicians agree on the video score
  ("Video Ann." = every video that has clinician scores).

Also: predictions of a model over a :class:`FrameTable`, confusion matrices (PNG) and the Fig. 4
picture of the STN crops on sample frames (PNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score
from torch import nn

from train.frame.data import FrameTable


@torch.no_grad()
def predict(model: nn.Module, table: FrameTable, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax probabilities [N, 4] and θ [N, K, 2, 3] (None for models without STN), eval mode."""
    was_training = model.training
    model.eval()
    probs, thetas = [], []
    for start in range(0, len(table), batch):
        x = torch.from_numpy(table.images[start : start + batch].astype(np.float32) / 255.0)[:, None]
        out = model(x)
        probs.append(torch.softmax(out["logits"], 1).numpy())
        if "theta" in out:
            thetas.append(out["theta"].numpy())
    model.train(was_training)
    theta = np.concatenate(thetas) if thetas else None
    return (np.concatenate(probs) if probs else np.zeros((0, 4), np.float32)), theta


def setting2_mask(table: FrameTable, k: int) -> np.ndarray:
    """Keep-mask dropping, in each video, the ``k`` frames before and after every score transition."""
    keep = np.ones(len(table), dtype=bool)
    if k <= 0:
        return keep
    for vi in range(len(table.videos)):
        idx = np.nonzero(table.video == vi)[0]
        scores = table.labels[idx]
        for t in np.nonzero(np.diff(scores) != 0)[0] + 1:  # t = first frame of the new score
            keep[idx[max(0, t - k) : t + k]] = False
    return keep


def setting3_mask(table: FrameTable, agree: int | None) -> np.ndarray:
    """Keep-mask of frames in videos with ≥ ``agree`` agreeing clinicians (None: videos with scores)."""
    ok = np.array([
        bool(v.clinician_scores) and (agree is None or v.max_agreeing >= agree) for v in table.videos
    ], dtype=bool)  # fmt: skip
    return ok[table.video] if len(table) else np.zeros(0, bool)


def weighted_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    """Weighted F1 (sklearn, weights = class support), in %; NaN for an empty selection."""
    if len(labels) == 0:
        return float("nan")
    return 100.0 * float(f1_score(labels, pred, average="weighted", labels=[0, 1, 2, 3], zero_division=0))


def setting_columns(ks: Sequence[int], agrees: Sequence[int]) -> list[tuple[str, str, int | None]]:
    """(column title, setting kind, parameter) for the Table I layout."""
    cols: list[tuple[str, str, int | None]] = [("Setting 1", "s1", None)]
    cols += [(f"Setting 2, K={k}", "s2", k) for k in ks]
    cols += [("Setting 3, Video Ann.", "s3", None)]
    cols += [(f"Setting 3, A={a}", "s3", a) for a in agrees]
    return cols


def table1_scores(
    table: FrameTable, probs: np.ndarray, ks: Sequence[int], agrees: Sequence[int]
) -> dict[str, dict]:
    """{column title: {"f1": %, "frames": n}} for one model's predictions on the test table."""
    pred = probs.argmax(1)
    out = {}
    for title, kind, param in setting_columns(ks, agrees):
        if kind == "s1":
            mask = np.ones(len(table), bool)
        elif kind == "s2":
            mask = setting2_mask(table, int(param or 0))
        else:
            mask = setting3_mask(table, param)
        out[title] = {"f1": weighted_f1(table.labels[mask], pred[mask]), "frames": int(mask.sum())}
    return out


def table1_markdown(rows: dict[str, dict[str, dict]], ks: Sequence[int], agrees: Sequence[int]) -> str:
    """Markdown table, rows = models, columns = settings, cells = weighted F1 % (best in bold)."""
    cols = [c[0] for c in setting_columns(ks, agrees)]
    best = {
        c: max((r[c]["f1"] for r in rows.values() if np.isfinite(r[c]["f1"])), default=np.nan) for c in cols
    }
    lines = ["| Method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = []
        for c in cols:
            v = r[c]["f1"]
            text = "–" if not np.isfinite(v) else f"{v:.1f}"
            cells.append(f"**{text}**" if np.isfinite(v) and v == best[c] and len(rows) > 1 else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(rows.values()), {})
    lines.append("| frames | " + " | ".join(str(first.get(c, {}).get("frames", "")) for c in cols) + " |")
    return "\n".join(lines)


def save_confusion_png(labels: np.ndarray, pred: np.ndarray, path: str | Path, title: str) -> np.ndarray:
    """Row-normalised confusion matrix (%) as a PNG; returns the count matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(labels, pred, labels=[0, 1, 2, 3])
    pct = 100 * cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for i in range(4):
        for j in range(4):
            ax.text(
                j,
                i,
                f"{pct[i, j]:.0f}%\n({cm[i, j]})",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if pct[i, j] > 60 else "black",
            )
    ax.set_xticks(range(4), [f"{i}" for i in range(4)])
    ax.set_yticks(range(4), [f"{i}" for i in range(4)])
    ax.set_xlabel("predicted score")
    ax.set_ylabel("true score")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return cm


def crop_corners(theta: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Corners (4, 2) in model-input pixels of the crop θ [2, 3] samples (θ·[±1, ±1, 1])."""
    h, w = input_hw
    corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=np.float64)
    xy = corners @ np.asarray(theta, dtype=np.float64).T  # normalised
    return np.stack([(xy[:, 0] + 1) * w / 2, (xy[:, 1] + 1) * h / 2], axis=1)


@torch.no_grad()
def save_crops_png(
    model: nn.Module, table: FrameTable, path: str | Path, per_class: int = 2, seed: int = 0
) -> bool:
    """Fig. 4 style: sample test frames with the θ1 (red) / θ2 (green) boxes and the two crops.

    Returns False (and writes nothing) for models without an STN.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    picks = []
    for c in range(4):
        idx = np.nonzero(table.labels == c)[0]
        if len(idx):
            picks += list(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    if not picks:
        return False
    model.eval()
    x = torch.from_numpy(table.images[picks].astype(np.float32) / 255.0)[:, None]
    out = model(x, all_crops=True, return_crops=True)
    if "theta" not in out or "crops" not in out:
        return False
    theta, crops = out["theta"].numpy(), out["crops"].numpy()
    probs = torch.softmax(out["logits"], 1).numpy()
    k = crops.shape[1]
    fig, axes = plt.subplots(len(picks), 1 + k, figsize=(2.2 * (1 + k), 2.2 * len(picks)), squeeze=False)
    colours = ["red", "lime"]
    for r, i in enumerate(picks):
        ax = axes[r, 0]
        ax.imshow(table.images[i], cmap="gray", vmin=0, vmax=255)
        for j in range(theta.shape[1]):
            poly = crop_corners(theta[r, j], table.input_hw)
            ax.add_patch(plt.Polygon(poly - 0.5, fill=False, edgecolor=colours[j % 2], linewidth=1.5))
        v = table.videos[int(table.video[i])]
        ax.set_title(f"{v.probe or 'frame'} true {table.labels[i]} pred {probs[r].argmax()}", fontsize=7)
        for j in range(k):
            axes[r, 1 + j].imshow(crops[r, j, 0], cmap="gray", vmin=0, vmax=1)
            axes[r, 1 + j].set_title(f"x{j + 1}", fontsize=7, color=colours[j % 2])
        for a in axes[r]:
            a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
