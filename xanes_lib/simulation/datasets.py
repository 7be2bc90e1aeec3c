"""Sets of simulated stacks: varied configurations, seeds and a manifest.

Training data must not teach a model the quirks of one simulator setting, so each stack of a
set draws its own composition, dose, background (amplitude, patterns, energy correlation),
blur, drift, phantom geometry and chemistry, and perturbed reference spectra.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import write_stack
from ..io._hdf5 import atomic_file
from ..progress import progress_bar
from .simulate import SimulationConfig, simulate_stack

__all__ = [
    "split_seeds", "sample_config", "write_dataset",
]


def split_seeds(seed: int, split: str, n: int) -> list[int]:
    """``n`` independent seeds for the named split, derived from one master ``seed``.

    Examples
    --------
    >>> split_seeds(0, "train", 2) == split_seeds(0, "train", 2) != split_seeds(0, "val", 2)
    True
    """
    key = int.from_bytes(split.encode(), "little") % (2 ** 32)
    return [int(s) for s in np.random.SeedSequence([int(seed), key]).generate_state(n)]


#: The default ``base`` of :func:`sample_config` (frozen, so one instance serves every call).
_DEFAULT_CONFIG = SimulationConfig()


def sample_config(rng, base: SimulationConfig = _DEFAULT_CONFIG, *,
                  dose_range=(200.0, 5000.0), background_range=(0.005, 0.04),
                  patterns=("gradient", "blobs"), compositions=("NMC111", "NMC622", "NMC811"),
                  blur_range=(0.0, 1.0), drift_range=(0.0, 0.3)) -> SimulationConfig:
    """Draw a varied configuration around ``base`` (shape, element and energies kept).

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
        Random source.
    base : SimulationConfig
        Supplies everything that is not drawn (element, image shape, energies...).
    dose_range : tuple of float
        Photons per pixel per energy, drawn log-uniformly.
    background_range : tuple of float
        RMS of ``B - 1``, drawn uniformly.
    patterns : sequence of str
        Background patterns to draw a non-empty subset from.
    compositions : sequence of str
        Cathode compositions to draw from.
    blur_range, drift_range : tuple of float
        PSF sigma and RMS drift in pixels, drawn uniformly.

    Returns
    -------
    SimulationConfig
    """
    rng = np.random.default_rng(rng)
    pats = tuple(p for p in patterns if rng.random() < 0.6) or (str(rng.choice(patterns)),)
    return base.replace(
        composition=str(rng.choice(compositions)),
        dose=float(np.exp(rng.uniform(np.log(dose_range[0]), np.log(dose_range[1])))),
        background_amplitude=float(rng.uniform(*background_range)),
        background_patterns=pats,
        background_energy_correlation=float(rng.uniform(0.5, 0.95)),
        blur_px=float(rng.uniform(*blur_range)),
        drift_px=float(rng.uniform(*drift_range)),
        reference_jitter=1.0,
        phantom_fill_fraction=float(rng.uniform(0.2, 0.5)),
        phantom_pixel_size_nm=float(base.phantom.pixel_size_nm * rng.uniform(0.7, 1.5)),
        phantom_porosity=float(rng.uniform(0.05, 0.2)),
        phantom_texture_sigma=float(rng.uniform(0.02, 0.1)),
        phantom_cracks_per_particle=float(rng.uniform(0.0, 2.0)),
        phantom_mean_state_frac=float(rng.uniform(0.15, 0.85)),
        phantom_particle_state_sigma=float(rng.uniform(0.05, 0.25)),
        phantom_core_shell_delta=float(rng.uniform(0.0, 0.5)),
        phantom_hot_spots_per_particle=float(rng.uniform(0.0, 1.5)),
        phantom_surface_layer_nm=float(rng.uniform(0.0, 150.0)),
    )


def write_dataset(out_dir, name: str, configs, seeds, *, overwrite: bool = True,
                  progress: bool = True) -> list[Path]:
    """Simulate and write one file per configuration, plus ``<name>_manifest.json``.

    Parameters
    ----------
    out_dir : path-like
        Folder for the files (created if missing).
    name : str
        Prefix of the files: ``<name>_000.h5``, ...
    configs : sequence of SimulationConfig
        One per file.
    seeds : sequence of int
        One per file (see :func:`split_seeds`).
    overwrite : bool
        Replace existing files of the same name.
    progress : bool
        Show a progress bar (:func:`xanes_lib.progress.progress_bar`).

    Returns
    -------
    list of pathlib.Path
        The files written, in order.
    """
    configs, seeds = list(configs), list(seeds)
    if len(configs) != len(seeds):
        raise ValueError(f"{len(configs)} configurations but {len(seeds)} seeds; give one seed each.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, manifest = [], []
    pairs = progress_bar(list(zip(configs, seeds, strict=True)), desc=f"simulate {name}", unit="stack",
                         disable=not progress)
    for i, (cfg, seed) in enumerate(pairs):
        path = out / f"{name}_{i:03d}.h5"
        stack, truth = simulate_stack(cfg, seed=seed)
        write_stack(path, stack, ground_truth=truth, overwrite=overwrite)
        paths.append(path)
        manifest.append({"file": path.name, "seed": seed, "element": cfg.element,
                         "composition": cfg.composition, "dose": cfg.dose,
                         "background_amplitude": cfg.background_amplitude,
                         "background_patterns": list(cfg.background_patterns),
                         "shape": list(cfg.phantom.shape), "n_energies": int(stack.energies_eV.size)})
    _write_json_atomic(out / f"{name}_manifest.json", manifest)
    return paths


def _write_json_atomic(path: Path, obj) -> None:
    """Write JSON so that the file appears whole or not at all."""
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))
