"""Simulated stacks with ground truth: phantoms, beam background, detector, data sets.

- :mod:`.phantom`     particles, grains, pores, cracks; oxidation-state patterns
- :mod:`.background`  the smooth multiplicative beam background B(x, y, E)
- :mod:`.simulate`    Beer-Lambert, beam and detector: :func:`simulate_stack`
- :mod:`.datasets`    varied training / validation / test sets with seeds and a manifest
"""

from .phantom import (PhantomConfig, PhantomMaps, state_to_fractions, make_phantom)
from .background import (PATTERNS, beam_background, illumination_profile)
from .simulate import (default_energy_grid, SimulationConfig, check_config, resolve_references,
                       absorbance_basis, FOREIGN_MIN_PIXELS, choose_foreign_particles, detector_counts,
                       simulate_stack)
from .datasets import (split_seeds, sample_config, write_dataset)

__all__ = [
    "PhantomConfig", "PhantomMaps", "state_to_fractions", "make_phantom", "PATTERNS", "beam_background",
    "illumination_profile", "default_energy_grid", "SimulationConfig", "check_config",
    "resolve_references", "absorbance_basis", "FOREIGN_MIN_PIXELS", "choose_foreign_particles",
    "detector_counts", "simulate_stack", "split_seeds", "sample_config", "write_dataset",
]
