"""What the unseen-phase AUCs are read against: the noise-free ceiling and notebook 04's test."""

import dataclasses

import numpy as np
import pytest

from xanes_lib import evaluation, mapping, simulation
from xanes_lib.spectra import default_references


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


def test_a_given_shift_is_applied_as_is():
    st, gt = simulation.simulate_foreign_family("Ni_1000_foreign_phase", shape=(48, 48))
    refs = default_references("Ni")
    a = -np.log(st.transmission.astype(np.float64))
    given = evaluation.oxidation_state_fit(st.transmission, st.energies_eV, "Ni", mask=gt.mask, fit_shift=0.4)
    direct = mapping.fit_references(a, st.energies_eV, refs, mask=gt.mask, shift_eV=0.4,
                                    mode="nonneg_sum_to_one")
    assert np.allclose(given.oxidation_state, direct.oxidation_state, equal_nan=True)
    none = evaluation.oxidation_state_fit(st.transmission, st.energies_eV, "Ni", mask=gt.mask)
    assert not np.allclose(none.oxidation_state[gt.mask], given.oxidation_state[gt.mask])
    assert -5.0 <= evaluation.notebook_shift_eV(st) <= 5.0
