"""Every parameter of the synthetic lung-ultrasound simulator, in one documented place.

Two dataclasses:

* :class:`ScannerProfile` — what differs between ultrasound machines ("hospitals" in ICLUS-DB,
  Roy et al. 2020 §III): probe type, imaged depth, fan angle / probe radius (convex) or aperture
  width (linear), gain, dynamic range, net attenuation after time-gain compensation, speckle size.
* :class:`SimConfig` — the anatomy, the score-specific signs (Soldati scale, paper §III), motion,
  transitions, the scan-conversion resolution and the simulated clinicians.

Lengths are in centimetres unless the name says otherwise; ``_cells`` means cells of the internal
scan-line grid (rows = depth samples, columns = scan lines) that is scan-converted to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScannerProfile:
    """One simulated ultrasound machine + probe.

    ``gain_db`` shifts the log-compressed image up/down (0 dB puts aerated lung haze at
    ``SimConfig.haze_gray``); ``dynamic_range_db`` is the span of echo
    amplitudes (dB) mapped onto 0..255; ``net_attenuation_db_cm`` is the depth slope (dB/cm, round
    trip, after the machine's TGC) and ``tgc_ripple_db`` the size of the TGC's imperfections.
    """

    name: str
    probe: str  # "convex" | "linear"
    hospital: str
    depth_cm: tuple[float, float]  # imaged depth, drawn per clip
    half_angle_deg: float = 30.0  # convex: half the fan opening
    radius_cm: float = 4.5  # convex: probe face radius
    width_cm: float = 4.0  # linear: aperture width
    gain_db: float = 0.0
    dynamic_range_db: float = 55.0
    net_attenuation_db_cm: float = 0.8
    tgc_ripple_db: float = 2.5
    speckle_axial_cells: float = 1.1  # Gaussian PSF sigma on the scan-line grid
    speckle_lateral_cells: float = 1.5
    noise_floor: float = 0.0012  # electronic noise amplitude (echo units: pleura = 1)
    margin_frac: float = 0.04  # black border around the image inside the frame


SCANNERS: dict[str, ScannerProfile] = {
    p.name: p
    for p in (
        ScannerProfile(
            "convex-c5",
            "convex",
            "hospital-A",
            (9.0, 13.0),
            32.0,
            5.0,
            gain_db=0.0,
            dynamic_range_db=58.0,
            net_attenuation_db_cm=0.7,
        ),
        ScannerProfile(
            "convex-c3",
            "convex",
            "hospital-B",
            (8.0, 12.0),
            28.0,
            3.8,
            gain_db=3.0,
            dynamic_range_db=50.0,
            net_attenuation_db_cm=1.0,
            speckle_lateral_cells=1.8,
        ),
        ScannerProfile(
            "convex-wifi",
            "convex",
            "hospital-C",
            (9.0, 12.0),
            36.0,
            4.0,
            gain_db=-2.0,
            dynamic_range_db=46.0,
            net_attenuation_db_cm=1.2,
            speckle_axial_cells=1.4,
            speckle_lateral_cells=2.0,
            noise_floor=0.002,
        ),
        ScannerProfile(
            "linear-l12",
            "linear",
            "hospital-A",
            (4.0, 6.0),
            width_cm=3.8,
            gain_db=1.0,
            dynamic_range_db=56.0,
            net_attenuation_db_cm=1.6,
        ),
        ScannerProfile(
            "linear-l9",
            "linear",
            "hospital-D",
            (5.0, 8.0),
            width_cm=4.4,
            gain_db=-1.5,
            dynamic_range_db=60.0,
            net_attenuation_db_cm=1.2,
            speckle_lateral_cells=1.8,
        ),
        ScannerProfile(
            "linear-wifi",
            "linear",
            "hospital-C",
            (4.5, 7.0),
            width_cm=4.0,
            gain_db=2.0,
            dynamic_range_db=48.0,
            net_attenuation_db_cm=1.8,
            speckle_axial_cells=1.4,
            noise_floor=0.002,
        ),
    )
}


def scanners_for(probe: str) -> list[str]:
    """Names of the scanner profiles with the given probe type, sorted."""
    if probe not in ("convex", "linear"):
        raise ValueError(f"unknown probe {probe!r}: use 'convex' or 'linear'")
    return sorted(n for n, p in SCANNERS.items() if p.probe == probe)


@dataclass(frozen=True)
class SimConfig:
    """All simulator parameters (defaults give ICLUS-DB-like clips).

    Echo levels are linear amplitudes relative to the pleural line (= 1); after log compression
    with a ~55 dB dynamic range, 0.05 (first A-line) shows as mid-grey and 0.0045 (lung haze) as
    dark grey, as on real scanners.
    """

    # --- scan-line grid (resolution of the internal image before scan conversion) -------------
    rows_per_px: float = 0.7  # depth samples per output pixel of imaged depth
    lines_per_px: float = 0.4  # scan lines per output pixel across the image (speckle is wider than tall)
    max_rows: int = 360
    max_lines: int = 256

    # --- anatomy ---------------------------------------------------------------------------
    pleura_depth_cm: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"convex": (2.0, 3.4), "linear": (1.0, 1.8)}
    )
    pleura_level: float = 0.35  # echo of the pleural line (healthy)
    pleura_thickness_cm: float = 0.06  # Gaussian sigma of the bright pleural line (healthy)
    pleura_flatness: tuple[float, float] = (0.5, 0.9)  # convex: 1 = flat pleura, 0 = concentric arc
    pleura_tilt_cm: float = 0.1  # max depth difference of the pleura across the image
    rib_probability: dict[str, float] = field(default_factory=lambda: {"convex": 0.75, "linear": 0.4})
    rib_half_width_frac: tuple[float, float] = (0.05, 0.09)  # of the image width
    rib_level: float = 0.4  # echo of the rib's cortex
    rib_shadow_level: float = 0.05  # echo multiplier inside an acoustic rib shadow
    haze_gray: float = 48.0  # display grey of aerated lung haze at 0 dB scanner gain
    lung_background: float = 0.0045  # echo of aerated lung below the pleura (reverberation haze)

    # --- score 0: A-lines ------------------------------------------------------------------
    aline_level: float = 0.05  # first A-line (at 2x the pleural depth) echo level
    aline_decay: float = 0.5
    aline_width: float = (
        2.4  # A-line thickness in units of the pleura's  # each further reverberation keeps this fraction
    )
    aline_strength_by_score: tuple[float, float, float, float] = (1.0, 0.35, 0.12, 0.0)

    # --- scores 1-3: the lesion (where a score's signs are), B-lines, consolidations, white lung
    # Findings are focal: each score >= 1 draws a lateral window (its width a fraction of the image
    # width, centred within lesion_centre_frac) holding the irregular thick pleura, the lost A-lines,
    # the B-lines and consolidations; the lung outside it looks healthy. Score 3's window is the
    # white-lung width.
    lesion_centre_frac: tuple[float, float] = (0.35, 0.65)
    lesion_width_frac: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.3, 0.6), (0.3, 0.6), (0.45, 0.85))
    lesion_edge_frac: float = 0.05  # soft edge of the window, fraction of the image width
    blines_by_score: tuple[tuple[int, int], ...] = ((0, 0), (1, 4), (1, 3), (0, 3))
    bline_sigma_cm: tuple[float, float] = (0.05, 0.13)  # lateral Gaussian sigma of one B-line
    bline_level: tuple[float, float] = (0.07, 0.18)
    bline_erase_level: float = 0.03  # a B-line this bright fully erases the A-lines under it
    pleura_irregularity_cm: tuple[float, float, float, float] = (0.01, 0.07, 0.1, 0.12)
    small_consolidations: tuple[int, int] = (1, 3)  # score 2
    small_consolidation_width_cm: tuple[float, float] = (0.5, 1.2)
    small_consolidation_depth_cm: tuple[float, float] = (0.4, 1.0)
    consolidation_level: float = 0.0015  # hypoechoic interior (score 2)
    consolidation_rim_level: float = 0.07  # bright irregular lower margin ("shred sign")
    large_consolidation_level: float = 0.015  # tissue-like (hepatised) interior (score 3)
    bronchogram_level: float = 0.15  # air bronchograms inside a large consolidation
    large_consolidation_width_frac: tuple[float, float] = (0.3, 0.6)  # of the image width
    large_consolidation_depth_frac: tuple[float, float] = (0.25, 0.5)  # of the lung depth in view
    white_lung_probability: float = 0.5  # score 3: white lung (else/also a large consolidation)
    white_lung_level: float = 0.12

    # --- masks (what an annotator would contour) ---------------------------------------------
    mask_aline_count: int = 3  # A-lines marked as class 0 (the fainter ones are not drawn)
    mask_bline_threshold: float = 0.35  # fraction of a B-line's peak inside its marked band

    # --- time ------------------------------------------------------------------------------
    breath_period_s: tuple[float, float] = (3.0, 5.0)
    sliding_cm: tuple[float, float] = (0.15, 0.4)  # lateral lung sliding amplitude at the pleura
    breath_depth_cm: float = 0.05  # vertical breathing excursion of the pleura
    probe_drift_frac: float = 0.08  # max lateral probe drift, fraction of the image width
    probe_drift_period_s: tuple[float, float] = (4.0, 12.0)
    speckle_decorrelation_hz: float = 0.6  # how fast the lung's reverberation speckle changes
    bline_flicker: float = 0.15
    transition_frames: int = 8  # cross-fade length around a scheduled score change

    # --- random schedules (LiveSimulator without a schedule, make_synthetic) ------------------
    segment_seconds: tuple[float, float] = (3.0, 9.0)
    score_weights: tuple[float, float, float, float] = (0.34, 0.24, 0.32, 0.10)  # ICLUS-DB §III

    # --- simulated clinicians (video-level labels) -------------------------------------------
    n_clinicians: int = 5
    clinician_agreement: float = 0.67  # P(one clinician gives the consensus score), paper §III

    def __post_init__(self) -> None:
        if not 0.0 <= self.clinician_agreement <= 1.0:
            raise ValueError(f"clinician_agreement must be in [0, 1], got {self.clinician_agreement}")
        if self.n_clinicians < 1:
            raise ValueError(f"n_clinicians must be >= 1, got {self.n_clinicians}")
        if self.transition_frames < 0:
            raise ValueError(f"transition_frames must be >= 0, got {self.transition_frames}")
        lw = self.lesion_width_frac
        if len(lw) != 4 or any(len(r) != 2 or not 0.0 <= r[0] <= r[1] <= 1.0 for r in lw):
            raise ValueError(
                f"lesion_width_frac needs one (min, max) pair per score 0-3, 0 <= min <= max <= 1; got {lw}"
            )
        lo, hi = self.lesion_centre_frac
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"lesion_centre_frac must be (min, max), 0 <= min <= max <= 1; got {(lo, hi)}")
