"""Simulated stacks with ground truth: phantoms, beam background, detector, data sets.

- :mod:`.phantom`     particles, grains, pores, cracks; oxidation-state patterns
- :mod:`.background`  the smooth multiplicative beam background B(x, y, E)
- :mod:`.simulate`    Beer-Lambert, beam and detector: :func:`simulate_stack`
- :mod:`.datasets`    varied training / validation / test sets with seeds and a manifest
- :mod:`.foreign`     the foreign test family: a separate phantom and forward model with its own
                      assumptions (:func:`simulate_foreign_stack`, :data:`FOREIGN_FAMILIES`), for
                      benchmarks only, never for training or choosing anything
- :mod:`.large`       a large stack on disk: one simulated field tiled, fresh noise per tile
- :mod:`.volume`      a small 3-D XANES stack (E, Z, Y, X) with truth, for the chunked pipeline
"""

from .background import PATTERNS, beam_background, illumination_profile
from .datasets import random_energy_grid, randomised_config, sample_config, split_seeds, write_dataset
from .foreign import (
    FOREIGN_COMPOSITIONS,
    FOREIGN_FAMILIES,
    FOREIGN_KINDS,
    ForeignConfig,
    foreign_edge_attenuation,
    foreign_energy_grid,
    simulate_foreign_family,
    simulate_foreign_stack,
)
from .large import TiledTruth, write_tiled_stack
from .phantom import PhantomConfig, PhantomMaps, make_phantom, state_to_fractions
from .simulate import (
    FOREIGN_MIN_PIXELS,
    SimulationConfig,
    absorbance_basis,
    check_config,
    choose_foreign_particles,
    default_energy_grid,
    detector_counts,
    resolve_references,
    simulate_stack,
)
from .volume import read_volume_truth, simulate_volume, write_volume

__all__ = [
    "PhantomConfig", "PhantomMaps", "state_to_fractions", "make_phantom", "PATTERNS", "beam_background",
    "illumination_profile", "default_energy_grid", "SimulationConfig", "check_config",
    "resolve_references", "absorbance_basis", "FOREIGN_MIN_PIXELS", "choose_foreign_particles",
    "detector_counts", "simulate_stack", "split_seeds", "sample_config", "randomised_config",
    "random_energy_grid", "write_dataset",
    "FOREIGN_KINDS", "FOREIGN_COMPOSITIONS", "FOREIGN_FAMILIES", "ForeignConfig", "foreign_energy_grid",
    "foreign_edge_attenuation", "simulate_foreign_stack", "simulate_foreign_family",
    "simulate_volume", "write_volume", "read_volume_truth", "TiledTruth", "write_tiled_stack",
]
