"""Training-set configurations: the domain-randomised draw covers the ranges users measure."""

import numpy as np
import pytest

from xanes_lib import simulation
from xanes_lib.physics import tabulated_edge_energy
from xanes_lib.simulation import PATTERNS, SimulationConfig, random_energy_grid, randomised_config


@pytest.fixture(scope="module")
def drawn():
    rng = np.random.default_rng(3)
    base = SimulationConfig(element="Ni").replace(phantom_shape=(64, 64))
    return [randomised_config(rng, base) for _ in range(200)]


def test_randomised_config_spans_the_issue_ranges(drawn):
    px = np.array([c.phantom.pixel_size_nm for c in drawn])
    dose = np.array([c.dose for c in drawn])
    diam = np.array([2 * np.array(c.phantom.radius_um) for c in drawn])
    n_e = np.array([len(c.energies_eV) for c in drawn])
    assert px.min() >= 20 and px.max() <= 150 and px.min() < 30 and px.max() > 120
    assert dose.min() >= 100 and dose.max() <= 10000 and dose.min() < 200 and dose.max() > 5000
    assert diam.min() >= 1.0 and diam.max() <= 20.0 + 1e-9 and diam.min() < 2 and diam.max() > 10
    assert n_e.min() >= 30 and n_e.max() <= 150 and np.ptp(n_e) > 40
    fills = np.array([c.phantom.fill_fraction for c in drawn])
    assert fills.min() < 0.15 and fills.max() > 0.6
    grain = np.array([c.phantom.grain_state_sigma for c in drawn])
    assert (grain > 0.1).mean() > 0.3 and (grain < 0.05).mean() > 0.3  # grain-level and smooth chemistry
    seen = {p for c in drawn for p in c.background_patterns}
    assert seen == set(PATTERNS)
    assert all(c.element == "Ni" and c.phantom.shape == (64, 64) for c in drawn)


def test_randomised_config_is_seeded():
    assert randomised_config(7) == randomised_config(7) != randomised_config(8)


@pytest.mark.parametrize("element", ["Ni", "Co", "Mn"])
def test_random_energy_grid_brackets_the_edge(element):
    edge = tabulated_edge_energy(element)
    for seed in range(20):
        e = random_energy_grid(seed, element)
        assert 30 <= e.size <= 150
        assert np.all(np.diff(e) > 0)
        assert e[0] < edge - 50 and e[-1] > edge + 50
        fine = np.diff(e)[(e[:-1] > edge - 5) & (e[:-1] < edge + 20)]
        assert fine.max() <= 2.0 + 1e-9  # the edge itself is sampled finely


def test_randomised_stack_simulates():
    cfg = randomised_config(11, SimulationConfig(element="Co").replace(phantom_shape=(48, 48)))
    stack, truth = simulation.simulate_stack(cfg, seed=1)
    assert stack.transmission.shape == (len(cfg.energies_eV), 48, 48)
    assert np.all(np.isfinite(stack.transmission)) and truth.mask.any()
