"""Checkpoint files of the denoisers: a versioned schema, atomic saves, explicit migration.

A checkpoint (torch file) holds ``meta`` (the schema below), ``state_dict`` (the weights),
``history`` (losses) and ``optimizer`` (state for resuming, or None in released files).

Schema version 2 (``meta``):

====================  =================================================================
key                   meaning
====================  =================================================================
``format``            ``"xanes_lib.denoiser"``
``format_version``    2
``network``           :class:`~xanes_lib.denoising.config.NetworkConfig` as a dictionary
                      (variant and *full* hyper-parameters)
``train_config``      :class:`~xanes_lib.denoising.config.TrainConfig` as a dictionary
``seed``, ``step``    training seed and optimiser steps done
``elements``          elements trained on; ``energy_range_eV`` their energy range
``package_version``   and ``torch_version`` of the run
others                e.g. ``held_out_scores``, ``trained_by``, ``adapted_to``
====================  =================================================================

Version 1 (written before this schema) kept ``variant`` and ``hparams`` at the top and the
training configuration's hyper-parameters as overrides of the defaults of the day; the
latent network's hyper-parameters that did not exist yet were absent. :func:`migrate_meta`
turns it into version 2, filling those with the values such files meant
(:data:`V1_LATENT_HPARAMS`); it runs on loading, so old files load as trained.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .. import __version__
from ..io._hdf5 import atomic_file
from .config import NetworkConfig, TrainConfig
from .denoiser import Denoiser, pick_device
from .networks import build_network

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "V1_LATENT_HPARAMS", "SHIPPED_NAMES", "CheckpointError",
    "migrate_meta", "save_checkpoint", "load_checkpoint", "strip_for_release", "shipped_checkpoint",
]

#: Identifies checkpoint files of this package.
CHECKPOINT_FORMAT = "xanes_lib.denoiser"
#: Version of the ``meta`` schema written by :func:`save_checkpoint`.
CHECKPOINT_VERSION = 2

#: Latent hyper-parameters that a version-1 checkpoint written before they existed means
#: (the first version of the variant: its own background only, no smoothed inputs).
V1_LATENT_HPARAMS = {"input_scales": [], "weighted": False, "step_weight": False, "output": "residual",
                     "lowrank_background": False, "residual_background": True}

#: Options of version 1 removed since (measured to bring nothing): the side-window
#: candidates of the latent network and the boundary loss term. A file that used them
#: cannot be loaded; one that had them switched off (all shipped files) loses the keys.
_V1_REMOVED = {"side_scales": [], "boundary": 0.0}


#: Names of the weights shipped in the repository's ``data/`` folder (``denoiser_<name>.pt``).
SHIPPED_NAMES = ("latent", "paper")
_SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data"


def shipped_checkpoint(name: str = "latent") -> Path:
    """Return the path of shipped weights, ``<repo>/data/denoiser_<name>.pt``.

    Raises
    ------
    ValueError
        For a name that is not shipped.
    FileNotFoundError
        When the file is missing from this checkout.
    """
    if name not in SHIPPED_NAMES:
        raise ValueError(f"no shipped weights named {name!r}; choose from {SHIPPED_NAMES} (other networks "
                         "are trained by notebook 02 with train_from_scratch=True).")
    path = _SHIPPED_DIR / f"denoiser_{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the shipped weights {path} are missing from this checkout; restore them "
                                "(git checkout data/) or re-train them with `make weights`.")
    return path


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, of another format, or mismatched."""


def migrate_meta(meta: dict, *, source: str = "checkpoint") -> dict:
    """Return the metadata of a checkpoint in the current schema (a new dictionary).

    Parameters
    ----------
    meta : dict
        ``meta`` of a checkpoint of any version up to :data:`CHECKPOINT_VERSION`.
    source : str
        Name of the file, for messages.

    Returns
    -------
    dict
        Version-2 metadata; a migrated one records ``migrated_from_version``.

    Raises
    ------
    CheckpointError
        If it is not this package's format, is newer than this package, or lacks what the
        schema needs.
    """
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source} is not a {CHECKPOINT_FORMAT} checkpoint (no or wrong "
                              "'meta.format'); give a file written by xanes_lib.denoising.save_checkpoint.")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{source} has checkpoint format {version!r}, newer than this package reads "
                              f"({CHECKPOINT_VERSION}); update xanes_lib.")
    meta = copy.deepcopy(meta)
    if version < 2:
        try:
            variant, hparams = meta.pop("variant"), dict(meta.pop("hparams"))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: version-1 metadata without a valid 'variant' and 'hparams' "
                                  f"({type(exc).__name__}: {exc}); the file is damaged.") from exc
        if variant == "latent":
            hparams = {**V1_LATENT_HPARAMS, **hparams}
        meta["network"] = {"variant": variant, "hparams": _drop_removed(hparams, source)}
        train_config = meta.get("train_config")
        if isinstance(train_config, dict):  # its hparams were overrides of the defaults of the day
            rest = {k: v for k, v in train_config.items() if k not in ("variant", "hparams")}
            if isinstance(rest.get("weights"), dict):
                rest["weights"] = _drop_removed(rest["weights"], source)
            meta["train_config"] = {"network": meta["network"], **rest}
        meta["format_version"] = 2
        meta["migrated_from_version"] = version
    return meta


def _drop_removed(settings: dict, source: str) -> dict:
    """Drop the removed options of version 1 when they were off; refuse a file that used them."""
    out = dict(settings)
    for key, off in _V1_REMOVED.items():
        if key in out:
            if out[key] != off:
                raise CheckpointError(f"{source} was trained with {key}={out[key]!r}, an option removed from "
                                      "this package (measured to bring nothing); re-train it with "
                                      "xanes_lib.denoising.recipe.")
            del out[key]
    return out


def save_checkpoint(path, denoiser: Denoiser, *, optimizer=None) -> Path:
    """Write a denoiser atomically (temporary file, then rename) in the current schema.

    The file carries the weights, the network configuration, ``denoiser.meta`` (training
    configuration, seed, elements, energy range, versions: see the module docstring), the
    loss history and, for resuming, the optimiser state.
    """
    meta = {**denoiser.meta, "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
            "network": denoiser.config.to_dict(),
            "package_version": denoiser.meta.get("package_version", __version__),
            "torch_version": denoiser.meta.get("torch_version", str(torch.__version__))}
    meta.pop("migrated_from_version", None)
    doc = {"meta": meta, "state_dict": {k: v.detach().cpu() for k, v in denoiser.net.state_dict().items()},
           "history": denoiser.history,
           "optimizer": optimizer.state_dict() if optimizer is not None else None}
    return _save_atomic(doc, path)


def _save_atomic(doc: dict, path) -> Path:
    with atomic_file(path) as tmp:
        torch.save(doc, tmp)
    return Path(path)


def _read(path: Path) -> dict:
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the .pt file inside it.")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with notebook 02 or use the "
                                "shipped weights in data/.")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); the file is "
                              "corrupt or not a torch checkpoint: re-download or re-train it.") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (not a dictionary).")
    doc["meta"] = migrate_meta(doc.get("meta"), source=str(path))
    return doc


def load_checkpoint(path, *, device=None, expect_network: NetworkConfig | None = None) -> Denoiser:
    """Load a checkpoint (of any schema version) as a :class:`~xanes_lib.denoising.Denoiser`.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_checkpoint` (or an older version of it).
    device : str or torch.device, optional
        None picks CUDA when present.
    expect_network : NetworkConfig, optional
        Raise unless the file holds this network (e.g. before resuming a run).

    Returns
    -------
    Denoiser
        In evaluation mode, with the file's metadata, history and optimiser state.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CheckpointError
        If the file is corrupt, not a checkpoint of this package, or holds another network
        than ``expect_network``.
    """
    path = Path(path)
    doc = _read(path)
    meta = doc["meta"]
    config = _checked_field(path, "network", lambda: NetworkConfig.from_dict(meta["network"]))
    if "train_config" in meta:
        _checked_field(path, "train_config", lambda: TrainConfig.from_dict(meta["train_config"]))
    for key in ("step", "seed"):
        if key in meta:
            _checked_field(path, key, lambda key=key: _non_negative_int(meta[key]))
    if expect_network is not None and config != expect_network:
        raise CheckpointError(f"{path} holds the network {config.to_dict()}, expected "
                              f"{expect_network.to_dict()}; resume only with the same architecture.")
    try:
        net = build_network(config)
        net.load_state_dict(doc["state_dict"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture {config.to_dict()} "
                              f"({exc}).") from exc
    net = net.to(pick_device(device)).eval()
    return Denoiser(net, config, meta, doc.get("history") or {}, doc.get("optimizer"))


def _non_negative_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be an integer >= 0; got {value!r}")
    return value


def _checked_field(path: Path, key: str, parse):
    """Run ``parse`` on a metadata field; a failure is a CheckpointError naming the field."""
    try:
        return parse()
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid '{key}' in the checkpoint metadata ({type(exc).__name__}: "
                              f"{exc}); the file is damaged or was edited: re-train or re-download "
                              "it.") from exc


def strip_for_release(src, dst, *, extra: dict | None = None) -> Path:
    """Copy a checkpoint without its optimiser state (smaller; for shipping), adding metadata."""
    src = Path(src)
    load_checkpoint(src, device="cpu")  # validates the whole file first
    doc = _read(src)
    doc["meta"].update(extra or {})
    doc["meta"].pop("migrated_from_version", None)
    doc["optimizer"] = None
    return _save_atomic(doc, dst)
