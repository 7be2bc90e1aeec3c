"""Denoising: networks, physics-informed losses, inference, beam background, training, adaptation.

The only package of ``xanes_lib`` that imports torch.

- :mod:`.beam`        low-rank estimate of the beam background of a measurement (numpy only)
- :mod:`.networks`    the networks: ``paper`` (RRDB background network) and ``latent`` (ours)
- :mod:`.losses`      physics-informed loss terms through the closed-form fit
- :mod:`.inference`   the forward pass with its physics, tiled inference of whole stacks
- :mod:`.training`    pre-training loop, checkpoints (save, load, resume, release)
- :mod:`.adaptation`  self-supervised adaptation to one measurement (no ground truth)

The public names are re-exported lazily: ``from xanes_lib.denoising import beam`` or
``estimate_background`` does not import torch; the first use of a torch name does.
"""

import importlib

#: Public name -> submodule that defines it.
_EXPORTS = {
    "BackgroundEstimate": "beam", "estimate_background": "beam", "DEFAULT_HPARAMS": "networks",
    "PIPELINE_HPARAMS": "networks", "LEGACY_HPARAMS": "networks", "pipeline_flags": "networks",
    "DenseBlock": "networks", "RRDB": "networks", "PaperBackgroundNet": "networks", "PixelNorm":
    "networks", "SIDES": "networks", "gaussian_blur": "networks", "LatentUNet": "networks",
    "build_network": "networks", "full_hparams": "networks", "count_parameters": "networks", "TERMS":
    "losses", "LossWeights": "losses", "background_identity": "losses", "coefficient_loss": "losses",
    "fractions": "losses", "fraction_loss": "losses", "self_consistency": "losses", "total_variation":
    "losses", "stack_loss": "losses", "total_loss": "losses", "coefficient_scale": "inference",
    "ForwardOutput": "inference", "latent_inputs": "inference", "forward": "inference", "DenoiseResult":
    "inference", "denoise_stack": "inference", "CHECKPOINT_FORMAT": "training", "CHECKPOINT_VERSION":
    "training", "CheckpointError": "training", "DictConfig": "training", "TrainConfig": "training",
    "TrainingStack": "training", "load_training_stacks": "training", "sample_energies": "training",
    "sample_batch": "training", "pick_device": "training", "validation_set": "training", "evaluate":
    "training", "TrainResult": "training", "train": "training", "Checkpoint": "training",
    "save_checkpoint": "training", "load_checkpoint": "training", "strip_for_release": "training",
    "AdaptConfig": "adaptation", "AdaptResult": "adaptation", "holdout_energies": "adaptation",
    "data_mask": "adaptation", "self_validation_score": "adaptation", "adapt": "adaptation",
    "stack_fingerprint": "adaptation", "save_adapted": "adaptation",
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
