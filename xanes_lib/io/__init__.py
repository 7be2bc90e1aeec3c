"""Files in and out: stack files (HDF5, FXI-compatible; TIFF), results files, flat-field correction.

- :mod:`.stacks`     the stack-file contract: :class:`Stack`, :class:`GroundTruth` (with the true
                     drift of simulated stacks), checks, writing
- :mod:`.reading`    :func:`read_stack` (validated, read-only: damaged files, dead or saturated
                     frames, raw counts (refused, or flat-field corrected on request), a wrong
                     element label are refused; every decision in ``Stack.provenance``), ground
                     truth for simulation and tests
- :mod:`.positions`  multi-position scans (FXI ``..._repeat_RR_pos_PP.h5``, or several positions
                     in one file): :func:`list_positions`, :func:`read_position`
- :mod:`.tiff`       TIFF stacks (multi-page or a folder) with an energy list: :func:`read_tiff_stack`
- :mod:`.header`     :func:`read_stack_header`: layout and metadata of a stack file (HDF5 or Zarr)
                     without reading its images, for the chunked pipeline
- :mod:`.results_writer` :class:`ResultsWriter`: a results file (HDF5 or Zarr) written slice by
                     slice, whole or not at all
- :mod:`.results`    results files: maps of oxidation state, std, fractions, edge energy, residual
- :mod:`.flatfield`  ``(I - dark) / (flat - dark)`` with checks
- :mod:`.export`     maps as TIFF files and per-particle statistics as CSV, for other tools
- ``_hdf5``          private helpers: attribute codecs, deterministic arrays, atomic writes
- ``_intake``        private steps shared by the readers: intensity, bad frames, element, pixel size

Energies are eV in memory and keV only on disk (``X_eng``). Inputs are opened read-only;
outputs are written to a temporary file and renamed (whole or not at all), never onto an input
file (:func:`write_stack` protects ``Stack.source``, :func:`write_results` its ``input_path``),
and temporary files a killed writer left beside a target go on the next write to it.
"""

from .export import (
    MAP_TIFF_NAMES,
    PARTICLE_COLUMNS,
    particle_labels,
    particle_statistics,
    write_map_tiffs,
    write_particle_csv,
)
from .flatfield import flat_field_correct
from .header import ZARR_SUFFIX, StackHeader, is_zarr, read_stack_header
from .positions import HDF5_EXTENSIONS, Position, list_positions, read_position
from .reading import (
    BAD_FRAMES_MODES,
    RAW_COUNTS_MODES,
    DamagedFileError,
    has_ground_truth,
    read_ground_truth,
    read_stack,
    stack_checksum,
)
from .results import MAP_KEYS, RESULTS_FORMAT, ValenceResults, read_results, results_content, write_results
from .results_writer import ResultsWriter, replace_directory
from .stacks import (
    CANDIDATE_ELEMENTS,
    DARK_KEY,
    DRIFT_KEY,
    ENERGY_KEY,
    FLAT_KEY,
    GROUND_TRUTH_KEY,
    IMAGES_KEY,
    MAGNIFICATION_KEY,
    PIXEL_SIZE_KEY,
    PROVENANCE_ATTR,
    GroundTruth,
    Stack,
    infer_element,
    write_stack,
)
from .tiff import TIFF_EXTENSIONS, read_energy_list, read_tiff_stack

__all__ = [
    "IMAGES_KEY", "ENERGY_KEY", "FLAT_KEY", "DARK_KEY", "PIXEL_SIZE_KEY", "MAGNIFICATION_KEY",
    "GROUND_TRUTH_KEY", "PROVENANCE_ATTR", "DRIFT_KEY", "CANDIDATE_ELEMENTS", "Stack", "GroundTruth",
    "infer_element", "write_stack", "read_stack", "has_ground_truth", "read_ground_truth",
    "stack_checksum", "ValenceResults", "write_results", "read_results", "RESULTS_FORMAT", "MAP_KEYS",
    "flat_field_correct", "DamagedFileError", "BAD_FRAMES_MODES", "RAW_COUNTS_MODES",
    "HDF5_EXTENSIONS", "Position", "list_positions", "read_position",
    "TIFF_EXTENSIONS", "read_energy_list", "read_tiff_stack",
    "MAP_TIFF_NAMES", "PARTICLE_COLUMNS", "write_map_tiffs", "particle_labels", "particle_statistics",
    "write_particle_csv", "StackHeader", "read_stack_header", "is_zarr", "ZARR_SUFFIX",
    "results_content", "ResultsWriter", "replace_directory",
]
