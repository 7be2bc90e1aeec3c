"""The physics of absorption: the linear Beer-Lambert model with its reference basis, materials.

- :mod:`.linear_model`  ``A = M c``: :func:`build_model`, :func:`reference_model` (the latent
  space of the denoisers and the basis of the maps), :func:`absorbance` (numpy or torch input,
  torch never imported here)
- :mod:`.materials`     NMC compositions, densities, tabulated edge energies
  (:func:`tabulated_edge_energy`) and cross-sections (xraydb)
"""

from .linear_model import (
    DEFAULT_BACKGROUND,
    LinearAbsorbanceModel,
    absorbance,
    build_model,
    n_references,
    reference_model,
)
from .materials import (
    COMPOSITIONS,
    DENSITIES_G_CM3,
    EdgeBranches,
    check_composition,
    edge_branches,
    mass_fractions,
    matrix_mass_attenuation,
    tabulated_edge_energy,
)

__all__ = [
    "LinearAbsorbanceModel", "DEFAULT_BACKGROUND", "build_model", "reference_model", "n_references",
    "absorbance", "COMPOSITIONS", "DENSITIES_G_CM3", "check_composition", "mass_fractions",
    "tabulated_edge_energy", "EdgeBranches", "edge_branches", "matrix_mass_attenuation",
]
