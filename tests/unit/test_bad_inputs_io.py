"""Bad inputs through the public API of xanes_lib.io, one table.

Each refused case asserts the error type and that the message names the file, the bad value
(frame index and energy, median, element, dataset, path) and the fix; each legal-but-odd case
asserts that the result is sane. Every case also checks that no input file changed: reading
never writes, and a refused write leaves its inputs (and an existing target) byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from contextlib import nullcontext

import h5py
import numpy as np
import pytest

from xanes_lib.io import (
    DamagedFileError,
    Stack,
    flat_field_correct,
    read_ground_truth,
    read_results,
    read_stack,
    stack_checksum,
    write_results,
    write_stack,
)

E, Y, X = 6, 8, 9
NI_EV = np.array([8300.0, 8320.0, 8332.5, 8333.0, 8340.5, 8400.0])
CO_EV = np.array([7650.0, 7700.0, 7709.0, 7712.0, 7720.0, 7800.0])
FRAME2 = r"frame 2 at 8\.3325 keV \(8332\.50 eV\)"
DROP_FIX = r"bad_frames='drop'"


def transmission(seed=0, lo=0.3, hi=1.0, shape=(E, Y, X)):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def export(path, images, energies_eV=NI_EV, *, element="Ni", **datasets):
    """An instrument-style export written with h5py (what write_stack would refuse too)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("img_xanes", data=images, chunks=(1,) + images.shape[1:] if images.ndim == 3
                         else None, compression="gzip")
        f.create_dataset("X_eng", data=np.asarray(energies_eV) / 1000.0)
        if element is not None:
            f.attrs["element"] = element
            f.attrs["edge"] = "K"
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def with_frame(index, value, seed=0):
    a = transmission(seed)
    a[index] = value
    return a


def corrupt_chunk(path, dataset, chunk=2):
    """Overwrite the bytes of one stored chunk of ``dataset``, as a bad copy or disk would."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xa5" * info.size)
    return path


_FIT = {}


def reference_fit():
    """A small valence fit to write results from (built once)."""
    if not _FIT:
        from xanes_lib.mapping import edge_energy, fit_references, normalize_spectra
        from xanes_lib.physics import build_model
        from xanes_lib.simulation import default_energy_grid
        from xanes_lib.spectra import default_references

        e, refs = default_energy_grid("Ni"), default_references("Ni")
        rng = np.random.default_rng(3)
        model = build_model(e, np.stack([r.spectrum(e) for r in refs]))
        coeffs = np.stack([rng.uniform(0.1, 0.5, (4, 5)), rng.uniform(0.1, 0.5, (4, 5)),
                           np.full((4, 5), 0.3), np.full((4, 5), 0.05)])
        a = model.predict(coeffs) + rng.normal(0, 0.005, (e.size, 4, 5))
        fit = fit_references(a, e, refs, mode="nonneg_sum_to_one")
        _FIT["fit"] = dataclasses.replace(
            fit, edge_energy_eV=edge_energy(e, normalize_spectra(e, a).normalized))
    return _FIT["fit"]


# ------------------------------------------------------------------ cases: (action, inputs)
# Each builder takes tmp_path and returns (action, input files); the action calls the API.

def _read(images, energies=NI_EV, name="in.h5", label="Ni", **kw):
    """A file exported with ``images`` (array or maker), element attribute ``label``, read with ``kw``."""
    def build(tmp):
        path = export(tmp / name, images() if callable(images) else images, energies, element=label)
        return (lambda: read_stack(path, **kw)), [path]
    return build


def _no_beam_frame():
    a = transmission()
    rng = np.random.default_rng(1)
    a[2] = -rng.uniform(0.08, 0.12, (Y, X))     # (0 - dark) / (flat - dark): a drop-out, dark-corrected
    return a


def _two_dead_frames():
    a = with_frame(4, 0.0)
    a[1] = 0.0
    return a


def _partly_saturated():
    a = transmission()
    a[2].flat[: int(0.6 * Y * X)] = 4095.0        # a 12-bit read-out clipped over 60 % of the frame
    return a


def _raw_counts_with_flat(tmp, **kw):
    counts = transmission(lo=300, hi=1000)
    path = export(tmp / "counts.h5", counts, img_bkg=np.full((Y, X), 1000.0), img_dark=np.full((Y, X), 100.0))
    return (lambda: read_stack(path, **kw)), [path]


def _check_counts_corrected(stack, _):
    """Counts c with flat 1000 and dark 100 read as (c - 100) / 900, the decision recorded."""
    p = stack.provenance
    return (p["intensity"] == "raw counts, flat-field corrected on reading" and p["raw_counts_mode"] == "auto"
            and 0.2 <= float(np.median(stack.transmission)) <= 1.0)


def _corrupted_images(tmp):
    path = tmp / "in.h5"
    write_stack(path, Stack(transmission(), NI_EV, "Ni"))
    corrupt_chunk(path, "img_xanes")
    return (lambda: read_stack(path)), [path]


def _corrupted_truth(tmp):
    path = tmp / "sim.h5"
    write_stack(path, Stack(transmission(), NI_EV, "Ni"), ground_truth=_truth())
    corrupt_chunk(path, "ground_truth/transmission", chunk=1)
    return (lambda: read_ground_truth(path)), [path]


def _truth():
    from xanes_lib.io import GroundTruth

    mask = np.zeros((Y, X), bool)
    mask[2:6, 2:7] = True
    frac = np.stack([np.full((Y, X), 0.4), np.full((Y, X), 0.6)])
    return GroundTruth(transmission=transmission(5), background=np.ones((E, Y, X), np.float32),
                       fractions=frac, references=["Ni2+", "Ni3+"],
                       oxidation_state=np.where(mask, 2.6, np.nan), mask=mask,
                       areal_density=np.where(mask, 10.0, 0.0), params={"seed": 1})


def _write_over_source(tmp):
    path = tmp / "in.h5"
    write_stack(path, Stack(transmission(), NI_EV, "Ni"))
    stack = read_stack(path)
    stack.transmission = stack.transmission * 0.5     # "processed"
    return (lambda: write_stack(path, stack)), [path]


def _write_over_named_input(tmp):
    raw = tmp / "raw.h5"
    write_stack(raw, Stack(transmission(), NI_EV, "Ni"))
    return (lambda: write_stack(raw, Stack(transmission(1), NI_EV, "Ni"), inputs=[raw])), [raw]


def _write_through_symlink(tmp):
    raw = tmp / "raw.h5"
    write_stack(raw, Stack(transmission(), NI_EV, "Ni"))
    link = tmp / "link.h5"
    os.symlink(raw, link)
    stack = read_stack(raw)
    return (lambda: write_stack(link, stack)), [raw]


def _write_through_hardlink(tmp):
    raw = tmp / "raw.h5"
    write_stack(raw, Stack(transmission(), NI_EV, "Ni"))
    link = tmp / "same.h5"
    os.link(raw, link)
    return (lambda: write_stack(link, Stack(transmission(1), NI_EV, "Ni"), inputs=raw)), [raw]


def _results_over_input(tmp, via_link=False):
    stack_path = tmp / "stack.h5"
    write_stack(stack_path, Stack(transmission(), NI_EV, "Ni"))
    target = stack_path
    if via_link:
        target = tmp / "maps.h5"
        os.symlink(stack_path, target)
    return (lambda: write_results(target, reference_fit(), method="LCF", input_path=stack_path)), [stack_path]


def _flat(flat, dark):
    def build(tmp):
        return (lambda: flat_field_correct(np.full((E, Y, X), 500.0), flat, dark)), []
    return build


def _truth_of_measured(tmp):
    path = export(tmp / "measured.h5", transmission())
    return (lambda: read_ground_truth(path)), [path]


def _not_hdf5(tmp):
    path = tmp / "notes.h5"
    path.write_text("energy,transmission\n8333,0.5\n")
    return (lambda: read_stack(path)), [path]


REFUSED = [
    # (id, builder, error type, regexes the message must match)
    ("dead_frame_zeros", _read(lambda: with_frame(2, 0.0)), ValueError,
     [r"in\.h5", "img_xanes", FRAME2, r"constant \(every pixel 0: a detector drop-out\)", DROP_FIX,
      "re-measure"]),
    ("dead_frame_constant", _read(lambda: with_frame(2, 0.7)), ValueError,
     [FRAME2, r"every pixel 0\.7: a dead or stuck read-out", DROP_FIX]),
    ("frame_without_beam", _read(_no_beam_frame), ValueError,
     [FRAME2, r"without beam \(median transmission -0\.\d+ <= 0", DROP_FIX]),
    ("saturated_frame", _read(lambda: with_frame(2, 65535.0)), ValueError,
     [FRAME2, r"saturated \(100% of the pixels at the detector full scale 65535\)", DROP_FIX]),
    ("partly_saturated_frame", _read(_partly_saturated), ValueError,
     [FRAME2, r"saturated \(60% of the pixels at the detector full scale 4095\)", DROP_FIX]),
    ("several_bad_frames_all_named", _read(_two_dead_frames), ValueError,
     [r"2 frame\(s\)", r"frame 1 at 8\.3200 keV \(8320\.00 eV\)", r"frame 4 at 8\.3405 keV \(8340\.50 eV\)"]),
    ("drop_leaves_too_few_frames", _read(lambda: np.concatenate(
        [transmission()[:1], np.zeros((E - 1, Y, X), np.float32)]), bad_frames="drop"), ValueError,
     [r"only 1 of 6 frames", "re-measure"]),
    ("bad_frames_mode_unknown", _read(transmission(), bad_frames="skip"), ValueError,
     [r"bad_frames must be one of \('refuse', 'drop', 'keep'\); got 'skip'"]),
    ("raw_counts_float", _read(lambda: transmission(lo=300, hi=1000)), ValueError,
     [r"in\.h5", "img_xanes", r"median of 6\d\d", r"frame 0 at 8\.3000 keV", "raw detector counts",
      r"flat_field_correct\(images, flat, dark\)"]),
    ("raw_counts_with_flat_refused_on_request", lambda tmp: _raw_counts_with_flat(tmp, raw_counts="refuse"),
     ValueError, [r"counts\.h5", "raw detector counts", r"with this file's 'img_bkg' and 'img_dark'",
                  r"raw_counts='auto', the default"]),
    ("raw_counts_integer_dtype", _read(lambda: (transmission() * 1000).astype(np.uint16)), ValueError,
     ["dtype uint16", "raw", r"flat_field_correct"]),
    ("element_label_contradicts_energies", _read(transmission(), CO_EV, label="Ni"), ValueError,
     [r"'element' attribute of .*in\.h5", r"says Ni \(its K edge is at 8\.3330 keV, 8333\.0 eV\)",
      r"X_eng spans 7\.6500-7\.8000 keV", r"Co K edge at 7\.7090 keV \(7709\.0 eV\)",
      r"attrs\['element'\] = 'Co'", r"element='Co'"]),
    ("element_label_no_edge_in_range", _read(transmission(), NI_EV - 2500.0, label="Ni"), ValueError,
     [r"says Ni", r"does not contain that edge", r"element=\.\.\."]),
    ("nan_in_images", _read(lambda: with_frame(3, np.nan)), ValueError,
     [r"in\.h5", r"NaN or inf", r"first at index \(3, 0, 0\)", r"allow_nonfinite=True"]),
    ("energies_in_eV", _read(transmission(), NI_EV * 1000.0), ValueError,
     [r"X_eng in .*in\.h5 looks like eV", r"energy_unit='eV'"]),
    ("corrupted_chunk_images", _corrupted_images, DamagedFileError,
     [r"in\.h5", r"dataset '/img_xanes' could not be read", "damaged", "Copy it again"]),
    ("corrupted_chunk_ground_truth", _corrupted_truth, DamagedFileError,
     [r"sim\.h5", r"'/ground_truth/transmission' could not be read", "Copy it again"]),
    ("not_an_hdf5_file", _not_hdf5, OSError, [r"notes\.h5", r"could not be opened as an HDF5 file"]),
    ("ground_truth_of_measured_file", _truth_of_measured, ValueError,
     [r"measured\.h5", r"no 'ground_truth' group", r"has_ground_truth"]),
    ("write_stack_over_its_source", _write_over_source, ValueError,
     [r"refusing to write .*in\.h5", r"it is the input file", r"new name, e\.g\. .*in_out\.h5"]),
    ("write_stack_over_named_input", _write_over_named_input, ValueError,
     [r"refusing to write .*raw\.h5", "input file", "new name"]),
    ("write_stack_through_symlink", _write_through_symlink, ValueError,
     [r"link\.h5", r"input file .*raw\.h5 through a symbolic link", "new name"]),
    ("write_stack_through_hardlink", _write_through_hardlink, ValueError,
     [r"same\.h5", r"input file .*raw\.h5 through a hard link", "new name"]),
    ("write_results_over_input", _results_over_input, ValueError,
     [r"refusing to write .*stack\.h5", "input file", "new name"]),
    ("write_results_through_symlink", lambda tmp: _results_over_input(tmp, via_link=True), ValueError,
     [r"maps\.h5", "symbolic link", "new name"]),
    ("flat_field_zero_flat", _flat(np.where(np.eye(Y, X, dtype=bool), 100.0, 1000.0), np.full((Y, X), 100.0)),
     ValueError, [r"zero flat field", r"at 8 pixel\(s\)", r"first at index \(0, 0\)", "swapped"]),
    ("flat_field_flat_and_dark_swapped", _flat(np.full((Y, X), 100.0), np.full((Y, X), 1000.0)),
     ValueError, [r"zero flat field", r"72 pixel\(s\)", "not swapped"]),
    ("flat_field_nan_in_flat", _flat(np.where(np.eye(Y, X, dtype=bool), np.nan, 1000.0), None),
     ValueError, [r"flat holds 8 NaN", r"repair those pixels"]),
]


def _dropped(tmp):
    a = with_frame(2, 0.0)
    path = export(tmp / "in.h5", a, img_bkg=np.full((E, Y, X), 1000.0, np.float32))
    return (lambda: read_stack(path, bad_frames="drop")), [path]


def _check_dropped(stack, tmp):
    assert stack.transmission.shape == (E - 1, Y, X) and stack.flat.shape == (E - 1, Y, X)
    np.testing.assert_array_equal(stack.energies_eV, np.delete(NI_EV, 2))
    (record,) = stack.attrs["dropped_frames"]
    assert record["index"] == 2 and record["energy_eV"] == 8332.5 and "drop-out" in record["reason"]
    out = tmp / "dropped.h5"                       # the record survives a round trip
    write_stack(out, stack)
    assert read_stack(out).attrs["dropped_frames"] == [record]


def _check_kept(stack, tmp):
    assert stack.transmission.shape == (E, Y, X)
    assert [r["index"] for r in stack.attrs["bad_frames"]] == [2]


def _write_beside(tmp):
    raw = tmp / "raw.h5"
    write_stack(raw, Stack(transmission(), NI_EV, "Ni"))
    stack = read_stack(raw)
    return (lambda: (write_stack(tmp / "processed.h5", stack), read_stack(tmp / "processed.h5"))[1]), [raw]


def _results_beside(tmp):
    stack_path = tmp / "stack.h5"
    write_stack(stack_path, Stack(transmission(), NI_EV, "Ni"))

    def act():
        write_results(tmp / "maps.h5", reference_fit(), method="LCF", input_path=stack_path)
        return read_results(tmp / "maps.h5")
    return act, [stack_path]


def _stale_temporary(tmp):
    target = tmp / "out.h5"
    stale = tmp / ".out.h5.0123456789ab.tmp"      # left by a writer killed mid-write
    stale.write_bytes(b"half a file")
    unrelated = tmp / ".other.h5.0123456789ab.tmp"
    unrelated.write_bytes(b"someone else's")
    return (lambda: (write_stack(target, Stack(transmission(), NI_EV, "Ni")), sorted(os.listdir(tmp)))[1]), []


def _hot_pixel():
    a = transmission()
    a[2, 3, 4] = 65535.0                           # one stuck pixel is not a saturated frame
    return a


SANE = [
    # (id, builder, check(result, tmp_path))
    ("drop_dead_frame", _dropped, _check_dropped),
    ("keep_dead_frame", _read(lambda: with_frame(2, 0.0), bad_frames="keep"), _check_kept),
    ("synthetic_all_constant_stack", _read(np.ones((E, Y, X), np.float32)),
     lambda s, _: (s.transmission == 1).all() and "dropped_frames" not in s.attrs),
    ("transmission_above_one", _read(lambda: transmission(lo=0.9, hi=1.4)),
     lambda s, _: float(s.transmission.max()) > 1.3),
    ("thick_sample_some_nonpositive_pixels", _read(lambda: transmission(lo=-0.05, hi=0.2)),
     lambda s, _: s.transmission.shape == (E, Y, X) and (s.transmission <= 0).any()),
    ("raw_counts_with_flat_in_file_corrected", _raw_counts_with_flat, _check_counts_corrected),
    ("one_hot_pixel_at_full_scale", _read(_hot_pixel), lambda s, _: s.transmission[2, 3, 4] == 65535.0),
    ("element_missing_is_inferred", _read(transmission(), CO_EV, label=None),
     lambda s, _: s.element == "Co" and s.attrs["element_inferred"] is True),
    ("explicit_element_overrides_wrong_label", _read(transmission(), CO_EV, label="Ni", element="Co"),
     lambda s, _: s.element == "Co"),
    ("edge_just_below_scan_start", _read(transmission(), NI_EV + 40.0), lambda s, _: s.element == "Ni"),
    ("write_beside_the_input", _write_beside, lambda s, _: s.source.endswith("processed.h5")),
    ("write_results_beside_the_input", _results_beside,
     lambda r, tmp: (r.input_checksum == stack_checksum(tmp / "stack.h5")
                     and r.attrs["input_file"] == "stack.h5")),
    ("stale_temporary_removed_on_next_write", _stale_temporary,
     lambda names, _: names == [".other.h5.0123456789ab.tmp", "out.h5"]),
]


def _sha(paths):
    return {os.fspath(p): hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


@pytest.mark.parametrize("builder, error, patterns", [pytest.param(b, e, p, id=i) for i, b, e, p in REFUSED])
def test_bad_input_is_refused(tmp_path, builder, error, patterns):
    action, inputs = builder(tmp_path)
    before = _sha(inputs)
    with pytest.raises(error) as info:
        action()
    message = str(info.value)
    missing = [p for p in patterns if not re.search(p, message)]
    assert not missing, f"message lacks {missing}:\n{message}"
    assert _sha(inputs) == before, "an input file changed"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")], "a temporary file was left"


@pytest.mark.parametrize("builder, check", [pytest.param(b, c, id=i) for i, b, c in SANE])
def test_odd_but_legal_input_is_sane(tmp_path, builder, check):
    action, inputs = builder(tmp_path)
    before = _sha(inputs)
    warned = {_dropped: r"dropped 1 frame",
              _raw_counts_with_flat: r"raw detector counts, corrected on reading"}
    expect = pytest.warns(UserWarning, match=warned[builder]) if builder in warned else nullcontext()
    with expect:
        result = action()
    verdict = check(result, tmp_path)
    assert verdict is None or bool(verdict), f"insane result: {result!r}"
    assert _sha(inputs) == before, "an input file changed"


def test_checksum_helper_agrees_with_hashlib(tmp_path):
    path = export(tmp_path / "in.h5", transmission())
    assert stack_checksum(path) == _sha([path])[os.fspath(path)]
