"""Registration across energies: shifts per image, applying them, the common field of view.

- :mod:`.registration`  :func:`register_stack`: sub-pixel translation of every image relative to
                        a reference image, on edge-enhanced absorbance images (robust to the
                        contrast change across the edge and to low counts), with a confidence
                        per shift; schedules "template", "anchored", "chained"
- :mod:`.shifts`        :class:`Alignment` (shifts, confidence, reference, method; saved to and
                        loaded from an HDF5 group ``alignment/``), :func:`apply_alignment`
                        (sub-pixel shift, by default a Fourier phase ramp that keeps white
                        noise white, :func:`fourier_shift_axis`; common mask and crop, the
                        field's edge repeated outside it; noise variance factor per image),
                        :func:`interpolation_variance`

Convention (DESIGN.md): ``shifts_px[e] = (dy, dx)`` is the displacement of image e relative to
the reference image; a feature at (y, x) in the reference is at (y + dy, x + dx) in image e,
and aligning shifts image e by -(dy, dx).
"""

from .registration import (
    DRIFT_TOLERANCE_PX,
    FEATURES,
    MAX_BINNED_SIZE,
    METHODS,
    MIN_REFINE_PX,
    NULL_CONFIDENCE_FACTOR,
    POST_EDGE_OFFSET_EV,
    RELATIVE_CONFIDENCE,
    choose_reference,
    drift_rejected,
    drift_test,
    register_stack,
)
from .shifts import (
    FOURIER_PAD_PX,
    GROUP,
    LANCZOS_RADIUS,
    ORDERS,
    AlignedStack,
    Alignment,
    apply_alignment,
    checked_shifts,
    common_field,
    fourier_shift_axis,
    interpolation_variance,
    move_mask,
    repeat_field_edges,
    shift_image,
)

__all__ = [
    "METHODS", "FEATURES", "MAX_BINNED_SIZE", "POST_EDGE_OFFSET_EV", "RELATIVE_CONFIDENCE",
    "NULL_CONFIDENCE_FACTOR", "DRIFT_TOLERANCE_PX", "MIN_REFINE_PX", "register_stack", "choose_reference",
    "drift_test", "drift_rejected",
    "GROUP", "ORDERS",
    "LANCZOS_RADIUS",
    "Alignment", "AlignedStack", "interpolation_variance", "apply_alignment", "checked_shifts",
    "shift_image", "common_field", "FOURIER_PAD_PX", "fourier_shift_axis", "repeat_field_edges",
    "move_mask",
]
