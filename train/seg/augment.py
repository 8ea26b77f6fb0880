"""On-line augmentation of (image, mask) pairs, Roy et al. 2020 §IV-C.4, with albumentations.

Every transform is applied to the image and its mask together (geometric ones move the mask with
nearest-neighbour sampling and fill uncovered pixels with background), each activated with
probability 0.33 and a random strength up to the paper's bound:

==========================  ==========================================================
affine                      translation ±15 %, rotation ±15°, scale ±45 %, shear ±4.5°
intensity                   multiplication by a constant in 1 ± 45 %
Gaussian blur               σ up to 0.75 px (the paper prints "σmax = 3/4"; the extracted
                            text reads "34")
contrast                    ±45 %
horizontal flip             p = 0.5 (the paper's value, not 0.33)
additive white noise        σ up to 0.015 (image in [0, 1])
==========================  ==========================================================

Images are augmented as float32 in [0, 1] (uint8 / 255) so that the noise bound means what the
paper says; :func:`to_model_input` then maps to the symmetric [−1, 1] scaling of
``engines.preprocess``.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from engines.preprocess import scale_intensity
from train.seg.config import NUM_CLASSES

MASK_BG = NUM_CLASSES - 1
P_EACH = 0.33


def paper_augmentation(p: float = P_EACH, seed: int | None = None) -> A.Compose:
    """The paper's augmentation set as one albumentations pipeline (image float [0,1] + mask)."""
    return A.Compose(
        [
            A.Affine(
                translate_percent=(-0.15, 0.15),
                rotate=(-15, 15),
                scale=(0.55, 1.45),
                shear=(-4.5, 4.5),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=MASK_BG,
                p=p,
            ),
            A.MultiplicativeNoise(multiplier=(0.55, 1.45), per_channel=False, elementwise=False, p=p),
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.1, 0.75), p=p),
            A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.45, p=p),
            A.HorizontalFlip(p=0.5),
            A.GaussNoise(std_range=(0.0, 0.015), mean_range=(0.0, 0.0), p=p),
        ],
        seed=seed,
    )


def augment_pair(
    pipeline: A.Compose | None, image_u8: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one uint8 [H, W] image and its mask; returns float32 [0, 1] image and uint8 mask."""
    img = image_u8.astype(np.float32) * np.float32(1 / 255)
    if pipeline is None:
        return img, mask
    out = pipeline(image=img, mask=mask)
    return np.clip(out["image"], 0.0, 1.0).astype(np.float32), out["mask"].astype(np.uint8)


def to_model_input(image01: np.ndarray) -> np.ndarray:
    """float [0, 1] image → symmetric [−1, 1] float32 (same mapping as ``scale_intensity``)."""
    return (image01 * np.float32(2.0) - np.float32(1.0)).astype(np.float32)


def to_model_input_u8(image_u8: np.ndarray) -> np.ndarray:
    """uint8 image → symmetric [−1, 1] float32 via ``engines.preprocess.scale_intensity``."""
    return scale_intensity(image_u8, "symmetric")
