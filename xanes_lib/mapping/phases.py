"""Phases the references cannot explain: the fit residual map and the pixels it flags.

A pixel whose spectrum is a mix of the references (plus the smooth ``E^-3`` and constant
terms of the physics model) leaves only noise in the residual of its fit; a phase outside
the references (another compound, a shifted edge, a damped white line) leaves a structured
residual.

- :func:`residual_map` measures the residual per pixel, and :func:`flag_unexplained` marks
  the pixels whose residual stands out from the sample's (a robust threshold, no noise model).
- :func:`unexplained_pixels` is the statistical test: each pixel's residual across the edge,
  pooled over a small neighbourhood, is compared with that pixel's own noise level (measured
  from the stack), and flagged where noise alone would exceed it with a chosen probability
  and the unexplained signal exceeds what the empty field shows without any sample.
- :func:`mark_unexplained` reports the flagged pixels of a :class:`~.lcf.ReferenceFit` as not
  determined (oxidation state and fractions NaN) instead of inventing a state for them.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..physics import absorbance, build_model, n_references, reference_model
from ..spectra import default_references
from ..validate import check_energies, check_image_mask, check_stack
from ._basis import _is_spectra_array, _reference_basis
from ._input import _refuse_absorbance_as_transmission, refuse_falling_log_steps
from ._residual_test import (
    _gaussian_kernel,
    _pooled_chi2,
    _relative,
    _Residuals,
    _significant_step,
    _test_energies,
    _threshold,
    _unexplained_rms,
)
from .lcf import ReferenceFit, fit_references

__all__ = [
    "residual_map", "flag_unexplained", "FALSE_FLAG_RATE", "MIN_RELATIVE_RESIDUAL", "UnexplainedPixels",
    "unexplained_pixels", "mark_unexplained", "EMPTY_FIELD_QUANTILE",
]

#: Default false-flag rate of :func:`unexplained_pixels`: the probability that noise alone flags
#: a pixel that the references explain.
FALSE_FLAG_RATE = 1e-3
#: Default smallest unexplained signal that :func:`unexplained_pixels` flags, as a share of the
#: pixel's edge step (RMS across the edge). References measured elsewhere rarely match a sample to
#: better than a few per cent (edge position, white-line height): at 0.02 that mismatch alone
#: flagged 2-7 % of the in-family pixels without a foreign phase (13 % of the shipped example),
#: at 0.05 0.1-0.9 % (4 %), while 88-99 % of an in-family foreign phase (0.08) stays flagged.
MIN_RELATIVE_RESIDUAL = 0.05
#: Quantile of the empty field's unexplained signal that a flag must exceed (see
#: :func:`unexplained_pixels`, ``empty_field``).
EMPTY_FIELD_QUANTILE = 0.99
#: Pixels next to the mask left out of the automatic empty field (the pooling and a blurred
#: particle rim reach them), and the fewest empty pixels that set a floor.
_EMPTY_MARGIN_PX, _MIN_EMPTY = 3, 200
#: Fewest typical pixels from which :func:`unexplained_pixels` learns the sample's common residual.
_MIN_TYPICAL = 50
#: Share of the mask without a significant edge step, even pooled over the neighbourhood, above
#: which :func:`unexplained_pixels` warns: the mask is mostly empty field (a sample mask of a thin
#: sample at a low dose has most pixels without a significant step of their own, not pooled).
_NO_EDGE_WARN_SHARE = 0.5


def residual_map(transmission, energies_eV, *, element: str | None = None, references=None,
                 relative_window_eV: tuple | None = (-15.0, 40.0)) -> np.ndarray:
    """Root mean square of the residual of each pixel's physics fit, across the edge.

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) transmission (raw, smoothed, corrected or denoised); not modified.
    energies_eV : array_like
        (E,) increasing energies.
    element : str, optional
        Edge element whose shipped references are used when ``references`` is None.
    references : sequence, optional
        Reference spectra.
    relative_window_eV : tuple of float or None
        Energies (eV) relative to the references' mean edge energy (half step), not absolute
        energies, over which the residual is averaged (the fit itself uses every energy). A
        phase outside the references differs from them across the edge; far from it every
        spectrum looks alike and only noise and background are left. None averages over all
        energies.

    Returns
    -------
    numpy.ndarray
        (Y, X) float64 residual RMS in absorbance units.

    Examples
    --------
    >>> from xanes_lib.spectra import default_references
    >>> e = np.linspace(8250, 8450, 60)
    >>> refs = default_references("Ni")
    >>> a = 0.3 * refs[0].spectrum(e) + 0.2 * refs[1].spectrum(e) + 0.5
    >>> t = np.exp(-np.broadcast_to(a[:, None, None], (60, 2, 2)))
    >>> bool(residual_map(t, e, element="Ni").max() < 1e-9)
    True
    """
    e = check_energies(energies_eV, name="energies_eV")
    t = check_stack(transmission, name="transmission", n_energies=e.size)
    if relative_window_eV is not None:
        window = np.asarray(relative_window_eV, dtype=np.float64).ravel()
        if window.size != 2 or not np.all(np.isfinite(window)) or window[0] >= window[1]:
            raise ValueError(f"relative_window_eV must be (low, high) eV relative to the edge with low < "
                             f"high, e.g. (-15, 40), or None; got {relative_window_eV!r}.")
        if references is not None and _is_spectra_array(references):
            raise ValueError("relative_window_eV needs reference objects (their edge energies); with an "
                             "array of spectra pass relative_window_eV=None.")
    nonpositive = int(np.count_nonzero(np.asarray(t) <= 0))
    if nonpositive > 0.5 * t.size:  # a few zero counts at a low dose are data; most values are not
        raise ValueError(f"transmission holds {nonpositive} of {t.size} values <= 0, whose -ln is undefined: "
                         "it is no transmission I / I0 (absorbance with a sign flipped, or counts after dark "
                         "subtraction?). Pass transmission in (0, ~1.2].")
    model = reference_model(e, element, references)
    a = absorbance(np.asarray(t, dtype=np.float64))
    coef = model.fit(a)
    refuse_falling_log_steps(coef[:n_references(model)].sum(axis=0))
    resid = a - model.predict(coef)
    if relative_window_eV is not None:
        refs = references if references is not None else default_references(element)
        edge = float(np.mean([r.edge_energy() for r in refs]))
        sel = (e >= edge + relative_window_eV[0]) & (e <= edge + relative_window_eV[1])
        if sel.sum() < 3:
            raise ValueError(f"only {int(sel.sum())} energies within {relative_window_eV} eV of the edge at "
                             f"{edge:.1f} eV; widen relative_window_eV or pass None.")
        resid = resid[sel]
    return np.sqrt(np.mean(resid ** 2, axis=0))


def flag_unexplained(residual, mask, *, n_mad: float = 5.0) -> tuple[np.ndarray, float]:
    """Pixels of ``mask`` whose residual stands out from the sample's.

    The threshold is the median of the residual inside ``mask`` plus ``n_mad`` robust standard
    deviations (1.4826 x the median absolute deviation): a phase covering less than half of
    the sample is flagged, and noise alone flags about 3e-7 of the pixels for a Gaussian
    residual at the default. It knows no noise model: where the noise level varies across the
    sample (thick and thin particles), :func:`unexplained_pixels` is the test to use.

    Returns
    -------
    (numpy.ndarray, float)
        (Y, X) bool flags and the threshold used.
    """
    if not (isinstance(n_mad, int | float | np.floating) and math.isfinite(n_mad) and n_mad > 0):
        raise ValueError(f"n_mad must be a finite number > 0 (robust standard deviations); got {n_mad!r}.")
    r = np.asarray(residual, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"residual must be a (Y, X) map (e.g. residual_map(...)); got shape {r.shape}.")
    m = check_image_mask(mask, r.shape, required=True, hint=" It must match the residual map (fit.mask).")
    vals = r[m & np.isfinite(r)]
    if vals.size == 0:
        raise ValueError("the mask holds no pixel with a finite residual; nothing to compare with.")
    med = np.median(vals)
    thr = float(med + n_mad * 1.4826 * np.median(np.abs(vals - med)))
    return m & (r > thr), thr


@dataclass(frozen=True, eq=False)
class UnexplainedPixels:
    """Result of :func:`unexplained_pixels`: the test of each pixel and the pixels it flags.

    Attributes
    ----------
    flags : numpy.ndarray
        (Y, X) bool: pixels whose pooled residual (``statistic > threshold``) or own residual
        (``pixel_statistic > pixel_threshold``) noise alone would exceed with probability below
        ``false_flag_rate`` in all, and whose unexplained signal is at least
        ``min_relative_residual`` of their (pooled or own) edge step, itself significant (see
        ``edge_step_significant``): no mix of the references explains their spectrum.
    statistic : numpy.ndarray
        (Y, X) float64 chi-square of the pooled, noise-standardised residual over the test
        energies (``dof`` of them); NaN where no pixel was tested. Its expectation under the
        null hypothesis (the references explain the pixel) is about ``dof``.
    threshold : float
        Threshold of ``statistic``: the chi-square quantile of ``dof`` degrees of freedom at
        ``1 - false_flag_rate / 2`` (``1 - false_flag_rate`` without pooling), times
        ``null_scale``.
    pixel_statistic, pixel_threshold : numpy.ndarray, float
        The same for each pixel's own residual, not pooled (its own robust scale): a pixel
        that stands out alone (a spike, a border left by alignment) is flagged by it and left
        out of its neighbours' pooling. Equal to ``statistic`` and ``threshold`` without pooling.
    null_scale : float
        Robust calibration of the null distribution, >= 1: the median of ``statistic`` over
        the tested pixels divided by the chi-square median (1 when the noise model holds; larger
        when a model error common to most pixels inflates every residual).
    dof : int
        Number of test energies (degrees of freedom of the chi-square).
    false_flag_rate : float
        The probability of a false flag per pixel that set the threshold.
    smooth_px : float
        Gaussian sigma (pixels) of the pooling of the residual (0: none).
    relative_residual : numpy.ndarray
        (Y, X) RMS over the test energies of the pooled residual with its noise part taken
        out (an unbiased estimate of the unexplained signal), divided by the pooled edge step;
        inf where the step is <= 0, NaN outside ``mask``. The size of the effect, where
        ``statistic`` is its significance.
    min_relative_residual : float
        Smallest ``relative_residual`` flagged.
    residual_rms : numpy.ndarray
        (Y, X) RMS of the pixel's own (not pooled) residual over the test energies, after the
        common residual is removed (absorbance units), NaN outside ``mask``.
    noise_rms : numpy.ndarray
        (Y, X) RMS of the pixel's own noise level over the test energies (absorbance units),
        as measured from the stack, NaN outside ``mask``.
    mask : numpy.ndarray
        (Y, X) bool: the tested pixels (fitted inside the given mask).
    energies_eV : numpy.ndarray
        (dof,) the test energies (eV).
    common_residual : numpy.ndarray or None
        (dof,) residual per unit edge step shared by the sample (a mismatch of the references
        with the measurement that most pixels show alike), removed before the test; None when
        not removed.
    mode : str
        Constraint mode of the fit whose residual is tested.
    shift_eV : float
        Energy shift of the references in that fit.
    edge_step_significant : numpy.ndarray or None
        (Y, X) bool: tested pixels whose own edge step (unconstrained fit) exceeds
        :data:`~xanes_lib.mapping.SIGNIFICANCE_THRESHOLD` standard deviations of its noise. The
        test alone flags only these; the pooled test only pixels whose step pooled as it pools
        is significant.
    empty_field_floor : float
        Smallest unexplained signal (RMS over the test energies, absorbance units, pooled as
        the test pools) flagged: the :data:`EMPTY_FIELD_QUANTILE` quantile of the empty
        field's (0 when there was no empty field to measure it on).
    empty_field_pixel_floor : float
        The same for the test of each pixel alone (not pooled).
    n_empty_field : int
        Empty-field pixels that set the floors.
    """

    flags: np.ndarray
    statistic: np.ndarray
    threshold: float
    pixel_statistic: np.ndarray
    pixel_threshold: float
    null_scale: float
    dof: int
    false_flag_rate: float
    smooth_px: float
    relative_residual: np.ndarray
    min_relative_residual: float
    residual_rms: np.ndarray
    noise_rms: np.ndarray
    mask: np.ndarray
    energies_eV: np.ndarray
    common_residual: np.ndarray | None
    mode: str
    shift_eV: float
    edge_step_significant: np.ndarray | None = None
    empty_field_floor: float = 0.0
    empty_field_pixel_floor: float = 0.0
    n_empty_field: int = 0

    @property
    def n_flagged(self) -> int:
        """Number of flagged pixels."""
        return int(self.flags.sum())

    @property
    def share(self) -> float:
        """Flagged share of the tested pixels (NaN when none was tested)."""
        n = int(self.mask.sum())
        return self.n_flagged / n if n else float("nan")

    def to_attrs(self) -> dict:
        """Return the test's settings and outcome as JSON-able attributes (results files)."""
        return {"method": "chi-square of the pooled fit residual over each pixel's own noise level",
                "threshold": float(self.threshold), "pixel_threshold": float(self.pixel_threshold),
                "null_scale": float(self.null_scale),
                "dof": int(self.dof), "false_flag_rate": float(self.false_flag_rate),
                "smooth_px": float(self.smooth_px),
                "min_relative_residual": float(self.min_relative_residual), "fit_mode": self.mode,
                "shift_eV": float(self.shift_eV),
                "test_energies_eV": [float(self.energies_eV[0]), float(self.energies_eV[-1])],
                "common_residual_removed": self.common_residual is not None,
                "n_flagged": self.n_flagged, "n_tested": int(self.mask.sum()),
                "n_without_edge_step": None if self.edge_step_significant is None
                else int((self.mask & ~self.edge_step_significant).sum()),
                "empty_field_floor": float(self.empty_field_floor),
                "empty_field_pixel_floor": float(self.empty_field_pixel_floor),
                "n_empty_field": int(self.n_empty_field)}


def unexplained_pixels(transmission, energies_eV, references, *, mask, mode: str = "nonneg_sum_to_one",
                       shift_eV: float = 0.0, energy_window_eV=None,
                       relative_window_eV: tuple[float, float] | None = (-15.0, 40.0),
                       smooth_px: float = 2.5, false_flag_rate: float = FALSE_FLAG_RATE,
                       noise_sigma_px: float = 8.0, common_residual: bool = True,
                       min_relative_residual: float = MIN_RELATIVE_RESIDUAL,
                       empty_field="auto") -> UnexplainedPixels:
    """Test every pixel for a spectrum that no mix of the references explains.

    Each pixel of ``mask`` is fitted with the references (:func:`fit_references`, ``mode``);
    its residual at each energy across the edge is divided by the pixel's own noise level at
    that energy, pooled over a Gaussian neighbourhood (a phase covers many pixels, the noise is
    independent from pixel to pixel) and summed in squares over the test energies::

        sigma_e(x)^2 = kappa_e(x) / T_e(x)
        u_e(x) = r_e(x) / sigma_e(x)
        chi2(x) = sum_e ( sum_j g_j u_e(x_j) / sqrt(sum_j g_j^2) )^2

    with ``T_e`` the fitted transmission (photon noise grows as ``1/T``) and ``kappa_e`` the
    local noise scale, measured from the stack itself: the spatial high-pass of the residual
    (each pixel minus the mean of its four neighbours), which a phase, smooth in space, does not
    reach, averaged over ``noise_sigma_px``. Pooling keeps the statistic chi-square distributed
    with ``dof`` degrees of freedom (the test energies) where the references explain the
    spectra. A pixel is flagged when ``chi2 > null_scale * chi2_quantile(1 - false_flag_rate / 2,
    dof)``; ``null_scale`` (>= 1) is the median of the statistic over the sample divided by the
    chi-square median, a robust guard against a model error shared by most pixels; with
    ``common_residual`` the residual shape that the sample shares is removed first. At high
    doses a tiny misfit becomes significant (e.g. a beam background left under a particle), so
    a flag also needs an effect of at least ``min_relative_residual`` of the pixel's edge step,
    and one larger than the empty field shows: the same unexplained signal, measured on pixels
    without sample (``empty_field``), is what the beam background and the model leave by
    themselves; a flag must exceed its :data:`EMPTY_FIELD_QUANTILE` quantile. Where the sample
    is thin (a hollow particle's centre) a residual beam background of a few 1e-3 is many times
    the noise at a high dose and more than 5 % of the small edge step: on a foreign-family Ni
    stack at 5000 photons the test flagged 1969 such sample pixels (15 % of the sample, no
    phase outside the references); the empty field's floor (0.005) leaves 10. Every pixel the
    test flagged in the foreign-phase particles of the in-family simulator (300 and 1000
    photons) and of the foreign family (1000 photons) stays flagged with the floor.
    Each pixel is also tested alone (the same statistic, not pooled; each test at half the
    false-flag rate): a pixel that stands out on its own (a spike, a border left by alignment)
    is flagged and left out of its neighbours' pooling, which would otherwise spread it; a
    pooled ``u`` is also clipped to +-4.

    Only pixels with a significant edge step are flagged: more than
    :data:`~xanes_lib.mapping.SIGNIFICANCE_THRESHOLD` standard deviations (from the noise level
    above) for the unconstrained step, pooled as the test pools (the pixel's own step for the
    test alone). Empty field in ``mask`` holds no spectrum of the element for the references to
    explain: it is tested but not flagged (but for the pooling's blur next to a flagged
    particle), kept out of the common residual, and counted in a warning when it is more than
    half of ``mask``.

    Measured on the simulator's foreign-phase particle (edge +3 eV, white line damped by 0.6,
    Ni, 256 x 256, seeds 0-3, beam background divided out as in notebook 04): 300 photons,
    AUC 0.984-0.997, 88-92 % of the particle flagged, 0.08-0.95 % of the other sample pixels;
    1000 photons, AUC 0.979-1.000, 96-100 % flagged, 0.03-1.3 % others (the highest where the
    particle overlaps others, or the beam background is left under a particle at the field's
    edge). An unaligned stack (drift between energies) is flagged at particle edges.

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) measured transmission, > 0: not denoised (the test needs independent noise)
        and preferably divided by the beam background (a background that varies with energy
        leaves a residual of its own; :func:`xanes_lib.denoising.estimate_background`).
    energies_eV : array_like
        (E,) increasing energies.
    references : sequence of reference objects
        With ``.spectrum(energies_eV)`` and ``.edge_energy()`` (:mod:`xanes_lib.spectra`).
    mask : array_like of bool
        (Y, X) sample pixels to test (e.g. ``significant_mask(...).mask``); pixels without a
        significant edge step in it (empty field) are never flagged.
    mode : {"nonneg_sum_to_one", "sum_to_one", "unconstrained"}
        Constraint of the fit: "nonneg_sum_to_one" tests for a *mix* (non-negative fractions);
        "unconstrained" also accepts extrapolations beyond the references.
    shift_eV : float
        Energy shift of the references (as in :func:`fit_references`).
    energy_window_eV : (float, float), optional
        Absolute energies (eV) of the fit; None fits all energies.
    relative_window_eV : (float, float) or None
        Test energies relative to the references' mean edge energy (half step) plus
        ``shift_eV``: a phase outside the references differs from them across the edge, far
        from it only noise is left. None tests every fitted energy.
    smooth_px : float
        Gaussian sigma (pixels) of the pooling; 0 tests every pixel alone. Larger values find
        fainter phases but blur the flags by about ``smooth_px`` pixels.
    false_flag_rate : float
        Probability in (0, 0.5) that noise alone flags a pixel the references explain.
    noise_sigma_px : float
        Gaussian sigma (pixels) of the local average of the noise scale (> 0).
    common_residual : bool
        Remove the residual that the sample shares (measured references never match a
        measurement exactly, and the mismatch grows with the edge step, so thick particles
        would be flagged for it): its median per unit edge step over the pixels that a first
        pass did not flag (among those with at least half the median step), subtracted from
        every pixel in proportion to its step before the second, final pass. A phase covering
        a minority of the sample is not part of it.
    min_relative_residual : float
        Smallest unexplained signal flagged, as a share of the edge step (RMS across the
        test energies, >= 0; 0: significance alone decides).
    empty_field : "auto", array_like of bool, or None
        Pixels without sample that set the floor of the unexplained signal (see above): "auto"
        takes every pixel more than 3 pixels away from ``mask`` whose edge step is not
        significant (own or pooled); a (Y, X) bool map gives them; None sets no floor. With
        fewer than 200 such pixels there is no floor.

    Returns
    -------
    UnexplainedPixels
        Flags, statistic, the threshold and its calibration, residual and noise RMS maps.

    Warns
    -----
    UserWarning
        When more than half of the mask has no significant edge step, even pooled (see above).

    Raises
    ------
    ValueError
        Bad shapes or parameters, fewer than 3 test energies, a mask with no pixel to test,
        references given as an array with a relative window, absorbance passed as
        ``transmission`` (``-ln`` of it steps down at the edge in most pixels), and every
        error of :func:`fit_references`.

    Examples
    --------
    >>> from xanes_lib.spectra import default_references
    >>> refs = default_references("Ni")
    >>> e = np.linspace(8250.0, 8450.0, 80)
    >>> a = 0.3 * refs[0].spectrum(e) + 0.2 * refs[1].spectrum(e) + 0.4
    >>> noise = np.random.default_rng(0).normal(0, 0.01, (80, 32, 32))
    >>> t = np.exp(-(a[:, None, None] + noise))
    >>> res = unexplained_pixels(t, e, refs, mask=np.ones((32, 32), bool))
    >>> res.dof, bool(res.share < 0.01), bool(res.null_scale < 1.2)  # 22 energies within -15..+40 eV
    (22, True, True)
    """
    e = check_energies(energies_eV, name="energies_eV")
    t = check_stack(transmission, name="transmission", n_energies=e.size, allow_nonfinite=True)
    m = check_image_mask(mask, t.shape[1:], hint=" Use e.g. significant_mask(...).mask or fit.mask.",
                         required=True)
    _check_test_options(smooth_px, false_flag_rate, noise_sigma_px, min_relative_residual)
    empty = _empty_candidates(empty_field, m)
    refs = references if _is_spectra_array(references) else list(references)
    fit, model, k, idx, test, res = _fitted_residuals(t, e, refs, m, mode, shift_eV, energy_window_eV,
                                                      relative_window_eV, check_kind=True)
    tested = fit.mask
    pairs = (tested[1:] & tested[:-1]).any() or (tested[:, 1:] & tested[:, :-1]).any()
    if not pairs:
        raise ValueError(f"the mask holds {int(tested.sum())} fitted pixel(s) and no two neighbours: the "
                         "noise is measured between neighbouring pixels, so there is nothing to test. Pass "
                         "the sample mask (e.g. significant_mask(...).mask) with finite values > 0 in it.")
    dof = int(test.sum())
    step = np.nan_to_num(np.asarray(fit.edge_step, dtype=np.float64))
    pooled = _gaussian_kernel(smooth_px).size > 1
    rate = false_flag_rate / 2 if pooled else false_flag_rate   # two tests per pixel: union bound
    out = _pooled_chi2(res, smooth_px, noise_sigma_px)
    threshold, _ = _threshold(out.chi, tested, dof, rate)
    outliers = tested & (out.chi_pixel > _threshold(out.chi_pixel, tested, dof, rate)[0]) if pooled else None
    edged, edged_pooled = _significant_step(t, idx, model, k, out.n2 / dof, tested, smooth_px)
    typical = tested & edged & (out.chi <= threshold) & (step > 0.5 * np.median(step[tested]))
    if outliers is not None:
        typical &= ~outliers
    learn = common_residual and typical.sum() >= _MIN_TYPICAL    # the sample's own shared misfit
    if learn or outliers is not None:
        out = _pooled_chi2(res, smooth_px, noise_sigma_px, typical=typical if learn else None, step=step,
                           outliers=outliers)
    threshold, null_scale = _threshold(out.chi, tested, dof, rate)
    pixel_threshold, _ = _threshold(out.chi_pixel, tested, dof, rate)
    relative = _relative(out.excess, step, tested, smooth_px, dof)
    floor, pixel_floor, n_empty = _empty_field_floors(t, e, refs, empty, mode, shift_eV,
                                                      energy_window_eV, relative_window_eV, smooth_px,
                                                      noise_sigma_px)
    flags = (edged_pooled & (out.chi > threshold) & (relative > min_relative_residual)
             & (_unexplained_rms(out.excess, dof) > floor))
    if pooled:
        alone = _relative(out.r2 - out.n2, step, tested, 0.0, dof)
        flags |= (edged & (out.chi_pixel > pixel_threshold) & (alone > min_relative_residual)
                  & (_unexplained_rms(out.r2 - out.n2, dof) > pixel_floor))
    n_none = int((tested & ~edged_pooled).sum())
    if n_none > _NO_EDGE_WARN_SHARE * tested.sum():
        warnings.warn(f"{n_none} of {int(tested.sum())} mask pixels have no significant edge step, not even "
                      "pooled over their neighbourhood (empty field, or no element there): there is no "
                      "spectrum of the element for the references to explain, and they are never flagged. "
                      "Pass the sample mask (e.g. significant_mask(...).mask) to test the sample alone.",
                      UserWarning, stacklevel=2)
    return UnexplainedPixels(
        flags=flags, statistic=np.where(tested, out.chi, np.nan), threshold=threshold,
        pixel_statistic=np.where(tested, out.chi_pixel, np.nan), pixel_threshold=pixel_threshold,
        null_scale=null_scale, dof=dof, false_flag_rate=float(false_flag_rate), smooth_px=float(smooth_px),
        relative_residual=relative, min_relative_residual=float(min_relative_residual),
        residual_rms=np.where(tested, np.sqrt(out.r2 / dof), np.nan),
        noise_rms=np.where(tested, np.sqrt(out.n2 / dof), np.nan), mask=tested,
        energies_eV=fit.energies_eV[test], common_residual=out.common, mode=mode,
        shift_eV=float(fit.shift_eV), edge_step_significant=edged, empty_field_floor=floor,
        empty_field_pixel_floor=pixel_floor, n_empty_field=n_empty)


def _fitted_residuals(t, e, refs, mask, mode, shift_eV, energy_window_eV, relative_window_eV, *,
                      check_kind: bool = False) -> tuple:
    """Fit the pixels of ``mask`` and return (fit, model, K, fitted indices, test selection, residuals)."""
    zeros = [0.0] * len(refs)  # the residual does not depend on the references' oxidation states
    fit = fit_references(t, e, refs, mask=mask, mode=mode, shift_eV=shift_eV,
                         energy_window_eV=energy_window_eV, oxidation_states=zeros, input_kind="transmission")
    idx = np.flatnonzero(np.isin(e, fit.energies_eV))
    basis, _, _ = _reference_basis(refs, fit.energies_eV, e, idx, shift_eV=fit.shift_eV, names=None,
                                   oxidation_states=zeros, window=fit.energy_window_eV)
    model = build_model(fit.energies_eV, basis, background=fit.background)
    if check_kind:
        _refuse_absorbance_as_transmission(t, idx, fit.mask, model, basis.shape[0])
    test = _test_energies(fit.energies_eV, refs, relative_window_eV, fit.shift_eV)
    coef = np.nan_to_num(np.asarray(fit.coefficients, dtype=np.float64))
    return fit, model, basis.shape[0], idx, test, _Residuals(t, idx[test], model.matrix[test], coef, fit.mask)


def _empty_candidates(empty_field, mask: np.ndarray) -> np.ndarray | None:
    """Return the pixels ``empty_field`` names ("auto": farther than ``_EMPTY_MARGIN_PX`` from ``mask``)."""
    if empty_field is None:
        return None
    if isinstance(empty_field, str):
        if empty_field != "auto":
            raise ValueError(f"empty_field must be 'auto', a (Y, X) bool map or None; got {empty_field!r}.")
        return ~ndimage.binary_dilation(mask, iterations=_EMPTY_MARGIN_PX)
    return check_image_mask(empty_field, mask.shape, name="empty_field") & ~mask


def _empty_field_floors(t, e, refs, candidates, mode, shift_eV, energy_window_eV, relative_window_eV,
                        smooth_px, noise_sigma_px) -> tuple[float, float, int]:
    """Floors of the unexplained signal (pooled, own) from the empty field, and its pixel count.

    The ``candidates`` (:func:`_empty_candidates`) are fitted and tested as the sample is (the
    fit leaves out pixels without finite transmission > 0); those without a significant edge
    step set the floors, the
    :data:`EMPTY_FIELD_QUANTILE` quantiles of their unexplained signal. (0, 0, n) with fewer
    than ``_MIN_EMPTY`` pixels, or without candidates.
    """
    if candidates is None:
        return 0.0, 0.0, 0
    if candidates.sum() < _MIN_EMPTY:
        return 0.0, 0.0, int(candidates.sum())
    fit, model, k, idx, test, res = _fitted_residuals(t, e, refs, candidates, mode, shift_eV,
                                                      energy_window_eV, relative_window_eV)
    dof = int(test.sum())
    out = _pooled_chi2(res, smooth_px, noise_sigma_px)
    edged, edged_pooled = _significant_step(t, idx, model, k, out.n2 / dof, fit.mask, smooth_px)
    empty = fit.mask & ~edged & ~edged_pooled
    if empty.sum() < _MIN_EMPTY:
        return 0.0, 0.0, int(empty.sum())
    q = EMPTY_FIELD_QUANTILE
    return (float(np.quantile(_unexplained_rms(out.excess, dof)[empty], q)),
            float(np.quantile(_unexplained_rms(out.r2 - out.n2, dof)[empty], q)), int(empty.sum()))


def mark_unexplained(fit: ReferenceFit, unexplained) -> ReferenceFit:
    """Report the flagged pixels of a fit as not determined.

    Parameters
    ----------
    fit : ReferenceFit
        From :func:`fit_references`; not modified.
    unexplained : UnexplainedPixels or array_like of bool
        The test (:func:`unexplained_pixels`) or (Y, X) flags.

    Returns
    -------
    ReferenceFit
        A copy whose oxidation state, fractions and their standard deviations are NaN at the
        flagged pixels, with ``unexplained`` (the flags, inside ``fit.mask``) and
        ``unexplained_test`` (the test's attributes, None for bare flags) set; the coefficients,
        edge step and residual stay as fitted.

    Raises
    ------
    TypeError
        If ``fit`` is not a ReferenceFit.
    ValueError
        If the flags are not a boolean map of the fit's (Y, X) shape.
    """
    if not isinstance(fit, ReferenceFit):
        raise TypeError(f"fit must be a ReferenceFit (from fit_references); got {type(fit).__name__}.")
    attrs = unexplained.to_attrs() if isinstance(unexplained, UnexplainedPixels) else None
    flags = unexplained.flags if isinstance(unexplained, UnexplainedPixels) else unexplained
    flags = check_image_mask(flags, fit.mask.shape, name="the flags", required=True,
                             hint=" Pass unexplained_pixels(...) or its .flags.") & fit.mask

    def blank(a):
        return np.where(flags, np.nan, a).astype(a.dtype, copy=False)

    return dataclasses.replace(
        fit, oxidation_state=blank(fit.oxidation_state), oxidation_state_std=blank(fit.oxidation_state_std),
        fractions=blank(fit.fractions), fractions_std=blank(fit.fractions_std), unexplained=flags,
        unexplained_test=attrs)


def _check_test_options(smooth_px, false_flag_rate, noise_sigma_px, min_relative_residual) -> None:
    """Check the numeric options of :func:`unexplained_pixels`."""
    if not (np.isfinite(smooth_px) and smooth_px >= 0):
        raise ValueError(f"smooth_px must be a finite number >= 0 (pixels; 0: no pooling); got {smooth_px}.")
    if not (np.isfinite(noise_sigma_px) and noise_sigma_px > 0):
        raise ValueError(f"noise_sigma_px must be a finite number > 0 (pixels); got {noise_sigma_px}.")
    if not (np.isfinite(min_relative_residual) and min_relative_residual >= 0):
        raise ValueError(f"min_relative_residual must be a finite number >= 0 (share of the edge step); got "
                         f"{min_relative_residual}.")
    if not 0.0 < false_flag_rate < 0.5:
        raise ValueError(f"false_flag_rate must lie in (0, 0.5), e.g. 1e-3; got {false_flag_rate}.")
