"""Beamline files as they are written: NSLS-II FXI exports, multi-position scans, TIFF stacks.

Files are built here to each layout (FXI writes ``X_eng`` as a list in keV, ``Pixel Size`` as
``str(pxl_sz) + "nm"``, ``Magnification`` as a float, averaged ``img_bkg``/``img_dark`` with
their frame axis kept, and scan metadata as scalar datasets).
"""

import re
import warnings

import h5py
import numpy as np
import pytest
import tifffile

from xanes_lib.io import (
    Position,
    Stack,
    list_positions,
    read_energy_list,
    read_position,
    read_stack,
    read_tiff_stack,
    write_stack,
)

E, Y, X = 6, 8, 9
NI_EV = np.array([8300.0, 8320.0, 8332.5, 8333.0, 8340.5, 8400.0])


def _transmission(seed=0):
    return np.random.default_rng(seed).uniform(0.3, 0.95, (E, Y, X)).astype(np.float32)


def _counts(seed=0, *, flat_level=1000.0, dark_level=100.0, per_energy_flat=False):
    """Raw counts (uint16), flat and dark (float32, FXI keeps a leading frame axis) and the truth."""
    rng = np.random.default_rng(seed)
    t = _transmission(seed)
    flat = rng.uniform(0.9, 1.1, (E if per_energy_flat else 1, Y, X)) * flat_level
    dark = np.full((1, Y, X), dark_level)
    images = np.round(t * (flat - dark) + dark).astype(np.uint16)
    expected = (images - dark) / (flat - dark)
    return images, flat.astype(np.float32), dark.astype(np.float32), expected.astype(np.float32)


def fxi_export(path, images, *, energies_eV=NI_EV, pixel_size="21.666666666666668nm", magnification=300.0,
               **datasets):
    """An FXI-style export, as ``export_xanes_scan`` writes it."""
    with h5py.File(path, "w") as f:
        f.create_dataset("uid", data="0b9c4e5e-1f2a")
        f.create_dataset("scan_id", data=12345)
        f.create_dataset("note", data="NMC811 charged, pos 1")
        f.create_dataset("scan_time", data=1.7e9)
        f.create_dataset("X_eng", data=list(np.asarray(energies_eV) / 1000.0))
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
        f.create_dataset("img_xanes", data=images)
        if magnification is not None:
            f.create_dataset("Magnification", data=magnification)
        if pixel_size is not None:
            f.create_dataset("Pixel Size", data=pixel_size)
    return path


# ---------------------------------------------------------------------------- FXI: corrected or raw

def test_corrected_float_fxi_export_is_read_as_transmission(tmp_path):
    t = _transmission()
    flat, dark = np.full((1, Y, X), 1000.0, np.float32), np.full((1, Y, X), 100.0, np.float32)
    stack = read_stack(fxi_export(tmp_path / "xanes_scan2_id_12345.h5", t, img_bkg=flat, img_dark=dark))
    np.testing.assert_array_equal(stack.transmission, t)
    np.testing.assert_array_equal(stack.energies_eV, NI_EV)
    assert stack.element == "Ni" and stack.attrs == {"element_inferred": True}
    assert stack.flat.shape == (Y, X) and stack.dark.shape == (Y, X)        # (1, Y, X) squeezed
    assert stack.pixel_size_nm == pytest.approx(21.666666666666668) and stack.magnification == 300.0
    p = stack.provenance
    assert p["intensity"] == "transmission" and "float32" in p["intensity_note"]
    assert "as stored" in p["intensity_note"]
    assert p["instrument"] == {"uid": "0b9c4e5e-1f2a", "scan_id": 12345, "note": "NMC811 charged, pos 1",
                               "scan_time": 1.7e9}
    assert "21.6667 nm" in p["pixel_size"]
    assert any("used as one averaged frame" in n for n in p["flat_dark"])


def test_a_flat_of_another_exposure_is_refused_naming_the_median(tmp_path):
    images, flat, dark, _ = _counts()
    # the flat of a repeat taken at 40 % of the beam intensity: the corrected images are 2.5 x too bright
    path = fxi_export(tmp_path / "other_repeat.h5", images, img_bkg=0.4 * flat + 60.0, img_dark=dark)
    with pytest.raises(ValueError, match=r"other_repeat\.h5.*their median is \d\.\d+ \(at most 1\.5 "
                                         r".*img_bkg is not the flat field of these images.*flat_field_"):
        read_stack(path, raw_counts="correct")


@pytest.mark.parametrize("per_energy_flat", [False, True])
def test_raw_counts_with_flat_and_dark_are_corrected_by_default_with_a_warning(tmp_path, per_energy_flat):
    images, flat, dark, expected = _counts(per_energy_flat=per_energy_flat)
    path = fxi_export(tmp_path / "raw.h5", images, img_bkg=flat, img_dark=dark)
    with pytest.warns(UserWarning, match=r"raw\.h5: img_xanes had dtype uint16, not float \(median \d+.*\): "
                                         r"raw detector counts, corrected on reading .*raw_counts='auto'.*"
                                         r"raw_counts='refuse'"):
        stack = read_stack(path)
    np.testing.assert_allclose(stack.transmission, expected, rtol=1e-5)
    assert stack.transmission.dtype == np.float32
    assert stack.provenance["intensity"] == "raw counts, flat-field corrected on reading"
    assert stack.provenance["raw_counts_mode"] == "auto"
    assert re.search(r"img_xanes had dtype uint16.*corrected on reading as \(img_xanes - img_dark\) / "
                     r"\(img_bkg - img_dark\)", stack.provenance["intensity_note"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # "correct": asked for, so no warning
        asked = read_stack(path, raw_counts="correct")
    np.testing.assert_array_equal(asked.transmission, stack.transmission)
    assert asked.provenance["raw_counts_mode"] == "correct"
    assert read_stack(path, raw_counts="correct", load_flat_dark=False).flat is None
    with pytest.raises(ValueError, match=r"dtype uint16.*raw detector counts.*read_stack\(path\) "
                                         r"\(raw_counts='auto', the default\) or raw_counts='correct'"):
        read_stack(path, raw_counts="refuse")


def test_raw_float_counts_are_detected_by_their_median(tmp_path):
    images, flat, dark, expected = _counts()
    path = fxi_export(tmp_path / "raw_float.h5", images.astype(np.float32), img_bkg=flat, img_dark=dark)
    with pytest.raises(ValueError, match=r"median of \d+.*frame 0 at 8\.3000 keV.*raw detector counts"):
        read_stack(path, raw_counts="refuse")
    stack = read_stack(path, raw_counts="correct")
    np.testing.assert_allclose(stack.transmission, expected, rtol=1e-5)


def test_raw_counts_without_flat_and_dark_are_refused(tmp_path):
    images, *_ = _counts()
    path = fxi_export(tmp_path / "raw_only.h5", images)
    for mode in ("auto", "refuse", "correct"):
        with pytest.raises(ValueError) as info:
            read_stack(path, raw_counts=mode)
        message = str(info.value)
        for pattern in (r"raw_only\.h5", "raw detector counts", r"has no 'img_bkg' \(flat field\)",
                        r"flat_field_correct\(images, flat, dark\)", "write_stack"):
            assert re.search(pattern, message), f"message lacks {pattern!r}:\n{message}"


def test_raw_counts_with_flat_but_no_dark_are_corrected_with_a_warning(tmp_path):
    images, flat, _, _ = _counts(dark_level=0.0)
    path = fxi_export(tmp_path / "no_dark.h5", images, img_bkg=flat)
    with pytest.warns(UserWarning, match="no img_dark: corrected with a dark level of 0") as record:
        stack = read_stack(path, raw_counts="correct")
    assert record[0].filename == __file__, "the warning points at the caller"
    np.testing.assert_allclose(stack.transmission, images / flat, rtol=1e-5)


def test_img_only_export_with_a_flat_of_ones_is_refused(tmp_path):
    images, flat, dark, _ = _counts()
    dark_subtracted = (images - dark).astype(np.float32)
    path = fxi_export(tmp_path / "img_only.h5", dark_subtracted, img_bkg=np.ones((1, Y, X), np.float32),
                      img_dark=dark)
    for mode in ("auto", "correct"):
        with pytest.raises(ValueError, match=r"img_bkg in .*img_only\.h5 has a median of 1 .*no flat field "
                                             r"of raw counts"):
            read_stack(path, raw_counts=mode)


def test_header_says_raw_counts_and_flat_and_the_chunked_reader_names_the_fix(tmp_path):
    """The chunked reader does not correct counts: it refuses them, naming the fix for this file."""
    from xanes_lib import chunked
    from xanes_lib.io import read_stack_header

    images, flat, dark, _ = _counts()
    with_flat = fxi_export(tmp_path / "with_flat.h5", images, img_bkg=flat, img_dark=dark)
    without = fxi_export(tmp_path / "without.h5", images)
    header = read_stack_header(with_flat)
    assert header.raw_counts and header.has_flat and not read_stack_header(without).has_flat
    with pytest.raises(ValueError, match=r"raw detector counts.*read_stack\(path\) corrects them with its "
                                         r"img_bkg"):
        chunked.open_stack(with_flat)
    with pytest.raises(ValueError, match=r"raw detector counts.*has no img_bkg \(flat field\).*"
                                         r"flat_field_correct"):
        chunked.open_stack(without)


def test_raw_counts_mode_is_checked(tmp_path):
    path = fxi_export(tmp_path / "t.h5", _transmission())
    with pytest.raises(ValueError, match=r"raw_counts must be one of \('auto', 'refuse', 'correct'\); "
                                         r"got 'fix'"):
        read_stack(path, raw_counts="fix")


# ---------------------------------------------------------------------------- Pixel Size, Magnification

@pytest.mark.parametrize("value, expected", [
    ("21.7 nm", 21.7), ("21.666666666666668nm", 21.666666666666668), ("0.0217 um", 21.7),
    (b"0.0217 um", 21.7), ("0.0217 µm", 21.7), (21.7, 21.7), (np.float32(30.0), 30.0), ("21.7", 21.7),
    ("0nm", None),
])
def test_pixel_size_forms(tmp_path, value, expected):
    stack = read_stack(fxi_export(tmp_path / "p.h5", _transmission(), pixel_size=value))
    assert stack.pixel_size_nm == (None if expected is None else pytest.approx(expected))
    assert stack.provenance["pixel_size"].startswith("'Pixel Size' in ")


@pytest.mark.parametrize("value, match", [
    ("twenty nm", "is unparsable"), ("21.7 furlongs", r"unknown unit 'furlongs'"),
    ("-3 nm", "must be positive"), (0.0217, r"without a unit, and 0\.0217 nm is no TXM pixel size"),
])
def test_bad_pixel_size_is_refused(tmp_path, value, match):
    with pytest.raises(ValueError, match=rf"'Pixel Size' in .*p\.h5 .*{match}"):
        read_stack(fxi_export(tmp_path / "p.h5", _transmission(), pixel_size=value))


def test_unknown_magnification_is_left_none_and_noted(tmp_path):
    stack = read_stack(fxi_export(tmp_path / "m.h5", _transmission(), magnification=0.0))
    assert stack.magnification is None and "left unknown" in stack.provenance["magnification"]
    unknown = read_stack(fxi_export(tmp_path / "n.h5", _transmission(), magnification=None))
    assert unknown.magnification is None


def test_magnification_and_provenance_survive_a_round_trip(tmp_path):
    images, flat, dark, _ = _counts()
    stack = read_stack(fxi_export(tmp_path / "raw.h5", images, img_bkg=flat, img_dark=dark),
                       raw_counts="correct")
    write_stack(tmp_path / "corrected.h5", stack)
    back = read_stack(tmp_path / "corrected.h5")
    assert back.magnification == 300.0 and back.pixel_size_nm == pytest.approx(stack.pixel_size_nm)
    assert back.provenance["intensity"] == "transmission"
    assert back.provenance["recorded"]["intensity"] == "raw counts, flat-field corrected on reading"
    assert "provenance" not in back.attrs
    with pytest.raises(ValueError, match="reserved"):
        write_stack(tmp_path / "x.h5", Stack(_transmission(), NI_EV, "Ni", attrs={"provenance": "x"}))


# ---------------------------------------------------------------------------- multi-position scans

def _multipos_folder(tmp_path, repeats=2, positions=2):
    """FXI multipos_2D_xanes_scan2: one file per repeat and position, img_bkg of every repeat."""
    folder = tmp_path / "scan"
    folder.mkdir()
    rng = np.random.default_rng(0)
    flats = rng.uniform(900, 1100, (repeats * E, Y, X)).astype(np.float32)   # all repeats, as FXI writes
    dark = np.full((1, Y, X), 100.0, np.float32)
    truths = {}
    for r in range(repeats):
        for p in range(positions):
            t = _transmission(10 * r + p)
            counts = np.round(t * (flats[r * E:(r + 1) * E] - 100.0) + 100.0).astype(np.uint16)
            name = f"multipos_2D_xanes_scan2_id_777_repeat_{r:02d}_pos_{p:02d}"
            fxi_export(folder / f"{name}.h5", counts, img_bkg=flats, img_dark=dark)
            truths[name] = t
    (folder / "notes.txt").write_text("not a position")
    fxi_export(folder / "xanes_scan2_id_5.h5", _transmission())          # a plain scan: not listed
    return folder, truths


def test_list_positions_of_a_folder(tmp_path):
    folder, truths = _multipos_folder(tmp_path)
    positions = list_positions(folder)
    assert [p.name for p in positions] == sorted(truths)
    assert [(p.repeat, p.position) for p in positions] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {p.scan for p in positions} == {"multipos_2D_xanes_scan2_id_777"}
    assert all(isinstance(p, Position) and p.dataset == "img_xanes" for p in positions)


def test_read_position_by_name_uses_its_repeat_of_the_flat_frames(tmp_path):
    folder, truths = _multipos_folder(tmp_path)
    name = "multipos_2D_xanes_scan2_id_777_repeat_01_pos_01"
    for given in (name, name + ".h5", "repeat_01_pos_01", "repeat_1_pos_1"):
        stack = read_position(folder, given, raw_counts="correct")
        np.testing.assert_allclose(stack.transmission, truths[name], atol=1e-3)
    assert stack.provenance["position"] == {"name": name, "dataset": "img_xanes", "position": 1, "repeat": 1,
                                            "scan": "multipos_2D_xanes_scan2_id_777"}
    assert any("frames 6-11 (repeat 1) used" in n for n in stack.provenance["flat_dark"])


def test_read_stack_of_a_repeat_file_uses_the_block_of_its_repeat(tmp_path):
    folder, truths = _multipos_folder(tmp_path)
    name = "multipos_2D_xanes_scan2_id_777_repeat_01_pos_00"
    stack = read_stack(folder / f"{name}.h5", raw_counts="correct")
    np.testing.assert_allclose(stack.transmission, truths[name], atol=1e-3)
    assert stack.flat.shape == (E, Y, X)


def test_read_position_refuses_unknown_or_ambiguous_names(tmp_path):
    folder, _ = _multipos_folder(tmp_path)
    with pytest.raises(ValueError, match=r"ambiguous.*repeat_00_pos_01.*repeat_01_pos_01"):
        read_position(folder, "pos_01")
    with pytest.raises(ValueError, match=r"holds no position 'pos_07'; its positions are: multipos"):
        read_position(folder, "pos_07")
    with pytest.raises(TypeError, match="unknown option"):
        read_position(folder, "repeat_00_pos_00", flat_field=True)


def test_positions_inside_one_file(tmp_path):
    path = tmp_path / "multi.h5"
    truths = {k: _transmission(i) for i, k in enumerate(("pos_1", "pos_2", "pos_10"))}
    with h5py.File(path, "w") as f:
        f["X_eng"] = NI_EV / 1000.0
        f["Pixel Size"] = "20.0 nm"
        for key, t in truths.items():
            f[f"{key}/img_xanes"] = t
        f["img_xanes_pos3"] = _transmission(7)
    positions = list_positions(path)
    assert [p.name for p in positions] == ["pos_1", "pos_2", "img_xanes_pos3", "pos_10"]
    assert [p.position for p in positions] == [1, 2, 3, 10]
    stack = read_position(path, "pos_10")
    np.testing.assert_array_equal(stack.transmission, truths["pos_10"])
    assert stack.pixel_size_nm == 20.0 and stack.provenance["images"] == "pos_10/img_xanes"
    np.testing.assert_array_equal(read_position(path, "img_xanes_pos3").transmission, _transmission(7))


def test_fxi_scan3_position_files_without_repeats(tmp_path):
    for p in (0, 1, 2):
        fxi_export(tmp_path / f"multipos_2D_xanes_scan3_id_9_pos_{p}.h5", _transmission(p))
    names = [p.name for p in list_positions(tmp_path)]
    assert names == [f"multipos_2D_xanes_scan3_id_9_pos_{p}" for p in (0, 1, 2)]
    np.testing.assert_array_equal(read_position(tmp_path, "pos_2").transmission, _transmission(2))


# ---------------------------------------------------------------------------- TIFF stacks

def test_multipage_tiff_with_one_column_energy_file_in_kev(tmp_path):
    t = _transmission()
    tifffile.imwrite(tmp_path / "stack.tif", t, photometric="minisblack")
    (tmp_path / "energies.txt").write_text("# energy (keV)\n" + "\n".join(f"{e / 1000:.4f}" for e in NI_EV))
    stack = read_tiff_stack(tmp_path / "stack.tif", tmp_path / "energies.txt", element="Ni")
    np.testing.assert_array_equal(stack.transmission, t)
    np.testing.assert_allclose(stack.energies_eV, NI_EV)
    p = stack.provenance
    assert p["reader"] == "read_tiff_stack" and p["images"] == "multi-page TIFF of 6 pages"
    assert p["energies"]["unit"] == "keV" and p["energies"]["columns"] == 1
    assert p["intensity"] == "transmission"


def test_two_column_energy_file_with_an_image_index_in_any_order(tmp_path):
    rows = [f"{i + 1}, {e:.1f}" for i, e in enumerate(NI_EV)]
    (tmp_path / "e.csv").write_text("image, energy_eV\n" + "\n".join(rows[::-1]))
    energies, info = read_energy_list(tmp_path / "e.csv")
    np.testing.assert_array_equal(energies, NI_EV)
    assert (info["index_column"], info["energy_column"], info["index_base"], info["unit"]) == (1, 2, 1, "eV")
    (tmp_path / "swapped.txt").write_text("\n".join(f"{e:.1f}\t{i}" for i, e in enumerate(NI_EV)))
    np.testing.assert_array_equal(read_energy_list(tmp_path / "swapped.txt")[0], NI_EV)


def test_folder_of_tiffs_is_sorted_naturally(tmp_path):
    folder = tmp_path / "tiffs"
    folder.mkdir()
    t = _transmission()
    for i, frame in enumerate(t):
        tifffile.imwrite(folder / f"img_{i * 5}.tif", frame)       # img_0, img_5, img_10, ... img_25
    stack = read_tiff_stack(folder, NI_EV / 1000.0, unit="keV")
    np.testing.assert_array_equal(stack.transmission, t)
    assert stack.element == "Ni" and stack.attrs["element_inferred"] is True
    assert (stack.provenance["first_file"], stack.provenance["last_file"]) == ("img_0.tif", "img_25.tif")


def test_raw_count_tiff_is_corrected_with_given_frames_and_refused_without(tmp_path):
    images, flat, dark, expected = _counts()
    tifffile.imwrite(tmp_path / "raw.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "flat.tif", flat[0])
    with pytest.raises(ValueError, match=r"raw\.tif has dtype uint16.*raw detector counts.*flat=\.\.\., "
                                         r"dark="):
        read_tiff_stack(tmp_path / "raw.tif", NI_EV)
    stack = read_tiff_stack(tmp_path / "raw.tif", NI_EV, flat=tmp_path / "flat.tif", dark=dark)
    np.testing.assert_allclose(stack.transmission, expected, rtol=1e-5)
    assert stack.provenance["intensity"] == "raw counts, flat-field corrected on reading"


@pytest.mark.parametrize("energies, match", [
    (NI_EV[:-1], r"holds 6 images but 5 energies were given"),
    (NI_EV[::-1], r"must increase strictly; got a drop at index 1"),
    (NI_EV / 1e6, r"hard X-ray edges lie at 1-200 keV"),
])
def test_tiff_energies_are_checked(tmp_path, energies, match):
    tifffile.imwrite(tmp_path / "s.tif", _transmission(), photometric="minisblack")
    with pytest.raises(ValueError, match=match):
        read_tiff_stack(tmp_path / "s.tif", energies, unit="eV")


def test_mismatched_energy_file_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", _transmission(), photometric="minisblack")
    (tmp_path / "e.txt").write_text("\n".join(str(e) for e in NI_EV[:4]))
    with pytest.raises(ValueError, match=r"s\.tif holds 6 images but the energy list .*e\.txt has 4 "
                                         r"energies"):
        read_tiff_stack(tmp_path / "s.tif", tmp_path / "e.txt")


@pytest.mark.parametrize("text, match", [
    ("8300 1.0\n8320 0.9\n", r"neither is an image index"),
    ("8300\n8320 1\n", r"line 2 has 2 column\(s\)"),
    ("8300\nabc\n", r"line 2 is not numbers"),
    ("# nothing\n", r"holds no numbers"),
    ("1 8300 5\n2 8320 6\n", r"has 3 columns"),
])
def test_bad_energy_files_are_refused(tmp_path, text, match):
    (tmp_path / "e.txt").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_energy_list(tmp_path / "e.txt")


def test_three_page_stack_is_not_taken_for_colour(tmp_path):
    t = _transmission()[:3]
    tifffile.imwrite(tmp_path / "three.tif", t, photometric="minisblack")
    np.testing.assert_array_equal(read_tiff_stack(tmp_path / "three.tif", NI_EV[[0, 3, 5]]).transmission, t)


@pytest.mark.parametrize("shape", [(Y, X, 3), (2, Y, X, 3)])
def test_colour_tiff_and_missing_files_are_refused(tmp_path, shape):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros(shape, np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match=r"colour images .*one 2-D grey-level page per energy"):
        read_tiff_stack(tmp_path / "rgb.tif", NI_EV[:2])
    with pytest.raises(FileNotFoundError):
        read_tiff_stack(tmp_path / "missing.tif", NI_EV)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no TIFF files"):
        read_tiff_stack(tmp_path / "empty", NI_EV)
