"""Supervised, physics-informed pre-training of the denoisers, and their checkpoints.

Pre-training reads simulated stacks *with* their ground truth (the true transmission and
background): this is the supervised stage of the method, and the only place outside
simulation, metrics and tests that reads ``ground_truth/``. Adaptation to measured data
(:mod:`xanes_lib.denoising.adaptation`) never does.

Each step draws one training stack, a random crop (flipped and rotated at random) and a
random sub-stack of energies before, across and after the edge, runs
:func:`xanes_lib.denoising.inference.forward` and takes an Adam step on :func:`xanes_lib.denoising.losses.total_loss`.
The first ``warmup_steps`` use the background term only (the published schedule).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .beam import estimate_background
from .inference import forward, reference_model
from ..io import read_ground_truth, read_stack
from ..io._hdf5 import atomic_file
from .losses import LossWeights, total_loss
from ..evaluation.metrics import boundary_mask
from .networks import LEGACY_HPARAMS, build_network, count_parameters, full_hparams, pipeline_flags
from ..physics import absorbance
from ..spectra import default_references

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "DictConfig", "TrainConfig",
    "TrainingStack", "load_training_stacks", "sample_energies", "sample_batch", "pick_device",
    "validation_set", "evaluate", "TrainResult", "train", "Checkpoint", "save_checkpoint",
    "load_checkpoint", "strip_for_release",
]

#: Identifies checkpoint files of this package.
CHECKPOINT_FORMAT = "xanes_lib.denoiser"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, of another format, or mismatched."""


class DictConfig:
    """Mixin of the frozen configuration dataclasses: to and from plain dictionaries
    (checkpoints, JSON outputs); tuple fields become lists and back."""

    def to_dict(self) -> dict:
        """Plain dictionary (for checkpoints and outputs)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; unknown names raise ValueError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} setting(s) {sorted(unknown)}; allowed: {sorted(fields)}.")
        return cls(**{k: tuple(v) if isinstance(fields[k].default, tuple) else v for k, v in d.items()})


@dataclass(frozen=True)
class TrainConfig(DictConfig):
    """Everything that defines a training run (recorded in the checkpoint).

    Attributes
    ----------
    variant : {"paper", "latent"}
    hparams : dict
        Network hyper-parameters (defaults of :data:`xanes_lib.denoising.networks.DEFAULT_HPARAMS`).
    weights : dict
        Loss weights (:class:`xanes_lib.denoising.losses.LossWeights` fields).
    steps : int
        Optimiser steps in total (a resumed run continues up to this number).
    lr : float
        Adam learning rate (cosine-decayed to 10 % over the run).
    crop : int
        Crop size in pixels.
    n_energies : tuple of int
        Range (inclusive) of the number of energies of a sub-stack.
    warmup_steps : int
        Steps with the background term only.
    val_every : int
        Steps between validations.
    n_val_crops : int
        Fixed validation samples (crop, energies) drawn once from the validation stacks.
    seed : int
        Seed of the initial weights, the sampling and the validation set.
    """

    variant: str = "latent"
    hparams: dict = field(default_factory=dict)
    weights: dict = field(default_factory=lambda: LossWeights().to_dict())
    steps: int = 2000
    lr: float = 1e-3
    crop: int = 128
    n_energies: tuple = (16, 64)
    warmup_steps: int = 0
    val_every: int = 100
    n_val_crops: int = 12
    seed: int = 0


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
    boundary: np.ndarray  # pixels near particle edges and chemical boundaries (loss term)


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
        edge = float(np.mean([r.half_step_eV() for r in default_references(st.element)]))
        t = np.asarray(st.transmission, np.float32)
        b = np.asarray(gt.background, np.float32)
        if lowrank:
            est = estimate_background(t, st.energies_eV, reference_model(st.energies_eV, st.element))
            t, b = t / est.background, b / est.background
        stacks.append(TrainingStack(Path(p).name, st.element, st.energies_eV, t,
                                    absorbance(np.asarray(gt.transmission, np.float32)), b,
                                    np.asarray(gt.mask, bool), edge,
                                    boundary_mask(gt.mask, gt.oxidation_state)))
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
              "background": stack.background[sl][idx], "mask": stack.mask[sl[1:]][None],
              "boundary": stack.boundary[sl[1:]][None]}
    if augment:
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        for name, arr in arrays.items():
            arr = np.rot90(arr, k, axes=(1, 2))
            arrays[name] = np.ascontiguousarray(arr[:, :, ::-1] if flip else arr)
    arrays["mask"], arrays["boundary"] = arrays["mask"][0], arrays["boundary"][0]
    return {"energies_eV": stack.energies_eV[idx], "element": stack.element, **arrays}


def _to_torch(sample: dict, device) -> dict:
    return {k: (torch.from_numpy(v).to(device) if isinstance(v, np.ndarray) and k != "energies_eV" else v)
            for k, v in sample.items()}


def pick_device(device=None) -> torch.device:
    """The given device, or CUDA when present, else the CPU."""
    return torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _loss_of(net, config: TrainConfig, sample: dict, weights: LossWeights, hp: dict):
    model = reference_model(sample["energies_eV"], sample["element"])
    out = forward(net, config.variant, sample["transmission"], model, hparams=hp)
    return total_loss(out, sample, model, weights)


def validation_set(stacks, config: TrainConfig) -> list[dict]:
    """Fixed validation samples drawn with the config's seed (the same for every run)."""
    rng = np.random.default_rng([config.seed, 1])
    lo, hi = config.n_energies
    return [sample_batch(stacks[i % len(stacks)], rng, crop=config.crop,
                         n_energies=int(rng.integers(lo, hi + 1)), augment=False)
            for i in range(config.n_val_crops)]


def evaluate(net, config: TrainConfig, samples, device=None) -> dict:
    """Mean of the total loss and of each term over validation samples (no gradients)."""
    device = pick_device(device)
    weights = LossWeights.from_dict(config.weights)
    hp = full_hparams(config.variant, **config.hparams)
    net.eval()
    totals, terms = [], {}
    with torch.no_grad():
        for s in samples:
            total, parts = _loss_of(net, config, _to_torch(s, device), weights, hp)
            totals.append(float(total))
            for k, v in parts.items():
                terms.setdefault(k, []).append(v)
    return {"loss": float(np.mean(totals)), **{k: float(np.mean(v)) for k, v in terms.items()}}


@dataclass
class TrainResult:
    """Outcome of :func:`xanes_lib.denoising.training`: the network, its configuration and the loss history."""

    net: torch.nn.Module
    config: TrainConfig
    history: dict
    elements: tuple
    energy_range_eV: tuple
    seconds: float
    n_parameters: int


def train(config: TrainConfig, train_paths, val_paths, *, checkpoint_path=None, resume_from=None,
          device=None, progress: bool = True) -> TrainResult:
    """Pre-train a denoiser on simulated stacks.

    Parameters
    ----------
    config : TrainConfig
    train_paths, val_paths : sequence of path-like
        Simulated stack files with ground truth (notebook 01).
    checkpoint_path : path-like, optional
        Written at every validation and at the end (atomically).
    resume_from : path-like, optional
        A checkpoint of the same variant and hyper-parameters to continue from (weights,
        optimiser state, step count and history).
    device : str, optional
        None picks CUDA when present.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TrainResult
    """
    from tqdm.auto import tqdm

    device = pick_device(device)
    hp = full_hparams(config.variant, **config.hparams)
    torch.manual_seed(config.seed)
    net = build_network(config.variant, **hp).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    history = {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "val_terms": []}
    start = 0
    if resume_from is not None:
        ck = load_checkpoint(resume_from, device=device, expect_variant=config.variant, expect_hparams=hp)
        net.load_state_dict(ck.net.state_dict())
        if ck.optimizer_state is not None:
            opt.load_state_dict(ck.optimizer_state)
        history, start = ck.history, int(ck.meta["step"])
    lowrank = config.variant == "latent" and pipeline_flags(hp)["lowrank_background"]
    train_stacks = load_training_stacks(train_paths, lowrank=lowrank)
    val_samples = validation_set(load_training_stacks(val_paths, lowrank=lowrank), config)
    weights = LossWeights.from_dict(config.weights)
    warm = LossWeights(**{k: (1.0 if k == "background" else 0.0) for k in weights.to_dict()})
    rng = np.random.default_rng([config.seed, 0, start])
    lo, hi = config.n_energies
    t0 = time.perf_counter()
    bar = tqdm(range(start, config.steps), disable=not progress, desc=f"train {config.variant}")
    for step in bar:
        lr = config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(config.steps, 1))))
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        st = train_stacks[int(rng.integers(len(train_stacks)))]
        sample = _to_torch(sample_batch(st, rng, crop=config.crop, n_energies=int(rng.integers(lo, hi + 1))), device)
        loss, _ = _loss_of(net, config, sample, warm if step < config.warmup_steps else weights, hp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        history["step"].append(step + 1)
        history["train_loss"].append(float(loss.detach()))
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            val = evaluate(net, config, val_samples, device)
            history["val_step"].append(step + 1)
            history["val_loss"].append(val["loss"])
            history["val_terms"].append(val)
            bar.set_postfix(val=f"{val['loss']:.4f}")
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, net, config, history=history, step=step + 1,
                                elements=_elements(train_stacks), energy_range_eV=_erange(train_stacks),
                                optimizer=opt)
    result = TrainResult(net, config, history, _elements(train_stacks), _erange(train_stacks),
                         time.perf_counter() - t0, count_parameters(net))
    if checkpoint_path is not None and start < config.steps:
        save_checkpoint(checkpoint_path, net, config, history=history, step=config.steps,
                        elements=result.elements, energy_range_eV=result.energy_range_eV, optimizer=opt)
    return result


def _elements(stacks) -> tuple:
    return tuple(sorted({s.element for s in stacks}))


def _erange(stacks) -> tuple:
    return (float(min(s.energies_eV[0] for s in stacks)), float(max(s.energies_eV[-1] for s in stacks)))


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (eval mode) and everything recorded with it."""

    net: torch.nn.Module
    variant: str
    hparams: dict
    meta: dict
    history: dict
    optimizer_state: dict | None

    @property
    def config(self) -> TrainConfig:
        """The training configuration."""
        return TrainConfig.from_dict(self.meta["train_config"])


def save_checkpoint(path, net, config: TrainConfig, *, history: dict, step: int, elements, energy_range_eV,
                    optimizer=None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename).

    It carries the weights, the architecture and its hyper-parameters, the training
    configuration and seed, the elements and energy range trained on, the package version,
    the loss history, and (for resuming) the optimiser state. ``extra`` adds entries to the
    metadata (e.g. what a model was adapted to, or validation numbers).
    """
    meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "variant": config.variant,
            "hparams": full_hparams(config.variant, **config.hparams), "train_config": config.to_dict(),
            "seed": config.seed, "elements": list(elements), "energy_range_eV": list(energy_range_eV),
            "package_version": __version__, "step": int(step), "torch_version": str(torch.__version__),
            **(extra or {})}
    doc = {"meta": meta, "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
           "history": history, "optimizer": optimizer.state_dict() if optimizer is not None else None}
    return _save_atomic(doc, path)


def _save_atomic(doc: dict, path) -> Path:
    with atomic_file(path) as tmp:
        torch.save(doc, tmp)
    return Path(path)


def load_checkpoint(path, *, device=None, expect_variant: str | None = None,
                    expect_hparams: dict | None = None) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CheckpointError
        If the file is corrupt or not a checkpoint of this package, or its variant or
        hyper-parameters differ from the expected ones.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with notebook 02 or use the "
                                "shipped weights in data/.")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); the file is "
                              "corrupt or not a torch checkpoint: re-download or re-train it.") from exc
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (no or wrong 'meta.format'); "
                              "give a file written by xanes_lib.denoising.training.save_checkpoint.")
    if meta.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta['format_version']}, newer than this package "
                              f"reads ({CHECKPOINT_VERSION}); update xanes_lib.")
    variant, hp = meta["variant"], meta["hparams"]
    if variant == "latent":  # recorded before some hyper-parameters existed
        hp = {**LEGACY_HPARAMS, **hp}
    if expect_variant is not None and variant != expect_variant:
        raise CheckpointError(f"{path} holds a {variant!r} network, expected {expect_variant!r}.")
    if expect_hparams is not None and dict(expect_hparams) != dict(hp):
        raise CheckpointError(f"{path} has hyper-parameters {hp}, expected {dict(expect_hparams)}; "
                              "resume only with the same architecture.")
    try:
        net = build_network(variant, **hp)
        net.load_state_dict(doc["state_dict"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture {variant} {hp} "
                              f"({exc}).") from exc
    net = net.to(pick_device(device)).eval()
    return Checkpoint(net, variant, hp, meta, doc.get("history") or {}, doc.get("optimizer"))


def strip_for_release(src, dst, *, extra: dict | None = None) -> Path:
    """Copy a checkpoint without its optimiser state (smaller; for shipping), adding metadata."""
    load_checkpoint(src, device="cpu")  # validates the file first
    doc = torch.load(src, map_location="cpu", weights_only=True)
    doc["meta"].update(extra or {})
    doc["optimizer"] = None
    return _save_atomic(doc, dst)
