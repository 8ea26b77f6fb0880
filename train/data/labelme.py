"""Pixel annotations as LabelMe JSON polygons (ICLUS-DB's format, Roy et al. 2020 §III): mask →
polygons (``cv2.findContours``) and polygons → mask (``cv2.fillPoly``).

Labels are the score classes "0".."3"; pixels inside no polygon are background (4).

Precedence where polygons overlap: the higher score wins (polygons are filled in the order
0, 1, 2, 3, so a consolidation drawn inside a B-line band stays a consolidation) — the more
severe sign is what the annotator marked.

Round trip: each class's connected regions become one polygon each (outer contour, points at
pixel centres). With ``epsilon=0`` the contour is only run-length compressed and rasterising gives
the mask back exactly, except holes inside a region of a lower class or background, which
LabelMe polygons cannot express (they are filled). With ``epsilon > 0`` (default 0.75 px)
``cv2.approxPolyDP`` moves the outline by at most ``epsilon``, so only pixels on a region's
boundary (within 1 px of it) can change; regions smaller than ``min_region_px`` are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

MASK_BG = 4
LABELS = ("0", "1", "2", "3")
LABELME_VERSION = "5.4.1"
_SHIFT = 8  # fixed-point bits for cv2.fillPoly (sub-pixel polygon vertices)


class LabelMeError(ValueError):
    """A LabelMe file is unreadable or uses labels/shapes the layout does not allow."""


def mask_to_shapes(mask: np.ndarray, epsilon: float = 0.75, min_region_px: int = 4) -> list[dict[str, Any]]:
    """LabelMe ``shapes`` (one polygon per connected region of each class 0..3) of a class mask."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    shapes = []
    for c in range(4):
        region = (mask == c).astype(np.uint8)
        if not region.any():
            continue
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for cnt in contours:
            if cv2.contourArea(cnt) + cv2.arcLength(cnt, True) / 2 + 1 < min_region_px:
                continue  # ~pixel count of the region (area + half the boundary)
            if epsilon > 0:
                cnt = cv2.approxPolyDP(cnt, epsilon, True)
            pts = cnt.reshape(-1, 2)
            if len(pts) < 3:  # a line or a dot: widen to a valid polygon that fills the same pixels
                pts = np.concatenate([pts, pts[::-1]])[:3] if len(pts) == 2 else np.repeat(pts, 3, axis=0)
            shapes.append(
                {
                    "label": str(c),
                    "points": pts.astype(float).tolist(),
                    "group_id": None,
                    "description": "",
                    "shape_type": "polygon",
                    "flags": {},
                    "mask": None,
                }
            )
    return shapes


def write_labelme(
    path: str | Path, mask: np.ndarray, image_path: str = "", epsilon: float = 0.75, min_region_px: int = 4
) -> None:
    """Write a class mask (0..3, 4 = background) as a LabelMe JSON file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": mask_to_shapes(mask, epsilon, min_region_px),
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": int(mask.shape[0]),
        "imageWidth": int(mask.shape[1]),
    }
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def read_labelme(path: str | Path) -> dict[str, Any]:
    """Parse and validate a LabelMe file; :class:`LabelMeError` names the file and the problem."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LabelMeError(f"{path}: missing LabelMe file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelMeError(f"{path}: malformed JSON ({exc}); re-export it from LabelMe") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise LabelMeError(f"{path}: not a LabelMe file (needs a 'shapes' list)")
    for i, sh in enumerate(doc["shapes"]):
        if not isinstance(sh, dict):
            raise LabelMeError(f"{path}: shape {i} is not an object")
        label = str(sh.get("label"))
        if label not in LABELS:
            raise LabelMeError(
                f"{path}: shape {i} has unknown label {sh.get('label')!r}; labels must be '0'-'3'"
            )
        kind = sh.get("shape_type") or "polygon"
        if kind not in ("polygon", "rectangle"):
            raise LabelMeError(f"{path}: shape {i} is a {kind!r}; only polygons (and rectangles) are allowed")
        pts = sh.get("points")
        need = 2 if kind == "rectangle" else 3
        try:
            arr = np.asarray(pts, dtype=float)
        except (TypeError, ValueError) as exc:
            raise LabelMeError(f"{path}: shape {i} has malformed points ({exc})") from exc
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < need or not np.isfinite(arr).all():
            raise LabelMeError(f"{path}: shape {i} needs at least {need} finite [x, y] points")
    for key in ("imageHeight", "imageWidth"):
        if key in doc and doc[key] is not None and (not isinstance(doc[key], int) or doc[key] <= 0):
            raise LabelMeError(f"{path}: {key} must be a positive integer, got {doc[key]!r}")
    return doc


def rasterise(json_path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Class mask uint8 [H, W] (0..3, 4 = background) from a LabelMe file.

    Points are scaled from the file's imageHeight × imageWidth to ``shape`` when they differ
    (pixel-centre convention). Overlaps: higher score wins (module docstring).
    """
    doc = read_labelme(json_path)
    h, w = int(shape[0]), int(shape[1])
    src_h, src_w = doc.get("imageHeight") or h, doc.get("imageWidth") or w
    sx, sy = w / src_w, h / src_h
    mask = np.full((h, w), MASK_BG, np.uint8)
    for c in LABELS:
        polys = []
        for sh in doc["shapes"]:
            if str(sh["label"]) != c:
                continue
            pts = np.asarray(sh["points"], dtype=np.float64)
            if (sh.get("shape_type") or "polygon") == "rectangle":
                (x0, y0), (x1, y1) = pts[:2]
                pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            pts = np.stack([(pts[:, 0] + 0.5) * sx - 0.5, (pts[:, 1] + 0.5) * sy - 0.5], axis=1)
            polys.append(np.round(pts * (1 << _SHIFT)).astype(np.int32))
        for poly in polys:  # one call per polygon: overlapping same-label polygons must not cancel out
            cv2.fillPoly(mask, [poly], int(c), lineType=cv2.LINE_8, shift=_SHIFT)
    return mask
