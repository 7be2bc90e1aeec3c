"""The configurations of the denoisers, in the package's scheme (:class:`xanes_lib.config.Config`).

Frozen dataclasses validated on construction, converted to and from plain dictionaries
(checkpoints store these dictionaries); unknown keys are rejected with the allowed list.

- :class:`PaperHParams`, :class:`LatentHParams`: hyper-parameters of the two networks
- :class:`NetworkConfig`: which network (``variant``, the discriminator) and its
  hyper-parameters; :func:`xanes_lib.denoising.build_denoiser` makes a network from it
- :class:`LossWeights`: weight of each physics-informed loss term
- :class:`TrainConfig`: a pre-training run; :class:`AdaptConfig`: an adaptation run

This module needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config

__all__ = [
    "PaperHParams", "LatentHParams", "HPARAMS_CLASSES", "VARIANTS", "NetworkConfig",
    "LOSS_TERMS", "LossWeights", "TrainConfig", "AdaptConfig",
]


# ---------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PaperHParams(Config):
    """Hyper-parameters of the published background network (RRDB blocks).

    Attributes
    ----------
    n_features : int
        Feature channels.
    n_blocks : int
        Residual-in-residual dense blocks.
    growth : int
        Channels added by each convolution of a dense block.
    residual_scale : float
        Scale of the residual branches, in (0, 1].
    """

    n_features: int = 16
    n_blocks: int = 4
    growth: int = 16
    residual_scale: float = 0.2

    def _check(self) -> None:
        self._positive_ints("n_features", "n_blocks", "growth")
        self._finite("residual_scale", 0.0, 1.0, open_lo=True)


LATENT_OUTPUTS = ("kernel", "residual")


@dataclass(frozen=True)
class LatentHParams(Config):
    """Hyper-parameters of our latent network and of the pipeline around it.

    Attributes
    ----------
    n_coefficients : int
        Coefficient maps the network sees (references plus smooth terms).
    width, depth : int
        Channels of the first level and number of levels of the U-Net.
    smooth_block : int
        Block size (pixels) of the network's smooth background; tiles are multiples of it.
    smooth_sigma_blocks : float
        Gaussian smoothing of that background, in blocks (> 0).
    input_scales : tuple of float
        Gaussian widths (pixels) of the averaged coefficient maps given as candidates.
    weighted : bool
        The network also predicts per-pixel weights of its averages.
    step_weight : bool
        The weights of the make-up (reference fractions) also scale with the edge step.
    output : {"kernel", "residual"}
        Kernel prediction over the candidates, or a residual correction.
    lowrank_background : bool
        Divide the stack by the low-rank beam background first (training and inference).
    residual_background : bool
        The network also estimates a smooth background from what its fit leaves unexplained.
    """

    n_coefficients: int = 4
    width: int = 24
    depth: int = 3
    smooth_block: int = 8
    smooth_sigma_blocks: float = 1.0
    input_scales: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    weighted: bool = True
    step_weight: bool = True
    output: str = "kernel"
    lowrank_background: bool = True
    residual_background: bool = False

    def _check(self) -> None:
        self._positive_ints("n_coefficients", "width", "depth", "smooth_block")
        self._finite("smooth_sigma_blocks", 0.0, open_lo=True)
        self._require(isinstance(self.input_scales, tuple)
                      and all(isinstance(s, int | float) and s > 0 for s in self.input_scales),
                      "input_scales", "a tuple of positive widths in pixels")
        for name in ("weighted", "step_weight", "lowrank_background", "residual_background"):
            self._require(isinstance(getattr(self, name), bool), name, "True or False")
        self._require(self.output in LATENT_OUTPUTS, "output", f"one of {LATENT_OUTPUTS}")


#: Hyper-parameter class of each network variant.
HPARAMS_CLASSES = {"paper": PaperHParams, "latent": LatentHParams}
VARIANTS = tuple(HPARAMS_CLASSES)


@dataclass(frozen=True)
class NetworkConfig(Config):
    """Which network and its hyper-parameters; ``variant`` decides the hyper-parameter class.

    Attributes
    ----------
    variant : {"paper", "latent"}
        The published background network, or ours.
    hparams : PaperHParams or LatentHParams
        None: the variant's defaults.

    Examples
    --------
    >>> NetworkConfig.create("latent", width=16).hparams.width
    16
    >>> NetworkConfig.from_dict({"variant": "paper", "hparams": {"n_blocks": 2}}).hparams.n_blocks
    2
    """

    variant: str = "latent"
    hparams: PaperHParams | LatentHParams | None = None

    def _check(self) -> None:
        self._require(self.variant in HPARAMS_CLASSES, "variant", f"one of {VARIANTS}")
        cls = HPARAMS_CLASSES[self.variant]
        if self.hparams is None:
            object.__setattr__(self, "hparams", cls())
        elif isinstance(self.hparams, dict):
            object.__setattr__(self, "hparams", cls.from_dict(self.hparams))
        self._require(isinstance(self.hparams, cls), "hparams",
                      f"a {cls.__name__} for variant {self.variant!r}")

    @classmethod
    def create(cls, variant: str = "latent", **hparams) -> NetworkConfig:
        """Make the configuration of ``variant`` with some hyper-parameters changed.

        Raises
        ------
        ValueError
            For an unknown variant or hyper-parameter (the allowed ones are listed).
        """
        if variant not in HPARAMS_CLASSES:
            raise ValueError(f"unknown network variant {variant!r}; choose from {VARIANTS}.")
        return cls(variant, HPARAMS_CLASSES[variant].from_dict(hparams))


# ---------------------------------------------------------------------------------------
# Losses and runs
# ---------------------------------------------------------------------------------------

#: Names of the loss terms, in the order they are reported.
LOSS_TERMS = ("background", "coefficient", "fraction", "consistency", "tv", "stack")


@dataclass(frozen=True)
class LossWeights(Config):
    """Weight of each loss term; 0 switches a term off (ablations are one parameter).

    ``relative`` is the exponent of the normalisation of the coefficient and fraction terms
    by their plain-fit value (0: absolute terms; 1: relative to the plain fit).
    """

    background: float = 1.0
    coefficient: float = 1.0
    fraction: float = 0.0
    consistency: float = 0.1
    tv: float = 0.01
    stack: float = 0.0
    relative: float = 0.0

    def _check(self) -> None:
        for name in (*LOSS_TERMS, "relative"):
            self._finite(name, 0.0)
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that defines a pre-training run (recorded in the checkpoint).

    Attributes
    ----------
    network : NetworkConfig
        The network to train.
    weights : LossWeights
        Loss weights.
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

    network: NetworkConfig = field(default_factory=NetworkConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    steps: int = 2000
    lr: float = 1e-3
    crop: int = 128
    n_energies: tuple[int, int] = (16, 64)
    warmup_steps: int = 0
    val_every: int = 100
    n_val_crops: int = 12
    seed: int = 0

    def _check(self) -> None:
        self._require(isinstance(self.network, NetworkConfig), "network", "a NetworkConfig")
        self._require(isinstance(self.weights, LossWeights), "weights", "a LossWeights")
        self._positive_ints("steps", "crop", "val_every", "n_val_crops")
        self._positive_ints("warmup_steps", "seed", minimum=0)
        self._finite("lr", 0.0, open_lo=True)
        self._int_range("n_energies")

    @property
    def variant(self) -> str:
        """The network variant (``network.variant``)."""
        return self.network.variant


@dataclass(frozen=True)
class AdaptConfig(Config):
    """Settings of an adaptation run (recorded in the adapted checkpoint).

    Attributes
    ----------
    max_epochs : int
        Maximum number of rounds (re-fit, self-validation, update).
    steps_per_epoch : int
        Adam steps of one round.
    refit_every : int
        Rounds between re-fits of the whole stack (the background and the self-validation
        score are renewed at each re-fit; stopping is decided there).
    lr : float
        Adam learning rate (smaller than in pre-training: the network is fine-tuned).
    crop : int
        Crop size of the update steps (pixels); cut to a smaller stack (the adaptation's result
        records the size used).
    n_energies : tuple of int
        Range (inclusive) of the sub-stack size of an update step; a size drawn above the
        stack's training energies uses them all.
    target_fraction : float
        Share of a sub-stack's energies held back as the target of the cross-energy loss.
    fidelity : float
        Weight of the fidelity term (data of the energies the network sees).
    consistency, tv : float
        Paper variant: weights of self-consistency and of the background's total variation.
    holdout_fraction : float
        Share of the energies held out for the self-validation score (never used for updates).
    patience : int
        Re-fits without an improvement of the score by ``min_improvement_se`` before stopping.
    min_improvement_se : float
        A round replaces the best one only when its self-validation score is lower by more
        than this many standard errors of the pixel-by-pixel difference. Two, because up to
        ``max_epochs`` rounds are compared: at one, a round whose network was worse (true
        RMSE 0.206 -> 0.238, Co 1000 photons, strong bands and rings) passed at z = -1.47.
    min_change : float
        Stop when the relative RMS change of the reference coefficient maps inside the sample
        between two re-fits is below this (0 switches the criterion off).
    time_budget_s : float
        Stop after the round that passes this wall time (seconds).
    lowrank_background : bool
        First remove the low-rank beam background of the measurement
        (:func:`xanes_lib.denoising.beam.estimate_background`); the network then adapts to, and
        corrects what is left of, the background on the corrected stack.
    seed : int
        Seed of the hold-out set, the sampling and the crops.
    """

    max_epochs: int = 12
    steps_per_epoch: int = 60
    refit_every: int = 1
    lr: float = 2e-4
    crop: int = 128
    n_energies: tuple[int, int] = (40, 80)
    target_fraction: float = 0.4
    fidelity: float = 0.05
    consistency: float = 1.0
    tv: float = 0.01
    holdout_fraction: float = 0.25
    patience: int = 3
    min_improvement_se: float = 2.0
    min_change: float = 0.0
    time_budget_s: float = 540.0
    lowrank_background: bool = True
    seed: int = 0

    def _check(self) -> None:
        self._positive_ints("max_epochs", "seed", minimum=0)
        self._positive_ints("steps_per_epoch", "refit_every", "crop", "patience")
        self._finite("lr", 0.0, open_lo=True)
        self._finite("time_budget_s", 0.0, open_lo=True)
        self._finite("holdout_fraction", 0.0, 0.5, open_lo=True, open_hi=True)
        self._finite("target_fraction", 0.0, 1.0, open_lo=True, open_hi=True)
        for name in ("fidelity", "consistency", "tv", "min_improvement_se", "min_change"):
            self._finite(name, 0.0)
        self._int_range("n_energies")
        self._require(isinstance(self.lowrank_background, bool), "lowrank_background", "True or False")

    def check(self, n_energies_stack: int) -> None:
        """Raise ValueError when a stack of this many energies cannot be adapted to."""
        if n_energies_stack < 16:
            raise ValueError(f"the stack has {n_energies_stack} energies; adaptation needs at least 16 "
                             "(energies are held out for self-validation and for the loss).")
