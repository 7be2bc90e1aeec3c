"""Accuracy of maps against ground truth (simulated files only)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from ..alignment import apply_alignment, register_stack

__all__ = [
    "oxidation_state_metrics", "boundary_mask", "background_error", "roc_auc", "matched_negatives",
    "truth_in_frame", "aligned_like_notebook04",
]


def oxidation_state_metrics(estimate, std, truth, mask) -> dict:
    """RMSE, bias and 2-sigma coverage of an oxidation-state map inside a mask.

    Parameters
    ----------
    estimate, std : array_like
        (Y, X) estimated oxidation state and its standard deviation (NaN where not fitted).
    truth : array_like
        (Y, X) true oxidation state (NaN outside the sample).
    mask : array_like of bool
        (Y, X) pixels to score; pixels where any input is NaN are left out and counted.

    Returns
    -------
    dict
        ``rmse``, ``bias`` (mean of estimate - truth), ``coverage_2sigma`` (share of pixels
        with ``|estimate - truth| <= 2 std``), ``n_pixels`` scored and ``n_missing`` (in the
        mask but NaN).

    Examples
    --------
    >>> m = oxidation_state_metrics([[2.1, 2.9]], [[0.1, 0.1]], [[2.0, 3.0]], [[True, True]])
    >>> round(m["rmse"], 3), round(m["bias"], 3), m["coverage_2sigma"]
    (0.1, 0.0, 1.0)
    """
    est, sd, tru = (np.asarray(a, dtype=np.float64) for a in (estimate, std, truth))
    m = np.asarray(mask, dtype=bool)
    if not (est.shape == sd.shape == tru.shape == m.shape):
        raise ValueError(f"shapes differ: estimate {est.shape}, std {sd.shape}, truth {tru.shape}, "
                         f"mask {m.shape}; all must be the same (Y, X).")
    ok = m & np.isfinite(est) & np.isfinite(sd) & np.isfinite(tru)
    err = est[ok] - tru[ok]
    if err.size == 0:
        return dict(rmse=np.nan, bias=np.nan, coverage_2sigma=np.nan, n_pixels=0, n_missing=int(m.sum()))
    return dict(rmse=float(np.sqrt(np.mean(err ** 2))), bias=float(err.mean()),
                coverage_2sigma=float(np.mean(np.abs(err) <= 2 * sd[ok])),
                n_pixels=int(ok.sum()), n_missing=int((m & ~ok).sum()))


def boundary_mask(mask, state, *, width: int = 3, jump: float = 0.1) -> np.ndarray:
    """Pixels within ``width`` pixels of a particle edge or of a chemical boundary.

    Parameters
    ----------
    mask : array_like of bool
        (Y, X) sample mask.
    state : array_like
        (Y, X) true oxidation state (NaN outside the sample).
    width : int
        Distance in pixels.
    jump : float
        A chemical boundary lies between neighbouring sample pixels whose states differ by
        more than ``jump``.

    Returns
    -------
    numpy.ndarray
        (Y, X) bool.

    Examples
    --------
    >>> m = np.zeros((9, 9), bool); m[1:8, 1:8] = True
    >>> b = boundary_mask(m, np.where(m, 3.0, np.nan), width=1)
    >>> int(b[4, 4]), int(b[1, 4])
    (0, 1)
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2 or np.shape(state) != m.shape:
        raise ValueError(f"mask {m.shape} and state {np.shape(state)} must be (Y, X) maps of one shape.")
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 0:
        raise ValueError(f"width must be an integer >= 0 (pixels); got {width!r}.")
    s = np.where(m, np.asarray(state, float), np.nan)
    edge = m & ~ndimage.binary_erosion(m, border_value=0)
    chem = np.zeros_like(m)
    for axis in (0, 1):
        d = np.abs(np.diff(s, axis=axis)) > jump  # NaN compares False
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        chem[tuple(lo)] |= d
        chem[tuple(hi)] |= d
    seeds = edge | chem
    if width > 0:
        seeds = ndimage.binary_dilation(seeds, iterations=width)
    return seeds & m


def background_error(estimate, truth, mask) -> dict:
    """RMS error of a background estimate inside and outside the sample, and vs no correction.

    Parameters
    ----------
    estimate, truth : array_like
        (E, Y, X) estimated and true multiplicative background B.
    mask : array_like of bool
        (Y, X) sample mask.

    Returns
    -------
    dict
        ``background_rms_inside``, ``background_rms_outside``, and the ratios to the error of
        assuming ``B = 1`` (``background_ratio_inside``, ``background_ratio_outside``).
    """
    est, tru = np.asarray(estimate, np.float64), np.asarray(truth, np.float64)
    if est.shape != tru.shape:
        raise ValueError(f"background shapes differ: estimate {est.shape}, truth {tru.shape}.")
    m = np.asarray(mask, bool)
    out = {}
    for name, sel in (("inside", m), ("outside", ~m)):
        if not sel.any():
            out[f"background_rms_{name}"] = out[f"background_ratio_{name}"] = float("nan")
            continue
        err = np.sqrt(np.mean((est[:, sel] - tru[:, sel]) ** 2))
        none = np.sqrt(np.mean((tru[:, sel] - 1.0) ** 2))
        out[f"background_rms_{name}"] = float(err)
        out[f"background_ratio_{name}"] = float(err / none) if none > 0 else float("nan")
    return out


def roc_auc(scores, positives, negatives) -> float:
    """Area under the ROC curve of ``scores`` separating two sets of pixels.

    The Mann-Whitney statistic: the probability that a positive pixel scores higher than a
    negative one (ties count one half). 1 is perfect separation, 0.5 is chance.

    Examples
    --------
    >>> roc_auc([1.0, 2.0, 3.0, 4.0], [False, False, True, True], [True, True, False, False])
    1.0
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    shapes = [np.shape(m) for m in (positives, negatives)]
    if any(shape != s.shape for shape in shapes):
        raise ValueError(f"scores {s.shape} and the masks {shapes[0]}, {shapes[1]} must have the same shape.")
    pos, neg = (np.asarray(m, dtype=bool) & np.isfinite(s) for m in (positives, negatives))
    if (pos & neg).any():
        raise ValueError(f"{int((pos & neg).sum())} pixel(s) are both positive and negative; the two sets "
                         "must not overlap (e.g. negatives = mask & ~positives).")
    n_p, n_n = int(pos.sum()), int(neg.sum())
    if n_p == 0 or n_n == 0:
        raise ValueError(f"need positive and negative pixels; got {n_p} and {n_n}.")
    ranks = rankdata(np.concatenate([s[pos], s[neg]]))
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


def matched_negatives(amount, positives, candidates, *, quantiles=(0.1, 0.9)) -> np.ndarray:
    """Candidate pixels whose ``amount`` (e.g. areal density) lies in the positives' range.

    The range is given by the ``quantiles`` of ``amount`` over the positives, so that a score
    that merely grows with thickness cannot separate the two sets.
    """
    x = np.asarray(amount, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    if not pos.any():
        raise ValueError("no positive pixel to match.")
    lo, hi = np.quantile(x[pos], quantiles)
    return np.asarray(candidates, dtype=bool) & ~pos & (x >= lo) & (x <= hi)


def truth_in_frame(truth, reference_index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move the truth maps of a (drifting) simulated stack into the frame of one of its images.

    An aligned stack lies on the grid of its reference image, which sees the maps moved by
    ``drift_origin_px + drift_px[reference_index]`` (zero for a stack without drift). The
    oxidation state is moved as the simulator moves the absorbance: the ratio of the cubic-
    spline shifts of ``areal_density x state`` and of ``areal_density`` over the pixels with a
    state; the masks are moved by the nearest pixel.

    Parameters
    ----------
    truth : xanes_lib.io.GroundTruth
    reference_index : int
        The image whose frame is wanted (``Alignment.reference_index``).

    Returns
    -------
    state : numpy.ndarray
        (Y, X) oxidation state, NaN where there is none.
    mask : numpy.ndarray
        (Y, X) bool sample mask.
    foreign : numpy.ndarray
        (Y, X) bool phase outside the references (all False when the truth has none).
    """
    offset = np.zeros(2)
    if truth.drift_px is not None:
        offset = offset + np.asarray(truth.drift_px[reference_index], dtype=np.float64)
    if getattr(truth, "drift_origin_px", None) is not None:
        offset = offset + np.asarray(truth.drift_origin_px, dtype=np.float64)
    foreign = np.zeros(truth.mask.shape, bool) if truth.foreign_mask is None else truth.foreign_mask
    rho = np.asarray(truth.areal_density, dtype=np.float64)
    valid = truth.mask & np.isfinite(truth.oxidation_state)
    num, den = rho * np.where(valid, truth.oxidation_state, 0.0), rho * valid
    mask = truth.mask
    if np.any(offset != 0):
        def move(a, order):
            return ndimage.shift(a, offset, order=order, mode="grid-constant", cval=0)

        num, den = move(num, 3), move(den, 3)
        mask, foreign = move(mask.astype(np.uint8), 0) > 0, move(foreign.astype(np.uint8), 0) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        state = np.where(den > 0, num / den, np.nan)
    if np.any(offset != 0) and valid.any():
        # A moved pixel mixes its neighbours' states with positive weights, so its state lies
        # within theirs; the spline's ringing at sharp density steps (small ``den``) does not.
        state = np.clip(state, truth.oxidation_state[valid].min(), truth.oxidation_state[valid].max())
    return state, mask, foreign


def aligned_like_notebook04(stack, truth):
    """Return the stack and its truth as notebook 04 maps them: aligned where registration finds drift.

    Notebook 04 registers every stack across energies (``align=True``) and aligns one whose
    images drift; a score of a drifting stack taken without it measures what no user of the
    tool sees (a sub-pixel drift of the strong absorbance of the other elements leaves
    artefacts larger than a dilute element's edge). The stack is registered
    (:func:`xanes_lib.alignment.register_stack`); when drift is detected the images and the
    truth's noise-free transmission and background are moved onto the reference image's grid
    (:func:`xanes_lib.alignment.apply_alignment`), the state and masks with
    :func:`truth_in_frame`, and the mask is limited to the field every image covers. Unlike
    notebook 04 the beam background is not divided out before aligning: each pipeline scored
    on the stack removes it (or not) itself.

    Parameters
    ----------
    stack : xanes_lib.io.Stack
        A simulated stack (not modified).
    truth : xanes_lib.io.GroundTruth
        Its ground truth (not modified).

    Returns
    -------
    stack, truth
        The aligned stack and the truth in its frame (the inputs themselves without drift).
        The truth's ``areal_density`` stays in the maps' frame and its drift is set to zero.
    dict
        ``drift_detected``, ``reference_index`` and ``max_shift_px`` of the registration, and
        ``common_mask``: the (Y, X) field every aligned image covers (all True without drift;
        notebook 04 passes it to the denoiser as ``field``; an array, not for JSON).
    """
    fit = register_stack(stack.transmission, stack.energies_eV)
    info = {"drift_detected": bool(fit.info.get("drift_detected", False)),
            "reference_index": int(fit.reference_index),
            "max_shift_px": float(np.abs(fit.shifts_px).max())}
    if not info["drift_detected"]:
        return stack, truth, {**info, "common_mask": np.ones(stack.transmission.shape[1:], bool)}
    aligned = apply_alignment(stack.transmission, fit)
    info["common_mask"] = aligned.common_mask
    state, mask, foreign = truth_in_frame(truth, fit.reference_index)
    mask &= aligned.common_mask

    def moved(a):
        return apply_alignment(np.asarray(a, np.float32), fit).transmission

    truth_al = replace(truth, transmission=moved(truth.transmission), background=moved(truth.background),
                       oxidation_state=np.where(mask, state, np.nan), mask=mask,
                       foreign_mask=None if truth.foreign_mask is None else foreign & mask,
                       drift_px=np.zeros_like(truth.drift_px), drift_origin_px=None)
    return replace(stack, transmission=aligned.transmission), truth_al, info
