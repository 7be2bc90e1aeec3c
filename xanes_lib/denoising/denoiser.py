"""The trained denoiser as one object: network, configuration and provenance together.

A :class:`Denoiser` is what training returns, what a checkpoint loads into
(:func:`xanes_lib.denoising.load_checkpoint`), what adaptation fine-tunes and what
inference runs (:meth:`Denoiser.denoise`). It replaces the loose triple (network, variant
string, hyper-parameter dictionary) that each of those once passed around.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from .config import NetworkConfig, TrainConfig
from .networks import build_network, count_parameters

__all__ = ["Denoiser", "build_denoiser", "pick_device"]


def pick_device(device=None) -> torch.device:
    """Return the given device, or CUDA when present, else the CPU.

    Raises
    ------
    ValueError
        For a device name torch does not know, or a CUDA device on a machine without one.
    """
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device; pass 'cpu', 'cuda' (or 'cuda:0') or "
                         "None (CUDA when present, else the CPU).") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but this torch ({torch.__version__}) has no CUDA device; "
                         "pass device='cpu' or None.")
    return chosen


@dataclass
class Denoiser:
    """A denoising network with its configuration and everything recorded with it.

    Attributes
    ----------
    net : torch.nn.Module
        The network.
    config : NetworkConfig
        Its variant and hyper-parameters.
    meta : dict
        Provenance: training configuration, seed, elements and energy range trained on,
        package and torch versions, steps, held-out scores, adaptation (what a checkpoint
        records; empty for a new network).
    history : dict
        Loss history of training (and adaptation).
    optimizer_state : dict or None
        Optimiser state of an unfinished training run (for resuming).
    """

    net: torch.nn.Module
    config: NetworkConfig
    meta: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    optimizer_state: dict | None = None

    @property
    def variant(self) -> str:
        """``"paper"`` or ``"latent"``."""
        return self.config.variant

    @property
    def hparams(self) -> dict:
        """The full hyper-parameters as a plain dictionary."""
        return self.config.hparams.to_dict()

    @property
    def lowrank_background(self) -> bool:
        """Whether the pipeline divides the stack by the low-rank beam background first."""
        return self.variant == "latent" and self.config.hparams.lowrank_background

    @property
    def residual_background(self) -> bool:
        """Whether the latent network also estimates a smooth background of its own."""
        return self.variant == "latent" and self.config.hparams.residual_background

    @property
    def train_config(self) -> TrainConfig | None:
        """The training configuration recorded in ``meta`` (None for an untrained network)."""
        d = self.meta.get("train_config")
        return TrainConfig.from_dict(d) if d is not None else None

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return count_parameters(self.net)

    def to(self, device) -> Denoiser:
        """Move the network to ``device`` (in place) and return self."""
        self.net = self.net.to(pick_device(device))
        return self

    def copy(self) -> Denoiser:
        """Return an independent copy (network weights included), e.g. to fine-tune."""
        return copy.deepcopy(self)

    def denoise(self, transmission, energies_eV, **options):
        """Denoise a whole stack: :func:`xanes_lib.denoising.denoise_stack` with this denoiser.

        Parameters
        ----------
        transmission : array_like
            (E, Y, X) measured transmission; not modified.
        energies_eV : array_like
            (E,) energies.
        **options
            ``element``, ``references``, ``tile``, ``margin``, ``device``... of
            :func:`xanes_lib.denoising.denoise_stack`.

        Returns
        -------
        xanes_lib.denoising.DenoiseResult
        """
        from .inference import denoise_stack  # inference imports this module

        return denoise_stack(self, transmission, energies_eV, **options)


def build_denoiser(config: NetworkConfig | str = "latent", *, seed: int | None = None, device=None,
                   **hparams) -> Denoiser:
    """Build a new, untrained denoiser from its configuration (the factory of :class:`Denoiser`).

    Parameters
    ----------
    config : NetworkConfig or {"paper", "latent"}
        The configuration, or a variant whose defaults ``hparams`` change.
    seed : int, optional
        Seed of torch's generator before the weights are drawn (None: leave it as it is).
    device : str or torch.device, optional
        None picks CUDA when present.
    **hparams
        Hyper-parameters changed from the variant's defaults (only with a variant name).

    Returns
    -------
    Denoiser

    Examples
    --------
    >>> build_denoiser("latent", width=8, seed=0, device="cpu").hparams["width"]
    8
    """
    if isinstance(config, str):
        config = NetworkConfig.create(config, **hparams)
    elif hparams:
        raise ValueError("give hyper-parameters either in the NetworkConfig or as keywords with a variant "
                         "name, not both.")
    if seed is not None:
        torch.manual_seed(seed)
    return Denoiser(build_network(config).to(pick_device(device)), config)
