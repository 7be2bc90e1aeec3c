"""Least-squares fit of the parametric edge model to a measured spectrum (lmfit).

:func:`fit_edge_model` -> :class:`EdgeFit`, with an automatic search of starting points;
:func:`derive_params` moves a fitted parameter set to another oxidation state (edge and
white-line shifts from the literature). Energies in eV.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy.special import erf

from ..validate import check_energies, refuse_kev
from .parametric import (
    _MIN_ROWS,
    _ONSET_SMOOTH_EV,
    K_FACTOR,
    EdgeParams,
    _shell,
    edge_model,
    half_step_energy,
    model_edge_energy,
    model_pre_edge_energy,
    model_white_line_energy,
)

__all__ = [
    "FIT_BOUNDS", "EdgeFit", "fit_edge_model", "derive_params",
]


_STAGE_MAX_NFEV = 3000      # function evaluations per fit while searching a starting point
_FINAL_MAX_NFEV = 30000     # ... and for the final refinement


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
    """Extend ``fixed`` by the parameters that have no effect.

    Those are the other parameters of shells whose amplitude is held at 0, and ``osc_onset``
    when all three shells are so held.
    """
    out = list(fixed)
    held = [j for j in (1, 2, 3) if f"osc{j}_amp" in fixed and getattr(start, f"osc{j}_amp") == 0.0]
    for j in held:
        out += [f"osc{j}_r", f"osc{j}_phase", f"osc{j}_sigma2"]
    if len(held) == 3:
        out.append("osc_onset")
    return tuple(dict.fromkeys(out))


def _bounds(p: EdgeParams, shell_ranges=None) -> dict[str, tuple[float, float]]:
    """Return the bounds of a fit started from ``p``.

    They are FIT_BOUNDS, e0 within 15 eV of ``p.e0``, and the oscillation distances
    restricted to ``shell_ranges`` (one (min, max) per shell).
    """
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
    """Return starting points for the fit, from the data's half-step and white-line energies."""
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
    refuse_kev(e, name="energies_eV", absolute=True)
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
        Target edge energy (eV, half step), see :func:`model_edge_energy`.
    peak_eV : float, optional
        Target energy of the white-line maximum (eV, see :func:`model_white_line_energy`);
        None keeps the white-line offset.
    pre_edge_eV : float, optional
        Target pre-edge peak energy (eV, see :func:`model_pre_edge_energy`); None keeps the
        pre-edge offset.
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
    p = p.replace(e0=p.e0 + half_step_eV - model_edge_energy(p))
    for _ in range(100):
        changes = {}
        d_half = half_step_eV - model_edge_energy(p)
        if not math.isfinite(d_half):
            raise ValueError("the reshaped model never crosses 0.5 near its edge; choose milder "
                             f"white-line scales (got x{wl_amp_scale} height, x{wl_width_scale} width).")
        changes["e0"] = p.e0 + d_half
        d_peak = 0.0
        if peak_eV is not None:
            d_peak = peak_eV - model_white_line_energy(p)
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
