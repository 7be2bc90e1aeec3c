"""Registration across energies: one sub-pixel translation per image of a XANES stack.

Plain cross-correlation of transmission images is fooled by the contrast change across
the edge (the sample absorbs much more above it) and by photon noise. Here every image is
turned into an edge-enhanced feature image first: the Gaussian-smoothed transmission is
converted to absorbance ``-ln T`` (linear in thickness on both sides of the edge), and a
band-pass (difference of Gaussians; or its gradient magnitude) picks out particle boundaries,
which do not move with energy, while the smooth beam background drops out. Feature images
are zero-mean, unit-norm and tapered at the border, so their correlation peak height is a
normalised cross-correlation (the confidence of a shift). The standard error of each shift
comes from the curvature of the correlation peak and the residual's spectrum; a stack drifts
when its shifts scatter beyond those errors and wander together from image to image
(chi-square and von Neumann's serial test, :func:`drift_test`).

Schedules (``method``):

- ``"template"`` (default): anchor every image to the reference image, then re-register
  every image to the mean of all the other aligned images (a leave-one-out template with
  ``sqrt(E)`` less noise than one image), a few times;
- ``"anchored"``: every image against the reference image only;
- ``"chained"``: every image against its neighbour towards the reference (the most similar
  image), the steps accumulated; the accumulated drift is checked against the anchored
  estimates and its slow walk-off (the smoothed difference) removed.

Large images are binned first (``bin_factor``); shifts are always in pixels of the input.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy import ndimage, special

from ..validate import check_energies, check_image_mask, check_stack, refuse_kev
from ._correlation import (
    FEATURES,
    bin_image,
    correlation_peak,
    feature_spectrum,
    norm2,
    shift_phase,
    shift_std,
)
from ._correlation import taper as _taper
from .shifts import Alignment, common_field, shift_image

__all__ = [
    "METHODS", "FEATURES", "MAX_BINNED_SIZE", "POST_EDGE_OFFSET_EV", "RELATIVE_CONFIDENCE",
    "NULL_CONFIDENCE_FACTOR", "DRIFT_TOLERANCE_PX", "MIN_REFINE_PX", "register_stack", "choose_reference",
    "drift_test", "drift_rejected",
]

#: Registration schedules of :func:`register_stack`.
METHODS = ("template", "anchored", "chained")
#: Automatic binning keeps the longer side of the registered images at most this long.
MAX_BINNED_SIZE = 1024
#: Automatic reference: the first image at least this far above the edge (eV).
POST_EDGE_OFFSET_EV = 30.0
#: Scatter of the shifts (px) that the test of "no drift" treats as none (see :func:`drift_test`).
DRIFT_TOLERANCE_PX = 0.05
#: The pass in the reference frame (``refine``) needs the field all moved images cover to be at
#: least this many (binned) pixels on each side.
MIN_REFINE_PX = 16
#: Automatic flagging threshold: this share of the median confidence.
RELATIVE_CONFIDENCE = 0.5
#: A stack whose median confidence is below this many times the null confidence (what an image
#: sharing no features with the reference reaches) has no features to register.
NULL_CONFIDENCE_FACTOR = 1.3
_NULL_IMAGES = 8                   # images correlated with the reference's surrogate for the null


def choose_reference(mean_absorbance, energies_eV) -> int:
    """Pick a post-edge reference image: the first at least 30 eV above the steepest rise.

    Parameters
    ----------
    mean_absorbance : array_like, shape (E,)
        Mean absorbance ``-ln T`` of each image.
    energies_eV : array_like, shape (E,)
        Energies (eV), increasing.

    Returns
    -------
    int
        Index of the reference image: the first energy at least :data:`POST_EDGE_OFFSET_EV`
        above the steepest rise of the mean absorbance (the edge), or the image of highest
        mean absorbance when the stack ends earlier.

    Examples
    --------
    >>> choose_reference([0.1, 0.1, 0.5, 0.6, 0.6, 0.6], [8300, 8320, 8340, 8360, 8380, 8400])
    3
    """
    a = np.asarray(mean_absorbance, dtype=np.float64)
    e = np.asarray(energies_eV, dtype=np.float64)
    if a.size < 2:
        return 0
    rise = np.diff(a) / np.diff(e)
    edge = 0.5 * (e[int(np.argmax(rise))] + e[int(np.argmax(rise)) + 1])
    after = np.flatnonzero(e >= edge + POST_EDGE_OFFSET_EV)
    return int(after[0]) if after.size else int(np.argmax(a))


def _is_int(value, lo: int, hi: float = math.inf) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | np.integer) and lo <= value <= hi)


def _check_options(method, features, upsample, sigma_px, max_shift_px, min_confidence, iterations,
                   walkoff_window, significance, drift_tolerance_px, refine) -> None:
    """Validate the options of :func:`register_stack` that do not depend on the stack."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}; got {features!r}.")
    for name, value in (("upsample", upsample), ("iterations", iterations)):
        if not _is_int(value, 1):
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if not _is_int(refine, 0):
        raise ValueError(f"refine must be an integer >= 0 (passes in the reference frame); got {refine!r}.")
    if not (isinstance(drift_tolerance_px, int | float) and math.isfinite(drift_tolerance_px)
            and drift_tolerance_px >= 0):
        raise ValueError(f"drift_tolerance_px must be a finite number >= 0; got {drift_tolerance_px!r}.")
    for name, value in (("sigma_px", sigma_px), ("max_shift_px", max_shift_px)):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be None (automatic) or a finite number >= 0; got {value!r}.")
    if min_confidence is not None and not (isinstance(min_confidence, int | float)
                                           and -1.0 <= min_confidence <= 1.0):
        raise ValueError(f"min_confidence must be None (automatic) or a number in [-1, 1]; "
                         f"got {min_confidence!r}.")
    if not (isinstance(walkoff_window, int | float) and math.isfinite(walkoff_window) and walkoff_window > 0):
        raise ValueError(f"walkoff_window must be a positive number of images; got {walkoff_window!r}.")
    if significance is not None and not (isinstance(significance, int | float) and 0 < significance < 1):
        raise ValueError(f"significance must be None (no test) or a number in (0, 1); got {significance!r}.")


def _check_inputs(transmission, energies_eV, reference_index, mask, bin_factor):
    """Validate the data of :func:`register_stack`; return the stack, energies and mask."""
    stack = check_stack(transmission, name="transmission")
    if not (np.issubdtype(stack.dtype, np.floating) or np.issubdtype(stack.dtype, np.integer)):
        raise ValueError(f"transmission must hold real numbers; got dtype {stack.dtype}.")
    n_e = stack.shape[0]
    if n_e < 2:
        raise ValueError(f"registration needs at least 2 images; got {n_e}.")
    energies = check_energies(energies_eV, name="energies_eV", min_points=1)
    refuse_kev(energies, name="energies_eV",
               context=f"The reference image is picked {POST_EDGE_OFFSET_EV:g} eV above the edge.")
    if energies.size != n_e:
        raise ValueError(f"energies_eV has {energies.size} values but transmission has {n_e} images; "
                         "pass one energy per image.")
    if reference_index is not None and not _is_int(reference_index, 0, n_e - 1):
        raise ValueError(f"reference_index must be an integer in [0, {n_e - 1}] or None (automatic); "
                         f"got {reference_index!r}.")
    top = max(min(stack.shape[1:]) // 8, 1)
    if bin_factor is not None and not _is_int(bin_factor, 1, top):
        raise ValueError(f"bin_factor must be None (automatic) or an integer in [1, {top}] (binned images "
                         f"keep >= 8 pixels a side); got {bin_factor!r}.")
    region = check_image_mask(mask, stack.shape[1:])
    if region is not None:
        if region.sum() < 64:
            raise ValueError(f"mask selects {int(region.sum())} pixels; registration needs at least 64 "
                             "(a region a few particles wide).")
    return stack, energies, region


class _Features:
    """Spectra of the feature images of a stack, with the geometry they were made at."""

    def __init__(self, stack, region, *, bin_factor, sigma, kind, moved_by=None):
        box = (slice(None), slice(None))
        if region is not None:
            rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
            box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        self.factor = bin_factor
        first = bin_image(stack[0][box], bin_factor)
        self.shape = first.shape
        # moved_by (E, 2), binned px: every image is first moved into the reference frame, and
        # the taper is laid over the field that all moved images cover, so that it sits on the
        # same scene in every image. A taper fixed on the detector instead stays put while the
        # scene moves, and pulls each shift towards zero by 1-3 % of itself.
        self.moved_by = None if moved_by is None else np.asarray(moved_by, dtype=np.float64)
        if self.moved_by is None:
            window = _taper(self.shape)
        else:
            crop, _ = common_field(self.moved_by, self.shape)
            window = np.zeros(self.shape, np.float32)
            window[crop] = _taper(window[crop].shape)
        if region is not None:
            soft = ndimage.gaussian_filter(bin_image(region[box].astype(np.float32), bin_factor), 2.0)
            window = window * soft
        n_e = stack.shape[0]
        self.spectra = np.empty((n_e, self.shape[0], self.shape[1] // 2 + 1), np.complex64)
        self.mean_absorbance = np.empty(n_e)
        self.constant = {}                 # image -> its one value: no features
        self.at_bound = np.zeros(n_e, bool)  # the last registration's peak lay on the search limit
        for e in range(n_e):
            image = first if e == 0 else bin_image(stack[e][box], bin_factor)
            if self.moved_by is not None:
                image = shift_image(image, self.moved_by[e])
            lo, hi = float(np.min(image)), float(np.max(image))
            if lo == hi:
                self.constant[e] = lo
                continue
            self.mean_absorbance[e] = -np.log(max(float(image.mean(dtype=np.float64)), 1e-3))
            self.spectra[e] = feature_spectrum(image, sigma=sigma, kind=kind, window=window)

    def register(self, e, template, *, upsample, max_shift, template_norm=1.0, with_std=True):
        """Displacement of image ``e`` relative to ``template`` (binned px), its NCC and standard error."""
        shift, height = correlation_peak(self.spectra[e] * np.conj(template), self.shape,
                                         upsample=upsample, max_shift=max_shift)
        limit = np.floor(max_shift)
        self.at_bound[e] = bool(np.any((np.abs(np.round(shift)) >= limit) & (limit > 0)))
        std = shift_std(self.spectra[e], template, shift, self.shape) if with_std else None
        return shift, height / max(template_norm, 1e-12), std

    def null_confidence(self, ref, *, max_shift) -> float:
        """Confidence that an image sharing no features with the reference reaches by chance.

        The highest correlation peak of a few images with a surrogate of the reference: its
        spectrum with random phases (fixed seed), which keeps its power spectrum (feature
        sizes, smoothness) and places no feature where the reference has one.
        """
        n_e = self.spectra.shape[0]
        spread = np.unique(np.linspace(0, n_e - 1, _NULL_IMAGES + 1).round().astype(int))
        others = [e for e in spread if e != ref][:_NULL_IMAGES]
        phases = np.random.default_rng(0).random(self.spectra[ref].shape)
        surrogate = self.spectra[ref] * np.exp(2j * np.pi * phases).astype(np.complex64)
        return max(correlation_peak(self.spectra[e] * np.conj(surrogate), self.shape, upsample=1,
                                    max_shift=max_shift)[1] for e in others)


def _interpolate_flagged(shifts: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Replace the shifts of flagged images by linear interpolation between the good ones."""
    good = np.flatnonzero(~flagged)
    if good.size == 0 or good.size == flagged.size:
        return shifts
    idx = np.arange(shifts.shape[0])
    return np.stack([np.interp(idx, good, shifts[good, a]) for a in range(2)], axis=1)


def _threshold(confidence: np.ndarray, min_confidence) -> float:
    if min_confidence is not None:
        return float(min_confidence)
    return RELATIVE_CONFIDENCE * float(np.median(confidence))


def _flags(conf, min_confidence, at_bound, ref) -> tuple[np.ndarray, float]:
    """Flag images below the confidence threshold, or whose peak lay on the search limit."""
    threshold = _threshold(conf, min_confidence)
    flagged = (conf < threshold) | at_bound
    flagged[ref] = False
    return flagged, threshold


def _anchored(feats, ref, opts):
    """Every image against the reference image; standard errors of the pair."""
    n_e = feats.spectra.shape[0]
    shifts, conf, std = np.zeros((n_e, 2)), np.ones(n_e), np.zeros((n_e, 2))
    for e in range(n_e):
        if e != ref:
            shifts[e], conf[e], std[e] = feats.register(e, feats.spectra[ref], **opts)
    return shifts, conf, std


def _template(feats, ref, shifts, flagged, opts, iterations):
    """Re-register every image to the leave-one-out mean of the aligned others.

    Returns the shifts relative to the template (not yet to the reference), the confidence,
    the standard errors (the image's own: the template is nearly noise-free) and details.
    """
    n_e = feats.spectra.shape[0]
    conf, std = np.ones(n_e), np.zeros((n_e, 2))
    weights = (~flagged).astype(np.float32)
    info = {"iterations_run": 0, "last_update_px": None}
    for _ in range(iterations):
        aligned = np.empty_like(feats.spectra)
        for e in range(n_e):
            np.multiply(feats.spectra[e], shift_phase(feats.shape, -shifts[e]), out=aligned[e])
        total = np.zeros_like(aligned[0])
        for e in np.flatnonzero(weights):  # a loop, not a BLAS product (see _correlation)
            total += aligned[e]
        new = np.empty_like(shifts)
        for e in range(n_e):
            if weights.sum() - weights[e] <= 0:   # every other image flagged: nothing to register to
                new[e], conf[e] = shifts[e], 0.0
                continue
            others = float(weights.sum() - weights[e])
            template = (total - weights[e] * aligned[e]) / np.float32(others)
            norm = math.sqrt(norm2(template, feats.shape))
            new[e], conf[e], _ = feats.register(e, template, template_norm=norm, with_std=False, **opts)
        change = new - new[ref] - (shifts - shifts[ref])
        change = float(np.max(np.abs(change[~flagged]))) if (~flagged).any() else 0.0
        shifts = new
        info["iterations_run"] += 1
        info["last_update_px"] = change * feats.factor
        if change * feats.factor < 0.005:
            break
    for e in range(n_e):  # errors against the last templates (within the last update of the final ones)
        others = float(weights.sum() - weights[e])
        template = (total - weights[e] * aligned[e]) / np.float32(max(others, 1.0))
        std[e] = shift_std(feats.spectra[e], template, shifts[e], feats.shape) if others > 0 else np.nan
    return shifts, conf, std, info


def _chained(feats, ref, anchored, anchored_std, flagged_anchored, opts, walkoff_frames):
    """Accumulate neighbour-to-neighbour steps outward from ``ref``; remove the slow walk-off."""
    n_e = feats.spectra.shape[0]
    chain, conf, var = np.zeros((n_e, 2)), np.ones(n_e), np.zeros((n_e, 2))
    for order in (range(ref + 1, n_e), range(ref - 1, -1, -1)):
        last = ref
        for e in order:
            step, conf[e], step_std = feats.register(e, feats.spectra[last], **opts)
            chain[e] = chain[last] + step
            var[e] = var[last] + step_std ** 2
            if not flagged_anchored[e]:
                last = e
    good = ~flagged_anchored
    diff = np.where(good[:, None], chain - anchored, 0.0)
    weight = ndimage.gaussian_filter1d(good.astype(np.float64), walkoff_frames, mode="nearest")
    slow = ndimage.gaussian_filter1d(diff, walkoff_frames, axis=0, mode="nearest")
    slow /= np.maximum(weight, 1e-12)[:, None]
    slow -= slow[ref]
    info = {"walkoff_px": float(np.max(np.abs(slow))) * feats.factor,
            "walkoff_window_frames": float(walkoff_frames)}
    return chain - slow, conf, np.minimum(np.sqrt(var), anchored_std), info


def drift_test(shifts_px, own_std_px, *, use=None, tolerance_px: float = 0.0) -> dict:
    """Test "no drift": do the shifts scatter more than their errors allow, from image to image.

    Two statistics of the shifts' deviations from their weighted mean, each standardised by
    its error:

    - chi-square: their sum of squares (``p_value``); it relies on the errors being right;
    - von Neumann's ratio of the squared successive differences (in image order) to the
      sum of squares (``serial_p_value``, normal approximation, per axis, the smaller of
      the two doubled): about 2 for independent errors of any size, well below 2 when the
      shifts wander together from one image to the next, as a drifting stage makes them.
      It does not depend on the errors' scale.

    At low counts the linearised errors of weak features are too small (on still stacks of
    thin, dilute Co at 300-1000 photons, chi-square per degree of freedom 1.3-1.4), so a
    chi-square test alone found drift in stacks that had none. :func:`register_stack`
    reports drift when the chi-square and the serial test both reject, or when the
    chi-square still rejects with every error doubled (``p_value_doubled_errors``: a scatter
    that large is no error of the estimates, correlated or not).

    Parameters
    ----------
    shifts_px : array_like, shape (E, 2)
        Estimated shifts, all relative to one common (possibly unknown) origin.
    own_std_px : array_like, shape (E, 2)
        Standard error of each estimate that is independent between images (a common
        error of the origin cancels: the test uses deviations from the weighted mean).
    use : array_like of bool, shape (E,), optional
        Images that enter the test (default: all with a finite, positive error).
    tolerance_px : float
        Scatter treated as no drift, added in quadrature to every error: it covers the
        systematic part of the registration error (contrast changes across the edge, beam
        background) that the statistical errors leave out, and drift too small to matter.

    Returns
    -------
    dict
        ``chi2``, ``dof``, ``p_value`` (probability of so large a scatter without drift),
        ``p_value_doubled_errors`` (the same with every error doubled), ``von_neumann``
        (the ratio per axis) and ``serial_p_value`` (probability of so strong a correlation
        between successive images without drift; 1 with fewer than 4 images).

    Examples
    --------
    >>> drift_test([[0.0, 0.1], [0.1, 0.0], [0.05, 0.05]], np.full((3, 2), 0.1))["p_value"] > 0.5
    True
    >>> walk = np.stack([np.linspace(0.0, 2.0, 30), np.zeros(30)], axis=1)  # a steady drift
    >>> drift_test(walk, np.full((30, 2), 0.1))["serial_p_value"] < 1e-6
    True
    """
    s = np.asarray(shifts_px, dtype=np.float64)
    sd = np.hypot(np.asarray(own_std_px, dtype=np.float64), tolerance_px)
    ok = np.all(np.isfinite(sd) & (sd > 0), axis=1)
    if use is not None:
        ok &= np.asarray(use, dtype=bool)
    n = int(ok.sum())
    if n < 2:
        return {"chi2": 0.0, "dof": 0, "p_value": 1.0, "p_value_doubled_errors": 1.0,
                "von_neumann": [2.0, 2.0], "serial_p_value": 1.0}
    w = 1.0 / sd[ok] ** 2
    mean = np.sum(w * s[ok], axis=0) / np.sum(w, axis=0)
    r = (s[ok] - mean) * np.sqrt(w)          # standardised deviations, in image order
    chi2 = float(np.sum(r ** 2))
    dof = 2 * (n - 1)
    ratio, serial_p = [2.0, 2.0], 1.0
    if n >= 4:
        # von Neumann: E = 2, var = 4 (n - 2) / (n^2 - 1) for independent deviations
        ss = np.sum((r - r.mean(axis=0)) ** 2, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ss > 0, np.sum(np.diff(r, axis=0) ** 2, axis=0) / ss, 2.0)
        zs = (ratio - 2.0) / math.sqrt(4.0 * (n - 2) / (n * n - 1.0))
        serial_p = min(1.0, 2.0 * float(np.min(special.ndtr(zs))))
        ratio = ratio.tolist()
    return {"chi2": chi2, "dof": dof, "p_value": float(special.chdtrc(dof, chi2)),
            "p_value_doubled_errors": float(special.chdtrc(dof, chi2 / 4.0)),
            "von_neumann": ratio, "serial_p_value": serial_p}


def drift_rejected(test: dict, significance: float) -> bool:
    """Whether a :func:`drift_test` result rejects "no drift" at level ``significance``.

    The scatter must exceed the errors and wander together from image to image, or exceed
    twice the errors (see :func:`drift_test`).
    """
    wanders = test["p_value"] < significance and test["serial_p_value"] < significance
    return bool(wanders or test["p_value_doubled_errors"] < significance)


def _schedule(feats, ref, method, opts, *, min_confidence, null_floor, iterations, walkoff_window,
              tolerance_px, prior=None):
    """Run a schedule; shifts and errors relative to the reference image (binned px).

    A stack whose median confidence against the reference is below ``null_floor`` has no
    features: every image is flagged (``info["no_features"]``) and the schedule stops there.
    ``prior``: the shifts the images were moved by first (``feats.moved_by``); the returned
    shifts are what is left, and the test of "no drift" runs on their sum. (The template
    schedule starts from the anchored estimates also then: started from zero, its
    leave-one-out templates sit where the residual shifts put them, and with two images the
    iteration swings between twice the residual and none.)
    """
    shifts, conf, std = _anchored(feats, ref, opts)
    flagged, threshold = _flags(conf, min_confidence, feats.at_bound, ref)
    own, test_shifts, info = std / math.sqrt(2.0), shifts, {}
    no_features = bool(np.median(np.delete(conf, ref)) < null_floor)
    if no_features:
        flagged[:] = True
        flagged[ref] = False
    elif method == "template":
        test_shifts, conf, own, info = _template(feats, ref, shifts, flagged, opts, iterations)
        flagged, threshold = _flags(conf, min_confidence, feats.at_bound, ref)
        shifts = test_shifts - test_shifts[ref]
        std = np.sqrt(own ** 2 + own[ref] ** 2)
    elif method == "chained":
        shifts, conf, std, info = _chained(feats, ref, shifts, std, flagged, opts, walkoff_window)
    use = ~flagged
    if method != "template":
        use[ref] = False               # its "shift" is the origin itself, not an estimate
    total = test_shifts if prior is None else test_shifts + prior
    info["drift_test"] = drift_test(total, own, use=use, tolerance_px=tolerance_px / feats.factor)
    info["no_features"] = no_features
    conf[ref], std[ref] = 1.0, 0.0
    return shifts, conf, std, flagged, threshold, info


def _refuse_constant(constant: dict, energies, masked: bool) -> None:
    """Refuse a stack with constant images: they hold no features to register."""
    if not constant:
        return
    listed = ", ".join(f"{e} ({energies[e]:.2f} eV, every pixel {v:g})"
                       for e, v in list(constant.items())[:10])
    more = f" and {len(constant) - 10} more" if len(constant) > 10 else ""
    where = " inside the mask's bounding box" if masked else ""
    raise ValueError(f"{len(constant)} of {len(energies)} images are constant{where}, with no features to "
                     f"register: image(s) {listed}{more}. Leave them out (e.g. read_stack(..., "
                     "bad_frames='drop'), or np.delete(transmission, indices, axis=0) with their energies); "
                     "a stack without any features (an empty field) cannot be registered.")


def _warn_unregistered(no_features: bool, bound, conf, ref: int, null: float, limit_px: float) -> None:
    """Warn about images whose shift could not be measured (flagged; shifts interpolated or zero)."""
    if no_features:
        c = np.delete(conf, ref)
        warnings.warn(f"register_stack: the stack has no features to register (an empty field, or noise): "
                      f"the median confidence of its images against the reference is {np.median(c):.2f}, "
                      f"below {NULL_CONFIDENCE_FACTOR:g} x {null:.2f}, what an image sharing no features "
                      "with it reaches. Every image is flagged and no shift is applied. Register a region "
                      "with particles (mask=...) or a stack with less noise.", stacklevel=3)
        return
    idx = np.flatnonzero(bound)
    named = ", ".join(map(str, idx[:10])) + (f" and {idx.size - 10} more" if idx.size > 10 else "")
    warnings.warn(f"register_stack: {idx.size} image(s) found their correlation peak at the search limit of "
                  f"{limit_px:.3g} px (image(s) {named}): their shift is unknown, so they are flagged and "
                  "their shifts interpolated from their neighbours. Check them (a blank or very noisy "
                  "image), or pass a larger max_shift_px if the drift is larger.", stacklevel=3)


def register_stack(transmission, energies_eV, *, reference_index: int | None = None, mask=None,
                   method: str = "template", features: str = "bandpass", upsample: int = 20,
                   bin_factor: int | None = None, sigma_px: float | None = None,
                   max_shift_px: float | None = None, min_confidence: float | None = None,
                   iterations: int = 3, walkoff_window: float = 5.0,
                   significance: float | None = 0.01,
                   drift_tolerance_px: float = DRIFT_TOLERANCE_PX, refine: int = 1) -> Alignment:
    """Estimate a sub-pixel translation of every image of a stack relative to a reference image.

    Parameters
    ----------
    transmission : array_like, shape (E, Y, X)
        Flat-field corrected transmission (not modified).
    energies_eV : array_like, shape (E,)
        Energies (eV), strictly increasing; used to pick the reference automatically.
    reference_index : int or None
        Index of the reference image; None picks a post-edge image
        (:func:`choose_reference`), returned in the result.
    mask : numpy.ndarray of bool, shape (Y, X), optional
        Region used for the registration (for example a region of interest drawn on the
        reference image); its bounding box is registered, weighted by the smoothed mask.
    method : {"template", "anchored", "chained"}
        Schedule (see the module docstring).
    features : {"bandpass", "gradient"}
        Edge enhancement of the smoothed absorbance: a difference of Gaussians (default:
        linear, so photon noise stays zero-mean), or the gradient magnitude (insensitive to
        the sign of the contrast, but biased by noise at low counts: use ``sigma_px >= 1``).
    upsample : int
        Sub-pixel grid of the correlation peak: ``1/upsample`` of a (binned) pixel, refined
        by a parabola through the grid's neighbours.
    bin_factor : int or None
        Images are averaged over ``bin_factor`` x ``bin_factor`` blocks before registration;
        None chooses the smallest factor that keeps the longer side at most
        :data:`MAX_BINNED_SIZE` pixels.
    sigma_px : float or None
        Gaussian smoothing of the (binned) transmission in binned pixels; None: 1.0.
    max_shift_px : float or None
        Largest displacement searched (input pixels); None: a quarter of the field.
    min_confidence : float or None
        Images whose confidence is below it are flagged; None: half the median confidence.
        Images whose correlation peak lies on the search limit (``max_shift_px``) are flagged
        too, with a warning. Flagged images take shifts interpolated (in image index) between
        their unflagged neighbours, and do not enter the template or the chain.
    iterations : int
        Most template passes (``method="template"``); stops once no shift moves by 0.005 px.
    walkoff_window : float
        Gaussian width (in images) of the slow part of the chain's difference to the
        anchored estimates that is removed (``method="chained"``).
    significance : float or None
        Level of the test of "no drift" (:func:`drift_test` on the estimates and their
        standard errors, with :data:`DRIFT_TOLERANCE_PX` added in quadrature; decided by
        :func:`drift_rejected`): when the shifts scatter no more than their errors allow,
        or scatter from image to image independently by no more than twice that, no drift
        is detected and zero shifts are returned
        (the estimates are kept in ``info["estimated_shifts_px"]``), so that aligning a
        stack that does not drift changes nothing. None always returns the estimates.
    drift_tolerance_px : float
        Scatter of the shifts (px) that the test treats as no drift (see :func:`drift_test`).
    refine : int
        Passes of the schedule repeated on the images moved into the reference frame by the
        estimate so far (Fourier shift of the binned images), with the taper laid over the
        field they all cover: the taper then sits on the same scene in every image. Without
        it (``refine=0``) the taper stays on the detector while the scene moves, which pulls
        each shift towards zero by 1-3 % of itself (0.04-0.06 px RMS on noise-free stacks
        drifting by up to 5 px; one pass: 0.01-0.03 px). Skipped when that field is under
        :data:`MIN_REFINE_PX` binned pixels on a side.

    Returns
    -------
    Alignment
        ``shifts_px`` (E, 2): the displacement (dy, dx) of each image relative to the
        reference image (a feature at (y, x) in the reference is at (y + dy, x + dx) in image
        e; zero for the reference); ``confidence`` (E,): normalised cross-correlation of each
        image's features with what it was registered to (1 for the reference); ``flagged``;
        ``shift_std_px`` (E, 2): standard error of each shift relative to the reference,
        from the peak curvature and the residual's spectrum; ``reference_index``;
        ``method``; ``info`` with every choice made (bin factor, smoothing, threshold,
        iterations, walk-off, the drift test, ``null_confidence``, ``no_features``, time).

    Raises
    ------
    ValueError
        For a stack that is not (E, Y, X) finite numbers, energies that do not match or look
        like keV, an option out of range, or constant images (no features); the message names
        the value.

    Warns
    -----
    UserWarning
        When the stack has no features (an empty field, noise): the median confidence
        against the reference is below :data:`NULL_CONFIDENCE_FACTOR` times the null
        confidence (``info["null_confidence"]``: what the reference with its Fourier phases
        randomised, a scene with the same texture and no common feature, reaches); then every
        image is flagged, no shift is applied and ``info["no_features"]`` is True. Also when
        images are flagged for a peak on the search limit.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> scene = ndimage.gaussian_filter(rng.random((64, 64)), 2)
    >>> stack = np.exp(-np.stack([scene, ndimage.shift(scene, (1.5, -0.5), order=3, mode="nearest")]))
    >>> fit = register_stack(stack, [8330.0, 8400.0], reference_index=0)
    >>> np.round(fit.shifts_px[1], 1)
    array([ 1.5, -0.5])
    """
    start = time.perf_counter()
    _check_options(method, features, upsample, sigma_px, max_shift_px, min_confidence, iterations,
                   walkoff_window, significance, drift_tolerance_px, refine)
    stack, energies, region = _check_inputs(transmission, energies_eV, reference_index, mask, bin_factor)
    field = stack.shape[1:]
    if region is not None:
        field = tuple(int(np.ptp(np.flatnonzero(region.any(axis=a)))) + 1 for a in (1, 0))
    factor = int(bin_factor) if bin_factor is not None else max(1, math.ceil(max(field) / MAX_BINNED_SIZE))
    sigma = 1.0 if sigma_px is None else float(sigma_px)
    feats = _Features(stack, region, bin_factor=factor, sigma=sigma, kind=features)
    _refuse_constant(feats.constant, energies, region is not None)
    limit = (max_shift_px / factor if max_shift_px is not None else min(feats.shape) / 4.0)
    opts = {"upsample": int(upsample), "max_shift": (limit, limit)}
    ref = (choose_reference(feats.mean_absorbance, energies) if reference_index is None
           else int(reference_index))
    null = feats.null_confidence(ref, max_shift=opts["max_shift"])
    null_floor = NULL_CONFIDENCE_FACTOR * null

    options = {"min_confidence": min_confidence, "null_floor": null_floor, "iterations": int(iterations),
               "walkoff_window": float(walkoff_window), "tolerance_px": float(drift_tolerance_px)}
    shifts, conf, std, flagged, threshold, extra = _schedule(feats, ref, method, opts, **options)
    passes, update = 0, None
    while passes < refine and not extra["no_features"]:
        prior = _interpolate_flagged(shifts, flagged)
        prior = prior - prior[ref]
        crop, _ = common_field(prior, feats.shape)
        if min(crop[0].stop - crop[0].start, crop[1].stop - crop[1].start) < MIN_REFINE_PX:
            break
        feats = _Features(stack, region, bin_factor=factor, sigma=sigma, kind=features, moved_by=prior)
        residual, conf, std, flagged, threshold, extra = _schedule(feats, ref, method, opts, prior=prior,
                                                                   **options)
        shifts = prior + residual
        passes += 1
        update = float(np.max(np.abs(residual[~flagged]))) * factor if (~flagged).any() else 0.0
    info = {"bin_factor": factor, "sigma_px": sigma, "features": features, "upsample": int(upsample),
            "max_shift_px": limit * factor, "reference_rule": "given" if reference_index is not None
            else f"first image >= {POST_EDGE_OFFSET_EV:g} eV above the steepest rise of the mean absorbance",
            **extra, "refine_passes": passes, "refine_update_px": update,
            "confidence_threshold": threshold, "null_confidence": float(null)}
    for key in ("last_update_px", "walkoff_px"):
        if info.get(key) is not None:
            info[key] = float(info[key])
    bound = flagged & feats.at_bound
    if info["no_features"] or bound.any():
        _warn_unregistered(info["no_features"], bound, conf, ref, null, limit * factor)
    shifts = _interpolate_flagged(shifts * factor, flagged)
    shifts -= shifts[ref]
    std = std * factor
    test = info["drift_test"]
    info["drift_detected"] = ((significance is None or drift_rejected(test, significance))
                              and not info["no_features"])
    if not info["drift_detected"]:
        info["estimated_shifts_px"] = np.round(shifts, 4).tolist()
        shifts = np.zeros_like(shifts)
    info["significance"] = significance
    info["seconds"] = round(time.perf_counter() - start, 3)
    return Alignment(shifts_px=shifts, confidence=conf, reference_index=ref, method=method,
                     flagged=flagged, shift_std_px=std, info=info)
