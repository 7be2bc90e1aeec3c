"""Every numbered notebook runs headless through papermill in its quick mode, in order.

The executed notebooks land in ``--quick-dir`` (default ``build/notebooks-quick``); the
``nbval`` step of ``make test`` then re-executes them and compares the summary cells marked
``# NBVAL_CHECK_OUTPUT`` with these outputs (same seed, same numbers).
"""

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from xanes_lib.notebooks import NOTEBOOKS_DIR, count_figures, list_notebooks, run_notebook

#: A figure made unconditionally: a top-level (not indented) line that creates one.
_DRAWS = re.compile(r"^\S.*\bplt\.(subplots|figure)\(", re.M)

NOTEBOOKS = list_notebooks()


@pytest.fixture(scope="session")
def quick_dir(request):
    path = Path(request.config.getoption("--quick-dir")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_notebooks_exist():
    assert NOTEBOOKS, f"no numbered notebooks in {NOTEBOOKS_DIR}"
    numbers = [nb.name[:2] for nb in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_quick(notebook, quick_dir):
    out = quick_dir / notebook.name
    params = {"quick": True, "seed": 0, "data_dir": str(quick_dir / "data")}
    run_notebook(notebook, out, parameters=params, timeout=600)
    cells = json.loads(out.read_text())["cells"]
    checked = [c for c in cells if c["cell_type"] == "code"
               and "NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert checked, f"{notebook.name} has no summary cell marked # NBVAL_CHECK_OUTPUT"
    for c in checked:
        assert c["outputs"] and c["execution_count"], f"summary cell of {notebook.name} printed nothing"
    # Every cell that draws a figure shows it in the executed notebook (inline backend).
    drawing = [i for i, c in enumerate(cells)
               if c["cell_type"] == "code" and _DRAWS.search("".join(c["source"]))]
    blank = [i for i in drawing
             if not any("image/png" in o.get("data", {}) for o in cells[i].get("outputs", []))]
    assert not blank, f"{notebook.name}: cells {blank} draw a figure but show none"
    assert count_figures(out) >= len(drawing)


def test_training_from_scratch_runs_quick(quick_dir, tmp_path):
    # What `make weights` runs (notebook 02 with train_from_scratch), on notebook 01's quick data.
    notebook = next(nb for nb in NOTEBOOKS if nb.name.startswith("02_"))
    if not any((quick_dir / "data").glob("train_*.h5")):
        pytest.skip("notebook 01's quick data is missing (run the notebook tests in order)")
    # A copy: the networks trained here must not be found by the other notebooks' runs.
    data = shutil.copytree(quick_dir / "data", tmp_path / "data",
                           ignore=shutil.ignore_patterns("*.pt", "valence_*", "adapted_*"))
    out = tmp_path / notebook.name
    run_notebook(notebook, out, parameters={"quick": True, "seed": 0, "data_dir": str(data),
                                            "train_from_scratch": True}, timeout=600)
    text = "".join("".join(o.get("text", "")) for c in json.loads(out.read_text())["cells"]
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "training from scratch" in text and "12 steps" in text
    assert "held-out stacks scored: 4 (2 of the foreign family)" in text


# ------------------------------------------------------------------ users' reference files

def _stream_text(path) -> str:
    return "".join("".join(o.get("text", "")) for c in json.loads(Path(path).read_text())["cells"]
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


@pytest.fixture(scope="module")
def ni_foreign_stack(tmp_path_factory):
    """A small Ni stack with one particle in a phase outside the references (and its truth)."""
    from xanes_lib import io
    from xanes_lib.simulation import SimulationConfig, simulate_stack

    cfg = SimulationConfig().replace(phantom_shape=(96, 96), phantom_pixel_size_nm=150.0, dose=1000.0,
                                     foreign_particles=1)
    stack, truth = simulate_stack(cfg, seed=3)
    path = tmp_path_factory.mktemp("ni_refs") / "ni_foreign.h5"
    io.write_stack(path, stack, ground_truth=truth)
    return path


def _reference_params(shared_ni_dir) -> dict:
    return {"reference_paths": [str(shared_ni_dir / "ref_NiO.txt"), str(shared_ni_dir / "ref_LiNiO2.txt")],
            "reference_oxidation_states": [2, 3]}


def test_valence_mapping_runs_with_reference_files(shared_ni_dir, ni_foreign_stack, tmp_path):
    """Notebook 04 on measured NiO / LiNiO2 files: the results file holds maps/unexplained."""
    from xanes_lib import io

    notebook = next(nb for nb in NOTEBOOKS if nb.name.startswith("04_"))
    out, results = tmp_path / notebook.name, tmp_path / "valence.h5"
    run_notebook(notebook, out, timeout=600, parameters={
        "quick": True, "seed": 0, "data_dir": str(tmp_path), "input_path": str(ni_foreign_stack),
        "output_path": str(results), **_reference_params(shared_ni_dir)})
    text = _stream_text(out)
    assert "references ['ref_NiO', 'ref_LiNiO2']" in text and "pixels flagged unexplained:" in text
    res = io.read_results(results)
    assert res.references == ["ref_NiO", "ref_LiNiO2"] and res.unexplained_test is not None
    truth = io.read_ground_truth(ni_foreign_stack)
    assert res.unexplained[truth.foreign_mask & res.mask].mean() > 0.5, "the foreign particle is flagged"
    assert res.unexplained[truth.mask & res.mask & ~truth.foreign_mask].mean() < 0.05
    assert np.isnan(res.oxidation_state[res.unexplained]).all()


def test_adaptation_runs_with_reference_files(shared_ni_dir, ni_foreign_stack, tmp_path):
    """Notebook 03 adapts to a Ni stack with measured reference files (no shipped references)."""
    notebook = next(nb for nb in NOTEBOOKS if nb.name.startswith("03_"))
    out, adapted = tmp_path / notebook.name, tmp_path / "adapted.pt"
    run_notebook(notebook, out, timeout=600, parameters={
        "quick": True, "seed": 0, "data_dir": str(tmp_path), "input_path": str(ni_foreign_stack),
        "output_path": str(adapted), **_reference_params(shared_ni_dir)})
    text = _stream_text(out)
    assert "flagged" in text and f"wrote {adapted.name}" in text
    assert adapted.is_file()


# ------------------------------------------------------------------ your data (notebook 05)

def test_your_data_exports_the_maps_and_works_without_ground_truth(tmp_path):
    """Notebook 05 on the shipped drifting example, then on the same images as a TIFF stack.

    The exports exist and hold the maps, the input is untouched, the figures are drawn; the
    TIFF copy (no ground truth, another reader) gives the same maps and skips the accuracy.
    """
    import tifffile

    from xanes_lib import alignment, io

    notebook = next(nb for nb in NOTEBOOKS if nb.name.startswith("05_"))
    example = NOTEBOOKS_DIR.parent / "data" / "example_fxi_drift.h5"
    checksum = io.stack_checksum(example)
    out, maps = tmp_path / notebook.name, tmp_path / "maps"
    run_notebook(notebook, out, timeout=600, parameters={
        "quick": True, "seed": 0, "data_dir": str(tmp_path), "output_dir": str(maps)})
    assert io.stack_checksum(example) == checksum, "the input file was changed"
    stem = example.stem
    names = [f"{stem}_results.h5", f"{stem}_particles.csv"] + [f"{stem}_{m}.tif" for m in io.MAP_TIFF_NAMES]
    assert sorted(p.name for p in maps.iterdir()) == sorted(names)
    res = io.read_results(maps / f"{stem}_results.h5")
    registration = alignment.Alignment.load(maps / f"{stem}_results.h5")
    assert registration.shifts_px.shape == (io.read_stack(example).energies_eV.size, 2)
    assert np.abs(registration.shifts_px).max() > 1.0, "the example drifts and was aligned"
    assert res.attrs["beam_background_before_alignment"].startswith("beam background divided out"), \
        "a drifting stack's beam background is divided out in the detector frame, before aligning"
    np.testing.assert_array_equal(tifffile.imread(maps / f"{stem}_mask.tif"), res.mask)
    np.testing.assert_array_equal(tifffile.imread(maps / f"{stem}_oxidation_state.tif"), res.oxidation_state)
    rows = list(csv.DictReader((maps / f"{stem}_particles.csv").read_text().splitlines()))
    assert rows and list(rows[0]) == list(io.PARTICLE_COLUMNS)
    assert count_figures(out) >= 6, "stack, shifts, before/after, maps, particles, accuracy"
    text = _stream_text(out)
    assert "what the reader found and decided" in text and "files written: 6" in text
    assert re.search(r"RMSE vs truth: \d\.\d\d", text), "the example has ground truth: accuracy shown"

    # The same images as a TIFF stack with an energy list: no ground truth, the same maps.
    stack = io.read_stack(example)
    tifffile.imwrite(tmp_path / "scan.tif", stack.transmission, photometric="minisblack")
    np.savetxt(tmp_path / "energies.txt", stack.energies_eV / 1000.0, fmt="%.6f")
    out_tif = tmp_path / "05_tiff.ipynb"
    run_notebook(notebook, out_tif, timeout=600, parameters={
        "quick": True, "seed": 0, "data_dir": str(tmp_path), "output_dir": str(maps),
        "input_path": str(tmp_path / "scan.tif"), "energy_path": str(tmp_path / "energies.txt")})
    assert "no ground truth in this file" in _stream_text(out_tif)
    for name in ("oxidation_state", "oxidation_state_std", "mask", "unexplained"):
        np.testing.assert_array_equal(tifffile.imread(maps / f"scan_{name}.tif"),
                                      tifffile.imread(maps / f"{stem}_{name}.tif"))

    # One position of a multi-position file, energies in eV as its units attribute says.
    import h5py

    multi = tmp_path / "multi.h5"
    with h5py.File(multi, "w") as f:
        for pos in ("pos_01", "pos_02"):
            f[f"{pos}/img_xanes"] = stack.transmission
            f[f"{pos}/X_eng"] = stack.energies_eV
            f[f"{pos}/X_eng"].attrs["units"] = "eV"
    run_notebook(notebook, tmp_path / "05_position.ipynb", timeout=600, parameters={
        "quick": True, "seed": 0, "data_dir": str(tmp_path), "output_dir": str(maps),
        "input_path": str(multi), "position": "pos_02"})
    for name in ("oxidation_state", "mask"):
        np.testing.assert_array_equal(tifffile.imread(maps / f"multi_pos_02_{name}.tif"),
                                      tifffile.imread(maps / f"{stem}_{name}.tif"))
