"""A simulated phase outside the references ("foreign phase") and its ground truth."""

import json
import math

import h5py
import numpy as np
import pytest

from xanes_lib import io
from xanes_lib.physics import absorbance, build_model
from xanes_lib.simulation import SimulationConfig, check_config, choose_foreign_particles, simulate_stack
from xanes_lib.spectra import default_references, foreign_reference, jitter_reference, load_reference_library

SMALL = SimulationConfig().replace(phantom_shape=(64, 64), phantom_pixel_size_nm=150.0)
SEED = 3


@pytest.fixture(scope="module")
def plain():
    return simulate_stack(SMALL, seed=SEED)


@pytest.fixture(scope="module")
def foreign():
    return simulate_stack(SMALL.replace(foreign_particles=1), seed=SEED)


# ------------------------------------------------------------------ spectra.foreign_reference

@pytest.mark.parametrize("element", ["Ni", "Co"])
def test_foreign_reference_shifts_edge_and_damps_white_line(element):
    refs = default_references(element)
    base = refs[(len(refs) - 1) // 2]
    f = foreign_reference(refs, edge_shift_eV=3.0, white_line_damping=0.6)
    assert f.name == "foreign" and f.element == element and math.isnan(f.oxidation_state)
    assert f.params.e0 == pytest.approx(base.params.e0 + 3.0)
    assert f.params.wl_amp == pytest.approx(0.4 * base.params.wl_amp)
    # Half-step energy: exactly the shift without damping; a little more with it (white-line flank).
    undamped = foreign_reference(refs, edge_shift_eV=3.0, white_line_damping=0.0)
    assert undamped.edge_energy() - base.edge_energy() == pytest.approx(3.0, abs=0.01)
    assert 3.0 <= f.edge_energy() - base.edge_energy() < 3.5
    assert f.edge_energy() > max(r.edge_energy() for r in refs) + 1.0, "outside the references' range"
    e = np.linspace(base.params.e0 - 50, base.params.e0 + 100, 3001)
    assert f.spectrum(e).max() < base.spectrum(e).max() - 0.2, "lower white-line maximum"
    rec = f.provenance["foreign"]
    assert rec["base"] == base.name and rec["edge_shift_eV"] == 3.0 and rec["white_line_damping"] == 0.6


def test_foreign_reference_negative_shift_and_full_damping():
    refs = default_references("Ni")
    f = foreign_reference(refs, edge_shift_eV=-2.0, white_line_damping=1.0, name="NiX")
    assert f.name == "NiX" and f.params.wl_amp == 0.0
    assert f.params.e0 == pytest.approx(refs[0].params.e0 - 2.0)


def test_foreign_reference_base_is_the_median_state_in_any_order():
    refs = default_references("Ni")
    library = load_reference_library()
    three = [library["Ni4+"], library["Ni2+"], library["Ni3+"]]
    assert foreign_reference(three).provenance["foreign"]["base"] == "Ni3+"
    assert foreign_reference(list(reversed(refs))).provenance["foreign"]["base"] == "Ni2+"


@pytest.mark.parametrize("kwargs, match", [
    (dict(edge_shift_eV=float("nan")), "edge_shift_eV"),
    (dict(edge_shift_eV=float("inf")), "edge_shift_eV"),
    (dict(white_line_damping=-0.1), r"\[0, 1\]"),
    (dict(white_line_damping=1.5), r"\[0, 1\]"),
    (dict(white_line_damping=float("nan")), "white_line_damping"),
    (dict(name=""), "name"),
])
def test_foreign_reference_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        foreign_reference(default_references("Ni"), **kwargs)


def test_foreign_reference_needs_references():
    with pytest.raises(ValueError, match="at least one reference"):
        foreign_reference([])
    with pytest.raises(ValueError, match="mix elements"):
        foreign_reference(default_references("Ni") + default_references("Co"))
    with pytest.raises(TypeError, match="ParametricReference"):
        foreign_reference(["Ni2+"])


def test_jitter_reference_unchanged_by_shared_helper():
    ref = default_references("Ni")[0]
    j = jitter_reference(ref, 5, shift_eV=0.3, amplitude_frac=0.1)
    rec = j.provenance["jitter"]
    assert j.params.e0 == ref.params.e0 + rec["shift_eV"]
    for name, f in rec["amplitude_factors"].items():
        assert getattr(j.params, name) == getattr(ref.params, name) * f
    assert j.name == ref.name and j.oxidation_state == ref.oxidation_state


# ------------------------------------------------------------------ simulate

@pytest.mark.parametrize("changes, match", [
    (dict(foreign_particles=-1), "foreign_particles"),
    (dict(foreign_particles=1.5), "foreign_particles"),
    (dict(foreign_edge_shift_eV=float("nan")), "foreign_edge_shift_eV"),
    (dict(foreign_white_line_damping=1.2), "foreign_white_line_damping"),
])
def test_check_config_rejects_bad_foreign_settings(changes, match):
    with pytest.raises(ValueError, match=match):
        check_config(SMALL.replace(**changes))


def test_no_foreign_particles_changes_nothing(plain):
    stack, truth = simulate_stack(SMALL.replace(foreign_particles=0, foreign_edge_shift_eV=5.0,
                                                foreign_white_line_damping=0.2), seed=SEED)
    for a, b in [(stack.transmission, plain[0].transmission), (truth.transmission, plain[1].transmission),
                 (truth.background, plain[1].background), (truth.fractions, plain[1].fractions),
                 (truth.oxidation_state, plain[1].oxidation_state), (truth.mask, plain[1].mask),
                 (truth.areal_density, plain[1].areal_density)]:
        assert a.tobytes() == b.tobytes()
    assert truth.foreign_mask is None and plain[1].foreign_mask is None
    assert "foreign_labels" not in truth.params and "foreign_spectrum" not in truth.params


def test_foreign_particles_leave_the_main_random_stream_alone(plain, foreign):
    """Same phantom, background and geometry; the absorbance differs only in the foreign region."""
    t0, t1 = plain[1], foreign[1]
    for name in ("background", "mask", "areal_density"):
        assert getattr(t1, name).tobytes() == getattr(t0, name).tobytes(), name
    region = np.isnan(t1.oxidation_state) & (t1.areal_density > 0)
    assert np.array_equal(t1.transmission[:, ~region], t0.transmission[:, ~region])
    assert not np.allclose(t1.transmission[:, region], t0.transmission[:, region])


def test_foreign_ground_truth(foreign):
    stack, truth = foreign
    fm = truth.foreign_mask
    assert fm.dtype == bool and fm.shape == truth.mask.shape
    assert fm.sum() >= 200 and not np.any(fm & ~truth.mask), "non-empty, inside the sample mask"
    # Inside the sample the state is NaN exactly on the foreign pixels, and there only.
    assert np.array_equal(np.isnan(truth.oxidation_state) & truth.mask, fm)
    assert np.all(truth.fractions[:, fm] == 0)
    assert np.allclose(truth.fractions[:, truth.mask & ~fm].sum(axis=0), 1.0, atol=1e-5)
    # Parameters: chosen particle labels and the foreign spectrum's description.
    labels = truth.params["foreign_labels"]
    assert len(labels) == 1 and truth.params["foreign_particles"] == 1
    desc = json.loads(truth.params["foreign_spectrum"])
    assert desc["name"] == "foreign" and desc["oxidation_state"] is None
    assert desc["foreign"]["edge_shift_eV"] == 3.0 and desc["foreign"]["white_line_damping"] == 0.6


def test_foreign_stack_is_reproducible(foreign):
    stack, truth = simulate_stack(SMALL.replace(foreign_particles=1), seed=SEED)
    assert stack.transmission.tobytes() == foreign[0].transmission.tobytes()
    assert np.array_equal(truth.foreign_mask, foreign[1].foreign_mask)


def test_foreign_region_is_not_fitted_by_the_references(foreign):
    """Per-pixel least squares on references + (E/E0)^-3 + constant: residual clearly larger."""
    stack, truth = foreign
    e = stack.energies_eV
    refs = default_references(SMALL.element)
    model = build_model(e, np.stack([r.spectrum(e) for r in refs]), names=[r.name for r in refs])
    a = absorbance(truth.transmission.astype(np.float64))
    rms = np.sqrt(np.mean((model.predict(model.fit(a)) - a) ** 2, axis=0))
    fm, other = truth.foreign_mask, truth.mask & ~truth.foreign_mask
    lo, hi = np.percentile(truth.areal_density[fm], [25, 75])
    similar = (truth.areal_density >= lo) & (truth.areal_density <= hi)  # similar thickness
    assert (fm & similar).sum() > 20 and (other & similar).sum() > 20
    inside, outside = np.median(rms[fm & similar]), np.median(rms[other & similar])
    assert inside > 5 * outside, (inside, outside)


def test_choose_foreign_particles_prefers_large_particles():
    labels = np.full((40, 40), -1)
    labels[:20, :20] = 0          # 400 px
    labels[20:, :15] = 1          # 300 px
    labels[:5, 30:] = 2           # 50 px
    mask = labels >= 0
    for seed in range(5):
        assert choose_foreign_particles(labels, mask, 1, seed) in ([0], [1])
    assert choose_foreign_particles(labels, mask, 3, 0) == [0, 1, 2]  # fewer qualify: the largest
    assert choose_foreign_particles(labels, mask, 0, 0) == []
    with pytest.warns(UserWarning, match="only 3"):
        assert choose_foreign_particles(labels, mask, 5, 0) == [0, 1, 2]


# ------------------------------------------------------------------ io

def test_foreign_mask_round_trips(tmp_path, foreign):
    stack, truth = foreign
    path = tmp_path / "f.h5"
    io.write_stack(path, stack, ground_truth=truth)
    with h5py.File(path, "r") as f:
        assert f["ground_truth/foreign_mask"].dtype == bool
    back = io.read_ground_truth(path)
    assert back.foreign_mask.dtype == bool and np.array_equal(back.foreign_mask, truth.foreign_mask)
    assert np.array_equal(np.isnan(back.oxidation_state), np.isnan(truth.oxidation_state))
    assert back.params["foreign_labels"] == truth.params["foreign_labels"]
    assert "foreign_mask=array" in repr(back)


def test_file_without_foreign_mask_reads_none(tmp_path, plain):
    stack, truth = plain
    path = tmp_path / "old.h5"
    io.write_stack(path, stack, ground_truth=truth)
    with h5py.File(path, "r") as f:
        assert "foreign_mask" not in f["ground_truth"]
    assert io.read_ground_truth(path).foreign_mask is None


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 3), bool), "foreign_mask"),
    (np.zeros((64, 64), np.float32), "boolean"),
])
def test_write_stack_checks_foreign_mask(tmp_path, plain, bad, match):
    stack, truth = plain
    gt = io.GroundTruth(**{**vars(truth), "foreign_mask": bad})
    with pytest.raises(ValueError, match=match):
        io.write_stack(tmp_path / "bad.h5", stack, ground_truth=gt)
