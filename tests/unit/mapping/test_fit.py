"""Tests of xanes_lib.mapping: normalisation, edge energies, masks, per-pixel reference fits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xanes_lib.io import Stack
from xanes_lib.mapping import (
    edge_energy,
    fit_energy_shift,
    fit_references,
    normalize_spectra,
    resolution_summary,
    resolved_share,
    sample_mask,
    white_line_energy,
)
from xanes_lib.physics import build_model
from xanes_lib.simulation import SimulationConfig, absorbance_basis, default_energy_grid, simulate_stack
from xanes_lib.spectra import TabulatedReference, default_references

E_NI = default_energy_grid("Ni")
REFS_NI = default_references("Ni")
BACKGROUND = ("inverse_cube", "constant")


def _model(refs=REFS_NI, e=E_NI, shift=0.0):
    return build_model(e, np.stack([r.spectrum(e - shift) for r in refs]), background=BACKGROUND)


def _absorbance(coeffs, *, noise=0.0, seed=0, refs=REFS_NI, e=E_NI, shift=0.0):
    """Absorbance (E, Y, X) of the linear model for coefficient maps (P, Y, X)."""
    a = _model(refs, e, shift).predict(np.asarray(coeffs, dtype=np.float64))
    if noise:
        a = a + np.random.default_rng(seed).normal(0.0, noise, a.shape)
    return a


def _random_coeffs(rng, shape, *, lo=-0.2, k=2):
    refs = rng.uniform(lo, 1.0, (k,) + shape)
    bg = rng.uniform(0.0, 1.0, (2,) + shape)
    return np.concatenate([refs, bg])


# ------------------------------------------------------------------ reference fits

@pytest.mark.parametrize("k", [0, 1])
def test_pure_reference_comes_back_as_its_own_state(k):
    coeffs = np.zeros((4, 3, 4))
    coeffs[k] = np.linspace(0.1, 1.2, 12).reshape(3, 4)      # thickness varies, state does not
    coeffs[2], coeffs[3] = 0.4, 0.1
    fit = fit_references(_absorbance(coeffs), E_NI, REFS_NI, mode="nonneg_sum_to_one")
    assert np.allclose(fit.oxidation_state, REFS_NI[k].oxidation_state, atol=1e-9)
    assert np.allclose(fit.fractions[k], 1.0, atol=1e-9)
    assert np.allclose(fit.edge_step, coeffs[k], rtol=1e-9)


def test_pure_simulated_stack_comes_back_as_its_own_state():
    """A simulated stack whose every pixel is Ni3+ (little noise, no background)."""
    cfg = SimulationConfig(background_amplitude=0.0, dose=1e7, read_noise=0.0).replace(
        phantom_shape=(24, 24), phantom_pixel_size_nm=150.0, phantom_mean_state=3.0,
        phantom_particle_state_sigma=0.0, phantom_core_shell_delta=0.0,
        phantom_hot_spots_per_particle=0.0, phantom_grain_state_sigma=0.0,
        phantom_surface_layer_nm=0.0)
    stack, truth = simulate_stack(cfg, seed=2)
    assert np.allclose(truth.oxidation_state[truth.mask], 3.0)
    basis, _ = absorbance_basis(cfg, stack.energies_eV, REFS_NI)
    fit = fit_references(stack, None, basis[:2], oxidation_states=[2.0, 3.0], mask=truth.mask)
    inside = fit.mask
    assert inside.sum() > 50
    err = np.abs(fit.oxidation_state[inside] - 3.0)
    assert np.all(err < 4 * fit.oxidation_state_std[inside] + 1e-3)
    assert abs(float(np.median(fit.oxidation_state[inside])) - 3.0) < 0.01


def test_known_mixture_comes_back_within_its_std():
    f_true, thickness, noise = 0.3, 0.5, 0.01
    shape = (20, 20)
    coeffs = np.zeros((4,) + shape)
    coeffs[0], coeffs[1] = (1 - f_true) * thickness, f_true * thickness
    coeffs[2], coeffs[3] = 0.3, 0.05
    fit = fit_references(_absorbance(coeffs, noise=noise, seed=11), E_NI, REFS_NI)
    truth = 2.0 + f_true
    ox, std = fit.oxidation_state.ravel(), fit.oxidation_state_std.ravel()
    n = ox.size
    assert abs(ox.mean() - truth) < 3 * np.median(std) / np.sqrt(n)
    assert np.median(std) == pytest.approx(ox.std(), rel=0.15)    # std predicts the scatter
    assert np.mean(np.abs(ox - truth) < 2 * std) > 0.9
    np.testing.assert_allclose(fit.fractions.sum(axis=0), 1.0, atol=1e-12)


def test_vectorised_fit_equals_lstsq_on_random_pixels(rng):
    coeffs = _random_coeffs(rng, (6, 9))
    a = _absorbance(coeffs, noise=0.01, seed=1)
    fit = fit_references(a, E_NI, REFS_NI, chunk_rows=2)
    m = _model().matrix
    n, p = m.shape
    for y, x in [(0, 0), (2, 5), (5, 8), (3, 1)]:
        c, ssr, *_ = np.linalg.lstsq(m, a[:, y, x], rcond=None)
        np.testing.assert_allclose(fit.coefficients[:, y, x], c, rtol=1e-6, atol=1e-9)
        std = np.sqrt(np.diag(np.linalg.inv(m.T @ m)) * ssr[0] / (n - p))
        np.testing.assert_allclose(fit.coefficients_std[:, y, x], std, rtol=1e-6)
        assert fit.residual_rms[y, x] == pytest.approx(np.sqrt(ssr[0] / n), rel=1e-6)


def test_stds_equal_lmfit_with_correlated_propagation():
    """lmfit propagates derived parameters through the full covariance (uncertainties)."""
    lmfit = pytest.importorskip("lmfit")
    coeffs = np.array([0.35, 0.2, 0.4, 0.1])[:, None, None]
    a = _absorbance(coeffs, noise=0.01, seed=4)
    fit = fit_references(a, E_NI, REFS_NI)
    m = _model().matrix
    pars = lmfit.Parameters()
    for i in range(4):
        pars.add(f"c{i}", value=0.1)
    pars.add("f1", expr="c1 / (c0 + c1)")
    pars.add("ox", expr="(2 * c0 + 3 * c1) / (c0 + c1)")
    res = lmfit.minimize(lambda p: m @ np.array([p[f"c{i}"].value for i in range(4)]) - a[:, 0, 0],
                         pars, method="leastsq", xtol=1e-14, ftol=1e-14)
    assert fit.oxidation_state[0, 0] == pytest.approx(res.params["ox"].value, rel=1e-6)
    assert fit.fractions_std[1, 0, 0] == pytest.approx(res.params["f1"].stderr, rel=1e-4)
    assert fit.oxidation_state_std[0, 0] == pytest.approx(res.params["ox"].stderr, rel=1e-4)
    for i in range(4):
        assert fit.coefficients_std[i, 0, 0] == pytest.approx(res.params[f"c{i}"].stderr, rel=1e-4)
    # the correlation matters: ignoring it gives a different (wrong) answer
    step = coeffs[:2].sum()
    naive = np.sqrt(((1 - 0.2 / step) * fit.coefficients_std[1, 0, 0]) ** 2
                    + (0.2 / step * fit.coefficients_std[0, 0, 0]) ** 2) / step
    assert abs(naive - fit.fractions_std[1, 0, 0]) > 0.05 * fit.fractions_std[1, 0, 0]


def test_sum_to_one_with_fixed_step_equals_substituted_lstsq(rng):
    coeffs = _random_coeffs(rng, (4, 5), lo=0.05)
    a = _absorbance(coeffs, noise=0.01, seed=2)
    step = 0.7
    fit = fit_references(a, E_NI, REFS_NI, mode="sum_to_one", edge_step=step)
    m = _model().matrix
    sub = np.stack([m[:, 0] - m[:, 1], m[:, 2], m[:, 3]], axis=1)   # c1 = step - c0
    for y, x in [(0, 0), (3, 4), (1, 2)]:
        z, ssr, *_ = np.linalg.lstsq(sub, a[:, y, x] - step * m[:, 1], rcond=None)
        np.testing.assert_allclose(fit.coefficients[:, y, x], [z[0], step - z[0], z[1], z[2]],
                                   rtol=1e-6, atol=1e-9)
        n, p = sub.shape
        std0 = np.sqrt(np.linalg.inv(sub.T @ sub)[0, 0] * ssr[0] / (n - p))
        assert fit.coefficients_std[0, y, x] == pytest.approx(std0, rel=1e-6)
        assert fit.coefficients_std[1, y, x] == pytest.approx(std0, rel=1e-6)
    np.testing.assert_allclose(fit.edge_step, step, rtol=1e-12)
    assert fit.dof == E_NI.size - 3
    # a free step: fractions sum to one by construction; same as the unconstrained fit
    free = fit_references(a, E_NI, REFS_NI, mode="sum_to_one")
    np.testing.assert_allclose(free.coefficients, fit_references(a, E_NI, REFS_NI).coefficients)


@pytest.mark.parametrize("step", [None, 0.6])
def test_nonneg_is_exact_against_bounded_least_squares(step):
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(7)
    refs = default_references("Ni") + [dataclasses.replace(REFS_NI[1], name="Ni4+ like",
                                                           oxidation_state=4.0,
                                                           params=REFS_NI[1].params.replace(
                                                               e0=REFS_NI[1].params.e0 + 2.0))]
    coeffs = _random_coeffs(rng, (5, 6), lo=-0.3, k=3)
    a = _absorbance(coeffs, noise=0.01, seed=3, refs=refs)
    fit = fit_references(a, E_NI, refs, mode="nonneg_sum_to_one", edge_step=step)
    assert fit.active is not None and (fit.active > 0).sum() > 3     # constraints did bite
    m = _model(refs).matrix
    inf = np.inf
    for y in range(5):
        for x in range(6):
            if step is None:
                c = lsq_linear(m, a[:, y, x], bounds=([0, 0, 0, -inf, -inf], [inf] * 5),
                               method="bvls", tol=1e-14).x
            else:      # brute force over a grid of the simplex c0 + c1 + c2 = step, c >= 0
                c = fit.coefficients[:, y, x].astype(float)
                assert np.all(c[:3] >= 0) and c[:3].sum() == pytest.approx(step, rel=1e-10)
                g = np.linspace(0.0, step, 121)
                c0, c1 = (v.ravel() for v in np.meshgrid(g, g))
                keep = c0 + c1 <= step
                grid = np.stack([c0[keep], c1[keep], step - c0[keep] - c1[keep]])
                bg = m[:, 3:]
                proj = np.eye(E_NI.size) - bg @ np.linalg.pinv(bg)   # background refitted
                r = proj @ (a[:, y, x][:, None] - m[:, :3] @ grid)
                ssr_fit = np.sum((m @ c - a[:, y, x]) ** 2)
                assert ssr_fit <= np.min(np.sum(r * r, axis=0)) + 1e-12
                continue
            np.testing.assert_allclose(fit.coefficients[:, y, x], c, rtol=1e-6, atol=1e-8)
    assert np.all(fit.fractions[np.isfinite(fit.fractions)] >= -1e-12)


def test_nonneg_fixed_step_minimises_over_the_simplex():
    """Brute force: no point of a fine simplex grid has a lower SSR than the fitted one."""
    rng = np.random.default_rng(8)
    coeffs = _random_coeffs(rng, (2, 3), lo=-0.4)
    a = _absorbance(coeffs, noise=0.02, seed=5)
    step = 0.5
    fit = fit_references(a, E_NI, REFS_NI, mode="nonneg_sum_to_one", edge_step=step)
    m = _model().matrix
    grid = np.linspace(0.0, step, 2001)
    for y in range(2):
        for x in range(3):
            ssr_fit = np.sum((m @ fit.coefficients[:, y, x] - a[:, y, x]) ** 2)
            best = np.inf
            for c0 in grid:
                rhs = a[:, y, x] - m[:, 0] * c0 - m[:, 1] * (step - c0)
                bg, ssr, *_ = np.linalg.lstsq(m[:, 2:], rhs, rcond=None)
                best = min(best, ssr[0])
            assert ssr_fit <= best + 1e-12
            assert fit.residual_rms[y, x] == pytest.approx(np.sqrt(ssr_fit / E_NI.size), rel=1e-6)


def test_nonneg_pixel_without_edge_gets_the_equal_mix_not_nan():
    """A pixel whose best non-negative fit holds every reference at 0 is sample without a known mix."""
    coeffs = np.zeros((4, 2, 2))
    coeffs[:2] = -0.3                                       # a negative edge: no feasible mix
    coeffs[2], coeffs[3] = 0.4, 0.1
    coeffs[0, 0, 0], coeffs[1, 0, 0] = 0.5, 0.0             # one pixel of pure Ni2+
    fit = fit_references(_absorbance(coeffs, noise=1e-3), E_NI, REFS_NI, mode="nonneg_sum_to_one")
    none = fit.edge_step == 0
    assert none.sum() == 3 and not none[0, 0]
    lo, hi = (r.oxidation_state for r in REFS_NI)
    np.testing.assert_allclose(fit.oxidation_state[none], (lo + hi) / 2)
    np.testing.assert_allclose(fit.oxidation_state_std[none], (hi - lo) / 2)
    np.testing.assert_allclose(fit.fractions[:, none], 0.5)
    np.testing.assert_allclose(fit.fractions_std[:, none], 0.5)
    assert fit.oxidation_state[0, 0] == pytest.approx(lo, abs=1e-3)


def test_nonneg_std_never_exceeds_the_largest_possible_error():
    """On pixels far noisier than their edge step the first-order std spans several ranges."""
    coeffs = np.zeros((4, 8, 8))
    coeffs[0], coeffs[1], coeffs[2], coeffs[3] = 0.01, 0.01, 0.4, 0.1
    a = _absorbance(coeffs, noise=0.05, seed=11)
    lo, hi = (r.oxidation_state for r in REFS_NI)
    assert np.median(fit_references(a, E_NI, REFS_NI).oxidation_state_std) > hi - lo   # the case
    fit = fit_references(a, E_NI, REFS_NI, mode="nonneg_sum_to_one")
    state, std = fit.oxidation_state, fit.oxidation_state_std
    assert np.isfinite(state).all() and np.isfinite(std).all()
    assert np.all(std <= np.maximum(state - lo, hi - state) + 1e-6)
    assert np.all(fit.fractions_std <= np.maximum(fit.fractions, 1 - fit.fractions) + 1e-6)
    coeffs[0], coeffs[1] = 0.3, 0.1                         # an informative pixel: std untouched
    a = _absorbance(coeffs, noise=0.002, seed=11)
    np.testing.assert_allclose(fit_references(a, E_NI, REFS_NI, mode="nonneg_sum_to_one").oxidation_state_std,
                               fit_references(a, E_NI, REFS_NI).oxidation_state_std, rtol=1e-9)


def test_resolved_share_says_when_single_pixels_cannot_tell_the_references_apart():
    coeffs = np.zeros((4, 8, 8))
    coeffs[0], coeffs[1], coeffs[2], coeffs[3] = 0.01, 0.01, 0.4, 0.1      # a dilute element
    noisy = fit_references(_absorbance(coeffs, noise=0.05, seed=11), E_NI, REFS_NI, mode="nonneg_sum_to_one")
    assert resolved_share(noisy) < 0.5
    assert "cannot tell the references apart" in resolution_summary(noisy)
    coeffs[0], coeffs[1] = 0.3, 0.1
    clear = fit_references(_absorbance(coeffs, noise=0.002, seed=11), E_NI, REFS_NI, mode="nonneg_sum_to_one")
    assert resolved_share(clear) == 1.0
    assert resolution_summary(clear).startswith("100% of the mapped pixels")
    assert "cannot" not in resolution_summary(clear)
    with pytest.warns(UserWarning, match="mask selects none"):
        empty = fit_references(_absorbance(coeffs), E_NI, REFS_NI, mask=np.zeros((8, 8), bool))
    assert np.isnan(resolved_share(empty)) and "no mapped pixel" in resolution_summary(empty)


def test_std_is_calibrated_on_a_simulated_noisy_stack():
    cfg = SimulationConfig(background_amplitude=0.0, dose=1000.0).replace(
        phantom_shape=(64, 64), phantom_pixel_size_nm=150.0)
    stack, truth = simulate_stack(cfg, seed=3)
    refs = default_references("Ni")
    basis, names = absorbance_basis(cfg, stack.energies_eV, refs)
    fit = fit_references(stack, None, basis[:2], names=names[:2],
                         oxidation_states=[r.oxidation_state for r in refs])
    inside = truth.mask & fit.mask
    assert inside.sum() > 1000
    z = (fit.oxidation_state - truth.oxidation_state)[inside] / fit.oxidation_state_std[inside]
    coverage = float(np.mean(np.abs(z) < 2))
    assert 0.90 <= coverage <= 0.98
    zf = (fit.fractions - truth.fractions)[:, inside] / fit.fractions_std[:, inside]
    assert 0.90 <= float(np.mean(np.abs(zf) < 2)) <= 0.98


def test_float32_stack_and_chunking_and_threads_agree(rng):
    coeffs = _random_coeffs(rng, (7, 5), lo=0.1)
    a = _absorbance(coeffs, noise=0.01, seed=9)
    ref = fit_references(a, E_NI, REFS_NI, chunk_rows=7, n_threads=1)
    other = fit_references(a, E_NI, REFS_NI, chunk_rows=2, n_threads=3)
    np.testing.assert_allclose(other.coefficients, ref.coefficients, rtol=1e-12, atol=1e-14)
    again = fit_references(a, E_NI, REFS_NI, chunk_rows=2, n_threads=3)
    np.testing.assert_array_equal(again.coefficients, other.coefficients)   # reproducible
    f32 = fit_references(a.astype(np.float32), E_NI, REFS_NI, chunk_rows=3, n_threads=2)
    assert f32.oxidation_state.dtype == np.float32
    np.testing.assert_allclose(f32.oxidation_state, ref.oxidation_state,
                               atol=0.01 * np.median(ref.oxidation_state_std))


def test_transmission_input_and_bad_pixels_are_counted_not_fitted():
    coeffs = np.array([0.3, 0.2, 0.4, 0.1])[:, None, None] * np.ones((1, 4, 5))
    t = np.exp(-_absorbance(coeffs)).astype(np.float32)
    t[3, 0, 0] = np.nan
    t[5, 1, 1] = np.inf
    t[7, 2, 2] = 0.0
    t[9, 3, 3] = -0.1
    mask = np.ones((4, 5), bool)
    mask[3, 4] = False
    stack = Stack(t, E_NI.copy(), "Ni")
    fit = fit_references(stack, None, REFS_NI, mask=mask)
    assert (fit.n_masked_nonfinite, fit.n_masked_nonpositive, fit.n_outside_mask) == (2, 2, 1)
    bad = [(0, 0), (1, 1), (2, 2), (3, 3), (3, 4)]
    for y, x in bad:
        assert not fit.mask[y, x] and np.isnan(fit.oxidation_state[y, x])
        assert np.isnan(fit.fractions[:, y, x]).all() and np.isnan(fit.residual_rms[y, x])
    good = fit.mask
    assert good.sum() == 20 - len(bad)
    np.testing.assert_allclose(fit.oxidation_state[good], 2.4, atol=1e-4)
    # the same with an absorbance array: non-finite values are caught, nothing is fitted there
    a = _absorbance(coeffs)
    a[10, 2, 3] = np.nan
    fit_a = fit_references(a, E_NI, REFS_NI)
    assert fit_a.n_masked_nonfinite == 1 and not fit_a.mask[2, 3]


def test_energy_window_and_shift_are_recorded():
    coeffs = np.array([0.3, 0.2, 0.4, 0.1])[:, None, None] * np.ones((1, 2, 2))
    a = _absorbance(coeffs, shift=1.0)
    fit = fit_references(a, E_NI, REFS_NI, energy_window_eV=(8300.0, 8420.0), shift_eV=1.0)
    assert fit.energy_window_eV == (8300.0, 8420.0) and fit.shift_eV == 1.0
    assert fit.energies_eV[0] >= 8300.0 and fit.energies_eV[-1] <= 8420.0
    np.testing.assert_allclose(fit.oxidation_state, 2.4, atol=1e-9)
    assert fit_references(a, E_NI, REFS_NI).energy_window_eV == (E_NI[0], E_NI[-1])


def test_energy_shift_is_recovered():
    coeffs = np.array([0.6, 0.3, 0.5, 0.2])
    a = _model(shift=1.5).predict(coeffs) + np.random.default_rng(1).normal(0, 0.003, E_NI.size)
    res = fit_energy_shift(E_NI, a, REFS_NI)
    assert res.success
    assert abs(res.shift_eV - 1.5) < 0.2
    assert 0 < res.shift_stderr_eV < 0.2
    assert abs(res.oxidation_state - (2 + 1 / 3)) < 3 * res.oxidation_state_stderr + 0.01
    # without the shift the per-pixel fit is biased; with it, it is not
    pix = a[:, None, None]
    plain = fit_references(pix, E_NI, REFS_NI)
    shifted = fit_references(pix, E_NI, REFS_NI, shift_eV=res.shift_eV)
    assert abs(shifted.oxidation_state[0, 0] - 7 / 3) < abs(plain.oxidation_state[0, 0] - 7 / 3)


# ------------------------------------------------------------------ normalisation, edges, mask

def _edge_spectra(e, e0=8341.0, width=1.5):
    return 0.5 * (1 + np.tanh((e - e0) / width))


def test_normalize_spectra_recovers_edge_step_and_lines(rng):
    e = E_NI
    step = rng.uniform(0.1, 2.0, (3, 4))
    pre_a, pre_b = rng.uniform(0.5, 1.0, (3, 4)), rng.uniform(-1e-3, 0, (3, 4))
    a = (pre_a + pre_b * (e[:, None, None] - 8341.0)
         + step * _edge_spectra(e)[:, None, None])
    n = normalize_spectra(e, a, e0_eV=8341.0, relative_pre_window_eV=(-110, -20),
                          relative_post_window_eV=(30, 140))
    np.testing.assert_allclose(n.edge_step, step, rtol=1e-6)
    np.testing.assert_allclose(n.pre_line[1], pre_b, atol=1e-9)
    np.testing.assert_allclose(n.normalized, np.broadcast_to(_edge_spectra(e)[:, None, None],
                                                             a.shape), atol=1e-6)
    auto = normalize_spectra(e, a)
    assert abs(auto.e0_eV - 8341.0) < 0.3
    assert auto.relative_pre_window_eV == (pytest.approx(e[0] - auto.e0_eV), -20.0)
    assert auto.relative_post_window_eV == (30.0, pytest.approx(e[-1] - auto.e0_eV))
    assert "derivative" in auto.e0_method
    neg = normalize_spectra(e, -a, e0_eV=8341.0)
    assert np.isnan(neg.normalized).all()                 # no edge: nothing to normalise


def test_edge_and_white_line_energies():
    e = E_NI
    spectra = np.stack([_edge_spectra(e, e0) for e0 in (8340.3, 8342.7)], axis=1)
    half = edge_energy(e, spectra)
    deriv = edge_energy(e, spectra, method="derivative")
    np.testing.assert_allclose(half, [8340.3, 8342.7], atol=0.05)
    np.testing.assert_allclose(deriv, [8340.3, 8342.7], atol=0.1)
    peaks = np.exp(-((e[:, None] - np.array([8345.4, 8350.8])) / 3.0) ** 2)
    np.testing.assert_allclose(white_line_energy(e, peaks), [8345.4, 8350.8], atol=0.1)
    ref = REFS_NI[0]
    assert edge_energy(e, ref.spectrum(e)) == pytest.approx(ref.edge_energy(), abs=0.1)
    assert np.isnan(edge_energy(e, np.zeros(e.size)))
    assert np.isnan(white_line_energy(e, np.full(e.size, np.nan)))
    wl = white_line_energy(e, ref.spectrum(e), energy_window_eV=(8335.0, 8370.0))
    assert 8340.0 < wl < 8360.0


def test_sample_mask_otsu_and_override(rng):
    step = np.where(rng.uniform(size=(40, 40)) < 0.4, rng.normal(0.5, 0.1, (40, 40)),
                    rng.normal(0.0, 0.02, (40, 40)))
    truth = step > 0.25
    m, t = sample_mask(step)
    assert 0.05 < t < 0.4 and np.mean(m == truth) > 0.99
    m2, t2 = sample_mask(step, threshold=0.6)
    assert t2 == 0.6 and m2.sum() < m.sum()
    step[0, 0] = np.nan
    assert not sample_mask(step).mask[0, 0]


# ------------------------------------------------------------------ bad input

def _small():
    return _absorbance(np.array([0.3, 0.2, 0.4, 0.1])[:, None, None] * np.ones((1, 2, 3)))


@pytest.mark.parametrize("call, match", [
    (lambda a: fit_references(a, E_NI[::-1], REFS_NI), "increase strictly"),
    (lambda a: fit_references(a, E_NI, REFS_NI, energy_window_eV=(8330.0, 8332.5)),
     r"8330.00-8332.50 eV holds 3 energies, fewer than the 4 fitted parameters"),
    (lambda a: fit_references(a[:, 0], E_NI, REFS_NI), "must be 3-D"),
    (lambda a: fit_references(a[:-1], E_NI, REFS_NI), "images but there are 67 energies"),
    (lambda a: fit_references(a, E_NI, REFS_NI, mode="nonneg"), "mode must be one of"),
    (lambda a: fit_references(a, E_NI, REFS_NI, mask=np.ones((3, 2), bool)), "mask must be"),
    (lambda a: fit_references(a, E_NI, REFS_NI, edge_step=1.0), "constrained modes only"),
    (lambda a: fit_references(a, E_NI, REFS_NI, mode="sum_to_one", edge_step=-1.0), "> 0"),
    (lambda a: fit_references(a, E_NI, np.ones((2, 5))), r"shape \(K, E\)"),
    (lambda a: fit_references(a, E_NI, np.stack([r.spectrum(E_NI) for r in REFS_NI])),
     "oxidation_states"),
    (lambda a: fit_references(a, E_NI, [REFS_NI[0], REFS_NI[0]]), "rank deficient"),
    (lambda a: fit_references(a, E_NI, REFS_NI, energy_window_eV=(8.3, 8.4)), "keV"),
    (lambda a: fit_references(a.astype(int), E_NI, REFS_NI), "float dtype"),
    (lambda a: fit_references(a, None, REFS_NI), "energies_eV is None"),
    (lambda a: fit_energy_shift(E_NI, a[:, 0, 0], np.ones((2, E_NI.size))), "reference objects"),
    (lambda a: fit_energy_shift(E_NI, a[:-1, 0, 0], REFS_NI), "one \\(E,\\) spectrum"),
    (lambda a: normalize_spectra(E_NI, a, relative_pre_window_eV=(-5, -4)),
     r"relative_pre_window_eV=\(-5, -4\) eV relative to e0=.* holds 1 energy point"),
    (lambda a: normalize_spectra(E_NI, a, relative_post_window_eV=(8400, 8480)), "relative to e0"),
    (lambda a: normalize_spectra(E_NI, a[1:]), "energy axis must come first"),
    (lambda a: edge_energy(E_NI, a, method="peak"), "half_step"),
    (lambda a: white_line_energy(E_NI, a, energy_window_eV=(9000.0, 9100.0)), "holds none"),
    (lambda a: sample_mask(np.ones((3, 3))), "threshold= explicitly"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call(_small())


def test_reference_not_covering_the_window_names_it():
    ref = REFS_NI[0]
    e_tab = np.arange(8300.0, 8450.0, 0.5)
    tab = TabulatedReference("NiO-short", "Ni", "K", 2.0, e_tab, ref.spectrum(e_tab))
    with pytest.raises(ValueError, match=r"does not cover the fit energy window 8233.00-8479.00 eV"):
        fit_references(_small(), E_NI, [tab, REFS_NI[1]])
    fit = fit_references(_small(), E_NI, [tab, REFS_NI[1]], energy_window_eV=(8300.0, 8440.0))
    assert fit.mask.all()
    with pytest.raises(ValueError, match="does not cover"):
        fit_energy_shift(E_NI, _small()[:, 0, 0], [tab, REFS_NI[1]],
                         energy_window_eV=(8302.0, 8440.0))
