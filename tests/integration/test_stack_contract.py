"""A simulated file written to disk follows the DESIGN.md stack-file contract."""

import h5py
import numpy as np
import pytest

from xanes_lib import io, simulation
from xanes_lib.simulation import SimulationConfig


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    cfg = SimulationConfig(element="Co", dose=2000.0, save_flat_dark=True).replace(
        phantom_shape=(40, 48), phantom_pixel_size_nm=300.0)
    return simulation.write_dataset(tmp_path_factory.mktemp("sim"), "contract", [cfg], [21])[0]


def test_keys_types_and_units_on_disk(sim_file):
    with h5py.File(sim_file, "r") as f:
        assert f["img_xanes"].dtype == np.float32 and f["img_xanes"].ndim == 3
        e_kev = f["X_eng"][()]
        assert f["X_eng"].dtype == np.float64 and 7.5 < e_kev.min() < e_kev.max() < 8.0, "keV on disk"
        assert np.all(np.diff(e_kev) > 0)
        assert f.attrs["element"] == "Co" and f.attrs["edge"] == "K"
        assert f["img_bkg"].shape == f["img_xanes"].shape and f["img_dark"].shape == (40, 48)
        assert "nm" in f["Pixel Size"][()].decode()
        gt = f["ground_truth"]
        for key in ("transmission", "background", "fractions", "oxidation_state", "mask", "areal_density"):
            assert key in gt, key
        assert list(gt["fractions"].attrs["references"]) == ["Co3+", "Co4+"]
        assert gt["mask"].dtype == bool and gt["areal_density"].attrs["unit"] == "ug/cm^2"
        for key in ("seed", "dose", "version", "background_amplitude", "phantom_pixel_size_nm"):
            assert key in gt.attrs, key


def test_read_back_and_mean_is_transmission_times_background(sim_file):
    stack = io.read_stack(sim_file)
    truth = io.read_ground_truth(sim_file)
    assert stack.element == "Co" and stack.pixel_size_nm == pytest.approx(300.0)
    assert 7600 < stack.energies_eV[0] < stack.energies_eV[-1] < 7900
    # The stored flat minus dark holds the dose: photons per pixel per energy (mean over the field).
    assert stack.flat is not None and stack.dark is not None
    assert (stack.flat - stack.dark).mean() == pytest.approx(2000.0, rel=0.01)
    expected = truth.transmission.astype(np.float64) * truth.background
    resid = stack.transmission - expected
    assert abs(resid.mean()) < 5 * resid.std() / np.sqrt(resid.size)
    assert np.nanmax(truth.oxidation_state) <= 4.0 and np.nanmin(truth.oxidation_state) >= 3.0


def test_truth_state_is_nan_exactly_outside_the_mask(sim_file):
    truth = io.read_ground_truth(sim_file)
    assert np.isnan(truth.oxidation_state[~truth.mask]).all()
    assert np.isfinite(truth.oxidation_state[truth.mask]).all()


def test_shipped_example_and_simulated_files_pass_the_input_checks(sim_file):
    """The strict read (bad frames, raw counts, element label) accepts the project's own files."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "data" / "example_Ni_NMC811.h5"
    for path, element in ((example, "Ni"), (sim_file, "Co")):
        before = io.stack_checksum(path)
        stack = io.read_stack(path)            # bad_frames="refuse", the default
        assert stack.element == element and "dropped_frames" not in stack.attrs
        assert 0.0 < float(np.median(stack.transmission)) < 1.5
        assert io.stack_checksum(path) == before, "reading changed the file"
