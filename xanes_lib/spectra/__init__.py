"""Reference spectra of the Ni and Co K-edges: parametric model, shipped library, users' files.

- :mod:`.parametric`   :class:`EdgeParams`, :func:`edge_model`, :func:`half_step_energy`,
  :func:`model_edge_energy`, :func:`model_white_line_energy`, :func:`model_pre_edge_energy`
- :mod:`.edge_fit`     :func:`fit_edge_model`, :func:`derive_params`
- :mod:`.references`   :class:`ParametricReference`, :class:`TabulatedReference`, the shipped library
- :mod:`.calibration`  :func:`calibrate_library` and the command line
  (``python -m xanes_lib.spectra calibrate``)
- :mod:`.variation`    :func:`jitter_reference`, :func:`foreign_reference`
- :mod:`.measured`     :func:`load_measured_reference` (users' two-column files)

Energies in eV; spectra are normalized absorption (edge step 1).
"""

from .calibration import DERIVED, calibrate_library, main
from .edge_fit import FIT_BOUNDS, EdgeFit, derive_params, fit_edge_model
from .measured import load_measured_reference, load_references
from .parametric import (
    K_FACTOR,
    EdgeParams,
    edge_model,
    half_step_energy,
    model_edge_energy,
    model_pre_edge_energy,
    model_white_line_energy,
)
from .references import (
    ParametricReference,
    TabulatedReference,
    default_library_path,
    default_references,
    load_reference_library,
    save_reference_library,
)
from .variation import foreign_reference, jitter_reference

__all__ = [
    "K_FACTOR", "EdgeParams", "edge_model", "half_step_energy", "model_edge_energy",
    "model_white_line_energy", "model_pre_edge_energy", "FIT_BOUNDS", "EdgeFit", "fit_edge_model",
    "derive_params", "default_library_path", "ParametricReference", "TabulatedReference",
    "load_reference_library", "default_references", "save_reference_library", "DERIVED",
    "calibrate_library", "main", "jitter_reference", "foreign_reference", "load_measured_reference",
    "load_references",
]
