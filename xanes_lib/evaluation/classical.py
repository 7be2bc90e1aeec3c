"""Compare denoising pipelines on simulated stacks: classical denoisers, the networks, scores.

Every pipeline turns a measured stack into a transmission stack (and, when it estimates one,
a background); :func:`oxidation_state_fit` then runs the same valence fit as notebook 04
on it, and :func:`score_pipeline` compares with the ground truth (simulated files only).
Where a stack holds a phase outside the references, :func:`unexplained_auc` scores how well
a fit's residual reveals it, :func:`unexplained_auc_ceiling` the same for the noise-free truth
(the best any pipeline can do with these references) and :func:`unexplained_flag_scores` the
test that notebook 04 flags the phase with.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from scipy import ndimage

from .. import mapping
from ..denoising.beam import calibrate_energy_shift_with_beam, divide_beam_background, estimate_background
from ..denoising.strength import self_tuned_gaussian
from ..physics import absorbance, reference_model
from ..progress import progress_bar
from ..spectra import default_references
from .metrics import background_error, boundary_mask, matched_negatives, oxidation_state_metrics, roc_auc

__all__ = [
    "CLASSICAL_GRID", "noise_sigma", "classical_denoise", "oxidation_state_fit", "score_pipeline",
    "run_classical", "run_hybrid", "run_self_tuned", "run_network", "unexplained_auc",
    "unexplained_auc_ceiling", "unexplained_flag_scores", "notebook_shift_eV",
]

#: Classical pipelines and the parameter values tried for each (the best is kept with the truth).
CLASSICAL_GRID = {
    "gaussian": {"sigma": [1.0, 2.0, 3.0, 4.0]},
    "tv": {"weight": [0.02, 0.05, 0.1]},
    "nlm": {"h_factor": [0.8]},
    "pca": {"n_components": [3, 5, 8]},
}


def noise_sigma(image) -> float:
    """Robust noise standard deviation of an image: MAD of horizontal neighbour differences.

    Examples
    --------
    >>> round(noise_sigma(np.random.default_rng(0).normal(0, 0.1, (200, 200))), 2)
    0.1
    """
    d = np.diff(np.asarray(image, np.float64), axis=-1).ravel()
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def classical_denoise(transmission, method: str, **params) -> np.ndarray:
    """Denoise a transmission stack with a classical method (a new float32 array).

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) transmission; not modified.
    method : {"gaussian", "tv", "nlm", "pca"}
        "gaussian": each image smoothed with ``sigma`` (pixels). "tv": Chambolle total
        variation of each image with ``weight``. "nlm": scikit-image non-local means of each
        image, ``h = h_factor x`` the noise sigma (:func:`noise_sigma`). "pca": the absorbance spectra
        truncated to their first ``n_components`` principal components along energy.

    Returns
    -------
    numpy.ndarray
        (E, Y, X) float32.
    """
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    if method not in CLASSICAL_GRID:
        raise ValueError(f"unknown classical method {method!r}; choose from {sorted(CLASSICAL_GRID)}.")
    needed = [p for p in CLASSICAL_GRID[method] if p not in params and p != "h_factor"]
    if needed:
        raise ValueError(f"classical_denoise(..., {method!r}) needs {needed[0]}=..., e.g. "
                         f"{needed[0]}={CLASSICAL_GRID[method][needed[0]][0]}.")
    t = np.asarray(transmission, dtype=np.float32)
    if t.ndim != 3:
        raise ValueError(f"transmission must be an (E, Y, X) stack; got shape {t.shape}.")
    if method == "pca" and not 1 <= int(params["n_components"]) <= t.shape[0]:
        raise ValueError(f"n_components must be in 1..{t.shape[0]} (the energies); got "
                         f"{params['n_components']}.")
    if method == "gaussian":
        return ndimage.gaussian_filter(t, sigma=(0, params["sigma"], params["sigma"])).astype(np.float32)
    if method == "tv":
        return np.stack([denoise_tv_chambolle(im, weight=params["weight"]) for im in t]).astype(np.float32)
    if method == "nlm":
        out = np.empty_like(t)
        for i, im in enumerate(t):
            sig = noise_sigma(im)
            out[i] = denoise_nl_means(im, h=params.get("h_factor", 0.8) * sig, sigma=sig, patch_size=5,
                                      patch_distance=6, fast_mode=True)
        return out
    a = absorbance(t).reshape(t.shape[0], -1).astype(np.float64)  # "pca"
    mean = a.mean(1, keepdims=True)
    u, sv, vt = np.linalg.svd(a - mean, full_matrices=False)
    r = int(params["n_components"])
    rec = mean + (u[:, :r] * sv[:r]) @ vt[:r]
    return np.exp(-rec).reshape(t.shape).astype(np.float32)


def oxidation_state_fit(transmission, energies_eV, element: str, *, mask, references=None,
                        mode: str = "nonneg_sum_to_one",
                        fit_shift: bool | float = False) -> mapping.ReferenceFit:
    """Run the valence fit of notebook 04 on a (processed) stack, on the given pixels.

    With ``fit_shift`` True the reference energy shift is first calibrated on ``mask`` of this
    stack with :func:`xanes_lib.mapping.calibrate_energy_shift` (applied only when
    significant); a number is the shift (eV) to apply, e.g. the one notebook 04 calibrates on
    the raw stack (:func:`notebook_shift_eV`), so that every pipeline of a stack is fitted
    alike. It is off by default: simulated stacks are calibrated, and for Co (0.9 eV between
    Co3+ and Co4+) a shift is nearly degenerate with the oxidation state (on a noise-free Co
    stack it biases the state by -0.2).
    """
    refs = references if references is not None else default_references(element)
    # the fits take -ln themselves, so that they can refuse absorbance passed as transmission
    t = np.asarray(transmission, dtype=np.float64)
    if isinstance(fit_shift, bool):
        shift = (mapping.calibrate_energy_shift(t, energies_eV, refs, mask=mask,
                                                input_kind="transmission").applied_shift_eV if fit_shift
                 else 0.0)
    else:
        shift = float(fit_shift)
    return mapping.fit_references(t, energies_eV, refs, mask=mask, mode=mode, shift_eV=shift,
                                  input_kind="transmission")


def notebook_shift_eV(stack) -> float:
    """Return the references' energy shift (eV) notebook 04 applies to a stack (0 if not significant).

    Calibrated with its defaults on the raw stack: the shipped references, the significance
    mask and :func:`xanes_lib.denoising.calibrate_energy_shift_with_beam` (the stack divided by
    its beam background; pixels the references do not explain left out). Not aligned.
    """
    return _notebook_calibration(stack)[1]


def _notebook_calibration(stack) -> tuple[np.ndarray, float]:
    """Notebook 04's significance mask of the raw stack and the shift it applies."""
    refs = default_references(stack.element)
    e, t = stack.energies_eV, stack.transmission
    sample = mapping.significant_mask(absorbance(np.asarray(t, dtype=np.float64)), e, refs).mask
    return sample, float(calibrate_energy_shift_with_beam(t, e, refs, mask=sample)[0].applied_shift_eV)


def _foreign(truth) -> np.ndarray:
    """(Y, X) bool sample pixels of the truth's phase outside the references (all False without one)."""
    foreign = getattr(truth, "foreign_mask", None)
    return np.zeros(truth.mask.shape, bool) if foreign is None else foreign & truth.mask


def _foreign_sets(score, truth):
    """Positive and negative pixels of the unseen-phase AUC of ``score``, or None without a phase.

    Positives: the truth's ``foreign_mask`` pixels in its mask where ``score`` is finite;
    negatives: the other sample pixels whose areal density lies in the positives' range.
    """
    foreign = _foreign(truth)
    pos = foreign & np.isfinite(score)
    if not pos.any():
        return None
    neg = matched_negatives(truth.areal_density, pos, truth.mask & ~foreign)
    return (pos, neg) if neg.any() else None


def _foreign_auc(score, truth) -> float:
    """ROC AUC of a (Y, X) ``score`` separating the foreign phase from matched sample pixels."""
    sets = _foreign_sets(score, truth)
    return float("nan") if sets is None else roc_auc(score, *sets)


def unexplained_auc(res: mapping.ReferenceFit, truth) -> float:
    """How well the fit residual reveals a phase outside the references (ROC AUC; NaN without one).

    Positives: the truth's ``foreign_mask`` pixels; negatives: other sample pixels with the
    same range of edge-element areal density (a residual that grows with thickness alone
    cannot score).
    """
    return _foreign_auc(res.residual_rms, truth)


def unexplained_auc_ceiling(stack, truth, *, fit_shift: bool | float = False) -> float:
    """Return the unseen-phase AUC of the noise-free stack: the most a pipeline's residual can reach.

    :func:`unexplained_auc` of the valence fit (:func:`oxidation_state_fit`, the shipped
    references of the stack's element and the same ``fit_shift`` as the pipelines) of the
    truth's noise- and beam-free transmission. Below 1 where the phase is not apart from the
    references once they are fitted (e.g. references perturbed as much as the phase differs).

    Parameters
    ----------
    stack : xanes_lib.io.Stack
        The simulated stack (its energies and element).
    truth : xanes_lib.io.GroundTruth
        Its ground truth.
    fit_shift : bool or float
        Calibrate the references' energy shift on the truth's mask first, or the shift (eV)
        to apply (as for the pipelines, :func:`oxidation_state_fit`).

    Returns
    -------
    float
        ROC AUC in [0, 1]; NaN where the truth has no foreign phase.
    """
    if not _foreign(truth).any():
        return float("nan")
    res = oxidation_state_fit(truth.transmission, stack.energies_eV, stack.element, mask=truth.mask,
                              fit_shift=fit_shift)
    return unexplained_auc(res, truth)


def unexplained_flag_scores(stack, truth, *, smooth_px: float = 2.5,
                            false_flag_rate: float = mapping.FALSE_FLAG_RATE) -> dict:
    """Score the test that notebook 04 flags unexplained pixels with, on the raw stack.

    As notebook 04 with its defaults (shipped references, significance mask, energy shift
    calibrated with the beam background, stack divided by its beam background, then
    :func:`xanes_lib.mapping.unexplained_pixels`), except the alignment: the stack is taken
    as it is (a drifting one is flagged at particle edges). Never denoised.

    Parameters
    ----------
    stack : xanes_lib.io.Stack
        The simulated stack as measured.
    truth : xanes_lib.io.GroundTruth
        Its ground truth.
    smooth_px, false_flag_rate : float
        Passed to :func:`xanes_lib.mapping.unexplained_pixels` (notebook 04's values).

    Returns
    -------
    dict
        ``flag_auc``: ROC AUC of the test's ``statistic`` with the positives and negatives of
        :func:`unexplained_auc`; ``flagged_foreign`` and ``flagged_others``: the share of the
        tested pixels of the foreign phase, and of the other sample pixels, that are flagged;
        ``shift_eV``: the references' energy shift applied. NaN scores without a foreign phase.
    """
    refs = default_references(stack.element)
    e, t = stack.energies_eV, stack.transmission
    sample, shift = _notebook_calibration(stack)
    witness = divide_beam_background(t, e, refs, shift_eV=shift)[0]
    test = mapping.unexplained_pixels(witness, e, refs, mask=sample, shift_eV=shift, smooth_px=smooth_px,
                                      false_flag_rate=false_flag_rate)
    out = {"flag_auc": _foreign_auc(test.statistic, truth), "shift_eV": float(shift)}
    foreign = _foreign(truth)
    for name, sel in (("flagged_foreign", foreign), ("flagged_others", truth.mask & ~foreign)):
        sel = sel & test.mask
        out[name] = float(test.flags[sel].mean()) if foreign.any() and sel.any() else float("nan")
    return out


def score_pipeline(res: mapping.ReferenceFit, truth, *, background=None, boundary_width: int = 3) -> dict:
    """Accuracy of a valence fit (and of a background estimate) against the ground truth.

    Returns
    -------
    dict
        ``rmse``, ``bias``, ``coverage_2sigma`` inside the true mask; ``rmse_boundary`` within
        ``boundary_width`` pixels of particle edges and chemical boundaries, ``rmse_interior``
        elsewhere in the mask; ``background_rms_inside``/``_outside`` and their ratios to no
        correction (``background_ratio_inside``/``_outside``; 1.0 when no background is given).
    """
    m = truth.mask
    out = oxidation_state_metrics(res.oxidation_state, res.oxidation_state_std, truth.oxidation_state, m)
    near = boundary_mask(m, truth.oxidation_state, width=boundary_width)
    out["rmse_boundary"] = oxidation_state_metrics(res.oxidation_state, res.oxidation_state_std,
                                                   truth.oxidation_state, m & near)["rmse"]
    out["rmse_interior"] = oxidation_state_metrics(res.oxidation_state, res.oxidation_state_std,
                                                   truth.oxidation_state, m & ~near)["rmse"]
    b = np.ones_like(truth.background) if background is None else background
    out.update(background_error(b, truth.background, m))
    out["unexplained_auc"] = unexplained_auc(res, truth)
    return out


def run_classical(stack, truth, *, grid=None, progress: bool = True, background=None,
                  label: str = "classical", fit_shift: bool | float = False) -> dict:
    """Score every classical pipeline (and the raw stack) on one simulated stack.

    For each method the parameter value with the lowest oxidation-state RMSE against the
    truth is kept (the baselines at their strongest). Returns ``{name: scores}`` where each
    scores dict also holds ``params`` and ``seconds`` (denoising time).

    ``background`` (E, Y, X), e.g. the low-rank beam background of :mod:`xanes_lib.denoising.beam`, is
    divided out first and scored as the pipelines' background estimate (hybrid pipelines:
    our background correction, classical denoising). ``progress`` shows a bar over the
    (method, parameter) pairs, labelled ``label``. ``fit_shift``: calibrate the references'
    energy shift in every fit, or the shift to apply (:func:`oxidation_state_fit`).
    """
    grid = CLASSICAL_GRID if grid is None else grid
    e, el = stack.energies_eV, stack.element
    t = stack.transmission if background is None else (stack.transmission / background).astype(np.float32)
    raw = oxidation_state_fit(t, e, el, mask=truth.mask, fit_shift=fit_shift)
    results = {"raw": {**score_pipeline(raw, truth, background=background), "params": {}, "seconds": 0.0}}
    trials = [(method, *next(iter(params.items()))) for method, params in grid.items()]
    bar = progress_bar(total=sum(len(values) for _, _, values in trials), desc=label, unit="fit",
                       disable=not progress)
    for method, name, values in trials:
        best = None
        for v in values:
            t0 = time.perf_counter()
            den = classical_denoise(t, method, **{name: v})
            secs = time.perf_counter() - t0
            sc = score_pipeline(oxidation_state_fit(den, e, el, mask=truth.mask, fit_shift=fit_shift), truth,
                                background=background)
            sc.update(params={name: v}, seconds=secs)
            if best is None or sc["rmse"] < best["rmse"]:
                best = sc
            bar.set_postfix_str(f"{method} {name}={v}: RMSE {sc['rmse']:.3f}", refresh=False)
            bar.update(1)
        results[method] = best
    bar.close()
    return results


def run_hybrid(stack, truth, *, grid=None, progress: bool = True, fit_shift: bool | float = False) -> dict:
    """:func:`run_classical` after our low-rank beam background (:mod:`xanes_lib.denoising.beam`).

    Returns the scores under ``lowrank+<name>``: how much of a network pipeline's gain is
    the background correction alone.
    """
    e = stack.energies_eV
    lowrank = estimate_background(stack.transmission, e, reference_model(e, stack.element))
    scores = run_classical(stack, truth, grid=grid, progress=progress, background=lowrank.background,
                           label="low-rank background + classical", fit_shift=fit_shift)
    return {f"lowrank+{k}": v for k, v in scores.items()}


def run_self_tuned(stack, truth, *, lowrank: bool = False, fit_shift: bool | float = False,
                   field=None) -> dict:
    """Score the classical pipeline tuned without the truth: one Gaussian width chosen by SURE.

    :func:`xanes_lib.denoising.strength.self_tuned_gaussian`, after our low-rank beam
    background when ``lowrank``. The chosen width is in ``params``. ``field``: the pixels the
    risk is estimated on (an aligned stack's common field; None: all).
    """
    e, t, background = stack.energies_eV, stack.transmission, None
    if lowrank:
        background = estimate_background(t, e, reference_model(e, stack.element)).background
        t = (t / background).astype(np.float32)
    t0 = time.perf_counter()
    smoothed, choice = self_tuned_gaussian(t, e, element=stack.element, field=field)
    secs = time.perf_counter() - t0
    sc = score_pipeline(oxidation_state_fit(smoothed, e, stack.element, mask=truth.mask, fit_shift=fit_shift),
                        truth, background=background)
    sc.update(params={"chosen": choice.chosen}, seconds=secs)
    return sc


def run_network(denoiser, stack, truth, *, resize_to=None, device=None, select: bool = True,
                fit_shift: bool | float = False, field=None) -> dict:
    """Denoise a simulated stack with a denoiser and score the valence fit and the background.

    The valence fit uses the denoised stack (background and noise removed); the background
    score uses the network's background estimate; the standard deviation is the one the
    denoiser reports (:meth:`xanes_lib.denoising.DenoiseResult.oxidation_state_std`).
    ``denoiser`` is a :class:`xanes_lib.denoising.Denoiser` (torch is needed only here,
    through it); ``select`` and ``field`` (an aligned stack's common field, as notebooks 04
    and 05 pass it) go to :func:`xanes_lib.denoising.denoise_stack`.
    """
    res = denoiser.denoise(stack.transmission, stack.energies_eV, element=stack.element, resize_to=resize_to,
                           device=device, select=select, progress=False, field=field)
    fit = oxidation_state_fit(res.denoised, stack.energies_eV, stack.element, mask=truth.mask,
                              fit_shift=fit_shift)
    fit = replace(fit, oxidation_state_std=res.oxidation_state_std(fit.oxidation_state_std))
    sc = score_pipeline(fit, truth, background=res.background)
    params = {"resize_to": resize_to} if resize_to else {}
    if res.strength is not None:
        params["chosen"] = res.strength.chosen
    sc.update(params=params, seconds=res.seconds)
    return sc
