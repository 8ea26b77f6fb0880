"""Synthetic lung-ultrasound simulator (numpy + OpenCV only).

Owned by the training side, but kept in its own torch-free package so that the runtime's
synthetic live source (``lus-stream --demo``) can use it without importing ``train``.

Public API: :class:`ClipSpec`, :func:`simulate_clip` → :class:`SimClip`, :class:`LiveSimulator`,
:class:`SimConfig` (every parameter), :data:`SCANNERS` (scanner profiles) and the simulated
clinicians (:func:`simulate_clinicians`, :func:`agreement_rate`). See ``docs/dataset.md``.
"""

from .anatomy import MASK_BG
from .clinicians import agreement_rate, consensus_score, max_agreeing, simulate_clinicians
from .clip import ClipSpec, LiveSimulator, SimClip, simulate_clip, validate_schedule
from .config import SCANNERS, ScannerProfile, SimConfig, scanners_for

__all__ = [
    "MASK_BG",
    "SCANNERS",
    "ClipSpec",
    "LiveSimulator",
    "ScannerProfile",
    "SimClip",
    "SimConfig",
    "agreement_rate",
    "consensus_score",
    "max_agreeing",
    "scanners_for",
    "simulate_clinicians",
    "simulate_clip",
    "validate_schedule",
]
