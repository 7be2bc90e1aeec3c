"""The physical limit of an oxidation-state map: the Cramer-Rao bound for the stack's photon counts.

Per pixel the absorbance ``A(E) = -ln T(E)`` is linear in the coefficients ``theta`` of the
fit's model (the references, then the smooth background terms; ``A = M theta``). A pixel that
receives ``N0(E)`` photons and transmits ``T(E)`` counts ``lambda = N0 T`` photons, Poisson
distributed; since ``d lambda / d A = -lambda``, the Fisher information of ``theta`` is

    I = M^T diag(w) M,        w(E) = 1 / var(A(E)) = lambda(E)   (photon noise alone)

(read noise adds ``read^2 / lambda^2`` to ``var(A)``, a noisy flat field its own variance:
``read_noise`` and ``extra_variance``).
The oxidation state ``s = sum_k s_k c_k / sum_k c_k`` of the K reference coefficients has the
gradient ``(s_k - s) / sum_k c_k``, and no unbiased estimator of it from the pixel's spectrum
has a variance below ``g^T I^-1 g`` (the per-pixel bound). A map that assumes the state is one
value over a block of pixels (each with its own thickness and background, nuisances) gains
the information of all of them: ``1 / sum_j (1 / bound_j)`` over a 5 x 5 block (the pooled
bound). Denoisers are biased estimators and may go below the per-pixel bound; the pooled bound
is what averaging 25 pixels of equal state could reach, without bias, at best.

Ground truth gives ``theta`` (the noise-free transmission) and ``N0`` (the dose and the beam
background): :func:`stack_state_bound`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..physics import LinearAbsorbanceModel, absorbance, reference_model
from ..spectra import default_references
from ..validate import check_image_mask, check_stack

__all__ = ["POOL_PX", "StateBound", "oxidation_state_bound", "stack_state_bound", "physical_limits"]

#: Side (pixels) of the square block of the pooled bound.
POOL_PX = 5


@dataclass
class StateBound:
    """Cramer-Rao bounds of the oxidation state, per pixel and pooled over blocks.

    Attributes
    ----------
    per_pixel_std : numpy.ndarray
        (Y, X) square root of the per-pixel bound (inf where the pixel holds no edge element).
    pooled_std : numpy.ndarray
        (Y, X) square root of the bound for one state shared by the ``pool_px`` x ``pool_px``
        block of mask pixels centred on the pixel (inf outside the mask).
    pool_px : int
        Side of the block.
    """

    per_pixel_std: np.ndarray
    pooled_std: np.ndarray
    pool_px: int

    def summary(self, mask) -> dict:
        """RMS and median of both bounds over ``mask`` (the pixels a map is scored on).

        The RMS is the bound of the RMSE over those pixels (``sqrt(mean(bound))``), comparable
        with :func:`xanes_lib.evaluation.oxidation_state_metrics`' ``rmse``; pixels of the mask
        without an edge step in the truth (unbounded) are counted apart, not averaged.
        """
        m = check_image_mask(mask, self.per_pixel_std.shape)
        bounded = m & np.isfinite(self.per_pixel_std)
        # unbounded: mask pixels whose true coefficients hold no edge step (e.g. the mask's rim)
        out = {"n_pixels": int(bounded.sum()), "n_unbounded": int((m & ~bounded).sum())}
        for name, std in (("per_pixel", self.per_pixel_std), ("pooled", self.pooled_std)):
            v = std[bounded].astype(np.float64)
            out[f"{name}_rms"] = float(np.sqrt(np.mean(v ** 2))) if v.size else float("nan")
            out[f"{name}_median"] = float(np.median(v)) if v.size else float("nan")
        out["pool_px"] = self.pool_px
        return out


def oxidation_state_bound(transmission, counts, model: LinearAbsorbanceModel, oxidation_states, *,
                          mask=None, read_noise: float = 0.0, extra_variance=0.0,
                          pool_px: int = POOL_PX) -> StateBound:
    """Return the Cramer-Rao bounds of the oxidation state of every pixel.

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) noise-free transmission whose absorbance the model explains (the sample's;
        its coefficients are the true parameters).
    counts : array_like
        Expected detected photons per pixel and energy: (E, Y, X), or anything that
        broadcasts to it (incident photons times the transmission the detector sees).
    model : LinearAbsorbanceModel
        The fit's model: K reference columns first, then the background terms.
    oxidation_states : array_like
        (K,) oxidation state of each reference.
    mask : array_like of bool, optional
        (Y, X) pixels that pool (default: every pixel with the edge element).
    read_noise : float
        RMS read noise of the detector (counts per image): adds ``read_noise^2 / lambda^2``.
    extra_variance : float or array_like
        Variance of the absorbance beyond the sample's own counts (a noisy flat field,
        noise), broadcast to (E, Y, X).
    pool_px : int
        Side of the pooled block.

    Returns
    -------
    StateBound

    Raises
    ------
    ValueError
        Shapes that do not match, counts that are not positive, or a pool side below 1.

    Examples
    --------
    >>> from xanes_lib.physics import reference_model
    >>> e = np.linspace(8300.0, 8420.0, 60)
    >>> model = reference_model(e, "Ni")
    >>> t = np.exp(-model.predict(np.array([0.5, 0.5, 0.2, 0.1]))[:, None, None] * np.ones((1, 8, 8)))
    >>> b = oxidation_state_bound(t, 1000.0, model, [2.0, 3.0])
    >>> round(float(b.per_pixel_std[4, 4] / b.pooled_std[4, 4]), 3)
    5.0
    """
    t = check_stack(transmission, name="transmission")
    if t.shape[0] != model.matrix.shape[0]:
        raise ValueError(f"transmission has {t.shape[0]} energies, the model {model.matrix.shape[0]}; "
                         "build the model on the stack's energies.")
    ox = np.asarray(oxidation_states, dtype=np.float64).ravel()
    k = ox.size
    if not 1 <= k <= model.n_params:
        raise ValueError(f"{k} oxidation states for a model of {model.n_params} columns; give one per "
                         "reference column.")
    if int(pool_px) != pool_px or pool_px < 1:
        raise ValueError(f"pool_px={pool_px!r}; give a positive whole number of pixels (e.g. 5).")
    t = np.clip(np.asarray(t, dtype=np.float64), 1e-12, None)
    lam = np.broadcast_to(np.asarray(counts, dtype=np.float64), t.shape) * t
    bad = ~np.isfinite(lam) | (lam <= 0)
    if bad.any():
        raise ValueError(f"counts must be finite and positive at every energy and pixel (expected photons); "
                         f"{int(bad.sum())} values are not, e.g. {float(lam[bad][0])!r} counts. Pass the "
                         "dose (photons per pixel), not a transmission.")
    extra = np.broadcast_to(np.asarray(extra_variance, dtype=np.float64), t.shape)
    var = (lam + float(read_noise) ** 2) / lam ** 2 + extra
    m = model.matrix                                          # (E, P)
    theta = model.fit(absorbance(t, floor=1e-12))            # (P, Y, X) the true parameters
    info = np.einsum("ep,eq,eyx->yxpq", m, m, 1.0 / var)      # (Y, X, P, P) Fisher information
    total = theta[:k].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        state = np.tensordot(ox, theta[:k], axes=1) / total
        grad = np.zeros((*t.shape[1:], model.n_params))
        grad[..., :k] = np.moveaxis((ox[:, None, None] - state) / total, 0, -1)
    holds = np.isfinite(state) & (total > 0)
    bound = np.full(t.shape[1:], np.inf)
    if holds.any():
        g = grad[holds]
        bound[holds] = np.einsum("np,np->n", g, np.linalg.solve(info[holds], g[..., None])[..., 0])
    pool = holds if mask is None else check_image_mask(mask, t.shape[1:]) & holds
    with np.errstate(divide="ignore"):
        precision = np.where(pool, 1.0 / bound, 0.0)
    # the sum of the precisions over the block (uniform_filter is the mean: times its size)
    summed = ndimage.uniform_filter(precision, int(pool_px), mode="constant") * pool_px ** 2
    with np.errstate(divide="ignore"):
        pooled = np.where(pool & (summed > 0), 1.0 / np.maximum(summed, 1e-300), np.inf)
    return StateBound(np.sqrt(bound).astype(np.float32), np.sqrt(pooled).astype(np.float32), int(pool_px))


def stack_state_bound(stack, truth, *, references=None, pool_px: int = POOL_PX) -> StateBound:
    """Return the bounds of a simulated stack from its ground truth.

    The true parameters are the fit of the noise-free transmission (``truth.transmission``)
    with the references (the element's shipped ones by default, as the pipelines fit);
    the expected counts are the dose times the beam background times that transmission.
    A flat field averaged over ``flat_frames`` frames of the dose adds its variance, and read
    noise its own, when the truth records them. The illumination profile (within +/- 10 % of
    1) is not in the truth and is taken as 1.

    Parameters
    ----------
    stack : xanes_lib.io.Stack
        The simulated stack (its energies and element).
    truth : xanes_lib.io.GroundTruth
        Its truth, in the stack's frame (e.g. after :func:`aligned_like_notebook04`).
    references : sequence of reference objects, optional
        The references of the fit (default: the element's shipped ones).
    pool_px : int
        Side of the pooled block.

    Returns
    -------
    StateBound
    """
    dose = float(truth.params.get("dose", np.nan))
    if not np.isfinite(dose) or dose <= 0:
        raise ValueError(f"the truth records dose={truth.params.get('dose')!r}; the bound needs the "
                         "photons per pixel of the simulation.")
    refs = default_references(stack.element) if references is None else references
    model = reference_model(stack.energies_eV, references=refs)
    ox = [r.oxidation_state for r in refs]
    frames = float(truth.params.get("flat_frames") or 0)
    read = float(truth.params.get("read_noise") or 0.0)
    # a flat of `frames` frames of the dose adds (dose + read^2) / (frames dose^2) to -ln T's variance
    flat = (dose + read ** 2) / (frames * dose ** 2) if frames > 0 else 0.0
    return oxidation_state_bound(truth.transmission, dose * np.asarray(truth.background, dtype=np.float64),
                                 model, ox, mask=truth.mask, read_noise=read, extra_variance=flat,
                                 pool_px=pool_px)


def physical_limits(stack, truth, *, references=None) -> dict:
    """Return what to read a simulated stack's oxidation-state RMSEs against.

    Parameters
    ----------
    stack : xanes_lib.io.Stack
    truth : xanes_lib.io.GroundTruth
        In the stack's frame.
    references : sequence of reference objects, optional
        The references of the fit (default: the element's shipped ones).

    Returns
    -------
    dict
        :meth:`StateBound.summary` of :func:`stack_state_bound` over the scored pixels (the
        truth's mask where it has a state): ``per_pixel_rms``, ``per_pixel_median``,
        ``pooled_rms``, ``pooled_median`` ...; and ``truth_state_std``, the spread of the true
        state: the RMSE of the best map of one value (the true mean). A map scoring near it
        shows little of the chemistry.
    """
    scored = truth.mask & np.isfinite(truth.oxidation_state)
    limits = stack_state_bound(stack, truth, references=references).summary(scored)
    limits["truth_state_std"] = float(np.std(truth.oxidation_state[scored])) if scored.any() else float("nan")
    return limits
