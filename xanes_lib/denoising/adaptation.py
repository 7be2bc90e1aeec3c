"""Self-supervised adaptation of a pre-trained denoiser to one new measurement.

No ground truth is used: :func:`xanes_lib.denoising.adaptation` has no argument for it and reads no file. It
alternates, round after round (the method of ``docs/METHOD.md``):

1. **re-fit** — the network is applied to the whole stack
   (:func:`xanes_lib.denoising.inference.denoise_stack`): the background is estimated and
   smoothed, the coefficient maps of the corrected stack are fitted, and the sample mask is
   found from their edge step;
2. **self-validation** — a fixed set of energies is held out from everything else; the
   network's coefficients obtained *without* them are compared with those fitted to the
   held-out images alone, along the oxidation state (:func:`self_validation_score`);
3. **update** — a few hundred Adam steps on crops and sub-stacks of the measurement.

The update loss of the ``latent`` variant is a *cross-energy self-consistency*: the sub-stack
is split into two disjoint sets of energies; the network sees only the first and the
coefficients it returns must rebuild, through the physics model, the background-corrected
absorbance of the second. The photon noise of two different energies is independent, so
the only way to lower this loss is to predict the signal better (the Noise2Noise argument,
here across energies), never to copy the noise. A small fidelity term keeps the
coefficients close to the data of the energies the network sees. The ``paper`` variant
keeps the published loss: self-consistency of the corrected stack with its own fit, a
small fidelity to the raw absorbance and the total variation of the background.

The background of the latent variant is fixed within a round (the smoothed estimate of the
last re-fit) and re-estimated at every re-fit, as in the method. A round replaces the best so
far only when its score is lower by more than ``min_improvement_se`` standard errors of the
difference (the rounds are compared pixel by pixel on the same held-out images, so most of
the held-out noise cancels). Adaptation stops when no round has done so for ``patience``
rounds (the best round's weights are restored), when the coefficient maps stop changing, at
``max_epochs`` rounds, or at the time budget. Re-fits and scores use the network alone
(``select=False``): the strength selection is applied where the adapted model is used.
Whatever the network cannot explain with the references stays in the output
(see :func:`xanes_lib.denoising.inference.forward`), so that a phase missing from the references remains
visible in the fit residual (:mod:`xanes_lib.mapping.phases`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .. import __version__
from ..mapping import sample_mask
from ..physics import absorbance, n_references, reference_model
from ..progress import progress_bar
from ..validate import check_energies, check_stack
from .beam import BackgroundEstimate, estimate_background
from .checkpoints import save_checkpoint
from .config import AdaptConfig
from .denoiser import Denoiser, pick_device
from .inference import (
    DenoiseResult,
    _check_denoiser,
    _refuse_absorbance,
    _stack_model,
    denoise_stack,
    forward,
    latent_inputs,
)
from .losses import self_consistency, total_variation
from .strength import _block_se
from .training import sample_energies

__all__ = [
    "AdaptResult", "holdout_energies", "data_mask", "state_directions", "self_validation_score", "adapt",
    "stack_fingerprint", "save_adapted",
]

#: Width (pixels) of the Gaussian pilot about which the score's oxidation state is linearised.
SCORE_PILOT_PX = 2.0
#: Scored pixels have a pilot edge step of at least this share of its 99th percentile.
SCORE_MIN_RELATIVE_STEP = 0.05


@dataclass
class AdaptResult:
    """Outcome of :func:`xanes_lib.denoising.adaptation`.

    Attributes
    ----------
    denoiser : Denoiser
        The adapted denoiser (a copy; the input is not modified) with the best round's weights.
    history : list of dict
        One entry per re-fit: ``epoch`` (rounds of updates done), ``steps``, ``train_loss``
        (mean of the round), ``score`` (self-validation), ``coefficient_change``,
        ``background_change``, ``mask_pixels``, ``seconds`` (since the start).
    best_epoch : int
        Epoch whose weights were kept (0: the model as given).
    stop_reason : str
    result : DenoiseResult
        The whole stack denoised by the kept network with the strength selection (as
        :meth:`Denoiser.denoise` gives it); its ``background`` includes the low-rank
        background, and ``corrected``/``denoised`` are relative to the raw stack.
    beam : BackgroundEstimate or None
        The low-rank background removed first (None when switched off).
    mask : numpy.ndarray
        (Y, X) sample mask found from the data at the kept epoch.
    holdout : numpy.ndarray
        Indices of the energies held out for self-validation.
    config : AdaptConfig
    seconds : float
    """

    denoiser: Denoiser
    history: list
    best_epoch: int
    stop_reason: str
    result: DenoiseResult
    beam: BackgroundEstimate | None
    mask: np.ndarray
    holdout: np.ndarray
    config: AdaptConfig
    seconds: float

    def residual_map(self, transmission, energies_eV, *, element=None, references=None,
                     smooth_px: float = 2.0) -> np.ndarray:
        """Fit residual map for phases outside the references (:func:`xanes_lib.mapping.phases.residual_map`).

        It is taken from the measurement corrected by the low-rank background only, smoothed
        by a Gaussian of ``smooth_px``: that background gives pixels it cannot explain a low
        weight, while the network's own background correction was measured to absorb part of
        an unseen phase. Without a low-rank background the corrected stack is used.
        """
        from scipy import ndimage

        from ..mapping.phases import residual_map

        t = np.asarray(transmission, np.float32)
        t = t / self.beam.background if self.beam is not None else self.result.corrected
        t = ndimage.gaussian_filter(t, (0, smooth_px, smooth_px)) if smooth_px > 0 else t
        return residual_map(t, energies_eV, element=element, references=references)


def holdout_energies(energies_eV, fraction: float, rng) -> np.ndarray:
    """Draw the indices of the energies held out for self-validation, spread over the scan.

    The scan is cut into ``round(fraction * E)`` consecutive groups of energies and one
    energy is drawn at random in each (the first and the last energy are never held out).
    """
    e = np.asarray(energies_eV)
    n = max(int(round(fraction * e.size)), 3)
    edges = np.linspace(1, e.size - 1, n + 1).astype(int)
    return np.array([int(rng.integers(lo, max(hi, lo + 1)))
                     for lo, hi in zip(edges[:-1], edges[1:], strict=True)])


def data_mask(coefficients, n_refs: int) -> np.ndarray:
    """Sample mask from coefficient maps: Otsu threshold of the edge step (no ground truth)."""
    return sample_mask(np.asarray(coefficients[:n_refs]).sum(0)).mask


def state_directions(coefficients, mask, oxidation_states, *,
                     pilot_sigma_px: float = SCORE_PILOT_PX) -> np.ndarray:
    """Linearised oxidation state of each sample pixel, fixed for all rounds of an adaptation.

    The state of a mix, ``s = sum_k s_k c_k / sum_k c_k``, changes by ``L . dc`` for a small
    change ``dc`` of the reference coefficients, with ``L_k = (s_k - s) / step`` taken about a
    pilot (the coefficient maps smoothed by a Gaussian of ``pilot_sigma_px``). Fixing ``L``
    (and so the pixels and their weights) once makes the scores of all rounds comparable.

    Parameters
    ----------
    coefficients : array_like
        (P, Y, X) coefficient maps, references first (e.g. the first re-fit's).
    mask : array_like of bool
        (Y, X) sample pixels.
    oxidation_states : array_like
        (K,) oxidation state of each reference.
    pilot_sigma_px : float

    Returns
    -------
    numpy.ndarray
        (K, Y, X) ``L``; zero outside ``mask`` and where the pilot's edge step is below
        ``SCORE_MIN_RELATIVE_STEP`` of its 99th percentile (no state to speak of).
    """
    ox = np.asarray(oxidation_states, dtype=np.float64)
    pilot = ndimage.gaussian_filter(np.asarray(coefficients[:ox.size], np.float64),
                                    (0, pilot_sigma_px, pilot_sigma_px), mode="nearest")
    step = pilot.sum(0)
    m = np.asarray(mask, bool)
    floor = SCORE_MIN_RELATIVE_STEP * np.percentile(step[m], 99.0) if m.any() else np.inf
    scored = m & (step > max(floor, 0.0))
    safe = np.where(scored, step, 1.0)
    state = np.clip((ox[:, None, None] * pilot).sum(0) / safe, ox.min(), ox.max())
    return np.where(scored, (ox[:, None, None] - state) / safe, 0.0)


def _state_errors(denoiser: Denoiser, transmission, energies_eV, holdout, background, directions, *,
                  element=None, references=None, device=None) -> np.ndarray:
    """(Y, X) squared held-out discrepancy of the network's oxidation state (0 where not scored)."""
    keep = np.setdiff1d(np.arange(len(energies_eV)), holdout)
    res = denoise_stack(denoiser, transmission[keep], energies_eV[keep], element=element,
                        references=references, lowrank=False, device=device, progress=False, select=False)
    model_h = reference_model(energies_eV[holdout], element, references)
    k = n_references(model_h)
    scored = np.any(directions != 0, axis=0)
    a_h = absorbance(np.asarray(transmission[holdout], np.float64)) + np.log(np.asarray(background[holdout],
                                                                                        np.float64))
    c_h = model_h.fit(a_h[:, scored])[:k]
    c = res.coefficients[:k][:, scored].astype(np.float64)
    out = np.zeros(scored.shape)
    out[scored] = np.einsum("kn,kn->n", directions[:, scored], c - c_h) ** 2
    return out


def self_validation_score(denoiser: Denoiser, transmission, energies_eV, holdout, background, mask, *,
                          element=None, references=None, device=None, directions=None) -> float:
    """Disagreement in oxidation state with held-out energies, inside the sample (no ground truth).

    The network denoises the stack *without* the held-out energies (the network alone, no
    strength selection). The held-out images, corrected by ``background``, are fitted on
    their own by the same physics model: their reference coefficients are noisy but
    unbiased, and their photon noise is independent of everything the network saw. The score
    is the mean over the scored pixels of ``(L . (c - c_h))^2``: the squared difference of
    the two linearised oxidation states (:func:`state_directions`). Its expectation is the
    network's mean squared state error plus a constant (the held-out fit's noise), so it
    rises and falls with the true error. It is taken along the state because that is what
    the maps report: a score over all coefficients is dominated by the edge step and was
    measured to fall while the network's state error rose (in-family Co, 1000 photons).
    Smooth errors shared by all energies, which look like a background, are not seen by it.

    Parameters
    ----------
    denoiser : Denoiser
    transmission : numpy.ndarray
        (E, Y, X) the measurement (beam background already divided out, if any).
    energies_eV : numpy.ndarray
    holdout : numpy.ndarray
        Indices of the held-out energies (:func:`holdout_energies`).
    background : numpy.ndarray
        (E, Y, X) background that corrects the held-out images.
    mask : numpy.ndarray
        (Y, X) sample pixels.
    element, references, device
        As in :func:`adapt`.
    directions : numpy.ndarray, optional
        (K, Y, X) :func:`state_directions`, fixed across rounds; None: from this network's
        output (a score on its own, not comparable between networks).

    Returns
    -------
    float
    """
    e = np.asarray(energies_eV, dtype=np.float64)
    if directions is None:
        keep = np.setdiff1d(np.arange(e.size), holdout)
        own = denoise_stack(denoiser, transmission[keep], e[keep], element=element, references=references,
                            lowrank=False, device=device, progress=False, select=False)
        refs, _ = _stack_model(len(keep), e[keep], element, references)
        directions = state_directions(own.coefficients, mask, [r.oxidation_state for r in refs])
    err = _state_errors(denoiser, transmission, e, holdout, background, directions, element=element,
                        references=references, device=device)
    scored = np.any(directions != 0, axis=0)
    return float(err[scored].mean()) if scored.any() else float("nan")


def _fitted_to_stack(config: AdaptConfig, n_y: int, n_x: int) -> AdaptConfig:
    """Return the configuration as used on a stack of ``n_y x n_x`` pixels (recorded in the result).

    A crop larger than the stack is cut to it (by design: the defaults fit large stacks). A
    sub-stack size drawn above the stack's training energies is cut to them at each step
    (:func:`xanes_lib.denoising.training.sample_energies`); ``n_energies`` stays as given.
    """
    crop = min(config.crop, n_y, n_x)
    return config if crop == config.crop else config.replace(crop=crop)


def _crop_sample(rng, n_y: int, n_x: int, crop: int):
    c = min(crop, n_y, n_x)
    y0, x0 = int(rng.integers(0, n_y - c + 1)), int(rng.integers(0, n_x - c + 1))
    return slice(y0, y0 + c), slice(x0, x0 + c), int(rng.integers(4)), bool(rng.integers(2))


def _augment(x, k: int, flip: bool):
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _step_loss(denoiser: Denoiser, t, beta, energies, idx, rng, cfg: AdaptConfig, element, references,
               scale: float, edge_eV: float):
    """Loss of one update step on a crop ``t`` (E, y, x) with fixed background ``beta``."""
    e = energies[idx]
    if denoiser.variant == "paper":
        model = reference_model(e, element, references)
        out = forward(denoiser, t[idx], model, scale=scale)
        a = absorbance(t[idx])
        return (cfg.consistency * self_consistency(out.corrected_absorbance, model, scale)
                + cfg.fidelity * (out.corrected_absorbance - a).pow(2).mean() / scale ** 2
                + cfg.tv * total_variation(out.background))
    # Split the energies into input and target sets; both keep pre- and post-edge points.
    # The target's coefficient maps, fitted from its own (independent) photon noise, are an
    # unbiased but noisy view of the truth: the network's best prediction of them is the
    # denoised map (Noise2Noise across energies).
    n_target = max(int(round(cfg.target_fraction * idx.size)), 8)
    tgt = np.sort(idx[sample_energies(energies[idx], edge_eV, n_target, rng)])
    inp = np.setdiff1d(idx, tgt)
    model_in = reference_model(energies[inp], element, references)
    model_t = reference_model(energies[tgt], element, references)
    x, c0, _ = latent_inputs(absorbance(t[inp]), model_in, scale)
    y = denoiser.net(x)[0]
    coeffs = c0 + scale * y[:-1]
    k = n_references(model_in)
    with torch.no_grad():
        c_t = model_t.fit(absorbance(t[tgt]) - beta[tgt])
    cross = (coeffs[:k] - c_t[:k]).pow(2).mean() / scale ** 2
    fid = (absorbance(t[inp]) - beta[inp] - model_in.predict(coeffs)).pow(2).mean() / scale ** 2
    return cross + cfg.fidelity * fid


def _relative_change(new, old, mask) -> float:
    d = np.sqrt(np.mean((new - old)[:, mask] ** 2))
    return float(d / max(np.sqrt(np.mean(old[:, mask] ** 2)), 1e-12))


def _check_inputs(transmission, energies_eV, element, references, config: AdaptConfig):
    """Validate the energies and stack of :func:`adapt` (ValueError naming what is wrong).

    Returns the energies, the stack, its references and its physics model.
    """
    e = check_energies(energies_eV, name="energies_eV")
    t = check_stack(transmission, name="transmission", n_energies=e.size)
    if element is None and references is None:
        raise ValueError("give the element (e.g. 'Co') or the reference spectra.")
    refs, model = _stack_model(e.size, e, element, references)
    positive = t > 0
    _refuse_absorbance(t, model, positive.all(axis=0))
    if not positive.all():
        raise ValueError(f"transmission holds {int(positive.size - positive.sum())} values <= 0; -ln T is "
                         "undefined there. Clip or mask them (e.g. np.clip(T, 1e-6, None)) before adapting.")
    config.check(e.size)
    return e, t, refs, model


def _stop_reason(config: AdaptConfig, since_best: int, change: float, elapsed_s: float) -> str | None:
    """Why adaptation stops after this re-fit, or None to go on."""
    if since_best >= config.patience:
        return f"no improvement of the self-validation score for {since_best} re-fits"
    if config.min_change > 0 and change < config.min_change:
        return f"coefficient maps changed by {change:.2g} < min_change {config.min_change}"
    if elapsed_s > config.time_budget_s:
        return f"time budget {config.time_budget_s:.0f} s reached"
    return None


def adapt(denoiser: Denoiser, transmission, energies_eV, *, element: str | None = None, references=None,
          config: AdaptConfig | None = None, device=None, progress: bool = True,
          callback=None) -> AdaptResult:
    """Adapt a pre-trained denoiser to one measurement, without ground truth.

    Parameters
    ----------
    denoiser : Denoiser
        The pre-trained denoiser (:func:`xanes_lib.denoising.load_checkpoint`); it is copied,
        not modified.
    transmission : array_like
        (E, Y, X) measured, flat-field corrected transmission; not modified.
    energies_eV : array_like
        (E,) strictly increasing energies.
    element : str, optional
        Edge element; its shipped references are used when ``references`` is None.
    references : sequence, optional
        Reference spectra (objects with ``.name`` and ``.spectrum(energies_eV)``).
    config : AdaptConfig, optional
        None: the defaults.
    device : str, optional
        None picks CUDA when present.
    progress : bool
        Show a progress bar.
    callback : callable, optional
        ``callback(epoch, result)`` after each re-fit with the :class:`DenoiseResult` of the
        current network alone (no strength selection; e.g. to score a simulated stack in a
        notebook).

    Returns
    -------
    AdaptResult

    Raises
    ------
    TypeError
        If ``denoiser`` is not a :class:`Denoiser` or ``config`` not an :class:`AdaptConfig`.
    ValueError
        Bad stack or energies, no element nor references, settings that cannot work, an
        absorbance stack given as ``transmission`` (pass ``np.exp(-absorbance)``).
    """
    t_start = time.perf_counter()
    _check_denoiser(denoiser)
    if config is not None and not isinstance(config, AdaptConfig):
        hint = " Build one: AdaptConfig(**settings)." if isinstance(config, dict) else ""
        raise TypeError(f"config must be an AdaptConfig or None (the defaults); got {type(config).__name__}."
                        f"{hint}")
    config = AdaptConfig() if config is None else config
    e, t_np, refs, full_model = _check_inputs(transmission, energies_eV, element, references, config)
    device = pick_device(device)
    adapted = denoiser.copy().to(device)
    net = adapted.net
    lowrank = estimate_background(t_np, e, full_model) if config.lowrank_background else None
    if lowrank is not None:
        t_np = (t_np / lowrank.background).astype(np.float32)
    rng = np.random.default_rng([config.seed, 5])
    holdout = holdout_energies(e, config.holdout_fraction, rng)
    train_idx = np.setdiff1d(np.arange(e.size), holdout)
    t_all = torch.from_numpy(np.ascontiguousarray(t_np, dtype=np.float32)).to(device)
    k = n_references(full_model)
    edge_eV = _edge_energy(e, full_model, k)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    n_y, n_x = t_np.shape[1:]
    config = _fitted_to_stack(config, n_y, n_x)

    states = [r.oxidation_state for r in refs]
    basis = {}

    def refit():
        # The low-rank background is this function's business (config.lowrank_background).
        res = denoise_stack(adapted, t_np, e, element=element, references=references, lowrank=False,
                            device=device, progress=False, select=False)
        mask = data_mask(res.coefficients, k)
        if not basis:  # the first re-fit fixes the scored pixels and their state directions
            basis["directions"] = state_directions(res.coefficients, mask, states)
            basis["scored"] = np.any(basis["directions"] != 0, axis=0)
        err = _state_errors(adapted, t_np, e, holdout, res.background, basis["directions"], element=element,
                            references=references, device=device)
        score = float(err[basis["scored"]].mean()) if basis["scored"].any() else float("nan")
        return res, mask, score, err

    def as_raw(res: DenoiseResult) -> DenoiseResult:
        # Results relative to the raw stack: the low-rank background is part of B.
        if lowrank is None:
            return res
        return dataclasses.replace(res, background=(res.background * lowrank.background).astype(np.float32))

    res, mask, score, err = refit()
    history = [dict(epoch=0, steps=0, train_loss=float("nan"), score=score, coefficient_change=float("nan"),
                    background_change=float("nan"), mask_pixels=int(mask.sum()),
                    seconds=time.perf_counter() - t_start)]
    if callback is not None:
        callback(0, as_raw(res))
    best = dict(epoch=0, score=score, state=_copy_state(net), mask=mask, err=err)
    stop_reason, since_best, steps = f"max_epochs ({config.max_epochs}) reached", 0, 0
    bar = progress_bar(total=config.max_epochs, disable=not progress, desc=f"adapt {adapted.variant}",
                       unit="round")
    scale = float(res.scale)
    for epoch in range(1, config.max_epochs + 1):
        beta = torch.from_numpy(-np.log(res.background)).to(device)
        net.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            ys, xs, rot, flip = _crop_sample(rng, n_y, n_x, config.crop)
            n = int(rng.integers(config.n_energies[0], config.n_energies[1] + 1))
            idx = train_idx[sample_energies(e[train_idx], edge_eV, n, rng)]
            t_c = _augment(t_all[:, ys, xs], rot, flip)
            b_c = _augment(beta[:, ys, xs], rot, flip)
            loss = _step_loss(adapted, t_c, b_c, e, idx, rng, config, element, references, scale, edge_eV)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            steps += 1
        bar.update(1)
        if epoch % config.refit_every and epoch != config.max_epochs:
            continue
        old_c, old_b = res.coefficients[:k], res.background
        res, mask, score, err = refit()
        change = _relative_change(res.coefficients[:k], old_c, mask)
        history.append(dict(epoch=epoch, steps=steps, train_loss=float(np.mean(losses)), score=score,
                            coefficient_change=change,
                            background_change=float(np.sqrt(np.mean((res.background - old_b) ** 2))),
                            mask_pixels=int(mask.sum()), seconds=time.perf_counter() - t_start))
        bar.set_postfix(score=f"{score:.4g}", change=f"{change:.3g}")
        if callback is not None:
            callback(epoch, as_raw(res))
        if _improves(err, best["err"], basis["scored"], config.min_improvement_se):
            best = dict(epoch=epoch, score=score, state=_copy_state(net), mask=mask, err=err)
            since_best = 0
        else:
            since_best += 1
        reason = _stop_reason(config, since_best, change, time.perf_counter() - t_start)
        if reason is not None:
            stop_reason = reason
            break
    bar.close()
    net.load_state_dict(best["state"])
    net.eval()
    # The result as the adapted model will be used: the kept network with the strength selection.
    final = denoise_stack(adapted, t_np, e, element=element, references=references, lowrank=False,
                          device=device, progress=False)
    return AdaptResult(adapted, history, best["epoch"], stop_reason, as_raw(final), lowrank,
                       best["mask"], holdout, config, time.perf_counter() - t_start)


def _improves(err, best_err, scored, margin_se: float) -> bool:
    """Whether ``err`` is lower than ``best_err`` by more than ``margin_se`` standard errors.

    Both are maps of the same held-out images' discrepancy, so the difference is compared
    pixel by pixel; its standard error comes from block means (the network's errors are
    correlated over a few pixels).
    """
    if not scored.any():
        return False
    diff = np.where(scored, err - best_err, 0.0)
    return bool(diff[scored].mean() < -margin_se * _block_se(diff, scored))


def _copy_state(net) -> dict:
    """Copy the network's weights (kept for the best round)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _edge_energy(energies, model, k: int) -> float:
    """Energy of the steepest mean rise of the reference columns (edge of the sub-stack sampler)."""
    mean_ref = model.matrix[:, :k].mean(1)
    return float(energies[int(np.argmax(np.gradient(mean_ref, energies)))])


def stack_fingerprint(transmission) -> str:
    """SHA-256 of the transmission array's bytes (float32), naming the data adapted to."""
    return hashlib.sha256(np.ascontiguousarray(transmission, dtype=np.float32).tobytes()).hexdigest()


def save_adapted(path, result: AdaptResult, source: Denoiser, *, transmission, energies_eV,
                 element: str | None = None, references=None, input_name: str | None = None):
    """Write the adapted denoiser as a checkpoint that records what it was adapted to.

    The metadata gain ``adapted_to``: the input's name, fingerprint (:func:`stack_fingerprint`),
    shape, element, energy range and reference names; the adaptation settings, the kept epoch,
    the stop reason, the final self-validation score and the source checkpoint's variant, step
    and seed. It is read back by :func:`xanes_lib.denoising.load_checkpoint`.
    """
    e = np.asarray(energies_eV, dtype=np.float64)
    model = reference_model(e, element, references)
    scores = {h["epoch"]: h["score"] for h in result.history}
    adapted = {"input": input_name, "fingerprint": stack_fingerprint(transmission),
               "shape": list(np.shape(transmission)), "element": element,
               "references": list(model.names[:n_references(model)]),
               "energy_range_eV": [float(e[0]), float(e[-1])], "config": result.config.to_dict(),
               "best_epoch": int(result.best_epoch), "stop_reason": result.stop_reason,
               "score": float(scores[result.best_epoch]),
               "epochs_run": int(result.history[-1]["epoch"]), "seconds": float(result.seconds),
               "package_version": __version__,
               "source": {"variant": source.variant,
                          **{k: source.meta.get(k) for k in ("step", "seed", "elements", "package_version")}}}
    # Provenance of the pre-training carries over; its held-out scores describe the source only.
    meta = {k: source.meta[k] for k in ("train_config", "seed") if k in source.meta}
    out = Denoiser(result.denoiser.net, source.config,
                   meta={**meta, "step": int(source.meta.get("step", 0)),
                         "elements": source.meta.get("elements", []),
                         "energy_range_eV": source.meta.get("energy_range_eV", [float(e[0]), float(e[-1])]),
                         "package_version": __version__, "adapted_to": adapted},
                   history={"pretraining": source.history, "adaptation": result.history})
    return save_checkpoint(path, out)
