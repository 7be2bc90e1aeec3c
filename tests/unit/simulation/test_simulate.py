"""The simulator: Beer-Lambert consistency, photon statistics, edge steps, reproducibility."""

import numpy as np
import pytest

from xanes_lib import io, simulation
from xanes_lib.physics import absorbance, build_model, mass_fractions
from xanes_lib.simulation import (
    SimulationConfig,
    absorbance_basis,
    default_energy_grid,
    detector_counts,
    resolve_references,
    simulate_stack,
)

SMALL = SimulationConfig().replace(phantom_shape=(48, 48), phantom_pixel_size_nm=150.0)


def _single_particle(element, composition="NMC811", diameter_um=10.0):
    """One sphere without pores, cracks or texture, no background, no noise of interest."""
    return SimulationConfig(element=element, composition=composition, background_amplitude=0.0,
                            dose=1e6).replace(
        phantom_shape=(128, 128), phantom_pixel_size_nm=100.0, phantom_fill_fraction=1e-6,
        phantom_max_particles=1, phantom_radius_um=(diameter_um / 2, diameter_um / 2),
        phantom_aspect=(1.0, 1.0), phantom_porosity=0.1, phantom_texture_sigma=0.0,
        phantom_grain_boundary_depth=0.0, phantom_pores_per_um3=0.0, phantom_cracks_per_particle=0.0)


def _edge_step(energies, absorb, e0):
    """Pre- and post-edge lines of -ln T extrapolated to the edge: their difference."""
    pre, post = energies < e0 - 15, energies > e0 + 60
    lo = np.polyval(np.polyfit(energies[pre], absorb[pre], 1), e0)
    hi = np.polyval(np.polyfit(energies[post], absorb[post], 1), e0)
    return hi - lo


def _noiseless(seed):
    """A stack without background, its truth, exact absorbance basis and true absorbance."""
    cfg = SMALL.replace(background_amplitude=0.0)
    stack, truth = simulate_stack(cfg, seed=seed)
    refs = resolve_references(cfg, np.random.default_rng(0))
    basis, names = absorbance_basis(cfg, stack.energies_eV, refs)
    return cfg, stack.energies_eV, truth, basis, names, absorbance(truth.transmission.astype(np.float64))


def test_noiseless_stack_is_linear_absorbance_model():
    cfg, e, truth, basis, names, a = _noiseless(4)
    model = build_model(e, basis, names=names, background=())
    coeffs = model.fit(a)
    resid = model.predict(coeffs) - a
    assert np.abs(resid).max() < 1e-5 * max(a.max(), 1.0), "Beer-Lambert: -ln T is linear in the absorbers"
    # The coefficients are the true masses: edge element in each state, and the whole cathode.
    mass = truth.areal_density * 1e-6 / mass_fractions(cfg.composition)["Ni"]
    np.testing.assert_allclose(coeffs[-1], mass, atol=2e-6)
    np.testing.assert_allclose(coeffs[:-1], mass * truth.fractions, atol=2e-6)


def test_generic_model_with_smooth_background_fits_to_small_residual():
    """The published basis (references + a E^-3 + b) explains the noiseless stack closely."""
    _, e, truth, basis, _, a = _noiseless(5)
    model = build_model(e, basis[:-1])  # reference states + (E/E0)^-3 + constant
    resid = model.predict(model.fit(a)) - a
    step = _edge_step(e, a[:, truth.mask].max(axis=1), 8333.0)
    assert np.sqrt(np.mean(resid[:, truth.mask] ** 2)) < 0.01 * step


def test_detector_counts_are_poisson():
    counts = detector_counts(np.full(200_000, 400.0), 1)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.02)
    avg = detector_counts(np.full(200_000, 400.0), 2, frames=10)
    assert avg.var() / (avg.mean() / 10) == pytest.approx(1.0, abs=0.03)
    noisy = detector_counts(np.zeros(200_000), 3, read_noise=2.0, offset=100.0)
    assert noisy.mean() == pytest.approx(100.0, abs=0.05) and noisy.std() == pytest.approx(2.0, rel=0.02)


def test_measured_transmission_noise_matches_poisson_prediction():
    cfg = SMALL.replace(phantom_shape=(96, 96), dose=500.0, read_noise=0.0, flat_frames=5)
    stack, truth = simulate_stack(cfg, seed=2)
    expected = truth.transmission.astype(np.float64) * truth.background
    resid = stack.transmission - expected
    var_pred = expected / cfg.dose + expected ** 2 / (cfg.flat_frames * cfg.dose)
    # Photon counts on a non-uniform illumination: normalise by the predicted variance.
    ratio = np.mean(resid ** 2 / var_pred)
    assert ratio == pytest.approx(1.0, abs=0.15), ratio  # illumination profile varies +/-10 %
    # The mean is T x B up to the second-order bias of a ratio of Poisson counts, E[1/F] ~ (1 + 1/F)/F.
    bias = np.mean(expected / (cfg.flat_frames * cfg.dose * 1.0))
    assert abs(resid.mean() - bias) < 3 * np.sqrt(var_pred.mean() / resid.size)


@pytest.mark.parametrize("element", ["Ni", "Co"])
def test_edge_step_of_10um_nmc811_particle(element):
    cfg = _single_particle(element)
    stack, truth = simulate_stack(cfg, seed=0)
    centre = np.unravel_index(np.argmax(truth.areal_density), truth.areal_density.shape)
    a = absorbance(truth.transmission[:, centre[0], centre[1]].astype(np.float64))
    from xanes_lib.physics import tabulated_edge_energy
    step = _edge_step(stack.energies_eV, a, tabulated_edge_energy(element))
    if element == "Ni":
        assert 0.5 < step < 0.7, step  # "about 0.6"
    else:
        cfg_ni = _single_particle("Ni")
        _, truth_ni = simulate_stack(cfg_ni, seed=0)
        a_ni = absorbance(truth_ni.transmission[:, centre[0], centre[1]].astype(np.float64))
        step_ni = _edge_step(default_energy_grid("Ni"), a_ni, tabulated_edge_energy("Ni"))
        assert 6.0 < step_ni / step < 10.0, step_ni / step  # "about eight times smaller"


def test_background_in_truth_has_mean_one():
    _, truth = simulate_stack(SMALL.replace(background_amplitude=0.03), seed=1)
    np.testing.assert_allclose(truth.background.mean(axis=(1, 2)), 1.0, atol=1e-5)
    assert truth.background.std() == pytest.approx(0.03, rel=0.01)


def test_ground_truth_consistent():
    stack, truth = simulate_stack(SMALL, seed=3)
    assert truth.references == ["Ni2+", "Ni3+"]
    m = truth.mask
    assert m.any() and (~m).any()
    assert np.isfinite(truth.oxidation_state[m]).all()
    assert np.isnan(truth.oxidation_state[truth.areal_density == 0]).all()
    assert (2.0 <= truth.oxidation_state[m]).all() and (truth.oxidation_state[m] <= 3.0).all()
    assert truth.params["seed"] == 3 and truth.params["dose"] == SMALL.dose
    assert stack.transmission.dtype == np.float32 and stack.energies_eV.dtype == np.float64


def test_same_seed_same_file(tmp_path):
    cfg = SMALL.replace(blur_px=0.7, drift_px=0.2, reference_jitter=1.0)
    paths = [simulation.write_dataset(tmp_path / d, "s", [cfg], [seed])[0]
             for d, seed in [("a", 11), ("b", 11), ("c", 12)]]
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b, "same seed, same bytes"
    assert a != c
    assert io.read_ground_truth(paths[0]).params["seed"] == 11


@pytest.mark.parametrize("changes, match", [
    ({"composition": "NMC999"}, "unknown composition"),
    ({"element": "Fe"}, "not in NMC811"),
    ({"dose": 0.0}, "dose must be a finite number > 0"),
    ({"flat_frames": 0}, "flat_frames"),
    ({"background_patterns": ("stripes",)}, "unknown background pattern"),
    ({"phantom_shape": (4, 4)}, "at least 8 x 8"),
    ({"energies_eV": (8400.0, 8300.0, 8350.0)}, "increase strictly"),
    ({"references": ("Ni2+", "Ni9+")}, "not in the shipped library"),
])
def test_bad_configuration_raises(changes, match):
    with pytest.raises(ValueError, match=match):
        simulate_stack(SMALL.replace(**changes), seed=0)


@pytest.mark.parametrize("foreign", [0, 1])
def test_oxidation_state_is_nan_exactly_outside_the_sample(foreign):
    """DESIGN.md: NaN outside the sample (``mask`` False) and in a foreign phase, finite elsewhere."""
    cfg = SMALL.replace(foreign_particles=foreign, mask_min_thickness_um=2.0)  # thin rims fall outside
    _, truth = simulate_stack(cfg, seed=5)
    outside = ~truth.mask
    assert (outside & (truth.areal_density > 0)).any(), "the case needs matter outside the mask"
    assert np.isnan(truth.oxidation_state[outside]).all()
    undefined = outside if truth.foreign_mask is None else outside | truth.foreign_mask
    assert np.isfinite(truth.oxidation_state[~undefined]).all()
    assert (truth.foreign_mask is not None) == bool(foreign)
