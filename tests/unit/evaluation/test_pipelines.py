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
