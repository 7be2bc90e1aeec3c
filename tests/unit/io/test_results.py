"""Tests of xanes_lib.io.results: the results-file contract of docs/DESIGN.md."""

from __future__ import annotations

import dataclasses
import os

import h5py
import numpy as np
import pytest

from xanes_lib import __version__
from xanes_lib.io import MAP_KEYS, Stack, read_results, stack_checksum, write_results, write_stack
from xanes_lib.mapping import (
    edge_energy,
    fit_references,
    mark_unexplained,
    normalize_spectra,
    unexplained_pixels,
)
from xanes_lib.physics import build_model
from xanes_lib.simulation import default_energy_grid
from xanes_lib.spectra import default_references

E = default_energy_grid("Ni")
REFS = default_references("Ni")


@pytest.fixture
def fitted():
    rng = np.random.default_rng(21)
    model = build_model(E, np.stack([r.spectrum(E) for r in REFS]))
    coeffs = np.stack([rng.uniform(0.1, 0.5, (6, 7)), rng.uniform(0.1, 0.5, (6, 7)),
                       np.full((6, 7), 0.3), np.full((6, 7), 0.05)])
    a = model.predict(coeffs) + rng.normal(0, 0.005, (E.size, 6, 7))
    a[:, 0, 0] = np.nan                                     # one pixel that cannot be fitted
    fit = fit_references(a, E, REFS, mode="nonneg_sum_to_one")
    edge = edge_energy(E, normalize_spectra(E, np.nan_to_num(a)).normalized)
    return dataclasses.replace(fit, edge_energy_eV=edge), a


def test_round_trip_follows_the_contract(tmp_path, fitted):
    fit, a = fitted
    stack_path = tmp_path / "stack.h5"
    write_stack(stack_path, Stack(np.exp(-np.nan_to_num(a)).astype(np.float32), E, "Ni"))
    out = tmp_path / "maps.h5"
    write_results(out, fit, references=REFS, energy_window_eV=fit.energy_window_eV,
                  method="LCF nonneg_sum_to_one, half-step edge", input_path=stack_path,
                  extra_attrs={"seed": 21, "notes": {"dose": 1e4}})
    with h5py.File(out, "r") as f:
        assert sorted(f["maps"].keys()) == sorted(MAP_KEYS)
        assert f["maps/fractions"].shape == (2, 6, 7) and f["maps/mask"].dtype == bool
    res = read_results(out)
    np.testing.assert_allclose(res.oxidation_state, fit.oxidation_state, equal_nan=True)
    np.testing.assert_allclose(res.oxidation_state_std, fit.oxidation_state_std, equal_nan=True)
    np.testing.assert_allclose(res.fractions, fit.fractions, equal_nan=True)
    np.testing.assert_allclose(res.fractions_std, fit.fractions_std, equal_nan=True)
    np.testing.assert_allclose(res.edge_energy_eV, fit.edge_energy_eV, equal_nan=True)
    np.testing.assert_allclose(res.residual, fit.residual_rms, equal_nan=True)
    np.testing.assert_array_equal(res.mask, fit.mask)
    assert not res.mask[0, 0] and np.isnan(res.oxidation_state[0, 0])
    assert res.references == ["Ni2+", "Ni3+"]
    assert res.energy_window_eV == fit.energy_window_eV
    assert res.method.startswith("LCF") and res.checkpoint == "none"
    assert res.package_version == __version__
    assert res.input_checksum == stack_checksum(stack_path)
    assert res.attrs["input_file"] == "stack.h5"             # a name, never a directory
    assert res.attrs["seed"] == 21 and res.attrs["notes"] == {"dose": 1e4}
    assert res.attrs["fit_mode"] == "nonneg_sum_to_one" and res.attrs["n_masked_nonfinite"] == 1
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_checkpoint_and_defaults_from_the_fit(tmp_path, fitted):
    fit, _ = fitted
    out = tmp_path / "maps.h5"
    write_results(out, fit, method="LCF", checkpoint="denoiser-v1.pt")
    res = read_results(out)
    assert res.checkpoint == "denoiser-v1.pt" and res.input_checksum == "none"
    assert res.references == list(fit.reference_names)


def test_alignment_is_written_with_the_maps_and_reads_back(tmp_path, fitted):
    from xanes_lib.alignment import Alignment

    fit, _ = fitted
    shifts = np.column_stack([np.linspace(0, 1.5, E.size), np.linspace(0, -0.7, E.size)])
    reg = Alignment(shifts_px=shifts, confidence=np.full(E.size, 0.9), reference_index=0, method="template")
    out = tmp_path / "maps.h5"
    write_results(out, fit, method="LCF", alignment=reg)
    back = Alignment.load(out)
    np.testing.assert_allclose(back.shifts_px, shifts)
    assert back.reference_index == 0 and back.method == "template"
    write_results(tmp_path / "plain.h5", fit, method="LCF")
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert "alignment" not in f  # written only when the stack was aligned
    read_results(out)  # the maps read as before


def test_same_input_gives_identical_bytes(tmp_path, fitted):
    fit, _ = fitted
    write_results(tmp_path / "a.h5", fit, method="LCF")
    write_results(tmp_path / "b.h5", fit, method="LCF")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_failed_write_keeps_the_old_file(tmp_path, fitted, monkeypatch):
    fit, _ = fitted
    out = tmp_path / "maps.h5"
    write_results(out, fit, method="first")
    before = out.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_results(out, fit, method="second")
    assert out.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(references=["Ni3+", "Ni2+"]), "do not match the fit's references"),
    (dict(energy_window_eV=(8300.0, 8400.0)), "differs from the fit's window"),
    (dict(extra_attrs={"method": "x"}), "reserved name"),
    (dict(extra_attrs={"bad": object()}), "cannot be stored"),
    (dict(method=""), "non-empty"),
])
def test_bad_arguments_raise(tmp_path, fitted, kwargs, match):
    fit, _ = fitted
    args = dict(method="LCF") | kwargs
    with pytest.raises(ValueError, match=match):
        write_results(tmp_path / "maps.h5", fit, **args)
    assert not (tmp_path / "maps.h5").exists()


def test_missing_edge_energy_raises(tmp_path, fitted):
    fit, _ = fitted
    with pytest.raises(ValueError, match="edge_energy"):
        write_results(tmp_path / "maps.h5", dataclasses.replace(fit, edge_energy_eV=None),
                      method="LCF")
    write_results(tmp_path / "maps.h5", dataclasses.replace(fit, edge_energy_eV=None),
                  method="LCF", edge_energy_eV=np.full((6, 7), 8342.0))
    assert read_results(tmp_path / "maps.h5").attrs["edge_energy_source"] == "argument"


def test_overwrite_false_and_bad_files(tmp_path, fitted):
    fit, _ = fitted
    out = tmp_path / "maps.h5"
    write_results(out, fit, method="LCF")
    with pytest.raises(FileExistsError):
        write_results(out, fit, method="LCF", overwrite=False)
    with pytest.raises(TypeError, match="ReferenceFit"):
        write_results(out, {"maps": 1}, method="LCF")
    with pytest.raises(FileNotFoundError):
        read_results(tmp_path / "absent.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a xanes_lib results file"):
        read_results(other)
    with h5py.File(out, "a") as f:
        del f["maps/residual"]
    with pytest.raises(ValueError, match="maps/residual"):
        read_results(out)


# ------------------------------------------------------------------ maps/unexplained

def _flagged(fit):
    flags = np.zeros(fit.mask.shape, bool)
    flags[2:4, 3:6] = True
    return mark_unexplained(fit, flags)


def test_unexplained_round_trips(tmp_path, fitted):
    fit, _ = fitted
    marked = _flagged(fit)
    out = tmp_path / "maps.h5"
    write_results(out, marked, method="LCF")
    with h5py.File(out, "r") as f:
        assert f["maps/unexplained"].dtype == bool
    res = read_results(out)
    np.testing.assert_array_equal(res.unexplained, marked.unexplained)
    assert res.unexplained.sum() == 6
    assert np.isnan(res.oxidation_state[res.unexplained]).all()
    assert np.isnan(res.fractions[:, res.unexplained]).all()
    assert np.isnan(res.fractions_std[:, res.unexplained]).all()
    assert np.isfinite(res.oxidation_state[res.mask & ~res.unexplained]).all()
    assert res.unexplained_test == {"method": "not described"}   # bare flags, no test object


def test_unexplained_test_attributes_round_trip(tmp_path, fitted):
    fit, a = fitted
    test = unexplained_pixels(np.exp(-np.nan_to_num(a)), E, REFS, mask=fit.mask, smooth_px=0.0)
    marked = mark_unexplained(fit, test)
    write_results(tmp_path / "maps.h5", marked, method="LCF")
    res = read_results(tmp_path / "maps.h5")
    np.testing.assert_array_equal(res.unexplained, test.flags & fit.mask)
    assert res.unexplained_test == test.to_attrs()
    assert res.unexplained_test["threshold"] == pytest.approx(test.threshold)
    assert res.attrs["unexplained_test"] == test.to_attrs()


def test_untested_fit_writes_an_all_false_map(tmp_path, fitted):
    fit, _ = fitted
    write_results(tmp_path / "maps.h5", fit, method="LCF")
    res = read_results(tmp_path / "maps.h5")
    assert res.unexplained.dtype == bool and not res.unexplained.any()
    assert res.unexplained_test is None and res.attrs["unexplained_test"] == "none"


@pytest.mark.parametrize("change, match", [
    ("outside", "outside maps/mask"),
    ("finite_state", "maps/oxidation_state is finite"),
    ("finite_fraction", "maps/fractions is finite"),
    ("shape", "boolean"),
])
def test_inconsistent_unexplained_map_is_refused(tmp_path, fitted, change, match):
    fit, _ = fitted
    marked = _flagged(fit)
    if change == "outside":
        flags = marked.unexplained.copy()
        flags[0, 0] = True                                   # the pixel that was not fitted
        bad = dataclasses.replace(marked, unexplained=flags)
    elif change == "finite_state":
        bad = dataclasses.replace(marked, oxidation_state=fit.oxidation_state)
    elif change == "finite_fraction":
        bad = dataclasses.replace(marked, fractions=fit.fractions)
    else:
        bad = dataclasses.replace(marked, unexplained=marked.unexplained.astype(np.uint8))
    with pytest.raises(ValueError, match=match):
        write_results(tmp_path / "maps.h5", bad, method="LCF")
    assert not (tmp_path / "maps.h5").exists()


def test_version_1_file_reads_without_a_test(tmp_path, fitted):
    fit, _ = fitted
    out = tmp_path / "maps.h5"
    write_results(out, fit, method="LCF")
    with h5py.File(out, "a") as f:                          # what version 1 wrote
        del f["maps/unexplained"]
        f.attrs["format_version"] = 1
    res = read_results(out)
    assert res.unexplained.shape == (6, 7) and not res.unexplained.any() and res.unexplained_test is None
    with h5py.File(out, "a") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(ValueError, match="maps/unexplained"):
        read_results(out)
