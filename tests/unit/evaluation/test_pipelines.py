"""Scoring of pipelines on simulated stacks: self-tuned baseline, network scores, unseen-phase AUC."""

import dataclasses

import numpy as np
import pytest

from xanes_lib import denoising, evaluation, simulation


@pytest.fixture(scope="module")
def foreign_phase_stack():
    """A small foreign-family Ni stack with one particle of a phase outside the references."""
    return simulation.simulate_foreign_stack("foreign_phase", element="Ni", dose=1000.0, seed=3,
                                             shape=(96, 96), background=0.0)


def test_self_tuned_baseline_reports_its_choice_and_beats_the_raw_fit(foreign_phase_stack):
    st, gt = foreign_phase_stack
    raw = evaluation.score_pipeline(evaluation.oxidation_state_fit(st.transmission, st.energies_eV, "Ni",
                                                                   mask=gt.mask), gt)
    tuned = evaluation.run_self_tuned(st, gt)
    assert tuned["params"]["chosen"].startswith(("gaussian", "no smoothing"))
    assert tuned["rmse"] < raw["rmse"]


def test_unexplained_auc_finds_the_foreign_phase_in_the_raw_residual():
    st, gt = simulation.simulate_foreign_stack("foreign_phase", element="Ni", dose=20000.0, seed=3,
                                               shape=(96, 96), background=0.0, perturb_references=False)
    res = evaluation.oxidation_state_fit(st.transmission, st.energies_eV, "Ni", mask=gt.mask)
    # the RMS residual over all energies also carries each pixel's noise: well above chance 0.5
    assert evaluation.unexplained_auc(res, gt) > 0.75
    no_foreign = dataclasses.replace(gt, foreign_mask=None)
    assert np.isnan(evaluation.unexplained_auc(res, no_foreign))


def test_network_score_uses_the_denoisers_own_uncertainty(foreign_phase_stack):
    st, gt = foreign_phase_stack
    den = denoising.load_checkpoint(denoising.shipped_checkpoint("latent"))
    res = den.denoise(st.transmission, st.energies_eV, element="Ni", progress=False)
    assert res.strength is not None and res.strength.chosen in res.strength.candidates
    fit_std = np.full(res.strength.state_rmse.shape, 7.0)
    std = res.oxidation_state_std(fit_std)
    finite = np.isfinite(res.strength.state_rmse)
    np.testing.assert_array_equal(std[finite], res.strength.state_rmse[finite])
    assert np.all(std[~finite] == 7.0)
    scores = evaluation.run_network(den, st, gt)
    assert scores["params"]["chosen"] == res.strength.chosen
    assert 0.5 < scores["coverage_2sigma"] <= 1.0
    # the phase outside the references stays in the residual of the denoised stack
    gauss = evaluation.classical_denoise(st.transmission, "gaussian", sigma=2.0)
    fit = evaluation.oxidation_state_fit(gauss, st.energies_eV, "Ni", mask=gt.mask)
    assert scores["unexplained_auc"] >= evaluation.unexplained_auc(fit, gt)


def test_truth_moved_into_an_image_frame_stays_within_the_states():
    """Moving the truth by a sub-pixel drift mixes neighbouring pixels: the state stays within
    the range of the states (the spline's ringing beside a sharp density step would not)."""
    from types import SimpleNamespace

    from xanes_lib.evaluation import truth_in_frame

    rho = np.zeros((32, 32))
    rho[8:24, 8:24] = 100.0
    rho[8:24, 16:24] = 1.0                            # a thin part beside a thick one
    state = np.where(rho > 0, 2.0, np.nan)
    state[8:24, 16:24] = 3.0
    truth = SimpleNamespace(areal_density=rho, oxidation_state=state, mask=rho > 0, foreign_mask=None,
                            drift_px=np.array([[0.0, 0.0], [0.4, 0.45]]), drift_origin_px=None)
    moved, mask, _ = truth_in_frame(truth, 1)
    inside = np.isfinite(moved)
    assert inside.sum() > 200 and mask.sum() == (rho > 0).sum()
    assert moved[inside].min() >= 2.0 and moved[inside].max() <= 3.0
    same, _, _ = truth_in_frame(truth, 0)             # no drift in image 0: the maps as they are
    np.testing.assert_array_equal(np.isnan(same), np.isnan(state))


def test_a_drifting_stack_is_scored_aligned_as_notebook_04_maps_it():
    """The held-out stacks drift: scored aligned, with the truth in the reference image's frame;
    a still stack is returned as it is."""
    base = simulation.SimulationConfig(element="Ni", dose=5000.0, background_amplitude=0.0).replace(
        phantom_shape=(64, 64), phantom_pixel_size_nm=250.0)
    st, gt = simulation.simulate_stack(base.replace(drift_px=1.0), seed=4)
    before = st.transmission.copy()
    al, gt_al, info = evaluation.aligned_like_notebook04(st, gt)
    np.testing.assert_array_equal(st.transmission, before)            # inputs not modified
    assert info["drift_detected"] and info["max_shift_px"] > 0.5
    assert gt_al.mask.sum() <= gt.mask.sum() and np.isfinite(gt_al.oxidation_state[gt_al.mask]).all()
    field = info["common_mask"]
    assert field.shape == gt.mask.shape and not field.all() and not (gt_al.mask & ~field).any()

    def rmse(s, g):
        fit = evaluation.oxidation_state_fit(s.transmission, s.energies_eV, "Ni", mask=g.mask)
        return evaluation.score_pipeline(fit, g)["rmse"]

    assert rmse(al, gt_al) < 0.8 * rmse(st, gt)                       # aligned: most drift artefacts gone
    still, gt_still = simulation.simulate_stack(base, seed=4)
    same, same_gt, info = evaluation.aligned_like_notebook04(still, gt_still)
    assert not info["drift_detected"] and same is still and same_gt is gt_still and info["common_mask"].all()
