"""Bad inputs through the public API outside xanes_lib.io's readers, one table.

Alignment files, registration, the reference fits, results and TIFF exports, measured
references. Each refused case asserts the error type and that the message names the bad
value and the fix; each legal-but-odd case asserts that the result is sane (and the warning
it gives). Every case also checks that its inputs did not change: files byte for byte, arrays
value for value.
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
import tifffile

from xanes_lib import mapping
from xanes_lib.alignment import Alignment, move_mask, register_stack
from xanes_lib.io import (
    Stack,
    particle_statistics,
    read_energy_list,
    read_results,
    read_stack,
    read_tiff_stack,
    write_map_tiffs,
    write_particle_csv,
    write_results,
    write_stack,
)
from xanes_lib.spectra import default_references, load_references
from xanes_lib.validate import refuse_kev

REFS = default_references("Ni")
CO_REFS = default_references("Co")
E = np.linspace(8250.0, 8450.0, 41)
NI_EV = np.array([8300.0, 8320.0, 8332.5, 8333.0, 8340.5, 8400.0])
Y = X = 24


def particle_stack(noise=0.01, seed=0):
    """(transmission (E, Y, X) float32, mask): a disk of Ni 2.4+ on an empty field, photon-like noise."""
    yy, xx = np.mgrid[:Y, :X]
    mask = (yy - 12) ** 2 + (xx - 12) ** 2 < 64
    thick = np.where(mask, 0.8, 0.0)
    spectrum = 0.6 * REFS[0].spectrum(E) + 0.4 * REFS[1].spectrum(E) + 0.3
    a = thick * spectrum[:, None, None] + np.random.default_rng(seed).normal(0.0, noise, (E.size, Y, X))
    return np.exp(-a).astype(np.float32), mask


_FIT = {}


def small_fit():
    """A fit of ``particle_stack`` with its edge-energy map (built once)."""
    if not _FIT:
        t, mask = particle_stack()
        fit = mapping.fit_references(t, E, REFS, mask=mask, input_kind="transmission")
        _FIT["fit"] = dataclasses.replace(fit, edge_energy_eV=np.full((Y, X), 8340.0))
    return _FIT["fit"]


def notes(tmp):
    path = tmp / "notes.h5"
    path.write_text("energy,transmission\n8333,0.5\n")
    return path


def stack_file(tmp, name="stack.h5", element="Ni"):
    path = tmp / name
    t = np.random.default_rng(0).uniform(0.3, 1.0, (NI_EV.size, 8, 9)).astype(np.float32)
    write_stack(path, Stack(t, NI_EV, element))
    return path


def fxi_file(tmp, pixel_size):
    path = tmp / "p.h5"
    with h5py.File(path, "w") as f:
        f["img_xanes"] = np.random.default_rng(0).uniform(0.3, 1.0, (NI_EV.size, 8, 9)).astype(np.float32)
        f["X_eng"] = NI_EV / 1000.0
        f["Pixel Size"] = pixel_size
    return path


def reference_file(tmp, name="ni2.txt", bom=False):
    e = np.linspace(8250.0, 8450.0, 60)
    text = "\n".join(f"{v:.2f} {s:.5f}" for v, s in zip(e, REFS[0].spectrum(e), strict=True))
    path = tmp / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


# ------------------------------------------------------------------ cases: (action, inputs)
# Each builder takes tmp_path and returns (action, inputs): inputs are files (checked byte for
# byte) and arrays (checked value for value) that the action must not change.

def _save_over(make, *, read_only=False):
    def build(tmp):
        path = make(tmp)
        if read_only:
            os.chmod(path, 0o444)
        return (lambda: Alignment.identity(NI_EV.size).save(path)), [path]
    return build


def _shipped_denoiser():
    from xanes_lib.denoising import load_checkpoint, shipped_checkpoint
    return load_checkpoint(shipped_checkpoint("latent"), device="cpu")


def _adapt(*args, **kwargs):
    from xanes_lib.denoising import adapt
    return adapt(*args, **kwargs)


def _denoise_stack(*args, **kwargs):
    from xanes_lib.denoising import denoise_stack
    return denoise_stack(*args, **kwargs)


def _checkpoint_path():
    from xanes_lib.denoising import shipped_checkpoint
    return shipped_checkpoint("latent")


def _adapt_config(**settings):
    from xanes_lib.denoising import AdaptConfig
    return AdaptConfig(**settings)


def _on_particles(call, absorbance=False):
    def build(tmp):
        t, mask = particle_stack()
        data = -np.log(t) if absorbance else t
        return (lambda: call(data, mask)), [data, mask]
    return build


def _results_with_alignment(tmp):
    return (lambda: write_results(tmp / "r.h5", small_fit(), method="LCF",
                                  alignment=Alignment.identity(5))), []


def _tiff_stack(tmp, element):
    path = tmp / "s.tif"
    tifffile.imwrite(path, np.random.default_rng(0).uniform(0.3, 1.0, (NI_EV.size, 8, 9)).astype(np.float32),
                     photometric="minisblack")
    return (lambda: read_tiff_stack(path, NI_EV, element=element)), [path]


def _mask_folder(tmp):
    (tmp / "m3" / "s_mask.tif").mkdir(parents=True)
    return (lambda: write_map_tiffs(tmp / "m3", small_fit(), prefix="s_")), []


def _truncated(tmp):
    path = stack_file(tmp, "maps.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _on_file(make, call):
    """A file made by ``make(tmp)``, given to ``call``."""
    def build(tmp):
        path = make(tmp)
        return (lambda: call(path)), [path]
    return build


def _call(fn, *args, **kwargs):
    def build(tmp):
        return (lambda: fn(*args, **kwargs)), [a for a in args if isinstance(a, np.ndarray)]
    return build


def _text(name, text):
    """A maker of the text file ``name`` holding ``text``."""
    def make(tmp):
        path = tmp / name
        path.write_text(text)
        return path
    return make


def _export_call(call):
    """``call(tmp)`` on the small fit; no input to check."""
    return lambda tmp: ((lambda: call(tmp)), [])


NAN_MASK = np.where(np.eye(3, dtype=bool), np.nan, 0.0)
CONSTANT = np.ones((6, 32, 32), np.float32)
BOUND_FIX = r"larger max_shift_px"


REFUSED = [
    # (id, builder, error type, regexes the message must match)
    ("alignment_save_over_stack_file", _save_over(stack_file), ValueError,
     [r"refusing to overwrite .*stack\.h5", r"holds \[.*'X_eng'.*'img_xanes'", r"another path",
      r"stack_alignment\.h5"]),
    ("alignment_save_over_read_only_stack", _save_over(stack_file, read_only=True), ValueError,
     [r"stack\.h5", r"holds \[", r"another path"]),
    ("alignment_save_over_text_file", _save_over(notes), ValueError,
     [r"notes\.h5", r"is not an HDF5 file", r"another path"]),
    ("alignment_load_not_hdf5", _on_file(notes, Alignment.load), OSError,
     [r"notes\.h5", r"could not be opened as an HDF5 file", r"completely copied"]),
    ("read_results_not_hdf5", _on_file(notes, read_results), OSError,
     [r"notes\.h5", r"could not be opened as an HDF5 file", r"results file"]),
    ("read_results_truncated", _on_file(_truncated, read_results), OSError,
     [r"maps\.h5", r"could not be opened as an HDF5 file", r"completely copied"]),
    ("fit_transmission_as_absorbance",
     _on_particles(lambda t, m: mapping.fit_references(t, E, REFS, mask=m)), ValueError,
     [r"read as absorbance \(input_kind=None\)", r"looks like transmission",
      r"edge step is negative \(median -", r"input_kind='transmission'"]),
    ("significant_mask_transmission_as_absorbance",
     _on_particles(lambda t, m: mapping.significant_mask(t, E, REFS)), ValueError,
     [r"looks like transmission", r"input_kind='transmission'"]),
    ("calibrate_transmission_as_absorbance",
     _on_particles(lambda t, m: mapping.calibrate_energy_shift(t, E, REFS, mask=m)), ValueError,
     [r"looks like transmission", r"input_kind='transmission'"]),
    ("unexplained_absorbance_as_transmission",
     _on_particles(lambda a, m: mapping.unexplained_pixels(a, E, REFS, mask=m), absorbance=True), ValueError,
     [r"-ln\(transmission\) that is negative \(median -", r"looks like absorbance",
      r"np\.exp\(-absorbance\)"]),
    ("references_of_another_element",
     _on_particles(lambda t, m: mapping.fit_references(t, E, CO_REFS, mask=m, input_kind="transmission")),
     ValueError, [r"'Co3\+' \(Co, edge at 77\d\d\.\d eV\)", r"8250\.0-8450\.0 eV", r"Ni K edge",
                  r"default_references\(stack\.element\)"]),
    ("denoise_with_references_of_another_element",
     _on_particles(lambda t, m: _shipped_denoiser().denoise(t, E, element="Co", progress=False)),
     ValueError, [r"'Co3\+' \(Co, edge at 77\d\d\.\d eV\)", r"Ni K edge"]),
    ("read_stack_given_element_of_another_edge",
     _on_file(stack_file, lambda p: read_stack(p, element="Co")), ValueError,
     [r"stack\.h5 was given element='Co'", r"K edge is at 7\.7090 keV", r"X_eng spans 8\.3000-8\.4000 keV",
      r"Ni K edge", r"pass element='Ni'"]),
    ("read_tiff_given_element_of_another_edge", lambda tmp: _tiff_stack(tmp, "Co"), ValueError,
     [r"s\.tif was given element='Co'", r"the energy list spans 8\.3000-8\.4000 keV", r"element='Ni'"]),
    ("results_with_alignment_of_another_stack", _results_with_alignment, ValueError,
     [r"alignment holds 5 shifts", r"fit used 41 energies", r"alignment=None"]),
    ("pixel_size_in_mm", _on_file(lambda tmp: fxi_file(tmp, "21.7 mm"), read_stack), ValueError,
     [r"'Pixel Size' in .*p\.h5", r"'21\.7 mm'", r"2\.17e\+07 nm is no TXM pixel size",
      r"check the number and its unit"]),
    ("tiff_target_is_a_folder", _mask_folder, IsADirectoryError,
     [r"m3/s_mask\.tif", r"is a folder", r"Nothing was written"]),
    ("move_mask_nan_float_mask", _call(move_mask, NAN_MASK, (1, 0)), ValueError,
     [r"boolean \(Y, X\)", r"float64 \(3, 3\)", r"NaN is neither True nor False"]),
    ("move_mask_3d_mask", _call(move_mask, np.ones((2, 3, 3), bool), (1, 0)), ValueError,
     [r"bool \(2, 3, 3\)"]),
    ("move_mask_shift_of_three", _call(move_mask, np.ones((3, 3), bool), (1.0, 2.0, 3.0)), ValueError,
     [r"two finite numbers \(dy, dx\)", r"\(1\.0, 2\.0, 3\.0\)", r"Alignment\.shifts_px"]),
    ("move_mask_nan_shift", _call(move_mask, np.ones((3, 3), bool), (np.nan, 0.0)), ValueError,
     [r"two finite numbers", r"nan"]),
    ("register_constant_stack", _call(register_stack, CONSTANT, np.linspace(8300.0, 8400.0, 6)), ValueError,
     [r"6 of 6 images are constant", r"0 \(8300\.00 eV, every pixel 1\)", r"bad_frames='drop'"]),
    ("oxidation_state_not_a_number",
     _on_file(reference_file, lambda p: load_references("Ni", [p], ["2+"])), ValueError,
     [r"ni2\.txt", r"'2\+'", r"must be finite numbers, e\.g\. 2 or 2\.5"]),
    ("register_energies_in_kev", _on_particles(lambda t, m: register_stack(t, E / 1000.0)), ValueError,
     [r"energies_eV look like keV \(8\.25 \.\.\. 8\.45\)", r"eV in memory", r"multiply by 1000"]),
    ("denoise_absorbance_as_transmission",
     _on_particles(lambda a, m: _shipped_denoiser().denoise(a, E, element="Ni", progress=False),
                   absorbance=True),
     ValueError, [r"edge step of -ln\(transmission\) that is negative \(median -", r"looks like absorbance",
                  r"np\.exp\(-absorbance\)"]),
    ("denoise_field_of_another_shape",
     _on_particles(lambda t, m: _shipped_denoiser().denoise(t, E, element="Ni", progress=False,
                                                            field=m[:-1])),
     ValueError, [r"field must be a boolean \(Y, X\) = \(24, 24\) array", r"bool \(23, 24\)",
                  r"AlignedStack\.common_mask"]),
    ("denoise_field_without_a_pixel",
     _on_particles(lambda t, m: _shipped_denoiser().denoise(t, E, element="Ni", progress=False,
                                                            field=np.zeros_like(m))),
     ValueError, [r"field selects no pixel", r"AlignedStack\.common_mask\) or None"]),
    ("adapt_absorbance_as_transmission",
     _on_particles(lambda a, m: _adapt(_shipped_denoiser(), a, E, element="Ni", progress=False),
                   absorbance=True),
     ValueError, [r"looks like absorbance", r"np\.exp\(-absorbance\)"]),
    ("energy_list_with_decimal_commas",
     _on_file(_text("e.txt", "8300\n8320\n8332,5\n8333\n8340,5\n8400\n"), read_energy_list), ValueError,
     [r"e\.txt: line 3 holds '8332,5'", r"no line has a decimal point", r"decimal commas",
      r"8300 \.\.\. 8400 eV", r"Write decimal points \('8332\.5'\)"]),
    ("energy_list_index_with_a_gap",
     _on_file(_text("e.txt", "0 8300\n1 8320\n2 8332.5\n4 8333\n5 8340.5\n6 8400\n"), read_energy_list),
     ValueError, [r"e\.txt has two columns", r"column 1 looks like one", r"integers 0\.\.6 \(3 missing\)",
                  r"Number the images 0\.\.5", r"keep only the energy column \(column 2\)"]),
    ("particle_csv_given_the_fit", _export_call(lambda tmp: write_particle_csv(tmp / "p.csv", small_fit())),
     TypeError, [r"rows must be a sequence of dicts", r"got ReferenceFit", r"particle_statistics\(fit\)"]),
    ("particle_csv_arguments_swapped",
     _export_call(lambda tmp: write_particle_csv(particle_statistics(small_fit()), tmp / "p.csv")), TypeError,
     [r"path must be a str or os\.PathLike", r"got list", r"write_particle_csv\(path, rows\)"]),
    ("map_tiffs_arguments_swapped", _export_call(lambda tmp: write_map_tiffs(small_fit(), tmp / "m")),
     TypeError, [r"out_dir must be a str or os\.PathLike", r"got ReferenceFit",
                 r"write_map_tiffs\(out_dir, fit\)"]),
    ("adapt_config_as_a_dict",
     _on_particles(lambda t, m: _adapt(_shipped_denoiser(), t, E, element="Ni", config=dict(max_epochs=1))),
     TypeError, [r"config must be an AdaptConfig or None", r"got dict", r"AdaptConfig\(\*\*settings\)"]),
    ("denoise_given_a_checkpoint_path",
     _on_particles(lambda t, m: _denoise_stack(_checkpoint_path(), t, E, element="Ni", progress=False)),
     TypeError, [r"denoiser must be a xanes_lib\.denoising\.Denoiser", r"got \w*Path",
                 r"load_checkpoint\(path\)"]),
    ("fit_given_one_reference",
     _on_particles(lambda t, m: mapping.fit_references(t, E, REFS[0], mask=m, input_kind="transmission")),
     TypeError, [r"references must be a sequence of reference objects", r"got ParametricReference",
                 r"\[reference\]"]),
    ("fit_given_the_element_as_references",
     _on_particles(lambda t, m: mapping.fit_references(t, E, "Ni", mask=m, input_kind="transmission")),
     TypeError, [r"references must be", r"got str", r"default_references\('Ni'\)"]),
    ("adapt_time_budget_inf", lambda tmp: ((lambda: _adapt_config(time_budget_s=np.inf)), []), ValueError,
     [r"AdaptConfig\.time_budget_s must be a finite number > 0; got inf"]),
]


def _noise_stack():
    return (np.random.default_rng(0).poisson(1000, (20, 64, 64)) / 1000).astype(np.float32)


def _check_no_features(fit, _):
    ref = fit.reference_index
    return (fit.info["no_features"] and fit.info["drift_detected"] is False
            and fit.flagged.sum() == 19 and not fit.flagged[ref] and (fit.shifts_px == 0).all())


def _blob_stack():
    """Five images of one wide blob; image 3 moved by 30 px, beyond the default search (24 px)."""
    yy, xx = np.mgrid[:96, :96]
    centres = [(48, 40), (48.4, 40.3), (47.8, 40.1), (48, 70), (48.2, 39.8)]
    return np.exp(-np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) for cy, cx in centres]))


def _check_bound(fit, _):
    return fit.flagged.tolist() == [False, False, False, True, False] and not fit.info["no_features"]


def _fit_clean_shift(tmp):
    t, mask = particle_stack(noise=0.0)
    return (lambda: mapping.calibrate_energy_shift(t, E, REFS, mask=mask, input_kind="transmission")), \
        [t, mask]


def _tiffs_with_text_pixel_size(tmp):
    def act():
        paths = write_map_tiffs(tmp / "m", small_fit(), pixel_size_nm="21.7 nm")
        with tifffile.TiffFile(paths["mask"]) as f:
            return f.pages[0].tags["XResolution"].value
    return act, []


def _resave(tmp):
    path = tmp / "a.h5"
    Alignment.identity(4).save(path)
    return (lambda: (Alignment.identity(3).save(path), Alignment.load(path))[1]), []


def _unexplained_whole_field(tmp):
    t, mask = particle_stack()
    return (lambda: (mapping.unexplained_pixels(t, E, REFS, mask=np.ones_like(mask)), mask)), [t, mask]


def _fit_with_an_empty_mask(tmp):
    t, mask = particle_stack()
    empty = np.zeros_like(mask)
    return (lambda: mapping.fit_references(t, E, REFS, mask=empty, input_kind="transmission")), [t, empty]


def _check_no_flag_in_empty_field(result, _):
    test, disk = result
    return (not test.flags[~disk].any() and test.mask.all()
            and test.to_attrs()["n_without_edge_step"] >= 0.8 * (~disk).sum())


def _tiff_with_index_energies(tmp):
    path = tmp / "s.tif"
    tifffile.imwrite(path, np.random.default_rng(0).uniform(0.3, 1.0, (NI_EV.size, 8, 9)).astype(np.float32),
                     photometric="minisblack")
    rows = np.c_[np.arange(NI_EV.size), NI_EV]
    return (lambda: read_tiff_stack(path, rows)), [path, rows]


def _one_reference_path(tmp, bom=False):
    path = reference_file(tmp, bom=bom)
    return (lambda: load_references("Ni", str(path), [2])), [path]


SANE = [
    # (id, builder, check(result, tmp_path), warning the call gives or None)
    ("register_featureless_stack", _call(register_stack, _noise_stack(), np.linspace(8300.0, 8400.0, 20)),
     _check_no_features, r"no features to register .* median confidence .* below 1\.3 x"),
    ("register_drift_beyond_the_search", _call(register_stack, _blob_stack(), np.linspace(8300.0, 8400.0, 5),
                                               reference_index=0),
     _check_bound, r"1 image\(s\) found their correlation peak at the search limit of 24 px "
                   rf"\(image\(s\) 3\).*{BOUND_FIX}"),
    ("clean_stack_shift_has_an_uncertainty", _fit_clean_shift,
     lambda c, _: np.isfinite(c.std_eV) and c.std_eV > 0 and abs(c.shift_eV) < 0.05
     and "no finite uncertainty" not in c.reason, None),
    ("tiff_pixel_size_as_text", _tiffs_with_text_pixel_size,
     lambda res, _: abs(res[0] / res[1] - 1000.0 / 21.7) < 1e-3, None),
    ("one_reference_path_as_a_string", _one_reference_path,
     lambda refs, _: len(refs) == 1 and refs[0].oxidation_state == 2.0, None),
    ("reference_file_with_byte_order_mark", lambda tmp: _one_reference_path(tmp, bom=True),
     lambda refs, _: refs[0].energies_eV[0] == 8250.0, None),
    ("alignment_saved_over_an_alignment", _resave, lambda al, _: al.n_energies == 3, None),
    ("unexplained_mask_with_empty_field", _unexplained_whole_field, _check_no_flag_in_empty_field, None),
    ("fit_with_a_mask_of_no_pixel", _fit_with_an_empty_mask,
     lambda fit, _: bool(np.isnan(fit.oxidation_state).all()),
     r"mask selects none of the 576 pixels: every map is NaN.*inverted.*significant_mask"),
    ("tiff_energies_with_an_index_column", _tiff_with_index_energies,
     lambda st, _: (st.energies_eV.tolist() == NI_EV.tolist()
                    and st.provenance["energies"]["index_column"] == 1), None),
]


def _fingerprint(inputs):
    out = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            out.append(item.copy())
        else:
            out.append(hashlib.sha256(open(item, "rb").read()).hexdigest())
    return out


def _unchanged(before, inputs):
    now = _fingerprint(inputs)
    return all(np.array_equal(a, b, equal_nan=True) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(before, now, strict=True))


@pytest.mark.parametrize("builder, error, patterns", [pytest.param(b, e, p, id=i) for i, b, e, p in REFUSED])
def test_bad_input_is_refused(tmp_path, builder, error, patterns):
    action, inputs = builder(tmp_path)
    before = _fingerprint(inputs)
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(error) as info:
        action()
    message = str(info.value)
    missing = [p for p in patterns if not re.search(p, message)]
    assert not missing, f"message lacks {missing}:\n{message}"
    assert _unchanged(before, inputs), "an input changed"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing, "a file was written"


@pytest.mark.parametrize("builder, check, warning",
                         [pytest.param(b, c, w, id=i) for i, b, c, w in SANE])
def test_odd_but_legal_input_is_sane(tmp_path, builder, check, warning):
    action, inputs = builder(tmp_path)
    before = _fingerprint(inputs)
    with pytest.warns(UserWarning, match=warning) if warning else nullcontext():
        result = action()
    verdict = check(result, tmp_path)
    assert verdict is None or bool(verdict), f"insane result: {result!r}"
    assert _unchanged(before, inputs), "an input changed"


def test_refuse_kev_follows_detect_energy_unit():
    """One rule for energies in keV where eV are expected: that of validate.detect_energy_unit."""
    refuse_kev([8330.0, 8340.0], name="e")              # eV
    refuse_kev([300.0, 900.0], name="e")                # unit undecidable: left to the caller's checks
    refuse_kev([-20.0, 50.0], name="e")                 # offsets from an edge are not keV
    refuse_kev([], name="e")
    with pytest.raises(ValueError, match=r"^e look like keV \(8\.33 \.\.\. 8\.34\); energies are eV in "
                                         r"memory: multiply by 1000.* Why eV\.$"):
        refuse_kev(np.array([[8.33], [8.34]]), name="e", context="Why eV.")
    with pytest.raises(ValueError, match=r"^e must be absolute energies in eV \(above 1000\); "
                                         r"got -20 \.\.\. 50: offsets from the edge"):
        refuse_kev([-20.0, 50.0], name="e", absolute=True)
