"""What the unseen-phase AUCs are read against: the noise-free ceiling and notebook 04's test."""

import dataclasses

import numpy as np
import pytest

from xanes_lib import evaluation, simulation


@pytest.fixture(scope="module")
def foreign_phase_stack():
    """A small foreign-family Ni stack (perturbed references, 1 % beam background) with a clear phase."""
    return simulation.simulate_foreign_stack("foreign_phase", element="Ni", dose=1000.0, seed=3,
                                             shape=(96, 96))


def test_ceiling_separates_a_clear_phase_and_is_nan_without_one(foreign_phase_stack):
    st, gt = foreign_phase_stack
    # the truth's transmission is beam-free: dividing it by the background again would drop this to 0.76
    assert evaluation.unexplained_auc_ceiling(st, gt, fit_shift=True) > 0.98
    assert np.isnan(evaluation.unexplained_auc_ceiling(st, dataclasses.replace(gt, foreign_mask=None)))


def test_ceiling_is_chance_where_the_phase_is_a_mix_of_the_references():
    st, gt = simulation.simulate_foreign_stack("mixed", element="Ni", dose=1000.0, seed=3, shape=(96, 96),
                                               perturb_references=False)
    labelled = gt.mask.copy()
    labelled[:, 48:] = False  # half of the sample called "foreign", though the references explain it
    auc = evaluation.unexplained_auc_ceiling(st, dataclasses.replace(gt, foreign_mask=labelled))
    assert 0.3 < auc < 0.7


def test_flag_scores_are_finite_shares(foreign_phase_stack):
    st, gt = foreign_phase_stack
    scores = evaluation.unexplained_flag_scores(st, gt)
    assert set(scores) == {"flag_auc", "flagged_foreign", "flagged_others", "shift_eV"}
    assert all(np.isfinite(v) for v in scores.values())
    assert 0.5 < scores["flag_auc"] <= 1.0
    assert 0.0 <= scores["flagged_others"] < scores["flagged_foreign"] <= 1.0
