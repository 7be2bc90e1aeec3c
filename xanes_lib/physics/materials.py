"""Cathode materials and their X-ray attenuation from tabulated cross-sections (xraydb).

The edge element's attenuation near its K edge is built from two smooth tabulated branches
(below and above the edge, each a power law fitted to the Elam tables) joined by a normalised
XANES spectrum: ``mu(E) = mu_below(E) + norm(E) * (mu_above(E) - mu_below(E))``. A normalised
spectrum that goes from 0 to 1 therefore reproduces the tabulated edge step exactly, and the
fine structure (white line, oscillations) rides on it as in a measured spectrum.

All energies are in eV; mass attenuation coefficients in cm^2/g; areal densities in g/cm^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xraydb

from ..validate import check_energies

__all__ = [
    "COMPOSITIONS", "DENSITIES_G_CM3", "check_composition", "mass_fractions", "tabulated_edge_energy",
    "EdgeBranches", "edge_branches", "matrix_mass_attenuation",
]

#: Stoichiometry (atoms per formula unit) of the layered oxides LiNi_x Mn_y Co_z O2.
COMPOSITIONS: dict[str, dict[str, float]] = {
    "NMC111": {"Li": 1.0, "Ni": 1 / 3, "Mn": 1 / 3, "Co": 1 / 3, "O": 2.0},
    "NMC622": {"Li": 1.0, "Ni": 0.6, "Mn": 0.2, "Co": 0.2, "O": 2.0},
    "NMC811": {"Li": 1.0, "Ni": 0.8, "Mn": 0.1, "Co": 0.1, "O": 2.0},
}

#: Crystallographic (X-ray) densities in g/cm^3, R-3m layered oxides, ~4.7-4.8 in the
#: literature; secondary particles are less dense through their porosity (a simulation
#: parameter), not through these numbers.
DENSITIES_G_CM3: dict[str, float] = {"NMC111": 4.77, "NMC622": 4.77, "NMC811": 4.78}

# Energy windows (eV relative to the edge, not absolute) used to fit the smooth tabulated branches.
_RELATIVE_BELOW_WINDOW_EV = (-400.0, -15.0)
_RELATIVE_ABOVE_WINDOW_EV = (25.0, 600.0)


def check_composition(name: str) -> dict[str, float]:
    """Return the stoichiometry of a known composition or raise a clear error."""
    if name not in COMPOSITIONS:
        raise ValueError(f"unknown composition {name!r}; known: {sorted(COMPOSITIONS)}. "
                         "Add it to xanes_lib.physics.materials.COMPOSITIONS and DENSITIES_G_CM3.")
    return COMPOSITIONS[name]


def mass_fractions(composition: str) -> dict[str, float]:
    """Mass fraction of each element in a composition.

    Examples
    --------
    >>> round(mass_fractions("NMC811")["Ni"], 3)
    0.483
    """
    atoms = check_composition(composition)
    masses = {el: n * xraydb.atomic_mass(el) for el, n in atoms.items()}
    total = sum(masses.values())
    return {el: m / total for el, m in masses.items()}


def tabulated_edge_energy(element: str, edge: str = "K") -> float:
    """Tabulated absorption-edge energy (eV) of an element (xraydb).

    Examples
    --------
    >>> tabulated_edge_energy("Ni")
    8333.0
    """
    try:
        found = xraydb.xray_edge(element, edge)
    except Exception as exc:  # xraydb raises several types for unknown names
        raise ValueError(f"no tabulated {edge} edge for element {element!r}: {exc}") from exc
    if found is None:  # an edge name xraydb does not know
        raise ValueError(f"no tabulated {edge!r} edge for element {element!r}; edges are named 'K', 'L1', "
                         "'L2', 'L3', ...")
    return float(found.energy)


def _power_law(element: str, e0: float, relative_window_eV: tuple[float, float]) -> tuple[float, float]:
    """Fit ln(mu) = p0 + p1 ln(E) on the tabulated branch inside ``e0 + relative_window_eV``."""
    e = np.linspace(e0 + relative_window_eV[0], e0 + relative_window_eV[1], 64)
    mu = xraydb.mu_elam(element, e)
    p1, p0 = np.polyfit(np.log(e), np.log(mu), 1)
    return float(p0), float(p1)


@dataclass(frozen=True)
class EdgeBranches:
    """Smooth tabulated attenuation of an element on either side of its edge.

    Attributes
    ----------
    element, edge : str
        E.g. "Ni", "K".
    e0 : float
        Tabulated edge energy (eV).
    below, above : tuple of float
        ``(ln a, b)`` of the power laws ``mu = a E^b`` (cm^2/g) fitted below and above.
    """

    element: str
    edge: str
    e0: float
    below: tuple[float, float]
    above: tuple[float, float]

    def mu_below(self, energies_eV) -> np.ndarray:
        """Attenuation (cm^2/g) of the element without its edge, extrapolated across it."""
        e = np.asarray(energies_eV, dtype=np.float64)
        return np.exp(self.below[0] + self.below[1] * np.log(e))

    def mu_above(self, energies_eV) -> np.ndarray:
        """Attenuation (cm^2/g) of the element above its edge, extrapolated below it."""
        e = np.asarray(energies_eV, dtype=np.float64)
        return np.exp(self.above[0] + self.above[1] * np.log(e))

    def edge_step(self, energies_eV) -> np.ndarray:
        """Edge step of the mass attenuation (cm^2/g) at each energy: ``mu_above - mu_below``."""
        return self.mu_above(energies_eV) - self.mu_below(energies_eV)

    def mu(self, energies_eV, normalized_spectrum) -> np.ndarray:
        """Mass attenuation (cm^2/g) of the element in a state with this normalised XANES."""
        return self.mu_below(energies_eV) + np.asarray(normalized_spectrum) * self.edge_step(energies_eV)


def edge_branches(element: str, edge: str = "K") -> EdgeBranches:
    """Fit the smooth tabulated branches of ``element`` around its ``edge``.

    Examples
    --------
    >>> br = edge_branches("Ni")
    >>> 250 < float(br.edge_step(8340.0)) < 320
    True
    """
    e0 = tabulated_edge_energy(element, edge)
    return EdgeBranches(element, edge, e0, _power_law(element, e0, _RELATIVE_BELOW_WINDOW_EV),
                        _power_law(element, e0, _RELATIVE_ABOVE_WINDOW_EV))


def matrix_mass_attenuation(composition: str, edge_element: str, energies_eV) -> np.ndarray:
    """Mass attenuation (cm^2 per gram of compound) of every element except the edge element.

    Parameters
    ----------
    composition : str
        A key of :data:`COMPOSITIONS`.
    edge_element : str
        The element whose edge is imaged; it is left out (its attenuation is modelled
        separately with :class:`EdgeBranches` and reference spectra).
    energies_eV : array_like
        Energies in eV.

    Returns
    -------
    numpy.ndarray
        ``sum_i w_i mu_i(E)`` over the other elements, tabulated (Elam).
    """
    e = check_energies(energies_eV, name="energies_eV", min_points=1)
    w = mass_fractions(composition)
    out = np.zeros_like(e)
    for el, frac in w.items():
        if el != edge_element:
            out += frac * xraydb.mu_elam(el, e)
    return out
