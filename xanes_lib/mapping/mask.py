"""The sample mask: pixels with enough edge step (Otsu threshold unless given)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "SampleMask", "sample_mask",
]


class SampleMask(NamedTuple):
    """Result of :func:`sample_mask`: ``mask, threshold = sample_mask(edge_step)``."""

    mask: np.ndarray
    threshold: float


def sample_mask(edge_step, *, threshold: float | None = None) -> SampleMask:
    """Select the pixels whose edge step exceeds a threshold (automatic: Otsu's method).

    Parameters
    ----------
    edge_step : array_like
        (Y, X) edge step per pixel (e.g. ``normalize_spectra(...).edge_step`` or the
        ``edge_step`` of a :class:`ReferenceFit`).
    threshold : float, optional
        Pixels with ``edge_step > threshold`` are kept. None computes Otsu's threshold
        (:func:`skimage.filters.threshold_otsu`, 256 bins) on the finite values between their
        0.5 and 99.5 percentiles (so a few outliers do not stretch the histogram): the value
        that best separates the empty background (step ~ 0) from the sample.

    Returns
    -------
    SampleMask
        ``mask`` (bool, shape of ``edge_step``; NaN is never inside) and the ``threshold``
        used.

    Raises
    ------
    ValueError
        No finite values, all values equal (no automatic threshold: pass one), or a
        non-finite threshold.

    Examples
    --------
    >>> step = np.r_[np.zeros(50), np.ones(50)].reshape(10, 10)
    >>> m, t = sample_mask(step)
    >>> int(m.sum()), 0 < t < 1
    (50, True)
    """
    j = np.asarray(edge_step, dtype=np.float64)
    if threshold is None:
        finite = j[np.isfinite(j)]
        if finite.size == 0:
            raise ValueError("edge_step holds no finite value; the mask cannot be determined. "
                             "Check the normalization or pass threshold=.")
        lo, hi = np.percentile(finite, [0.5, 99.5])
        core = finite[(finite >= lo) & (finite <= hi)]
        if core.size == 0 or core.min() == core.max():
            raise ValueError(f"edge_step has (almost) a single value ({lo:g}), so Otsu's method "
                             "cannot separate sample from background; pass threshold= explicitly.")
        from skimage.filters import threshold_otsu

        threshold = float(threshold_otsu(core, nbins=256))
    else:
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite or None (automatic); got {threshold}.")
    with np.errstate(invalid="ignore"):
        mask = j > threshold
    return SampleMask(mask, threshold)
