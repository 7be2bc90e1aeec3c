"""Denoising: networks, physics-informed losses, inference, beam background, training, adaptation.

The only package of ``xanes_lib`` that imports torch.

- :mod:`.beam`         low-rank estimate of the beam background of a measurement (numpy only)
- :mod:`.strength`     how much to average, chosen per stack without ground truth (SURE of the
  oxidation state); the self-tuned Gaussian baseline (numpy only)
- :mod:`.config`       validated configurations: networks, loss weights, training, adaptation
  (no torch)
- :mod:`.networks`     the networks: ``paper`` (RRDB background network) and ``latent`` (ours)
- :mod:`.denoiser`     :class:`Denoiser`: network + configuration + provenance, built by
  :func:`build_denoiser`, with ``.denoise(stack)``
- :mod:`.losses`       physics-informed loss terms through the closed-form fit
- :mod:`.inference`    the forward pass with its physics, tiled inference of whole stacks
- :mod:`.checkpoints`  versioned checkpoint files: save, load (with migration), release
- :mod:`.training`     the pre-training loop
- :mod:`.recipes`      the training configurations of notebook 02, ``make weights`` and tests
- :mod:`.adaptation`   self-supervised adaptation to one measurement (no ground truth)

The public names are re-exported lazily: ``from xanes_lib.denoising import beam`` or
``estimate_background`` does not import torch; the first use of a torch name does.
"""

import importlib

#: Public name -> submodule that defines it.
_EXPORTS = {
    "BackgroundEstimate": "beam", "BeamProfiles": "beam", "DriftingSampleView": "beam",
    "drifting_sample_view": "beam", "detector_empty_pixels": "beam", "to_detector": "beam",
    "smoothed_absorbance": "beam", "smoothing_halo": "beam", "empty_pixels": "beam", "empty_level": "beam",
    "CLEAN_EMPTY_LEVEL": "beam", "SAMPLE_LIKE_SHARE": "beam", "empty_gram": "beam", "beam_profiles": "beam",
    "beam_pixel_maps": "beam", "beam_maps": "beam", "beam_background": "beam", "estimate_background": "beam",
    "divide_beam_background": "beam", "align_with_beam_background": "beam",
    "beam_corrected_energy_shift": "beam", "calibrate_energy_shift_with_beam": "beam",
    "shifted_model": "beam", "beam_note": "beam",
    "DEFAULT_SIGMAS_PX": "strength", "NETWORK_SIGMAS_PX": "strength", "StrengthChoice": "strength",
    "residual_noise_std": "strength", "check_field": "strength",
    "coefficient_covariance": "strength", "noise_shaped_perturbation": "strength", "TV_WEIGHTS": "strength",
    "NLM_STRENGTHS": "strength", "state_weights": "strength",
    "gaussian_centre_weight": "strength", "select_strength": "strength", "self_tuned_gaussian":
    "strength", "PaperHParams": "config", "LatentHParams": "config", "HPARAMS_CLASSES": "config",
    "VARIANTS": "config", "NetworkConfig": "config", "LOSS_TERMS": "config", "LossWeights": "config",
    "TrainConfig": "config", "AdaptConfig": "config", "PIPELINE_HPARAMS": "networks", "DenseBlock":
    "networks", "RRDB": "networks", "PaperBackgroundNet": "networks", "PixelNorm": "networks",
    "gaussian_blur": "networks", "LatentUNet": "networks", "build_network": "networks",
    "count_parameters": "networks", "background_identity": "losses", "coefficient_loss": "losses",
    "fractions": "losses", "fraction_loss": "losses", "self_consistency": "losses", "total_variation":
    "losses", "stack_loss": "losses", "total_loss": "losses", "Denoiser": "denoiser", "build_denoiser":
    "denoiser", "pick_device": "denoiser", "coefficient_scale": "inference", "ForwardOutput":
    "inference", "latent_inputs": "inference", "forward": "inference", "DenoiseResult": "inference",
    "denoise_stack": "inference", "full_float32": "inference", "CHECKPOINT_FORMAT": "checkpoints",
    "CHECKPOINT_VERSION": "checkpoints", "V1_LATENT_HPARAMS": "checkpoints", "SHIPPED_NAMES":
    "checkpoints", "CheckpointError": "checkpoints", "migrate_meta": "checkpoints", "save_checkpoint":
    "checkpoints", "load_checkpoint": "checkpoints", "strip_for_release": "checkpoints",
    "shipped_checkpoint": "checkpoints", "TrainingStack": "training", "load_training_stacks":
    "training", "sample_energies": "training", "sample_batch": "training", "validation_set": "training",
    "evaluate": "training", "TrainResult": "training", "training_meta": "training", "train": "training",
    "RECIPES": "recipes", "RECIPE_STEPS": "recipes", "recipe": "recipes", "AdaptResult": "adaptation",
    "holdout_energies": "adaptation", "data_mask": "adaptation", "state_directions": "adaptation",
    "self_validation_score": "adaptation",
    "adapt": "adaptation", "stack_fingerprint": "adaptation", "save_adapted": "adaptation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import the submodule of a public name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
