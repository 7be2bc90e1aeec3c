"""Tests of xanes_lib.io: the HDF5 stack file contract (FXI-compatible)."""

import os
import time

import h5py
import numpy as np
import pytest

from xanes_lib.io import (
    GroundTruth,
    Stack,
    has_ground_truth,
    infer_element,
    read_ground_truth,
    read_stack,
    stack_checksum,
    write_stack,
)

E, Y, X, K = 6, 5, 7, 2
ENERGIES_EV = np.array([8300.0, 8320.0, 8332.5, 8333.0, 8340.5, 8400.0])


def make_stack(seed=0, **changes):
    rng = np.random.default_rng(seed)
    fields = dict(
        transmission=rng.uniform(0.2, 1.0, (E, Y, X)).astype(np.float32),
        energies_eV=ENERGIES_EV.copy(),
        element="Ni",
        edge="K",
        pixel_size_nm=20.0,
        flat=rng.uniform(900, 1100, (Y, X)).astype(np.float32),
        dark=rng.uniform(90, 110, (Y, X)).astype(np.float32),
        attrs={"seed": seed, "dose": 1.0e4, "note": "unit test", "enabled": True,
               "calibration": {"shift_eV": 0.5, "refs": ["NiO", "LiNiO2"]}, "grid": [1, 2, 3],
               "checkpoint": None},
    )
    stack = Stack(**fields)
    for name, value in changes.items():  # set after construction: the writers check a stack changed later
        setattr(stack, name, value)
    return stack


def make_truth(seed=0):
    rng = np.random.default_rng(seed + 100)
    mask = np.zeros((Y, X), bool)
    mask[1:4, 2:6] = True
    fractions = rng.uniform(0, 1, (K, Y, X))
    fractions /= fractions.sum(axis=0)
    oxidation = np.where(mask, 2.0 + fractions[1], np.nan)
    return GroundTruth(
        transmission=rng.uniform(0.2, 1.0, (E, Y, X)).astype(np.float32),
        background=rng.uniform(0.9, 1.1, (E, Y, X)).astype(np.float32),
        fractions=fractions,
        references=["Ni2+", "Ni3+"],
        oxidation_state=oxidation,
        mask=mask,
        areal_density=rng.uniform(0, 50, (Y, X)),
        params={"dose": 1.0e4, "seed": seed, "version": "0.1.0", "composition": "NMC811",
                "drift": False, "radii_um": [3.0, 5.5], "nested": {"a": 1}},
    )


def write_fxi(path, images=None, energies_keV=None, **extra):
    """A minimal FXI-style export: only img_xanes and X_eng (plus extra datasets), no attrs."""
    images = make_stack().transmission if images is None else images
    energies_keV = ENERGIES_EV / 1000.0 if energies_keV is None else energies_keV
    with h5py.File(path, "w") as f:
        if images is not False:
            f.create_dataset("img_xanes", data=images)
        if energies_keV is not False:
            f.create_dataset("X_eng", data=energies_keV)
        for key, value in extra.items():
            f.create_dataset(key.replace("_", " ") if key == "Pixel_Size" else key, data=value)
    return path


# ---------------------------------------------------------------------------- round trip

def test_round_trip_stack_and_ground_truth(tmp_path):
    path = tmp_path / "sim.h5"
    stack, truth = make_stack(), make_truth()
    write_stack(path, stack, ground_truth=truth)

    with h5py.File(path, "r") as f:      # the on-disk contract
        assert f["img_xanes"].dtype == np.float32 and f["img_xanes"].shape == (E, Y, X)
        assert f["X_eng"].dtype == np.float64
        np.testing.assert_allclose(f["X_eng"][()], ENERGIES_EV / 1000.0, rtol=1e-15)
        assert f["Pixel Size"][()].decode() == "20.0 nm"
        assert f.attrs["element"] == "Ni" and f.attrs["edge"] == "K"
        assert set(f["ground_truth"]) == {"transmission", "background", "fractions",
                                          "oxidation_state", "mask", "areal_density"}

    back = read_stack(path)
    assert back.transmission.dtype == np.float32
    np.testing.assert_array_equal(back.transmission, stack.transmission)
    assert back.energies_eV.dtype == np.float64
    np.testing.assert_array_equal(back.energies_eV, ENERGIES_EV)   # exact: keV round-off removed
    assert (back.element, back.edge, back.pixel_size_nm) == ("Ni", "K", 20.0)
    np.testing.assert_array_equal(back.flat, stack.flat)
    np.testing.assert_array_equal(back.dark, stack.dark)
    assert back.attrs == stack.attrs
    assert back.source == os.fspath(path)

    gt = read_ground_truth(path)
    for name in ("transmission", "background", "fractions", "oxidation_state", "mask", "areal_density"):
        np.testing.assert_array_equal(getattr(gt, name), getattr(truth, name))
        assert getattr(gt, name).dtype == getattr(truth, name).dtype
    assert gt.references == truth.references
    assert gt.areal_density_unit == "ug/cm^2"
    assert gt.params == truth.params
    assert gt.drift_px is None and gt.drift_origin_px is None     # optional: absent, as in older files


def test_round_trip_true_drift(tmp_path):
    drift = np.cumsum(np.random.default_rng(1).normal(0, 0.7, (E, 2)), axis=0)
    drift -= drift[0]
    truth = make_truth()
    truth.drift_px, truth.drift_origin_px = drift, np.array([0.25, -1.5])
    write_stack(tmp_path / "sim.h5", make_stack(), ground_truth=truth)
    with h5py.File(tmp_path / "sim.h5", "r") as f:
        ds = f["ground_truth/drift_px"]
        assert ds.dtype == np.float64 and ds.attrs["reference_index"] == 0
        np.testing.assert_array_equal(ds.attrs["origin_px"], [0.25, -1.5])
    gt = read_ground_truth(tmp_path / "sim.h5")
    np.testing.assert_array_equal(gt.drift_px, drift)
    np.testing.assert_array_equal(gt.drift_origin_px, [0.25, -1.5])


@pytest.mark.parametrize("drift, origin, match", [
    (np.zeros((E - 1, 2)), None, r"drift_px has shape \(5, 2\); it must be \(6, 2\)"),
    (np.ones((E, 2)), None, r"starts at \(1\.0, 1\.0\), not \(0, 0\).*drift_origin_px"),
    (np.full((E, 2), np.nan), None, "NaN or inf"),
    (None, np.zeros(2), "drift_origin_px is given without"),
    (np.zeros((E, 2)), np.zeros(3), "must be two finite numbers"),
])
def test_write_rejects_bad_true_drift(tmp_path, drift, origin, match):
    truth = make_truth()
    truth.drift_px, truth.drift_origin_px = drift, origin
    with pytest.raises(ValueError, match=match):
        write_stack(tmp_path / "s.h5", make_stack(), ground_truth=truth)


def test_round_trip_linspace_energies_are_close(tmp_path):
    energies = np.linspace(8300.0, 8400.0, E)           # not decimal-exact values
    write_stack(tmp_path / "s.h5", make_stack(energies_eV=energies))
    np.testing.assert_allclose(read_stack(tmp_path / "s.h5").energies_eV, energies, rtol=0, atol=1e-6)


def test_optional_fields_absent(tmp_path):
    stack = make_stack(pixel_size_nm=None, flat=None, dark=None, attrs={})
    write_stack(tmp_path / "s.h5", stack)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert set(f) == {"img_xanes", "X_eng"}
    back = read_stack(tmp_path / "s.h5")
    assert back.pixel_size_nm is None and back.flat is None and back.dark is None
    assert back.attrs == {}


def test_write_is_byte_identical_for_identical_input(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_stack(a, make_stack(), ground_truth=make_truth())
    time.sleep(1.1)         # HDF5 timestamps have one-second resolution: they must not be stored
    write_stack(b, make_stack(), ground_truth=make_truth())
    assert a.read_bytes() == b.read_bytes()
    assert stack_checksum(a) == stack_checksum(b)
    write_stack(b, make_stack(seed=1), ground_truth=make_truth())
    assert stack_checksum(a) != stack_checksum(b)


def test_stack_checksum_is_sha256(tmp_path):
    import hashlib
    path = tmp_path / "s.h5"
    write_stack(path, make_stack())
    assert stack_checksum(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_inputs_not_modified(tmp_path):
    stack, truth = make_stack(), make_truth()
    before = {name: getattr(stack, name).copy() for name in ("transmission", "energies_eV", "flat", "dark")}
    attrs_before = repr(stack.attrs)
    gt_before = {name: getattr(truth, name).copy() for name in ("fractions", "oxidation_state", "mask")}
    write_stack(tmp_path / "s.h5", stack, ground_truth=truth)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(stack, name), value)
    assert repr(stack.attrs) == attrs_before
    for name, value in gt_before.items():
        np.testing.assert_array_equal(getattr(truth, name), value)


def test_float64_transmission_is_stored_as_float32(tmp_path):
    stack = make_stack()
    stack.transmission = stack.transmission.astype(np.float64)
    write_stack(tmp_path / "s.h5", stack)
    assert read_stack(tmp_path / "s.h5").transmission.dtype == np.float32


# ---------------------------------------------------------------------------- atomic writes

def test_failed_validation_leaves_no_file(tmp_path):
    bad = make_stack()
    bad.transmission[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"Stack.transmission holds 1 NaN or inf .* index \(2, 1, 1\)"):
        write_stack(tmp_path / "s.h5", bad)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_does_not_clobber_existing_file(tmp_path):
    path = tmp_path / "s.h5"
    write_stack(path, make_stack())
    original = path.read_bytes()
    bad = make_stack(energies_eV=ENERGIES_EV[::-1].copy())
    with pytest.raises(ValueError, match="must increase strictly"):
        write_stack(path, bad)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_error_during_write_removes_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "s.h5"
    write_stack(path, make_stack())
    original = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("simulated failure while renaming")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated failure"):
        write_stack(path, make_stack(seed=3))
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_overwrite_false_keeps_existing_file(tmp_path):
    path = tmp_path / "s.h5"
    write_stack(path, make_stack())
    original = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=False"):
        write_stack(path, make_stack(seed=2), overwrite=False)
    assert path.read_bytes() == original
    write_stack(tmp_path / "new.h5", make_stack(), overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.h5", "s.h5"]


@pytest.mark.parametrize("change, match", [
    (dict(energies_eV=ENERGIES_EV / 1000.0), "look like keV"),
    (dict(transmission=np.ones((E, Y), np.float32)), "must be 3-D"),
    (dict(transmission=np.ones((E - 1, Y, X), np.float32)), "images but there are 6 energies"),
    (dict(flat=np.ones((Y + 1, X))), r"Stack.flat has shape \(6, 7\)"),
    (dict(dark=np.ones((E, X, Y))), r"Stack.dark has shape"),
    (dict(pixel_size_nm=-5.0), "finite positive"),
    (dict(attrs={"element": "Co"}), "reserved"),
    (dict(attrs={"blob": b"raw"}), "bytes"),
    (dict(attrs={"obj": {1, 2}}), "cannot hold"),
])
def test_write_rejects_bad_stack(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        write_stack(tmp_path / "s.h5", make_stack(**change))
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_inconsistent_ground_truth(tmp_path):
    truth = make_truth()
    truth.references = ["Ni2+"]
    with pytest.raises(ValueError, match="names 1 references but fractions has 2"):
        write_stack(tmp_path / "s.h5", make_stack(), ground_truth=truth)
    truth = make_truth()
    truth.background = truth.background[:, :-1]
    with pytest.raises(ValueError, match=r"GroundTruth.background has shape"):
        write_stack(tmp_path / "s.h5", make_stack(), ground_truth=truth)
    truth = make_truth()
    truth.mask = truth.mask.astype(np.uint8)
    with pytest.raises(ValueError, match="must be boolean"):
        write_stack(tmp_path / "s.h5", make_stack(), ground_truth=truth)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- ground truth isolation

def test_read_stack_does_not_touch_ground_truth(tmp_path, monkeypatch):
    path = tmp_path / "sim.h5"
    write_stack(path, make_stack(), ground_truth=make_truth())
    with h5py.File(path, "a") as f:          # sabotage the group: read_stack must not care
        del f["ground_truth/transmission"]
        f["ground_truth"].attrs["seed"] = "broken"
    accessed = []
    real_getitem = h5py.Group.__getitem__

    def spy(self, name):
        obj = real_getitem(self, name)
        accessed.append(getattr(obj, "name", None) or str(name))
        return obj

    monkeypatch.setattr(h5py.Group, "__getitem__", spy)
    stack = read_stack(path)
    monkeypatch.undo()
    assert accessed and not any("ground_truth" in name for name in accessed)
    assert isinstance(stack, Stack)
    assert not any(key in stack.attrs for key in ("version", "composition", "radii_um"))
    assert not hasattr(stack, "fractions") and not hasattr(stack, "ground_truth")
    with pytest.raises(ValueError, match="'transmission'"):
        read_ground_truth(path)


def test_has_ground_truth_and_error_for_measured_file(tmp_path):
    sim, measured = tmp_path / "sim.h5", tmp_path / "measured.h5"
    write_stack(sim, make_stack(), ground_truth=make_truth())
    write_stack(measured, make_stack())
    assert has_ground_truth(sim) and not has_ground_truth(measured)
    assert read_stack(measured).element == "Ni"
    with pytest.raises(ValueError, match="not a simulated file"):
        read_ground_truth(measured)


# ---------------------------------------------------------------------------- FXI exports

def test_minimal_fxi_file_reads_and_infers_element(tmp_path):
    path = write_fxi(tmp_path / "fxi.h5")
    stack = read_stack(path)
    assert stack.element == "Ni" and stack.edge == "K"
    assert stack.attrs == {"element_inferred": True}
    np.testing.assert_array_equal(stack.energies_eV, ENERGIES_EV)
    assert stack.flat is None and stack.pixel_size_nm is None
    assert read_stack(path, element="Ni").attrs == {}          # explicit element: no inference


def test_fxi_flat_dark_and_pixel_size(tmp_path):
    flat, dark = np.full((Y, X), 1000, np.uint16), np.full((Y, X), 100, np.uint16)
    path = write_fxi(tmp_path / "fxi.h5", img_bkg=flat, img_dark=dark, Pixel_Size="21.3 nm")
    stack = read_stack(path)
    assert stack.pixel_size_nm == 21.3
    np.testing.assert_array_equal(stack.flat, flat)
    assert read_stack(path, load_flat_dark=False).flat is None
    write_fxi(tmp_path / "um.h5", Pixel_Size=b"0.02 um")
    assert read_stack(tmp_path / "um.h5").pixel_size_nm == pytest.approx(20.0)


def test_x_eng_in_ev_with_override(tmp_path):
    path = write_fxi(tmp_path / "ev.h5", energies_keV=ENERGIES_EV)
    with pytest.raises(ValueError, match=r"X_eng in .*ev\.h5 looks like eV \(8300\.0 .*"
                                         r"divide by 1000 or pass energy_unit='eV'"):
        read_stack(path)
    np.testing.assert_array_equal(read_stack(path, energy_unit="eV").energies_eV, ENERGIES_EV)
    with pytest.raises(ValueError, match="hard X-ray edges"):
        read_stack(write_fxi(tmp_path / "kev.h5"), energy_unit="eV")


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=False), r"has no 'img_xanes' dataset \(keys present: \['X_eng'\]\)"),
    (dict(energies_keV=False), r"has no 'X_eng' dataset \(keys present: \['img_xanes'\]\)"),
    (dict(images=np.ones((Y, X), np.float32)), r"img_xanes in .* must be 3-D"),
    (dict(images=np.ones((E + 1, Y, X), np.float32)), "has 7 images but X_eng has 6 energies"),
    (dict(images=np.ones((E, Y, X), np.uint16)), "raw detector counts"),
    (dict(energies_keV=ENERGIES_EV[[0, 2, 1, 3, 4, 5]] / 1000.0),
     r"X_eng in .* must increase strictly; got a drop at index 2"),
    (dict(energies_keV=np.linspace(6.0, 6.1, E)), "no K edge of the known elements"),
    (dict(energies_keV=np.linspace(7.6, 8.4, E)), r"several K edges .*Co .*Ni"),
    (dict(img_bkg=np.ones((3, Y, X))), r"img_bkg in .* has shape \(3, 5, 7\).*load_flat_dark=False"),
    (dict(Pixel_Size="twenty nm"), r"'Pixel Size' in .* is unparsable"),
    (dict(Pixel_Size=0.0217), r"'Pixel Size' in .* is 0\.0217 without a unit.*no TXM pixel size"),
])
def test_read_rejects_bad_file(tmp_path, kwargs, match):
    path = write_fxi(tmp_path / "bad.h5", **kwargs)
    with pytest.raises(ValueError, match=match):
        read_stack(path)


def test_read_rejects_nonfinite_images_unless_allowed(tmp_path):
    images = make_stack().transmission
    images[1, 2, 3] = np.nan
    images[4, 0, 0] = np.inf
    path = write_fxi(tmp_path / "nan.h5", images=images)
    with pytest.raises(ValueError, match=r"img_xanes in .* holds 2 NaN or inf value\(s\), first at index "
                                         r"\(1, 2, 3\)"):
        read_stack(path)
    stack = read_stack(path, allow_nonfinite=True)
    assert np.isnan(stack.transmission[1, 2, 3])


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_stack(tmp_path / "nope.h5")


def test_read_stack_opens_read_only(tmp_path, monkeypatch):
    path = write_fxi(tmp_path / "fxi.h5")
    modes = []
    real_file = h5py.File

    def spy(name, mode="r", *args, **kwargs):
        modes.append(mode)
        return real_file(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    read_stack(path)
    assert modes == ["r"]


# ---------------------------------------------------------------------------- infer_element

@pytest.mark.parametrize("energies, element", [
    ([8300.0, 8400.0], "Ni"), ([7650.0, 7800.0], "Co"), ([6500.0, 6600.0], "Mn"),
])
def test_infer_element(energies, element):
    assert infer_element(energies) == element


def test_infer_element_rejects_kev():
    with pytest.raises(ValueError, match="look like keV"):
        infer_element([8.3, 8.4])
