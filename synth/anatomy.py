"""The simulated chest, built once per clip on the scan-line grid.

Two lateral "worlds", both periodic so that probe motion and lung sliding can scroll forever:

* the wall world (moves with the probe): chest-wall layers (skin, fat with septa, fascia, muscle
  with striations, intercostal tissue), the pleural depth profile, ribs (bright cortex, shadow);
* the lung world (moves with the probe AND slides with breathing): one :class:`LungState` per
  score segment, holding that score's signs (Soldati scale, Roy et al. 2020 §III):
  score 0 — smooth, continuous pleura (A-lines come from the renderer: reverberations at multiples
  of the pleural depth); 1 — irregular pleura and B-lines; 2 — broken pleura, small hypoechoic
  sub-pleural consolidations, B-lines; 3 — white lung and/or a large tissue-like consolidation.

Lung-state textures are indexed by (depth below the pleura + ``D_OFF``, lung-world column), so
they follow the pleura wherever breathing or the probe puts it. Each state also carries a class
map (the mask an annotator would draw: 1 = B-line band, 2 = small consolidation, 3 = large
consolidation / white lung, 4 = nothing); class 0 (pleura + A-lines) is drawn by the renderer.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import SimConfig
from .geometry import ProbeGeometry

D_OFF = 6  # rows of lung-state texture above the pleura (B-line bands start slightly above it)
MASK_BG = 4


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Periodic 1-D Gaussian-filtered noise with unit standard deviation."""
    f = np.fft.rfft(rng.standard_normal(n))
    f *= np.exp(-2 * np.pi**2 * (np.fft.rfftfreq(n) * sigma) ** 2)
    x = np.fft.irfft(f, n)
    return (x / (x.std() + 1e-9)).astype(np.float32)


def smooth_noise_2d(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Periodic 2-D Gaussian-filtered noise with unit standard deviation."""
    f = np.fft.rfft2(rng.standard_normal(shape))
    fy, fx = np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :]
    f *= np.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))
    x = np.fft.irfft2(f, shape)
    return (x / (x.std() + 1e-9)).astype(np.float32)


def periodic_interp(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Linear interpolation in a periodic 1-D table at (fractional) positions ``x``."""
    n = table.shape[0]
    return np.interp(x, np.arange(n), table, period=n).astype(np.float32)


def wrap_pad(a: np.ndarray, extra: int) -> np.ndarray:
    """Append the first ``extra`` columns after the last one (so reads past the end wrap)."""
    return np.ascontiguousarray(np.concatenate([a, a[:, :extra]], axis=1))


@dataclass
class Wall:
    """Chest wall, pleural depth and ribs in wall-world columns (period ``world``)."""

    world: int
    echo: np.ndarray  # float32 [rows, world]
    pleura_rows: np.ndarray  # float32 [world]: depth of the pleura (rows)
    rib_weight: np.ndarray  # float32 [world] in [0, 1]
    rib_lift: np.ndarray  # float32 [world]: rib cortex this many rows above the pleura


def _wall_bands(
    rng: np.random.Generator,
) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
    """Chest-wall layers as (top, bottom, level) bands and (depth, level, width) bright lines, in
    units of the pleural depth u = z / z_pleura (skin, fat with septa, fascia, striated muscle,
    intercostal tissue, the dark extrapleural fat right above the pleura)."""
    skin = rng.uniform(0.04, 0.08)
    fat = rng.uniform(0.22, 0.4)
    muscle = rng.uniform(0.72, 0.85)
    bands = [
        (0.0, skin, 0.04),
        (skin, fat, 0.008),
        (fat, muscle, 0.02),
        (muscle, 0.93, 0.014),
        (0.93, 1.3, 0.004),
    ]
    lines = [(skin, 0.09, 0.008), (fat, 0.07, 0.012), (muscle, 0.06, 0.01)]
    lines += [(a, 0.03, 0.006) for a in rng.uniform(skin + 0.03, fat - 0.02, rng.integers(1, 4))]  # fat septa
    lines += [
        (a, rng.uniform(0.025, 0.06), rng.uniform(0.005, 0.01))  # muscle striations
        for a in rng.uniform(fat + 0.02, muscle - 0.02, rng.integers(4, 10))
    ]
    return bands, lines


def make_wall(rng: np.random.Generator, geo: ProbeGeometry, cfg: SimConfig) -> Wall:
    rows, lines = geo.rows, geo.lines
    world = 2 * lines
    lo, hi = cfg.pleura_depth_cm[geo.probe]
    zp0 = rng.uniform(lo, hi) * geo.rows_per_cm
    tilt = rng.uniform(-1, 1) * cfg.pleura_tilt_cm * geo.rows_per_cm
    xw = np.arange(world, dtype=np.float32)
    pleura = zp0 + tilt * np.sin(2 * np.pi * xw / world + rng.uniform(0, 2 * np.pi))
    pleura += 0.3 * smooth_noise(rng, world, world / 12) * geo.rows_per_cm * 0.05

    # Layers follow u = z / pleural depth with a gentle lateral waviness; every bright line has its
    # own waviness and fades in and out laterally (fascia and muscle fibres are not endless).
    z = np.arange(rows, dtype=np.float32)[:, None]
    u = z / pleura[None, :] * (1.0 + 0.02 * smooth_noise(rng, world, world / 8)[None, :])
    bands, bright = _wall_bands(rng)
    echo = np.zeros((rows, world), np.float32)
    for top, bot, level in bands:
        echo[(u >= top) & (u < bot)] = level
    for at, level, width in bright:
        wav = 0.015 * smooth_noise(rng, world, world / rng.uniform(4, 12))[None, :]
        frag = np.clip(0.6 + 0.8 * smooth_noise(rng, world, world / rng.uniform(6, 20)), 0, 1)[None, :]
        echo = np.maximum(echo, level * frag * np.exp(-(((u - at - wav) / width) ** 2)))
    # Heterogeneous tissue: slow 2-D variation of the echo level (log-normal, a few mm across).
    blobs = smooth_noise_2d(rng, (rows, world), 0.25 * geo.rows_per_cm)
    echo *= np.exp(0.5 * blobs).astype(np.float32)
    echo *= (1.0 + 0.25 * smooth_noise(rng, world, world / 16))[None, :]

    rib_w = np.zeros(world, np.float32)
    rib_lift = np.zeros(world, np.float32)
    if rng.random() < cfg.rib_probability[geo.probe]:
        # Ribs at the image edges (the "bat sign"), the pleura visible between them.
        sides = [0.0, 1.0] if rng.random() < 0.6 else [float(rng.choice([0.0, 1.0]))]
        for side in sides:
            hw = rng.uniform(*cfg.rib_half_width_frac) * lines
            c = side * lines + (hw * 0.4 if side == 0 else -hw * 0.4)
            d = np.abs(((xw - c + world / 2) % world) - world / 2)
            w = np.clip((hw - d) / 2.0, 0, 1)
            rib_w = np.maximum(rib_w, w)
            lift = (0.25 + 0.35 * (1 - (d / hw) ** 2)) * zp0 * 0.35
            rib_lift = np.where(w > 0, np.maximum(rib_lift, lift), rib_lift).astype(np.float32)
    return Wall(world, echo.astype(np.float32), pleura.astype(np.float32), rib_w, rib_lift)


@dataclass
class LungState:
    """One score's signs in lung-world coordinates (see module docstring)."""

    score: int
    tex: np.ndarray  # float32 [D_OFF + rows, world + pad, 3]: B-line echo, consolidation weight, its echo
    cls: np.ndarray  # uint8 [D_OFF + rows, world + pad]
    pleura_offset: np.ndarray  # float32 [world] rows (irregularity)
    pleura_gain: np.ndarray  # float32 [world] (gaps, fragmentation)
    pleura_width: np.ndarray  # float32 [world]: multiplier of the healthy pleura thickness
    aline_strength: np.ndarray  # float32 [world]: A-line visibility (1 = healthy)
    involvement: np.ndarray  # float32 [world] in [0, 1]: where the score's signs are (the lesion)


def _blob_weight(
    shape: tuple[int, int], cx: float, cy: float, ax: float, ay: float, rough: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius q of an irregular ellipse (q < 1 inside) and its soft weight."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    q = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2) + rough
    return q, np.clip((1.02 - q) * 12.0, 0.0, 1.0)


def make_lung_state(
    score: int, rng: np.random.Generator, geo: ProbeGeometry, wall: Wall, cfg: SimConfig
) -> LungState:
    """Draw one score's signs. The defining sign always lies in the middle of the view."""
    rows, lines, world = geo.rows, geo.lines, wall.world
    hl = D_OFF + rows
    tex = np.zeros((hl, world, 3), np.float32)
    cls = np.full((hl, world), MASK_BG, np.uint8)
    d = (np.arange(hl, dtype=np.float32) - D_OFF)[:, None]  # rows below the pleura
    xw = np.arange(world, dtype=np.float32)[None, :]
    zp_mean = float(wall.pleura_rows.mean())
    lung_rows = rows - zp_mean
    rpc, lpc = geo.rows_per_cm, geo.lines_per_cm

    # The lesion: a lateral window of the lung (centred in the view, so the sign that defines the
    # score is always visible) where this score's signs are; outside it the lung looks healthy.
    # Real LUS findings are focal (Roy et al. 2020 §I: "localised" artefacts); score 0 has none.
    centre = float(rng.uniform(*cfg.lesion_centre_frac) * lines)
    half = float(rng.uniform(*cfg.lesion_width_frac[score]) * lines / 2)
    dx_c = np.abs(((np.arange(world, dtype=np.float32) - centre + world / 2) % world) - world / 2)
    edge = max(1.0, cfg.lesion_edge_frac * lines)
    involvement = np.clip((half - dx_c) / edge + 0.5, 0.0, 1.0).astype(np.float32)
    if score == 0:
        involvement[:] = 0.0

    irr0, irr_s = cfg.pleura_irregularity_cm[0], cfg.pleura_irregularity_cm[score]
    irr = rpc * (irr0 + (irr_s - irr0) * involvement)
    offset = irr * (0.6 * smooth_noise(rng, world, 3.0) + 0.4 * smooth_noise(rng, world, 12.0))
    healthy_gain = 1.0 + 0.08 * smooth_noise(rng, world, 10.0)
    gain = healthy_gain
    width = np.ones(world, np.float32)
    if score >= 1:
        gain = healthy_gain * (1 - involvement) + (0.8 + 0.3 * smooth_noise(rng, world, 4.0)) * involvement
        width = 1.0 + 0.35 * involvement
    gain = np.clip(gain, 0.15, 1.3)
    a0, a_s = cfg.aline_strength_by_score[0], cfg.aline_strength_by_score[score]
    aline = (a0 + (a_s - a0) * involvement).astype(np.float32)

    def central() -> float:
        return centre + float(rng.uniform(-0.15, 0.15)) * half

    def anywhere() -> float:
        return centre + float(rng.uniform(-0.85, 0.85)) * half

    def add_bline(c: float, top: float = 0.0, level: float | None = None, sigma: float | None = None) -> None:
        sig = sigma if sigma is not None else rng.uniform(*cfg.bline_sigma_cm) * lpc
        lev = level if level is not None else rng.uniform(*cfg.bline_level)
        dx = np.abs(((xw - c + world / 2) % world) - world / 2)
        lateral = np.exp(-0.5 * (dx / sig) ** 2)
        vertical = np.clip((d - top + 1.5) / 2.0, 0, 1) * (1.0 - 0.2 * np.clip(d / max(lung_rows, 1), 0, 1))
        b = (lev * lateral * vertical).astype(np.float32)
        tex[..., 0] = np.maximum(tex[..., 0], b)
        band = (lateral >= cfg.mask_bline_threshold) & (d >= top - 2)
        cls[band & (cls == MASK_BG)] = 1

    lo_b, hi_b = cfg.blines_by_score[score]
    n_b = int(rng.integers(lo_b, hi_b + 1))
    for i in range(n_b):
        add_bline(central() if (i == 0 and score == 1) else anywhere())

    if score == 2:
        n_c = int(rng.integers(cfg.small_consolidations[0], cfg.small_consolidations[1] + 1))
        for i in range(n_c):
            c = central() if i == 0 else anywhere()
            ax = rng.uniform(*cfg.small_consolidation_width_cm) * lpc / 2
            ay = rng.uniform(*cfg.small_consolidation_depth_cm) * rpc
            x0, x1 = int(c - 1.6 * ax), int(c + 1.6 * ax) + 1
            y1 = int(D_OFF + 1.6 * ay) + 1
            rough = cv2.GaussianBlur(rng.standard_normal((y1, x1 - x0)).astype(np.float32), (0, 0), 3.0)
            rough *= 0.1 / (rough.std() + 1e-6)
            q, wgt = _blob_weight((y1, x1 - x0), c - x0, D_OFF, ax, ay, rough)
            below = np.arange(y1)[:, None] >= D_OFF - 1
            wgt = wgt * below
            lower = np.arange(y1, dtype=np.float32)[:, None] > D_OFF + 0.4 * ay
            rim = (q > 0.78) & lower  # bright irregular lower margin ("shred sign")
            echo = np.where(rim, cfg.consolidation_rim_level, cfg.consolidation_level).astype(np.float32)
            cols = np.arange(x0, x1) % world
            tex[:y1, cols, 1] = np.maximum(tex[:y1, cols, 1], wgt)
            tex[:y1, cols, 2] = np.where(wgt > 0, echo, tex[:y1, cols, 2])
            cls_sub = cls[:y1, cols]
            cls_sub[(q < 1.0) & below] = 2
            cls[:y1, cols] = cls_sub
            # Broken pleura over the consolidation; a B-line from its lower edge.
            dxp = np.abs(((np.arange(world) - c + world / 2) % world) - world / 2)
            gain = gain * (1.0 - np.exp(-((dxp / (0.8 * ax)) ** 6)))  # pleura broken over it
            add_bline(c + rng.uniform(-0.3, 0.3) * ax, top=1.15 * ay, level=rng.uniform(*cfg.bline_level))

    if score == 3:
        white = rng.random() < cfg.white_lung_probability
        large = (not white) or rng.random() < 0.3
        if white:
            c = central()
            dx = np.abs(((xw - c + world / 2) % world) - world / 2)
            lateral = np.clip((half - dx) / 4.0, 0, 1)
            lev = cfg.white_lung_level * (1.0 - 0.35 * np.clip(d / max(lung_rows, 1), 0, 1))
            ripple = 1.0 + 0.2 * smooth_noise(rng, world, 2.5)[None, :]
            wl = (lateral * lev * ripple * (d >= -1)).astype(np.float32)
            tex[..., 0] = np.maximum(tex[..., 0], wl)
            cls[(lateral > 0.5) & (d >= -2)] = 3
            width = np.maximum(width, 1.0 + 0.8 * lateral[0]).astype(np.float32)
        if large:
            c = central()
            ax = min(half, rng.uniform(*cfg.large_consolidation_width_frac) * lines / 2)
            ay = rng.uniform(*cfg.large_consolidation_depth_frac) * lung_rows
            x0, x1 = int(c - 1.5 * ax), int(c + 1.5 * ax) + 1
            y1 = min(hl, int(D_OFF + 1.5 * ay) + 1)
            rough = cv2.GaussianBlur(rng.standard_normal((y1, x1 - x0)).astype(np.float32), (0, 0), 4.0)
            rough *= 0.15 / (rough.std() + 1e-6)
            q, wgt = _blob_weight((y1, x1 - x0), c - x0, D_OFF, ax, ay, rough)
            below = np.arange(y1)[:, None] >= D_OFF - 1
            wgt = wgt * below
            # Hepatised lung: tissue-like echo with bright air bronchograms (short branching lines).
            echo = np.full((y1, x1 - x0), cfg.large_consolidation_level, np.float32)
            for _ in range(int(rng.integers(3, 8))):
                p = np.array([rng.uniform(0.3, 1.7) * ax, D_OFF + rng.uniform(0.2, 0.8) * ay])
                for _ in range(int(rng.integers(2, 5))):
                    step = rng.normal(0, 1, 2) * np.array([3.0, 4.0]) + np.array([0.0, 2.0])
                    q_ = p + step
                    cv2.line(echo, (int(p[0]), int(p[1])), (int(q_[0]), int(q_[1])), cfg.bronchogram_level, 1)
                    p = q_
            echo = np.where(q > 0.85, cfg.consolidation_rim_level, echo)
            cols = np.arange(x0, x1) % world
            tex[:y1, cols, 1] = np.maximum(tex[:y1, cols, 1], wgt)
            tex[:y1, cols, 2] = np.where(wgt > 0, echo, tex[:y1, cols, 2])
            cls_sub = cls[:y1, cols]
            cls_sub[(q < 1.0) & below] = 3
            cls[:y1, cols] = cls_sub
            dxp = np.abs(((np.arange(world) - c + world / 2) % world) - world / 2)
            gain = np.where(dxp < 0.9 * ax, gain * 0.45, gain)

    pad = geo.lines + 2
    return LungState(
        score=score,
        tex=wrap_pad(tex, pad),
        cls=wrap_pad(cls, pad),
        pleura_offset=offset.astype(np.float32),
        pleura_gain=gain.astype(np.float32),
        pleura_width=np.asarray(width, np.float32),
        aline_strength=aline,
        involvement=involvement,
    )
