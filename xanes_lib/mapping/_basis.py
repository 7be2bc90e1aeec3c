"""The reference basis of the mapping fits: reference objects or (K, E) arrays of spectra.

:func:`_reference_basis` evaluates the references on the fitted energies and checks their
names and oxidation states; used by :mod:`.lcf` and :mod:`.energy_shift`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..validate import EDGE_TOLERANCE_EV, refuse_kev


def _check_references_type(references) -> None:
    """Refuse ``references`` that are neither reference objects nor an array (TypeError naming the fix)."""
    if isinstance(references, np.ndarray):
        return
    if isinstance(references, str):
        hint = f" For the shipped references pass xanes_lib.spectra.default_references({references!r})."
    elif hasattr(references, "spectrum"):
        hint = " For one reference pass a list of it: [reference]."
    elif isinstance(references, Mapping):
        hint = " For a dict of references pass list(references.values())."
    elif not isinstance(references, Iterable):
        hint = ""
    else:
        return
    raise TypeError(f"references must be a sequence of reference objects (xanes_lib.spectra) or a (K, E) "
                    f"array of spectra; got {type(references).__name__}.{hint}")


def _is_spectra_array(references) -> bool:
    """Tell whether ``references`` is a (K, E) array of spectra rather than reference objects.

    Raises a TypeError for anything that is neither (:func:`_check_references_type`).
    """
    _check_references_type(references)
    return isinstance(references, np.ndarray) or (
        isinstance(references, Sequence) and len(references) > 0
        and isinstance(references[0], np.ndarray | list | tuple))


def _array_basis(references, e_all: np.ndarray, idx: np.ndarray, *, shift_eV: float, window) -> np.ndarray:
    """Check a (K, E) array of spectra on the stack's energies; return its (K, n) window part."""
    lo, hi = window
    basis = np.atleast_2d(np.asarray(references, dtype=np.float64))
    if basis.ndim != 2 or basis.shape[1] != e_all.size:
        raise ValueError(f"references given as an array must have shape (K, E) = (K, "
                         f"{e_all.size}), one spectrum per row on the stack's energies; got "
                         f"{basis.shape}.")
    if shift_eV != 0.0:
        raise ValueError(f"shift_eV={shift_eV} needs reference objects with .spectrum(energies); "
                         "an array of spectra cannot be shifted. Pass the reference objects.")
    if not np.isfinite(basis[:, idx]).all():
        raise ValueError("the reference array holds NaN or inf inside the energy window "
                         f"{lo:.2f}-{hi:.2f} eV; repair it or narrow energy_window_eV.")
    return basis[:, idx]


def _object_basis(refs: list, e: np.ndarray, *, shift_eV: float, window) -> np.ndarray:
    """Evaluate reference objects at the window energies ``e - shift_eV``; return (K, n)."""
    lo, hi = window
    if not refs:
        raise ValueError("references is empty; give at least one reference spectrum.")
    rows = []
    for r in refs:
        if not hasattr(r, "spectrum"):
            raise ValueError(f"reference {r!r} has no .spectrum(energies_eV) method; pass "
                             "reference objects (xanes_lib.spectra) or a (K, E) array.")
        try:
            row = np.asarray(r.spectrum(e - shift_eV), dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"reference {getattr(r, 'name', r)!r} does not cover the fit "
                             f"energy window {lo:.2f}-{hi:.2f} eV (shift {shift_eV:+.2f} eV, so "
                             f"{lo - shift_eV:.2f}-{hi - shift_eV:.2f} eV of the reference "
                             f"are needed): {err} Pass energy_window_eV=(lo, hi) inside the "
                             "range the reference covers.") from None
        if row.shape != e.shape or not np.isfinite(row).all():
            raise ValueError(f"reference {getattr(r, 'name', r)!r} gave no finite spectrum of "
                             f"{e.size} values over {lo:.2f}-{hi:.2f} eV.")
        rows.append(row)
    return np.stack(rows)


def check_reference_edges(references, e_all: np.ndarray, shift_eV: float = 0.0) -> None:
    """Refuse reference objects whose edge (moved by ``shift_eV``) lies outside the stack's energies.

    A reference of another element or edge fits nothing but the smooth tail of its own edge,
    with nonsense coefficients; the edge may lie :data:`~xanes_lib.validate.EDGE_TOLERANCE_EV`
    outside the scan. Arrays of spectra, and objects without an ``edge_energy()`` (or whose
    table has no half-step edge), are not checked.

    Parameters
    ----------
    references : sequence of reference objects or array_like
        The references of a fit or of a denoiser's physics model.
    e_all : numpy.ndarray
        (E,) increasing energies of the stack (eV).
    shift_eV : float
        Energy shift applied to the references.

    Raises
    ------
    ValueError
        Naming the references whose edge is outside, and the element whose edge the energies hold.
    """
    refuse_kev(e_all, name="energies_eV")  # keV energies would pass for references of another edge
    if _is_spectra_array(references):
        return
    lo, hi = float(e_all[0]), float(e_all[-1])
    far = []
    for r in references:
        try:
            e0 = float(r.edge_energy()) + shift_eV
        except (AttributeError, TypeError, ValueError):
            continue
        if not lo - EDGE_TOLERANCE_EV <= e0 <= hi + EDGE_TOLERANCE_EV:
            far.append(f"{getattr(r, 'name', r)!r} ({getattr(r, 'element', None) or 'element unknown'}, "
                       f"edge at {e0:.1f} eV)")
    if not far:
        return
    from ..io.stacks import infer_element  # io builds on mapping: import here

    try:
        here = f"; these energies hold the {infer_element(e_all)} K edge"
    except ValueError:
        here = ""
    raise ValueError(f"reference(s) {', '.join(far)} have their edge outside the stack's energies "
                     f"{lo:.1f}-{hi:.1f} eV (by more than {EDGE_TOLERANCE_EV:g} eV){here}: they are "
                     "references of another element or edge. Pass the references of the stack's element "
                     "(e.g. xanes_lib.spectra.default_references(stack.element)), or check the energies "
                     "(eV).")


#: Fewest fitted energies on each side of a reference's edge: a fit without post-edge (or
#: pre-edge) points cannot tell the edge step from the background terms.
MIN_ENERGIES_EACH_SIDE = 2


def check_edge_inside(references, energies_eV: np.ndarray, shift_eV: float = 0.0) -> None:
    """Refuse fitted energies that do not hold each reference's edge (moved by ``shift_eV``).

    A window or a scan that ends before the edge (or starts after it) fits the references'
    smooth tails: the states come out anywhere in (or outside) their range with tiny standard
    deviations. Needs :data:`MIN_ENERGIES_EACH_SIDE` energies below and above every edge.
    Arrays of spectra and objects without an ``edge_energy()`` are not checked.
    """
    if _is_spectra_array(references):
        return
    e = np.asarray(energies_eV, dtype=np.float64)
    for r in references:
        try:
            e0 = float(r.edge_energy()) + shift_eV
        except (AttributeError, TypeError, ValueError):
            continue
        below, above = int((e < e0).sum()), int((e > e0).sum())
        if min(below, above) < MIN_ENERGIES_EACH_SIDE:
            raise ValueError(
                f"the fitted energies {e[0]:.1f}-{e[-1]:.1f} eV hold {below} energies below and {above} "
                f"above the edge of reference {getattr(r, 'name', r)!r} at {e0:.1f} eV; a fit needs at least "
                f"{MIN_ENERGIES_EACH_SIDE} on each side to measure the edge step. Fit a window "
                "(energy_window_eV) or a scan that spans the edge.")


def _oxidation_states_of(refs: list) -> list[float]:
    """Return the ``oxidation_state`` of each reference object; raise naming those without one."""
    missing = [str(getattr(r, "name", i)) for i, r in enumerate(refs)
               if getattr(r, "oxidation_state", None) is None]
    if missing:
        raise ValueError(f"reference(s) {missing} have no oxidation_state; pass "
                         "oxidation_states=[...] (one per reference).")
    return [float(r.oxidation_state) for r in refs]


def _reference_basis(references, e: np.ndarray, e_all: np.ndarray, idx: np.ndarray, *,
                     shift_eV: float, names, oxidation_states, window) -> tuple:
    """Basis (K, n) on the window energies, names and oxidation states of the references."""
    if _is_spectra_array(references):
        basis = _array_basis(references, e_all, idx, shift_eV=shift_eV, window=window)
        k = basis.shape[0]
        names = tuple(names) if names is not None else tuple(f"ref{i}" for i in range(k))
        if oxidation_states is None:
            raise ValueError("references given as an array carry no oxidation states; pass "
                             "oxidation_states=[...] (one per row).")
    else:
        refs = list(references)
        basis = _object_basis(refs, e, shift_eV=shift_eV, window=window)
        k = basis.shape[0]
        names = tuple(names) if names is not None else tuple(
            str(getattr(r, "name", f"ref{i}")) for i, r in enumerate(refs))
        if oxidation_states is None:
            oxidation_states = _oxidation_states_of(refs)
    ox = np.asarray(oxidation_states, dtype=np.float64).ravel()
    if ox.size != k or not np.isfinite(ox).all():
        raise ValueError(f"oxidation_states must hold {k} finite numbers (one per reference); "
                         f"got {list(np.asarray(oxidation_states).ravel())}.")
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} references; give one name per reference.")
    return basis, names, ox
