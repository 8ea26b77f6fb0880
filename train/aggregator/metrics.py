"""Clip-score metrics as in the paper's Tables II and III (§V-B).

Weighted F1, precision and recall (scikit-learn, ``average="weighted"``: per-score metric weighted by
the fraction of clips with that score) per fold, reported as [mean, std] over folds; confusion matrices
pooled over all folds' predictions, drawn row-normalised in % as a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

LABELS = [0, 1, 2, 3]


def fold_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average="weighted", zero_division=0
    )
    return {"f1": float(f), "precision": float(p), "recall": float(r)}


def summarise(per_fold: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-fold metric dicts → ``{metric: [mean, std]}`` (population std over folds)."""
    out = {}
    for key in ("f1", "precision", "recall"):
        values = np.array([d[key] for d in per_fold])
        out[key] = [float(values.mean()), float(values.std())]
    return out


def pooled_confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=LABELS)


def plot_confusions(matrices: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """One panel per method: row-normalised confusion matrix (%) with counts, like Table III."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4.0), squeeze=False)
    for ax, (name, cm) in zip(axes[0], matrices.items(), strict=True):
        rows = cm.sum(axis=1, keepdims=True)
        pct = np.divide(100.0 * cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
        ax.imshow(pct, vmin=0, vmax=100, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{pct[i, j]:.0f}%\n({cm[i, j]})", ha="center", va="center",
                        color="white" if pct[i, j] > 50 else "black", fontsize=8)  # fmt: skip
        ax.set_xticks(LABELS)
        ax.set_yticks(LABELS)
        ax.set_xlabel("predicted score")
        ax.set_ylabel("true score")
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
