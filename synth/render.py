"""Per-frame B-mode formation on the scan-line grid, then scan conversion.

Everything heavy is precomputed per clip (speckle fields, chest wall, ribs, lung states, gain
curve, conversion maps); a frame is a few translations (``cv2.warpAffine`` with wrap-around), one
lookup of the lung state (``cv2.remap`` following the pleura), ~30 vectorised float32 operations
on a grid of at most 360×256 cells and two scan conversions.

Echo model, per cell (linear amplitude):
  echo = wall layers (above the pleura) | lung (below): haze + A-lines·(1−B-line erasure) + B-lines,
         blended with consolidation echo; + pleural line; × rib shadow; + rib cortex
  amplitude = echo · speckle(Rayleigh, correlated) · G(z) + noise
  G(z) = net attenuation after TGC (dB/cm) + TGC ripple;  pixel = haze_gray + 255/DR ·
         (20·log10(amplitude / lung_background) + gain)  (log compression, dynamic range DR).
A-lines are reverberations at integer multiples k ≥ 2 of the pleural depth on each scan line,
amplitude ``aline_level · aline_decay^(k−2)``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .anatomy import D_OFF, MASK_BG, LungState, Wall, make_wall, periodic_interp, wrap_pad
from .config import ScannerProfile, SimConfig
from .geometry import ProbeGeometry, make_geometry
from .speckle import complex_field, envelope

LUT_PER_UNIT = 256  # A-line lookup-table resolution per multiple of the pleural depth
LUT_UNITS = 24


class Renderer:
    """One clip's fixed world (probe, scanner, chest) and the per-frame image formation."""

    def __init__(
        self, rng: np.random.Generator, profile: ScannerProfile, frame_hw: tuple[int, int], cfg: SimConfig
    ) -> None:
        self.cfg, self.profile = cfg, profile
        depth_cm = float(rng.uniform(*profile.depth_cm))
        self.geo: ProbeGeometry = make_geometry(profile, frame_hw, depth_cm, cfg)
        geo = self.geo
        rows, lines = geo.rows, geo.lines
        self.wall: Wall = make_wall(rng, geo, cfg)
        world = self.wall.world
        sig = (profile.speckle_axial_cells, profile.speckle_lateral_cells)
        wall_spk = envelope(rng, (rows, world), sig)
        # Textures scroll by whole scan lines (slices of wrap-padded arrays: no copy per frame).
        self.wall_echo = wrap_pad(self.wall.echo, lines)
        self.wall_spk = wrap_pad(np.sqrt(wall_spk) * np.float32(1 / 0.94), lines)  # despeckled (√)
        f1 = complex_field(rng, (rows, world), sig)
        f2 = complex_field(rng, (rows, world), sig)
        self.lung_fields = [
            wrap_pad(a.astype(np.float32), lines) for a in (f1.real, f1.imag, f2.real, f2.imag)
        ]
        self.noise = [
            envelope(rng, (rows, lines), (0.7, 0.7)) * np.float32(profile.noise_floor) for _ in range(4)
        ]

        z_cm = (np.arange(rows, dtype=np.float32) + 0.5) / geo.rows_per_cm
        knots = np.linspace(0, depth_cm, 5)
        ripple = rng.uniform(-1, 1, 5) * profile.tgc_ripple_db
        g_db = -profile.net_attenuation_db_cm * z_cm + np.interp(z_cm, knots, ripple)
        g_db += -6.0 * np.exp(-z_cm / 0.15)  # near-field dimming right under the probe face
        self.gain_col = (10 ** (g_db / 20)).astype(np.float32)[:, None]
        dr = profile.dynamic_range_db
        self.log_a = np.float32(255.0 * 20.0 / math.log(10) / dr)
        # pixel = haze_gray + 255/DR · (20·log10(amplitude / lung_background) + gain)
        gain_db = profile.gain_db + rng.uniform(-2, 2)
        self.log_b = np.float32(cfg.haze_gray + 255.0 / dr * gain_db) - self.log_a * np.float32(
            math.log(cfg.lung_background)
        )

        self.z = np.arange(rows, dtype=np.float32)[:, None]
        self.xgrid = np.repeat(np.arange(lines, dtype=np.float32)[None, :], rows, axis=0)
        self.lines_ar = np.arange(lines, dtype=np.float32)
        # Convex: the pleura is a flat surface, so along the oblique scan lines it lies deeper.
        self.flat_rows = np.zeros(lines, np.float32)
        if profile.probe == "convex":
            th = (self.lines_ar + 0.5) / lines * 2 - 1
            th *= np.float32(math.radians(profile.half_angle_deg))
            zp_cm = float(self.wall.pleura_rows.mean()) / geo.rows_per_cm
            extra_cm = (profile.radius_cm + zp_cm) * (1 / np.cos(th) - 1)
            self.flat_rows = (extra_cm * geo.rows_per_cm * rng.uniform(*cfg.pleura_flatness)).astype(
                np.float32
            )
        self.pleura_sigma = max(0.8, cfg.pleura_thickness_cm * geo.rows_per_cm)
        self.lut_aline, self.lut_mask = self._aline_luts()

        # Motion parameters (seconds → cells).
        self.breath_period = float(rng.uniform(*cfg.breath_period_s))
        self.breath_phase = float(rng.uniform(0, 2 * np.pi))
        self.slide = float(rng.uniform(*cfg.sliding_cm)) * geo.lines_per_cm
        self.breath_dz = cfg.breath_depth_cm * geo.rows_per_cm
        n_drift = 3
        self.drift_amp = (rng.dirichlet(np.ones(n_drift)) * cfg.probe_drift_frac * lines).astype(np.float64)
        self.drift_period = rng.uniform(*cfg.probe_drift_period_s, n_drift)
        self.drift_phase = rng.uniform(0, 2 * np.pi, n_drift)

    def _aline_luts(self) -> tuple[np.ndarray, np.ndarray]:
        """A-line echo and class-0 band vs r = depth / pleural depth (index r·LUT_PER_UNIT)."""
        cfg = self.cfg
        r = np.arange(LUT_UNITS * LUT_PER_UNIT, dtype=np.float32) / LUT_PER_UNIT
        zp = float(self.wall.pleura_rows.mean())
        width = cfg.aline_width * self.pleura_sigma / zp  # A-lines as thick as the pleura, in units of r
        lut = np.zeros_like(r)
        band = np.zeros(r.shape, bool)
        for k in range(2, LUT_UNITS):
            amp = cfg.aline_level * cfg.aline_decay ** (k - 2)
            lut += amp * np.exp(-(((r - k) / width) ** 2))
            if k - 2 < cfg.mask_aline_count:
                band |= np.abs(r - k) < 2.2 * width
        return lut.astype(np.float32), band

    def motion(self, t: float) -> tuple[float, float, float]:
        """(probe offset, lung offset, pleura vertical shift) in cells at time ``t`` seconds."""
        probe = float(np.sum(self.drift_amp * np.sin(2 * np.pi * t / self.drift_period + self.drift_phase)))
        phase = 2 * np.pi * t / self.breath_period + self.breath_phase
        return probe, probe + self.slide * math.sin(phase), self.breath_dz * math.sin(phase)

    def render(
        self, t: float, states: list[tuple[LungState, float]], label: LungState, frame_index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask (uint8, frame size) at time ``t`` for a weighted mix of lung states."""
        if not states:
            raise ValueError("render: no lung state to draw; pass at least one (state, weight) pair")
        cfg, geo, wall = self.cfg, self.geo, self.wall
        rows, lines, world = geo.rows, geo.lines, wall.world
        p, o, dz = self.motion(t)
        xs_wall = self.lines_ar + np.float32(p)
        xs_lung = self.lines_ar + np.float32(o)

        zp = periodic_interp(xs_wall, wall.pleura_rows) + self.flat_rows + np.float32(dz)
        aline_strength = np.zeros(lines, np.float32)
        pwidth = np.zeros(lines, np.float32)
        pgain = np.zeros(lines, np.float32)
        for st, w in states:
            zp += w * periodic_interp(xs_lung, st.pleura_offset)
            pgain += w * periodic_interp(xs_lung, st.pleura_gain)
            aline_strength += w * periodic_interp(xs_lung, st.aline_strength)
            pwidth += w * periodic_interp(xs_lung, st.pleura_width)
        zp = np.maximum(zp, np.float32(1.0))  # tiny frames: keep the pleura inside the grid
        dmap = self.z - zp[None, :]  # rows below the pleura

        # Wall (moves with the probe) and lung speckle (moves with the lung, decorrelates slowly).
        iw = round(p) % world
        wall_echo = self.wall_echo[:, iw : iw + lines]
        wall_spk = self.wall_spk[:, iw : iw + lines]
        il = round(o) % world
        r1, i1, r2, i2 = (a[:, il : il + lines] for a in self.lung_fields)
        ph = 2 * np.pi * cfg.speckle_decorrelation_hz * t
        c, s = np.float32(math.cos(ph)), np.float32(math.sin(ph))
        lung_spk = cv2.sqrt(cv2.magnitude(r1 * c + r2 * s, i1 * c + i2 * s)) * np.float32(1 / 0.94)

        # Lung state lookup following the pleura.
        map_x = self.xgrid + np.float32(o % world)
        map_y = dmap + np.float32(D_OFF)
        tex: np.ndarray | None = None
        for st, w in states:
            look = cv2.remap(
                st.tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            tex = look * np.float32(w) if tex is None else tex + look * np.float32(w)
        assert tex is not None  # states is not empty (checked above)
        bline, cons_w, cons_e = cv2.split(tex)

        flicker = np.float32(1.0 + cfg.bline_flicker * math.sin(2 * np.pi * t * 1.7 + self.breath_phase))
        ridx = np.minimum(self.z * (np.float32(LUT_PER_UNIT) / zp[None, :]), LUT_UNITS * LUT_PER_UNIT - 1)
        ridx = ridx.astype(np.int32)
        breath_a = np.float32(0.85 + 0.15 * math.cos(2 * np.pi * t / self.breath_period + self.breath_phase))
        aline = self.lut_aline[ridx] * (aline_strength * breath_a)[None, :]
        erase = np.clip(1.0 - bline * np.float32(1.0 / cfg.bline_erase_level), 0.0, 1.0)
        lung = np.float32(cfg.lung_background) + aline * erase + bline * flicker
        lung += cons_w * (cons_e - lung)
        above = dmap < 0
        echo = np.where(above, wall_echo, lung)
        spk = np.where(above, wall_spk, lung_spk)

        # Pleural line (only a band of rows needs the Gaussian).
        sig = np.float32(self.pleura_sigma) * np.maximum(pwidth, np.float32(0.5))  # per scan line
        top = max(0, int(zp.min() - 4 * sig.max()) - 1)
        bot = min(rows, int(zp.max() + 4 * sig.max()) + 2)
        if bot > top:
            band = dmap[top:bot]
            line = np.exp(-((band / sig[None, :]) ** 2))
            echo[top:bot] += (pgain * np.float32(cfg.pleura_level))[None, :] * line

        # Ribs: bright cortex, acoustic shadow beneath (only the rib columns are touched).
        rib_w = periodic_interp(xs_wall, wall.rib_weight)
        rib_cols = np.nonzero(rib_w > 0.01)[0]
        shadow_mask = None
        if rib_cols.size:
            zr = zp[rib_cols] - periodic_interp(xs_wall[rib_cols], wall.rib_lift)
            dz_r = self.z - zr[None, :]
            rw = rib_w[rib_cols][None, :]
            shade = np.clip(dz_r / 2.0, 0, 1) * rw
            sub = echo[:, rib_cols] * (1.0 - (1.0 - cfg.rib_shadow_level) * shade)
            sub += cfg.rib_level * rw * np.exp(-((dz_r / (1.5 * self.pleura_sigma)) ** 2))
            echo[:, rib_cols] = sub
            shadow_mask = (shade > 0.5, rib_cols)

        amp = echo * spk * self.gain_col + self.noise[frame_index % len(self.noise)]
        img = cv2.log(np.maximum(amp, np.float32(1e-6))) * self.log_a + self.log_b
        img = np.clip(img, 0, 255).astype(np.uint8)

        # Mask: the label state's signs (classes 1-3 from its map, class 0 drawn here).
        mask = cv2.remap(
            label.cls, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=MASK_BG
        )
        if label.score == 0:
            healthy = (np.abs(dmap) < 2.2 * self.pleura_sigma) | (self.lut_mask[ridx] & (dmap > 0))
            mask[healthy] = 0
        if shadow_mask is not None:
            sub = mask[:, shadow_mask[1]]
            sub[shadow_mask[0]] = MASK_BG
            mask[:, shadow_mask[1]] = sub

        return geo.convert(img, 0), geo.convert(mask, MASK_BG, nearest=True)


def make_renderer(
    rng: np.random.Generator, profile: ScannerProfile, frame_hw: tuple[int, int], cfg: SimConfig
) -> Renderer:
    return Renderer(rng, profile, frame_hw, cfg)
