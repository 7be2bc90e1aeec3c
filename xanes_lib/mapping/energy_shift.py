"""Energy shift of the references: a nonlinear fit of one region-averaged spectrum (lmfit).

:func:`fit_energy_shift` -> :class:`EnergyShiftFit`; apply the result to the per-pixel fit
through ``fit_references(..., shift_eV=...)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..physics import build_model
from ..validate import check_energies
from ._arrays import _check_window, _window_indices
from ._basis import _reference_basis

__all__ = [
    "EnergyShiftFit", "fit_energy_shift",
]


@dataclass(frozen=True, eq=False)
class EnergyShiftFit:
    """Result of :func:`fit_energy_shift`.

    Attributes
    ----------
    shift_eV, shift_stderr_eV : float
        Common energy shift of the references (they are evaluated at ``E - shift``) and its
        standard error (lmfit; NaN when the covariance could not be estimated).
    fractions, fractions_stderr : numpy.ndarray
        (K,) ``c_k / sum c`` and standard errors through the full covariance.
    oxidation_state, oxidation_state_stderr : float
        ``sum_k f_k ox_k`` and its standard error.
    coefficients, coefficients_stderr : dict
        Every fitted parameter (references, background terms) and its standard error.
    reference_names : tuple of str
    residual_rms : float
        RMS of the fit residual.
    energy_window_eV : tuple of float
        The fitted window.
    success : bool
        lmfit's success flag.
    report : str
        lmfit's fit report.
    """

    shift_eV: float
    shift_stderr_eV: float
    fractions: np.ndarray
    fractions_stderr: np.ndarray
    oxidation_state: float
    oxidation_state_stderr: float
    coefficients: dict
    coefficients_stderr: dict
    reference_names: tuple[str, ...]
    residual_rms: float
    energy_window_eV: tuple[float, float]
    success: bool
    report: str


def fit_energy_shift(energies_eV, spectrum, references, *,
                     shift_bounds_eV: tuple[float, float] = (-5.0, 5.0),
                     background: Sequence[str] = ("inverse_cube", "constant"),
                     energy_window_eV: tuple[float, float] | None = None,
                     oxidation_states=None, grid_step_eV: float = 0.1) -> EnergyShiftFit:
    """Fit fractions, a common energy shift of the references and a background to a spectrum.

    The model is ``A(E) = sum_k c_k S_k(E - shift) + background`` (columns of
    :func:`xanes_lib.physics.build_model`), fitted with lmfit (Levenberg-Marquardt) to one
    spectrum, typically the mean absorbance of a region. The start is the best shift of a
    grid (step ``grid_step_eV``) of linear fits, so the nonlinear fit does not get stuck in
    a local minimum. Apply the result to the maps with
    ``fit_references(..., shift_eV=result.shift_eV)``.

    Parameters
    ----------
    energies_eV : array_like
        (E,) strictly increasing energies (eV).
    spectrum : array_like
        (E,) absorbance.
    references : sequence of reference objects
        With ``.spectrum(energies_eV)`` (so they can be shifted), ``.name`` and
        ``.oxidation_state``.
    shift_bounds_eV : (float, float)
        Range allowed for the shift (eV).
    background : sequence of str
        Background terms of :func:`xanes_lib.physics.build_model`.
    energy_window_eV : (float, float), optional
        Absolute energies (eV) to fit; None fits all. The references must cover the window
        moved by any shift within the bounds.
    oxidation_states : sequence of float, optional
        Overrides ``ref.oxidation_state``.
    grid_step_eV : float
        Step of the starting grid of shifts (eV).

    Returns
    -------
    EnergyShiftFit

    Raises
    ------
    ValueError
        Bad energies or spectrum, too few energies, references not covering the window
        (moved by the shift bounds), references given as an array, bad bounds.
    """
    import lmfit

    e_all = check_energies(energies_eV, name="energies_eV")
    y_all = np.asarray(spectrum, dtype=np.float64)
    if y_all.shape != e_all.shape:
        raise ValueError(f"spectrum has shape {y_all.shape} but there are {e_all.size} energies; "
                         "pass one (E,) spectrum (average the region first).")
    if not np.isfinite(y_all).all():
        i = int(np.flatnonzero(~np.isfinite(y_all))[0])
        raise ValueError(f"spectrum must be finite; got {y_all[i]} at index {i} ({e_all[i]:.2f} eV).")
    if isinstance(references, np.ndarray) or not all(hasattr(r, "spectrum") for r in references):
        raise ValueError("fit_energy_shift needs reference objects with .spectrum(energies_eV), so "
                         "that they can be shifted; an array of spectra cannot be.")
    lo_s, hi_s = (float(v) for v in shift_bounds_eV)
    if not (math.isfinite(lo_s) and math.isfinite(hi_s) and lo_s < hi_s):
        raise ValueError(f"shift_bounds_eV must be a finite (low, high) pair; got {shift_bounds_eV}.")
    if not grid_step_eV > 0:
        raise ValueError(f"grid_step_eV must be > 0; got {grid_step_eV}.")
    window = _check_window(energy_window_eV, "energy_window_eV", relative=False)
    win = window if window is not None else (float(e_all[0]), float(e_all[-1]))
    idx = _window_indices(e_all, win, "energy_window_eV")
    e, y = e_all[idx], y_all[idx]
    refs = list(references)
    bg = tuple(background)
    n_par = len(refs) + len(bg) + 1
    if e.size <= n_par:
        raise ValueError(f"the energy window {win[0]:.2f}-{win[1]:.2f} eV holds {e.size} energies; "
                         f"fitting {n_par} parameters (shift, {len(refs)} references, {len(bg)} "
                         "background terms) with an uncertainty needs more. Widen the window.")

    def design(shift):
        basis, names, ox = _reference_basis(refs, e, e_all, idx, shift_eV=shift, names=None,
                                            oxidation_states=oxidation_states, window=win)
        return build_model(e, basis, names=names, background=bg), names, ox

    for s in (lo_s, hi_s):                         # coverage of the whole shift range
        design(s)
    grid = np.arange(lo_s, hi_s + grid_step_eV / 2, grid_step_eV)
    best = None
    for s in grid:
        model, names, ox = design(float(s))
        c = model.pinv @ y
        ssr = float(np.sum((model.matrix @ c - y) ** 2))
        if best is None or ssr < best[0]:
            best = (ssr, float(s), c)
    _, s0, c0 = best
    model, names, ox = design(s0)
    pnames = [f"p{i}" for i in range(model.n_params)]   # lmfit needs identifiers
    pars = lmfit.Parameters()
    pars.add("shift", value=s0, min=lo_s, max=hi_s)
    for pn, v in zip(pnames, c0, strict=True):
        pars.add(pn, value=float(v))

    def residual(pp):
        v = pp.valuesdict()
        m, _, _ = design(v["shift"])
        return m.matrix @ np.array([v[pn] for pn in pnames]) - y

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"lmfit\..*")
        result = lmfit.minimize(residual, pars, method="leastsq")
    k = len(refs)
    c = np.array([result.params[pn].value for pn in pnames])
    cov = result.covar
    order = list(result.var_names)
    if cov is not None:
        pos = [order.index(pn) for pn in pnames]
        cov_c = cov[np.ix_(pos, pos)]
    else:
        cov_c = np.full((len(pnames), len(pnames)), np.nan)
    step = c[:k].sum()
    frac = c[:k] / step
    jac = (np.eye(k) - frac[:, None]) / step       # d f_k / d c_j
    cov_f = jac @ cov_c[:k, :k] @ jac.T
    state = float(ox @ frac)
    g = (ox - state) / step
    var_state = float(g @ cov_c[:k, :k] @ g)
    stderr = {n: (np.nan if result.params[pn].stderr is None else float(result.params[pn].stderr))
              for n, pn in zip(model.names, pnames, strict=True)}
    shift_err = result.params["shift"].stderr
    return EnergyShiftFit(
        shift_eV=float(result.params["shift"].value),
        shift_stderr_eV=float("nan") if shift_err is None else float(shift_err),
        fractions=frac, fractions_stderr=np.sqrt(np.clip(np.diag(cov_f), 0, None)),
        oxidation_state=state, oxidation_state_stderr=math.sqrt(max(var_state, 0.0)),
        coefficients={n: float(v) for n, v in zip(model.names, c, strict=True)}, coefficients_stderr=stderr,
        reference_names=tuple(names), residual_rms=float(np.sqrt(np.mean(result.residual ** 2))),
        energy_window_eV=(float(win[0]), float(win[1])), success=bool(result.success),
        report=lmfit.fit_report(result))
