"""The foreign test family: physics, statistics, contract, independence from the in-family simulator."""

import math

import numpy as np
import pytest
import xraydb

from xanes_lib import io
from xanes_lib.simulation import (
    FOREIGN_FAMILIES,
    FOREIGN_KINDS,
    ForeignConfig,
    SimulationConfig,
    default_energy_grid,
    foreign_edge_attenuation,
    foreign_energy_grid,
    simulate_foreign_family,
    simulate_foreign_stack,
)
from xanes_lib.spectra import default_references, load_measured_reference

SMALL = (48, 48)


def _absorbance(truth):
    return -np.log(truth.transmission.astype(np.float64))


def _sample(truth):
    """Sample pixels outside the foreign phase."""
    return truth.mask if truth.foreign_mask is None else truth.mask & ~truth.foreign_mask


def _half_step(energies, spectrum, e0):
    """Edge energy (half step) of an absorbance spectrum: pre-edge line removed, post-edge level 1."""
    pre = energies < e0 - 20
    line = np.polyval(np.polyfit(energies[pre], spectrum[pre], 1), energies)
    norm = spectrum - line
    norm /= norm[energies > e0 + 60].mean()
    i = int(np.argmax(norm >= 0.5))
    return energies[i - 1] + (0.5 - norm[i - 1]) / (norm[i] - norm[i - 1]) * (energies[i] - energies[i - 1])


def test_noiseless_transmission_is_beer_lambert_of_the_tabulated_attenuation():
    refs = default_references("Ni")
    stack, truth = simulate_foreign_stack("mixed", seed=11, shape=SMALL, references=refs)
    e, p = stack.energies_eV, truth.params
    assert p["perturb_references"] is False  # given references are used as they are
    w = p["mass_fractions"]
    m_el = truth.areal_density.astype(np.float64) * 1e-6  # g/cm^2 of Ni
    mass = m_el / w["Ni"]
    below, jump = foreign_edge_attenuation("Ni", e)
    matrix = sum(f * xraydb.mu_elam(el, e) for el, f in w.items() if el != "Ni")
    mix = np.tensordot(np.stack([r.spectrum(e) for r in refs]), truth.fractions.astype(np.float64),
                       axes=(0, 0))
    expected = (below[:, None, None] + jump[:, None, None] * mix) * m_el + matrix[:, None, None] * mass
    np.testing.assert_allclose(_absorbance(truth), expected, rtol=1e-4, atol=1e-6)
    assert np.all(truth.transmission[:, mass == 0] == 1.0)


def test_edge_attenuation_follows_the_tables():
    e0 = xraydb.xray_edge("Ni", "K").energy
    e = np.array([e0 - 150.0, e0 - 60.0, e0 - 10.0])
    below, jump = foreign_edge_attenuation("Ni", e)
    np.testing.assert_allclose(below, xraydb.mu_elam("Ni", e), rtol=0.01)
    np.testing.assert_allclose(jump / below, xraydb.xray_edge("Ni", "K").jump_ratio - 1.0)


def test_mean_of_measured_transmission_is_transmission_times_background():
    stack, truth = simulate_foreign_stack("mixed", seed=3, shape=SMALL, dose=20000.0, background=0.02)
    expected = truth.transmission.astype(np.float64) * truth.background
    ratio = stack.transmission / expected
    # Relative sd per pixel ~ sqrt(1/(dose B T) + 1/(frames dose)); 5 sigma of the pooled mean.
    sd = np.sqrt(1.0 / (20000.0 * expected) + 1.0 / (4 * 20000.0)).mean() / math.sqrt(ratio.size)
    assert abs(ratio.mean() - 1.0) < 5 * sd + 1e-4
    assert truth.background.std() == pytest.approx(0.02, rel=0.05)  # RMS of B - 1 as asked


def test_counts_are_poisson_in_flat_and_sample():
    dose, frames = 2000.0, 4
    stack, truth = simulate_foreign_stack("mixed", seed=5, shape=SMALL, dose=dose, flat_frames=frames,
                                          save_flat=True, background=0.01)
    flat = stack.flat.astype(np.float64)
    n = flat[1:].size
    tol = 5 * math.sqrt(2.0 / n) + 0.005  # 5 standard errors of a variance estimate from n values
    # The flat's expectation is the same at every energy: differences of neighbours have
    # variance 2 * mean / frames for Poisson counts averaged over `frames` frames.
    d = np.diff(flat, axis=0)
    assert np.mean(d ** 2) / (2 * flat.mean() / frames) == pytest.approx(1.0, abs=tol)
    # Sample counts S = img * flat have mean flat * B * T and variance equal to their mean.
    counts = stack.transmission.astype(np.float64) * flat
    bt = truth.transmission.astype(np.float64) * truth.background
    z = (counts - flat * bt) / np.sqrt(flat * bt * (1 + bt / frames))
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert z.var() == pytest.approx(1.0, abs=tol)


def test_oxidation_state_nan_outside_sample_and_in_the_foreign_phase():
    stack, truth = simulate_foreign_stack("foreign_phase", seed=2, shape=(64, 64), dose=300.0)
    fm = truth.foreign_mask
    assert fm is not None and fm.dtype == bool and fm.sum() > 20 and not np.any(fm & ~truth.mask)
    assert np.all(np.isnan(truth.oxidation_state[~truth.mask]))
    assert np.all(np.isnan(truth.oxidation_state[fm]))
    assert np.all(np.isfinite(truth.oxidation_state[_sample(truth)]))
    assert np.all(truth.fractions[:, fm] == 0)
    p = truth.params
    assert p["foreign_phase"] is True and len(p["foreign_labels"]) == 1
    assert 2.0 <= p["foreign_spectrum"]["shift_eV"] - p["reference_spectra"][0]["shift_eV"] <= 4.0
    assert p["foreign_spectrum"]["oxidation_state"] is None


def test_foreign_phase_spectrum_is_no_mix_of_the_references():
    refs = default_references("Ni")
    stack, truth = simulate_foreign_stack("foreign_phase", seed=4, shape=(64, 64), references=refs)
    e, a = stack.energies_eV, _absorbance(truth)
    basis = np.stack([r.spectrum(e) for r in refs] + [np.ones_like(e), e - e.mean()]).T
    resid = {}
    for name, sel in (("foreign", truth.foreign_mask), ("references", _sample(truth))):
        spec = a[:, sel].mean(axis=1)
        coef = np.linalg.lstsq(basis, spec, rcond=None)[0]
        resid[name] = np.sqrt(np.mean((basis @ coef - spec) ** 2)) / np.ptp(spec)
    assert resid["foreign"] > 5 * resid["references"]
    assert resid["foreign"] > 0.01


def test_fractions_sum_to_one_in_the_sample():
    for kind in FOREIGN_KINDS:
        _, truth = simulate_foreign_stack(kind, seed=6, shape=SMALL)
        f, inside = truth.fractions, _sample(truth)
        np.testing.assert_allclose(f[:, inside].sum(axis=0), 1.0, atol=1e-5)
        assert f.min() >= 0 and f.max() <= 1 + 1e-6
        states = truth.params["reference_oxidation_states"]
        ox = truth.oxidation_state[inside]
        assert ox.min() >= states[0] - 1e-5 and ox.max() <= states[-1] + 1e-5


@pytest.mark.parametrize("element", ["Ni", "Co"])
def test_edge_energy_in_the_physical_range(element):
    stack, truth = simulate_foreign_stack("mixed", element=element, seed=8, shape=SMALL)
    e0 = xraydb.xray_edge(element, "K").energy  # 8333 eV (Ni), 7709 eV (Co)
    edge = _half_step(stack.energies_eV, _absorbance(truth)[:, truth.mask].mean(axis=1), e0)
    assert e0 - 2 < edge < e0 + 16
    assert stack.element == element and io.infer_element(stack.energies_eV) == element


def test_same_seed_same_stack_other_seed_other_stack():
    a = simulate_foreign_stack("sharp", seed=9, shape=SMALL)
    b = simulate_foreign_stack("sharp", seed=9, shape=SMALL)
    c = simulate_foreign_stack("sharp", seed=10, shape=SMALL)
    np.testing.assert_array_equal(a[0].transmission, b[0].transmission)
    np.testing.assert_array_equal(a[1].oxidation_state, b[1].oxidation_state)
    assert a[1].params == b[1].params and a[0].attrs["seed"] == 9
    assert not np.array_equal(a[0].transmission, c[0].transmission)


def test_differs_from_the_in_family_simulator():
    in_family = SimulationConfig()
    grid = default_energy_grid("Ni")
    sizes = []
    for seed in range(4):
        stack, truth = simulate_foreign_stack("mixed", seed=seed, shape=(32, 32))
        e = stack.energies_eV
        assert 40 <= e.size <= 120
        assert e.size != grid.size or not np.allclose(e, grid)
        assert float(np.diff(e)[0]) == pytest.approx(6.0) and 0.75 <= truth.params["fine_step_eV"] <= 1.0
        assert not np.isin(np.round(e, 3), np.round(grid, 3)).all()
        sizes.append(stack.pixel_size_nm)
    assert all(30.0 <= s <= 150.0 for s in sizes) and len(set(sizes)) == 4
    assert in_family.phantom.pixel_size_nm not in sizes
    assert truth.params["generator"] == "xanes_lib.simulation.foreign"


def test_co_edge_jump_much_smaller_than_ni():
    jumps = {}
    for element in ("Ni", "Co"):
        stack, truth = simulate_foreign_stack("mixed", element=element, seed=12, shape=SMALL)
        e0 = xraydb.xray_edge(element, "K").energy
        e, a = stack.energies_eV, _absorbance(truth)[:, truth.mask]
        jumps[element] = np.median(a[np.argmin(abs(e - e0 - 60))] - a[np.argmin(abs(e - e0 + 20))])
        assert truth.params["composition"] == "NMC811"
    assert 0 < jumps["Co"] < 0.2 * jumps["Ni"]  # ~6 wt% Co against ~48 wt% Ni, same geometry


def test_sharp_kind_has_sharp_chemical_boundaries():
    def jumps(kind):
        _, truth = simulate_foreign_stack(kind, seed=13, shape=(64, 64))
        ox = truth.oxidation_state
        d = np.abs(np.diff(ox, axis=1))
        return np.nanmean(d > 0.4)
    assert jumps("sharp") > 3 * jumps("gradient")


def test_written_file_reads_back(tmp_path):
    stack, truth = simulate_foreign_stack("foreign_phase", seed=14, shape=SMALL, save_flat=True)
    path = tmp_path / "foreign.h5"
    io.write_stack(path, stack, ground_truth=truth)
    back, gt = io.read_stack(path), io.read_ground_truth(path)
    np.testing.assert_array_equal(back.transmission, stack.transmission)
    np.testing.assert_allclose(back.energies_eV, stack.energies_eV, rtol=1e-10)
    assert back.element == "Ni" and back.pixel_size_nm == pytest.approx(stack.pixel_size_nm)
    np.testing.assert_array_equal(gt.foreign_mask, truth.foreign_mask)
    np.testing.assert_array_equal(gt.oxidation_state, truth.oxidation_state)
    assert gt.references == truth.references and gt.params["seed"] == 14
    assert gt.params["reference_spectra"] == truth.params["reference_spectra"]


def test_shipped_references_are_perturbed_and_recorded():
    _, truth = simulate_foreign_stack("mixed", seed=15, shape=(32, 32))
    p = truth.params
    assert p["perturb_references"] is True and truth.references == ["Ni2+", "Ni3+"]
    for d in p["reference_spectra"]:
        assert abs(d["shift_eV"]) <= 0.5 and 0.9 <= d["fine_structure_factor"] <= 1.1
        assert d["shift_eV"] != 0.0


def test_families_are_complete_and_seeded():
    expected = {"Ni_5000_bg1": ("Ni", 5000), "Ni_300_bg2": ("Ni", 300), "Ni_300_foreign_phase": ("Ni", 300),
                "Ni_300_sharp": ("Ni", 300), "Ni_1000_bg2": ("Ni", 1000), "Co_1000": ("Co", 1000)}
    assert set(FOREIGN_FAMILIES) == set(expected)
    assert len({f["seed"] for f in FOREIGN_FAMILIES.values()}) == len(FOREIGN_FAMILIES)
    for name, (element, dose) in expected.items():
        stack, truth = simulate_foreign_family(name, shape=(32, 32))
        assert stack.element == element and truth.params["dose"] == dose
        assert truth.params["seed"] == FOREIGN_FAMILIES[name]["seed"] == stack.attrs["seed"]
        assert truth.params["foreign_family"] == name
        assert (truth.foreign_mask is not None) == (name == "Ni_300_foreign_phase")
    assert FOREIGN_FAMILIES["Ni_300_bg2"]["background"] == 0.02


def test_builds_a_stack_with_measured_references(shared_ni_dir):
    refs = [load_measured_reference(shared_ni_dir / "ref_NiO.txt", element="Ni", oxidation_state=2),
            load_measured_reference(shared_ni_dir / "ref_LiNiO2.txt", element="Ni", oxidation_state=3)]
    stack, truth = simulate_foreign_stack("foreign_phase", seed=16, shape=SMALL, references=refs)
    assert truth.references == ["ref_NiO", "ref_LiNiO2"] and truth.params["perturb_references"] is False
    assert np.isfinite(stack.transmission).all() and truth.foreign_mask.any()
    e0 = xraydb.xray_edge("Ni", "K").energy
    edge = _half_step(stack.energies_eV, _absorbance(truth)[:, _sample(truth)].mean(axis=1), e0)
    assert e0 < edge < e0 + 16
    _, perturbed = simulate_foreign_stack("mixed", seed=16, shape=(32, 32), references=refs,
                                          perturb_references=True)
    assert perturbed.params["reference_spectra"][0]["type"] == "TabulatedReference"
    unknown_state = load_measured_reference(shared_ni_dir / "ref_NiO.txt", element="Ni")
    with pytest.raises(ValueError, match="has no oxidation state"):
        simulate_foreign_stack("mixed", shape=(32, 32), references=[unknown_state, refs[1]])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "spheres"}, r"unknown kind 'spheres'.*mixed"),
    ({"dose": 0.0}, r"dose must be a finite number in \(0, 1e\+09\]; got 0.0"),
    ({"dose": -5.0}, r"dose .* got -5.0"),
    ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63\); got -1"),
    ({"seed": 1.5}, r"seed .* got 1.5"),
    ({"shape": (8, 8)}, r"shape must be a pair of integers .* \[16, 4096\]"),
    ({"background": 0.5}, r"background must be a finite number in \[0, 0.1\]; got 0.5"),
    ({"element": "Fe"}, r"element must be an edge metal of NMC811.*got 'Fe'"),
    ({"composition": "NMC999"}, r"composition must be one of"),
    ({"flat_frames": 0}, r"flat_frames must be an integer in \[1, 100\]"),
    ({"pixel_size_nm": -3.0}, r"pixel_size_nm must be a finite number in \[5, 1000\]"),
    ({"blur": 1.0}, r"unknown setting\(s\) \['blur'\]"),
])
def test_bad_inputs_are_refused(kwargs, match):
    args = {"kind": "mixed", "shape": (32, 32), **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate_foreign_stack(args.pop("kind"), **args)


def test_bad_references_and_families_are_refused():
    ni2, ni3 = default_references("Ni")
    with pytest.raises(ValueError, match="at least 2 spectra"):
        simulate_foreign_stack("mixed", shape=(32, 32), references=[ni2])
    with pytest.raises(ValueError, match="distinct oxidation states"):
        simulate_foreign_stack("mixed", shape=(32, 32), references=[ni2, ni2])
    with pytest.raises(ValueError, match="is a Co spectrum"):
        simulate_foreign_stack("mixed", shape=(32, 32), references=default_references("Co"))
    with pytest.raises(ValueError, match="unknown foreign family 'Ni_1'"):
        simulate_foreign_family("Ni_1")
    with pytest.raises(ValueError, match="fine_step_eV must be a number in"):
        foreign_energy_grid("Ni", fine_step_eV=5.0)
    with pytest.raises(ValueError, match="ForeignConfig.kind must be one of"):
        ForeignConfig(kind="x")
