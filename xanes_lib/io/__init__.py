"""Files in and out: stack files (HDF5, FXI-compatible), results files, flat-field correction.

- :mod:`.stacks`     the stack-file contract: :class:`Stack`, :class:`GroundTruth`, checks, writing
- :mod:`.reading`    :func:`read_stack` (validated, read-only: damaged files, dead or saturated
                     frames, raw counts, a wrong element label are refused), ground truth for
                     simulation and tests
- :mod:`.results`    results files: maps of oxidation state, std, fractions, edge energy, residual
- :mod:`.flatfield`  ``(I - dark) / (flat - dark)`` with checks
- ``_hdf5``          private helpers: attribute codecs, deterministic arrays, atomic writes

Energies are eV in memory and keV only on disk (``X_eng``). Inputs are opened read-only;
outputs are written to a temporary file and renamed (whole or not at all), never onto an input
file (:func:`write_stack` protects ``Stack.source``, :func:`write_results` its ``input_path``),
and temporary files a killed writer left beside a target go on the next write to it.
"""

from .flatfield import flat_field_correct
from .reading import (
    BAD_FRAMES_MODES,
    DamagedFileError,
    has_ground_truth,
    read_ground_truth,
    read_stack,
    stack_checksum,
)
from .results import MAP_KEYS, RESULTS_FORMAT, ValenceResults, read_results, write_results
from .stacks import (
    CANDIDATE_ELEMENTS,
    DARK_KEY,
    ENERGY_KEY,
    FLAT_KEY,
    GROUND_TRUTH_KEY,
    IMAGES_KEY,
    PIXEL_SIZE_KEY,
    GroundTruth,
    Stack,
    infer_element,
    write_stack,
)

__all__ = [
    "IMAGES_KEY", "ENERGY_KEY", "FLAT_KEY", "DARK_KEY", "PIXEL_SIZE_KEY", "GROUND_TRUTH_KEY",
    "CANDIDATE_ELEMENTS", "Stack", "GroundTruth", "infer_element", "write_stack", "read_stack",
    "has_ground_truth", "read_ground_truth", "stack_checksum", "ValenceResults", "write_results",
    "read_results", "RESULTS_FORMAT", "MAP_KEYS", "flat_field_correct", "DamagedFileError",
    "BAD_FRAMES_MODES",
]
