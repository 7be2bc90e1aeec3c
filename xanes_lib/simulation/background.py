"""The smooth multiplicative beam background B(x, y, E) and the beam's illumination profile.

Between a sample image and its flat (white-field) image the beam drifts: its intensity
profile changes a little, so ``T_measured = T_true * B`` with ``B ~ 1 +/- a few %``, smooth in
space and different at each energy. B is built from smooth spatial patterns whose weights
follow a stationary AR(1) process along the energy axis (correlated from one energy to the
next, but never identical).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PATTERNS", "beam_background", "illumination_profile",
]

#: Spatial patterns the background can be made of.
PATTERNS = ("gradient", "blobs", "bands", "rings")


def _pattern_basis(name: str, shape: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """Smooth spatial basis images of one pattern, each with unit RMS."""
    ny, nx = shape
    y = (np.arange(ny) - ny / 2) / max(ny, nx)
    x = (np.arange(nx) - nx / 2) / max(ny, nx)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    if name == "gradient":
        basis = [yy, xx]
    elif name == "blobs":  # broad Gaussian blobs (sigma 15-40 % of the field)
        basis = []
        for _ in range(4):
            cy, cx = rng.uniform(-0.5, 0.5, 2)
            s = rng.uniform(0.15, 0.4)
            basis.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s ** 2)))
    elif name == "bands":  # horizontal bands, 1-5 periods across the field
        basis = []
        for f in rng.choice(np.arange(1, 6), size=2, replace=False):
            basis += [np.cos(2 * np.pi * f * yy), np.sin(2 * np.pi * f * yy)]
    elif name == "rings":  # concentric rings about an off-centre point, 1-3 periods
        cy, cx = rng.uniform(-0.3, 0.3, 2)
        r = np.hypot(yy - cy, xx - cx)
        f = rng.uniform(1.0, 3.0)
        basis = [np.cos(2 * np.pi * f * r), np.sin(2 * np.pi * f * r)]
    else:
        raise ValueError(f"unknown background pattern {name!r}; choose from {PATTERNS}.")
    return [(b - b.mean()) / (b.std() + 1e-12) for b in basis]


def beam_background(shape, n_energies: int, rng=None, *, amplitude: float = 0.02,
                    patterns=("gradient", "blobs"), energy_correlation: float = 0.8) -> np.ndarray:
    """Smooth multiplicative background B, one image per energy.

    Parameters
    ----------
    shape : tuple of int
        Image size (rows, columns).
    n_energies : int
        Number of energies E.
    rng : numpy.random.Generator, int or None
        Random source.
    amplitude : float
        RMS of ``B - 1`` over the whole stack (e.g. 0.02 for 2 %). 0 gives B = 1.
    patterns : sequence of str
        Any of :data:`PATTERNS`.
    energy_correlation : float
        Correlation (0-1) of the pattern weights between neighbouring energies.

    Returns
    -------
    numpy.ndarray
        (E, Y, X) float64 background, mean 1 at every energy.

    Raises
    ------
    ValueError
        For a negative or too large amplitude, an unknown pattern or a correlation outside [0, 1].

    Examples
    --------
    >>> b = beam_background((32, 32), 5, 0, amplitude=0.02)
    >>> b.shape, bool(abs(b.mean() - 1) < 1e-9)
    ((5, 32, 32), True)
    """
    rng = np.random.default_rng(rng)
    if not 0.0 <= amplitude < 0.3:
        raise ValueError(f"amplitude must be in [0, 0.3) (an RMS fraction); got {amplitude}.")
    if not 0.0 <= energy_correlation <= 1.0:
        raise ValueError(f"energy_correlation must be in [0, 1]; got {energy_correlation}.")
    if not patterns:
        raise ValueError(f"give at least one background pattern from {PATTERNS}.")
    basis = [b for name in patterns for b in _pattern_basis(name, tuple(shape), rng)]
    n = len(basis)
    weights = np.empty((n_energies, n))
    weights[0] = rng.standard_normal(n)
    innovation = np.sqrt(1.0 - energy_correlation ** 2)
    for i in range(1, n_energies):
        weights[i] = energy_correlation * weights[i - 1] + innovation * rng.standard_normal(n)
    field = np.tensordot(weights, np.stack(basis), axes=1)
    field -= field.mean(axis=(1, 2), keepdims=True)
    rms = np.sqrt(np.mean(field ** 2))
    return 1.0 + (amplitude / rms if rms > 0 else 0.0) * field


def illumination_profile(shape, rng=None, *, falloff: float = 0.2) -> np.ndarray:
    """Beam intensity profile of the flat field (mean 1): a broad off-centre dome.

    It multiplies both the sample and the flat images, so it cancels in the transmission
    but sets how many photons each pixel gets.
    """
    rng = np.random.default_rng(rng)
    ny, nx = shape
    cy, cx = ny / 2 + rng.uniform(-0.1, 0.1) * ny, nx / 2 + rng.uniform(-0.1, 0.1) * nx
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (0.5 * max(ny, nx)) ** 2
    prof = 1.0 - falloff * np.clip(r2, 0.0, 2.0) / 2.0
    return prof / prof.mean()
