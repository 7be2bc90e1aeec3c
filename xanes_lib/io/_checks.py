"""Private checks of what :func:`xanes_lib.io.read_stack` reads.

Damaged files, bad frames, raw counts, an element label that contradicts the energies.

Each check is cheap next to reading the data: per frame a min/max pass, and medians on a
sub-grid of pixels only.
"""

from __future__ import annotations

import h5py
import numpy as np

from ..validate import EDGE_TOLERANCE_EV, EV_PER_KEV


class DamagedFileError(OSError, ValueError):
    """An HDF5 dataset could not be read (a corrupted chunk, a truncated copy).

    Both an ``OSError`` (the bytes on disk are bad) and a ``ValueError`` (the input is
    refused), so either ``except`` catches it.
    """


def read_dataset(ds: h5py.Dataset, source: str) -> np.ndarray:
    """``ds[()]``, with HDF5 read errors naming the file, the dataset and the fix."""
    try:
        return ds[()]
    except (OSError, RuntimeError, ValueError) as err:
        raise DamagedFileError(
            f"{source}: the dataset {ds.name!r} could not be read ({type(err).__name__}: {err}); the "
            "file is damaged (a corrupted chunk or an incomplete copy). Copy it again from the "
            "original (compare xanes_lib.io.stack_checksum of both), or re-export it.") from err


def describe_frame(index: int, energy_eV: float) -> str:
    """``frame 3 at 8.3400 keV (8340.00 eV)``."""
    return f"frame {index} at {energy_eV / EV_PER_KEV:.4f} keV ({energy_eV:.2f} eV)"


def element_contradiction(element: str, edge: str, energies_eV: np.ndarray, candidates, *,
                          given: bool = False, energies_name: str = "X_eng") -> str | None:
    """Why ``element`` (its ``edge``) cannot be the absorber of a scan over ``energies_eV``.

    None when its tabulated edge lies within the scanned range (give or take
    :data:`EDGE_TOLERANCE_EV`), or when the element or edge is not tabulated (nothing to
    check against). The text continues a sentence about a file's label ("says Ni ..."), or
    with ``given`` about an ``element=`` argument; ``energies_name`` names the energies.
    """
    from ..physics.materials import tabulated_edge_energy  # physics builds on io's consumers: import here

    try:
        e0 = tabulated_edge_energy(element, edge)
    except ValueError:  # not tabulated: nothing to check against
        return None
    lo, hi = float(energies_eV[0]), float(energies_eV[-1])
    if lo - EDGE_TOLERANCE_EV <= e0 <= hi + EDGE_TOLERANCE_EV:
        return None
    span = f"{energies_name} spans {lo / EV_PER_KEV:.4f}-{hi / EV_PER_KEV:.4f} keV ({lo:.1f}-{hi:.1f} eV)"
    said = f"{element} (its {edge} edge is at {e0 / EV_PER_KEV:.4f} keV, {e0:.1f} eV)"
    said = f"was given element={element!r}: {said}" if given else f"says {said}"
    inside = {}
    for el in candidates:
        if el == element:
            continue
        try:
            energy = tabulated_edge_energy(el, edge)
        except ValueError:
            continue
        if lo <= energy <= hi:
            inside[el] = energy
    if inside:
        other = ", ".join(f"{el} {edge} edge at {e / EV_PER_KEV:.4f} keV ({e:.1f} eV)"
                          for el, e in inside.items())
        first = next(iter(inside))
        fix = (f"pass element='{first}' (or element=None to infer it)" if given else
               f"correct the label (h5py.File(path, 'r+').attrs['element'] = '{first}') or pass "
               f"read_stack(path, element='{first}')")
        return (f"{said}, but {span}, which holds the {other} instead. If the stack is {first}, {fix}; if "
                f"it is {element}, {energies_name} is wrong (check the energies and their unit).")
    return (f"{said}, but {span}, which does not contain that edge (nor the {edge} edge of any of "
            f"{', '.join(candidates)}). Check {energies_name} and its unit, or pass the right element: "
            + ("element=... (None infers it)." if given else "read_stack(path, element=...)."))
