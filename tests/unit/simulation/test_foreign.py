"""The foreign test family: physics, statistics, contract, independence from the in-family simulator."""

import math

import numpy as np
import pytest
import xraydb
from scipy import ndimage

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
                "Ni_300_sharp": ("Ni", 300), "Ni_1000_bg2": ("Ni", 1000), "Co_1000": ("Co", 1000),
                "Ni_1000_foreign_phase": ("Ni", 1000), "Co_300": ("Co", 300), "Co_5000": ("Co", 5000)}
    assert set(FOREIGN_FAMILIES) == set(expected)
    assert len({f["seed"] for f in FOREIGN_FAMILIES.values()}) == len(FOREIGN_FAMILIES)
    for name, (element, dose) in expected.items():
        stack, truth = simulate_foreign_family(name, shape=(32, 32))
        assert stack.element == element and truth.params["dose"] == dose
        assert truth.params["seed"] == FOREIGN_FAMILIES[name]["seed"] == stack.attrs["seed"]
        assert truth.params["foreign_family"] == name
        assert (truth.foreign_mask is not None) == name.endswith("_foreign_phase")
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


# Few small particles away from the edges: nothing enters or leaves the field as it drifts, so
# a phase correlation of two images of the same content measures their displacement exactly.
ISOLATED = {"shape": (80, 80), "max_particles": 3, "coverage": 0.05, "radius_frac": 0.08, "pore_share": 0.0}


def _arrays(stack, truth):
    return [stack.transmission, stack.energies_eV, truth.transmission, truth.background, truth.fractions,
            truth.oxidation_state, truth.mask, truth.areal_density]


def test_without_drift_and_blur_the_stack_is_unchanged():
    for kind, seed in (("mixed", 0), ("foreign_phase", 2)):
        default = simulate_foreign_stack(kind, seed=seed, shape=(64, 64), save_flat=True)
        explicit = simulate_foreign_stack(kind, seed=seed, shape=(64, 64), save_flat=True, drift_px=0.0,
                                          blur_px=0.0)
        for a, b in zip(_arrays(*default), _arrays(*explicit), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(default[0].flat, explicit[0].flat)
        assert default[1].drift_px is None and default[1].drift_origin_px is None
        assert default[1].params["drift"] is None
        assert default[1].params["drift_px"] == 0.0 and default[1].params["blur_px"] == 0.0


def test_drift_keeps_phantom_references_and_background():
    kw = {"seed": 21, "shape": (64, 64), "blur_px": 1.0}
    s0, still = simulate_foreign_stack("mixed", **kw)
    s1, drifting = simulate_foreign_stack("mixed", drift_px=3.0, **kw)
    np.testing.assert_array_equal(s0.energies_eV, s1.energies_eV)
    for name in ("background", "fractions", "oxidation_state", "mask", "areal_density"):
        np.testing.assert_array_equal(getattr(still, name), getattr(drifting, name))
    assert still.params["reference_spectra"] == drifting.params["reference_spectra"]
    np.testing.assert_array_equal(still.transmission[0], drifting.transmission[0])  # image 0 does not move
    assert not np.array_equal(still.transmission[1:], drifting.transmission[1:])
    np.testing.assert_array_equal(drifting.drift_origin_px, [0.0, 0.0])


@pytest.mark.parametrize("blur", [0.0, 1.5])
def test_recorded_drift_is_the_displacement_of_the_images(blur):
    from skimage.registration import phase_cross_correlation
    kw = {"seed": 13, "blur_px": blur, **ISOLATED}
    _, still = simulate_foreign_stack("mixed", **kw)
    _, drifting = simulate_foreign_stack("mixed", drift_px=5.0, **kw)
    a_still, a_drift = _absorbance(still), _absorbance(drifting)
    edge = np.ones(ISOLATED["shape"], bool)
    edge[8:-8, 8:-8] = False
    assert np.abs(a_still[:, edge]).max() < 0.01  # the premise: no sample near the edges
    drift = drifting.drift_px
    assert drift.shape == (a_still.shape[0], 2) and np.all(drift[0] == 0)
    # skimage returns the shift that moves image e back onto the reference: minus the displacement
    measured = np.stack([-phase_cross_correlation(a, b, upsample_factor=100, normalization=None)[0]
                         for a, b in zip(a_still, a_drift, strict=True)])
    np.testing.assert_allclose(measured, drift, atol=0.05)
    # image 0 against image e of the drifting stack itself, below the edge (same contrast)
    energies = np.asarray(drifting.params["energies_eV"])
    pre = np.flatnonzero(energies < energies[0] + 40)
    for e in pre[1:]:
        shift = -phase_cross_correlation(a_drift[0], a_drift[e], upsample_factor=100, normalization=None)[0]
        np.testing.assert_allclose(shift, drift[e], atol=0.05)
    # and the sign, independently: the centre of mass of each image follows (y + dy, x + dx)
    yy, xx = np.indices(ISOLATED["shape"])

    def centre(a):
        return np.stack([np.sum(a * yy, axis=(1, 2)), np.sum(a * xx, axis=(1, 2))], axis=1) / a.sum(
            axis=(1, 2))[:, None]

    np.testing.assert_allclose(centre(a_drift) - centre(a_still), drift, atol=0.05)


def test_largest_displacement_is_drift_px_and_the_path_is_thermal():
    for seed, size in ((1, 0.7), (2, 5.0), (3, 12.0)):
        _, truth = simulate_foreign_stack("mixed", seed=seed, shape=(64, 64), drift_px=size)
        length = np.linalg.norm(truth.drift_px, axis=1)
        assert length.max() == pytest.approx(size, rel=1e-12)
        steps = np.linalg.norm(np.diff(truth.drift_px, axis=0), axis=1)
        assert np.median(steps) < 0.25 * size  # smooth with jitter, not a jump per image
        assert truth.params["drift"]["max_px"] == size and 0.02 <= truth.params["drift"]["jitter_sd"] <= 0.06


def test_blur_smooths_the_transmission_and_keeps_the_mean_model():
    kw = {"seed": 22, "shape": (64, 64), "dose": 20000.0}
    _, sharp = simulate_foreign_stack("mixed", **kw)
    stack, blurred = simulate_foreign_stack("mixed", blur_px=1.5, **kw)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    expected = ndimage.gaussian_filter(sharp.transmission.astype(np.float64), (0, 1.5, 1.5))
    np.testing.assert_allclose(blurred.transmission[inner], expected[inner], atol=1e-5)
    assert blurred.drift_px is None
    ratio = stack.transmission / (blurred.transmission.astype(np.float64) * blurred.background)
    assert abs(ratio.mean() - 1.0) < 2e-3


def test_drift_is_reproducible_with_the_seed():
    a = simulate_foreign_stack("sharp", seed=9, shape=SMALL, drift_px=4.0, blur_px=1.0)
    b = simulate_foreign_stack("sharp", seed=9, shape=SMALL, drift_px=4.0, blur_px=1.0)
    c = simulate_foreign_stack("sharp", seed=10, shape=SMALL, drift_px=4.0, blur_px=1.0)
    np.testing.assert_array_equal(a[1].drift_px, b[1].drift_px)
    np.testing.assert_array_equal(a[0].transmission, b[0].transmission)
    assert a[1].params == b[1].params
    n = min(len(a[1].drift_px), len(c[1].drift_px))
    assert not np.allclose(a[1].drift_px[:n], c[1].drift_px[:n])


def test_drifting_truth_reads_back(tmp_path):
    stack, truth = simulate_foreign_stack("mixed", seed=23, shape=SMALL, drift_px=2.5, blur_px=1.0)
    path = tmp_path / "drifting.h5"
    io.write_stack(path, stack, ground_truth=truth)
    gt = io.read_ground_truth(path)
    np.testing.assert_array_equal(gt.drift_px, truth.drift_px)
    np.testing.assert_array_equal(gt.drift_origin_px, [0.0, 0.0])
    assert gt.params["drift"]["settling_tau"] == truth.params["drift"]["settling_tau"]


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
    ({"drift_px": -1.0}, r"ForeignConfig.drift_px must be a finite number in \[0, 64\]; got -1.0"),
    ({"drift_px": float("nan")}, r"drift_px must be a finite number in \[0, 64\]; got nan"),
    ({"drift_px": "2"}, r"drift_px must be a finite number .* got '2'"),
    ({"drift_px": 9.0}, r"drift_px must be at most a quarter of the shorter image side \(8 px .*got 9.0"),
    ({"blur_px": -0.5}, r"ForeignConfig.blur_px must be a finite number in \[0, 8\]; got -0.5"),
    ({"blur_px": 20.0}, r"blur_px .* got 20.0"),
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
