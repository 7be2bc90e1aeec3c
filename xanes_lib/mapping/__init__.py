"""From a stack to maps: normalisation, edge energies, mask, linear-combination fit, flags.

- :mod:`.normalization`  pre-/post-edge lines and edge step of every pixel
- :mod:`.edges`          edge energies (half step, derivative) and white-line energies
- :mod:`.mask`           the sample mask: :func:`significant_mask` (per-pixel noise), :func:`sample_mask`
- :mod:`.lcf`            :func:`fit_references`: per-pixel reference fit with uncertainties
- :mod:`.energy_shift`   :func:`fit_energy_shift`: one shift of the references;
                         :func:`calibrate_energy_shift`: robust to unexplained pixels, applied if significant
                         (uncertainty with a jackknife over regions of the field)
- :mod:`.phases`         phases outside the references: residual map, :func:`unexplained_pixels`
                         (a test against each pixel's own noise), :func:`mark_unexplained`
- :mod:`.resolution`     :func:`resolution_summary`: how many pixels resolve their state at all

Energies are eV; arrays put energies first ((E, Y, X) stacks, (Y, X) maps, (K, Y, X)
per-reference maps).
"""

from ._basis import check_reference_edges
from .edges import edge_energy, white_line_energy
from .energy_shift import (
    MIN_REGIONS,
    REGION_GRID,
    EnergyCalibration,
    EnergyShiftFit,
    calibrate_energy_shift,
    fit_energy_shift,
)
from .lcf import FIT_MODES, MAX_NONNEG_REFERENCES, ReferenceFit, fit_references
from .mask import (
    MASK_STATISTICS,
    SIGNIFICANCE_THRESHOLD,
    SampleMask,
    absorption_significance,
    empty_field_baseline,
    mask_from_significance,
    sample_mask,
    significant_mask,
)
from .normalization import (
    POST_EDGE_START_EV,
    PRE_EDGE_GAP_EV,
    NormalizedSpectra,
    mean_spectrum_e0,
    normalize_spectra,
    spectrum_sum,
)
from .phases import (
    EMPTY_FIELD_QUANTILE,
    FALSE_FLAG_RATE,
    MIN_RELATIVE_RESIDUAL,
    UnexplainedPixels,
    flag_unexplained,
    mark_unexplained,
    residual_map,
    unexplained_pixels,
)
from .resolution import RESOLVED_FRACTION, resolution_summary, resolved_share

__all__ = [
    "PRE_EDGE_GAP_EV", "POST_EDGE_START_EV", "NormalizedSpectra", "normalize_spectra", "edge_energy",
    "white_line_energy", "SIGNIFICANCE_THRESHOLD", "MASK_STATISTICS", "SampleMask", "sample_mask",
    "significant_mask", "absorption_significance", "mask_from_significance", "empty_field_baseline",
    "FIT_MODES",
    "MAX_NONNEG_REFERENCES", "spectrum_sum", "mean_spectrum_e0",
    "ReferenceFit", "fit_references", "EnergyShiftFit", "fit_energy_shift",
    "EnergyCalibration", "calibrate_energy_shift", "REGION_GRID", "MIN_REGIONS", "residual_map",
    "flag_unexplained", "FALSE_FLAG_RATE", "MIN_RELATIVE_RESIDUAL", "UnexplainedPixels", "unexplained_pixels",
    "mark_unexplained", "EMPTY_FIELD_QUANTILE", "check_reference_edges", "RESOLVED_FRACTION",
    "resolved_share",
    "resolution_summary",
]
