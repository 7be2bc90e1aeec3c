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
from .background import PATTERNS
from .simulate import SimulationConfig, default_energy_grid, simulate_stack

__all__ = [
    "split_seeds", "sample_config", "randomised_config", "random_energy_grid", "write_dataset",
]


def split_seeds(seed: int, split: str, n: int) -> list[int]:
    """``n`` independent seeds for the named split, derived from one master ``seed``.

    The split is keyed by the first 4 bytes of its UTF-8 name (kept so that published data
    sets stay reproducible): names that share them, such as ``"test_a"`` and ``"test_b"``,
    share their seeds. Draw the seeds of related sets from one split, by index (as notebook 01
    does for its held-out stacks).

    Examples
    --------
    >>> split_seeds(0, "train", 2) == split_seeds(0, "train", 2) != split_seeds(0, "val", 2)
    True
    """
    key = int.from_bytes(split.encode(), "little") % (2 ** 32)
    return [int(s) for s in np.random.SeedSequence([int(seed), key]).generate_state(n)]


def _log_uniform(rng, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


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
        dose=_log_uniform(rng, *dose_range),
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


def random_energy_grid(rng, element: str, *, n_range=(30, 150)) -> np.ndarray:
    """Draw a XANES energy grid the way beamlines vary them: range, steps and point count.

    Coarse pre- and post-edge steps of 5-20 eV, a fine step of 0.5-2 eV across the edge
    (its window drawn around the tabulated edge), the scan starting 60-150 eV below and
    ending 60-250 eV above the edge. The fine step is widened or narrowed until the grid
    has ``n_range`` points.

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
        Random source.
    element : str
        Absorbing element (K edge).
    n_range : tuple of int
        Allowed number of energies.

    Returns
    -------
    numpy.ndarray
        Increasing energies (eV).

    Examples
    --------
    >>> e = random_energy_grid(0, "Ni")
    >>> 30 <= e.size <= 150 and bool(np.all(np.diff(e) > 0))
    True
    """
    rng = np.random.default_rng(rng)
    kw = {"start_eV": -rng.uniform(60.0, 150.0), "fine_from_eV": -rng.uniform(8.0, 20.0),
          "fine_to_eV": rng.uniform(25.0, 60.0), "stop_eV": rng.uniform(60.0, 250.0),
          "coarse_step_eV": rng.uniform(5.0, 20.0)}
    fine_step = rng.uniform(0.5, 2.0)
    for _ in range(40):
        grid = default_energy_grid(element, fine_step_eV=fine_step, **kw)
        if grid.size < n_range[0]:
            fine_step *= 0.85
        elif grid.size > n_range[1]:
            fine_step *= 1.15
        else:
            return grid
    raise RuntimeError(f"no energy grid with {n_range} points found for {kw}; widen n_range.")


def randomised_config(rng, base: SimulationConfig = _DEFAULT_CONFIG, *,
                      dose_range=(100.0, 10000.0), background_range=(0.005, 0.05),
                      pixel_size_range_nm=(20.0, 150.0), diameter_range_um=(1.0, 20.0),
                      compositions=("NMC111", "NMC622", "NMC811")) -> SimulationConfig:
    """Draw a configuration over the range users measure (domain randomisation for training).

    Wider than :func:`sample_config` on every axis a denoiser could learn by heart: pixel
    size (log-uniform), particle size (log-uniform diameters, from a few pixels to larger
    than the field) and number (sparse to dense, overlapping), chemistry from smooth
    core-shell gradients to grain-level variation (sharp boundaries between grains), hot
    spots and surface layers; dose; beam background amplitude, patterns (gradients, blobs,
    bands, rings) and their energy correlation; energy grid (:func:`random_energy_grid`);
    PSF blur; perturbed references. The element and image shape come from ``base``.

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
        Random source.
    base : SimulationConfig
        Supplies the element, edge and image shape.
    dose_range : tuple of float
        Photons per pixel per energy, drawn log-uniformly.
    background_range : tuple of float
        RMS of ``B - 1``, drawn uniformly.
    pixel_size_range_nm : tuple of float
        Pixel size, drawn log-uniformly.
    diameter_range_um : tuple of float
        Secondary-particle diameters; each stack draws a sub-range log-uniformly inside it.
    compositions : sequence of str
        Cathode compositions to draw from.

    Returns
    -------
    SimulationConfig

    Examples
    --------
    >>> cfg = randomised_config(0)
    >>> 20 <= cfg.phantom.pixel_size_nm <= 150 and 100 <= cfg.dose <= 10000
    True
    """
    rng = np.random.default_rng(rng)
    pixel_nm = _log_uniform(rng, *pixel_size_range_nm)
    r_min = _log_uniform(rng, diameter_range_um[0] / 2, diameter_range_um[1] / 4)
    r_max = min(r_min * rng.uniform(1.2, 3.0), diameter_range_um[1] / 2)
    pats = tuple(p for p in PATTERNS if rng.random() < 0.5) or (str(rng.choice(PATTERNS)),)
    smooth = rng.random() < 0.5  # half the stacks smooth chemistry, half grain-level
    return base.replace(
        composition=str(rng.choice(compositions)),
        energies_eV=tuple(float(e) for e in random_energy_grid(rng, base.element)),
        dose=_log_uniform(rng, *dose_range),
        background_amplitude=float(rng.uniform(*background_range)),
        background_patterns=pats,
        background_energy_correlation=float(rng.uniform(0.3, 0.98)),
        blur_px=float(rng.uniform(0.0, 1.5)),
        drift_px=float(rng.uniform(0.0, 0.3)),
        reference_jitter=float(rng.uniform(0.5, 1.5)),
        phantom_pixel_size_nm=pixel_nm,
        phantom_radius_um=(r_min, r_max),
        phantom_aspect=(float(rng.uniform(0.5, 0.9)), 1.0),
        phantom_fill_fraction=float(rng.uniform(0.05, 0.7)),
        phantom_max_particles=80,
        phantom_porosity=float(rng.uniform(0.02, 0.25)),
        phantom_grain_size_um=_log_uniform(rng, 0.15, 2.0),
        phantom_texture_sigma=float(rng.uniform(0.0, 0.15)),
        phantom_cracks_per_particle=float(rng.uniform(0.0, 3.0)),
        phantom_mean_state_frac=float(rng.uniform(0.1, 0.9)),
        phantom_particle_state_sigma=float(rng.uniform(0.0, 0.35)),
        phantom_core_shell_delta=float(rng.uniform(0.0, 0.6 if smooth else 0.2)),
        phantom_grain_state_sigma=float(rng.uniform(0.0, 0.05) if smooth else rng.uniform(0.1, 0.35)),
        phantom_hot_spots_per_particle=float(rng.uniform(0.0, 3.0)),
        phantom_surface_layer_nm=float(rng.uniform(0.0, 200.0)),
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
