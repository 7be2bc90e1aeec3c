"""Which energy profiles of the beam background are kept (``beam_profiles``).

A beam that drifts slowly with energy lies mostly inside the physics model's span (a
constant, a slope), so inside particles its maps can only come from the empty field around
them. Those profiles are kept when the empty field is clean; when the "empty" pixels absorb
(sample passing for empty), the same kind of profile is the sample's own spectrum and is dropped.
"""

import numpy as np
import pytest

from xanes_lib import evaluation
from xanes_lib.denoising.beam import CLEAN_EMPTY_LEVEL, beam_profiles, empty_level, estimate_background
from xanes_lib.physics import reference_model
from xanes_lib.simulation import SimulationConfig, simulate_stack
from xanes_lib.spectra import default_references


def _state_rmse(transmission, stack, truth) -> float:
    """Oxidation-state RMSE of notebook 04's fit of a (noise-free) stack inside the true sample."""
    fit = evaluation.oxidation_state_fit(transmission, stack.energies_eV, stack.element, mask=truth.mask)
    return evaluation.oxidation_state_metrics(fit.oxidation_state, fit.oxidation_state_std,
                                              truth.oxidation_state, truth.mask)["rmse"]


@pytest.fixture(scope="module")
def slow_beam():
    """Ni at 1000 photons whose beam drifts slowly with energy (correlation 0.98, in training's range)."""
    cfg = SimulationConfig(element="Ni", dose=1000.0, background_amplitude=0.02,
                           background_energy_correlation=0.98, foreign_particles=0).replace(
        phantom_shape=(160, 160))
    return simulate_stack(cfg, seed=2601)


def test_a_slowly_drifting_beam_is_kept_on_a_clean_empty_field(slow_beam):
    stack, truth = slow_beam
    e = stack.energies_eV
    model = reference_model(e, "Ni")
    kept = estimate_background(stack.transmission, e, model)
    dropped = estimate_background(stack.transmission, e, model, min_unexplained=0.2)
    assert kept.dropped == 0 and dropped.dropped >= 1
    # The noise-free stack with the true background, divided by each estimate: only the
    # estimate's error is left in the map.
    seen = truth.transmission.astype(np.float64) * truth.background
    err_kept = _state_rmse(seen / kept.background, stack, truth)
    err_dropped = _state_rmse(seen / dropped.background, stack, truth)
    assert err_kept < 0.7 * err_dropped, (err_kept, err_dropped)


def test_in_span_profiles_are_dropped_where_the_empty_pixels_absorb():
    """A field covered by sample: its thinner part passes for empty and must not be taken for beam."""
    refs = default_references("Ni")
    e = np.linspace(8300.0, 8400.0, 40)
    yy, xx = np.mgrid[0:96, 0:96]
    thickness = 0.3 + 0.6 * np.exp(-((yy - 48) ** 2 + (xx - 48) ** 2) / (2 * 20.0 ** 2))
    spectrum = 0.5 * (refs[0].spectrum(e) + refs[-1].spectrum(e)) + 0.3 * (e[0] / e) ** 3
    rng = np.random.default_rng(0)
    absorb = thickness[None] * spectrum[:, None, None]
    transmission = rng.poisson(3000.0 * np.exp(-absorb)) / 3000.0
    model = reference_model(e, "Ni")
    est = estimate_background(transmission, e, model)
    assert empty_level(-np.log(transmission).mean(0), est.empty) > CLEAN_EMPTY_LEVEL
    assert est.dropped >= 1
    # Kept, the profile subtracts part of the sample; dropped, the estimate stays near 1.
    forced = estimate_background(transmission, e, model, min_unexplained=0.0)
    assert np.abs(np.log(est.background)).mean() < 0.01
    assert np.abs(np.log(forced.background)).mean() > 3 * np.abs(np.log(est.background)).mean()


def test_beam_profiles_chooses_by_the_empty_level():
    e = np.linspace(8300.0, 8400.0, 40)
    model = reference_model(e, "Ni")
    rng = np.random.default_rng(1)
    offsets = rng.normal(0.0, 0.02, 500)   # the same offset at every energy: inside the span
    a = np.ones(e.size)[:, None] * offsets[None] + rng.normal(0.0, 1e-4, (e.size, 500))
    gram = a @ a.T
    assert beam_profiles(gram, 500, model, empty_level=0.0).rank == 1
    assert beam_profiles(gram, 500, model, empty_level=0.3).rank == 0
    assert beam_profiles(gram, 500, model, empty_level=0.3, min_unexplained=0.0).rank == 1
