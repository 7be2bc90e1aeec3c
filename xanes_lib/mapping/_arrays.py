"""Small array helpers shared by the mapping modules (windows, dtypes, peaks)."""

from __future__ import annotations

import math

import numpy as np

from ..validate import EV_MIN, check_energies

#: Pixels per block in the helpers that work over pixels (bounds their temporaries).
PIXEL_BLOCK = 1 << 14


def _work_dtype(dtype) -> np.dtype:
    """float32 for float32 (or smaller) input, float64 otherwise."""
    return np.dtype(np.result_type(dtype, np.float32))


def _spectra_array(energies_eV, spectra, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Check (E,) energies against (E, ...) spectra; return energies and the array."""
    e = check_energies(energies_eV, name="energies_eV")
    s = np.asarray(spectra)
    if s.ndim == 0:
        raise ValueError(f"{name} must have an energy axis first, shape (E, ...); got a scalar.")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers; got dtype {s.dtype}.")
    if s.shape[0] != e.size:
        raise ValueError(f"{name} has {s.shape[0]} values along its first axis but there are "
                         f"{e.size} energies; the energy axis must come first, shape (E, ...) "
                         "(transpose it, e.g. np.moveaxis(a, -1, 0)).")
    return e, s


def _check_window(window, name: str, *, relative: bool) -> tuple[float, float] | None:
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of energies in eV; "
                         f"got {window!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be a finite pair with low < high; got ({lo}, {hi}).")
    if relative and max(abs(lo), abs(hi)) > EV_MIN:
        raise ValueError(f"{name}=({lo:g}, {hi:g}) looks like absolute energies; give it in eV "
                         "relative to e0, e.g. (-100, -20).")
    if not relative and hi < EV_MIN:
        raise ValueError(f"{name}=({lo:g}, {hi:g}) looks like keV or relative offsets; give "
                         "absolute energies in eV, e.g. (8300, 8480).")
    return lo, hi


def _window_indices(e: np.ndarray, window, name: str) -> np.ndarray:
    """Return the indices of the energies inside an absolute (lo, hi) window (inclusive)."""
    lo, hi = window
    idx = np.flatnonzero((e >= lo) & (e <= hi))
    if idx.size == 0:
        raise ValueError(f"{name}=({lo:.2f}, {hi:.2f}) eV holds none of the energies "
                         f"({e[0]:.2f} ... {e[-1]:.2f} eV); choose a window inside that range.")
    return idx


def _parabolic_peak(e: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Vertex of the parabola through the samples idx-1, idx, idx+1 of y (E, N).

    Falls back to ``e[idx]`` at the ends of the range or when the three points are collinear;
    the vertex is clipped to the neighbouring energies.
    """
    n = y.shape[1]
    cols = np.arange(n)
    inner = (idx > 0) & (idx < e.size - 1)
    i = np.clip(idx, 1, e.size - 2)
    x1, x2, x3 = e[i - 1], e[i], e[i + 1]
    y1, y2, y3 = y[i - 1, cols], y[i, cols], y[i + 1, cols]
    num = (x2 - x1) ** 2 * (y2 - y3) - (x2 - x3) ** 2 * (y2 - y1)
    den = (x2 - x1) * (y2 - y3) - (x2 - x3) * (y2 - y1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = x2 - 0.5 * num / den
    ok = inner & np.isfinite(xv) & (den != 0)
    xv = np.where(ok, np.clip(xv, x1, x3), e[idx])
    return xv


def _as_output(out: np.ndarray, shape: tuple[int, ...]):
    out = out.reshape(shape)
    return float(out) if out.ndim == 0 else out
