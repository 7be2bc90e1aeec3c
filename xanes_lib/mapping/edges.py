"""Edge energies (half step or derivative maximum) and white-line energies of measured spectra.

The edge-energy family of ``xanes_lib``: :func:`edge_energy` and :func:`white_line_energy`
here (measured, normalized spectra, vectorised over pixels);
:func:`xanes_lib.spectra.model_edge_energy`, :func:`~xanes_lib.spectra.model_white_line_energy`
and :func:`~xanes_lib.spectra.model_pre_edge_energy` (the parametric model);
:func:`xanes_lib.physics.tabulated_edge_energy` (the tabulated value of an element, xraydb).
"""

from __future__ import annotations

import numpy as np

from ..spectra import half_step_energy
from ._arrays import PIXEL_BLOCK, _as_output, _check_window, _parabolic_peak, _spectra_array, _window_indices

__all__ = [
    "edge_energy", "white_line_energy",
]


def _searched(energies_eV, normalized, energy_window_eV):
    """Check the inputs; return energies, the indices searched, the (E, N) spectra and their shape."""
    e, s = _spectra_array(energies_eV, normalized, name="normalized")
    window = _check_window(energy_window_eV, "energy_window_eV", relative=False)
    idx = np.arange(e.size) if window is None else _window_indices(e, window, "energy_window_eV")
    return e, idx, s.reshape(e.size, -1), s.shape[1:]


def edge_energy(energies_eV, normalized, *, method: str = "half_step",
                energy_window_eV: tuple[float, float] | None = None, level: float = 0.5):
    """Edge energy of normalized spectra: half-step crossing or derivative maximum.

    Parameters
    ----------
    energies_eV : array_like
        (E,) strictly increasing energies (eV).
    normalized : array_like
        (E, ...) normalized spectra (0 before the edge, ~1 after), e.g.
        ``normalize_spectra(...).normalized``.
    method : {"half_step", "derivative"}
        "half_step": first upward crossing of ``level`` (linear interpolation,
        :func:`xanes_lib.spectra.half_step_energy`); "derivative": maximum of
        ``d mu / dE`` (second-order finite differences on the possibly uneven grid), refined
        by the parabola through the maximum and its neighbours.
    energy_window_eV : (float, float), optional
        Absolute energies (eV) to search in; None searches all energies.
    level : float
        Crossing level of the half-step method.

    Returns
    -------
    float or numpy.ndarray
        Edge energies (eV), shape of ``normalized`` without the energy axis; NaN where
        there is no crossing (half step) or the spectrum is all NaN.

    Raises
    ------
    ValueError
        Unknown method, bad energies, mismatched shapes, an empty window.

    Examples
    --------
    >>> e = np.arange(8330.0, 8351.0)
    >>> s = 1 / (1 + np.exp(-(e - 8340.3) / 1.5))
    >>> round(edge_energy(e, s), 1), round(edge_energy(e, s, method="derivative"), 1)
    (8340.3, 8340.3)
    """
    if method not in ("half_step", "derivative"):
        raise ValueError(f"method must be 'half_step' or 'derivative'; got {method!r}.")
    if not (isinstance(level, int | float | np.floating) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be a number in (0, 1): the share of the normalized edge step whose "
                         f"crossing is the edge (0.5: half step); got {level!r}.")
    e, idx, flat, shape = _searched(energies_eV, normalized, energy_window_eV)
    if method == "half_step":
        out = half_step_energy(e[idx], flat[idx], axis=0, level=level)
        return _as_output(np.asarray(out, dtype=np.float64), shape)
    if e.size < 3:
        raise ValueError(f"the derivative method needs at least 3 energies; got {e.size}.")
    out = np.empty(flat.shape[1])
    for start in range(0, flat.shape[1], PIXEL_BLOCK):
        blk = np.asarray(flat[:, start:start + PIXEL_BLOCK], dtype=np.float64)
        d = np.gradient(blk, e, axis=0)[idx]
        out[start:start + blk.shape[1]] = _peak_of(e[idx], d)
    return _as_output(out, shape)


def _peak_of(e: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Parabola-refined position of the maximum of each column of y (E, N); NaN if all NaN."""
    allnan = np.isnan(y).all(axis=0)
    i = np.argmax(np.where(np.isnan(y), -np.inf, y), axis=0)
    out = _parabolic_peak(e, y, i) if e.size >= 3 else e[i]
    return np.where(allnan, np.nan, out)


def white_line_energy(energies_eV, normalized, *, energy_window_eV: tuple[float, float] | None = None):
    """Energy of the white line: the maximum of the spectrum, refined by a parabola.

    Parameters
    ----------
    energies_eV : array_like
        (E,) strictly increasing energies (eV).
    normalized : array_like
        (E, ...) normalized spectra.
    energy_window_eV : (float, float), optional
        Absolute energies (eV) to search in (e.g. from the edge to 30 eV above it); None
        searches all energies.

    Returns
    -------
    float or numpy.ndarray
        Peak energies (eV), shape of ``normalized`` without the energy axis; NaN for
        all-NaN spectra.

    Raises
    ------
    ValueError
        Bad energies, mismatched shapes, an empty window.

    Examples
    --------
    >>> e = np.arange(8340.0, 8360.0)
    >>> round(white_line_energy(e, np.exp(-(e - 8350.4) ** 2 / 8)), 1)
    8350.4
    """
    e, idx, flat, shape = _searched(energies_eV, normalized, energy_window_eV)
    if idx.size < 3:
        raise ValueError(f"energy_window_eV={energy_window_eV} holds {idx.size} energies; a peak needs at "
                         "least 3 (widen the window).")
    out = np.empty(flat.shape[1])
    for start in range(0, flat.shape[1], PIXEL_BLOCK):
        blk = np.asarray(flat[idx, start:start + PIXEL_BLOCK], dtype=np.float64)
        out[start:start + blk.shape[1]] = _peak_of(e[idx], blk)
    return _as_output(out, shape)
