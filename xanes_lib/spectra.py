"""Reference spectra of the Ni and Co K-edges: parametric model, shipped library, users' files.

Energies are in eV everywhere in this module. Spectra are *normalised* absorption: 0 well
below the edge and about 1 well above it (the edge step is 1).

Contents
--------
- :class:`EdgeParams` and :func:`edge_model`: a parametric normalised K-edge spectrum
  (edge step, pre-edge peak, white line, two post-edge peaks, damped EXAFS-like
  oscillations and a gentle post-edge slope).
- :func:`fit_edge_model` -> :class:`EdgeFit`: least-squares fit of the model (lmfit).
- :class:`ParametricReference` and :class:`TabulatedReference`: reference spectra with a
  common interface, ``.spectrum(energies_eV)``.
- :func:`load_reference_library` and :func:`default_references`: the shipped library
  ``data/reference_library.json``; :func:`calibrate_library` rebuilds it from the measured
  NiO / LiNiO2 spectra (command line: ``python -m xanes_lib.spectra calibrate``).
- :func:`jitter_reference`: random perturbation of a reference, for training-data variety.
- :func:`foreign_reference`: a spectrum outside the references (shifted edge, damped white
  line), for simulated "foreign phases".
- :func:`load_measured_reference`: users' own two-column text files.
- :func:`half_step_energy`: vectorised half-step (0.5 crossing) edge energy.

Recalibrate the shipped library with::

    python -m xanes_lib.spectra calibrate --measured-dir ../shared/data/reference_spectra/Ni \\
        --out data/reference_library.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import erf

from .validate import check_energies, energies_to_ev

__all__ = [
    "EdgeParams",
    "EdgeFit",
    "ParametricReference",
    "TabulatedReference",
    "edge_model",
    "fit_edge_model",
    "derive_params",
    "half_step_energy",
    "model_half_step",
    "model_peak_energy",
    "load_reference_library",
    "save_reference_library",
    "default_references",
    "calibrate_library",
    "jitter_reference",
    "foreign_reference",
    "load_measured_reference",
    "default_library_path",
    "main",
]

#: 2 m_e / hbar^2 in 1 / (eV Angstrom^2): k = sqrt(K_FACTOR * (E - e0)).
K_FACTOR = 0.2624682917
_FOUR_LN2 = 4.0 * math.log(2.0)
_LIBRARY_FORMAT = "xanes_lib.reference_library"
_LIBRARY_VERSION = 1
_MIN_ROWS = 10
_ONSET_SMOOTH_EV = 5.0
_STAGE_MAX_NFEV = 3000      # function evaluations per fit while searching a starting point
_FINAL_MAX_NFEV = 30000     # ... and for the final refinement


def default_library_path() -> Path:
    """Path of the shipped reference library, ``<repo>/data/reference_library.json``."""
    return Path(__file__).resolve().parents[1] / "data" / "reference_library.json"


# --------------------------------------------------------------------------------------
# Parametric model
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EdgeParams:
    """Parameters of the normalised K-edge model :func:`edge_model`.

    All energies, offsets and widths are in eV; offsets are relative to ``e0``; widths are
    full widths at half maximum (FWHM). Amplitudes are in units of the edge step (1).

    Attributes
    ----------
    e0 : float
        Centre of the edge step (eV), where the bare step is 0.5.
    edge_width : float
        FWHM (eV) of the Gaussian whose integral is the step (an error-function step).
    pre_amp, pre_offset, pre_width : float
        Pre-edge (1s -> 3d) Gaussian: height (edge-step units), position relative to ``e0``
        (eV, negative: below the edge) and FWHM (eV).
    wl_amp, wl_offset, wl_width : float
        White line Gaussian: height, position relative to ``e0`` (eV) and FWHM (eV).
    peak2_amp, peak2_offset, peak2_width : float
        Second post-edge Gaussian (shoulder / first resonance): height, offset (eV), FWHM (eV).
    peak3_amp, peak3_offset, peak3_width : float
        Third post-edge Gaussian (broad resonance): height, offset (eV), FWHM (eV).
    osc1_amp, osc1_r, osc1_phase, osc1_sigma2 : float
        First damped oscillation ``amp * sin(2 k r + phase) * exp(-2 sigma2 k^2)`` with
        ``k = sqrt(0.2625 (E - e0))`` in 1/Angstrom: amplitude (edge-step units), effective
        half path length ``r`` (Angstrom), phase (rad) and damping ``sigma2`` (Angstrom^2).
        The oscillations are multiplied by the onset window (see ``osc_onset``).
    osc2_amp, osc2_r, osc2_phase, osc2_sigma2 : float
        Second oscillation, same units.
    osc3_amp, osc3_r, osc3_phase, osc3_sigma2 : float
        Third oscillation, same units.
    osc_onset : float
        Energy above ``e0`` (eV) where the oscillations switch on: they are multiplied by
        ``0.5 (1 + erf((E - e0 - osc_onset) / 5 eV))``, so the white line stays a peak of its
        own.
    post_slope : float
        Post-edge slope, in edge-step units per keV above ``e0`` (0: flat).

    Examples
    --------
    >>> p = EdgeParams(e0=8340.0)
    >>> EdgeParams.from_dict(p.to_dict()) == p
    True
    """

    e0: float
    edge_width: float = 4.0
    pre_amp: float = 0.03
    pre_offset: float = -9.0
    pre_width: float = 2.5
    wl_amp: float = 0.6
    wl_offset: float = 7.0
    wl_width: float = 5.0
    peak2_amp: float = 0.1
    peak2_offset: float = 25.0
    peak2_width: float = 8.0
    peak3_amp: float = 0.0
    peak3_offset: float = 55.0
    peak3_width: float = 15.0
    osc1_amp: float = 0.0
    osc1_r: float = 1.5
    osc1_phase: float = 0.0
    osc1_sigma2: float = 0.01
    osc2_amp: float = 0.0
    osc2_r: float = 2.5
    osc2_phase: float = 0.0
    osc2_sigma2: float = 0.01
    osc3_amp: float = 0.0
    osc3_r: float = 4.5
    osc3_phase: float = 0.0
    osc3_sigma2: float = 0.01
    osc_onset: float = 10.0
    post_slope: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise TypeError(f"EdgeParams.{f.name} must be a number; got {v!r} "
                                f"({type(v).__name__}).")
            if not math.isfinite(float(v)):
                raise ValueError(f"EdgeParams.{f.name} must be finite; got {v}.")
            object.__setattr__(self, f.name, float(v))
        for name in ("edge_width", "pre_width", "wl_width", "peak2_width", "peak3_width"):
            if getattr(self, name) <= 0:
                raise ValueError(f"EdgeParams.{name} is a FWHM in eV and must be > 0; "
                                 f"got {getattr(self, name)}.")
        for j in (1, 2, 3):
            if getattr(self, f"osc{j}_r") <= 0:
                raise ValueError(f"EdgeParams.osc{j}_r is a distance in Angstrom and must be > 0; "
                                 f"got {getattr(self, f'osc{j}_r')}.")
            if getattr(self, f"osc{j}_sigma2") < 0:
                raise ValueError(f"EdgeParams.osc{j}_sigma2 (Angstrom^2) must be >= 0; "
                                 f"got {getattr(self, f'osc{j}_sigma2')}.")
        if self.e0 < 1000.0:
            raise ValueError(f"EdgeParams.e0 is in eV and must be > 1000 for a hard X-ray edge; "
                             f"got {self.e0}. Multiply keV values by 1000.")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all parameters, in model order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, float]:
        """Parameters as a plain ``{name: float}`` dict (JSON-able)."""
        return {name: float(getattr(self, name)) for name in self.field_names()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EdgeParams":
        """Build from a dict as written by :meth:`to_dict`.

        Missing optional keys take their defaults; ``e0`` is required.

        Raises
        ------
        ValueError
            For unknown keys or a missing ``e0``.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"EdgeParams.from_dict needs a mapping; got {type(d).__name__}.")
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown EdgeParams key(s) {unknown}; allowed: {list(cls.field_names())}.")
        if "e0" not in d:
            raise ValueError("EdgeParams needs 'e0' (edge position in eV); it is missing.")
        return cls(**{k: float(v) for k, v in d.items()})

    def replace(self, **changes) -> "EdgeParams":
        """A copy with some parameters changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _gauss(e: np.ndarray, centre: float, fwhm: float) -> np.ndarray:
    return np.exp(-_FOUR_LN2 * ((e - centre) / fwhm) ** 2)


def _shell(e, p: EdgeParams, j: int) -> np.ndarray:
    """Oscillation shell ``j`` of the model, with its onset window."""
    de = e - p.e0
    k = np.sqrt(K_FACTOR * np.clip(de, 0.0, None))
    onset = 0.5 * (1.0 + erf((de - p.osc_onset) / _ONSET_SMOOTH_EV))
    return onset * getattr(p, f"osc{j}_amp") * np.sin(2.0 * k * getattr(p, f"osc{j}_r")
                                                      + getattr(p, f"osc{j}_phase")) \
        * np.exp(-2.0 * getattr(p, f"osc{j}_sigma2") * k * k)


def _model_parts(e: np.ndarray, p: EdgeParams) -> dict[str, np.ndarray]:
    """The model's additive components at energies ``e`` (eV)."""
    de = e - p.e0
    step = 0.5 * (1.0 + erf(de * (2.0 * math.sqrt(math.log(2.0)) / p.edge_width)))
    osc = np.zeros_like(e)
    for j in (1, 2, 3):
        if getattr(p, f"osc{j}_amp") != 0.0:
            osc = osc + _shell(e, p, j)
    return {
        "step": step,
        "pre_edge": p.pre_amp * _gauss(e, p.e0 + p.pre_offset, p.pre_width),
        "white_line": p.wl_amp * _gauss(e, p.e0 + p.wl_offset, p.wl_width),
        "peak2": p.peak2_amp * _gauss(e, p.e0 + p.peak2_offset, p.peak2_width),
        "peak3": p.peak3_amp * _gauss(e, p.e0 + p.peak3_offset, p.peak3_width),
        "oscillation": osc,
        "slope": step * p.post_slope * np.clip(de, 0.0, None) / 1000.0,
    }


def edge_model(energies_eV, params: EdgeParams) -> np.ndarray:
    """Normalised K-edge absorption spectrum of the parametric model.

    ``mu(E) = S(E) [1 + slope (E - e0)_+ / 1000] + pre-edge + white line + peak2 + peak3
    + W(E) sum_j A_j sin(2 k R_j + phi_j) exp(-2 s_j k^2)`` with an error-function step
    ``S`` (0 -> 1 at ``e0``), Gaussian peaks, ``k = sqrt(0.2625 (E - e0)_+)`` (1/Angstrom)
    and an onset window ``W(E) = 0.5 (1 + erf((E - e0 - osc_onset) / 5 eV))``.

    Parameters
    ----------
    energies_eV : array_like
        Photon energies in eV, any shape.
    params : EdgeParams
        Model parameters.

    Returns
    -------
    numpy.ndarray
        Normalised absorption, same shape as ``energies_eV`` (float64): 0 well below the
        edge, about 1 well above it.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`EdgeParams`.
    ValueError
        If energies are not finite or look like keV.

    Examples
    --------
    >>> p = EdgeParams(e0=8340.0)
    >>> np.round(edge_model([8200.0, 9300.0], p), 3)
    array([0., 1.])
    """
    if not isinstance(params, EdgeParams):
        raise TypeError(f"params must be an EdgeParams; got {type(params).__name__}. "
                        "Use EdgeParams.from_dict(d) for a dict.")
    e = np.asarray(energies_eV, dtype=np.float64)
    if e.size and not np.isfinite(e).all():
        raise ValueError("energies_eV must be finite; found NaN or inf.")
    if e.size and float(np.max(e)) < 1000.0:
        raise ValueError(f"energies_eV look like keV (max {float(np.max(e)):g}); the model works "
                         "in eV: multiply by 1000 or use xanes_lib.validate.energies_to_ev.")
    parts = _model_parts(e, params)
    return sum(parts.values(), np.zeros_like(e))


# --------------------------------------------------------------------------------------
# Half-step edge energy
# --------------------------------------------------------------------------------------

def half_step_energy(energies_eV, spectra, *, axis: int = 0, level: float = 0.5,
                     chunk: int = 1 << 18):
    """Energy where normalised spectra first cross ``level`` (0.5), scanning upwards.

    The crossing is the first pair of neighbouring samples with ``s[i-1] < level <= s[i]``;
    the energy is interpolated linearly between them.

    Parameters
    ----------
    energies_eV : array_like
        (E,) energies in eV, strictly increasing.
    spectra : array_like
        Normalised spectra with the energy axis ``axis`` of length E, e.g. (E,), (E, Y, X).
    axis : int
        The energy axis of ``spectra``.
    level : float
        The crossing level (0.5: half of the edge step).
    chunk : int
        Spectra processed at a time (memory bound for large stacks).

    Returns
    -------
    float or numpy.ndarray
        Half-step energies (eV), shape of ``spectra`` without ``axis`` (a float for 1-D
        input); NaN where the spectrum never crosses (also when it starts above ``level``
        and never dips below it first, or is all NaN).

    Raises
    ------
    ValueError
        Bad energies or an energy count that does not match the spectra.

    Examples
    --------
    >>> half_step_energy([8330.0, 8340.0, 8350.0], [0.0, 0.4, 0.9])
    8342.0
    """
    e = check_energies(energies_eV, name="energies_eV")
    s = np.asarray(spectra)
    if s.ndim == 0:
        raise ValueError("spectra must have an energy axis; got a scalar.")
    ax = axis if axis >= 0 else s.ndim + axis
    if not 0 <= ax < s.ndim:
        raise ValueError(f"axis {axis} is out of range for spectra of shape {s.shape}.")
    if s.shape[ax] != e.size:
        raise ValueError(f"spectra have {s.shape[ax]} values along axis {axis} but there are "
                         f"{e.size} energies; pass the matching axis or energies.")
    moved = np.moveaxis(s, ax, 0)
    out_shape = moved.shape[1:]
    flat = moved.reshape(e.size, -1)
    out = np.full(flat.shape[1], np.nan)
    for start in range(0, flat.shape[1], max(int(chunk), 1)):
        blk = np.asarray(flat[:, start:start + chunk], dtype=np.float64)
        below = blk[:-1] < level                      # False for NaN
        above = blk[1:] >= level                      # False for NaN
        cross = below & above
        has = cross.any(axis=0)
        i = np.argmax(cross, axis=0)                  # index of the sample below the crossing
        cols = np.arange(blk.shape[1])
        lo, hi = blk[i, cols], blk[i + 1, cols]
        frac = (level - lo) / np.where(hi > lo, hi - lo, 1.0)
        res = e[i] + frac * (e[i + 1] - e[i])
        out[start:start + blk.shape[1]] = np.where(has, res, np.nan)
    out = out.reshape(out_shape)
    return float(out) if out.ndim == 0 else out


def _fine_grid(p: EdgeParams, lo: float = -60.0, hi: float = 120.0, step: float = 0.005) -> np.ndarray:
    return p.e0 + np.arange(lo, hi + step / 2, step)


def model_half_step(params: EdgeParams) -> float:
    """Half-step energy (eV) of the model spectrum, on a 0.005 eV grid around ``e0``."""
    e = _fine_grid(params)
    return half_step_energy(e, edge_model(e, params))


def model_peak_energy(params: EdgeParams) -> float:
    """Energy (eV) of the model maximum within -10..+40 eV of ``e0`` (the white line).

    Located on a 0.005 eV grid and refined by a parabola through the highest three points.
    """
    e = _fine_grid(params, -10.0, 40.0)
    mu = edge_model(e, params)
    i = int(np.clip(np.argmax(mu), 1, e.size - 2))
    y0, y1, y2 = mu[i - 1], mu[i], mu[i + 1]
    curv = y0 - 2.0 * y1 + y2
    shift = 0.5 * (y0 - y2) / curv if curv < 0 else 0.0   # vertex of the parabola
    return float(e[i] + np.clip(shift, -1.0, 1.0) * (e[1] - e[0]))


def model_pre_edge_energy(params: EdgeParams) -> float:
    """Position (eV) of the pre-edge peak of the model (``e0 + pre_offset``)."""
    return params.e0 + params.pre_offset


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------

#: (min, max) bounds of each parameter used by :func:`fit_edge_model`; offsets and widths
#: in eV relative to e0 (e0 bounds are set from the data), r in Angstrom, sigma2 in A^2.
FIT_BOUNDS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "edge_width": (1.0, 12.0),
    "pre_amp": (0.0, 0.15), "pre_offset": (-16.0, -6.0), "pre_width": (0.8, 6.0),
    "wl_amp": (0.0, 3.0), "wl_offset": (0.0, 15.0), "wl_width": (1.5, 15.0),
    "peak2_amp": (-1.0, 2.0), "peak2_offset": (3.0, 60.0), "peak2_width": (2.0, 40.0),
    "peak3_amp": (-1.0, 2.0), "peak3_offset": (10.0, 150.0), "peak3_width": (5.0, 80.0),
    "osc1_amp": (0.0, 0.25), "osc1_r": (1.0, 7.0), "osc1_phase": (-4 * np.pi, 4 * np.pi),
    "osc1_sigma2": (0.0, 0.03),
    "osc2_amp": (0.0, 0.25), "osc2_r": (1.0, 7.0), "osc2_phase": (-4 * np.pi, 4 * np.pi),
    "osc2_sigma2": (0.0, 0.03),
    "osc3_amp": (0.0, 0.25), "osc3_r": (1.0, 7.0), "osc3_phase": (-4 * np.pi, 4 * np.pi),
    "osc3_sigma2": (0.0, 0.03),
    "osc_onset": (0.0, 40.0),
    "post_slope": (-0.5, 0.5),
})


@dataclass(frozen=True, eq=False)
class EdgeFit:
    """Result of :func:`fit_edge_model`.

    Attributes
    ----------
    params : EdgeParams
        Best-fit parameters.
    stderr : dict
        Standard error of each varied parameter (same units), None where lmfit could not
        estimate it (e.g. at a bound).
    rms_residual : float
        Root-mean-square of ``model - data`` over the fitted points (edge-step units).
    max_abs_residual : float
        Largest ``|model - data|`` over the fitted points.
    residual : numpy.ndarray
        ``model - data`` at the fitted energies.
    energies_eV : numpy.ndarray
        The fitted energies (eV).
    initial : EdgeParams
        The starting point that was used (given, or determined automatically).
    report : str
        lmfit's fit report.
    success : bool
        lmfit's success flag.
    """

    params: EdgeParams
    stderr: dict
    rms_residual: float
    max_abs_residual: float
    residual: np.ndarray
    energies_eV: np.ndarray
    initial: EdgeParams
    report: str
    success: bool

    def rms_in(self, lo_eV: float, hi_eV: float) -> float:
        """RMS residual restricted to ``lo_eV <= E <= hi_eV``."""
        sel = (self.energies_eV >= lo_eV) & (self.energies_eV <= hi_eV)
        if not sel.any():
            raise ValueError(f"no fitted energies in {lo_eV}-{hi_eV} eV; fitted range is "
                             f"{self.energies_eV[0]:.1f}-{self.energies_eV[-1]:.1f} eV.")
        return float(np.sqrt(np.mean(self.residual[sel] ** 2)))


def _lmfit_params(p: EdgeParams, bounds: Mapping[str, tuple[float, float]],
                  fixed: Sequence[str] = ()):
    import lmfit

    pars = lmfit.Parameters()
    for name, value in p.to_dict().items():
        if name in fixed:                     # held exactly at its start value
            pars.add(name, value=value, vary=False)
            continue
        lo, hi = bounds[name]
        pars.add(name, value=min(max(value, lo), hi), min=lo, max=hi)
    return pars


def _expand_fixed(fixed: Sequence[str], start: EdgeParams) -> tuple[str, ...]:
    """``fixed`` plus the other parameters of shells whose amplitude is held at 0 (they
    would have no effect), plus ``osc_onset`` when all three shells are so held."""
    out = list(fixed)
    held = [j for j in (1, 2, 3) if f"osc{j}_amp" in fixed and getattr(start, f"osc{j}_amp") == 0.0]
    for j in held:
        out += [f"osc{j}_r", f"osc{j}_phase", f"osc{j}_sigma2"]
    if len(held) == 3:
        out.append("osc_onset")
    return tuple(dict.fromkeys(out))


def _bounds(p: EdgeParams, shell_ranges=None) -> dict[str, tuple[float, float]]:
    """Fit bounds for a fit started from ``p``: FIT_BOUNDS, e0 within 15 eV of ``p.e0``, and
    the oscillation distances restricted to ``shell_ranges`` (one (min, max) per shell)."""
    b = dict(FIT_BOUNDS)
    b["e0"] = (p.e0 - 15.0, p.e0 + 15.0)
    for j, rng in enumerate(shell_ranges or (), start=1):
        b[f"osc{j}_r"] = rng
    return b


def _run_fit(e, mu, p0: EdgeParams, bounds, fixed=(), max_nfev=None):
    import lmfit

    pars = _lmfit_params(p0, bounds, fixed=fixed)

    def residual(pp):
        return edge_model(e, EdgeParams(**pp.valuesdict())) - mu

    with warnings.catch_warnings():
        # lmfit warns when the covariance is not positive definite (a parameter at a bound);
        # the affected standard errors are reported as None in EdgeFit.stderr.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"lmfit\..*")
        return lmfit.minimize(residual, pars, method="least_squares", x_scale="jac",
                              max_nfev=max_nfev)


def _shell_grid_search(e, resid, p: EdgeParams, bounds, shells: Sequence[int] = (1, 2, 3)) -> EdgeParams:
    """Greedy linear search of oscillation shells (r, sigma2) on the residual ``resid``.

    The shells named in ``shells`` are replaced, one after the other, by the (r, sigma2)
    grid point whose least-squares sine/cosine amplitudes best explain what is left.
    """
    de = np.clip(e - p.e0, 0.0, None)
    k = np.sqrt(K_FACTOR * de)
    step = 0.5 * (1.0 + erf((de - p.osc_onset) / _ONSET_SMOOTH_EV))
    sel = de > p.osc_onset - _ONSET_SMOOTH_EV
    s_grid = (0.0, 0.002, 0.005, 0.01, 0.02, 0.03)
    target = -resid  # data - model
    changes = {}
    for j in shells:
        if getattr(p, f"osc{j}_amp") != 0.0:   # remove the shell being replaced
            target = target + _shell(e, p, j)
        best = None
        lo, hi = bounds[f"osc{j}_r"]
        for r in np.arange(lo, min(hi, 6.5) + 1e-9, 0.05):
            for s2 in s_grid:
                damp = step * np.exp(-2.0 * s2 * k * k)
                a = np.stack([damp * np.sin(2 * k * r), damp * np.cos(2 * k * r)], axis=1)
                coef, *_ = np.linalg.lstsq(a[sel], target[sel], rcond=None)
                sse = float(np.sum((target[sel] - a[sel] @ coef) ** 2))
                if best is None or sse < best[0]:
                    best = (sse, r, s2, coef, a @ coef)
        _, r, s2, (cs, cc), fitted = best
        changes.update({f"osc{j}_amp": float(np.hypot(cs, cc)), f"osc{j}_r": float(r),
                        f"osc{j}_phase": float(np.arctan2(cc, cs)), f"osc{j}_sigma2": float(s2)})
        target = target - fitted
    return p.replace(**changes)


#: Starting offsets (eV above e0) of peak2 and peak3 tried by the automatic fit.
_START_PEAKS = ((12.0, 35.0), (20.0, 55.0), (30.0, 70.0))
#: Ranges of the oscillation distances (Angstrom) tried by the automatic fit: three distinct
#: shells (metal-O, metal-metal, longer paths), or a split first shell (e.g. Jahn-Teller
#: distorted Ni3+) plus metal-metal.
_SHELL_TEMPLATES = (((1.0, 2.2), (2.2, 3.2), (3.2, 7.0)),
                    ((1.0, 2.2), (1.0, 2.2), (2.2, 3.2)))


def _auto_initial(e, mu) -> list[EdgeParams]:
    """Starting points for the fit, from the data's half-step and white-line energies."""
    eh = half_step_energy(e, mu)
    if not math.isfinite(eh):
        raise ValueError("the spectrum never crosses 0.5: is it normalised (0 before, 1 after "
                         "the edge)? Normalise it first or pass `initial`.")
    win = (e >= eh - 5) & (e <= eh + 30)
    e_peak = float(e[win][np.argmax(mu[win])]) if win.any() else eh + 8.0
    peak = float(mu[win].max()) if win.any() else 1.3
    starts = []
    for p2_off, p3_off in _START_PEAKS:
        e0 = eh + 1.5
        starts.append(EdgeParams(
            e0=e0, edge_width=4.0, pre_amp=0.03, pre_offset=-9.0, pre_width=2.5,
            wl_amp=max(peak - 1.0, 0.05), wl_offset=min(max(e_peak - e0, 0.0), 15.0), wl_width=5.0,
            peak2_amp=0.1, peak2_offset=p2_off, peak2_width=8.0,
            peak3_amp=0.1, peak3_offset=p3_off, peak3_width=20.0))
    return starts


def _check_spectrum(energies_eV, mu, *, source: str = "") -> tuple[np.ndarray, np.ndarray]:
    e = check_energies(energies_eV, name="energies_eV", source=source, min_points=_MIN_ROWS)
    m = np.array(mu, dtype=np.float64, copy=True)
    if m.shape != e.shape:
        raise ValueError(f"mu_norm has shape {m.shape} but energies_eV has {e.shape}; "
                         "pass one absorption value per energy.")
    if not np.isfinite(m).all():
        i = int(np.flatnonzero(~np.isfinite(m))[0])
        raise ValueError(f"mu_norm must be finite; got {m[i]} at index {i} ({e[i]:.2f} eV).")
    if e[-1] < 1000.0:
        raise ValueError(f"energies_eV look like keV (max {e[-1]:g}); convert with "
                         "xanes_lib.validate.energies_to_ev first.")
    return e, m


def fit_edge_model(energies_eV, mu_norm, *, initial: EdgeParams | None = None,
                   fixed: Sequence[str] = ()) -> EdgeFit:
    """Fit :func:`edge_model` to a normalised spectrum by least squares (lmfit).

    Parameters
    ----------
    energies_eV : array_like
        (E,) energies in eV, strictly increasing, at least 10.
    mu_norm : array_like
        (E,) normalised absorption (0 before the edge, ~1 after).
    initial : EdgeParams, optional
        Starting point; the fit then is a single bounded least-squares refinement (bounds in
        :data:`FIT_BOUNDS`, ``e0`` within 15 eV of its start; start values outside the
        bounds are moved onto them). None determines the start
        automatically, which takes a few seconds: the edge and peaks are placed from the
        data's half-step and white-line energies and fitted within 40 eV of the edge without
        oscillations; the oscillation shells are then found by a linear grid search over
        (r, sigma2) on the residual, all parameters are refined together, and single shells
        are swapped for better ones while that helps. This is repeated from three starting
        positions of the post-edge peaks and two shell layouts (three distinct shells
        1-2.2 / 2.2-3.2 / 3.2-7 Angstrom, or a split first shell 1-2.2 / 1-2.2 / 2.2-3.2
        Angstrom); the best result is refined to convergence. The start that led to it is
        returned as ``EdgeFit.initial``. The result is deterministic.
    fixed : sequence of str
        Names of parameters held at their initial values. A shell whose amplitude is held
        at 0 is held entirely (its other parameters would have no effect).

    Returns
    -------
    EdgeFit
        Parameters, standard errors, residuals and lmfit's report.

    Raises
    ------
    ValueError
        Bad energies or values, unknown names in ``fixed``, or a spectrum that never
        crosses 0.5 (not normalised) when ``initial`` is None.
    """
    e, m = _check_spectrum(energies_eV, mu_norm)
    unknown = sorted(set(fixed) - set(EdgeParams.field_names()))
    if unknown:
        raise ValueError(f"unknown parameter name(s) in fixed: {unknown}; "
                         f"allowed: {list(EdgeParams.field_names())}.")
    if initial is not None and not isinstance(initial, EdgeParams):
        raise TypeError(f"initial must be an EdgeParams or None; got {type(initial).__name__}.")

    fixed = _expand_fixed(fixed, initial if initial is not None else EdgeParams(e0=8000.0))
    if initial is not None:
        start = initial
        best = _run_fit(e, m, initial, _bounds(initial), fixed, max_nfev=_FINAL_MAX_NFEV)
    else:
        candidates = []
        osc_names = tuple(n for n in EdgeParams.field_names() if n.startswith("osc"))
        near = e <= half_step_energy(e, m) + 40.0
        # shells with a fixed parameter keep their initial values (no grid search)
        free = tuple(j for j in (1, 2, 3)
                     if not any(f"osc{j}_{k}" in fixed for k in ("amp", "r", "phase", "sigma2")))
        templates = _SHELL_TEMPLATES if free else (None,)
        for cand in _auto_initial(e, m):
            # 1) edge and peaks near the edge, no oscillations
            r0 = _run_fit(e[near], m[near], cand, _bounds(cand), osc_names + tuple(fixed),
                          max_nfev=_STAGE_MAX_NFEV)
            p0 = EdgeParams(**r0.params.valuesdict())
            for shells in templates:
                bounds = _bounds(cand, shells)
                # 2) oscillation shells by a linear grid search on the residual
                p = _shell_grid_search(e, edge_model(e, p0) - m, p0, bounds, shells=free)
                # 3) everything together
                r = _run_fit(e, m, p, bounds, fixed, max_nfev=_STAGE_MAX_NFEV)
                # 4) replace one shell by the best one on what is left; keep the best swap
                #    if it clearly helps
                for _ in range(2 if free else 0):
                    p = EdgeParams(**r.params.valuesdict())
                    resid = edge_model(e, p) - m
                    swaps = [_run_fit(e, m, _shell_grid_search(e, resid, p, bounds, shells=(j,)),
                                      bounds, fixed, max_nfev=_STAGE_MAX_NFEV) for j in free]
                    r_new = min(swaps, key=lambda x: x.chisqr)
                    if r_new.chisqr > 0.99 * r.chisqr:
                        break
                    r = r_new
                candidates.append((cand, bounds, r))
        start, bounds, r = min(candidates, key=lambda c: c[2].chisqr)
        # 5) refine the best candidate to convergence
        best = _run_fit(e, m, EdgeParams(**r.params.valuesdict()), bounds, fixed,
                        max_nfev=_FINAL_MAX_NFEV)

    import lmfit

    params = EdgeParams(**best.params.valuesdict())
    resid = edge_model(e, params) - m
    stderr = {n: (None if p.stderr is None or not np.isfinite(p.stderr) else float(p.stderr))
              for n, p in best.params.items() if p.vary}
    return EdgeFit(params=params, stderr=stderr, rms_residual=float(np.sqrt(np.mean(resid ** 2))),
                   max_abs_residual=float(np.max(np.abs(resid))), residual=resid, energies_eV=e,
                   initial=start, report=lmfit.fit_report(best), success=bool(best.success))


def derive_params(base: EdgeParams, *, half_step_eV: float, peak_eV: float | None = None,
                  pre_edge_eV: float | None = None, wl_amp_scale: float = 1.0,
                  wl_width_scale: float = 1.0, tol_eV: float = 1e-3) -> EdgeParams:
    """Shift and reshape a model spectrum so that it hits given edge energies.

    The white line of ``base`` is first scaled (``wl_amp * wl_amp_scale``, ``wl_width *
    wl_width_scale``); then ``e0`` (all features move with it), the white-line offset and
    the pre-edge offset are adjusted until the model's half-step energy, maximum and pre-edge
    peak are at the requested energies.

    Parameters
    ----------
    base : EdgeParams
        Shape to start from.
    half_step_eV : float
        Target half-step energy (eV), see :func:`half_step_energy`.
    peak_eV : float, optional
        Target energy of the white-line maximum (eV); None keeps the white-line offset.
    pre_edge_eV : float, optional
        Target pre-edge peak energy (eV); None keeps the pre-edge offset.
    wl_amp_scale, wl_width_scale : float
        Factors applied to the white-line height and width.
    tol_eV : float
        Convergence tolerance (eV).

    Returns
    -------
    EdgeParams

    Raises
    ------
    ValueError
        If the targets cannot be reached (e.g. a peak below the half-step energy).
    """
    if wl_amp_scale < 0 or wl_width_scale <= 0:
        raise ValueError(f"wl_amp_scale must be >= 0 and wl_width_scale > 0; got {wl_amp_scale}, "
                         f"{wl_width_scale}.")
    if peak_eV is not None and peak_eV <= half_step_eV:
        raise ValueError(f"peak_eV ({peak_eV}) must lie above half_step_eV ({half_step_eV}).")
    p = base.replace(wl_amp=base.wl_amp * wl_amp_scale, wl_width=base.wl_width * wl_width_scale)
    p = p.replace(e0=p.e0 + half_step_eV - model_half_step(p))
    for _ in range(100):
        changes = {}
        d_half = half_step_eV - model_half_step(p)
        if not math.isfinite(d_half):
            raise ValueError("the reshaped model never crosses 0.5 near its edge; choose milder "
                             f"white-line scales (got x{wl_amp_scale} height, x{wl_width_scale} width).")
        changes["e0"] = p.e0 + d_half
        d_peak = 0.0
        if peak_eV is not None:
            d_peak = peak_eV - model_peak_energy(p)
            lo, hi = FIT_BOUNDS["wl_offset"]
            changes["wl_offset"] = float(np.clip(p.wl_offset + d_peak - d_half, lo, hi))
        d_pre = 0.0
        if pre_edge_eV is not None:
            d_pre = pre_edge_eV - model_pre_edge_energy(p)
            changes["pre_offset"] = p.pre_offset + d_pre - d_half
        if max(abs(d_half), abs(d_peak), abs(d_pre)) < tol_eV:
            return p
        p = p.replace(**changes)
    raise ValueError(f"could not reach half_step_eV={half_step_eV}, peak_eV={peak_eV}, "
                     f"pre_edge_eV={pre_edge_eV} from this shape (last errors {d_half:.3f}, "
                     f"{d_peak:.3f}, {d_pre:.3f} eV); choose targets closer to the base shape.")


# --------------------------------------------------------------------------------------
# Reference objects
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParametricReference:
    """A reference spectrum given by the parametric model.

    Attributes
    ----------
    name : str
        Key in the library, e.g. "Ni2+".
    element : str
        Absorbing element, e.g. "Ni".
    edge : str
        Absorption edge, e.g. "K".
    oxidation_state : float
        Formal oxidation state of the element.
    params : EdgeParams
        Model parameters (energies in eV).
    provenance : dict
        Where the parameters come from: fitted file, licence, fit residual, assumptions.
    """

    name: str
    element: str
    edge: str
    oxidation_state: float
    params: EdgeParams
    provenance: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if not isinstance(self.params, EdgeParams):
            raise TypeError(f"params of reference {self.name!r} must be an EdgeParams; got "
                            f"{type(self.params).__name__}.")
        object.__setattr__(self, "oxidation_state", float(self.oxidation_state))
        object.__setattr__(self, "provenance", dict(self.provenance))

    def spectrum(self, energies_eV) -> np.ndarray:
        """Normalised absorption at ``energies_eV`` (eV, any shape), see :func:`edge_model`."""
        return edge_model(energies_eV, self.params)

    def half_step_eV(self) -> float:
        """Half-step energy (eV) of this reference (0.005 eV grid)."""
        return model_half_step(self.params)

    def to_dict(self) -> dict:
        """JSON-able dict (without the name, which is the library key)."""
        return {"element": self.element, "edge": self.edge,
                "oxidation_state": self.oxidation_state,
                "params": self.params.to_dict(), "provenance": self.provenance}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any], *, source: str = "") -> "ParametricReference":
        """Build from a library entry written by :meth:`to_dict`."""
        where = f" in {source}" if source else ""
        missing = [k for k in ("element", "edge", "oxidation_state", "params") if k not in d]
        if missing:
            raise ValueError(f"reference {name!r}{where} lacks the key(s) {missing}; each entry "
                             "needs element, edge, oxidation_state and params.")
        try:
            params = EdgeParams.from_dict(d["params"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"reference {name!r}{where}: bad params: {exc}") from exc
        return cls(name=name, element=str(d["element"]), edge=str(d["edge"]),
                   oxidation_state=float(d["oxidation_state"]), params=params,
                   provenance=dict(d.get("provenance", {})))


@dataclass(frozen=True, eq=False)
class TabulatedReference:
    """A reference spectrum given as a table (e.g. a user's measured standard).

    ``spectrum`` interpolates linearly between the tabulated points and never extrapolates.

    Attributes
    ----------
    name : str
        Name of the reference.
    element : str or None
        Absorbing element (None: unknown).
    edge : str
        Absorption edge, e.g. "K".
    oxidation_state : float or None
        Formal oxidation state (None: unknown).
    energies_eV : numpy.ndarray
        (N,) tabulated energies in eV, strictly increasing (read-only copy).
    values : numpy.ndarray
        (N,) normalised absorption at those energies (read-only copy).
    source : str
        File (or description) the table came from, named in error messages.
    """

    name: str
    element: str | None
    edge: str
    oxidation_state: float | None
    energies_eV: np.ndarray
    values: np.ndarray
    source: str = ""

    def __post_init__(self):
        e = check_energies(self.energies_eV, name="energies_eV", source=self.source or self.name)
        v = np.array(self.values, dtype=np.float64, copy=True)
        if v.shape != e.shape:
            raise ValueError(f"values of reference {self.name!r} have shape {v.shape} but there "
                             f"are {e.size} energies; give one value per energy.")
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(f"values of reference {self.name!r} must be finite; got {v[i]} at "
                             f"{e[i]:.2f} eV.")
        e.setflags(write=False)
        v.setflags(write=False)
        object.__setattr__(self, "energies_eV", e)
        object.__setattr__(self, "values", v)
        if self.oxidation_state is not None:
            object.__setattr__(self, "oxidation_state", float(self.oxidation_state))

    def spectrum(self, energies_eV) -> np.ndarray:
        """Normalised absorption at ``energies_eV`` (eV), linearly interpolated.

        Raises
        ------
        ValueError
            If any requested energy lies outside the tabulated range (no extrapolation) or
            is not finite.
        """
        q = np.asarray(energies_eV, dtype=np.float64)
        src = self.source or self.name
        if q.size == 0:
            return np.zeros(q.shape)
        if not np.isfinite(q).all():
            raise ValueError(f"requested energies for reference {self.name!r} ({src}) must be finite.")
        lo, hi = float(self.energies_eV[0]), float(self.energies_eV[-1])
        qmin, qmax = float(q.min()), float(q.max())
        if qmin < lo or qmax > hi:
            gaps = []
            if qmin < lo:
                gaps.append(f"{qmin:.2f}-{lo:.2f} eV")
            if qmax > hi:
                gaps.append(f"{hi:.2f}-{qmax:.2f} eV")
            raise ValueError(f"reference {self.name!r} from {src} covers {lo:.2f}-{hi:.2f} eV only; "
                             f"the requested energies also need {' and '.join(gaps)}. No "
                             "extrapolation is done: request energies inside the tabulated range "
                             "or supply a reference measured over a wider range.")
        return np.interp(q, self.energies_eV, self.values)


# --------------------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------------------

def load_reference_library(path=None) -> dict[str, ParametricReference]:
    """Load a reference library (JSON) written by :func:`save_reference_library`.

    Parameters
    ----------
    path : str or Path, optional
        The JSON file; None loads the shipped ``data/reference_library.json``.

    Returns
    -------
    dict
        ``{name: ParametricReference}``, e.g. keys "Ni2+", "Ni3+", "Ni4+", "Co3+", "Co4+".

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a reference library or an entry is malformed.
    """
    p = default_library_path() if path is None else Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"reference library {p} not found; rebuild it with "
                                "`python -m xanes_lib.spectra calibrate --measured-dir DIR --out "
                                f"{p}` or pass the right path.")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"reference library {p} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != _LIBRARY_FORMAT:
        raise ValueError(f"{p} is not a reference library (its 'format' must be "
                         f"{_LIBRARY_FORMAT!r}).")
    if doc.get("format_version") != _LIBRARY_VERSION:
        raise ValueError(f"{p} has format_version {doc.get('format_version')!r}; this code reads "
                         f"version {_LIBRARY_VERSION}. Recalibrate with `python -m xanes_lib.spectra "
                         "calibrate`.")
    if doc.get("energy_unit") != "eV":
        raise ValueError(f"{p}: energy_unit must be 'eV'; got {doc.get('energy_unit')!r}.")
    refs = doc.get("references")
    if not isinstance(refs, dict) or not refs:
        raise ValueError(f"{p} has no 'references' entries.")
    return {name: ParametricReference.from_dict(name, d, source=p.name) for name, d in refs.items()}


_DEFAULT_SETS = MappingProxyType({"Ni": ("Ni2+", "Ni3+"), "Co": ("Co3+", "Co4+")})


def default_references(element: str, *, path=None) -> list[ParametricReference]:
    """The default pair of reference states for an element, lowest oxidation state first.

    Parameters
    ----------
    element : str
        "Ni" (-> Ni2+, Ni3+) or "Co" (-> Co3+, Co4+); case-insensitive.
    path : str or Path, optional
        Library file; None uses the shipped one.

    Returns
    -------
    list of ParametricReference

    Raises
    ------
    ValueError
        For an element without default references.
    """
    key = str(element).strip().capitalize()
    if key not in _DEFAULT_SETS:
        raise ValueError(f"no default references for element {element!r}; known elements: "
                         f"{sorted(_DEFAULT_SETS)}. Load your own with load_measured_reference "
                         "or build a ParametricReference.")
    lib = load_reference_library(path)
    missing = [n for n in _DEFAULT_SETS[key] if n not in lib]
    if missing:
        raise ValueError(f"the library lacks {missing} (has {sorted(lib)}); recalibrate it with "
                         "`python -m xanes_lib.spectra calibrate`.")
    return [lib[n] for n in _DEFAULT_SETS[key]]


def _atomic_write_text(path: Path, text: str) -> None:
    from .io import atomic_file  # local import: io is not needed to read spectra

    with atomic_file(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def save_reference_library(doc: Mapping[str, Any], path) -> Path:
    """Write a library document (as made by :func:`calibrate_library`) atomically.

    The JSON is written to a temporary file beside ``path`` and renamed over it.
    """
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    _atomic_write_text(Path(path), text)
    return Path(path)


# --------------------------------------------------------------------------------------
# Calibration of the shipped library
# --------------------------------------------------------------------------------------

_MEASURED = MappingProxyType({"Ni2+": ("ref_NiO.txt", "NiO", 2),
                              "Ni3+": ("ref_LiNiO2.txt", "LiNiO2", 3)})
_LICENCE = ("Measured spectra from the PyXAS project (Mingyuan Ge, Brookhaven National "
            "Laboratory), Modified BSD licence (see LICENSE-pyxas beside the measured files); "
            "only fitted model parameters are shipped here, not the measured data.")
_XANES_WINDOW = (-30.0, 100.0)   # eV around e0, for the reported near-edge RMS

#: Assumptions behind the derived references (targets in eV); see data/REFERENCES.md.
DERIVED: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "Ni4+": MappingProxyType(dict(
        base="Ni3+", element="Ni", oxidation_state=4, half_step_shift_eV=1.2,
        wl_amp_scale=0.85, wl_width_scale=1.15,
        assumptions=(
            "Not fitted to a measured Ni4+ standard (none is shipped). Shape of the fitted Ni3+ "
            "(LiNiO2) model with the half-step edge moved +1.2 eV above Ni3+ (literature on "
            "charged LiNiO2 / Ni-rich NMC reports about +1 to +1.5 eV from Ni3+ to Ni4+), and a "
            "weaker (x0.85 height) and broader (x1.15 FWHM) white line, as reported "
            "qualitatively for delithiated layered oxides. Pre-edge, post-edge peaks and "
            "oscillations move with the edge unchanged."))),
    "Co3+": MappingProxyType(dict(
        base="Ni3+", element="Co", oxidation_state=3, half_step_eV=7721.0, peak_eV=7727.0,
        pre_edge_eV=7709.5, wl_amp_scale=1.0, wl_width_scale=1.0,
        assumptions=(
            "Not fitted to a measured Co spectrum (none is shipped). Shape parameters (widths, "
            "amplitudes, post-edge peaks and oscillations in k) of the fitted Ni3+ (LiNiO2) "
            "model, assuming isostructural layered LiCoO2 (Co3+) has a similar K-edge shape "
            "(this carries over LiNiO2's small split first-shell oscillation term, which "
            "undistorted LiCoO2 lacks), moved to the Co K-edge (tabulated 7709 eV, xraydb): "
            "half-step edge at 7721.0 eV, white-line maximum at 7727.0 eV and pre-edge peak at "
            "7709.5 eV, typical literature values for LiCoO2. The Co energy scale is the "
            "literature's, independent of the beamline calibration of the measured Ni "
            "spectra."))),
    "Co4+": MappingProxyType(dict(
        base="Co3+", element="Co", oxidation_state=4, half_step_shift_eV=0.9,
        wl_amp_scale=0.92, wl_width_scale=1.08,
        assumptions=(
            "Not fitted to a measured Co4+ standard. Derived from the Co3+ model with the "
            "half-step edge moved +0.9 eV (delithiated LiCoO2 / charged NMC show a small Co "
            "K-edge shift, below about 1 eV, which is why Co oxidation states are hard to "
            "resolve) and a slightly weaker (x0.92) and broader (x1.08) white line. Pre-edge, "
            "post-edge peaks and oscillations move with the edge unchanged."))),
})


def _rounded(p: EdgeParams, ndigits: int = 6) -> EdgeParams:
    return EdgeParams(**{k: round(v, ndigits) for k, v in p.to_dict().items()})


def calibrate_library(measured_dir, *, verbose: bool = False) -> dict:
    """Fit the model to the measured NiO / LiNiO2 spectra and derive Ni4+, Co3+, Co4+.

    Parameters
    ----------
    measured_dir : str or Path
        Folder holding ``ref_NiO.txt`` and ``ref_LiNiO2.txt`` (energy in keV or eV,
        normalised absorption).
    verbose : bool
        Print a summary of each fit.

    Returns
    -------
    dict
        The library document, ready for :func:`save_reference_library`.

    Raises
    ------
    FileNotFoundError
        If a measured file is missing.
    """
    d = Path(measured_dir)
    missing = [f for f, _, _ in _MEASURED.values() if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} lacks the measured spectra {missing}; pass the folder "
                                "holding ref_NiO.txt and ref_LiNiO2.txt as --measured-dir.")
    refs: dict[str, ParametricReference] = {}
    for name, (fname, compound, ox) in _MEASURED.items():
        meas = load_measured_reference(d / fname, name=name, element="Ni", oxidation_state=ox)
        e, mu = meas.energies_eV, meas.values
        fit = fit_edge_model(e, mu)
        params = _rounded(fit.params)
        resid = edge_model(e, params) - mu
        sel = (e >= params.e0 + _XANES_WINDOW[0]) & (e <= params.e0 + _XANES_WINDOW[1])
        prov = {
            "kind": "fitted",
            "compound": compound,
            "source_file": fname,
            "licence": _LICENCE,
            "fit_range_eV": [round(float(e[0]), 2), round(float(e[-1]), 2)],
            "fit_points": int(e.size),
            "fit_rms_residual": round(float(np.sqrt(np.mean(resid ** 2))), 5),
            "fit_rms_residual_near_edge": round(float(np.sqrt(np.mean(resid[sel] ** 2))), 5),
            "near_edge_window_eV": [round(params.e0 + _XANES_WINDOW[0], 1),
                                    round(params.e0 + _XANES_WINDOW[1], 1)],
            "fit_max_abs_residual": round(float(np.max(np.abs(resid))), 5),
            "fit_stderr": {k: (None if v is None else float(f"{v:.3g}")) for k, v in fit.stderr.items()},
            "measured_half_step_eV": round(half_step_energy(e, mu), 3),
            "model_half_step_eV": round(model_half_step(params), 3),
            "assumptions": (f"Fitted by least squares (lmfit) over the whole measured range of "
                            f"{fname} ({compound}, Ni{ox}+), energy unit (keV or eV) detected from its "
                            "magnitude and converted to eV; "
                            "the spectrum is taken as normalised as published (edge step 1)."),
        }
        refs[name] = ParametricReference(name, "Ni", "K", ox, params, prov)
        if verbose:
            print(f"{name}: {fname}: RMS residual {prov['fit_rms_residual']:.4f} (near edge "
                  f"{prov['fit_rms_residual_near_edge']:.4f}, max {prov['fit_max_abs_residual']:.4f}); "
                  f"half-step {prov['measured_half_step_eV']:.2f} eV measured, "
                  f"{prov['model_half_step_eV']:.2f} eV model")
    for name, spec in DERIVED.items():
        base = refs[spec["base"]]
        base_half = model_half_step(base.params)
        target = spec.get("half_step_eV", base_half + spec.get("half_step_shift_eV", 0.0))
        params = _rounded(derive_params(base.params, half_step_eV=target,
                                        peak_eV=spec.get("peak_eV"),
                                        pre_edge_eV=spec.get("pre_edge_eV"),
                                        wl_amp_scale=spec["wl_amp_scale"],
                                        wl_width_scale=spec["wl_width_scale"]))
        prov = {
            "kind": "derived",
            "derived_from": spec["base"],
            "target_half_step_eV": round(float(target), 3),
            "target_white_line_peak_eV": spec.get("peak_eV"),
            "target_pre_edge_eV": spec.get("pre_edge_eV"),
            "white_line_amplitude_scale": spec["wl_amp_scale"],
            "white_line_width_scale": spec["wl_width_scale"],
            "model_half_step_eV": round(model_half_step(params), 3),
            "model_white_line_peak_eV": round(model_peak_energy(params), 3),
            "assumptions": spec["assumptions"],
        }
        refs[name] = ParametricReference(name, spec["element"], "K", spec["oxidation_state"],
                                         params, prov)
        if verbose:
            print(f"{name}: derived from {spec['base']}: half-step {prov['model_half_step_eV']:.2f} eV, "
                  f"white-line peak {prov['model_white_line_peak_eV']:.2f} eV")
    return {
        "format": _LIBRARY_FORMAT,
        "format_version": _LIBRARY_VERSION,
        "energy_unit": "eV",
        "model": ("xanes_lib.spectra.edge_model: error-function edge step (e0, edge_width FWHM) "
                  "+ Gaussian pre-edge, white line, peak2, peak3 (amp, offset from e0, FWHM) + "
                  "W x [sum of 3 damped oscillations amp sin(2 k r + phase) exp(-2 sigma2 k^2), "
                  "k = sqrt(0.2625 (E - e0)) 1/A], W = 0.5 (1 + erf((E - e0 - osc_onset) / 5 eV)) "
                  "+ step x post_slope (E - e0)/1000. Energies, offsets, widths in eV; r in "
                  "Angstrom; sigma2 in Angstrom^2; post_slope per keV."),
        "calibration_command": ("python -m xanes_lib.spectra calibrate --measured-dir "
                                "../shared/data/reference_spectra/Ni --out data/reference_library.json"),
        "documentation": "data/REFERENCES.md",
        "references": {n: r.to_dict() for n, r in refs.items()},
    }


# --------------------------------------------------------------------------------------
# Jitter
# --------------------------------------------------------------------------------------

_JITTER_AMPS = ("wl_amp", "peak2_amp", "peak3_amp", "osc1_amp", "osc2_amp", "osc3_amp")


def jitter_reference(ref: ParametricReference, rng=None, *, shift_eV: float = 0.3,
                     amplitude_frac: float = 0.1) -> ParametricReference:
    """A randomly perturbed copy of a parametric reference, for training-data variety.

    The whole spectrum moves by ``N(0, shift_eV)`` eV (``e0``), and the white-line, post-edge
    peak and oscillation amplitudes are each multiplied by ``1 + N(0, amplitude_frac)``
    (clipped at 0).

    Parameters
    ----------
    ref : ParametricReference
        The reference to perturb.
    rng : numpy.random.Generator, int or None
        Random source (``np.random.default_rng(rng)``).
    shift_eV : float
        Standard deviation of the edge shift (eV), >= 0.
    amplitude_frac : float
        Relative standard deviation of the amplitudes, >= 0.

    Returns
    -------
    ParametricReference
        Same name, element and oxidation state; ``provenance["jitter"]`` records the drawn
        shift and factors.

    Raises
    ------
    ValueError
        For negative or non-finite ``shift_eV`` / ``amplitude_frac``.
    """
    if not isinstance(ref, ParametricReference):
        raise TypeError(f"jitter_reference needs a ParametricReference; got {type(ref).__name__}.")
    for label, v in (("shift_eV", shift_eV), ("amplitude_frac", amplitude_frac)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{label} must be finite and >= 0; got {v}.")
    gen = np.random.default_rng(rng)
    shift = float(gen.normal(0.0, shift_eV)) if shift_eV > 0 else 0.0
    factors = gen.normal(1.0, amplitude_frac, size=len(_JITTER_AMPS)) if amplitude_frac > 0 \
        else np.ones(len(_JITTER_AMPS))
    factors = np.clip(factors, 0.0, None)
    record = {"shift_eV": shift, "amplitude_factors": dict(zip(_JITTER_AMPS, map(float, factors))),
              "shift_sd_eV": float(shift_eV), "amplitude_sd": float(amplitude_frac)}
    return _perturbed_reference(ref, shift_eV=shift, amplitude_factors=dict(zip(_JITTER_AMPS, factors)),
                                record_key="jitter", record=record)


def _perturbed_reference(ref: ParametricReference, *, shift_eV: float,
                         amplitude_factors: Mapping[str, float], record_key: str, record: dict,
                         **fields) -> ParametricReference:
    """A copy of ``ref`` with ``e0`` moved by ``shift_eV`` and amplitudes scaled.

    ``amplitude_factors`` maps :class:`EdgeParams` names to multiplicative factors;
    ``record`` is stored as ``provenance[record_key]``; ``fields`` replace further
    attributes of the reference (name, oxidation state).
    """
    p = ref.params
    changes = {"e0": p.e0 + shift_eV}
    changes.update({n: getattr(p, n) * float(f) for n, f in amplitude_factors.items()})
    prov = dict(ref.provenance)
    prov[record_key] = record
    return dataclasses.replace(ref, params=p.replace(**changes), provenance=prov, **fields)


def foreign_reference(references: Sequence[ParametricReference], *, edge_shift_eV: float = 3.0,
                      white_line_damping: float = 0.6, name: str = "foreign") -> ParametricReference:
    """A spectrum outside the span of the references: shifted edge, damped white line.

    Simulates a phase of the edge element that the references do not describe (a
    "foreign phase"), so that no linear combination of the references fits it.

    The base is the reference with the median oxidation state (the lower of the two middle
    ones for an even count, e.g. Ni2+ of the default Ni2+/Ni3+, Ni3+ of Ni2+/Ni3+/Ni4+,
    Co3+ of Co3+/Co4+): a real shape of the element, not an average of shapes. Its whole
    spectrum moves by ``edge_shift_eV`` (``e0``) and its white-line amplitude ``wl_amp`` is
    multiplied by ``1 - white_line_damping``; everything else is kept. The perturbation
    goes through the same code as :func:`jitter_reference`.

    The half-step energy moves by exactly ``edge_shift_eV`` without damping; with damping it
    moves a little further (by ~0.07 eV for Ni, ~0.26 eV for Co at the default 0.6), since the
    rising flank of the white line contributes to the 0.5 crossing.

    Parameters
    ----------
    references : sequence of ParametricReference
        The references of the simulation (any order, non-empty, one element).
    edge_shift_eV : float
        Shift of the edge in eV (finite; positive: to higher energy).
    white_line_damping : float
        Relative reduction of the white-line amplitude, in [0, 1] (0: unchanged, 1: no
        white line).
    name : str
        Name of the new reference (non-empty).

    Returns
    -------
    ParametricReference
        Element and edge of the base; ``oxidation_state`` NaN (the phase has no state on the
        references' scale); ``provenance["foreign"]`` records the base, the shift and the
        damping (the base's own provenance is kept alongside).

    Raises
    ------
    ValueError
        For no references, non-finite ``edge_shift_eV`` or ``white_line_damping``, a
        damping outside [0, 1], an empty name, or references of several elements/edges.
    TypeError
        If a reference is not a :class:`ParametricReference`.

    Examples
    --------
    >>> refs = default_references("Ni")  # Ni2+, Ni3+: the base is Ni2+
    >>> f = foreign_reference(refs, edge_shift_eV=3.0, white_line_damping=0.6)
    >>> f.provenance["foreign"]["base"], math.isnan(f.oxidation_state)
    ('Ni2+', True)
    >>> round(f.params.e0 - refs[0].params.e0, 6), round(f.params.wl_amp / refs[0].params.wl_amp, 6)
    (3.0, 0.4)
    >>> undamped = foreign_reference(refs, edge_shift_eV=3.0, white_line_damping=0.0)
    >>> round(undamped.half_step_eV() - refs[0].half_step_eV(), 3)
    3.0
    """
    refs = list(references)
    if not refs:
        raise ValueError("foreign_reference needs at least one reference to start from; got none.")
    bad = [type(r).__name__ for r in refs if not isinstance(r, ParametricReference)]
    if bad:
        raise TypeError(f"foreign_reference needs ParametricReference objects; got {bad}. "
                        "Use parametric references (e.g. default_references(element)).")
    kinds = sorted({(r.element, r.edge) for r in refs})
    if len(kinds) > 1:
        raise ValueError(f"references mix elements/edges {kinds}; give those of one edge.")
    for label, v in (("edge_shift_eV", edge_shift_eV), ("white_line_damping", white_line_damping)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(v):
            raise ValueError(f"{label} must be a finite number; got {v!r}.")
    if not 0.0 <= white_line_damping <= 1.0:
        raise ValueError(f"white_line_damping must lie in [0, 1] (share of the white line removed); "
                         f"got {white_line_damping}.")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string; got {name!r}.")
    ordered = sorted(refs, key=lambda r: r.oxidation_state)
    base = ordered[(len(ordered) - 1) // 2]
    factor = 1.0 - float(white_line_damping)
    record = {"base": base.name, "base_oxidation_state": base.oxidation_state,
              "edge_shift_eV": float(edge_shift_eV), "white_line_damping": float(white_line_damping),
              "wl_amp_factor": factor,
              "note": "a phase outside the references: oxidation_state is NaN (not on their scale)"}
    return _perturbed_reference(base, shift_eV=float(edge_shift_eV), amplitude_factors={"wl_amp": factor},
                                record_key="foreign", record=record, name=name,
                                oxidation_state=float("nan"))


# --------------------------------------------------------------------------------------
# Users' measured references
# --------------------------------------------------------------------------------------

_SPLIT = re.compile(r"[,\s]+")


def _read_two_columns(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            cols = [c for c in _SPLIT.split(line) if c]
            if len(cols) != 2:
                raise ValueError(f"{path}, line {lineno}: expected 2 columns (energy, normalised "
                                 f"absorption) but found {len(cols)}: {line[:60]!r}. Keep exactly two "
                                 "columns separated by spaces, tabs or a comma; mark header lines "
                                 "with '#'.")
            try:
                rows.append((float(cols[0]), float(cols[1])))
            except ValueError:
                raise ValueError(f"{path}, line {lineno}: non-numeric value in {line[:60]!r}. "
                                 "Only numbers are allowed; mark header or comment lines with "
                                 "'#'.") from None
    if len(rows) < _MIN_ROWS:
        raise ValueError(f"{path} holds {len(rows)} data rows; a reference spectrum needs at least "
                         f"{_MIN_ROWS}. Check the file (is it the right one, is the data commented "
                         "out?).")
    a = np.asarray(rows, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        r, c = bad[0]
        raise ValueError(f"{path}: data row {r + 1} holds a non-finite value ({a[r, c]}) in column "
                         f"{c + 1}; remove or repair that row.")
    return a[:, 0], a[:, 1]


def load_measured_reference(path, *, name: str | None = None, element: str | None = None,
                            oxidation_state: float | None = None, unit: str | None = None,
                            edge: str = "K") -> TabulatedReference:
    """Read a user's measured reference spectrum from a two-column text file.

    Parameters
    ----------
    path : str or Path
        Text file: energy and normalised absorption per row, separated by whitespace or a
        comma; ``#`` starts a comment; blank lines are ignored.
    name : str, optional
        Reference name; None uses the file name without extension.
    element : str, optional
        Absorbing element (None: unknown).
    oxidation_state : float, optional
        Formal oxidation state (None: unknown).
    unit : {"eV", "keV", None}
        Unit of the energy column; None detects it from the magnitude (see
        :func:`xanes_lib.validate.detect_energy_unit`).
    edge : str
        Absorption edge.

    Returns
    -------
    TabulatedReference
        Energies converted to eV; ``source`` is the file path.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file, for: a row without exactly two columns, non-numeric content, fewer
        than 10 rows, non-finite values, an ambiguous energy unit, or energies that do not
        increase strictly.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"measured reference file {p} not found.")
    raw_e, values = _read_two_columns(p)
    e_ev, used = energies_to_ev(raw_e, unit=unit, source=str(p))
    check_energies(raw_e, name="energies", unit=used, source=str(p), min_points=_MIN_ROWS)
    return TabulatedReference(name=name if name is not None else p.stem, element=element, edge=edge,
                              oxidation_state=oxidation_state, energies_eV=e_ev, values=values,
                              source=str(p))


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m xanes_lib.spectra calibrate --measured-dir DIR --out FILE``.

    Returns 0 on success and 2 (with the reason on stderr) when the measured spectra are
    missing or unreadable; the output file is then left untouched.
    """
    parser = argparse.ArgumentParser(
        prog="python -m xanes_lib.spectra",
        description="Reference spectra of xanes_lib. 'calibrate' refits the parametric model to "
                    "the measured NiO / LiNiO2 spectra, derives Ni4+, Co3+ and Co4+, and writes "
                    "the reference library (JSON, atomically).")
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="rebuild the reference library from measured spectra")
    cal.add_argument("--measured-dir", required=True, type=Path,
                     help="folder holding ref_NiO.txt and ref_LiNiO2.txt")
    cal.add_argument("--out", type=Path, default=default_library_path(),
                     help="output JSON (default: the package's data/reference_library.json)")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        try:
            doc = calibrate_library(args.measured_dir, verbose=True)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        out = save_reference_library(doc, args.out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
