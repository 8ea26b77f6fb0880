"""Appearance shifts for checking how a frame model copes with images that do not look like its
training frames (scanner gain, dynamic range, speckle): each shift is a fixed, seeded transform of
the letterboxed uint8 frame, so two models are scored on exactly the same perturbed frames.

Shifts: ``none``; ``noise`` (additive Gaussian, mean = std = 20 grey levels, clipped: a grey
texture over dark lung); ``texture`` (that noise, then a Gaussian blur of σ = 1 px: speckle-like);
``blur`` (σ = 1.5 px); ``gamma_bright`` / ``gamma_dark`` (γ = 0.6 / 1.6). Not from the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from train.frame.data import FrameTable


def _noise(img: np.ndarray, rng: np.random.Generator, std: float = 20.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) + rng.normal(std, std, img.shape), 0, 255).astype(np.uint8)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)


def _gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    return lut[img]


SHIFTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "none": lambda img, rng: img,
    "noise": lambda img, rng: _noise(img, rng),
    "texture": lambda img, rng: _blur(_noise(img, rng), 1.0),
    "blur": lambda img, rng: _blur(img, 1.5),
    "gamma_bright": lambda img, rng: _gamma(img, 0.6),
    "gamma_dark": lambda img, rng: _gamma(img, 1.6),
}


def shifted(table: FrameTable, shift: str, seed: int = 0) -> FrameTable:
    """A copy of ``table`` whose frames went through ``shift`` (same labels, videos, frame order)."""
    if shift not in SHIFTS:
        raise ValueError(f"appearance shift {shift!r} must be one of {list(SHIFTS)}")
    rng = np.random.default_rng(seed)
    fn = SHIFTS[shift]
    images = np.stack([fn(img, rng) for img in table.images]) if len(table) else table.images.copy()
    return FrameTable(images, table.labels, table.video, table.frame, table.videos)
