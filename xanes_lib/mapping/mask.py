"""The sample mask: by significance of each pixel's absorption, or by an edge-step threshold.

- :func:`significant_mask`: a pixel is sample when its absorption (edge step of the edge
  element, or total absorbance) is significant given that pixel's own noise, estimated from
  the residual of its reference fit. The default of notebook 04.
- :func:`sample_mask`: pixels whose edge step exceeds a threshold (Otsu's unless given).

Both return a :class:`SampleMask`, which unpacks as ``mask, threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..validate import check_energies

__all__ = [
    "SIGNIFICANCE_THRESHOLD", "MASK_STATISTICS", "SampleMask", "sample_mask", "significant_mask",
    "absorption_significance", "mask_from_significance", "empty_field_baseline",
]

#: Default significance (in units of the empty pixels' noise) above which a pixel is sample.
SIGNIFICANCE_THRESHOLD = 3.0
#: What :func:`significant_mask` may test: the edge step, the total absorbance, or either.
MASK_STATISTICS = ("either", "edge_step", "absorbance")
#: Fewest pixels with a negative statistic needed to calibrate the noise on them.
_MIN_NULL_PIXELS = 50
#: Width of the empty field's absorbance baseline, as a share of the image's shorter side
#: (beam offsets are smooth on the scale of the field of view), and its least width (pixels).
BASELINE_FIELD_SHARE, MIN_BASELINE_PX = 1.0 / 16.0, 8.0
#: Gaussian width (pixels) over which the significance is also pooled: a thin or dilute region
#: is found from the evidence of its neighbourhood where single pixels are too noisy.
POOL_SIGMA_PX = 1.0
#: A pixel kept by the pooled test alone must also be at least this significant by itself
#: (the pooled test blurs over a particle's rim: empty pixels there pass with 2.3 %).
POOLED_PIXEL_FLOOR = 2.0


@dataclass(frozen=True, eq=False)
class SampleMask:
    """Result of :func:`sample_mask` and :func:`significant_mask`.

    Unpacks as ``mask, threshold = sample_mask(edge_step)`` (the other attributes by name).

    Attributes
    ----------
    mask : numpy.ndarray
        (Y, X) bool: the sample pixels (NaN is never inside).
    threshold : float
        The threshold used: an edge step (:func:`sample_mask`) or a significance in units of
        the calibrated noise (:func:`significant_mask`).
    method : str
        How the threshold was set ("otsu", "given", "significance (automatic)" or
        "significance (given)").
    significance : numpy.ndarray or None
        (Y, X) the larger of the tested significances, each in units of the calibrated noise
        (NaN where a pixel could not be fitted); None for :func:`sample_mask`.
    edge_step, edge_step_std : numpy.ndarray or None
        (Y, X) edge step (reference fit, absorbance units) and its standard deviation.
    absorbance, absorbance_std : numpy.ndarray or None
        (Y, X) mean absorbance over the fitted energies and its standard deviation.
    noise_scale : tuple of float or None
        (edge step, absorbance): factor (>= 1) by which the per-pixel standard deviations
        were widened so that the empty pixels' significance has unit spread (see
        :func:`significant_mask`).
    min_edge_step : float or None
        The minimum edge step also required, if any.
    statistic : str or None
        The tested statistic (see :data:`MASK_STATISTICS`).
    absorbance_baseline : numpy.ndarray or None
        (Y, X) absorbance of the empty field under each pixel (smooth beam offsets,
        :func:`empty_field_baseline`), subtracted before the absorbance is tested.
    """

    mask: np.ndarray
    threshold: float
    method: str = "given"
    significance: np.ndarray | None = None
    edge_step: np.ndarray | None = None
    edge_step_std: np.ndarray | None = None
    absorbance: np.ndarray | None = None
    absorbance_std: np.ndarray | None = None
    noise_scale: tuple[float, float] | None = None
    min_edge_step: float | None = None
    statistic: str | None = None
    absorbance_baseline: np.ndarray | None = None

    def __iter__(self):
        """Iterate over ``(mask, threshold)`` (so that the result unpacks as a pair)."""
        return iter((self.mask, self.threshold))

    @property
    def share(self) -> float:
        """Share of the pixels inside the mask."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def sample_mask(edge_step, *, threshold: float | None = None) -> SampleMask:
    """Select the pixels whose edge step exceeds a threshold (automatic: Otsu's method).

    Parameters
    ----------
    edge_step : array_like
        (Y, X) edge step per pixel (e.g. ``normalize_spectra(...).edge_step`` or the
        ``edge_step`` of a :class:`ReferenceFit`).
    threshold : float, optional
        Pixels with ``edge_step > threshold`` are kept. None computes Otsu's threshold
        (:func:`skimage.filters.threshold_otsu`, 256 bins) on the finite values between their
        0.5 and 99.5 percentiles (so a few outliers do not stretch the histogram): the value
        that best separates the empty background (step ~ 0) from the sample.

    Returns
    -------
    SampleMask
        ``mask`` (bool, shape of ``edge_step``; NaN and inf are never inside) and the
        ``threshold`` used.

    Raises
    ------
    ValueError
        No finite values, all values equal (no automatic threshold: pass one), or a
        non-finite threshold.

    See Also
    --------
    significant_mask : the mask that follows each pixel's noise (thin or dilute samples).

    Examples
    --------
    >>> step = np.r_[np.zeros(50), np.ones(50)].reshape(10, 10)
    >>> m, t = sample_mask(step)
    >>> int(m.sum()), 0 < t < 1
    (50, True)
    """
    j = np.asarray(edge_step, dtype=np.float64)
    j = np.where(np.isinf(j), np.nan, j)  # an infinite step is a failed fit, not sample
    if threshold is None:
        finite = j[np.isfinite(j)]
        if finite.size == 0:
            raise ValueError("edge_step holds no finite value; the mask cannot be determined. "
                             "Check the normalization or pass threshold=.")
        lo, hi = np.percentile(finite, [0.5, 99.5])
        core = finite[(finite >= lo) & (finite <= hi)]
        if core.size == 0 or core.min() == core.max():
            raise ValueError(f"edge_step has (almost) a single value ({lo:g}), so Otsu's method "
                             "cannot separate sample from background; pass threshold= explicitly.")
        from skimage.filters import threshold_otsu

        threshold = float(threshold_otsu(core, nbins=256))
        method = "otsu"
    else:
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite or None (automatic); got {threshold}.")
        method = "given"
    with np.errstate(invalid="ignore"):
        mask = j > threshold
    return SampleMask(mask, threshold, method=method, min_edge_step=None)


def _calibrated(value, std) -> tuple[np.ndarray, float]:
    """Significance ``value / std`` divided by its null spread (:func:`_noise_scale`), and that spread."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.asarray(value, dtype=np.float64) / std
    scale = _noise_scale(z)
    return z / scale, scale


def _significances(value, std, fitted) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Calibrated per-pixel and pooled significance of ``value``, and the local level's.

    Returns ``z`` (per pixel), ``z_pooled`` (:func:`_pooled` over the neighbourhood) and
    ``z_local``, the neighbourhood's mean level in units of the pixel's own calibrated noise:
    where it exceeds the threshold by 1, the per-pixel test alone resolves that level (and
    pooling would only blur the mask over the rim); and the per-pixel noise scale.
    """
    z, scale = _calibrated(value, std)
    total, spread = _pooled(value, std, fitted)
    z_pooled, _ = _calibrated(total, spread)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_local = total / (np.asarray(std, dtype=np.float64) * scale)
    return z, z_pooled, z_local, scale


def _pooled(value, std, fitted) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-weighted sum of ``value`` over each pixel's neighbourhood, and its standard deviation.

    ``sum_j w_j v_j`` with ``w_j = g(|i - j|)`` (width :data:`POOL_SIGMA_PX`) over the fitted
    pixels; its variance is ``sum_j w_j^2 std_j^2`` (pixel noise is independent from pixel to
    pixel), and ``g^2`` is a Gaussian of width ``sigma / sqrt(2)`` up to a constant factor.
    """
    sigma_px = POOL_SIGMA_PX
    ok = np.asarray(fitted, bool) & np.isfinite(value) & np.isfinite(std)
    v = np.where(ok, value, 0.0)
    var = np.where(ok, np.asarray(std, dtype=np.float64) ** 2, 0.0)
    total = ndimage.gaussian_filter(v, sigma_px, mode="constant")
    # g^2 = Gaussian(sigma / sqrt 2) / (4 pi sigma^2), with g the unit-sum Gaussian of gaussian_filter
    spread = np.sqrt(ndimage.gaussian_filter(var, sigma_px / math.sqrt(2.0), mode="constant")
                     / (4.0 * math.pi * sigma_px ** 2))
    return np.where(ok, total, np.nan), np.where(ok & (spread > 0), spread, np.nan)


def _noise_scale(z: np.ndarray) -> float:
    """Spread (>= 1) of the null distribution of ``z``, from its negative values.

    Empty pixels scatter symmetrically about 0; sample pixels lie above. The root mean
    square of the negative values is the spread of the empty pixels' significance; it
    exceeds 1 when the noise is correlated across energies (a beam background that drifts
    smoothly with energy) and the per-pixel estimate misses part of it. Never below 1: the
    data cannot make the noise smaller than the fit says. 1 when fewer than
    ``_MIN_NULL_PIXELS`` values are negative (a field full of sample).
    """
    neg = z[np.isfinite(z) & (z < 0)]
    if neg.size < _MIN_NULL_PIXELS:
        return 1.0
    return max(1.0, float(np.sqrt(np.mean(neg * neg))))


def significant_mask(stack_or_absorbance, energies_eV, references, *, threshold: float | None = None,
                     statistic: str = "either", min_edge_step: float | None = None,
                     background: Sequence[str] = ("inverse_cube", "constant"),
                     energy_window_eV: tuple[float, float] | None = None, shift_eV: float = 0.0,
                     oxidation_states=None, input_kind: str | None = None) -> SampleMask:
    """Sample pixels: those whose absorption is significant given their own noise.

    Every pixel is fitted by :func:`fit_references` (unconstrained); its noise ``s`` is the
    RMS residual scaled to the degrees of freedom, ``sqrt(SSR / (n - p))``. Two statistics
    are tested, each divided by its standard deviation from the fit's covariance:

    - the **edge step** ``sum_k c_k`` (the edge element), std ``s sqrt(1' H 1)``;
    - the **absorbance** of the pixel (its fit) averaged over the fitted energies (all
      elements: the sample's thickness), std ``s sqrt(m' H m)`` with ``m`` the mean row of the design
      matrix (``s / sqrt(n)`` with a constant background term). A dilute element (Co in
      NMC811) has an edge step that single pixels cannot resolve at a low dose, while the
      sample's absorbance still shows where the sample is.

    With a beam background that drifts smoothly with energy the residual underestimates the
    noise (it is correlated across energies), so each significance is calibrated on the
    pixels where it is negative (empty pixels scatter symmetrically about 0): it is divided
    by their root mean square (``noise_scale``, at least 1). A pixel is sample when a tested
    significance exceeds ``threshold`` and, if given, its edge step is at least
    ``min_edge_step``. Sample pixels that are noisy are kept: their maps carry a large
    standard deviation (mask by the std if you wish).

    A thin or dilute region whose single pixels cannot reach the threshold is found from its
    neighbourhood: the tested statistic ("either": the absorbance only, since a beam that varies
    with energy mimics a faint edge step over whole areas) is also summed over a Gaussian of
    :data:`POOL_SIGMA_PX` (its std from the pixels' stds; calibrated in the same way). A pixel
    is also sample when this pooled significance exceeds ``threshold``, its own significance
    exceeds :data:`POOLED_PIXEL_FLOOR` and the neighbourhood's mean level is below
    ``threshold + 1`` times the pixel's own noise (where single pixels resolve the level,
    pooling would only spread the mask over the particles' rims).

    Parameters
    ----------
    stack_or_absorbance : xanes_lib.io.Stack or numpy.ndarray
        As for :func:`fit_references`: a Stack, or an (E, Y, X) absorbance (transmission
        with ``input_kind="transmission"``).
    energies_eV : array_like or None
        (E,) energies (eV); None only for a Stack.
    references : sequence of reference objects, or array_like (K, E)
        As for :func:`fit_references`.
    threshold : float, optional
        Significance (in units of the calibrated noise) a pixel must exceed. None takes
        :data:`SIGNIFICANCE_THRESHOLD` (3: about 0.1 % of the empty pixels per statistic
        pass for Gaussian noise); the value used is returned.
    statistic : {"either", "edge_step", "absorbance"}
        Which significance decides: "either" (default) keeps a pixel when its edge step or
        its absorbance is significant; "edge_step" tests the edge element only (e.g. when
        something else absorbs in the empty field: a membrane, a holder).
    min_edge_step : float, optional
        Also require ``edge_step >= min_edge_step`` (absorbance units of the references).
    background, energy_window_eV, shift_eV, oxidation_states, input_kind
        Passed to :func:`fit_references`.

    Returns
    -------
    SampleMask
        ``mask``, ``threshold``, ``method``, ``significance`` and the maps and noise scales
        behind them.

    Raises
    ------
    ValueError
        A bad ``threshold``, ``statistic`` or ``min_edge_step``, and every error of
        :func:`fit_references`.

    Examples
    --------
    >>> from xanes_lib.spectra import default_references
    >>> refs = default_references("Ni")
    >>> e = np.linspace(8250.0, 8450.0, 60)
    >>> rng = np.random.default_rng(0)
    >>> thick = np.zeros((20, 20)); thick[5:15, 5:15] = 0.5
    >>> a = (thick * (refs[0].spectrum(e) + 0.2)[:, None, None]
    ...      + rng.normal(0.0, 0.02, (60, 20, 20)))
    >>> m = significant_mask(a, e, refs)
    >>> int(m.mask.sum()), m.threshold
    (100, 3.0)
    """
    from .lcf import fit_references

    if statistic not in MASK_STATISTICS:
        raise ValueError(f"statistic must be one of {MASK_STATISTICS}; got {statistic!r}.")
    if threshold is None:
        thr, method = SIGNIFICANCE_THRESHOLD, "significance (automatic)"
    else:
        thr, method = float(threshold), "significance (given)"
        if not math.isfinite(thr):
            raise ValueError(f"threshold must be a finite significance (e.g. 3.0) or None; got {threshold}.")
    if min_edge_step is not None and not math.isfinite(float(min_edge_step)):
        raise ValueError(f"min_edge_step must be finite or None; got {min_edge_step}.")
    fit = fit_references(stack_or_absorbance, energies_eV, references, background=background,
                         energy_window_eV=energy_window_eV, shift_eV=shift_eV,
                         oxidation_states=oxidation_states, input_kind=input_kind)
    e_all = check_energies(stack_or_absorbance.energies_eV if energies_eV is None else energies_eV,
                           name="energies_eV")
    parts = absorption_significance(fit, e_all, references, background=background,
                                    energy_window_eV=energy_window_eV, shift_eV=shift_eV,
                                    oxidation_states=oxidation_states)
    return mask_from_significance(parts, fit.mask, threshold=thr, method=method, statistic=statistic,
                                  min_edge_step=min_edge_step)


def absorption_significance(fit, energies_eV, references, *, background=("inverse_cube", "constant"),
                            energy_window_eV=None, shift_eV: float = 0.0, oxidation_states=None) -> dict:
    """Per-pixel edge step and mean absorbance with their standard deviations, from a fit.

    ``fit`` is the unconstrained :func:`fit_references` of the pixels (any part of a stack:
    the values are per pixel) with the same ``background``, window, shift and references.
    Returns the (Y, X) maps ``edge_step``, ``edge_step_std``, ``absorbance``,
    ``absorbance_std`` that :func:`mask_from_significance` turns into the mask.
    """
    from .lcf import _fit_design

    e = np.asarray(energies_eV, dtype=np.float64)
    design = _fit_design(e, references, energy_window_eV=energy_window_eV, shift_eV=shift_eV, names=None,
                         oxidation_states=oxidation_states,
                         background=tuple(background), mode="unconstrained")
    m = design.model.matrix
    n, k = m.shape[0], design.k
    h = np.linalg.pinv(m.T @ m)
    one = np.r_[np.ones(k), np.zeros(m.shape[1] - k)]
    mean_row = m.mean(axis=0)               # mean over energies of the fitted absorbance
    coef = np.asarray(fit.coefficients, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.asarray(fit.residual_rms, dtype=np.float64) * math.sqrt(n / fit.dof) if fit.dof > 0 \
            else np.full(fit.mask.shape, np.nan)
        return {"edge_step": coef[:k].sum(axis=0), "edge_step_std": s * math.sqrt(float(one @ h @ one)),
                "absorbance": np.tensordot(mean_row, coef, axes=(0, 0)),
                "absorbance_std": s * math.sqrt(float(mean_row @ h @ mean_row))}


def mask_from_significance(parts: dict, fitted, *, threshold: float = SIGNIFICANCE_THRESHOLD,
                           method: str = "significance (given)", statistic: str = "either",
                           min_edge_step: float | None = None) -> SampleMask:
    """Return the mask of :func:`significant_mask` from the maps of :func:`absorption_significance`.

    The noise scale of each statistic is calibrated on all the pixels given (the whole field),
    so the maps of a stack mapped in chunks must be put together first.
    """
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite significance (e.g. 3.0); got {threshold!r}.")
    step, step_std = parts["edge_step"], parts["edge_step_std"]
    level, level_std = parts["absorbance"], parts["absorbance_std"]
    z_step, pooled_step, local_step, scale_step = _significances(step, step_std, fitted)
    baseline = empty_field_baseline(level, level_std, np.fmax(z_step, pooled_step), fitted,
                                    threshold=threshold)
    z_level, pooled_level, local_level, scale_level = _significances(level - baseline, level_std, fitted)
    if statistic == "edge_step":
        z, z_pooled, local = z_step, pooled_step, local_step
    elif statistic == "absorbance":
        z, z_pooled, local = z_level, pooled_level, local_level
    else:  # pooled: the absorbance only (a beam that varies with energy mimics a faint edge over areas)
        z, z_pooled, local = np.fmax(z_step, z_level), pooled_level, local_level
    with np.errstate(invalid="ignore"):
        # significant alone; or, where single pixels cannot resolve the local level, in a
        # significant neighbourhood and not below the pixel floor
        weak = local < threshold + 1.0
        mask = (z > threshold) | (weak & (z_pooled > threshold) & (z > POOLED_PIXEL_FLOOR))
        if min_edge_step is not None:
            mask &= step >= float(min_edge_step)
    mask &= fitted
    return SampleMask(mask, threshold, method=method, significance=z, edge_step=step, edge_step_std=step_std,
                      absorbance=level, absorbance_std=level_std, noise_scale=(scale_step, scale_level),
                      min_edge_step=None if min_edge_step is None else float(min_edge_step),
                      statistic=statistic, absorbance_baseline=baseline)


def empty_field_baseline(level, level_std, z_step, fitted, *, threshold: float = SIGNIFICANCE_THRESHOLD,
                         sigma_px: float | None = None, iterations: int = 4) -> np.ndarray:
    """Absorbance of the empty field under every pixel: a smooth surface through the empty pixels.

    Flat-field residuals (the beam's intensity profile changing between the flat and the
    sample images) leave a smooth absorbance offset over the field, many times the noise of a
    pixel's mean absorbance over energies; tested against zero, a thin part of the sample is
    lost below it (notebook 04 left 14-67 % of thin foreign-family particles unmapped). The
    baseline is a local plane (weighted regression over a Gaussian of ``sigma_px``,
    :func:`_local_plane`) through the pixels that are neither significant in edge step nor in
    absorbance above the current baseline (with a 2-pixel rim; at first the baseline is zero
    and the significance is calibrated on the negative values; from the second pass on, the
    absorbance significance pooled as in :func:`significant_mask` also counts, so that a thin
    particle is not taken for an offset), ``iterations`` times. An
    offset many times larger than the noise over most of the field cannot be told from a
    thin layer of sample: then the baseline stays near zero there.

    Parameters
    ----------
    level, level_std : numpy.ndarray
        (Y, X) mean absorbance of each pixel and its standard deviation.
    z_step : numpy.ndarray
        (Y, X) calibrated significance of the edge step (per pixel or pooled, the larger).
    fitted : numpy.ndarray
        (Y, X) bool: pixels with a fit.
    threshold : float
        Significance above which a pixel is sample.
    sigma_px : float, optional
        Width of the surface; default :data:`BASELINE_FIELD_SHARE` of the shorter side, at
        least :data:`MIN_BASELINE_PX`.
    iterations : int
        Refinements.

    Returns
    -------
    numpy.ndarray
        (Y, X) baseline; zeros when fewer than 1 % of the pixels are empty (a field full of
        sample: nothing to learn the offset from).
    """
    level = np.asarray(level, dtype=np.float64)
    ok = np.asarray(fitted, bool) & np.isfinite(level) & np.isfinite(level_std) & (level_std > 0)
    sigma = sigma_px if sigma_px is not None else max(MIN_BASELINE_PX,
                                                      BASELINE_FIELD_SHARE * min(level.shape))
    step_sample = np.nan_to_num(z_step, nan=0.0) > threshold
    values = np.where(ok, level, 0.0)
    safe_std = np.where(ok, level_std, 1.0)
    candidates = ok & ~step_sample
    baseline = np.zeros_like(level)
    for i in range(iterations):
        z = np.where(ok, (level - baseline) / safe_std, np.nan)
        z = z / _noise_scale(z)
        if i > 0:  # pooled once there is a baseline: pooling an uncorrected offset finds it everywhere
            z = np.fmax(z, _calibrated(*_pooled(level - baseline, level_std, ok))[0])
        sample = np.nan_to_num(z, nan=0.0) > threshold
        empty = candidates & ~ndimage.binary_dilation(sample, iterations=2)
        if empty.sum() < 0.01 * empty.size:
            return np.zeros_like(level)
        baseline = _binned_plane(values, empty.astype(np.float64), sigma)
    return baseline


def _binned_plane(values, weights, sigma: float) -> np.ndarray:
    """:func:`_local_plane` on a grid binned by about ``sigma / 4``, interpolated back to every pixel.

    The baseline is smooth on that scale; binned, its cost no longer grows with ``sigma^2``
    (a 2048 px field has ``sigma`` = 128 px: the full-resolution filters took minutes).
    """
    f = max(1, int(sigma // 4))
    if f == 1:
        return _local_plane(values, weights, sigma)
    ny, nx = values.shape
    by, bx = -(-ny // f), -(-nx // f)

    def block_sum(x):
        padded = np.zeros((by * f, bx * f))
        padded[:ny, :nx] = x
        return padded.reshape(by, f, bx, f).sum(axis=(1, 3))

    w = block_sum(weights)
    mean = block_sum(values * weights) / np.maximum(w, 1e-12)
    coarse = _local_plane(mean, w / (f * f), sigma / f)
    # pixel centre (y + 0.5) / f - 0.5 in units of blocks
    yy = (np.arange(ny) + 0.5) / f - 0.5
    xx = (np.arange(nx) + 0.5) / f - 0.5
    return ndimage.map_coordinates(coarse, np.meshgrid(yy, xx, indexing="ij"), order=1, mode="nearest")


def _local_plane(values, weights, sigma: float, *, slope_ridge: float = 0.05) -> np.ndarray:
    """Weighted local linear regression of ``values``: a plane per pixel, Gaussian ``sigma`` around it.

    The weights of the fit at each pixel are ``weights`` times the Gaussian window.

    A plane follows a sloping offset up to the image border and past particles where a local
    mean (normalised convolution) would lag behind (on the foreign family at 5000 photons that
    lag let 3-8 % of the empty pixels pass for sample). The slopes are shrunk towards zero by
    ``slope_ridge`` times the local weight (where few pixels hold it, the plane tends to the
    local mean); with no weight nearby, the mean of all weighted values.
    """
    ny, nx = values.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    y, x = (y - ny / 2.0) / sigma, (x - nx / 2.0) / sigma

    def g(z):
        return ndimage.gaussian_filter(z, sigma, mode="constant")

    w = weights
    s0, sx, sy, sxx, sxy, syy = g(w), g(w * x), g(w * y), g(w * x * x), g(w * x * y), g(w * y * y)
    b = np.stack([g(w * values), g(w * values * x), g(w * values * y)], axis=-1)
    a = np.stack([np.stack([s0, sx, sy], -1), np.stack([sx, sxx, sxy], -1), np.stack([sy, sxy, syy], -1)], -2)
    a += np.maximum(s0, 1e-12)[..., None, None] * np.diag([1e-6, slope_ridge, slope_ridge])
    coef = np.linalg.solve(a, b[..., None])[..., 0]
    plane = coef[..., 0] + coef[..., 1] * x + coef[..., 2] * y
    fallback = float(np.sum(w * values) / max(np.sum(w), 1e-12))
    return np.where(s0 > 1e-3, plane, fallback)
