"""Accuracy of maps against ground truth (simulated files only)."""

from __future__ import annotations

import numpy as np


def oxidation_state_metrics(estimate, std, truth, mask) -> dict:
    """RMSE, bias and 2-sigma coverage of an oxidation-state map inside a mask.

    Parameters
    ----------
    estimate, std : array_like
        (Y, X) estimated oxidation state and its standard deviation (NaN where not fitted).
    truth : array_like
        (Y, X) true oxidation state (NaN outside the sample).
    mask : array_like of bool
        (Y, X) pixels to score; pixels where any input is NaN are left out and counted.

    Returns
    -------
    dict
        ``rmse``, ``bias`` (mean of estimate - truth), ``coverage_2sigma`` (share of pixels
        with ``|estimate - truth| <= 2 std``), ``n_pixels`` scored and ``n_missing`` (in the
        mask but NaN).

    Examples
    --------
    >>> m = oxidation_state_metrics([[2.1, 2.9]], [[0.1, 0.1]], [[2.0, 3.0]], [[True, True]])
    >>> round(m["rmse"], 3), round(m["bias"], 3), m["coverage_2sigma"]
    (0.1, 0.0, 1.0)
    """
    est, sd, tru = (np.asarray(a, dtype=np.float64) for a in (estimate, std, truth))
    m = np.asarray(mask, dtype=bool)
    if not (est.shape == sd.shape == tru.shape == m.shape):
        raise ValueError(f"shapes differ: estimate {est.shape}, std {sd.shape}, truth {tru.shape}, "
                         f"mask {m.shape}; all must be the same (Y, X).")
    ok = m & np.isfinite(est) & np.isfinite(sd) & np.isfinite(tru)
    err = est[ok] - tru[ok]
    if err.size == 0:
        return dict(rmse=np.nan, bias=np.nan, coverage_2sigma=np.nan, n_pixels=0, n_missing=int(m.sum()))
    return dict(rmse=float(np.sqrt(np.mean(err ** 2))), bias=float(err.mean()),
                coverage_2sigma=float(np.mean(np.abs(err) <= 2 * sd[ok])),
                n_pixels=int(ok.sum()), n_missing=int((m & ~ok).sum()))
