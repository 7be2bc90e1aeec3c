"""The statistics behind :func:`xanes_lib.mapping.unexplained_pixels` (private).

The fit residual of each pixel at the test energies, its noise level measured from the stack,
the pooled chi-square, the unexplained signal and the edge-step significance. Split out of
:mod:`.phases`, which applies them to the sample and to the empty field.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..physics import absorbance
from ._basis import _is_spectra_array
from .mask import SIGNIFICANCE_THRESHOLD

__all__: list[str] = []

#: Largest squared noise (in units of its local mean) that sets the noise level: chi-square(1)
#: exceeds it with probability 1e-4.
_SPIKE = 15.1367
#: Median of chi-square(1).
_CHI2_1_MEDIAN = 0.454936
#: Largest standardised residual (in noise standard deviations) a pixel brings to the pooling:
#: a spike or a border left by alignment is not spread over its neighbours (noise alone exceeds
#: it with probability 6e-5).
_U_CLIP = 4.0


def _test_energies(e: np.ndarray, refs, relative_window_eV, shift_eV: float) -> np.ndarray:
    """Boolean selection of the fitted energies ``e`` within the window around the edge."""
    if relative_window_eV is None:
        sel = np.ones(e.size, bool)
        edge = float("nan")
    else:
        if _is_spectra_array(refs):
            raise ValueError("references given as an array have no edge energy; pass reference objects "
                             "or relative_window_eV=None.")
        lo, hi = (float(v) for v in relative_window_eV)
        edge = float(np.mean([r.edge_energy() for r in refs])) + shift_eV
        sel = (e >= edge + lo) & (e <= edge + hi)
    if sel.sum() < 3:
        raise ValueError(f"only {int(sel.sum())} fitted energies within {relative_window_eV} eV of the edge "
                         f"at {edge:.1f} eV; widen relative_window_eV (or energy_window_eV), or pass None.")
    return sel


class _Residuals(NamedTuple):
    """What :func:`_pooled_chi2` needs to recompute the residual at each test energy."""

    t: np.ndarray          # (E, Y, X) transmission
    idx: np.ndarray        # (n,) indices of the test energies in the stack
    matrix: np.ndarray     # (n, P) rows of the design matrix at the test energies
    coef: np.ndarray       # (P, Y, X) fitted coefficients (0 where not fitted)
    tested: np.ndarray     # (Y, X) bool

    def at(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Residual (0 outside ``tested``) and fitted transmission at the i-th test energy."""
        pred = np.tensordot(self.matrix[i], self.coef, axes=(0, 0))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = absorbance(np.asarray(self.t[self.idx[i]], dtype=np.float64))
            r = np.where(self.tested, a - pred, 0.0)
        return np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0), np.exp(-np.clip(pred, -5.0, 50.0))


class _Pass(NamedTuple):
    """Maps accumulated over the test energies by :func:`_pooled_chi2`."""

    chi: np.ndarray                # chi-square of the pooled standardised residual
    chi_pixel: np.ndarray          # chi-square of each pixel's own standardised residual
    r2: np.ndarray                 # sum of the squared residual
    n2: np.ndarray                 # sum of the noise variance
    excess: np.ndarray             # sum of the pooled residual's square beyond its noise
    common: np.ndarray | None      # common residual per unit step removed (or None)


def _threshold(chi: np.ndarray, tested: np.ndarray, dof: int, false_flag_rate: float) -> tuple[float, float]:
    """Threshold of the chi-square statistic and the robust scale of its null distribution."""
    from scipy.stats import chi2  # not at import: scipy.stats probes torch (see test_architecture)

    null_scale = max(1.0, float(np.median(chi[tested])) / float(chi2.median(dof)))
    return null_scale * float(chi2.isf(false_flag_rate, dof)), null_scale


def _pooled_chi2(res: _Residuals, smooth_px: float, noise_sigma_px: float, *, typical=None, step=None,
                 outliers=None) -> _Pass:
    """Chi-square maps of the standardised residual, pooled and per pixel, one test energy at a time.

    With ``typical`` (pixels the references explain) and ``step`` (edge-step map), the median
    residual per unit edge step of the typical pixels is removed from every pixel in proportion
    to its step first. ``outliers`` (pixels flagged on their own) are left out of the pooling,
    so that a corrupted pixel or border does not spread to its neighbours. Memory: a few (Y, X)
    maps, whatever E.
    """
    tested = res.tested
    m = tested.astype(np.float64)
    pool = m if outliers is None else (tested & ~outliers).astype(np.float64)
    four = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    n_nb = ndimage.convolve(m, four, mode="constant") * m
    valid = n_nb >= 1                     # pixels with a tested neighbour: the noise is measured there
    w_noise = ndimage.gaussian_filter(valid.astype(np.float64), noise_sigma_px, mode="constant")
    kernel = _gaussian_kernel(smooth_px)
    pooled = kernel.size > 1
    norm, weight = np.sqrt(_separable(pool, kernel ** 2)), _separable(pool, kernel)
    inside = tested & (weight > 0)
    chi, chi_pixel, r2, n2, excess = (np.zeros(tested.shape) for _ in range(5))
    common = None if typical is None else np.zeros(res.idx.size)
    for i in range(res.idx.size):
        r, trans = res.at(i)
        if typical is not None:
            common[i] = np.median(r[typical] / step[typical])
            r = r - np.where(tested, common[i] * step, 0.0)
        # spatial high-pass: a phase (smooth in space) leaves it; the photon noise does not
        d = r - ndimage.convolve(r, four, mode="constant") / np.maximum(n_nb, 1.0)
        q = np.where(valid, d * d * trans / (1.0 + 1.0 / np.maximum(n_nb, 1.0)), 0.0)
        level = np.median(q[valid]) / _CHI2_1_MEDIAN             # robust mean of q, for the gaps
        kappa = _local_mean(q, w_noise, noise_sigma_px, level)
        # spikes do not set the noise: q clipped where noise alone exceeds it with p < 1e-4
        kappa = _local_mean(np.minimum(q, kappa * _SPIKE), w_noise, noise_sigma_px, level)
        u = r * np.sqrt(trans / kappa) * m
        var = np.where(tested, kappa / trans, 0.0)
        chi_pixel += u * u
        r2 += r * r
        n2 += var
        if pooled:
            with np.errstate(divide="ignore", invalid="ignore"):
                u = np.where(inside, _separable(np.clip(u, -_U_CLIP, _U_CLIP) * pool, kernel) / norm, 0.0)
                r_pool = np.where(inside, _separable(r * pool, kernel) / weight, 0.0)
                var_pool = np.where(inside, _separable(var * pool, kernel ** 2) / weight ** 2, 0.0)
            chi += u * u
            # the pooled residual's square minus its noise part: the unexplained signal (unbiased)
            excess += r_pool ** 2 - var_pool
    if not pooled:
        chi, excess = chi_pixel.copy(), r2 - n2
    return _Pass(chi, chi_pixel, r2, n2, excess, common)


def _local_mean(q: np.ndarray, weight: np.ndarray, sigma: float, fill: float) -> np.ndarray:
    """Gaussian average of ``q`` over the pixels where it is measured (never below ``1e-6 * fill``).

    ``weight`` is the smoothed indicator of those pixels; ``fill`` is used where none lies near.
    """
    mean = ndimage.gaussian_filter(q, sigma, mode="constant")
    mean = np.where(weight > 1e-3, mean / np.maximum(weight, 1e-3), fill)
    return np.maximum(mean, 1e-6 * fill + 1e-30)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel of ``sigma`` pixels, truncated at 4 sigma ([1.0] for 0)."""
    if sigma <= 0:
        return np.ones(1)
    half = max(1, int(np.ceil(4.0 * sigma)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _separable(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate a (Y, X) map with ``kernel`` along both axes, zero outside."""
    out = ndimage.correlate1d(img, kernel, axis=0, mode="constant")
    return ndimage.correlate1d(out, kernel, axis=1, mode="constant")


def _significant_step(t: np.ndarray, idx: np.ndarray, model, k: int, noise_var: np.ndarray,
                      tested: np.ndarray, smooth_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``tested`` whose edge step, own and pooled, exceeds SIGNIFICANCE_THRESHOLD std.

    The step is the unconstrained least-squares ``sum_k c_k`` (unbiased: an empty pixel scatters
    about 0 of either sign), its variance that for the pixel's noise variance ``noise_var``
    (measured from the stack, mean over the test energies); the pooled step is averaged over the
    Gaussian neighbourhood of the test, as in :func:`_relative`.
    """
    w = model.pinv[:k].sum(axis=0)
    step = np.zeros(tested.shape)
    for wi, i in zip(w, idx, strict=True):
        with np.errstate(invalid="ignore"):
            step += wi * np.where(tested, absorbance(np.asarray(t[i], dtype=np.float64)), 0.0)
    var = np.where(tested, np.clip(noise_var, 0.0, None), 0.0) * float(w @ w)
    kernel = _gaussian_kernel(smooth_px)
    weight = _separable(tested.astype(np.float64), kernel)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = _separable(step, kernel) / weight
        pooled_sd = np.sqrt(_separable(var, kernel ** 2)) / weight
    own = tested & (step > SIGNIFICANCE_THRESHOLD * np.sqrt(var))
    return own, tested & (pooled > SIGNIFICANCE_THRESHOLD * pooled_sd)


def _relative(excess: np.ndarray, step: np.ndarray, tested: np.ndarray, smooth_px: float,
              dof: int) -> np.ndarray:
    """RMS of the unexplained signal over the (pooled) edge step; inf where the step is <= 0."""
    kernel = _gaussian_kernel(smooth_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled_step = _separable(step * tested, kernel) / _separable(tested.astype(np.float64), kernel)
        relative = _unexplained_rms(excess, dof) / pooled_step
    return np.where(tested & (pooled_step > 0), relative, np.where(tested, np.inf, np.nan))


def _unexplained_rms(excess: np.ndarray, dof: int) -> np.ndarray:
    """RMS over the test energies of the unexplained signal (absorbance units)."""
    return np.sqrt(np.clip(excess, 0.0, None) / dof)
