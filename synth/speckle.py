"""Spatially correlated speckle: complex Gaussian scatterer fields filtered by a Gaussian point-spread
function (FFT, so the field is periodic and can be scrolled laterally forever). The envelope
``|field|`` is Rayleigh distributed with mean 1 — the multiplicative speckle of B-mode images.
"""

from __future__ import annotations

import numpy as np


def complex_field(
    rng: np.random.Generator, shape: tuple[int, int], sigma_rc: tuple[float, float]
) -> np.ndarray:
    """A periodic complex Gaussian field, PSF-filtered, normalised so ``E|f|^2 = 4/pi`` (mean |f| = 1)."""
    rows, cols = shape
    noise = rng.standard_normal((rows, cols)) + 1j * rng.standard_normal((rows, cols))
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.fftfreq(cols)[None, :]
    sy, sx = sigma_rc
    transfer = np.exp(-2 * np.pi**2 * ((fy * sy) ** 2 + (fx * sx) ** 2))
    f = np.fft.ifft2(np.fft.fft2(noise) * transfer)
    f /= np.sqrt(np.mean(np.abs(f) ** 2))  # E|f|^2 = 1 → mean |f| = sqrt(pi)/2
    f *= 2 / np.sqrt(np.pi)
    return f.astype(np.complex64)


def envelope(rng: np.random.Generator, shape: tuple[int, int], sigma_rc: tuple[float, float]) -> np.ndarray:
    """Rayleigh speckle amplitude (float32, mean ≈ 1), periodic in both directions."""
    return np.abs(complex_field(rng, shape, sigma_rc)).astype(np.float32)
