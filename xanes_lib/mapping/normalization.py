"""Normalization of spectra: pre-edge line, post-edge line and edge step of every pixel.

One small least-squares matrix serves all pixels. Energies in eV, energies first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._arrays import PIXEL_BLOCK, _as_output, _check_window, _parabolic_peak, _spectra_array, _work_dtype
from ._input import KIND_SAMPLE_PIXELS, TRANSMISSION_MAX, _transmission_like

__all__ = [
    "PRE_EDGE_GAP_EV", "POST_EDGE_START_EV", "NormalizedSpectra", "normalize_spectra", "spectrum_sum",
    "mean_spectrum_e0",
]


#: Default bounds of the windows of :func:`normalize_spectra`, in eV relative to e0: the
#: pre-edge window ends this far below e0, the post-edge window starts this far above it.
PRE_EDGE_GAP_EV = -20.0
POST_EDGE_START_EV = 30.0


@dataclass(frozen=True, eq=False)
class NormalizedSpectra:
    """Result of :func:`normalize_spectra`.

    Attributes
    ----------
    normalized : numpy.ndarray
        (E, ...) ``(A - pre-edge line) / edge_step``: 0 before the edge, about 1 after it.
        NaN where the edge step is not positive (no edge: nothing to normalize).
    edge_step : numpy.ndarray or float
        (...) post-edge line minus pre-edge line at ``e0_eV`` (absorbance units).
    e0_eV : float
        Edge energy used for the step (eV), given or determined.
    relative_pre_window_eV, relative_post_window_eV : tuple of float
        Energy windows of the two lines, in eV relative to ``e0_eV`` (given or chosen).
    pre_line, post_line : numpy.ndarray
        (2, ...) intercept at ``e0_eV`` and slope (per eV) of each line.
    energies_eV : numpy.ndarray
        (E,) the energies.
    e0_method : str
        "given" or how ``e0_eV`` was determined.
    """

    normalized: np.ndarray
    edge_step: np.ndarray
    e0_eV: float
    relative_pre_window_eV: tuple[float, float]
    relative_post_window_eV: tuple[float, float]
    pre_line: np.ndarray
    post_line: np.ndarray
    energies_eV: np.ndarray
    e0_method: str = "given"


def spectrum_sum(absorbance) -> tuple[np.ndarray, int]:
    """Sum over pixels of (E, ...) spectra and their number, leaving out pixels with any NaN/inf.

    Sums of parts of a field add up to the sum of the field: the mean spectrum of a stack
    mapped in chunks is ``sum(totals) / sum(counts)`` (see :func:`mean_spectrum_e0`).
    """
    a = np.asarray(absorbance)
    flat = a.reshape(a.shape[0], -1)
    total = np.zeros(flat.shape[0])
    count = 0
    for start in range(0, flat.shape[1], PIXEL_BLOCK):
        blk = np.asarray(flat[:, start:start + PIXEL_BLOCK], dtype=np.float64)
        good = np.isfinite(blk).all(axis=0)
        total += blk[:, good].sum(axis=1)
        count += int(good.sum())
    return total, count


def mean_spectrum_e0(energies_eV, total, count: int) -> float:
    """Edge energy e0 of the mean spectrum ``total / count``: maximum of its derivative, parabola-refined.

    The e0 that :func:`normalize_spectra` takes when none is given (``total, count`` from
    :func:`spectrum_sum`).
    """
    if count == 0:
        raise ValueError("every spectrum holds NaN or inf, so e0 cannot be determined; repair "
                         "the data or pass e0_eV.")
    e = np.asarray(energies_eV, dtype=np.float64)
    d = np.gradient(np.asarray(total, dtype=np.float64) / count, e)
    return float(_parabolic_peak(e, d[:, None], np.array([int(np.argmax(d))]))[0])


def _refuse_transmission(edge_step: np.ndarray, values: np.ndarray) -> None:
    """Refuse (E, n) ``values`` that look like transmission rather than absorbance.

    The test of the fits' input (:func:`._input._transmission_like`): an empty field, or a part
    of one, passes.
    """
    sampled = values[:, :: max(1, values.shape[1] // KIND_SAMPLE_PIXELS)]
    if _transmission_like(edge_step, sampled) is not None:
        finite = edge_step[np.isfinite(edge_step)]
        raise ValueError(f"the edge step is negative in {np.mean(finite < 0):.0%} of {finite.size} spectra "
                         f"(median {np.median(finite):.3g}) and the values lie in (0, {TRANSMISSION_MAX:g}]: "
                         "these look like transmission, whereas absorbance -ln T steps up at an edge. Pass "
                         "-np.log(transmission).")


def _line_fit(e: np.ndarray, idx: np.ndarray, e0: float, name: str, window) -> np.ndarray:
    """(2, n) pseudo-inverse of the line ``p0 + p1 (E - e0)`` over the energies ``idx``."""
    if idx.size < 2:
        lo, hi = window
        raise ValueError(f"{name}=({lo:g}, {hi:g}) eV relative to e0={e0:.2f} eV holds "
                         f"{idx.size} energy point(s); a line needs at least 2. The energies span "
                         f"{e[0] - e0:+.1f} ... {e[-1] - e0:+.1f} eV relative to e0: widen the "
                         "window or pass it explicitly.")
    design = np.stack([np.ones(idx.size), e[idx] - e0], axis=1)
    return np.linalg.pinv(design)


def normalize_spectra(energies_eV, absorbance, *, e0_eV: float | None = None,
                      relative_pre_window_eV: tuple[float, float] | None = None,
                      relative_post_window_eV: tuple[float, float] | None = None) -> NormalizedSpectra:
    """Normalize absorption spectra to a unit edge step (pre-edge line, post-edge line).

    Per pixel, a straight line is fitted by least squares to the absorbance in the pre-edge
    window and another in the post-edge window; the edge step is their difference at
    ``e0_eV`` and the normalized spectrum is ``(A - pre-edge line) / edge step``. Both fits
    are one (2, n) matrix applied to all pixels at once.

    Parameters
    ----------
    energies_eV : array_like
        (E,) strictly increasing energies (eV).
    absorbance : array_like
        (E, ...) absorbance ``-ln T`` (or any absorption spectra), energies first.
    e0_eV : float, optional
        Edge energy (eV) where the step is measured. None takes the maximum of the
        derivative of the mean spectrum (pixels with NaN/inf left out), refined by a
        parabola; the value is returned.
    relative_pre_window_eV : (float, float), optional
        Pre-edge window in eV relative to ``e0_eV`` (not absolute energies); None uses
        (first energy, -20 eV).
    relative_post_window_eV : (float, float), optional
        Post-edge window in eV relative to ``e0_eV`` (not absolute energies); None uses
        (+30 eV, last energy).

    Returns
    -------
    NormalizedSpectra
        Normalized spectra, edge step, and the e0 and windows used.

    Raises
    ------
    ValueError
        Bad energies, mismatched shapes, a window holding fewer than 2 energies, or
        windows given as absolute energies.

    Examples
    --------
    >>> e = np.linspace(8300.0, 8400.0, 51)
    >>> a = 0.2 + 0.5 / (1 + np.exp(-(e - 8340.0)))
    >>> n = normalize_spectra(e, a, e0_eV=8340.0)
    >>> round(float(n.edge_step), 3), n.relative_pre_window_eV
    (0.5, (-40.0, -20.0))
    """
    e, a = _spectra_array(energies_eV, absorbance, name="absorbance")
    pre_window = _check_window(relative_pre_window_eV, "relative_pre_window_eV", relative=True)
    post_window = _check_window(relative_post_window_eV, "relative_post_window_eV", relative=True)
    shape = a.shape[1:]
    flat = a.reshape(e.size, -1)
    dtype = _work_dtype(a.dtype)
    if e0_eV is None:
        e0 = mean_spectrum_e0(e, *spectrum_sum(flat))
        e0_method = "maximum of the derivative of the mean spectrum (parabolic refinement)"
    else:
        e0 = float(e0_eV)
        if not (math.isfinite(e0) and e[0] <= e0 <= e[-1]):
            raise ValueError(f"e0_eV={e0_eV} must lie inside the energies ({e[0]:.2f} ... "
                             f"{e[-1]:.2f} eV).")
        e0_method = "given"
    if pre_window is None:
        pre_window = (float(e[0] - e0), PRE_EDGE_GAP_EV)
    elif pre_window[1] > 0:
        raise ValueError(f"relative_pre_window_eV={relative_pre_window_eV} must lie below the edge (its end "
                         f"<= 0 eV relative to e0={e0:.2f} eV), e.g. (-60, -20).")
    if post_window is None:
        post_window = (POST_EDGE_START_EV, float(e[-1] - e0))
    elif post_window[0] < 0:
        raise ValueError(f"relative_post_window_eV={relative_post_window_eV} must lie above the edge (its "
                         f"start >= 0 eV relative to e0={e0:.2f} eV), e.g. (30, 120).")
    rel = e - e0
    pre_idx = np.flatnonzero((rel >= pre_window[0] - 1e-9) & (rel <= pre_window[1] + 1e-9))
    post_idx = np.flatnonzero((rel >= post_window[0] - 1e-9) & (rel <= post_window[1] + 1e-9))
    pre_pinv = _line_fit(e, pre_idx, e0, "relative_pre_window_eV", pre_window)
    post_pinv = _line_fit(e, post_idx, e0, "relative_post_window_eV", post_window)

    n = flat.shape[1]
    normalized = np.empty((e.size, n), dtype=dtype)
    pre_line = np.empty((2, n))
    post_line = np.empty((2, n))
    edge_step = np.empty(n)
    for start in range(0, n, PIXEL_BLOCK):
        blk = np.asarray(flat[:, start:start + PIXEL_BLOCK], dtype=np.float64)
        pre = pre_pinv @ blk[pre_idx]
        post = post_pinv @ blk[post_idx]
        step = post[0] - pre[0]
        sl = slice(start, start + blk.shape[1])
        pre_line[:, sl], post_line[:, sl], edge_step[sl] = pre, post, step
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = (blk - pre[0] - pre[1] * rel[:, None]) / step
        norm[:, ~(step > 0)] = np.nan
        normalized[:, sl] = norm
    _refuse_transmission(edge_step, flat)
    return NormalizedSpectra(
        normalized=normalized.reshape(a.shape), edge_step=_as_output(edge_step, shape), e0_eV=e0,
        relative_pre_window_eV=(float(pre_window[0]), float(pre_window[1])),
        relative_post_window_eV=(float(post_window[0]), float(post_window[1])),
        pre_line=pre_line.reshape((2,) + shape), post_line=post_line.reshape((2,) + shape),
        energies_eV=e, e0_method=e0_method)
