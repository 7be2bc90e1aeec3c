"""The physics of absorption: the linear Beer-Lambert model with its reference basis, materials.

- :mod:`.linear_model`  ``A = M c``: :func:`build_model`, :func:`reference_model` (the latent
  space of the denoisers and the basis of the maps), :func:`absorbance` (numpy or torch input,
  torch never imported here)
- :mod:`.materials`     NMC compositions, densities and tabulated cross-sections (xraydb)
"""

from .linear_model import (LinearAbsorbanceModel, DEFAULT_BACKGROUND, build_model, reference_model,
                           n_references, absorbance)
from .materials import (COMPOSITIONS, DENSITIES_G_CM3, check_composition, mass_fractions, edge_energy_eV,
                        EdgeBranches, edge_branches, matrix_mass_attenuation)

__all__ = [
    "LinearAbsorbanceModel", "DEFAULT_BACKGROUND", "build_model", "reference_model", "n_references",
    "absorbance", "COMPOSITIONS", "DENSITIES_G_CM3", "check_composition", "mass_fractions",
    "edge_energy_eV", "EdgeBranches", "edge_branches", "matrix_mass_attenuation",
]
