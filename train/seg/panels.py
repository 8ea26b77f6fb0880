"""PNG panels like the paper's Fig. 5 (input, annotation, prediction, contours) and Fig. 6
(input, annotation, prediction, pixel-level COVID-19 uncertainty from MC dropout)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# RGB per class [0, 1, 2, 3]; background is transparent. Score 2 orange, score 3 red as in Fig. 6.
CLASS_RGB = np.array([[40, 200, 80], [240, 220, 40], [255, 140, 0], [230, 30, 30]], dtype=np.uint8)
CLASS_LABEL = ["score 0 (healthy)", "score 1", "score 2", "score 3"]


def overlay(image_u8: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Gray image with the score classes (0..3) blended in colour; background untouched."""
    rgb = np.repeat(image_u8[..., None], 3, axis=2).astype(np.float32)
    for c in range(4):
        m = labels == c
        rgb[m] = (1 - alpha) * rgb[m] + alpha * CLASS_RGB[c]
    return rgb.astype(np.uint8)


def contours(image_u8: np.ndarray, labels: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """Predicted class outlines (coloured) over the image; the annotation's outline in white."""
    rgb = np.ascontiguousarray(np.repeat(image_u8[..., None], 3, axis=2))
    if truth is not None:
        cs, _ = cv2.findContours((truth < 4).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, cs, -1, (255, 255, 255), 1)
    for c in range(4):
        cs, _ = cv2.findContours((labels == c).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, cs, -1, tuple(int(v) for v in CLASS_RGB[c]), 1)
    return rgb


def _figure(rows: list[list[tuple[str, np.ndarray, dict]]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n_r, n_c = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_r, n_c, figsize=(2.4 * n_c, 3.0 * n_r + 0.6), squeeze=False)
    for r, row in enumerate(rows):
        for c, (name, img, kw) in enumerate(row):
            ax = axes[r][c]
            im = ax.imshow(img, **kw)
            if "cmap" in kw and kw["cmap"] != "gray":
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(name, fontsize=9)
    handles = [Patch(color=CLASS_RGB[c] / 255, label=CLASS_LABEL[c]) for c in range(4)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig5(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, path: Path, title: str) -> Path:
    """One row per frame: input, annotation, ensemble prediction, contours (prediction + annotation)."""
    rows = [
        [
            ("input", images[i], {"cmap": "gray", "vmin": 0, "vmax": 255}),
            ("annotation", overlay(images[i], truth[i]), {}),
            ("prediction", overlay(images[i], pred[i]), {}),
            ("contours", contours(images[i], pred[i], truth[i]), {}),
        ]
        for i in range(len(images))
    ]
    return _figure(rows, path, title)


def fig6(
    images: np.ndarray, truth: np.ndarray, pred: np.ndarray, covid_std: np.ndarray, path: Path, title: str
) -> Path:
    """One row per frame: input, annotation, prediction, std of P(COVID) over MC-dropout samples."""
    vmax = max(float(covid_std.max()), 1e-3)
    rows = [
        [
            ("input", images[i], {"cmap": "gray", "vmin": 0, "vmax": 255}),
            ("annotation", overlay(images[i], truth[i]), {}),
            ("prediction", overlay(images[i], pred[i]), {}),
            ("COVID uncertainty (std)", covid_std[i], {"cmap": "magma", "vmin": 0, "vmax": vmax}),
        ]
        for i in range(len(images))
    ]
    return _figure(rows, path, title)
