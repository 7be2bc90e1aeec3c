"""Tests of xanes_lib.io.export: TIFF maps and per-particle statistics (CSV)."""

from __future__ import annotations

import csv
import dataclasses
import types

import numpy as np
import pytest
import tifffile

from xanes_lib.io import (
    MAP_TIFF_NAMES,
    PARTICLE_COLUMNS,
    particle_labels,
    particle_statistics,
    read_results,
    write_map_tiffs,
    write_particle_csv,
    write_results,
)
from xanes_lib.io import export as export_module
from xanes_lib.mapping import fit_references
from xanes_lib.physics import build_model
from xanes_lib.simulation import default_energy_grid
from xanes_lib.spectra import default_references

E = default_energy_grid("Ni")
REFS = default_references("Ni")


def _maps(**changes):
    """Two particles: a 2 x 2 square (states 2, 3, 4, NaN) and a 1 x 3 bar (states 3), 6 x 6 pixels."""
    ox = np.full((6, 6), np.nan)
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True
    ox[0:2, 0:2] = [[2.0, 3.0], [4.0, np.nan]]
    mask[4, 2:5] = True
    ox[4, 2:5] = 3.0
    std = np.where(mask, 0.1, np.nan)
    std[4, 2:5] = 0.3
    flags = np.zeros((6, 6), bool)
    flags[1, 1] = True                      # the NaN pixel of the square: unexplained
    fields = dict(oxidation_state=ox, oxidation_state_std=std, mask=mask, unexplained=flags)
    return types.SimpleNamespace(**{**fields, **changes})


@pytest.fixture
def fitted():
    """A real fit of a small noisy stack (references, background) with two pixels flagged."""
    rng = np.random.default_rng(3)
    model = build_model(E, np.stack([r.spectrum(E) for r in REFS]))
    coeffs = np.stack([rng.uniform(0.1, 0.5, (5, 6)), rng.uniform(0.1, 0.5, (5, 6)),
                       np.full((5, 6), 0.3), np.full((5, 6), 0.05)])
    a = model.predict(coeffs) + rng.normal(0, 0.005, (E.size, 5, 6))
    mask = np.ones((5, 6), bool)
    mask[0, :] = False
    fit = fit_references(a, E, REFS, mask=mask)
    flags = np.zeros((5, 6), bool)
    flags[2, 3] = flags[3, 3] = True
    nan = np.where(flags, np.nan, 1.0)
    return dataclasses.replace(fit, oxidation_state=fit.oxidation_state * nan, fractions=fit.fractions * nan,
                               oxidation_state_std=fit.oxidation_state_std * nan,
                               fractions_std=fit.fractions_std * nan, unexplained=flags,
                               unexplained_test={"method": "test"})


# ------------------------------------------------------------------ TIFF maps


def test_tiffs_hold_the_maps_with_their_types(tmp_path, fitted):
    paths = write_map_tiffs(tmp_path / "new", fitted, prefix="s1_", pixel_size_nm=250.0)
    assert list(paths) == list(MAP_TIFF_NAMES)
    assert {p.name for p in paths.values()} == {f"s1_{n}.tif" for n in MAP_TIFF_NAMES}
    ox = tifffile.imread(paths["oxidation_state"])
    assert ox.dtype == np.float32
    np.testing.assert_array_equal(ox, fitted.oxidation_state.astype(np.float32))   # NaN included
    np.testing.assert_array_equal(tifffile.imread(paths["oxidation_state_std"]),
                                  fitted.oxidation_state_std.astype(np.float32))
    mask, flags = tifffile.imread(paths["mask"]), tifffile.imread(paths["unexplained"])
    assert mask.dtype == np.uint8 and flags.dtype == np.uint8
    np.testing.assert_array_equal(mask, fitted.mask)
    np.testing.assert_array_equal(flags, fitted.unexplained)
    with tifffile.TiffFile(paths["mask"]) as tif:
        assert tif.imagej_metadata["unit"] == "um"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(4.0)                     # 250 nm: 4 pixels per um
    assert not list(tmp_path.rglob("*.tmp*")), "no temporary file is left behind"


def test_tiffs_of_a_fit_without_flags_and_of_a_results_file_agree(tmp_path, fitted):
    unflagged = dataclasses.replace(fitted, unexplained=None, unexplained_test=None)
    paths = write_map_tiffs(tmp_path, unflagged)
    assert not tifffile.imread(paths["unexplained"]).any()
    with tifffile.TiffFile(paths["mask"]) as tif:
        assert "unit" not in (tif.imagej_metadata or {})           # pixel size unknown: not written
    write_results(tmp_path / "r.h5", fitted, method="test", edge_energy_eV=np.full(fitted.mask.shape, 8340.0))
    from_file = write_map_tiffs(tmp_path, read_results(tmp_path / "r.h5"), prefix="r_")
    for name in MAP_TIFF_NAMES:
        np.testing.assert_array_equal(tifffile.imread(from_file[name]),
                                      tifffile.imread(write_map_tiffs(tmp_path, fitted)[name]))


def test_tiffs_never_overwrite_the_input_nor_an_existing_file_when_asked(tmp_path, fitted):
    first = write_map_tiffs(tmp_path, fitted)
    before = {p: p.read_bytes() for p in first.values()}
    with pytest.raises(ValueError, match="input file"):
        write_map_tiffs(tmp_path, _maps(), inputs=[first["mask"]])
    with pytest.raises(FileExistsError, match="overwrite=False"):
        write_map_tiffs(tmp_path, _maps(), overwrite=False)
    assert {p: p.read_bytes() for p in first.values()} == before, "nothing was written"


def test_a_failed_tiff_write_leaves_the_old_file(tmp_path, fitted, monkeypatch):
    paths = write_map_tiffs(tmp_path, fitted)
    old = paths["oxidation_state"].read_bytes()

    def broken(path, data, **options):
        with open(path, "wb") as f:
            f.write(b"II*\x00 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        write_map_tiffs(tmp_path, _maps())
    assert paths["oxidation_state"].read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


@pytest.mark.parametrize(("changes", "kwargs", "error", "match"), [
    ({"mask": np.ones((6, 6))}, {}, ValueError, "mask must be a boolean"),
    ({"oxidation_state_std": np.zeros((5, 6))}, {}, ValueError, r"oxidation_state_std has shape \(5, 6\)"),
    ({"unexplained": np.zeros((6, 6), int)}, {}, ValueError, "unexplained must be boolean"),
    ({}, {"pixel_size_nm": -2.0}, ValueError, "pixel_size_nm must be a finite positive"),
    ({}, {"prefix": "sub/dir_"}, ValueError, "without a path separator"),
])
def test_tiffs_refuse_bad_inputs(tmp_path, changes, kwargs, error, match):
    with pytest.raises(error, match=match):
        write_map_tiffs(tmp_path, _maps(**changes), **kwargs)
    assert not list(tmp_path.iterdir())


def test_tiffs_need_the_maps(tmp_path):
    with pytest.raises(TypeError, match=r"lacks \['oxidation_state_std'\]"):
        write_map_tiffs(tmp_path, types.SimpleNamespace(oxidation_state=np.zeros((2, 2)),
                                                        mask=np.ones((2, 2), bool)))


# ------------------------------------------------------------------ particles


def test_particle_labels_follow_the_connectivity():
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], bool)
    assert particle_labels(mask)[1] == 2
    labels, n = particle_labels(mask, connectivity=2)
    assert n == 1 and labels.dtype == np.int32 and set(labels[mask]) == {1}
    with pytest.raises(ValueError, match="connectivity must be 1"):
        particle_labels(mask, connectivity=4)
    with pytest.raises(ValueError, match="mask must be a boolean"):
        particle_labels(mask.astype(int))


def test_particle_statistics_of_known_regions():
    rows = particle_statistics(_maps())
    assert [list(r) for r in rows] == [list(PARTICLE_COLUMNS)] * 2
    square, bar = rows
    assert (square["label"], square["n_pixels"], square["n_mapped"]) == (1, 4, 3)
    assert (square["centroid_y_px"], square["centroid_x_px"]) == (0.5, 0.5)
    assert square["oxidation_state_mean"] == pytest.approx(3.0)
    assert square["oxidation_state_median"] == pytest.approx(3.0)
    assert square["oxidation_state_spread"] == pytest.approx(np.std([2.0, 3.0, 4.0]))
    assert square["oxidation_state_std_mean"] == pytest.approx(0.1)
    assert square["unexplained_share"] == pytest.approx(0.25)
    assert (bar["label"], bar["n_pixels"], bar["centroid_y_px"], bar["centroid_x_px"]) == (2, 3, 4.0, 3.0)
    assert bar["oxidation_state_spread"] == 0.0 and bar["oxidation_state_std_mean"] == pytest.approx(0.3)
    assert bar["unexplained_share"] == 0.0
    assert [r["label"] for r in particle_statistics(_maps(), min_pixels=4)] == [1]   # labels kept


def test_a_particle_without_a_mapped_pixel_has_nan_statistics():
    maps = _maps()
    maps.oxidation_state[0:2, 0:2] = np.nan
    maps.unexplained[0:2, 0:2] = True
    square = particle_statistics(maps)[0]
    assert square["n_mapped"] == 0 and square["unexplained_share"] == 1.0
    assert all(np.isnan(square[k]) for k in ("oxidation_state_mean", "oxidation_state_median",
                                             "oxidation_state_spread", "oxidation_state_std_mean"))


def test_particle_statistics_of_a_fit_match_its_maps(fitted):
    rows = particle_statistics(fitted)
    assert len(rows) == 1 and rows[0]["n_pixels"] == int(fitted.mask.sum())
    assert rows[0]["n_mapped"] == int(fitted.mask.sum()) - 2
    assert rows[0]["oxidation_state_mean"] == pytest.approx(np.nanmean(fitted.oxidation_state), rel=1e-6)
    assert rows[0]["unexplained_share"] == pytest.approx(2 / fitted.mask.sum())
    assert particle_statistics(dataclasses.replace(fitted, mask=np.zeros_like(fitted.mask))) == []


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_particle_statistics_refuses_a_bad_minimum(bad):
    with pytest.raises(ValueError, match="min_pixels must be an integer >= 1"):
        particle_statistics(_maps(), min_pixels=bad)


# ------------------------------------------------------------------ CSV


def test_csv_round_trip(tmp_path):
    rows = particle_statistics(_maps())
    rows[0]["oxidation_state_mean"] = np.float32(3.0)              # numpy scalars are written as numbers
    path = write_particle_csv(tmp_path / "sub" / "particles.csv", rows)
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == list(PARTICLE_COLUMNS) and len(back) == 2
    for row, read in zip(rows, back, strict=True):
        for key, value in row.items():
            assert float(read[key]) == pytest.approx(float(value), rel=1e-5)
    assert [int(r["label"]) for r in back] == [1, 2]
    assert not list(tmp_path.rglob("*.tmp*"))


def test_csv_of_no_particle_has_the_header_and_extra_columns_follow(tmp_path):
    assert (write_particle_csv(tmp_path / "none.csv", []).read_text().strip()
            == ",".join(PARTICLE_COLUMNS))
    rows = [{**r, "sample": "A"} for r in particle_statistics(_maps())]
    header = write_particle_csv(tmp_path / "extra.csv", rows).read_text().splitlines()[0]
    assert header.endswith(",sample")
    with open(tmp_path / "none.csv", newline="") as f:
        assert next(csv.reader(f)) == list(PARTICLE_COLUMNS)


def test_csv_refuses_bad_rows_the_input_and_existing_files(tmp_path):
    rows = particle_statistics(_maps())
    with pytest.raises(ValueError, match=r"lacking \['unexplained_share'\]"):
        write_particle_csv(tmp_path / "a.csv", [{k: v for k, v in rows[0].items()
                                                 if k != "unexplained_share"}])
    with pytest.raises(ValueError, match=r"rows\[1\] must be a dict"):
        write_particle_csv(tmp_path / "a.csv", [rows[0], [1, 2]])
    source = tmp_path / "stack.h5"
    source.write_bytes(b"raw data")
    with pytest.raises(ValueError, match="outputs never overwrite their inputs"):
        write_particle_csv(source, rows, inputs=[source])
    assert source.read_bytes() == b"raw data"
    with pytest.raises(FileExistsError, match="overwrite=False"):
        write_particle_csv(source, rows, overwrite=False)
    assert source.read_bytes() == b"raw data" and not (tmp_path / "a.csv").exists()


def test_module_lists_its_names():
    assert set(export_module.__all__) >= {"write_map_tiffs", "particle_statistics", "write_particle_csv"}
