"""The parametric normalized K-edge model and the energies that characterise a spectrum.

:class:`EdgeParams` and :func:`edge_model` give a normalized K-edge spectrum (edge step,
pre-edge peak, white line, two post-edge peaks, damped EXAFS-like oscillations and a gentle
post-edge slope); :func:`half_step_energy` is the vectorised half-step (0.5 crossing) edge
energy of measured or modelled spectra; :func:`model_edge_energy`,
:func:`model_white_line_energy` and :func:`model_pre_edge_energy` give the characteristic
energies of a parameter set (the measured counterparts are
:func:`xanes_lib.mapping.edge_energy` and :func:`xanes_lib.mapping.white_line_energy`).
Energies in eV.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import erf

from ..validate import EV_MIN, EV_PER_KEV, check_energies, refuse_kev

__all__ = [
    "K_FACTOR", "EdgeParams", "edge_model", "half_step_energy", "model_edge_energy",
    "model_white_line_energy", "model_pre_edge_energy",
]


#: 2 m_e / hbar^2 in 1 / (eV Angstrom^2): k = sqrt(K_FACTOR * (E - e0)).
K_FACTOR = 0.2624682917
_MIN_ROWS = 10                # fewest energies a spectrum to fit or read may have
_FOUR_LN2 = 4.0 * math.log(2.0)
_ONSET_SMOOTH_EV = 5.0


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
        if self.e0 < EV_MIN:
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
    def from_dict(cls, d: Mapping[str, Any]) -> EdgeParams:
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

    def replace(self, **changes) -> EdgeParams:
        """Return a copy with some parameters changed (``dataclasses.replace``)."""
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
    """Return the model's additive components at energies ``e`` (eV)."""
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
        "slope": step * p.post_slope * np.clip(de, 0.0, None) / EV_PER_KEV,
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
    refuse_kev(e, name="energies_eV", absolute=True)
    parts = _model_parts(e, params)
    return sum(parts.values(), np.zeros_like(e))


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


def model_edge_energy(params: EdgeParams) -> float:
    """Edge energy (eV) of the model spectrum: its half step, on a 0.005 eV grid around ``e0``.

    :func:`half_step_energy` of :func:`edge_model` on that grid.
    """
    e = _fine_grid(params)
    return half_step_energy(e, edge_model(e, params))


def model_white_line_energy(params: EdgeParams) -> float:
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
