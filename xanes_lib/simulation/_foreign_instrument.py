"""Instrument of the foreign test family: beam background, stage drift and detector blur.

Private to :mod:`xanes_lib.simulation.foreign` (split out for length); its own assumptions,
independent of the in-family simulator.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__: list[str] = []


def _beam(shape, n_energies: int, amplitude: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Background B (E, Y, X) with RMS ``amplitude`` of B - 1, and the beam envelope P (mean 1)."""
    y = np.linspace(-1.0, 1.0, shape[0])[:, None]
    x = np.linspace(-1.0, 1.0, shape[1])[None, :]
    c0, s = rng.normal(0.0, 0.15, 2), rng.uniform(1.2, 2.0)
    profile = np.exp(-((y - c0[0]) ** 2 + (x - c0[1]) ** 2) / (2 * s ** 2))
    profile /= profile.mean()
    if amplitude == 0:
        return np.ones((n_energies, *shape)), profile
    t = np.linspace(-0.5, 0.5, n_energies)[:, None]
    surfaces = np.stack(np.broadcast_arrays(x, y, 1.5 * x ** 2 - 0.5, 1.5 * y ** 2 - 0.5, x * y))
    walk = ndimage.gaussian_filter1d(np.cumsum(rng.normal(0.0, 0.08, (n_energies, 5)), axis=0), 3.0, axis=0)
    coef = rng.normal(0.0, 1.0, 5) + rng.normal(0.0, 0.5, 5) * t + walk
    field = np.tensordot(coef, surfaces, axes=1)
    for _ in range(int(rng.integers(2, 5))):
        centre, velocity = rng.uniform(-1.0, 1.0, 2), rng.normal(0.0, 0.15, 2)
        width, amp = rng.uniform(0.25, 0.6), rng.normal(0.0, 1.0)
        cy, cx = centre[0] + velocity[0] * t, centre[1] + velocity[1] * t  # (E, 1) each
        field += amp * np.exp(-(y[None, :, 0] - cy) ** 2 / (2 * width ** 2))[:, :, None] \
            * np.exp(-(x[None, 0, :] - cx) ** 2 / (2 * width ** 2))[:, None, :]
    tilt = rng.normal(0.0, 0.3, (n_energies, 2))
    field += tilt[:, 0, None, None] * y + tilt[:, 1, None, None] * x
    field -= field.mean(axis=(1, 2), keepdims=True)
    return 1.0 + amplitude * field / np.sqrt(np.mean(field ** 2)), profile


def _unit_vector(rng) -> np.ndarray:
    """Draw a random direction (dy, dx) of length 1."""
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return np.array([math.sin(angle), math.cos(angle)])


def _thermal_drift(n_images: int, max_px: float, rng) -> tuple[np.ndarray, dict]:
    """Stage drift of a scan: smooth thermal drift plus per-image jitter.

    In scan time ``t = e / (n_images - 1)`` the smooth part is an exponential settling
    ``(1 - exp(-t / tau)) / (1 - exp(-1 / tau))`` (tau 0.1-1 of the scan), a linear creep
    (0-0.6 of it) and an oscillation ``sin(2 pi t / period + phase) - sin(phase)`` (0.05-0.3 of
    it, period 0.2-1 of the scan), each along its own random direction. The smooth path is
    scaled to a longest displacement of 1, independent Gaussian jitter (sd 0.02-0.06) is added
    to every image but the first, and the sum is scaled so that its longest displacement is
    ``max_px``.

    Parameters
    ----------
    n_images : int
        Images in the scan (>= 2).
    max_px : float
        Longest displacement (px, Euclidean) of any image from image 0, > 0.
    rng : numpy.random.Generator
        Source of every draw.

    Returns
    -------
    path : numpy.ndarray
        (n_images, 2) displacement (dy, dx) of every image from image 0; ``path[0] == (0, 0)``.
    draws : dict
        The drawn parameters (JSON-able), for the ground truth's ``params``.
    """
    t = np.linspace(0.0, 1.0, n_images)[:, None]
    tau = math.exp(rng.uniform(math.log(0.1), math.log(1.0)))
    creep, wave_amp = rng.uniform(0.0, 0.6), rng.uniform(0.05, 0.3)
    period, phase = rng.uniform(0.2, 1.0), rng.uniform(0.0, 2.0 * math.pi)
    directions = [_unit_vector(rng) for _ in range(3)]
    settle = (1.0 - np.exp(-t / tau)) / (1.0 - math.exp(-1.0 / tau))
    wave = np.sin(2.0 * math.pi * t / period + phase) - math.sin(phase)
    smooth = settle * directions[0] + creep * t * directions[1] + wave_amp * wave * directions[2]
    smooth /= max(float(np.linalg.norm(smooth, axis=1).max()), 1e-12)
    jitter_sd = rng.uniform(0.02, 0.06)
    jitter = rng.normal(0.0, jitter_sd, smooth.shape)
    jitter[0] = 0.0
    path = smooth + jitter
    path *= max_px / max(float(np.linalg.norm(path, axis=1).max()), 1e-12)
    path[0] = 0.0
    draws = {"model": "thermal: settling + creep + oscillation + jitter", "settling_tau": tau,
             "creep": creep, "oscillation": wave_amp, "oscillation_period": period,
             "oscillation_phase_rad": phase, "directions": [d.tolist() for d in directions],
             "jitter_sd": jitter_sd, "max_px": float(max_px)}
    return path, draws


def _moved_and_blurred(absorb: np.ndarray, path: np.ndarray | None, blur_px: float) -> np.ndarray:
    """Transmission of the absorbance moved by ``path`` (Fourier shift), then blurred by the PSF.

    The images are padded with empty field (absorbance 0) to odd sizes larger than the largest
    shift plus 4 PSF sigmas, moved by ``scipy.ndimage.fourier_shift`` (exact for a band-limited
    image; no wrap-round into the frame), turned into transmission, blurred by a Gaussian of
    sigma ``blur_px`` (transmission 1 outside) and cropped back. Images with a zero shift are
    not transformed; without drift and blur this is ``exp(-absorb)``. The shifted absorbance is
    not clipped: the pixelated phantom is not band-limited, and its sharp particle edges ring
    (absorbance down to about -0.05 beside them, a transmission slightly above 1).

    Parameters
    ----------
    absorb : numpy.ndarray
        (E, Y, X) noise-free absorbance of the sample in the frame of image 0.
    path : numpy.ndarray or None
        (E, 2) displacement (dy, dx) of every image: a feature at (y, x) moves to
        (y + dy, x + dx). None: no drift.
    blur_px : float
        PSF sigma (px); 0: no blur.

    Returns
    -------
    numpy.ndarray
        (E, Y, X) transmission as the detector sees it before the beam and the noise.
    """
    if path is None and blur_px == 0:
        return np.exp(-absorb)
    reach = 0 if path is None else math.ceil(float(np.abs(path).max()))
    pad = reach + math.ceil(4.0 * blur_px) + 2
    n_y, n_x = absorb.shape[1:]
    widths = [(0, 0)] + [(pad, pad + (n + 2 * pad + 1) % 2) for n in (n_y, n_x)]  # odd: no Nyquist term
    padded = np.pad(absorb, widths)
    if path is not None:
        for image, shift in zip(padded, path, strict=True):
            if np.any(shift != 0):
                image[...] = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift)).real
    trans = np.exp(-padded)
    if blur_px > 0:
        trans = ndimage.gaussian_filter(trans, (0.0, blur_px, blur_px), mode="constant", cval=1.0)
    return trans[:, pad:pad + n_y, pad:pad + n_x]
