"""Supervised, physics-informed pre-training of the denoisers, and their checkpoints.

Pre-training reads simulated stacks *with* their ground truth (the true transmission and
background): this is the supervised stage of the method, and the only place outside
simulation, metrics and tests that reads ``ground_truth/``. Adaptation to measured data
(:mod:`xanes_lib.denoising.adaptation`) never does.

Each step draws one training stack, a random crop (flipped and rotated at random) and a
random sub-stack of energies before, across and after the edge, runs
:func:`xanes_lib.denoising.inference.forward` and takes an Adam step on
:func:`xanes_lib.denoising.losses.total_loss`.
The first ``warmup_steps`` use the background term only (the published schedule).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..io import read_ground_truth, read_stack
from ..physics import absorbance, reference_model
from ..progress import progress_bar
from ..spectra import default_references
from .beam import estimate_background
from .checkpoints import load_checkpoint, save_checkpoint
from .config import LossWeights, TrainConfig
from .denoiser import Denoiser, build_denoiser, pick_device
from .inference import forward
from .losses import total_loss

__all__ = [
    "TrainingStack", "load_training_stacks", "sample_energies", "sample_batch", "validation_set",
    "evaluate", "TrainResult", "training_meta", "train",
]


@dataclass
class TrainingStack:
    """A simulated stack held in memory for training (float32)."""

    name: str
    element: str
    energies_eV: np.ndarray
    transmission: np.ndarray
    true_absorbance: np.ndarray
    background: np.ndarray
    mask: np.ndarray
    edge_eV: float


def load_training_stacks(paths, *, lowrank: bool = False) -> list[TrainingStack]:
    """Read simulated stacks and their ground truth (supervised pre-training only).

    Parameters
    ----------
    paths : sequence of path-like
        Simulated stack files (notebook 01).
    lowrank : bool
        Divide each whole stack by its low-rank beam background estimate
        (:func:`xanes_lib.denoising.beam.estimate_background`, no ground truth used), as inference does;
        the background target becomes what that estimate left (``B_true / B_lowrank``).

    Raises
    ------
    ValueError
        If a file has no ground truth (measured data cannot be used for pre-training).
    """
    stacks = []
    for p in paths:
        st = read_stack(p)
        gt = read_ground_truth(p)
        edge = float(np.mean([r.edge_energy() for r in default_references(st.element)]))
        t = np.asarray(st.transmission, np.float32)
        b = np.asarray(gt.background, np.float32)
        if lowrank:
            est = estimate_background(t, st.energies_eV, reference_model(st.energies_eV, st.element))
            t, b = t / est.background, b / est.background
        stacks.append(TrainingStack(Path(p).name, st.element, st.energies_eV, t,
                                    absorbance(np.asarray(gt.transmission, np.float32)), b,
                                    np.asarray(gt.mask, bool), edge))
    if not stacks:
        raise ValueError("no training stacks given; run notebook 01 to simulate them.")
    return stacks


def sample_energies(energies_eV, edge_eV: float, n: int, rng) -> np.ndarray:
    """Sorted indices of ``n`` energies: at least 3 below and 3 above the edge region.

    The edge region is ``edge - 15 eV`` to ``edge + 40 eV``; the rest of the sub-stack is
    drawn from all energies.
    """
    e = np.asarray(energies_eV)
    n = int(min(max(n, 8), e.size))
    pre = np.flatnonzero(e < edge_eV - 15)
    post = np.flatnonzero(e > edge_eV + 40)
    picked = set(rng.choice(pre, min(3, pre.size), replace=False).tolist()) if pre.size else set()
    if post.size:
        picked |= set(rng.choice(post, min(3, post.size), replace=False).tolist())
    rest = np.setdiff1d(np.arange(e.size), list(picked))
    picked |= set(rng.choice(rest, n - len(picked), replace=False).tolist())
    return np.sort(np.fromiter(picked, int))


def sample_batch(stack: TrainingStack, rng, *, crop: int, n_energies: int, augment: bool = True) -> dict:
    """One training sample: a crop and a sub-stack of energies, as numpy arrays."""
    idx = sample_energies(stack.energies_eV, stack.edge_eV, n_energies, rng)
    ny, nx = stack.mask.shape
    c = min(crop, ny, nx)
    y0, x0 = rng.integers(0, ny - c + 1), rng.integers(0, nx - c + 1)
    sl = (slice(None), slice(y0, y0 + c), slice(x0, x0 + c))
    # Crop first (a view), then pick energies: only the crop is copied.
    arrays = {"transmission": stack.transmission[sl][idx], "absorbance": stack.true_absorbance[sl][idx],
              "background": stack.background[sl][idx], "mask": stack.mask[sl[1:]][None]}
    if augment:
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        for name, arr in arrays.items():
            arr = np.rot90(arr, k, axes=(1, 2))
            arrays[name] = np.ascontiguousarray(arr[:, :, ::-1] if flip else arr)
    arrays["mask"] = arrays["mask"][0]
    return {"energies_eV": stack.energies_eV[idx], "element": stack.element, **arrays}


def _to_torch(sample: dict, device) -> dict:
    return {k: (torch.from_numpy(v).to(device) if isinstance(v, np.ndarray) and k != "energies_eV" else v)
            for k, v in sample.items()}


def _loss_of(denoiser: Denoiser, sample: dict, weights: LossWeights):
    model = reference_model(sample["energies_eV"], sample["element"])
    out = forward(denoiser, sample["transmission"], model)
    return total_loss(out, sample, model, weights)


def validation_set(stacks, config: TrainConfig) -> list[dict]:
    """Draw the fixed validation samples with the config's seed (the same for every run)."""
    rng = np.random.default_rng([config.seed, 1])
    lo, hi = config.n_energies
    return [sample_batch(stacks[i % len(stacks)], rng, crop=config.crop,
                         n_energies=int(rng.integers(lo, hi + 1)), augment=False)
            for i in range(config.n_val_crops)]


def evaluate(denoiser: Denoiser, weights: LossWeights, samples, device=None) -> dict:
    """Mean of the total loss and of each term over validation samples (no gradients)."""
    device = pick_device(device)
    denoiser.net.eval()
    totals, terms = [], {}
    with torch.no_grad():
        for s in samples:
            total, parts = _loss_of(denoiser, _to_torch(s, device), weights)
            totals.append(float(total))
            for k, v in parts.items():
                terms.setdefault(k, []).append(v)
    return {"loss": float(np.mean(totals)), **{k: float(np.mean(v)) for k, v in terms.items()}}


@dataclass
class TrainResult:
    """Outcome of :func:`train`: the trained denoiser, its configuration and the time taken.

    Attributes
    ----------
    denoiser : Denoiser
        The network with its provenance (``meta``) and loss history (``history``).
    config : TrainConfig
        The training configuration.
    seconds : float
        Wall time of this run (a resumed run counts only its own steps).
    """

    denoiser: Denoiser
    config: TrainConfig
    seconds: float

    @property
    def history(self) -> dict:
        """Loss history: ``step``, ``train_loss``, ``val_step``, ``val_loss``, ``val_terms``."""
        return self.denoiser.history


def training_meta(config: TrainConfig, stacks, step: int) -> dict:
    """Provenance recorded with a trained denoiser (see :mod:`xanes_lib.denoising.checkpoints`)."""
    return {"train_config": config.to_dict(), "seed": config.seed, "step": int(step),
            "elements": sorted({s.element for s in stacks}),
            "energy_range_eV": [float(min(s.energies_eV[0] for s in stacks)),
                                float(max(s.energies_eV[-1] for s in stacks))],
            "package_version": __version__, "torch_version": str(torch.__version__)}


def train(config: TrainConfig, train_paths, val_paths, *, checkpoint_path=None, resume_from=None,
          device=None, progress: bool = True) -> TrainResult:
    """Pre-train a denoiser on simulated stacks.

    Parameters
    ----------
    config : TrainConfig
        The run (for example :func:`xanes_lib.denoising.recipe`).
    train_paths, val_paths : sequence of path-like
        Simulated stack files with ground truth (notebook 01).
    checkpoint_path : path-like, optional
        Written at every validation and at the end (atomically).
    resume_from : path-like, optional
        A checkpoint of the same network to continue from (weights, optimiser state, step
        count and history).
    device : str, optional
        None picks CUDA when present.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TrainResult
    """
    device = pick_device(device)
    denoiser = build_denoiser(config.network, seed=config.seed, device=device)
    net = denoiser.net
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    denoiser.history = {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "val_terms": []}
    start = 0
    if resume_from is not None:
        previous = load_checkpoint(resume_from, device=device, expect_network=config.network)
        net.load_state_dict(previous.net.state_dict())
        if previous.optimizer_state is not None:
            opt.load_state_dict(previous.optimizer_state)
        denoiser.history, start = previous.history, int(previous.meta["step"])
    history = denoiser.history
    train_stacks = load_training_stacks(train_paths, lowrank=denoiser.lowrank_background)
    val_samples = validation_set(load_training_stacks(val_paths, lowrank=denoiser.lowrank_background), config)
    weights = config.weights
    warm = LossWeights(**{k: (1.0 if k == "background" else 0.0) for k in weights.to_dict()})
    rng = np.random.default_rng([config.seed, 0, start])
    lo, hi = config.n_energies
    t0 = time.perf_counter()
    bar = progress_bar(range(start, config.steps), disable=not progress, desc=f"train {config.variant}",
                       unit="step")
    for step in bar:
        lr = config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(config.steps, 1))))
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        st = train_stacks[int(rng.integers(len(train_stacks)))]
        batch = sample_batch(st, rng, crop=config.crop, n_energies=int(rng.integers(lo, hi + 1)))
        sample = _to_torch(batch, device)
        loss, _ = _loss_of(denoiser, sample, warm if step < config.warmup_steps else weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        history["step"].append(step + 1)
        history["train_loss"].append(float(loss.detach()))
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            val = evaluate(denoiser, weights, val_samples, device)
            history["val_step"].append(step + 1)
            history["val_loss"].append(val["loss"])
            history["val_terms"].append(val)
            bar.set_postfix(val=f"{val['loss']:.4f}")
            if checkpoint_path is not None:
                denoiser.meta = training_meta(config, train_stacks, step + 1)
                save_checkpoint(checkpoint_path, denoiser, optimizer=opt)
    seconds = time.perf_counter() - t0
    denoiser.meta = training_meta(config, train_stacks, max(config.steps, start))
    net.eval()
    if checkpoint_path is not None and start < config.steps:
        save_checkpoint(checkpoint_path, denoiser, optimizer=opt)
    return TrainResult(denoiser, config, seconds)
