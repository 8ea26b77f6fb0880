"""Frame preprocessing shared by training and the runtime: grayscale, aspect-kept resize with
zero padding ("letterbox") to a model's input size, and intensity scaling.

One implementation, driven by a manifest's ``preprocessing`` block, so that a model sees the
same pixels in ``train/`` as in ``stream/``. The paper (Roy et al. 2020, §IV-C) resizes
segmentation inputs to 260×200 (H×W) with aspect-kept zero padding and scales them to [−1, 1];
the frame scorer uses the same letterbox at its own size.

Padding is applied in the 8-bit pixel domain (value 0, i.e. black, as outside a convex fan), so
after ``symmetric`` scaling the padding reads −1.

The :class:`Letterbox` returned with each frame maps points both ways between source-frame
pixels and model-input pixels; the runtime uses it to draw STN crop boxes and masks on the
source frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

ScaleMode = Literal["unit", "symmetric"]


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterbox mapping (all in pixels, (y, x) order for offsets).

    A source pixel centre ``(x, y)`` lands at ``(x * scale + x0, y * scale + y0)`` in the model
    input, in continuous pixel coordinates where pixel ``i`` spans ``[i, i + 1)``.
    """

    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    scale: float
    offset_yx: tuple[int, int]
    resized_hw: tuple[int, int]

    def to_model(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` source (x, y) coordinates to model-input coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        sy = self.resized_hw[0] / self.src_hw[0]
        sx = self.resized_hw[1] / self.src_hw[1]
        out = np.empty_like(xy)
        out[..., 0] = xy[..., 0] * sx + self.offset_yx[1]
        out[..., 1] = xy[..., 1] * sy + self.offset_yx[0]
        return out

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` model-input (x, y) coordinates back to source coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        sy = self.resized_hw[0] / self.src_hw[0]
        sx = self.resized_hw[1] / self.src_hw[1]
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.offset_yx[1]) / sx
        out[..., 1] = (xy[..., 1] - self.offset_yx[0]) / sy
        return out

    def crop_to_source(self, model_map: np.ndarray, interpolation: int = cv2.INTER_NEAREST) -> np.ndarray:
        """Cut the padding off a model-sized 2-D map and resize it to the source frame size."""
        y0, x0 = self.offset_yx
        h, w = self.resized_hw
        inner = model_map[y0 : y0 + h, x0 : x0 + w]
        return cv2.resize(inner, (self.src_hw[1], self.src_hw[0]), interpolation=interpolation)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 image from a gray (H, W), (H, W, 1), BGR or BGRA frame."""
    if frame.ndim == 2:
        gray = frame
    elif frame.ndim == 3 and frame.shape[2] == 1:
        gray = frame[:, :, 0]
    elif frame.ndim == 3 and frame.shape[2] == 3:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    else:
        raise ValueError(f"cannot make a gray image from an array of shape {frame.shape}")
    if gray.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {gray.dtype}")
    return gray


def letterbox_geometry(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Letterbox:
    """Compute the aspect-kept, centred fit of ``src_hw`` into ``dst_hw``."""
    sh, sw = int(src_hw[0]), int(src_hw[1])
    dh, dw = int(dst_hw[0]), int(dst_hw[1])
    if min(sh, sw, dh, dw) <= 0:
        raise ValueError(f"sizes must be positive, got source {src_hw} and target {dst_hw}")
    scale = min(dh / sh, dw / sw)
    rh = min(dh, max(1, round(sh * scale)))
    rw = min(dw, max(1, round(sw * scale)))
    return Letterbox((sh, sw), (dh, dw), scale, ((dh - rh) // 2, (dw - rw) // 2), (rh, rw))


def letterbox(gray: np.ndarray, dst_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize a 2-D image into ``dst_hw`` keeping its aspect ratio, padding with zeros."""
    geo = letterbox_geometry(gray.shape[:2], dst_hw)
    rh, rw = geo.resized_hw
    interp = cv2.INTER_AREA if geo.scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(gray, (rw, rh), interpolation=interp)
    out = np.zeros((geo.dst_hw[0], geo.dst_hw[1], *gray.shape[2:]), dtype=gray.dtype)
    y0, x0 = geo.offset_yx
    out[y0 : y0 + rh, x0 : x0 + rw] = resized
    return out, geo


def scale_intensity(img: np.ndarray, mode: ScaleMode) -> np.ndarray:
    """uint8 → float32: ``unit`` maps to [0, 1], ``symmetric`` to [−1, 1]."""
    x = img.astype(np.float32)
    if mode == "unit":
        return x * np.float32(1 / 255)
    if mode == "symmetric":
        return x * np.float32(2 / 255) - np.float32(1)
    raise ValueError(f"unknown intensity scaling {mode!r}: use 'unit' or 'symmetric'")


def preprocess(frame: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, Letterbox]:
    """Turn a frame into a model input of shape (1, 1, H, W) float32, as ``spec`` says.

    ``spec`` is a manifest's ``preprocessing`` block: ``{"size_hw": [H, W], "scale": "unit" |
    "symmetric", "padding": "letterbox-zero", "channels": 1}``.
    """
    if spec.get("padding", "letterbox-zero") != "letterbox-zero":
        raise ValueError(f"unsupported padding {spec.get('padding')!r}: only 'letterbox-zero'")
    if int(spec.get("channels", 1)) != 1:
        raise ValueError("only single-channel (grayscale) models are supported")
    boxed, geo = letterbox(to_gray(frame), tuple(spec["size_hw"]))
    x = scale_intensity(boxed, spec.get("scale", "unit"))
    return x[None, None], geo
