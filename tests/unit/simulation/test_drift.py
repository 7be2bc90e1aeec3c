"""The simulator's sample drift: sign convention, stored truth, large drifts, honest noise, alignment.

Convention (DESIGN.md): ``drift_px[e] = (dy, dx)``: a feature at (y, x) in image 0 is at
(y + dy, x + dx) in image e; ``drift_origin_px`` places image 0 relative to the truth maps.
"""

import h5py
import numpy as np
import pytest
from scipy import ndimage

from xanes_lib import io
from xanes_lib.alignment import register_stack
from xanes_lib.simulation import SimulationConfig, simulate_stack, write_dataset
from xanes_lib.simulation.simulate import _drift_and_blur

SMALL = SimulationConfig().replace(phantom_shape=(48, 48), phantom_pixel_size_nm=150.0)


def _centroid(image):
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    w = image.sum()
    return np.array([(image * yy).sum() / w, (image * xx).sum() / w])


def _rms(a):
    return float(np.sqrt(np.mean(np.sum(np.asarray(a) ** 2, axis=1))))


def test_ndimage_shift_moves_a_bright_dot_by_plus_the_shift():
    """The convention the simulator relies on: ndimage.shift(a, (dy, dx)) moves content by +(dy, dx)."""
    a = np.zeros((32, 32))
    a[10, 20] = 1.0
    moved = ndimage.shift(a, (3.0, -5.0), order=1, mode="constant")
    assert np.unravel_index(np.argmax(moved), moved.shape) == (13, 15)


def test_simulated_drift_moves_a_dot_by_the_returned_path():
    """One bright dot per image (same absorbance at every energy): it sits at start + path[e]."""
    yy, xx = np.mgrid[:64, :64]
    dot = np.exp(-((yy - 30.0) ** 2 + (xx - 34.0) ** 2) / (2 * 1.5 ** 2))
    absorb = np.repeat(dot[None], 12, axis=0)
    cfg = SMALL.replace(drift_px=2.5, blur_px=0.0)
    trans, path = _drift_and_blur(absorb, cfg, np.random.default_rng(4))
    centres = np.array([_centroid(-np.log(t)) for t in trans])
    np.testing.assert_allclose(centres, np.array([30.0, 34.0]) + path, atol=0.01)
    assert np.abs(path).max() > 2.0


DOT_CONFIG = SimulationConfig(background_amplitude=0.0, dose=1e6, drift_px=2.0).replace(
    phantom_shape=(64, 64), phantom_pixel_size_nm=100.0, phantom_fill_fraction=1e-6,
    phantom_max_particles=1, phantom_radius_um=(0.4, 0.4), phantom_aspect=(1.0, 1.0),
    phantom_porosity=0.1, phantom_texture_sigma=0.0, phantom_grain_boundary_depth=0.0,
    phantom_pores_per_um3=0.0, phantom_cracks_per_particle=0.0)


def test_stored_drift_follows_a_small_particle():
    """A particle of ~8 px: its absorbance centroid in image e is at map centroid + origin + drift[e]."""
    stack, truth = simulate_stack(DOT_CONFIG, seed=7)
    start = _centroid(truth.areal_density.astype(np.float64))
    assert (12 < start).all() and (start < 52).all(), f"the particle must stay in the field: {start}"
    centres = np.array([_centroid(-np.log(t.astype(np.float64))) for t in truth.transmission])
    assert truth.drift_px.shape == (stack.energies_eV.size, 2) and truth.drift_px.dtype == np.float64
    np.testing.assert_array_equal(truth.drift_px[0], [0.0, 0.0])
    np.testing.assert_allclose(centres - centres[0], truth.drift_px, atol=0.1)
    np.testing.assert_allclose(centres, start + truth.drift_origin_px + truth.drift_px, atol=0.1)
    assert np.abs(truth.drift_px).max() > 2.0, "the test stack really drifts"


def test_no_drift_stores_zeros():
    stack, truth = simulate_stack(SMALL, seed=1)
    np.testing.assert_array_equal(truth.drift_px, np.zeros((stack.energies_eV.size, 2)))
    np.testing.assert_array_equal(truth.drift_origin_px, [0.0, 0.0])


def test_large_drift_is_allowed_and_bad_values_refused():
    cfg = SMALL.replace(drift_px=10.0)
    _, truth = simulate_stack(cfg, seed=2)
    assert np.abs(truth.drift_px).max() > 10.0
    path = truth.drift_origin_px + truth.drift_px
    assert np.sqrt(np.mean(np.sum((path - path.mean(axis=0)) ** 2, axis=1) / 2)) == pytest.approx(10.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="drift_px must be finite and >= 0"):
            SMALL.replace(drift_px=bad)


def test_drift_is_applied_before_the_photon_noise():
    """Shifting noisy images would smooth the noise; the drifting stack is as noisy as a still one."""
    cfg = SMALL.replace(background_amplitude=0.0, drift_px=1.5)
    ratios = []
    for drift in (0.0, 1.5):
        stack, truth = simulate_stack(cfg.replace(drift_px=drift), seed=3)
        residual = stack.transmission - truth.transmission * truth.background
        empty = (truth.transmission > 0.999).all(axis=0)
        assert empty.sum() > 200
        ratios.append(float(np.var(residual[:, empty])))
    assert ratios[1] == pytest.approx(ratios[0], rel=0.1)


def test_drift_round_trip_through_the_file(tmp_path):
    cfg = SMALL.replace(drift_px=1.2, blur_px=0.5)
    path = write_dataset(tmp_path, "d", [cfg], [5])[0]
    _, truth = simulate_stack(cfg, seed=5)
    back = io.read_ground_truth(path)
    np.testing.assert_allclose(back.drift_px, truth.drift_px)
    np.testing.assert_allclose(back.drift_origin_px, truth.drift_origin_px)
    with h5py.File(path, "r") as f:
        ds = f["ground_truth/drift_px"]
        assert ds.shape == (truth.drift_px.shape[0], 2) and ds.attrs["reference_index"] == 0
        assert "relative to image 0" in ds.attrs["convention"]
    assert "drift_px" not in vars(io.read_stack(path)), "the truth stays out of the stack"


def test_register_stack_recovers_the_stored_drift_at_1000_photons():
    """Ni, random walk of a few px (up to ~5), PSF sigma 1 px, 1000 photons per pixel."""
    cfg = SimulationConfig(dose=1000.0, drift_px=1.0, blur_px=1.0).replace(
        phantom_shape=(128, 128), phantom_pixel_size_nm=150.0)
    stack, truth = simulate_stack(cfg, seed=0)
    fit = register_stack(stack.transmission, stack.energies_eV)
    expected = truth.drift_px - truth.drift_px[fit.reference_index]
    assert np.abs(expected).max() > 2.0, "the test stack really drifts"
    assert _rms(fit.shifts_px - expected) < 0.2
