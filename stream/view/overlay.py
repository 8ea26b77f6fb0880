"""Pure drawing of the lus-stream overlay on a BGR frame (numpy + OpenCV, no I/O, no sockets).

What is drawn (docs/viewer.md shows a still):

* the two Reg-STN crop boxes of the ``frame`` message (paper Sec. III-A, Fig. 3: θ1 is the crop the score
  comes from — solid; θ2 the consistency crop — thin), mapped from source pixels to the canvas;
* the segmentation of the ``seg`` message as contours coloured by class, as in the paper's Fig. 5:
  score 0 (healthy markers) blue, score 1 yellow-green, score 2 orange, score 3 red; optionally the
  per-pixel MC-dropout uncertainty (paper Sec. III-C) as a heat map;
* in a side panel: the frame score and the clip (``video``) score as probability bars, the current zone and
  the running exam table with its (partial) total, the scoring model and what it was trained on
  (``status`` lane ``model``/``domain``), the measured latency, the engine's lane rates;
* banners across the whole canvas (picture and panel): "STALE", "DISCONNECTED", "INSECURE" transport,
  schema/decode errors, and the ``status`` message's ``domain_warning`` (a synthetic-only model on real
  video), also spelt out in the panel. A banner's text wraps onto more lines rather than being cut; the panel
  starts below the banners. While the link is stale or disconnected the panel's engine lines (source state,
  rates, latency) are the last known ones: drawn dim and marked "last known N s ago".

Coordinates: ``boxes`` are in source-frame pixels; the class map and the uncertainty map cover the ROI
rectangle ``roi = (x, y, w, h)`` of the source frame (their own ``hw`` may be smaller: they are stretched
over the ROI with nearest-neighbour). The canvas image shows the source rectangle ``view_rect`` (the whole
source frame for a local source, the ROI for the engine's ``image`` topic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

# BGR colours
CLASS_COLOURS: dict[int, tuple[int, int, int]] = {
    0: (255, 96, 0),     # blue: healthy / score 0 markers (A-lines)
    1: (0, 255, 160),    # yellow-green: score 1
    2: (0, 150, 255),    # orange: score 2
    3: (0, 0, 255),      # red: score 3
}
BOX_COLOURS = ((255, 255, 0), (255, 0, 255))  # θ1 cyan (prediction crop), θ2 magenta (consistency crop)
BOX_THICKNESS = (2, 1)
CONTOUR_THICKNESS = 2
WHITE, GREY, DIM, BLACK = (255, 255, 255), (150, 150, 150), (95, 95, 95), (0, 0, 0)
BANNER_COLOURS = {"stale": (0, 200, 255), "disconnected": (0, 0, 200), "error": (0, 0, 200),
                  "insecure": (0, 0, 160), "info": (90, 90, 90), "domain": (147, 20, 255)}
DOMAIN_BANNER = "SYNTHETIC-ONLY MODEL, REAL VIDEO: scores not meaningful"
PANEL_W = 300
BANNER_SCALE, BANNER_MIN_SCALE = 0.5, 0.35
BANNER_H, BANNER_LINE_H = 26, 20     # a one-line banner's height; each further line adds BANNER_LINE_H
MAX_BANNERS = 4
MAX_BANNER_CHARS = 400               # longer texts (a flood of garbage) end in " ..." before wrapping
BANNER_MAX_FRACTION = 0.45           # banners shrink their text before they cover more of the canvas
LINK_NOT_LIVE = ("stale", "disconnected")
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class SegLayer:
    """A decoded segmentation: class-index map (0..3 score classes, 4 background) and optional uncertainty."""

    class_map: np.ndarray                 # uint8 [h, w], covering ``roi``
    roi: tuple[int, int, int, int]        # (x, y, w, h) in source pixels
    uncertainty: np.ndarray | None = None  # float32 [h', w'] in [0, 1] (relative), covering ``roi``

    @classmethod
    def from_message(cls, msg: dict[str, Any], payloads: Sequence[bytes]) -> SegLayer:
        """Decode a ``seg`` message's PNG payloads (raises ValueError on undecodable or mis-sized PNGs)."""
        cmap = _decode_png(payloads[msg["class_map"]["payload"]], "seg class map")
        if cmap.ndim != 2 or list(cmap.shape) != list(msg["class_map"]["hw"]):
            raise ValueError(f"seg class map is {cmap.shape}, the message says hw={msg['class_map']['hw']}")
        unc = None
        ref = msg.get("uncertainty")
        if ref is not None:
            raw = _decode_png(payloads[ref["payload"]], "seg uncertainty")
            if raw.ndim != 2:
                raise ValueError(f"seg uncertainty map must be one channel, got shape {raw.shape}")
            unc = raw.astype(np.float32) / float(np.iinfo(raw.dtype).max)
        x, y, w, h = (int(v) for v in msg["roi"])
        return cls(cmap.astype(np.uint8), (x, y, w, h), unc)


def _decode_png(data: bytes, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{what}: payload is not a decodable PNG ({len(data)} bytes)")
    return img


def decode_image(data: bytes) -> np.ndarray:
    """An ``image`` topic payload (JPEG/PNG) as a BGR array (raises ValueError when undecodable)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"image payload is not a decodable JPEG/PNG ({len(data)} bytes)")
    return img


@dataclass
class Banner:
    kind: str  # stale | disconnected | error | insecure | info | domain
    text: str


def domain_warning(status: dict[str, Any] | None) -> str | None:
    """The ``status`` message's ``domain_warning`` (None when absent, null or empty)."""
    warning = (status or {}).get("domain_warning")
    return warning if isinstance(warning, str) and warning else None


def scoring_model_line(status: dict[str, Any] | None) -> str | None:
    """"model: NAME VERSION - DOMAIN" of the scoring lane (domain left out by engines that do not send it)."""
    lane = ((status or {}).get("lanes") or {}).get("scoring") or {}
    if not lane.get("model"):
        return None
    domain = lane.get("domain")
    return f"model: {lane['model']}" + (f" - {domain}" if domain else "")


@dataclass
class Scene:
    """Everything one overlay shows; the viewer builds it from the newest messages of each topic."""

    frame: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    seg: SegLayer | None = None
    exam: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    banners: list[Banner] = field(default_factory=list)
    latency_ms: float | None = None          # capture → display (same host) of the frame drawn
    publish_latency_ms: float | None = None  # capture → publish, from the frame message itself
    render_fps: float | None = None
    title: str = ""
    link: str | None = None                  # waiting | live | stale | disconnected (None: not known)
    status_age_s: float | None = None        # seconds since the newest ``status`` message arrived


@dataclass
class Style:
    show_boxes: bool = True
    show_contours: bool = True
    show_uncertainty: bool = False
    fill_alpha: float = 0.0    # >0: also tint the class regions
    heat_alpha: float = 0.45
    panel: bool = True


class CanvasMap:
    """Source-pixel → canvas-pixel mapping for an image that shows ``view_rect`` of the source frame."""

    def __init__(self, view_rect: tuple[int, int, int, int], canvas_hw: tuple[int, int]) -> None:
        x, y, w, h = view_rect
        self.x0, self.y0 = float(x), float(y)
        self.sx, self.sy = canvas_hw[1] / float(w), canvas_hw[0] / float(h)

    def points(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.x0) * self.sx
        out[..., 1] = (xy[..., 1] - self.y0) * self.sy
        return out

    def rect(self, roi: Sequence[int]) -> tuple[int, int, int, int]:
        """Integer canvas rectangle (x0, y0, x1, y1) of a source rectangle (may exceed the canvas)."""
        x, y, w, h = roi
        (cx0, cy0), (cx1, cy1) = self.points(np.array([[x, y], [x + w, y + h]]))
        return round(cx0), round(cy0), round(cx1), round(cy1)


def _paste(canvas: np.ndarray, layer: np.ndarray, rect: tuple[int, int, int, int]
           ) -> tuple[np.ndarray, tuple]:
    """Resize ``layer`` to the canvas rectangle and clip it to the canvas; returns (patch, canvas slices)."""
    x0, y0, x1, y1 = rect
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    patch = cv2.resize(layer, (w, h), interpolation=cv2.INTER_NEAREST)
    H, W = canvas.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return patch[:0, :0], (slice(0, 0), slice(0, 0))
    return patch[cy0 - y0: cy1 - y0, cx0 - x0: cx1 - x0], (slice(cy0, cy1), slice(cx0, cx1))


def draw_boxes(canvas: np.ndarray, boxes: Sequence[Sequence[Sequence[float]]], cmap: CanvasMap) -> None:
    """The two STN crop boxes (4 corners each, source pixels)."""
    for i, box in enumerate(boxes[:2]):
        pts = np.round(cmap.points(np.asarray(box, np.float64))).astype(np.int32)
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], True, BOX_COLOURS[i], BOX_THICKNESS[i], cv2.LINE_8)


def draw_segmentation(canvas: np.ndarray, seg: SegLayer, cmap: CanvasMap, style: Style) -> None:
    """Uncertainty heat map (optional), class tint (optional) and class contours."""
    rect = cmap.rect(seg.roi)
    if style.show_uncertainty and seg.uncertainty is not None:
        heat_u8 = np.clip(seg.uncertainty * 255.0, 0, 255).astype(np.uint8)
        patch, (ys, xs) = _paste(canvas, heat_u8, rect)
        if patch.size:
            heat = cv2.applyColorMap(patch, cv2.COLORMAP_INFERNO)
            alpha = patch.astype(np.float32) * np.float32(style.heat_alpha / 255.0)
            canvas[ys, xs] = cv2.blendLinear(np.ascontiguousarray(canvas[ys, xs]), heat, 1.0 - alpha, alpha)
    labels, (ys, xs) = _paste(canvas, seg.class_map, rect)
    if not labels.size:
        return
    region = canvas[ys, xs]
    for c, colour in CLASS_COLOURS.items():
        mask = (labels == c).astype(np.uint8)
        if not mask.any():
            continue
        if style.fill_alpha > 0:
            tint = np.empty_like(region)
            tint[:] = colour
            blend = cv2.addWeighted(region, 1 - style.fill_alpha, tint, style.fill_alpha, 0)
            region[mask.astype(bool)] = blend[mask.astype(bool)]
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(region, contours, -1, colour, CONTOUR_THICKNESS, cv2.LINE_8)
    canvas[ys, xs] = region


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45,
          colour: tuple[int, int, int] = WHITE, thick: int = 1) -> None:
    cv2.putText(img, text, org, FONT, scale, colour, thick, cv2.LINE_AA)


def draw_prob_bars(panel: np.ndarray, y: int, title: str, probs: Sequence[float] | None,
                   score: int | None, extra: str = "", tie: Sequence[int] = ()) -> int:
    """Four horizontal bars (scores 0-3) with their probabilities; returns the next free y.

    The chosen score's bar is outlined. On a tie (``video.tie``: several scores share the maximum
    exactly) no bar is outlined as chosen and the title says ``tie 1/2``: the engine has no order."""
    shown = "tie " + "/".join(str(c) for c in tie) if tie else (score if score is not None else "-")
    _text(panel, f"{title}: {shown}  {extra}", (8, y + 14), 0.5)
    y += 22
    bar_w = panel.shape[1] - 70
    for c in range(4):
        p = float(probs[c]) if probs is not None else 0.0
        y0 = y + c * 16
        cv2.rectangle(panel, (30, y0), (30 + bar_w, y0 + 12), (60, 60, 60), -1)
        cv2.rectangle(panel, (30, y0), (30 + round(bar_w * p), y0 + 12), CLASS_COLOURS[c], -1)
        if score == c and not tie:
            cv2.rectangle(panel, (28, y0 - 2), (32 + bar_w, y0 + 14), WHITE, 1)
        _text(panel, str(c), (12, y0 + 11), 0.4)
        _text(panel, f"{p:.2f}", (34 + bar_w, y0 + 11), 0.38)
    return y + 4 * 16 + 6


def draw_exam(panel: np.ndarray, y: int, exam: dict[str, Any]) -> int:
    """Zone grid (right | left columns, cranial → caudal rows) with scores, the current zone, the total."""
    zones = exam.get("zones") or []
    state = exam.get("state", "")
    head = f"exam {exam.get('exam_id') or '-'} [{state}] zone {exam.get('zone') or '-'}"
    _text(panel, head, (8, y + 14), 0.45)
    y += 22
    half = len(zones) // 2
    cell_w, cell_h = (panel.shape[1] - 24) // 2, 17
    for col, side in enumerate((zones[:half], zones[half:])):
        for row, z in enumerate(side):
            x0, y0 = 8 + col * (cell_w + 8), y + row * (cell_h + 2)
            score = z.get("score")
            fill = CLASS_COLOURS[score] if score is not None else (50, 50, 50)
            cv2.rectangle(panel, (x0, y0), (x0 + cell_w, y0 + cell_h), fill, -1)
            if z.get("zone") == exam.get("zone"):
                cv2.rectangle(panel, (x0 - 1, y0 - 1), (x0 + cell_w + 1, y0 + cell_h + 1), WHITE, 2)
            _text(panel, f"{z.get('zone')}  {score if score is not None else '-'}", (x0 + 4, y0 + 13), 0.42,
                  BLACK if score is not None else WHITE)
    y += max(half, 1) * (cell_h + 2) + 4
    total = exam.get("total")
    partial = (f"partial {exam.get('partial_total', 0)} "
               f"({exam.get('scored', 0)}/{exam.get('n_zones', 0)} zones)")
    summary = f"TOTAL {total}/{exam.get('max_total')}" if total is not None else partial
    _text(panel, summary, (8, y + 14), 0.55, (0, 255, 255) if total is not None else WHITE, 1)
    return y + 24


def _text_w(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def _wrap(text: str, width_px: int, scale: float) -> list[str]:
    """Split ``text`` at spaces into lines no wider than ``width_px`` (a longer word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and _text_w(trial, scale) <= width_px:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def _wrap_all(text: str, width_px: int, scale: float) -> list[str]:
    """:func:`_wrap`, then a word wider than ``width_px`` (a long URL) is broken between characters."""
    out: list[str] = []
    for line in _wrap(text, width_px, scale):
        while len(line) > 1 and _text_w(line, scale) > width_px:
            lo, hi = 1, len(line) - 1  # the longest prefix that fits, by bisection
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _text_w(line[:mid], scale) <= width_px:
                    lo = mid
                else:
                    hi = mid - 1
            out.append(line[:lo])
            line = line[lo:]
        out.append(line)
    return out


@dataclass
class BannerLayout:
    """Where :func:`draw_banners` puts each banner: its text lines at one scale, its rows."""

    rows: list[tuple[Banner, int, int, list[str]]]  # (banner, y0, y1, lines)
    scale: float
    height: int   # rows covered from the top of the canvas
    first_h: int  # a one-line banner's height at this scale
    line_h: int   # each further line


def layout_banners(banners: Sequence[Banner], width: int, height: int) -> BannerLayout:
    """Wrap each banner's text to ``width`` (minus the margins); shrink the text (down to
    ``BANNER_MIN_SCALE``) while the banners would cover more than ``BANNER_MAX_FRACTION`` of ``height``."""
    shown = list(banners[:MAX_BANNERS])
    texts = [b.text if len(b.text) <= MAX_BANNER_CHARS else b.text[:MAX_BANNER_CHARS] + " ..." for b in shown]
    scale = BANNER_SCALE
    while True:
        wrapped = [_wrap_all(text, width - 16, scale) or [""] for text in texts]
        line_h = max(12, round(BANNER_LINE_H * scale / BANNER_SCALE))
        first_h = max(16, round(BANNER_H * scale / BANNER_SCALE))
        total = sum(first_h + line_h * (len(lines) - 1) for lines in wrapped)
        if total <= BANNER_MAX_FRACTION * height or scale <= BANNER_MIN_SCALE:
            break
        scale = max(BANNER_MIN_SCALE, round(scale - 0.05, 2))
    rows: list[tuple[Banner, int, int, list[str]]] = []
    y = 0
    budget = max(first_h, int(BANNER_MAX_FRACTION * height))
    for b, lines in zip(shown, wrapped, strict=True):
        if rows and y + first_h > budget:
            break
        room = 1 + max(0, (budget - y - first_h) // line_h)
        if room < len(lines):  # only a flood of very long errors gets here: say that text is missing
            lines = lines[:room]
            while lines[-1] and _text_w(lines[-1] + " ...", scale) > width - 16:
                lines[-1] = lines[-1][:-1]
            lines[-1] += " ..."
        h = first_h + line_h * (len(lines) - 1)
        rows.append((b, y, y + h, lines))
        y += h
    return BannerLayout(rows, scale, y, first_h, line_h)


def banner_text_colour(kind: str) -> tuple[int, int, int]:
    """Black on light banners (STALE's amber), white on dark ones."""
    b, g, r = BANNER_COLOURS.get(kind, BANNER_COLOURS["info"])
    return BLACK if 0.114 * b + 0.587 * g + 0.299 * r > 140 else WHITE


def draw_banners(canvas: np.ndarray, banners: Sequence[Banner] | BannerLayout) -> int:
    """Banners as solid bars across the canvas's full width, text wrapped to fit; returns the rows used."""
    layout = banners if isinstance(banners, BannerLayout) else \
        layout_banners(banners, canvas.shape[1], canvas.shape[0])
    baseline = round(layout.first_h * 18 / BANNER_H)
    for b, y0, y1, lines in layout.rows:
        fill = BANNER_COLOURS.get(b.kind, BANNER_COLOURS["info"])
        canvas[y0:y1] = fill
        if y1 - y0 > 2:  # a darker last row keeps two banners of the same colour apart
            canvas[y1 - 1] = tuple(round(c * 0.6) for c in fill)
        colour = banner_text_colour(b.kind)
        for i, line in enumerate(lines):
            _text(canvas, line, (8, y0 + baseline + i * layout.line_h), layout.scale, colour)
    return layout.height


def status_lines(scene: Scene, width: int = PANEL_W) -> list[tuple[str, tuple[int, int, int]]]:
    """The panel's engine lines (status, latency, render rate) with their colours.

    While the link is stale or disconnected the status is the last one received: its lines are dim and the
    source state says how old it is, e.g. ``source running (last known 4.2 s ago)``."""
    lines: list[tuple[str, tuple[int, int, int]]] = []
    st = scene.status
    old = scene.link in LINK_NOT_LIVE
    colour = DIM if old else GREY
    model = scoring_model_line(st)
    if model is not None:
        lines.extend((line, colour) for line in _wrap(model, width - 16, 0.42))
    warning = domain_warning(st)
    if warning is not None:  # in full, in the banner's colour, before anything that may be cut
        lines.extend((line, BANNER_COLOURS["domain"]) for line in _wrap(warning, width - 16, 0.42))
    if scene.publish_latency_ms is not None:
        lines.append((f"capture->publish {scene.publish_latency_ms:.1f} ms", colour))
    if scene.latency_ms is not None:
        lines.append((f"capture->display {scene.latency_ms:.1f} ms", colour))
    if st is not None:
        lat = st.get("latency_ms", {})
        if lat.get("p50") is not None:
            lines.append((f"engine p50/p99 {lat['p50']:.1f}/{(lat.get('p99') or 0):.1f} ms", colour))
        lanes = st.get("lanes", {})
        sc, sg = lanes.get("scoring", {}), lanes.get("segmentation", {})
        lines.append((f"in {st.get('input_fps', 0):.1f} fps  score {sc.get('fps', 0):.1f}  "
                      f"seg {sg.get('fps', 0):.1f}", colour))
        state = st.get("source", {}).get("state", "?")
        link = f"link {st.get('security', '?')}"
        if old:
            age = f"{scene.status_age_s:.1f} s ago" if scene.status_age_s is not None else "earlier"
            source = [f"source {state} (last known {age})", link]
        else:
            source = [f"source {state}  {link}"]
        for text in source:
            fits = _text_w(text, 0.42) <= width - 16
            lines.extend((line, colour) for line in ([text] if fits else _wrap(text, width - 16, 0.42)))
    if scene.render_fps is not None:
        lines.append((f"view {scene.render_fps:.1f} fps", GREY))
    return lines


def draw_panel(height: int, scene: Scene, width: int = PANEL_W, top: int = 0) -> np.ndarray:
    """The side panel; ``top`` rows are left free for the banners drawn across it."""
    panel = np.full((height, width, 3), 28, np.uint8)
    y = top + 4
    if scene.title:
        _text(panel, scene.title[:40], (8, y + 14), 0.45, GREY)
        y += 20
    f, v = scene.frame, scene.video
    y = draw_prob_bars(panel, y, "frame score", f["probs"] if f else None, f["score"] if f else None,
                       f"seq {f['seq']}" if f else "")
    clip_extra = f"{v['frames']} fr" + (f" win {v['window']}" if v and v.get("window") else "") if v else ""
    y = draw_prob_bars(panel, y, "clip score", v["probs"] if v else None, v["score"] if v else None,
                       clip_extra, tie=(v.get("tie") or []) if v else [])
    if scene.exam is not None:
        y = draw_exam(panel, y, scene.exam)
    for text, colour in status_lines(scene, width):
        if y + 18 > height - 16:  # above the legend
            break
        _text(panel, text, (8, y + 14), 0.42, colour)
        y += 18
    legend_y = height - 10
    for c in range(4):
        x = 8 + c * 70
        cv2.rectangle(panel, (x, legend_y - 10), (x + 12, legend_y), CLASS_COLOURS[c], -1)
        _text(panel, f"score {c}", (x + 16, legend_y), 0.35, GREY)
    return panel


def render(image: np.ndarray | None, scene: Scene, view_rect: Sequence[int] | None = None,
           style: Style | None = None, blank_hw: tuple[int, int] = (480, 640), min_height: int = 0
           ) -> np.ndarray:
    """The overlay: a BGR canvas of the image's size (+ the side panel when ``style.panel``).

    ``image``: BGR or gray uint8 frame showing ``view_rect`` (x, y, w, h) of the source frame (default: the
    whole image at the origin); ``None`` draws on black of ``blank_hw`` (results without pictures).
    ``min_height``: smaller images are scaled up (aspect kept) so that the panel's text fits.
    """
    style = style or Style()
    canvas: np.ndarray
    if image is None:
        canvas = np.zeros((*blank_hw, 3), np.uint8)
    elif image.ndim == 2:
        canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    else:
        canvas = image.copy()
    if view_rect is None:
        view_rect = (0, 0, canvas.shape[1], canvas.shape[0])
    if canvas.shape[0] < min_height:
        f = min_height / canvas.shape[0]
        canvas = cv2.resize(canvas, (round(canvas.shape[1] * f), min_height), interpolation=cv2.INTER_LINEAR)
    H, W = canvas.shape[:2]
    vx, vy, vw, vh = (int(v) for v in view_rect)
    cmap = CanvasMap((vx, vy, vw, vh), (H, W))
    if scene.seg is not None and (style.show_contours or style.show_uncertainty):
        draw_segmentation(canvas, scene.seg, cmap, style)
    if style.show_boxes and scene.frame is not None and scene.frame.get("boxes"):
        draw_boxes(canvas, scene.frame["boxes"], cmap)
    banners = list(scene.banners)
    if domain_warning(scene.status) is not None and not any(b.kind == "domain" for b in banners):
        banners.append(Banner("domain", DOMAIN_BANNER))
    if not style.panel:
        draw_banners(canvas, banners)
        return canvas
    layout = layout_banners(banners, W + PANEL_W, H)  # across the picture and the panel
    out = np.hstack([canvas, draw_panel(H, scene, PANEL_W, top=layout.height)])
    draw_banners(out, layout)
    return out
