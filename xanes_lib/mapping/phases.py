"""Phases the references cannot explain: the fit residual map and the pixels it flags.

A pixel whose spectrum is a mix of the references (plus the smooth ``E^-3`` and constant
terms of the physics model) leaves only noise in the residual of its fit; a phase outside
the references (another compound, a shifted edge, a damped white line) leaves a structured
residual. :func:`residual_map` measures it per pixel and :func:`flag_unexplained` marks the
pixels whose residual stands out from the sample, so that their oxidation state can be
reported as not determined instead of being invented.
"""

from __future__ import annotations

import numpy as np

from ..physics import absorbance, reference_model
from ..spectra import default_references
from ..validate import check_energies, check_stack

__all__ = [
    "residual_map", "flag_unexplained",
]


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
    model = reference_model(e, element, references)
    a = absorbance(np.asarray(t, dtype=np.float64))
    resid = a - model.predict(model.fit(a))
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
    residual at the default.

    Returns
    -------
    (numpy.ndarray, float)
        (Y, X) bool flags and the threshold used.
    """
    r = np.asarray(residual, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if r.shape != m.shape:
        raise ValueError(f"residual {r.shape} and mask {m.shape} must have the same (Y, X) shape.")
    vals = r[m & np.isfinite(r)]
    if vals.size == 0:
        raise ValueError("the mask holds no pixel with a finite residual; nothing to compare with.")
    med = np.median(vals)
    thr = float(med + n_mad * 1.4826 * np.median(np.abs(vals - med)))
    return m & (r > thr), thr
