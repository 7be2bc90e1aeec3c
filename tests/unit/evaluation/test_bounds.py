"""The Cramer-Rao bound of the oxidation state: reached by efficient fits, never beaten, pooled right."""

import numpy as np
import pytest

from xanes_lib import mapping, simulation
from xanes_lib.evaluation import oxidation_state_bound, physical_limits, stack_state_bound
from xanes_lib.physics import reference_model
from xanes_lib.spectra import default_references

E = np.linspace(8300.0, 8420.0, 60)


def _uniform(coefficients, shape=(60, 60)):
    model = reference_model(E, "Ni")
    a = model.predict(np.asarray(coefficients, dtype=np.float64))
    return model, np.exp(-a)[:, None, None] * np.ones((1, *shape))


def test_weighted_fit_of_poisson_counts_reaches_the_bound_and_the_plain_fit_does_not_beat_it():
    # 3600 pixels of one mix (state 2.6), 2000 photons: the variance of the state from the
    # inverse-variance weighted fit (efficient at these counts) is the bound; the plain fit's is not lower.
    model, t = _uniform([0.2, 0.3, 0.3, 0.1])
    dose = 2000.0
    bound = oxidation_state_bound(t, dose, model, [2.0, 3.0])
    counts = np.random.default_rng(0).poisson(dose * t).astype(np.float64)
    a = -np.log(counts / dose)
    w = dose * t[:, 0, 0]                                   # 1 / var(A) per energy
    m = model.matrix
    wls = np.linalg.solve(m.T @ (w[:, None] * m), m.T @ (w[:, None] * a.reshape(len(E), -1)))
    state = (2.0 * wls[0] + 3.0 * wls[1]) / (wls[0] + wls[1])
    ratio = state.var() / float(bound.per_pixel_std[30, 30]) ** 2
    assert 0.9 < ratio < 1.1, ratio
    plain = model.fit(a.reshape(len(E), -1))
    plain_state = (2.0 * plain[0] + 3.0 * plain[1]) / (plain[0] + plain[1])
    assert plain_state.var() / float(bound.per_pixel_std[30, 30]) ** 2 > 0.95
    # the bound scales as 1 / sqrt(dose)
    quarter = oxidation_state_bound(t, dose / 4, model, [2.0, 3.0])
    assert quarter.per_pixel_std[30, 30] / bound.per_pixel_std[30, 30] == pytest.approx(2.0, rel=1e-4)


def test_pooled_bound_shares_the_information_of_the_block_and_only_of_mask_pixels():
    model, t = _uniform([0.5, 0.0, 0.2, 0.1], shape=(20, 20))     # a pure reference: Ni2+
    mask = np.zeros((20, 20), bool)
    mask[:, :10] = True
    b = oxidation_state_bound(t, 500.0, model, [2.0, 3.0], mask=mask)
    assert np.isfinite(b.per_pixel_std).all() and b.per_pixel_std[5, 5] > 0
    assert b.pooled_std[10, 5] == pytest.approx(b.per_pixel_std[10, 5] / 5.0, rel=1e-5)
    # at the mask's edge (column 9) only 3 of the 5 columns pool; outside it nothing
    assert b.pooled_std[10, 9] == pytest.approx(b.per_pixel_std[10, 9] / np.sqrt(15.0), rel=1e-5)
    assert np.isinf(b.pooled_std[:, 10:]).all()
    s = b.summary(mask)
    assert s["n_pixels"] == 200 and s["n_unbounded"] == 0
    assert s["per_pixel_median"] == pytest.approx(float(b.per_pixel_std[5, 5]), rel=1e-5)


def test_pixels_without_the_edge_element_are_unbounded_and_counted_apart():
    model, t = _uniform([0.3, 0.2, 0.2, 0.1], shape=(8, 8))
    t[:, :, :4] = np.exp(-model.predict(np.array([0.0, 0.0, 0.2, 0.1])))[:, None, None]
    b = oxidation_state_bound(t, 1000.0, model, [2.0, 3.0])
    assert np.isinf(b.per_pixel_std[:, :4]).all() and np.isfinite(b.per_pixel_std[:, 4:]).all()
    s = b.summary(np.ones((8, 8), bool))
    assert s["n_unbounded"] == 32 and s["n_pixels"] == 32 and np.isfinite(s["per_pixel_rms"])


def test_simulated_stack_plain_fit_errors_match_its_bound():
    # no blur, drift or beam background: the unconstrained per-pixel fit's errors, in units
    # of the bound the truth gives (dose, read noise, flat frames), have unit mean square
    cfg = simulation.SimulationConfig(element="Ni").replace(
        phantom_shape=(64, 64), drift_px=0.0, blur_px=0.0, background_amplitude=0.0, reference_jitter=0.0,
        dose=2000.0)
    st, gt = simulation.simulate_stack(cfg, seed=3)
    b = stack_state_bound(st, gt)
    fit = mapping.fit_references(st, None, default_references("Ni"), mode="unconstrained")
    m = gt.mask & np.isfinite(gt.oxidation_state) & (b.per_pixel_std < 0.15)
    assert m.sum() > 1000
    z = (fit.oxidation_state - gt.oxidation_state)[m] / b.per_pixel_std[m]
    assert 0.85 < float(np.mean(z ** 2)) < 1.2
    assert abs(float(np.mean(z))) < 0.1


@pytest.mark.parametrize("counts, states, match", [
    (0.0, [2.0, 3.0], "counts"),
    (np.nan, [2.0, 3.0], "counts"),
    (100.0, [2.0, 3.0, 4.0, 5.0, 6.0], "oxidation states"),
])
def test_bad_bound_inputs_are_named(counts, states, match):
    model, t = _uniform([0.3, 0.2, 0.2, 0.1], shape=(4, 4))
    with pytest.raises(ValueError, match=match):
        oxidation_state_bound(t, counts, model, states)
    with pytest.raises(ValueError, match="energies"):
        oxidation_state_bound(t[:-1], 100.0, model, [2.0, 3.0])
    with pytest.raises(ValueError, match="pool_px"):
        oxidation_state_bound(t, 100.0, model, [2.0, 3.0], pool_px=0)


def test_physical_limits_of_a_foreign_stack_name_the_bounds_and_the_true_spread():
    st, gt = simulation.simulate_foreign_family("Ni_300_sharp", shape=(48, 48))
    lim = physical_limits(st, gt)
    scored = gt.mask & np.isfinite(gt.oxidation_state)
    assert lim["n_pixels"] + lim["n_unbounded"] == scored.sum()
    assert lim["truth_state_std"] == pytest.approx(float(np.std(gt.oxidation_state[scored])))
    assert 0 < lim["pooled_median"] < lim["per_pixel_median"]
