"""Segmentation metrics of Table IV (Roy et al. 2020, §V-C), on label maps (class order [0,1,2,3,BG]).

- ``pixel_accuracy``: mean categorical accuracy over all pixels (argmax == label), pooled over the
  evaluated images (Keras ``categorical_accuracy`` averaged over pixels, as the authors trained).
- ``covid_dice``: Dice of the union of the COVID-19 scores {1, 2, 3} against the rest
  (score 0 and background), pooled over all pixels of all images.
- ``categorical_dice``: per-class Dice for scores 0, 2 and 3 (score 1 excluded, as in the paper),
  each pooled over the images, then averaged. A class absent from both prediction and annotation
  is left out of the average (NaN per class) rather than counted as 1.

Dice = 2|P ∩ G| / (|P| + |G|). The :class:`SegMeter` accumulates the counts batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COVID_CLASSES = (1, 2, 3)
CAT_DICE_CLASSES = (0, 2, 3)
N_CLASSES = 5


def _dice(inter: float, p: float, g: float) -> float:
    return float("nan") if p + g == 0 else float(2.0 * inter / (p + g))


@dataclass
class SegMeter:
    """Running pixel counts for accuracy and the Dice scores over any number of batches."""

    correct: int = 0
    total: int = 0
    inter: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES, np.int64))
    pred: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES, np.int64))
    gt: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES, np.int64))
    covid: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))  # inter, pred, gt

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add label maps ``pred`` and ``label`` (same shape, integer classes 0..4)."""
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and annotation {label.shape} differ in shape")
        self.correct += int((pred == label).sum())
        self.total += int(label.size)
        p = np.bincount(pred.ravel().astype(np.int64), minlength=N_CLASSES)[:N_CLASSES]
        g = np.bincount(label.ravel().astype(np.int64), minlength=N_CLASSES)[:N_CLASSES]
        both = np.bincount(label[pred == label].astype(np.int64), minlength=N_CLASSES)[:N_CLASSES]
        self.pred += p
        self.gt += g
        self.inter += both
        pc = np.isin(pred, COVID_CLASSES)
        gc = np.isin(label, COVID_CLASSES)
        self.covid += np.array([(pc & gc).sum(), pc.sum(), gc.sum()], dtype=np.int64)

    def class_dice(self, c: int) -> float:
        return _dice(self.inter[c], self.pred[c], self.gt[c])

    def result(self) -> dict[str, float]:
        per = {c: self.class_dice(c) for c in CAT_DICE_CLASSES}
        vals = [v for v in per.values() if not np.isnan(v)]
        out = {
            "pixel_accuracy": self.correct / self.total if self.total else float("nan"),
            "covid_dice": _dice(*self.covid.tolist()),
            "categorical_dice": float(np.mean(vals)) if vals else float("nan"),
        }
        out.update({f"dice_score{c}": v for c, v in per.items()})
        return out


def evaluate_maps(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Table IV metrics of one set of label maps (any shape, e.g. [N, H, W])."""
    m = SegMeter()
    m.update(pred, label)
    return m.result()
