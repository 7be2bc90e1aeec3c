"""How well single pixels resolve their oxidation state: a check to print next to every map.

A dilute element at a low dose leaves single pixels unable to tell the references apart: their
standard deviation is of the order of the references' whole range of states (capped there by
:func:`xanes_lib.mapping.fit_references`), and the map then says nothing pixel by pixel.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RESOLVED_FRACTION", "resolved_share", "resolution_summary"]

#: Share of the references' range of oxidation states below which a pixel's std counts as
#: resolving its state.
RESOLVED_FRACTION = 0.25


def resolved_share(fit, fraction: float = RESOLVED_FRACTION) -> float:
    """Share of the mapped pixels whose state std is below ``fraction`` of the references' range.

    Parameters
    ----------
    fit : xanes_lib.mapping.ReferenceFit
        A fit (its ``oxidation_state``, ``oxidation_state_std`` and ``oxidation_states``).
    fraction : float
        Share of the range (default :data:`RESOLVED_FRACTION`).

    Returns
    -------
    float
        In [0, 1]; NaN when no pixel is mapped or the references share one state.

    Examples
    --------
    >>> from xanes_lib.mapping import fit_references
    >>> e = np.linspace(8300.0, 8400.0, 40)
    >>> s = np.stack([1 / (1 + np.exp(-(e - 8340) / 2)), 1 / (1 + np.exp(-(e - 8343) / 2))])
    >>> a = np.tensordot(s, np.array([0.3, 0.1]), axes=(0, 0))[:, None, None] * np.ones((1, 2, 2))
    >>> a = a + np.random.default_rng(0).normal(0.0, 1e-3, a.shape)
    >>> resolved_share(fit_references(a, e, s, oxidation_states=[2, 3]))
    1.0
    """
    if not all(hasattr(fit, a) for a in ("oxidation_states", "oxidation_state", "oxidation_state_std")):
        raise TypeError(f"fit must be a ReferenceFit (from fit_references); got {type(fit).__name__}.")
    if not (isinstance(fraction, int | float | np.floating) and 0.0 < float(fraction) <= 1.0):
        raise ValueError(f"fraction must be a number in (0, 1], a share of the references' range of states "
                         f"(default {RESOLVED_FRACTION}); got {fraction!r}.")
    states = np.asarray(fit.oxidation_states, dtype=np.float64)
    span = float(np.ptp(states)) if states.size else 0.0
    std = np.asarray(fit.oxidation_state_std)[np.isfinite(fit.oxidation_state)]
    if std.size == 0 or span <= 0:
        return float("nan")
    return float(np.mean(std < fraction * span))


def resolution_summary(fit, fraction: float = RESOLVED_FRACTION) -> str:
    """One line on how well single pixels resolve their state (:func:`resolved_share`), with advice."""
    share = resolved_share(fit, fraction)
    if not np.isfinite(share):
        return "no mapped pixel to judge the resolution of the oxidation state by"
    span = float(np.ptp(np.asarray(fit.oxidation_states, dtype=np.float64)))
    text = (f"{share:.0%} of the mapped pixels resolve their oxidation state to better than {fraction:g} "
            f"of the references' range (std < {fraction * span:.3g})")
    if share < 0.5:
        text += ("; most single pixels cannot tell the references apart at this dose (a dilute "
                 "element?): pool pixels, with a denoiser (model_path) or by binning the stack")
    return text
