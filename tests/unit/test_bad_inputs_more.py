"""Bad inputs found by probing the public API and the readers as a new user would, one table.

Dead frames, windows and grids without the edge, absorbance passed as transmission (to the
fits, the residual map, the beam background, the readers), mismatched references, stored
images that are neither transmission nor counts, energy lists as spreadsheets write them,
TIFF folders named by decimal energies, outputs inside an input folder, multi-position and
linked HDF5 files, and parameters out of range. Each refused case asserts the error type and
that the message names the bad value and the fix; each legal case asserts a sane result. Every
case checks that its inputs did not change (files byte for byte, arrays value for value).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings

import h5py
import numpy as np
import pytest
import tifffile

from xanes_lib import denoising, evaluation, io, mapping, physics
from xanes_lib.alignment import Alignment, shift_image
from xanes_lib.chunked import map_stack, write_zarr_stack
from xanes_lib.io._intake import natural_key
from xanes_lib.simulation import SimulationConfig, simulate_stack
from xanes_lib.spectra import default_references

REFS = default_references("Ni")
CO_REFS = default_references("Co")
E = np.linspace(8250.0, 8450.0, 41)
E_LOW = np.linspace(8200.0, 8320.0, 41)   # a scan that ends before the Ni edge
T_KIND = {"input_kind": "transmission"}
Y = X = 24


def particle_stack(e=E):
    """(transmission (E, Y, X) float32, mask): a disk of Ni 2.4+ on an empty field, photon-like noise."""
    yy, xx = np.mgrid[:Y, :X]
    mask = (yy - 12) ** 2 + (xx - 12) ** 2 < 64
    spectrum = 0.6 * REFS[0].spectrum(e) + 0.4 * REFS[1].spectrum(e) + 0.3
    a = np.where(mask, 0.8, 0.0) * spectrum[:, None, None] + np.random.default_rng(0).normal(0.0, 0.01,
                                                                                             (e.size, Y, X))
    return np.exp(-a).astype(np.float32), mask


def _on_particles(call, *, dead_frame=None, absorbance=False, e=E):
    """``call(data, mask)`` on the particle stack (one frame set to ``dead_frame``; or -ln of it)."""
    def build(tmp):
        t, mask = particle_stack(e)
        if dead_frame is not None:
            t[7] = dead_frame
        data = -np.log(t) if absorbance else t
        return (lambda: call(data, mask)), [data, mask]
    return build


def _call(fn, *args, **kwargs):
    def build(tmp):
        return (lambda: fn(*args, **kwargs)), [a for a in args if isinstance(a, np.ndarray)]
    return build


def _example():
    """34 energies (keV) and images (float32 transmission) of the shipped FXI example."""
    here = os.path.dirname(os.path.abspath(__file__))
    with h5py.File(os.path.join(here, "..", "..", "data", "example_fxi_drift.h5"), "r") as f:
        return f["X_eng"][()][::2][:34], f["img_xanes"][()][::2][:34, :32, :32]


def _fxi(images, **datasets):
    """A maker of an FXI-layout file holding ``images`` (and ``datasets``) with the example's energies."""
    def make(tmp):
        e_kev, _ = _example()
        path = tmp / "scan.h5"
        with h5py.File(path, "w") as f:
            if images is not None:
                f["img_xanes"] = images() if callable(images) else images
            f["X_eng"] = e_kev
            for key, value in datasets.items():
                f[key] = value
        return path
    return make


def _read(make, **options):
    def build(tmp):
        path = make(tmp)
        return (lambda: io.read_stack(path, **options)), [path]
    return build


def _transmission():
    return _example()[1]


def _zarr_in_kev(tmp):
    t, _ = particle_stack()
    return (lambda: write_zarr_stack(tmp / "k.zarr", t, E / 1000.0, element="Ni")), [t]


def _tiff_folder_output(tmp):
    folder = tmp / "tiffs"
    folder.mkdir()
    _, t = _example()
    for i, frame in enumerate(t[:6]):
        tifffile.imwrite(folder / f"img_{i}.tif", frame)
    fit = mapping.fit_references(*particle_stack()[:1], E, REFS, input_kind="transmission")
    return (lambda: io.write_map_tiffs(folder, fit, inputs=[folder])), [folder]


FALLING = r"looks like absorbance"

REFUSED = [
    # (id, builder, error type, regexes the message must match)
    ("fit_with_a_nan_frame",
     _on_particles(lambda t, m: mapping.fit_references(t, E, REFS, mask=m, input_kind="transmission"),
                   dead_frame=np.nan),
     ValueError, [r"none of the 193 pixels could be fitted", r"frame\(s\) 7 \(8285\.00 eV\)",
                  r"bad_frames='drop'"]),
    ("mask_with_a_zero_frame",
     _on_particles(lambda t, m: mapping.significant_mask(t, E, REFS, **T_KIND), dead_frame=0.0),
     ValueError, [r"none of the 576 pixels", r"7 \(8285\.00 eV\) are non-finite or <= 0",
                  r"energy_window_eV"]),
    ("fit_of_a_scan_ending_before_the_edge",
     _on_particles(lambda t, m: mapping.fit_references(t, E_LOW, REFS, mask=m, **T_KIND), e=E_LOW),
     ValueError, [r"8200\.0-8320\.0 eV hold 41 energies below and 0 above", r"'Ni2\+' at 8339\.9 eV",
                  r"spans the edge"]),
    ("fit_absorbance_as_transmission",
     _on_particles(lambda a, m: mapping.fit_references(a, E, REFS, mask=m, input_kind="transmission"),
                   absorbance=True),
     ValueError, [FALLING, r"median -1\.\d+", r"np\.exp\(-absorbance\)"]),
    ("classical_fit_given_absorbance",
     _on_particles(lambda a, m: evaluation.oxidation_state_fit(a, E, "Ni", mask=m), absorbance=True),
     ValueError, [FALLING]),
    ("calibration_without_a_mask",
     _on_particles(lambda t, m: mapping.calibrate_energy_shift(t, E, REFS, mask=None, **T_KIND)),
     ValueError, [r"mask is required here", r"\(24, 24\)", r"significant_mask"]),
    ("unexplained_without_a_mask",
     _on_particles(lambda t, m: mapping.unexplained_pixels(t, E, REFS, mask=None)),
     ValueError, [r"mask is required here", r"significant_mask"]),
    ("normalize_pre_window_above_the_edge",
     _on_particles(lambda a, m: mapping.normalize_spectra(E, a, relative_pre_window_eV=(10, 80)),
                   absorbance=True),
     ValueError, [r"relative_pre_window_eV=\(10, 80\) must lie below the edge", r"\(-60, -20\)"]),
    ("normalize_transmission", _on_particles(lambda t, m: mapping.normalize_spectra(E, t)),
     ValueError, [r"edge step is negative in \d+% of 576 spectra", r"look like transmission",
                  r"-np\.log\(transmission\)"]),
    ("residual_map_of_negative_transmission",
     _on_particles(lambda t, m: mapping.residual_map(-t, E, element="Ni")),
     ValueError, [r"23616 of 23616 values <= 0", r"Pass transmission in \(0, ~1\.2\]"]),
    ("residual_map_of_absorbance",
     _on_particles(lambda a, m: mapping.residual_map(a, E, element="Ni"), absorbance=True),
     ValueError, [FALLING, r"np\.exp\(-absorbance\)"]),
    ("residual_map_window_a_number",
     _on_particles(lambda t, m: mapping.residual_map(t, E, element="Ni", relative_window_eV=40)),
     ValueError, [r"relative_window_eV must be \(low, high\)", r"got 40"]),
    ("residual_map_other_element",
     _on_particles(lambda t, m: mapping.residual_map(t, E, element="Co")),
     ValueError, [r"'Co3\+' \(Co, edge at 77\d\d\.\d eV\)", r"Ni K edge"]),
    ("model_element_and_references_disagree", _call(physics.reference_model, E, "Co", REFS),
     ValueError, [r"element='Co' but the references \['Ni2\+', 'Ni3\+'\]"]),
    ("beam_background_of_absorbance",
     _on_particles(lambda a, m: denoising.divide_beam_background(a, E, REFS), absorbance=True),
     ValueError, [FALLING]),
    ("beam_background_other_element",
     _on_particles(lambda t, m: denoising.divide_beam_background(t, E, CO_REFS)),
     ValueError, [r"'Co3\+' \(Co, edge at", r"Ni K edge"]),
    ("shift_image_of_a_stack", _on_particles(lambda t, m: shift_image(t, (1.0, 1.0))),
     ValueError, [r"one 2-D \(Y, X\) image; got shape \(41, 24, 24\)", r"apply_alignment"]),
    ("shift_image_nan_shift", _call(shift_image, np.ones((4, 4)), (np.nan, 0.0)),
     ValueError, [r"two finite numbers \(dy, dx\)", r"nan"]),
    ("shift_image_unknown_order", _call(shift_image, np.ones((4, 4)), (1.0, 0.0), order="x"),
     ValueError, [r"order must be one of", r"'x'"]),
    ("zarr_store_in_kev", _zarr_in_kev, ValueError, [r"look like keV", r"multiply by 1000"]),
    ("map_stack_nan_threshold",
     lambda tmp: ((lambda: map_stack(tmp / "s.zarr", tmp / "o.h5", element="Ni", mask_threshold=np.nan)), []),
     ValueError, [r"mask_threshold must be a finite significance", r"nan"]),
    ("edge_energy_level_nan",
     _on_particles(lambda a, m: mapping.edge_energy(E, a, level=np.nan), absorbance=True),
     ValueError, [r"level must be a number in \(0, 1\)", r"nan"]),
    ("flag_unexplained_negative_n_mad",
     _call(mapping.flag_unexplained, np.ones((4, 4)), np.ones((4, 4), bool), n_mad=-5.0),
     ValueError, [r"n_mad must be a finite number > 0", r"-5\.0"]),
    ("flag_unexplained_float_mask", _call(mapping.flag_unexplained, np.ones((4, 4)), np.full((4, 4), 0.5)),
     ValueError, [r"mask must be a boolean \(Y, X\) = \(4, 4\) array; got float64"]),
    ("self_tuned_four_states_for_two_references",
     _on_particles(lambda t, m: denoising.self_tuned_gaussian(t, E, element="Ni",
                                                              oxidation_states=[2, 3, 4, 5])),
     ValueError, [r"one finite state per reference of the model \(2: \['Ni2\+', 'Ni3\+'\]\)",
                  r"\[2, 3, 4, 5\]"]),
    ("self_tuned_negative_width",
     _on_particles(lambda t, m: denoising.self_tuned_gaussian(t, E, element="Ni", sigmas_px=(-1.0, 1.0))),
     ValueError, [r"sigmas_px must be one or more finite Gaussian widths >= 0", r"\(-1\.0, 1\.0\)"]),
    ("classical_gaussian_without_sigma",
     _on_particles(lambda t, m: evaluation.classical_denoise(t, "gaussian")),
     ValueError, [r"needs sigma=\.\.\., e\.g\. sigma=1\.0"]),
    ("unknown_edge_name", _call(physics.tabulated_edge_energy, "Ni", "Q"),
     ValueError, [r"no tabulated 'Q' edge for element 'Ni'", r"'K', 'L1'"]),
    ("simulate_negative_seed",
     _call(simulate_stack, SimulationConfig().replace(phantom_shape=(16, 16)), seed=-1),
     ValueError, [r"seed must be an integer >= 0; got -1"]),
    ("simulate_without_the_edge",
     lambda tmp: ((lambda: SimulationConfig(element="Ni", energies_eV=tuple(np.linspace(7650.0, 7850.0, 9)))),
                  []),
     ValueError, [r"span 7650\.0-7850\.0 eV but the Ni K edge is at 8333\.0 eV"]),
    ("simulate_references_of_another_element",
     lambda tmp: ((lambda: simulate_stack(SimulationConfig(element="Ni", references=("Co3+", "Co4+")).replace(
         phantom_shape=(16, 16)))), []),
     ValueError, [r"references \['Co3\+', 'Co4\+'\] are not Ni spectra"]),
    ("read_absorbance_stored_as_transmission", _read(_fxi(lambda: -np.log(_transmission()))),
     ValueError, [r"img_xanes in .*scan\.h5 looks like absorbance -ln\(T\)", r"rises across the edge",
                  r"np\.exp\(-absorbance\)"]),
    ("read_scaled_float_images_with_a_flat",
     _read(_fxi(lambda: 4.0 * _transmission(), img_bkg=np.full((1, 32, 32), 4.2, np.float32))),
     ValueError, [r"median of 3\.\d+", r"above 1\.5, so it is not transmission",
                  r"img_bkg of the file is not applied", r"flat_field_correct"]),
    ("read_percent_transmission_with_a_flat_of_counts",
     _read(_fxi(lambda: 100.0 * _transmission(), img_bkg=np.full((1, 32, 32), 3000.0, np.float32),
                img_dark=np.full((1, 32, 32), 100.0, np.float32))),
     ValueError, [r"their median is -0\.\d+: about 0", r"not the flat field of these images", r"per cent"]),
    ("read_only_positions", _read(_fxi(None, **{"pos_01/img_xanes": np.ones((34, 4, 4), np.float32)})),
     ValueError, [r"has no 'img_xanes' at its root but holds 1 positions \('pos_01'\)", r"read_position"]),
    ("read_a_folder", lambda tmp: ((lambda: io.read_stack(tmp)), []),
     IsADirectoryError, [r"is a folder, not a stack file", r"read_tiff_stack", r"list_positions"]),
    ("read_a_missing_external_link",
     _read(_fxi(h5py.ExternalLink("missing_raw.h5", "/img_xanes"))),
     ValueError, [r"'img_xanes' in .*scan\.h5 cannot be opened", r"external link", r"Copy the linked file"]),
    ("tiff_exports_into_the_input_folder", _tiff_folder_output, ValueError,
     [r"lies in the input .*tiffs, a folder", r"Write the outputs elsewhere"]),
    ("stack_built_with_kev", _call(lambda: io.Stack(np.ones((41, 4, 4), np.float32), E / 1000.0, "Ni")),
     ValueError, [r"Stack\.energies_eV look like keV", r"multiply by 1000"]),
    ("stack_built_energy_axis_last", _call(lambda: io.Stack(np.ones((4, 4, 41), np.float32), E, "Ni")),
     ValueError, [r"\(E, Y, X\) with E = 41 energies", r"\(4, 4, 41\)", r"np\.moveaxis"]),
    ("stack_built_with_another_element", _call(lambda: io.Stack(np.ones((41, 4, 4), np.float32), E, "Co")),
     ValueError, [r"element='Co'", r"Ni K edge", r"pass element='Ni'"]),
    ("bare_pixel_size_of_1_5", _read(_fxi(_transmission, **{"Pixel Size": 1.5})),
     ValueError, [r"'Pixel Size' in .*scan\.h5 is 1\.5 without a unit", r"'20\.0 nm'"]),
    ("self_tuned_without_an_element",
     _on_particles(lambda t, m: denoising.self_tuned_gaussian(t, E)),
     ValueError, [r"element is None", r"pass element="]),
    ("map_stack_of_an_array", _on_particles(lambda t, m: map_stack(t, "o.h5", element="Ni")),
     TypeError, [r"source must be the path of a stack file", r"got ndarray", r"write_zarr_stack"]),
    ("roc_auc_overlapping_sets",
     _call(evaluation.roc_auc, np.arange(4.0), np.ones(4, bool), np.ones(4, bool)),
     ValueError, [r"4 pixel\(s\) are both positive and negative", r"mask & ~positives"]),
    ("boundary_mask_of_another_shape",
     _call(evaluation.boundary_mask, np.ones((4, 4), bool), np.ones((3, 4))),
     ValueError, [r"mask \(4, 4\) and state \(3, 4\)"]),
    ("resolved_share_of_a_map", _call(mapping.resolved_share, np.ones((4, 4))),
     TypeError, [r"fit must be a ReferenceFit", r"got ndarray"]),
    ("white_line_in_a_one_point_window",
     _on_particles(lambda a, m: mapping.white_line_energy(E, a, energy_window_eV=(8340.0, 8341.0)),
                   absorbance=True),
     ValueError, [r"holds 1 energies; a peak needs at least 3"]),
    ("alignment_of_minus_one_energies", _call(lambda: Alignment.identity(-1)),
     ValueError, [r"n_energies must be an integer >= 1", r"-1"]),
    ("stack_of_integer_counts", _call(lambda: io.Stack(np.ones((41, 4, 4), np.int64), E, "Ni")),
     ValueError, [r"must be float transmission", r"int64", r"flat_field_correct"]),
    ("model_in_kev", _call(lambda: physics.build_model(E / 1000.0, np.ones((1, 41)))),
     ValueError, [r"look like keV", r"multiply by 1000"]),
    ("residual_map_in_kev", _on_particles(lambda t, m: mapping.residual_map(t, E / 1000.0, element="Ni")),
     ValueError, [r"look like keV"]),
    ("fit_background_as_a_string",
     _on_particles(lambda t, m: mapping.fit_references(t, E, REFS, mask=m, background="constant", **T_KIND)),
     ValueError, [r"background must be a sequence of term names", r"\('constant',\)"]),
]


def _snapshot(inputs):
    out = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            out.append(item.copy())
        elif os.path.isdir(item):
            out.append(sorted((n, hashlib.sha256((item / n).read_bytes()).hexdigest())
                              for n in os.listdir(item)))
        else:
            out.append(hashlib.sha256(item.read_bytes()).hexdigest())
    return out


def _unchanged(inputs, before):
    for now, old in zip(_snapshot(inputs), before, strict=True):
        if isinstance(now, np.ndarray):
            np.testing.assert_array_equal(now, old)
        else:
            assert now == old


@pytest.mark.parametrize("case, build, error, patterns", REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_input_is_refused(tmp_path, case, build, error, patterns):
    action, inputs = build(tmp_path)
    before = _snapshot(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error) as info:
            action()
    message = str(info.value)
    missing = [p for p in patterns if not re.search(p, message)]
    assert not missing, f"message lacks {missing}:\n{message}"
    _unchanged(inputs, before)


# ---------------------------------------------------------------------------- legal but odd: sane results

def test_tiff_folder_named_by_decimal_energies_is_read_in_energy_order(tmp_path):
    e_kev, t = _example()
    for frame, e in zip(t, e_kev, strict=True):
        tifffile.imwrite(tmp_path / f"xanes_{e:g}keV.tif", frame)
    names = [f"xanes_{e:g}keV.tif" for e in e_kev]
    assert sorted(names, key=natural_key) != names  # digit runs compared as integers misorder them
    stack = io.read_tiff_stack(tmp_path, e_kev * 1000.0, element="Ni")
    np.testing.assert_array_equal(stack.transmission, t)
    assert "decimal points" in stack.provenance["images"]


@pytest.mark.parametrize("text, encoding", [
    ("\ufeff8.2330\n8.2530\n8.2730\n", "utf-8"),             # byte-order mark (Notepad, Excel "CSV UTF-8")
    ("8233.0\n8253.0\n8273.0\n", "utf-16"),                  # PowerShell ">"
    ('"0","8233.0"\n"1","8253.0"\n"2","8273.0"\n', "utf-8"),  # quoted CSV
    ("8233.0 eV\n8253.0 eV\n8273.0 eV\n", "utf-8"),          # a unit after each number
])
def test_energy_lists_as_written_by_other_programs(tmp_path, text, encoding):
    path = tmp_path / "e.txt"
    path.write_text(text, encoding=encoding)
    energies, info = io.read_energy_list(path)
    np.testing.assert_allclose(energies, [8233.0, 8253.0, 8273.0])
    assert info["header_lines"] == 0


@pytest.mark.parametrize("preview_first", [True, False])
def test_tiff_stack_beside_a_preview_or_mask_page_is_read_with_a_warning(tmp_path, preview_first):
    e_kev, t = _example()
    with tifffile.TiffWriter(tmp_path / "p.tif") as w:
        if preview_first:
            w.write(np.zeros((8, 8), np.uint8))
        w.write(t, photometric="minisblack")
        if not preview_first:
            w.write(np.ones((32, 32), np.uint8))
    with pytest.warns(UserWarning, match=r"read its series of 34 pages .*left out 1 other series"):
        stack = io.read_tiff_stack(tmp_path / "p.tif", e_kev * 1000.0)
    np.testing.assert_array_equal(stack.transmission, t)


def test_tiff_pages_appended_one_by_one_are_one_stack(tmp_path):
    e_kev, t = _example()
    for frame in t:
        tifffile.imwrite(tmp_path / "app.tif", frame, append=True)  # one series per page
    np.testing.assert_array_equal(io.read_tiff_stack(tmp_path / "app.tif", e_kev * 1000.0).transmission, t)


def test_energies_in_ev_said_by_a_units_attribute(tmp_path):
    e_kev, t = _example()
    with h5py.File(tmp_path / "ev.h5", "w") as f:
        f["img_xanes"], f["X_eng"] = t, e_kev * 1000.0
        f["X_eng"].attrs["units"] = "eV"
    stack = io.read_stack(tmp_path / "ev.h5")
    np.testing.assert_allclose(stack.energies_eV, e_kev * 1000.0)
    assert stack.provenance["energies"] == "X_eng in eV (its units attribute)"


def test_pixel_size_as_an_attribute_is_read(tmp_path):
    e_kev, t = _example()
    with h5py.File(tmp_path / "px.h5", "w") as f:
        f["img_xanes"], f["X_eng"] = t, e_kev
        f.attrs["Pixel Size"] = "21.7 nm"
    stack = io.read_stack(tmp_path / "px.h5")
    assert stack.pixel_size_nm == pytest.approx(21.7)
    assert "attribute 'Pixel Size'" in stack.provenance["pixel_size"]


def test_root_stack_beside_positions_warns_and_is_recorded(tmp_path):
    e_kev, t = _example()
    path = tmp_path / "multi.h5"
    with h5py.File(path, "w") as f:
        f["img_xanes"], f["X_eng"] = t, e_kev
        f["pos_02/img_xanes"] = t
        f["pos_03/img_xanes"] = t
    with pytest.warns(UserWarning, match=r"also holds 2 position\(s\) \['pos_02', 'pos_03'\].*read_position"):
        stack = io.read_stack(path)
    assert stack.provenance["other_positions"] == ["pos_02", "pos_03"]


def test_results_of_a_tiff_folder_name_the_folder_and_its_checksum(tmp_path):
    folder = tmp_path / "tiffs"
    folder.mkdir()
    for i in range(3):
        (folder / f"img_{i}.tif").write_bytes(bytes([i]) * 10)
    first = io.stack_checksum(folder)
    (folder / "img_1.tif").write_bytes(b"changed")
    assert io.stack_checksum(folder) != first and len(first) == 64


def test_one_reference_warns_that_the_state_is_not_measured():
    t, mask = particle_stack()
    with pytest.warns(UserWarning, match=r"state 2: the oxidation-state map is that value by construction"):
        fit = mapping.fit_references(t, E, REFS[:1], mask=mask, **T_KIND)
    assert np.all(fit.oxidation_state[mask] == 2.0)
