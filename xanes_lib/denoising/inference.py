"""Apply a denoiser network to a stack: the forward pass with its physics, and tiled inference.

:func:`forward` is the one differentiable path from a measured transmission stack to the
corrected stack, used by training (:mod:`xanes_lib.denoising.training`), adaptation and inference alike.
:func:`denoise_stack` applies it to a whole stack of any size in overlapping tiles whose
margins are cut off, so that the result does not depend on the tiling (no seams) and memory
stays bounded by the tile size. Its stages (filling invalid pixels, the coefficient scale, one
tile, the strength probe, the rebuild) are functions that :mod:`xanes_lib.chunked.denoise` also
calls, block by block, on a stack that does not fit in memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from ..mapping import check_reference_edges
from ..mapping._input import _refuse_absorbance_as_transmission
from ..physics import LinearAbsorbanceModel, absorbance, n_references, reference_model
from ..progress import progress_bar
from ..spectra import default_references
from ..validate import check_stack, check_transmission_frames
from .beam import estimate_background
from .denoiser import Denoiser, pick_device
from .networks import gaussian_blur
from .strength import (
    StrengthChoice,
    check_field,
    coefficient_covariance_map,
    noise_shaped_perturbation,
    residual_noise_std,
    select_strength,
)

__all__ = [
    "coefficient_scale", "ForwardOutput", "latent_inputs", "forward", "DenoiseResult", "denoise_stack",
    "full_float32",
]


def coefficient_scale(coefficients, n_refs: int, *, stride: int = 4) -> float:
    """Per-stack normalisation of the coefficient maps: the 99th percentile of the edge step.

    Computed on every ``stride``-th row and column so that it is cheap and the same for a
    stack however it is tiled. Floored at 1e-3 (an edge step of 0.001 in -ln T).
    """
    c = coefficients[:n_refs, ::stride, ::stride]
    return _step_scale(c.sum(0) if isinstance(c, np.ndarray) else c.sum(0).detach().cpu().numpy())


def _step_scale(step) -> float:
    """:func:`coefficient_scale` from the (Y, X) edge-step map."""
    return float(max(np.percentile(step, 99.0), 1e-3))


#: Stride (pixels) of the sub-grid of a whole stack on which its coefficient scale is computed.
SCALE_STRIDE = 4


def _fit_step(t, model) -> np.ndarray:
    """(Y, X) edge step of the plain fit of a transmission stack (pixel by pixel)."""
    return model.fit(absorbance(np.asarray(t).astype(np.float32)))[:n_references(model)].sum(0)


def _smooth_blocks(x, block: int, weight=None, sigma_blocks: float = 1.0):
    """Weighted spatial low-pass of each image of an (E, Y, X) tensor (differentiable).

    Normalised convolution on a coarse grid: block sums of ``weight * x`` and of ``weight``
    are smoothed by a Gaussian of ``sigma_blocks`` blocks, divided, and upsampled
    bilinearly. Where the weight is low (inside particles, whose spectra the references do
    not explain exactly) the value comes from the neighbouring blocks.
    """
    w = torch.ones_like(x[:1]) if weight is None else weight
    num = F.avg_pool2d((w * x)[:, None], block, ceil_mode=True, count_include_pad=False)
    den = F.avg_pool2d(w[:, None], block, ceil_mode=True, count_include_pad=False)
    if sigma_blocks > 0:
        num, den = gaussian_blur(num, sigma_blocks), gaussian_blur(den, sigma_blocks)
    coarse = num / den.clamp_min(1e-6)
    return F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _gauss3(x):
    """3x3 binomial smoothing (sigma ~ 0.7 px) of each image of an (E, Y, X) tensor."""
    k = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    k2 = (k[:, None] * k[None, :])[None, None]
    return F.conv2d(F.pad(x[:, None], (1, 1, 1, 1), mode="replicate"), k2)[:, 0]


@dataclass
class ForwardOutput:
    """Tensors of one forward pass, all for the same (E, Y, X) stack.

    Attributes
    ----------
    background : torch.Tensor
        (E, Y, X) estimated multiplicative background B.
    corrected_absorbance : torch.Tensor
        (E, Y, X) ``-ln(T / B)``: background removed, photon noise kept.
    denoised_absorbance : torch.Tensor
        (E, Y, X) background removed and noise suppressed (equals ``corrected_absorbance``
        for the paper variant, which removes only the background).
    coefficients : torch.Tensor
        (P, Y, X) coefficient maps of the denoised stack (latent space).
    raw_coefficients : torch.Tensor
        (P, Y, X) coefficient maps of the plain fit of the measured stack.
    scale : float
        The per-stack normalisation of the coefficients.
    observed_coefficients : torch.Tensor or None
        (P, Y, X) coefficient maps of the plain fit of ``corrected_absorbance`` (the noisy
        observation the strength selection compares with); None for the paper variant.
    unexplained_absorbance : torch.Tensor or None
        (E, Y, X) ``corrected_absorbance`` minus the model of ``observed_coefficients``: what
        no mix of the references explains, noise included; None for the paper variant.
    inputs : torch.Tensor or None
        The latent network's input (1, P + 1, Y, X); None for the paper variant.
    """

    background: torch.Tensor
    corrected_absorbance: torch.Tensor
    denoised_absorbance: torch.Tensor
    coefficients: torch.Tensor
    raw_coefficients: torch.Tensor
    scale: float
    observed_coefficients: torch.Tensor | None = None
    unexplained_absorbance: torch.Tensor | None = None
    inputs: torch.Tensor | None = None


def latent_inputs(a, model: LinearAbsorbanceModel, scale: float | None = None):
    """Network input of the latent variant: normalised coefficients and the noise-level map.

    Returns the (1, P + 1, Y, X) input, the raw coefficients (P, Y, X) and the scale used
    (:func:`coefficient_scale` of this stack when ``scale`` is None).
    """
    c0 = model.fit(a)
    if scale is None:
        scale = coefficient_scale(c0, n_references(model))
    resid = a - model.predict(c0)
    n_e, p = model.matrix.shape
    k = n_references(model)
    # Standard deviation of a reference coefficient if the residual were pure noise.
    gain = float(np.sqrt(np.mean(np.diag(model.pinv @ model.pinv.T)[:k]) * n_e / max(n_e - p, 1)))
    noise = resid.pow(2).mean(0, keepdim=True).sqrt() * gain
    return torch.cat([c0 / scale, noise / scale])[None], c0, scale


def forward(denoiser: Denoiser, transmission, model: LinearAbsorbanceModel, *, scale: float | None = None,
            energy_batch: int | None = None) -> ForwardOutput:
    """Differentiable forward pass of a denoiser on one (E, Y, X) transmission tensor.

    Parameters
    ----------
    denoiser : Denoiser
        The network with its variant and hyper-parameters (``smooth_block`` and
        ``residual_background`` of the latent variant matter here; a low-rank background is
        removed before this function, not in it).
    transmission : torch.Tensor
        (E, Y, X) measured transmission (flat-field corrected).
    model : LinearAbsorbanceModel
        Physics model on the stack's energies (:func:`xanes_lib.physics.reference_model`).
    scale : float, optional
        Coefficient normalisation; None computes it from this tensor
        (:func:`coefficient_scale`). Give the whole stack's value when passing a tile.
    energy_batch : int, optional
        Paper variant: images per network call (bounds memory); None: all at once.

    Returns
    -------
    ForwardOutput
    """
    net, hparams = denoiser.net, denoiser.config.hparams
    a = absorbance(transmission)
    k = n_references(model)
    if denoiser.variant == "paper":
        n = energy_batch or transmission.shape[0]
        b = torch.cat([net(transmission[i:i + n, None])[:, 0] for i in range(0, transmission.shape[0], n)])
        b = b.clamp_min(1e-3)
        corrected = a + b.log()
        coeffs = model.fit(corrected)
        raw = model.fit(a)
        s = coefficient_scale(raw, k) if scale is None else scale
        return ForwardOutput(b, corrected, corrected, coeffs, raw, s)
    block = hparams.smooth_block
    x, c0, s = latent_inputs(a, model, scale)
    y = net(x)[0]
    coeffs = c0 + s * y[:-1]
    if denoiser.residual_background:
        # The background is what the denoised physics model leaves unexplained, smoothed in
        # space; the network's last channel weights the pixels (low where the references
        # may not explain the sample exactly).
        beta = _smooth_blocks(a - model.predict(coeffs), block, torch.sigmoid(y[-1:] + 2.0),
                              float(hparams.smooth_sigma_blocks))
    else:
        beta = torch.zeros_like(a)
    corrected = a - beta
    # Keep the part of the data that no mix of references explains (phases outside the
    # references stay visible), lightly smoothed; the in-model part is the denoised fit.
    observed = model.fit(corrected)
    outside = corrected - model.predict(observed)
    denoised = model.predict(coeffs) + _gauss3(outside)
    return ForwardOutput(torch.exp(-beta), corrected, denoised, coeffs, c0, s, observed, outside, x)


@dataclass
class DenoiseResult:
    """Result of :func:`denoise_stack` (numpy arrays).

    Attributes
    ----------
    corrected : numpy.ndarray
        (E, Y, X) float32 transmission with the background removed (``T / B``).
    denoised : numpy.ndarray
        (E, Y, X) float32 transmission with background and noise removed.
    background : numpy.ndarray
        (E, Y, X) float32 estimated background B.
    coefficients : numpy.ndarray
        (P, Y, X) float32 coefficient maps of the denoised stack.
    coefficient_names : tuple of str
    scale : float
        Coefficient normalisation used (one value for the whole stack).
    seconds : float
        Wall time of the inference.
    tiles : int
        Number of tiles processed.
    mode : str
        "tiled" or "resize" (the paper's resize-to-256 inference).
    beam : xanes_lib.denoising.beam.BackgroundEstimate or None
        The low-rank beam background removed before the network (already included in
        ``background``), when the pipeline uses one.
    invalid : numpy.ndarray or None
        (Y, X) pixels whose measured transmission was NaN, inf or <= 0 at some energy: left
        out (the network saw copies of their nearest valid neighbours, so nothing spreads
        from them) and NaN in every output; None when there were none.
    strength : xanes_lib.denoising.strength.StrengthChoice or None
        What the per-pixel strength selection chose between the network and Gaussian
        smoothing of the plain fit, with the scores that chose it and the estimated
        oxidation-state error of each pixel; None when the selection was off.
    """

    corrected: np.ndarray
    denoised: np.ndarray
    background: np.ndarray
    coefficients: np.ndarray
    coefficient_names: tuple
    scale: float
    seconds: float
    tiles: int
    mode: str
    beam: object = None
    invalid: np.ndarray | None = None
    strength: StrengthChoice | None = None

    def oxidation_state_std(self, fit_std):
        """Return the standard deviation to report for the oxidation state fitted on ``denoised``.

        See :meth:`xanes_lib.denoising.strength.StrengthChoice.oxidation_state_std`; ``fit_std``
        itself when the selection was off.
        """
        return np.asarray(fit_std) if self.strength is None else self.strength.oxidation_state_std(fit_std)


def _tile_align(denoiser: Denoiser) -> int:
    """Multiple of the tile sizes that the network needs (its pooling and smoothing blocks)."""
    if denoiser.variant != "latent":
        return 1
    hp = denoiser.config.hparams
    return int(np.lcm(hp.smooth_block, 2 ** (hp.depth - 1)))


def _tile_regions(n: int, tile: int, margin: int, align: int) -> list[tuple[int, int]]:
    """Return the inner regions ``(start, stop)`` (starts multiples of ``align``) covering ``0..n``."""
    inner = tile - 2 * margin
    if inner <= 0 or inner % align:
        raise ValueError(f"tile {tile} with margin {margin} leaves an inner size {inner}; it must be a "
                         f"positive multiple of {align}.")
    return [(s, min(s + inner, n)) for s in range(0, n, inner)]


def _with_halo(start: int, stop: int, halo: int, n: int) -> tuple[int, int]:
    """Return the range ``start..stop`` widened by ``halo`` on each side, within ``0..n`` (no padding)."""
    return max(start - halo, 0), min(stop + halo, n)


def _stack_model(n_images: int, energies_eV, element, references):
    """Return the references and the physics model of a stack of ``n_images`` images."""
    refs = references if references is not None else default_references(element)
    # a denoiser given the references of another element or edge fails later without saying why
    check_reference_edges(refs, np.asarray(energies_eV, dtype=np.float64))
    model = reference_model(energies_eV, element, refs)
    if n_images != model.matrix.shape[0]:
        raise ValueError(f"transmission has {n_images} images but there are {model.matrix.shape[0]} "
                         "energies; they must match one to one.")
    return refs, model


def _lowrank_beam(estimate, denoiser: Denoiser, lowrank: bool | None):
    """Return ``estimate()`` when the pipeline removes the low-rank beam background, else None.

    With ``lowrank`` None (as trained) a stack without an empty field only warns.
    """
    if not (lowrank or (lowrank is None and denoiser.lowrank_background)):
        return None
    try:
        return estimate()
    except ValueError as exc:
        if lowrank:
            raise
        warnings.warn(f"no low-rank background ({exc}); the network sees the uncorrected stack, "
                      "whose background it was not trained for.", stacklevel=3)
    return None


def denoise_stack(denoiser: Denoiser, transmission, energies_eV, *, element: str | None = None,
                  references=None, tile: int = 512, margin: int = 64, energy_batch: int = 16,
                  resize_to: int | None = None, lowrank: bool | None = None, device=None,
                  progress: bool = True, select: bool = True, probe_seed: int = 0,
                  field=None) -> DenoiseResult:
    """Denoise a whole stack of any size in overlapping tiles (or resized, for ``paper``).

    A stack that does not fit in memory: :func:`xanes_lib.chunked.denoise_chunked`, the same
    stages block by block on a dask array, with the same result.

    Parameters
    ----------
    denoiser : Denoiser
        The trained denoiser (:func:`xanes_lib.denoising.load_checkpoint`).
    transmission : array_like
        (E, Y, X) measured transmission; not modified.
    energies_eV : array_like
        (E,) energies.
    element : str, optional
        Edge element (chooses the shipped references); or give ``references``.
    references : sequence, optional
        Reference spectra for the physics model.
    tile, margin : int
        Tile size and the margin cut off each side (at least the network's reach; the inner
        size ``tile - 2 margin`` must be a multiple of the block size of the variant).
    energy_batch : int
        Images per batch for the paper variant (bounds memory).
    resize_to : int, optional
        Paper variant only: the published inference, every image resized to
        ``resize_to x resize_to`` and the background resized back.
    lowrank : bool, optional
        Remove the low-rank beam background (:func:`xanes_lib.denoising.beam.estimate_background`,
        on the whole stack) before the network. None: as the network was trained
        (``denoiser.lowrank_background``). Pass False when the stack is already corrected by it.
    device : str or torch.device, optional
        None picks CUDA when present.
    progress : bool
        Show a progress bar over the tiles (when there are several).
    select : bool
        Latent variant: choose per pixel between the network and Gaussian smoothing of the
        plain fit, by the estimated oxidation-state error of each
        (:func:`xanes_lib.denoising.strength.select_strength`; the choice is returned in
        ``strength``). False returns the network's output everywhere.
    probe_seed : int
        Seed of the random perturbation that measures the network's sensitivity to its input.
    field : array_like of bool, optional
        (Y, X) pixels that are measurements: on an aligned stack its ``common_mask`` (outside
        it the aligned images repeat the field's edge). The strength selection estimates its
        risk on these pixels only (:func:`xanes_lib.denoising.strength.select_strength`).
        None: every pixel.

    Returns
    -------
    DenoiseResult

    Raises
    ------
    TypeError
        If ``denoiser`` is not a :class:`Denoiser`.
    ValueError
        Bad stack, energies or references; an absorbance stack given as ``transmission`` (its
        ``-ln`` steps down at the edge: pass ``np.exp(-absorbance)``).
    """
    t0 = time.perf_counter()
    _check_denoiser(denoiser)
    if isinstance(probe_seed, bool) or not isinstance(probe_seed, int | np.integer) or probe_seed < 0:
        raise ValueError(f"probe_seed must be an integer >= 0 (the seed of the selection's probe); got "
                         f"{probe_seed!r}.")
    device = pick_device(device)
    t = check_stack(transmission, name="transmission", allow_nonfinite=True)
    field = check_field(field, t.shape[1:])
    refs, model = _stack_model(t.shape[0], energies_eV, element, references)
    check_transmission_frames(t, model.energies_eV)
    bad = _invalid_pixels(t)
    _refuse_absorbance(t, model, ~bad)
    t, invalid = _fill_invalid(t, bad)
    beam = _lowrank_beam(lambda: estimate_background(t, energies_eV, model), denoiser, lowrank)
    if beam is not None:
        t = (t / beam.background).astype(np.float32)
    probe = None
    if select and denoiser.variant == "latent" and resize_to is None:
        probe = _Probe(model, [r.oxidation_state for r in refs], probe_seed)
    res, maps = _denoise_corrected(denoiser, t, model, tile=tile, margin=margin, energy_batch=energy_batch,
                                   resize_to=resize_to, device=device, progress=progress, probe=probe)
    if probe is not None:
        res.coefficients, res.strength = probe.select(res.coefficients, maps, field)
        res.denoised = _rebuild(res.corrected, maps["observed"], res.coefficients, model)
    res.seconds = time.perf_counter() - t0
    if beam is not None:
        # corrected and denoised are already relative to the raw stack; B includes the beam's.
        res.beam = beam
        res.background *= beam.background
    if invalid is not None:
        for a in (res.corrected, res.denoised, res.background, res.coefficients):
            a[:, invalid] = np.nan
        res.invalid = invalid
    return res


#: Gaussian width (pixels) of the smoothing of what no mix of the references explains, in the
#: stack rebuilt after the strength selection: a phase outside the references stays in the
#: residual, above the noise (more so than after a plain Gaussian of 2 px).
UNEXPLAINED_SIGMA_PX = 3.0


def _rebuild(corrected, observed, coefficients, model) -> np.ndarray:
    """Denoised transmission: the model of the chosen coefficients plus the smoothed unexplained part.

    ``observed`` are the plain fit's coefficients of ``corrected`` (collected tile by tile).
    A pixel depends on its neighbours within :func:`.beam.smoothing_halo` of ``UNEXPLAINED_SIGMA_PX`` only.
    """
    outside = absorbance(corrected)
    outside -= model.predict(observed)
    ndimage.gaussian_filter(outside, (0, UNEXPLAINED_SIGMA_PX, UNEXPLAINED_SIGMA_PX), mode="nearest",
                            output=outside)
    outside += model.predict(coefficients)
    return np.exp(-outside, out=outside).astype(np.float32, copy=False)


def _check_denoiser(denoiser) -> None:
    """Refuse a ``denoiser`` that is no :class:`Denoiser` (TypeError naming the fix)."""
    if not isinstance(denoiser, Denoiser):
        raise TypeError(f"denoiser must be a xanes_lib.denoising.Denoiser; got {type(denoiser).__name__}. "
                        "Load one with load_checkpoint(path), e.g. load_checkpoint(shipped_checkpoint()).")


def _refuse_absorbance(t, model: LinearAbsorbanceModel, valid) -> None:
    """Refuse an absorbance stack given as transmission: its ``-ln`` steps down at the edge.

    Absorbance (about 0 in the empty field, noise of either sign) otherwise only shows as
    "transmission <= 0" pixels, and its sample pixels would be denoised as nonsense. The test
    of :mod:`xanes_lib.mapping` (edge step of ``-ln`` negative in significantly more than half
    of the ``valid`` (Y, X) pixels, sampled).
    """
    _refuse_absorbance_as_transmission(t, np.arange(t.shape[0]), np.asarray(valid, bool), model,
                                       n_references(model))


def _invalid_pixels(t) -> np.ndarray:
    """(Y, X) pixels whose transmission is not finite or not positive at some energy."""
    bad = np.zeros(t.shape[1:], bool)
    for frame in t:
        bad |= ~(np.isfinite(frame) & (frame > 0))
    return bad


def _nearest_valid(bad, *, stacklevel: int):
    """(Y, X) row and column indices of each pixel's nearest valid pixel; None when all are valid.

    Warns how many pixels are replaced (``stacklevel`` of the warning: the user's call).
    """
    if not bad.any():
        return None
    if bad.all():
        raise ValueError("transmission has no pixel that is finite and > 0 at every energy; nothing can be "
                         "denoised. Check the flat-field correction (zero flat pixels give inf or NaN).")
    _, index = ndimage.distance_transform_edt(bad, return_indices=True)
    warnings.warn(f"{int(bad.sum())} pixel(s) with NaN, inf or transmission <= 0 at some energy are left out "
                  "of the denoising (NaN in its outputs; DenoiseResult.invalid marks them).",
                  stacklevel=stacklevel + 1)
    return index


def _gather_pixels(t, iy, ix) -> np.ndarray:
    """(E, Y, X) float32 copy of ``t`` at pixels ``(iy, ix)`` (each pixel's stand-in)."""
    return np.ascontiguousarray(t[:, iy, ix], dtype=np.float32)


def _fill_invalid(t: np.ndarray, bad: np.ndarray | None = None):
    """Stand-ins for pixels whose transmission is not finite or not positive at some energy.

    Returns the stack with each such pixel replaced by its nearest valid pixel (a copy; the
    input is not modified) and the (Y, X) mask of the replaced pixels, or ``(t, None)``
    when all pixels are valid. A warning names how many were replaced. ``bad``: those pixels,
    when already known (:func:`_invalid_pixels`).
    """
    bad = _invalid_pixels(t) if bad is None else bad
    index = _nearest_valid(bad, stacklevel=3)
    return (t, None) if index is None else (_gather_pixels(t, *index), bad)


def _probe_planes(n_params: int) -> dict:
    """Return the maps the strength probe collects per tile: name -> number of (Y, X) planes."""
    return {"observed": n_params, "noise": 1, "delta": n_params, "response": n_params}


class _Probe:
    """What the strength selection needs from each tile; then the selection.

    Per pixel: the plain fit's coefficients, the photon noise of the absorbance, and the
    network's response to a small perturbation of its input shaped like the noise
    (:func:`.strength.noise_shaped_perturbation` with the pixel's own covariance,
    :func:`.strength.coefficient_covariance_map`; ``z`` drawn once for the whole stack from
    ``seed`` by :meth:`draw`, so that the result does not depend on the tiling).
    """

    def __init__(self, model, oxidation_states, seed: int):
        self.model, self.ox, self.seed = model, list(oxidation_states), seed

    def draw(self, shape) -> np.ndarray:
        """(P, Y, X) float32 ``z`` of a stack of images of ``shape``."""
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal((self.model.n_params, *shape), dtype=np.float32)

    def tile(self, net, res: ForwardOutput, z, keep) -> dict:
        """Probe the network on one tile (``z``: its part of :meth:`draw`, padded like the tile).

        Returns the maps of :func:`_probe_planes` on the tile's inner part ``keep``.
        """
        noise = residual_noise_std(res.unexplained_absorbance.cpu().numpy(), self.model)
        cov = coefficient_covariance_map(self.model, res.observed_coefficients.cpu().numpy())
        delta = noise_shaped_perturbation(noise, cov, z)
        delta_t = res.inputs.new_tensor(delta)
        x = res.inputs.clone()
        x[0, :delta.shape[0]] += delta_t / res.scale
        y = net(x)[0]
        response = res.raw_coefficients + delta_t + res.scale * y[:-1] - res.coefficients
        return {"observed": res.observed_coefficients[keep].cpu().numpy(), "noise": noise[keep[1:]],
                "delta": delta[keep], "response": response[keep].cpu().numpy()}

    def select(self, coefficients, maps, field=None):
        """Return the chosen coefficient maps and the :class:`StrengthChoice`, from the stack's ``maps``.

        The risk is estimated on the ``field`` pixels (all when None).
        """
        return select_strength(maps["observed"], maps["noise"], self.model, self.ox,
                               network=(coefficients, maps["delta"], maps["response"]),
                               covariance=coefficient_covariance_map(self.model, maps["observed"]),
                               field=field, edge_preserving=True, probe_seed=self.seed)


_FLOAT32 = {"lock": threading.Lock(), "depth": 0, "saved": None}


@contextlib.contextmanager
def full_float32():
    """Run convolutions and matrix products in full float32: no TF32 on NVIDIA GPUs meanwhile.

    PyTorch lets cuDNN convolutions use TF32 (a 10-bit mantissa) by default. The strength
    probe takes the difference of the network's outputs for a 1 % perturbation of its input,
    which TF32's rounding swamps: on an H200 it changed the chosen candidate of a Ni stack
    (RMSE 0.127 on the CPU, 0.130 on the GPU); in float32 the two agreed to 2e-6. Nested and
    thread-safe (dask runs tiles in threads); the user's settings are restored on exit.
    """
    state = _FLOAT32
    with state["lock"]:
        if state["depth"] == 0:
            state["saved"] = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        state["depth"] += 1
    try:
        yield
    finally:
        with state["lock"]:
            state["depth"] -= 1
            if state["depth"] == 0:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = state["saved"]


def _denoise_tile(denoiser: Denoiser, window, model, *, scale: float, align: int, energy_batch: int, device,
                  keep, outputs=("corrected", "denoised", "background"), probe: _Probe | None = None,
                  z=None) -> dict:
    """Run the network on one window of the stack; return its inner part ``keep`` (row, column slices).

    The window is padded (replicate) to the network's multiple ``align``; the padding lies
    outside the kept part. Returns the (E, y, x) ``outputs`` (transmissions and background),
    the (P, y, x) ``coefficients`` and, with a ``probe`` (``z``: the window's part of its
    draw), the maps of :func:`_probe_planes`. Call under ``torch.no_grad()``.
    """
    chunk = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)).to(device)
    ph, pw = (-chunk.shape[1]) % align, (-chunk.shape[2]) % align
    if ph or pw:
        chunk = F.pad(chunk[None], (0, pw, 0, ph), mode="replicate")[0]
    sl = (slice(None), *keep)
    with full_float32():  # the same result on every device; the probe needs it (see full_float32)
        res = forward(denoiser, chunk, model, scale=scale, energy_batch=energy_batch)
        tensors = {"background": lambda: res.background[sl], "coefficients": lambda: res.coefficients[sl],
                   "corrected": lambda: torch.exp(-res.corrected_absorbance[sl]),
                   "denoised": lambda: torch.exp(-res.denoised_absorbance[sl])}
        out = {name: tensors[name]().cpu().numpy() for name in (*outputs, "coefficients")}
        if probe is not None:
            out.update(probe.tile(denoiser.net, res, np.pad(z, ((0, 0), (0, ph), (0, pw))), sl))
    return out


def _denoise_corrected(denoiser: Denoiser, t, model, *, tile: int, margin: int, energy_batch: int,
                       resize_to, device, progress: bool, probe: _Probe | None = None):
    """:func:`denoise_stack` after the optional low-rank background: the network's part.

    Returns the :class:`DenoiseResult` and the probe's maps (None without a probe).
    """
    t0 = time.perf_counter()
    n_e, ny, nx = t.shape
    scale = _step_scale(_fit_step(t[:, ::SCALE_STRIDE, ::SCALE_STRIDE], model))
    out = {name: np.empty((n_e, ny, nx), np.float32) for name in ("corrected", "denoised", "background")}
    out["coefficients"] = np.empty((model.n_params, ny, nx), np.float32)
    denoiser.net.to(device).eval()
    if resize_to is not None:
        if denoiser.variant != "paper":
            raise ValueError("resize_to is the paper variant's published inference; use tiles for 'latent'.")
        _resize_paper(denoiser.net, t, out, resize_to, energy_batch, device)
        out["coefficients"][:] = model.fit(absorbance(out["corrected"]))
        return DenoiseResult(out["corrected"], out["denoised"], out["background"], out["coefficients"],
                             model.names, scale, time.perf_counter() - t0, 1, "resize"), None
    z = None
    if probe is not None:
        z = probe.draw((ny, nx))
        out.update({k: np.empty((n, ny, nx), np.float32) for k, n in _probe_planes(model.n_params).items()})
    align = _tile_align(denoiser)
    tiles = [(ry, rx) for ry in _tile_regions(ny, tile, margin, align)
             for rx in _tile_regions(nx, tile, margin, align)]
    with torch.no_grad():
        for (y0, y1), (x0, x1) in progress_bar(tiles, desc=f"denoise {denoiser.variant}", unit="tile",
                                               disable=not progress or len(tiles) == 1):
            (ys, ye), (xs, xe) = _with_halo(y0, y1, margin, ny), _with_halo(x0, x1, margin, nx)
            part = _denoise_tile(denoiser, t[:, ys:ye, xs:xe], model, scale=scale, align=align,
                                 energy_batch=energy_batch, device=device,
                                 keep=(slice(y0 - ys, y1 - ys), slice(x0 - xs, x1 - xs)), probe=probe,
                                 z=None if z is None else z[:, ys:ye, xs:xe])
            for name, value in part.items():
                out[name].reshape(-1, ny, nx)[:, y0:y1, x0:x1] = value.reshape(-1, y1 - y0, x1 - x0)
    maps = None if probe is None else {name: out.pop(name) for name in _probe_planes(model.n_params)}
    if maps is not None:
        maps["noise"] = maps["noise"][0]
    return DenoiseResult(out["corrected"], out["denoised"], out["background"], out["coefficients"],
                         model.names, scale, time.perf_counter() - t0, len(tiles), "tiled"), maps


def _resize_paper(net, t, out, size: int, energy_batch: int, device) -> None:
    """Run the published inference: resize to ``size``, predict B, resize B back."""
    n_e, ny, nx = t.shape
    with torch.no_grad():
        for i in range(0, n_e, energy_batch):
            x = np.ascontiguousarray(t[i:i + energy_batch], dtype=np.float32)
            x = torch.from_numpy(x).to(device)[:, None]
            small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            b = F.interpolate(net(small), size=(ny, nx), mode="bilinear", align_corners=False)[:, 0]
            b = b.clamp_min(1e-3)
            out["background"][i:i + energy_batch] = b.cpu().numpy()
            corr = (x[:, 0] / b).cpu().numpy()
            out["corrected"][i:i + energy_batch] = corr
            out["denoised"][i:i + energy_batch] = corr
