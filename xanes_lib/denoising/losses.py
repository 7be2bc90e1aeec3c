"""Physics-informed loss terms, differentiable through the closed-form Beer-Lambert fit.

Every term is normalised so that its weight is O(1) and 0 means perfect:

``background``
    identity loss of the background, ``MSE(B, B_true) / MSE(1, B_true)``: 1 is as bad as
    not correcting at all (the target metric of the project is <= 0.2).
``coefficient``
    MSE between the coefficient maps of the denoised stack and those of the true stack, both
    fitted by the same model (:mod:`xanes_lib.physics`), divided by the squared coefficient
    scale of the stack (no 1e10 weight needed).
``fraction``
    MSE of the reference fractions ``c_k / sum_j c_j`` inside the sample mask: what the
    oxidation state is made of. Thin pixels count as much as thick ones.
``consistency``
    MSE between the corrected absorbance and its own fit rebuilt by the model (only the part
    of the spectra that no mix of references explains), divided by the squared scale.
``tv``
    total variation of ``ln B`` (the background must be smooth), in units of 1e-3 per pixel.
``stack``
    MSE between the denoised and the true absorbance over the scale squared: a plain data
    term with no physics, for ablations.

``LossWeights.relative`` (an exponent, not a term) divides the ``coefficient`` and
``fraction`` terms by their value for the plain fit of the measured stack
raised to that power: with 1, 1 means "no better than the plain fit" and every sample
weighs the same whatever its noise (otherwise a Co crop, whose two references are nearly
collinear, has coefficient errors hundreds of times larger than a Ni crop and decides the
training alone).

A ``boundary`` term (the fraction error within 3 pixels of edges and chemical boundaries
only) was tried and measured to bring no gain on the held-out stacks; it was removed.
"""

from __future__ import annotations

import torch

from ..physics import LinearAbsorbanceModel, n_references
from .config import LossWeights

__all__ = [
    "background_identity", "coefficient_loss", "fractions", "fraction_loss",
    "self_consistency", "total_variation", "stack_loss", "total_loss",
]

def background_identity(background, true_background):
    """``MSE(B, B_true) / MSE(1, B_true)`` (1 = no better than no correction)."""
    ref = (true_background - 1.0).pow(2).mean().clamp_min(1e-8)
    return (background - true_background).pow(2).mean() / ref


def coefficient_loss(coefficients, true_coefficients, scale: float, n_refs: int | None = None):
    """Mean squared difference of the first ``n_refs`` coefficient maps over the squared scale.

    The reference coefficients carry the chemistry; the background terms (``E^-3``, constant)
    are large and strongly correlated with each other, and would dominate. None uses all.
    """
    sl = slice(None) if n_refs is None else slice(0, n_refs)
    return (coefficients[sl] - true_coefficients[sl]).pow(2).mean() / scale ** 2


def fractions(coefficients, n_refs: int, *, floor: float = 1e-3):
    """Return the reference fractions ``c_k / sum_j c_j`` (K, ...), with the edge step floored."""
    c = coefficients[:n_refs]
    return c / c.sum(0, keepdim=True).clamp_min(floor)


def fraction_loss(coefficients, true_coefficients, n_refs: int, mask, scale: float):
    """MSE of the reference fractions inside ``mask``.

    The edge step is floored at 5 % of the scale and fractions are clipped to [-1, 2], so
    that the few nearly empty pixels at particle rims cannot dominate.
    """
    if mask.sum() == 0:
        return coefficients.sum() * 0.0
    f = fractions(coefficients, n_refs, floor=0.05 * scale).clamp(-1.0, 2.0)
    ft = fractions(true_coefficients, n_refs, floor=0.05 * scale)
    return (f - ft).pow(2)[:, mask].mean()


def self_consistency(corrected_absorbance, model: LinearAbsorbanceModel, scale: float):
    """MSE between the corrected absorbance and its own fit rebuilt, over the squared scale."""
    rebuilt = model.predict(model.fit(corrected_absorbance))
    return (corrected_absorbance - rebuilt).pow(2).mean() / scale ** 2


def total_variation(background):
    """Mean absolute difference of ``ln B`` between neighbouring pixels, in units of 1e-3."""
    lb = background.clamp_min(1e-6).log()
    return ((lb[..., 1:, :] - lb[..., :-1, :]).abs().mean()
            + (lb[..., :, 1:] - lb[..., :, :-1]).abs().mean()) / 1e-3


def stack_loss(denoised_absorbance, true_absorbance, scale: float):
    """MSE between denoised and true absorbance over the squared scale."""
    return (denoised_absorbance - true_absorbance).pow(2).mean() / scale ** 2


def total_loss(out, target, model: LinearAbsorbanceModel, weights: LossWeights) -> tuple:
    """Weighted sum of the switched-on terms for one forward pass.

    Parameters
    ----------
    out : xanes_lib.denoising.inference.ForwardOutput
        The forward pass.
    target : dict
        ``background`` (E, Y, X), ``absorbance`` (E, Y, X) true absorbance, ``mask`` (Y, X)
        bool; the true coefficients are fitted here with the same model.
    model : LinearAbsorbanceModel
    weights : LossWeights

    Returns
    -------
    (torch.Tensor, dict)
        The total and the value of every switched-on term (floats).
    """
    w = weights.to_dict()
    s = out.scale
    k = n_references(model)
    need_true_c = w["coefficient"] or w["fraction"]
    true_c = model.fit(target["absorbance"]) if need_true_c else None
    terms = {}
    if w["background"]:
        terms["background"] = background_identity(out.background, target["background"])
    rel = w["relative"]

    def versus_plain(term, loss_fn):
        value = loss_fn(out.coefficients)
        if rel:
            with torch.no_grad():
                plain = loss_fn(out.raw_coefficients).clamp_min(1e-12)
            value = value / plain ** rel
        terms[term] = value

    if w["coefficient"]:
        versus_plain("coefficient", lambda c: coefficient_loss(c, true_c, s, k))
    if w["fraction"]:
        versus_plain("fraction", lambda c: fraction_loss(c, true_c, k, target["mask"], s))
    if w["consistency"]:
        terms["consistency"] = self_consistency(out.corrected_absorbance, model, s)
    if w["tv"]:
        terms["tv"] = total_variation(out.background)
    if w["stack"]:
        terms["stack"] = stack_loss(out.denoised_absorbance, target["absorbance"], s)
    if not terms:
        raise ValueError("every loss weight is 0; switch on at least one term.")
    total = sum(w[name] * value for name, value in terms.items())
    return total, {name: float(v.detach()) for name, v in terms.items()}
