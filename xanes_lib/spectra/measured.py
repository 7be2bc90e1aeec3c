"""Users' measured reference spectra: two-column text files (energy in eV or keV)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from ..validate import EV_MIN, check_energies, energies_to_ev
from .parametric import _MIN_ROWS
from .references import TabulatedReference, default_references

__all__ = [
    "load_measured_reference", "load_references",
]


_SPLIT = re.compile(r"[,\s]+")


def _read_two_columns(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    with open(path, encoding="utf-8-sig", errors="replace") as f:   # -sig: a byte-order mark is not data
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
        than 10 rows, non-finite values, an ambiguous energy unit, energies that do not
        increase strictly, energies that are not those of a hard X-ray edge in the unit given
        (e.g. a keV file read with ``unit="eV"``), a range that does not contain the element's
        tabulated edge, or values that are not normalised (edge step far from 1, e.g. in
        percent).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"measured reference file {p} not found.")
    raw_e, values = _read_two_columns(p)
    e_ev, used = energies_to_ev(raw_e, unit=unit, source=str(p))
    check_energies(raw_e, name="energies", unit=used, source=str(p), min_points=_MIN_ROWS)
    if e_ev[0] < EV_MIN:
        raise ValueError(f"{p}: energies {raw_e[0]:g}-{raw_e[-1]:g} read as {used} give "
                         f"{e_ev[0]:g}-{e_ev[-1]:g} eV, below any hard X-ray edge (> {EV_MIN:g} eV); the "
                         "column is probably in keV: pass unit='keV' (or unit=None to detect it).")
    if element is not None:
        _check_edge_in_range(p, e_ev, element, edge)
    _check_normalized(p, values)
    return TabulatedReference(name=name if name is not None else p.stem, element=element, edge=edge,
                              oxidation_state=oxidation_state, energies_eV=e_ev, values=values,
                              source=str(p))


#: Accepted edge step of a normalised spectrum (post-edge level minus pre-edge level).
_NORMALIZED_STEP = (0.3, 3.0)


def _check_edge_in_range(path: Path, energies_eV: np.ndarray, element: str, edge: str) -> None:
    """Refuse a spectrum whose energy range does not contain the element's tabulated edge."""
    from ..physics.materials import tabulated_edge_energy  # physics builds on spectra: import here

    e0 = tabulated_edge_energy(element, edge)
    if not energies_eV[0] < e0 < energies_eV[-1]:
        raise ValueError(f"{path}: energies {energies_eV[0]:.1f}-{energies_eV[-1]:.1f} eV do not contain "
                         f"the tabulated {element} {edge} edge ({e0:.1f} eV); is it a spectrum of another "
                         "element or in another unit? Give the right element, or unit='eV'/'keV'.")


def _check_normalized(path: Path, values: np.ndarray) -> None:
    """Refuse values that are not normalised absorption (edge step about 1)."""
    n = values.size
    step = float(np.median(values[-max(n // 7, 3):]) - np.median(values[:max(n // 10, 3)]))
    lo, hi = _NORMALIZED_STEP
    if not lo < step < hi:
        raise ValueError(f"{path}: the values rise by {step:.4g} from the pre-edge to the post-edge; a "
                         "reference must be normalised absorption (pre-edge 0, post-edge about 1). If the "
                         "file is in percent divide by 100; otherwise normalise it first (pre-edge line to "
                         "0, post-edge line to 1, e.g. with xanes_lib.mapping.normalize_spectra).")


def load_references(element: str, paths=(), oxidation_states=()) -> list:
    """Return the references to fit with: measured files with their oxidation states, else the shipped ones.

    Parameters
    ----------
    element : str
        Edge element of the stack (the shipped references, and the check of the files' edge).
    paths : path-like or sequence of path-like
        Two-column reference files (:func:`load_measured_reference`; one path is one file);
        empty: the shipped references of ``element``.
    oxidation_states : float or sequence of float
        One oxidation state (a number, e.g. 2 or 2.5) per file.

    Returns
    -------
    list
        Reference objects (``.spectrum``, ``.name``, ``.oxidation_state``).

    Raises
    ------
    ValueError
        A different number of files and oxidation states, an oxidation state that is not a
        number (e.g. "2+"), and every error of :func:`load_measured_reference`.
    """
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    states = [oxidation_states] if _is_scalar(oxidation_states) else list(oxidation_states)
    if not paths:
        return default_references(element)
    if len(states) != len(paths):
        raise ValueError(f"give one oxidation state per reference file: {len(paths)} files, {len(states)} "
                         "states (reference_oxidation_states, in the order of reference_paths)")
    return [load_measured_reference(p, oxidation_state=_state_number(s, p), element=element)
            for p, s in zip(paths, states, strict=True)]


def _is_scalar(value) -> bool:
    return isinstance(value, str | bytes | int | float | np.number)


def _state_number(value, path) -> float:
    """Return an oxidation state as a float; text such as "2+" is refused, naming the file."""
    try:
        state = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        state = math.nan
    if not math.isfinite(state):
        raise ValueError(f"the oxidation state for {os.fspath(path)} is {value!r}; oxidation states must be "
                         "finite numbers, e.g. 2 or 2.5 (not '2+' or 'Ni2+').")
    return state
