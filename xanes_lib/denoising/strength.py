"""How much to average, chosen per stack (and per pixel) from the measurement itself.

No ground truth is needed: the error of the oxidation state that each candidate denoiser
would give is estimated by Stein's unbiased risk estimate (SURE) in the latent space of the
physics model. The per-pixel least-squares coefficients ``c`` of the references are the
truth plus noise whose covariance is known from the model and the photon noise of the
pixel, ``sigma_i^2 M^+ diag(g_i) M^+T``; ``sigma_i`` is measured from the stack (the scatter
of the pixel's fit residual from one energy to the next, which smooth model errors hardly
touch) and ``g_i`` is the Poisson profile of the variance over energies, larger where the
pixel absorbs more (:func:`coefficient_covariance_map`).
For a denoiser ``f`` of the coefficient maps, the expected squared error of a linear
function ``L_i c`` at pixel ``i`` is estimated without the truth by

    r_i = (L_i (f(c)_i - c_i))^2 - v_i + 2 d_i,        v_i = sigma_i^2 L_i (M^T M)^-1 L_i^T

where ``d_i`` is the noise-weighted sensitivity of ``f`` at pixel ``i`` to its own input:
``w0 v_i`` for a Gaussian filter with centre weight ``w0`` (exact), a Monte-Carlo probe for
a network (one extra pass with a small, noise-shaped perturbation of its input). ``L_i`` is
the linearised oxidation state, ``(s_k - s_i) / step_i`` for reference states ``s_k``, taken
from a heavily smoothed pilot so that it hardly depends on the noise. Averaged over a window,
``r`` estimates the local mean squared error of the oxidation state; the candidate with the
lowest estimate is chosen per pixel (or once for the stack), and what was chosen is
returned with its score.

Besides Gaussian widths, the candidates can include edge-preserving filters of the
references' coefficient maps, total variation and non-local means (scikit-image), whose
sensitivity is probed as the network's: they keep sharp chemical boundaries that a Gaussian
blurs (:func:`select_strength` with ``edge_preserving``, as the denoiser's selection uses it).

The same criterion tunes the plain classical pipeline (:func:`self_tuned_gaussian`, one
Gaussian width for the stack): what a user without ground truth can do, and the baseline the
network must never be worse than. This module uses numpy, scipy and scikit-image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtr, ndtri

from ..physics import LinearAbsorbanceModel, absorbance, n_references, reference_model
from ..spectra import default_references
from ..validate import check_image_mask, check_stack

__all__ = [
    "DEFAULT_SIGMAS_PX", "NETWORK_SIGMAS_PX", "StrengthChoice", "residual_noise_std", "check_field",
    "coefficient_covariance", "noise_shaped_perturbation", "TV_WEIGHTS", "NLM_STRENGTHS",
    "state_weights", "gaussian_centre_weight", "select_strength", "self_tuned_gaussian",
]

#: Gaussian widths (pixels) tried by the selection; 0 is the plain per-pixel fit.
DEFAULT_SIGMAS_PX = (0.0, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
#: Gaussian widths (pixels) also tried on the network's output (it may under-smooth a stack).
NETWORK_SIGMAS_PX = (1.0, 2.0)
#: Total-variation weights tried on the references' coefficient maps (in units of the maps' noise).
TV_WEIGHTS = (1.0, 2.0, 3.0)
#: Chambolle iterations of each total-variation candidate (a fixed number: see _edge_preserving).
TV_ITERATIONS = 30
#: Non-local-means strengths ``h`` tried on the same maps (in units of the maps' noise).
NLM_STRENGTHS = (0.8, 1.0, 1.3)
#: The edge-preserving candidates are tried only when the median per-pixel state standard
#: deviation is below this share of the references' range (a pixel's own spectrum then places
#: its state within the range). Beyond it (dilute Co at 1000-3000 photons: 1-4x the range),
#: SURE, whose target is the plain fit's linearised expectation, favoured non-local means over
#: the network on an in-family Co stack at 3000 photons (1.14x) with twice the network's true
#: error (0.19 against 0.09); on 6 other Co stacks at 3000-5000 photons they were not chosen.
MAX_EDGE_STATE_STD = 1.0
#: Size of the probe of a nonlinear candidate's sensitivity, relative to the noise.
PROBE_EPS = 0.01
#: A candidate replaces the network only when its estimated risk is lower by more than this
#: many standard errors of the difference (one choice per stack).
NETWORK_MARGIN_SE = 1.0
#: Block size (pixels) of the standard error of pooled risk differences.
SE_BLOCK_PX = 16
#: Width (pixels) of the smoothing of the edge step that decides which pixels are scored.
SCORING_SIGMA_PX = 1.5
#: Scored pixels have an edge step of at least this share of the stack's 99th percentile.
MIN_RELATIVE_STEP = 0.05
#: Scored pixels have a per-pixel state standard deviation below this many times the range
#: of the references' oxidation states.
MAX_RELATIVE_STATE_STD = 10.0
#: Median of a chi-square variable with one degree of freedom (robust variance from squares).
_CHI2_1_MEDIAN = 0.4549364231195724


@dataclass
class StrengthChoice:
    """What the strength selection chose, and the scores that chose it.

    Attributes
    ----------
    candidates : tuple of str
        Names of the candidates, e.g. ``"gaussian 2.0 px"``, ``"network"``.
    sigmas_px : numpy.ndarray
        (n,) Gaussian width of each candidate (applied to the plain fit, or to the network's
        output when ``uses_network``); NaN for an edge-preserving filter of the plain fit.
    uses_network : numpy.ndarray
        (n,) bool: the candidate is the network's output.
    pooled_risk : numpy.ndarray
        (n,) estimated mean squared oxidation-state error of each candidate over the scored
        pixels (SURE); the lowest is the best single choice for the stack.
    difference_se : numpy.ndarray
        (n,) standard error of each candidate's pooled risk minus the network's (zeros without
        a network or with a choice per pixel).
    choice : numpy.ndarray
        (Y, X) index of the candidate used at each pixel.
    state_rmse : numpy.ndarray
        (Y, X) estimated RMS oxidation-state error of the chosen candidate (its SURE over a
        window around the pixel, floored at the candidate's noise), NaN where nothing was
        scored nearby.
    noise_std : numpy.ndarray
        (Y, X) measured photon-noise standard deviation of the absorbance of each pixel.
    scored : numpy.ndarray
        (Y, X) pixels whose oxidation state is defined well enough to be scored (edge step of
        the pilot significant); the others take the choice of their scored neighbours.
    window_px : float
        Gaussian window of the local risk that chose (pixels); inf for one choice per stack.
    """

    candidates: tuple
    sigmas_px: np.ndarray
    uses_network: np.ndarray
    pooled_risk: np.ndarray
    difference_se: np.ndarray
    choice: np.ndarray
    state_rmse: np.ndarray
    noise_std: np.ndarray
    scored: np.ndarray
    window_px: float

    @property
    def chosen(self) -> str:
        """The candidate chosen for the stack (per pixel: the most used one)."""
        return self.candidates[int(np.bincount(self.choice.ravel()).argmax())]

    def strength_map(self) -> np.ndarray:
        """(Y, X) Gaussian width applied to the plain fit at each pixel.

        NaN where another filter's: the network, total variation or non-local means.
        """
        return np.where(self.uses_network, np.nan, self.sigmas_px)[self.choice]

    def shares(self) -> dict:
        """Share of the scored pixels that use each candidate."""
        n = max(int(self.scored.sum()), 1)
        return {c: float(np.sum((self.choice == i) & self.scored) / n) for i, c in enumerate(self.candidates)}

    def summary(self) -> str:
        """One line per candidate: pooled estimated RMSE and share of pixels."""
        shares = self.shares()
        lines = [f"{c:>26s}: estimated RMSE {np.sqrt(max(r, 0.0)):.3f}, used at {shares[c]:.0%} of the pixels"
                 for c, r in zip(self.candidates, self.pooled_risk, strict=True)]
        return "\n".join(lines)

    def oxidation_state_std(self, fit_std) -> np.ndarray:
        """Return the standard deviation to report for the oxidation state fitted on the chosen output.

        The fit of a denoised stack sees a residual that the averaging has shrunk (or, with the
        residual kept, one that ignores it); its standard deviation does not describe the
        error. Where the selection estimated the pixel's error (:attr:`state_rmse`, bias
        included) that estimate is returned, elsewhere ``fit_std``.
        """
        fit_std = np.asarray(fit_std)
        rmse = self.state_rmse
        return np.where(np.isfinite(rmse) & np.isfinite(fit_std), rmse, fit_std).astype(fit_std.dtype)

    def to_attrs(self) -> dict:
        """Flat attributes for a results file."""
        return {"strength_candidates": list(self.candidates),
                "strength_pooled_rmse": [float(np.sqrt(max(r, 0.0))) for r in self.pooled_risk],
                "strength_window_px": float(self.window_px), "strength_chosen": self.chosen}


def residual_noise_std(residual, model: LinearAbsorbanceModel) -> np.ndarray:
    """Spatially white noise standard deviation of each pixel's absorbance, from its fit residual.

    The residual minus the mean of its four neighbours keeps the photon noise and removes
    what is smooth in space: model errors shared by neighbours and the beam background,
    which varies from energy to energy but is smooth in space (smoothing does not remove it,
    so it must not count as noise here). The robust (median) mean square over energies,
    corrected for the fit's projection and the neighbours' share, estimates the variance.

    Parameters
    ----------
    residual : numpy.ndarray
        (E, Y, X) absorbance minus its least-squares model prediction.
    model : LinearAbsorbanceModel
        The model that made the residual.

    Returns
    -------
    numpy.ndarray
        (Y, X) float32 standard deviation.

    Examples
    --------
    >>> from xanes_lib.physics import build_model
    >>> e = np.linspace(8300, 8400, 80)
    >>> m = build_model(e, [np.clip((e - 8340) / 10, 0, 1)])
    >>> r = np.random.default_rng(0).normal(0, 0.05, (80, 40, 40))
    >>> r -= m.predict(m.fit(r))
    >>> round(float(np.median(residual_noise_std(r, m))), 2)
    0.05
    """
    r = np.asarray(residual, dtype=np.float32)
    kernel = np.array([[0, -0.25, 0], [-0.25, 1.0, -0.25], [0, -0.25, 0]], np.float32)
    h2 = ndimage.convolve(r, kernel[None], mode="nearest") ** 2
    # Residual variance per energy for unit white noise: the diagonal of I - M M^+.
    q = 1.0 - np.einsum("ep,pe->e", model.matrix, model.pinv)
    h2 /= (1.25 * q).astype(np.float32)[:, None, None]
    return np.sqrt(np.median(h2, axis=0) / _CHI2_1_MEDIAN).astype(np.float32)


def coefficient_covariance(model: LinearAbsorbanceModel) -> np.ndarray:
    """(P, P) covariance of the least-squares coefficients for unit absorbance noise."""
    return model.pinv @ model.pinv.T


def coefficient_covariance_map(model: LinearAbsorbanceModel, coefficients, *,
                               block: int = 1 << 18) -> np.ndarray:
    """(P, P, Y, X) per-pixel covariance of the least-squares coefficients under photon noise.

    The variance of a pixel's absorbance at energy E follows its counts (Poisson):
    ``var(a_E) ~ exp(a_E)``, larger above the edge than below it (by 1.26 on a Ni stack at
    300 photons). The profile comes from the pixel's fitted absorbance ``M c`` and is scaled
    so that its median over the energies is 1, the level :func:`residual_noise_std` measures
    (the noise of the flat field, the same at every energy, is left out). The covariance of
    pixel i for its noise ``sigma_i`` is then ``sigma_i^2 M^+ diag(g_i) M^+T``; with white
    noise it is :func:`coefficient_covariance`.

    Parameters
    ----------
    model : LinearAbsorbanceModel
        The fit's model.
    coefficients : numpy.ndarray
        (P, Y, X) coefficients of the plain fit.
    block : int
        Pixels per block (bounds the memory: E x ``block`` values).

    Returns
    -------
    numpy.ndarray
        (P, P, Y, X) float32.
    """
    c = np.asarray(coefficients, dtype=np.float32)
    n_p, shape = c.shape[0], c.shape[1:]
    flat = np.nan_to_num(c.reshape(n_p, -1))
    outer = (model.pinv[:, None, :] * model.pinv[None, :, :]).reshape(n_p * n_p, -1).astype(np.float32)
    matrix = model.matrix.astype(np.float32)
    out = np.empty((n_p * n_p, flat.shape[1]), np.float32)
    for start in range(0, flat.shape[1], block):
        a = matrix @ flat[:, start:start + block]
        a -= np.median(a, axis=0)
        np.clip(a, -10.0, 10.0, out=a)
        out[:, start:start + block] = outer @ np.exp(a, out=a)
    return out.reshape(n_p, n_p, *shape)


def noise_shaped_perturbation(noise_std, covariance, z, eps: float = PROBE_EPS) -> np.ndarray:
    """Small perturbation of the coefficient maps shaped like their noise: ``eps sigma_i chol(cov_i) z_i``.

    Parameters
    ----------
    noise_std : numpy.ndarray
        (Y, X) absorbance noise of each pixel (:func:`residual_noise_std`).
    covariance : numpy.ndarray
        (P, P, Y, X) per-pixel coefficient covariance for unit noise
        (:func:`coefficient_covariance_map`).
    z : numpy.ndarray
        (P, Y, X) standard normal draws.
    eps : float
        Size relative to the noise.

    Returns
    -------
    numpy.ndarray
        (P, Y, X) float32; its squared size is read back by the selection.
    """
    chol = np.linalg.cholesky(np.moveaxis(np.asarray(covariance, np.float64), (0, 1), (2, 3)))  # (Y, X, P, P)
    return (eps * noise_std * np.einsum("yxpq,qyx->pyx", chol, z)).astype(np.float32)


def check_field(field, shape):
    """Return the (Y, X) bool ``field`` of the pixels that are measurements (None stays None).

    :func:`xanes_lib.validate.check_image_mask`: refused unless boolean, of the images' shape
    and holding a pixel.
    """
    return check_image_mask(field, shape, name="field", allow_empty=False,
                            hint=" Pass the pixels that are measured (AlignedStack.common_mask) or None.")


def state_weights(coefficients, oxidation_states, noise_std, model: LinearAbsorbanceModel, *,
                  pilot_sigma_px: float = 4.0, min_significance: float = 5.0, covariance=None, field=None):
    """Linearised oxidation state ``L_i`` of each pixel and the pixels where it is defined.

    Parameters
    ----------
    coefficients : numpy.ndarray
        (P, Y, X) coefficient maps of the plain fit (references first).
    oxidation_states : array_like
        (K,) oxidation state of each reference.
    noise_std : numpy.ndarray
        (Y, X) absorbance noise (:func:`residual_noise_std`).
    model : LinearAbsorbanceModel
    pilot_sigma_px : float
        Width of the Gaussian pilot that gives the state and the edge step.
    min_significance : float
        A pixel is scored when the pilot's edge step exceeds this many of its standard
        deviations.
    covariance : numpy.ndarray, optional
        (P, P, Y, X) per-pixel coefficient covariance for unit noise
        (:func:`coefficient_covariance_map`); None: :func:`coefficient_covariance` everywhere.
    field : numpy.ndarray, optional
        (Y, X) bool: the pixels that are measurements; only these are scored (see
        :func:`select_strength`). None: every pixel.

    Returns
    -------
    weights : numpy.ndarray
        (K, Y, X) ``(s_k - s_i) / step_i``; zero where not scored.
    state : numpy.ndarray
        (Y, X) the pilot's oxidation state ``s_i`` (the state is ``s_i + weights . c``).
    variance : numpy.ndarray
        (Y, X) noise variance of the raw per-pixel oxidation state ``L_i c_i``.
    scored : numpy.ndarray
        (Y, X) bool.
    """
    ox = np.asarray(oxidation_states, dtype=np.float64)
    k = ox.size
    ck = np.asarray(coefficients[:k], np.float64)
    pilot = ndimage.gaussian_filter(ck, (0, pilot_sigma_px, pilot_sigma_px), mode="nearest")
    step = pilot.sum(0)
    # Which pixels hold sample: the edge step lightly smoothed (the pilot spreads particles
    # into their surroundings), significant against its noise and not a trace of the largest.
    light = ndimage.gaussian_filter(ck.sum(0), SCORING_SIGMA_PX, mode="nearest")
    cov = coefficient_covariance(model)[:k, :k]
    light_std = noise_std * np.sqrt(cov.sum() * gaussian_centre_weight(SCORING_SIGMA_PX))
    floor = MIN_RELATIVE_STEP * np.nanpercentile(light, 99.0)
    scored = (np.isfinite(step) & (step > 0) & (light > min_significance * light_std) & (light > floor)
              & (noise_std > 0))
    field = check_field(field, scored.shape)
    if field is not None:
        scored &= field
    safe = np.where(scored, step, 1.0)
    state = (ox[:, None, None] * pilot).sum(0) / safe
    # Where the pilot is no mix of the references (far outside their range: beam background
    # in the empty field, a foreign phase), the state is undefined and not scored.
    span = ox.max() - ox.min()
    scored &= (state > ox.min() - 0.5 * span) & (state < ox.max() + 0.5 * span)
    state = np.clip(state, ox.min(), ox.max())
    weights = np.where(scored, (ox[:, None, None] - state) / safe, 0.0)
    quad = np.einsum("kyx,kl,lyx->yx", weights, cov, weights) if covariance is None else \
        np.einsum("kyx,klyx,lyx->yx", weights, np.asarray(covariance)[:k, :k], weights)
    variance = noise_std.astype(np.float64) ** 2 * quad
    # A pixel whose own state is many times more uncertain than the references' range adds
    # only noise to the risk estimate (its variance grows as v^2): its neighbours decide.
    informative = variance < (MAX_RELATIVE_STATE_STD * (ox.max() - ox.min())) ** 2
    scored &= informative
    weights[:, ~scored] = 0.0
    variance[~scored] = 0.0
    return weights, state, variance, scored


def gaussian_centre_weight(sigma_px: float) -> float:
    """Weight of a pixel on itself in scipy's 2D Gaussian filter of width ``sigma_px`` (1 for 0).

    For a Gaussian kernel ``sum(w^2)`` equals the centre weight to within a percent for
    widths of 0.7 px and more, so this is also the factor by which the filter divides the
    variance of white noise.
    """
    if sigma_px <= 0:
        return 1.0
    delta = np.zeros((1, 41), np.float64)
    delta[0, 20] = 1.0
    w1 = ndimage.gaussian_filter1d(delta, sigma_px, axis=1, mode="constant")[0, 20]
    return float(w1 ** 2)


def _local_mean(values, weight, window_px: float):
    """Weighted local mean over a Gaussian window, and the local weight (normalised convolution)."""
    num = ndimage.gaussian_filter(values * weight, window_px, mode="nearest")
    den = ndimage.gaussian_filter(weight, window_px, mode="nearest")
    return num / np.maximum(den, 1e-12), den


def _candidates(c, network, sigmas_px, noise_std, model, covariance=None):
    """Yield ``(name, sigma_px, uses_network, make_output, sensitivity_of, variance_of)`` per candidate.

    ``make_output()`` builds the (P, Y, X) coefficient maps; ``sensitivity_of(proj, v)`` gives
    the per-pixel sensitivity term of SURE from the projection ``proj`` and variance ``v``;
    ``variance_of(proj, v)`` the variance of the candidate's projected output from the noise
    alone (``w0 v`` for a Gaussian; for the network one sample of it, the probe's squared
    response, to be averaged over a window).
    """
    for s in sigmas_px:
        w0 = gaussian_centre_weight(s)
        yield (f"gaussian {s:.1f} px" if s > 0 else "no smoothing", float(s), False,
               lambda s=s: ndimage.gaussian_filter(c, (0, s, s), mode="nearest") if s > 0 else c,
               lambda proj, v, w0=w0: w0 * v, lambda proj, v, w0=w0: w0 * v)
    if network is None:
        return
    out, delta, response = (np.asarray(x, np.float32) for x in network)
    eps2 = _probe_eps2(delta, noise_std, model, covariance)
    for s in (0.0, *NETWORK_SIGMAS_PX):
        def smooth(x, s=s):
            return ndimage.gaussian_filter(x, (0, s, s), mode="nearest") if s > 0 else x
        yield (f"network + gaussian {s:.1f} px" if s > 0 else "network", float(s), True,
               lambda smooth=smooth: smooth(out),
               lambda proj, v, smooth=smooth: proj(delta) * proj(smooth(response)) / eps2,
               lambda proj, v, smooth=smooth: proj(smooth(response)) ** 2 / eps2)


def _edge_preserving(c, k: int, noise_std, model, covariance, seed: int):
    """Yield total-variation and non-local-means candidates on the K references' coefficient maps.

    The maps are filtered together (the filters share edges across channels) in units of their
    noise; the other coefficients (background terms) are kept as fitted. Each filter's
    sensitivity is probed as the network's: the change of its output for a small perturbation
    of its input shaped like the noise (:func:`noise_shaped_perturbation`, drawn from ``seed``).
    Same tuples as :func:`_candidates`; the Gaussian width is NaN.
    """
    # imported here, as evaluation.classical does: the module stays importable where torch is
    # blocked (scikit-image's restoration package trips over a torch set to None on import)
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    cov = coefficient_covariance(model) if covariance is None else np.asarray(covariance, np.float64)
    if cov.ndim == 2:
        cov = np.broadcast_to(cov[:, :, None, None], (*cov.shape, *c.shape[1:]))
    z = np.random.default_rng(seed).standard_normal(c.shape)
    delta = noise_shaped_perturbation(noise_std, cov, z)
    eps2 = _probe_eps2(delta, noise_std, model, covariance)
    ck = c[:k].astype(np.float64)
    level = float(np.median(noise_std[noise_std > 0])) if np.any(noise_std > 0) else 1.0
    scale = level * np.sqrt(np.median(np.diagonal(cov[:k, :k]), axis=(0, 1)))[:, None, None]
    # A fixed number of Chambolle iterations, so that the probe's two runs stop together (30:
    # within 1 % of the noise of the converged result on Ni stacks); float32 halves the time.
    filters = [(f"total variation {w:.1f}",
                lambda x, w=w: denoise_tv_chambolle(x.astype(np.float32), weight=w, eps=1e-12,
                                                    max_num_iter=TV_ITERATIONS,
                                                    channel_axis=0).astype(np.float64)) for w in TV_WEIGHTS]
    # fast_mode: patch distances from box sums (seconds on a megapixel); sigma=1 in noise units.
    filters += [(f"non-local means {h:.1f}",
                 lambda x, h=h: denoise_nl_means(x, h=h, sigma=1.0, patch_size=5, patch_distance=6,
                                                 channel_axis=0, fast_mode=True)) for h in NLM_STRENGTHS]
    for name, f in filters:
        out = f(ck / scale) * scale
        response = (f((ck + delta[:k]) / scale) * scale - out).astype(np.float32)
        full = np.concatenate([out.astype(np.float32), c[k:]])
        yield (name, float("nan"), False, lambda full=full: full,
               lambda proj, v, r=response: proj(delta) * proj(r) / eps2,
               lambda proj, v, r=response: proj(r) ** 2 / eps2)


def select_strength(coefficients, noise_std, model: LinearAbsorbanceModel, oxidation_states, *,
                    network=None, sigmas_px=DEFAULT_SIGMAS_PX, window_px: float | None = None,
                    error_window_px: float = 8.0, covariance=None, field=None, edge_preserving: bool = False,
                    probe_seed: int = 0):
    """Choose the denoiser with the lowest estimated oxidation-state error (once, or per pixel).

    Parameters
    ----------
    coefficients : numpy.ndarray
        (P, Y, X) coefficient maps of the plain per-pixel fit (the noisy observation).
    noise_std : numpy.ndarray
        (Y, X) absorbance noise of each pixel (:func:`residual_noise_std`).
    model : LinearAbsorbanceModel
        The physics model of the fit (references first, then the background terms).
    oxidation_states : array_like
        (K,) oxidation state of each reference.
    network : tuple, optional
        ``(coefficients, perturbation, response)``: the network's (P, Y, X) coefficient maps,
        the perturbation added to its input coefficients for the probe and the change of its
        output. The perturbation must be small and shaped like the noise
        (``eps * sigma_i * chol(cov) z``); its size ``eps`` is read from it. The network's
        output, alone and smoothed by :data:`NETWORK_SIGMAS_PX`, joins the candidates.
    sigmas_px : sequence of float
        Gaussian widths tried on the plain fit (0: no smoothing).
    window_px : float or None
        None (default): one choice for the stack, by the risk pooled over all scored pixels
        (the most reliable: a local risk estimate is noisy). A width: a choice per pixel by
        the risk over a Gaussian window of that width.
    error_window_px : float
        Window of the local risk that gives the estimated error of each pixel.
    covariance : numpy.ndarray, optional
        (P, P, Y, X) per-pixel coefficient covariance for unit noise, the noise that varies
        with the counts from energy to energy (:func:`coefficient_covariance_map`; the
        network's probe must be shaped by the same). None: white noise,
        :func:`coefficient_covariance`. Assumed white, the noise above the edge is
        under-estimated, and with it most the sensitivity of the least smoothing candidates:
        the network looked 1-2e-3 (squared state) better than it is on Ni stacks at 300 photons.
    field : array_like of bool, optional
        (Y, X) pixels that are measurements; the risk is estimated on these only. An aligned
        stack outside the field that every image covers repeats the field's edge
        (:func:`xanes_lib.alignment.apply_alignment`): copies of one pixel's noise, which the
        risk estimate takes for independent pixels (it turned the Gaussian candidates down on
        drifting Ni stacks at 300 photons, issue 16). Pass ``AlignedStack.common_mask``. None:
        every pixel.
    edge_preserving : bool
        Also try total variation (:data:`TV_WEIGHTS`) and non-local means
        (:data:`NLM_STRENGTHS`) of the references' coefficient maps, with their sensitivity
        probed (:func:`_edge_preserving`), where the median per-pixel state standard deviation
        is below :data:`MAX_EDGE_STATE_STD` times the references' range. Scored through a
        probe, they replace the exactly scored Gaussians only when better than the best of them
        by more than :data:`NETWORK_MARGIN_SE` standard errors, Bonferroni-corrected for their
        number (1.93 for 6). They keep sharp chemical
        boundaries: on Ni stacks with grain-level chemistry (in-family 3000 photons, foreign
        sharp boundaries at 300) they lowered the oxidation-state error by 12-13 % against the
        best Gaussian (the denoiser's selection uses them).
    probe_seed : int
        Seed of the probe of the edge-preserving candidates.

    Returns
    -------
    coefficients : numpy.ndarray
        (P, Y, X) float32 coefficient maps of the chosen candidates.
    choice : StrengthChoice
    """
    c = np.asarray(coefficients, dtype=np.float32)
    ox = np.asarray(oxidation_states, dtype=np.float64)
    k = ox.size
    k_model = n_references(model)
    if ox.ndim != 1 or k != k_model or not np.all(np.isfinite(ox)) or k < 2 or np.ptp(ox) <= 0:
        raise ValueError(f"oxidation_states must hold one finite state per reference of the model "
                         f"({k_model}: {list(model.names[:k_model])}), at least two of them distinct; got "
                         f"{oxidation_states!r}.")
    sig = np.asarray(sigmas_px, dtype=np.float64).ravel()
    if (sig.size == 0 and network is None) or not np.all(np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError(f"sigmas_px must be one or more finite Gaussian widths >= 0 (pixels), e.g. "
                         f"{DEFAULT_SIGMAS_PX}; got {sigmas_px!r}.")
    weights, pilot, v, scored = state_weights(c, ox, noise_std, model, covariance=covariance, field=field)
    lo, hi = ox.min(), ox.max()
    m = scored.astype(np.float64)

    def proj(x):
        return np.einsum("kyx,kyx->yx", weights, x[:k])

    observed = pilot + proj(c)  # the plain fit's (linearised) oxidation state
    cands = list(_candidates(c, network, sigmas_px, noise_std, model, covariance))
    state_std = float(np.sqrt(np.median(v[scored]))) if scored.any() else np.inf
    if edge_preserving and state_std < MAX_EDGE_STATE_STD * (hi - lo) and np.isfinite(c[:k]).all():
        cands += list(_edge_preserving(c, k, np.asarray(noise_std), model, covariance, probe_seed))
    risks, pooled = [], np.full(len(cands), np.nan)
    for i, (_, _, _, make, sensitivity_of, _) in enumerate(cands):
        # The fit keeps the state within the references' range: the clipped estimate's
        # sensitivity to its own pixel is zero where it is clipped.
        state = pilot + proj(make())
        inside = (state > lo) & (state < hi)
        sensitivity = np.where(inside, sensitivity_of(proj, v), 0.0)
        r = (np.clip(state, lo, hi) - observed) ** 2 - v + 2.0 * sensitivity
        risks.append(np.where(scored, r, 0.0).astype(np.float32))
        pooled[i] = float(risks[i].sum() / max(m.sum(), 1.0))
    difference_se = np.zeros(len(cands))
    # A filter scored through its probe (noisy) replaces the exactly scored Gaussians only when
    # it is better than the best of them by more than ``margin`` standard errors: the one-sided
    # level of NETWORK_MARGIN_SE shared among the probed filters (Bonferroni; 1.93 for 6), so
    # that the luckiest of several noisy estimates does not win by chance. (With 1 SE, an
    # in-family Ni stack at 300 photons chose non-local means at 1.9 SE: true error +6 %.)
    allowed = np.ones(len(cands), bool)
    exact = [i for i, cand in enumerate(cands) if not cand[2] and np.isfinite(cand[1])]
    probed = [i for i, cand in enumerate(cands) if not cand[2] and not np.isfinite(cand[1])]
    if exact and probed:
        g = min(exact, key=lambda i: pooled[i])
        margin = float(ndtri(1.0 - ndtr(-NETWORK_MARGIN_SE) / len(probed)))
        for i in probed:
            allowed[i] = pooled[i] < pooled[g] - margin * _block_se(risks[i] - risks[g], scored)
    if window_px is None:
        best_index = int(min(np.flatnonzero(allowed), key=lambda i: pooled[i]))
        if network is not None:
            # The trained network is the default; a candidate replaces it only when its
            # estimated risk is lower by more than NETWORK_MARGIN_SE standard errors (the
            # risk estimate is noisy; the network may also correct what SURE cannot see).
            net = next(i for i, cand in enumerate(cands) if cand[0] == "network")
            difference_se = np.array([_block_se(r - risks[net], scored) for r in risks])
            eligible = [i for i in range(len(cands)) if i == net or (
                allowed[i] and pooled[i] < pooled[net] - NETWORK_MARGIN_SE * difference_se[i])]
            best_index = min(eligible, key=lambda i: pooled[i])
        choice = np.full(c.shape[1:], best_index, np.int16)
    else:
        local = [_local_mean(r, m, window_px)[0] if ok else np.full(r.shape, np.inf)
                 for r, ok in zip(risks, allowed, strict=True)]
        choice = np.argmin(local, axis=0).astype(np.int16)
    best = np.empty_like(c)
    state_rmse = np.full(c.shape[1:], np.nan, np.float32)
    for i in np.unique(choice):
        at = choice == i
        best[:, at] = cands[i][3]()[:, at]
        local, weight = _local_mean(risks[i], m, error_window_px)
        # Floor: the variance that the candidate's own output keeps from the noise (the local
        # estimate can dip below zero); for the network not the raw fit's ``v``.
        floor = _local_mean(np.where(scored, cands[i][5](proj, v), 0.0), m, error_window_px)[0]
        state_rmse[at] = np.where(weight > 1e-3, np.sqrt(np.maximum(local, floor)), np.nan)[at]
    result = StrengthChoice(tuple(n for n, *_ in cands), np.array([s for _, s, *_ in cands]),
                            np.array([u for _, _, u, *_ in cands]), pooled, difference_se, choice, state_rmse,
                            np.asarray(noise_std, np.float32), scored,
                            np.inf if window_px is None else float(window_px))
    return best, result


def _block_se(values, scored, block_px: int = SE_BLOCK_PX) -> float:
    """Return the standard error of the mean of ``values`` over ``scored`` pixels (block means).

    Risk terms are correlated over the width of the filters; blocks several times wider are
    nearly independent. Blocks from the top left corner (partial ones at the far edges); a
    block counts when a quarter of it is scored.
    """
    ny, nx = scored.shape
    by, bx = -(-ny // block_px), -(-nx // block_px)
    m = np.zeros((by * block_px, bx * block_px), bool)
    m[:ny, :nx] = scored
    v = np.zeros(m.shape, np.float64)
    v[:ny, :nx] = np.where(scored, values, 0.0)
    counts = m.reshape(by, block_px, bx, block_px).sum(axis=(1, 3)).ravel()
    sums = v.reshape(by, block_px, bx, block_px).sum(axis=(1, 3)).ravel()
    keep = counts >= 0.25 * block_px ** 2
    if keep.sum() < 4:
        return float("inf")
    means, w = sums[keep] / counts[keep], counts[keep] / counts[keep].sum()
    mu = np.sum(w * means)
    return float(np.sqrt(np.sum(w ** 2 * (means - mu) ** 2) * keep.sum() / (keep.sum() - 1)))


def _probe_eps2(delta, noise_std, model: LinearAbsorbanceModel, covariance=None) -> float:
    """Squared size ``eps^2`` of a noise-shaped perturbation ``eps * sigma_i * chol(cov_i) z``."""
    var = np.asarray(noise_std, np.float64) ** 2
    if covariance is None:
        expected = np.trace(coefficient_covariance(model)) * float(np.mean(var))
    else:
        expected = float(np.mean(var * np.einsum("ppyx->yx", np.asarray(covariance, np.float64))))
    return float(np.mean(np.sum(np.asarray(delta, np.float64) ** 2, axis=0)) / max(expected, 1e-30))


def self_tuned_gaussian(transmission, energies_eV, *, element: str | None = None, references=None,
                        oxidation_states=None, sigmas_px=DEFAULT_SIGMAS_PX, field=None):
    """Smooth with the one Gaussian width whose estimated error is lowest: no ground truth needed.

    The classical pipeline a user can tune without ground truth.

    The width with the lowest SURE estimate of the oxidation-state error
    (:func:`select_strength` without a network, one choice for the stack) smooths every
    image of the absorbance.

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) transmission; not modified.
    energies_eV : array_like
        (E,) energies.
    element : str, optional
        Edge element (its shipped references); or give ``references``.
    references : sequence, optional
        Reference spectra (with ``oxidation_state``, or give ``oxidation_states``).
    oxidation_states : sequence of float, optional
    sigmas_px : sequence of float
        Widths tried.
    field : array_like of bool, optional
        (Y, X) pixels that are measurements (an aligned stack's ``common_mask``), as
        :func:`select_strength`.

    Returns
    -------
    smoothed : numpy.ndarray
        (E, Y, X) float32 transmission smoothed with the chosen width.
    choice : StrengthChoice
        With ``window_px`` inf; ``chosen`` names the width.
    """
    t = check_stack(transmission, name="transmission")
    refs = references if references is not None else default_references(element)
    ox = [r.oxidation_state for r in refs] if oxidation_states is None else list(oxidation_states)
    model = reference_model(energies_eV, element, refs)
    a = absorbance(t.astype(np.float32))
    c = model.fit(a)
    noise = residual_noise_std(a - model.predict(c), model)
    _, choice = select_strength(c, noise, model, ox, sigmas_px=sigmas_px, window_px=None,
                                covariance=coefficient_covariance_map(model, c), field=field)
    s = float(choice.sigmas_px[int(choice.choice.flat[0])])
    smoothed = ndimage.gaussian_filter(a, (0, s, s), mode="nearest") if s > 0 else a
    return np.exp(-smoothed).astype(np.float32), choice
