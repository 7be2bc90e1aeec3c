"""Phantom geometry and oxidation-state maps."""

import numpy as np
import pytest

from xanes_lib.simulation import PhantomConfig, make_phantom, state_to_fractions


def test_state_to_fractions_round_trip():
    ox = [2.0, 3.0, 4.0]
    s = np.array([2.0, 2.3, 3.0, 3.7, 4.0])
    f = state_to_fractions(s, ox)
    np.testing.assert_allclose(f.sum(0), 1.0)
    np.testing.assert_allclose(np.tensordot(ox, f, 1), s)
    assert (f >= 0).all()
    with pytest.raises(ValueError, match="strictly increasing"):
        state_to_fractions(s, [3.0, 2.0])


def test_phantom_maps_consistent():
    cfg = PhantomConfig(shape=(128, 128), pixel_size_nm=80.0)
    ph = make_phantom(cfg, 4.78, [2.0, 3.0], 3)
    sample = ph.areal_density > 0
    assert 0.15 < sample.mean() < 0.9, "field holds particles and empty background"
    np.testing.assert_allclose(ph.state_fractions.sum(0)[sample], 1.0, atol=1e-9)
    assert np.all(ph.state_fractions[:, ~sample] == 0)
    assert (ph.labels[sample] >= 0).all() and (ph.labels[~sample] == -1).all()
    # Areal density = density x (1 - porosity) x texture x thickness: stays in a physical band.
    rho = ph.areal_density[sample] / (ph.thickness_um[sample] * 1e-4)
    assert 0.5 * 4.78 < np.median(rho) < 4.78
    state = np.tensordot([2.0, 3.0], ph.state_fractions, 1)[sample]
    assert state.std() > 0.02, "chemistry varies across the sample"


def test_surface_layer_reduces_rim():
    cfg = PhantomConfig(shape=(96, 96), pixel_size_nm=100.0, fill_fraction=0.01, max_particles=1,
                        radius_um=(3.5, 3.5), aspect=(1.0, 1.0), hot_spots_per_particle=0,
                        core_shell_delta=0.0, surface_layer_nm=300.0, mean_state_frac=0.9,
                        grain_state_sigma=0.0, particle_state_sigma=0.0)
    ph = make_phantom(cfg, 4.78, [2.0, 3.0], 0)
    state = np.tensordot([2.0, 3.0], ph.state_fractions, 1)
    t = ph.thickness_um
    rim = (t > 0) & (t < 0.25 * t.max())
    core = t > 0.8 * t.max()
    assert state[rim].mean() < state[core].mean() - 0.1


def test_phantom_same_seed_same_maps():
    cfg = PhantomConfig(shape=(64, 64))
    a, b = make_phantom(cfg, 4.78, [2, 3], 9), make_phantom(cfg, 4.78, [2, 3], 9)
    np.testing.assert_array_equal(a.areal_density, b.areal_density)
    np.testing.assert_array_equal(a.state_fractions, b.state_fractions)
