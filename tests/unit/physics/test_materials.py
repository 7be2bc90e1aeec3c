"""Tabulated cross-sections and compositions."""

import numpy as np
import pytest

from xanes_lib.physics import edge_branches, mass_fractions, matrix_mass_attenuation, tabulated_edge_energy


def test_mass_fractions_sum_to_one_and_ni_share():
    for comp in ("NMC111", "NMC622", "NMC811"):
        assert sum(mass_fractions(comp).values()) == pytest.approx(1.0)
    assert mass_fractions("NMC811")["Ni"] == pytest.approx(0.483, abs=0.002)
    assert mass_fractions("NMC811")["Ni"] > mass_fractions("NMC622")["Ni"] > mass_fractions("NMC111")["Ni"]


@pytest.mark.parametrize("element, lo, hi", [("Ni", 8320, 8345), ("Co", 7700, 7720), ("Mn", 6530, 6550)])
def test_edge_energies_in_physical_range(element, lo, hi):
    assert lo < tabulated_edge_energy(element) < hi


def test_branches_reproduce_tabulated_edge_step():
    import xraydb
    br = edge_branches("Ni")
    # Away from the edge the smooth branches follow the tables to ~1 %.
    for e in (8200.0, 8300.0):
        assert br.mu_below(e) == pytest.approx(xraydb.mu_elam("Ni", e), rel=0.01)
    for e in (8400.0, 8600.0):
        assert br.mu_above(e) == pytest.approx(xraydb.mu_elam("Ni", e), rel=0.01)
    ratio = br.mu_above(8334.0) / br.mu_below(8332.0)
    assert ratio == pytest.approx(xraydb.xray_edge("Ni", "K").jump_ratio, rel=0.05)
    e = np.array([8300.0, 8400.0])
    np.testing.assert_allclose(br.mu(e, [0.0, 1.0]), [br.mu_below(8300.0), br.mu_above(8400.0)])


def test_matrix_excludes_edge_element_and_is_smooth():
    e = np.linspace(8250, 8500, 60)
    mu = matrix_mass_attenuation("NMC811", "Ni", e)
    assert np.all(np.diff(mu) < 0), "no edge of another element lies in the Ni K window"
    w = mass_fractions("NMC811")
    assert mu[0] < w["Mn"] * 400 + w["Co"] * 400 + w["O"] * 20 + w["Li"] * 5


def test_unknown_composition_raises():
    with pytest.raises(ValueError, match="unknown composition 'NMC999'"):
        mass_fractions("NMC999")
