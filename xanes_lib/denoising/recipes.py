"""Training recipes: the configurations notebook 02, ``make weights`` and the tests train with.

:func:`recipe` returns the :class:`~xanes_lib.denoising.config.TrainConfig` of a named
network (``"latent"``: ours; ``"paper"``: the published background network;
``"latent_nophysics"``: ours without physics terms, the ablation). ``quick=True`` keeps the
recipe and shrinks only the run (steps, crop, validation samples) for tests and
``quick`` notebook runs.
"""

from __future__ import annotations

from .config import LossWeights, NetworkConfig, TrainConfig

__all__ = ["RECIPES", "RECIPE_STEPS", "recipe"]

#: Names of the recipes.
RECIPES = ("latent", "paper", "latent_nophysics")

#: Optimiser steps of each recipe in a full run (the shipped weights) and in a quick run.
RECIPE_STEPS = {"latent": (3000, 12), "paper": (300, 4), "latent_nophysics": (1000, 12)}


def recipe(name: str, *, quick: bool = False, steps: int | None = None, n_val_crops: int | None = None,
           seed: int = 0) -> TrainConfig:
    """Return the training configuration of a named recipe.

    Parameters
    ----------
    name : {"latent", "paper", "latent_nophysics"}
        ``latent``: our network, physics-informed loss on the reference coefficients and
        fractions through the closed-form fit, relative to the plain fit (its pipeline
        removes the low-rank beam background first, so the background, self-consistency and
        TV terms would be constants: off). ``paper``: the published background network and
        loss (background identity, self-consistency, TV; warm-up on the background).
        ``latent_nophysics``: our network trained on the denoised stack alone (ablation).
    quick : bool
        A short run of the same recipe: few steps, small crops, two validation samples.
    steps : int, optional
        Optimiser steps (default: :data:`RECIPE_STEPS`).
    n_val_crops : int, optional
        Validation samples of the latent recipes (the paper recipe uses half); default 12,
        2 when quick.
    seed : int
        Seed of the run.

    Returns
    -------
    TrainConfig

    Examples
    --------
    >>> recipe("latent").steps, recipe("latent", quick=True).crop
    (3000, 48)
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {RECIPES}.")
    steps = RECIPE_STEPS[name][int(quick)] if steps is None else steps
    n_val = (2 if quick else 12) if n_val_crops is None else n_val_crops
    crop = 48 if quick else 128
    if name == "paper":
        return TrainConfig(network=NetworkConfig.create("paper"), weights=LossWeights(fraction=0.0),
                           steps=steps, lr=5e-4, crop=min(crop, 64), n_energies=(6, 8),
                           warmup_steps=steps // 5, val_every=steps if quick else max(steps // 6, 1),
                           n_val_crops=max(n_val // 2, 1), seed=seed)
    if name == "latent":
        weights = LossWeights(background=0.0, coefficient=1.0, fraction=1.0, consistency=0.0, tv=0.0,
                              stack=0.0, relative=1.0)
    else:
        weights = LossWeights(background=0.0, coefficient=0.0, fraction=0.0, consistency=0.0, tv=0.0,
                              stack=1.0)
    return TrainConfig(network=NetworkConfig.create("latent"), weights=weights, steps=steps, lr=1e-3,
                       crop=crop, n_energies=(16, 67), val_every=steps if quick else max(steps // 8, 1),
                       n_val_crops=n_val, seed=seed)
