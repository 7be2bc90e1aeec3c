"""Registration across energies: drift recovery, sign convention, applying shifts, files, bad inputs.

Drifting stacks are made here from a simulated Ni stack: the noise-free absorbance of each
energy is shifted by a known sub-pixel random walk (content moved by +drift, the DESIGN.md
convention), blurred by the detector PSF, and only then are photon counts drawn.
"""

import h5py
import numpy as np
import pytest
from scipy import ndimage

from xanes_lib.alignment import (
    AlignedStack,
    Alignment,
    apply_alignment,
    choose_reference,
    drift_rejected,
    drift_test,
    interpolation_variance,
    register_stack,
)
from xanes_lib.io import flat_field_correct
from xanes_lib.simulation import SimulationConfig, detector_counts, simulate_stack

SHAPE = (128, 128)
N_ENERGIES = 30


def _random_walk(n, max_px, rng):
    path = np.cumsum(rng.standard_normal((n, 2)), axis=0)
    path -= path[0]
    return path * (max_px / max(np.abs(path).max(), 1e-12))


def _drifting_stack(dose=1000.0, max_drift=3.0, seed=0, blur=1.0, element="Ni"):
    """(measured transmission, energies, true drift (E, 2) relative to image 0, noise-free shifted T)."""
    cfg = SimulationConfig(element=element, dose=1e9).replace(phantom_shape=SHAPE,
                                                              phantom_pixel_size_nm=150.0)
    stack, truth = simulate_stack(cfg, seed=seed)
    idx = np.unique(np.linspace(0, stack.energies_eV.size - 1, N_ENERGIES).round().astype(int))
    energies = stack.energies_eV[idx]
    absorb = -np.log(truth.transmission[idx].astype(np.float64))
    background = truth.background[idx].astype(np.float64)
    rng = np.random.default_rng(seed + 1000)
    drift = _random_walk(energies.size, max_drift, rng) if max_drift > 0 else np.zeros((energies.size, 2))
    trans = np.exp(-np.stack([ndimage.shift(a, d, order=3, mode="nearest") for a, d in zip(absorb, drift,
                                                                                         strict=True)]))
    if blur > 0:
        trans = ndimage.gaussian_filter(trans, (0, blur, blur), mode="nearest")
    sample = detector_counts(dose * background * trans, rng, read_noise=2.0, offset=100.0)
    flat = detector_counts(np.full(trans.shape, dose), rng, read_noise=2.0, offset=100.0, frames=10)
    dark = detector_counts(np.zeros(SHAPE), rng, read_noise=2.0, offset=100.0, frames=10)
    measured = flat_field_correct(sample, flat, dark).astype(np.float32)
    return measured, energies, drift, trans


def _rms(a):
    return float(np.sqrt(np.mean(np.sum(np.asarray(a) ** 2, axis=1))))


@pytest.fixture(scope="module")
def drifting():
    return _drifting_stack(dose=1000.0, seed=0)


@pytest.fixture(scope="module")
def still():
    return _drifting_stack(dose=1000.0, max_drift=0.0, seed=3)


def _dot_stack(centers, shape=(64, 64), width=2.0):
    """Transmission of one absorbing Gaussian dot per image, at the given (y, x) centres."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    absorb = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2)) for cy, cx in centers]
    return np.exp(-np.stack(absorb)).astype(np.float32)


# ---------------------------------------------------------------- drift recovery


@pytest.mark.parametrize("method", ["template", "anchored", "chained"])
def test_recovers_random_walk_drift_at_1000_photons(drifting, method):
    measured, energies, drift, _ = drifting
    fit = register_stack(measured, energies, method=method)
    truth = drift - drift[fit.reference_index]
    assert energies[fit.reference_index] > 8350, "the automatic reference is a post-edge image"
    assert np.abs(truth).max() > 1.5, "the test stack really drifts"
    assert _rms(fit.shifts_px - truth) < (0.15 if method == "template" else 0.2)
    assert np.all(fit.shifts_px[fit.reference_index] == 0) and fit.confidence[fit.reference_index] == 1
    assert not fit.flagged.any()


def test_recovers_drift_at_300_photons_and_beats_the_raw_correlation():
    measured, energies, drift, _ = _drifting_stack(dose=300.0, seed=1)
    fit = register_stack(measured, energies)
    err = _rms(fit.shifts_px - (drift - drift[fit.reference_index]))
    assert err < 0.2
    # Without smoothing (gradient magnitude of the raw absorbance) the same stack does worse.
    raw = register_stack(measured, energies, sigma_px=0.0, reference_index=fit.reference_index,
                         method="anchored", features="gradient")
    assert _rms(raw.shifts_px - (drift - drift[fit.reference_index])) > err


def test_drift_test_needs_scatter_that_wanders_or_that_errors_cannot_explain():
    own = np.full((60, 2), 0.1)
    # No drift, errors 30 % too small (as linearised errors of weak features at low counts):
    # chi-square alone rejects, but the shifts do not wander together: no drift (20 stacks).
    tests = [drift_test(np.random.default_rng(s).normal(0.0, 0.13, (60, 2)), own) for s in range(20)]
    assert sum(t["p_value"] < 0.01 for t in tests) >= 15
    assert sum(drift_rejected(t, 0.01) for t in tests) <= 1
    rng = np.random.default_rng(4)
    # A slow drift of the same size does wander: drift.
    walk = np.cumsum(rng.normal(0.0, 0.05, (60, 2)), axis=0) + rng.normal(0.0, 0.1, (60, 2))
    test = drift_test(walk, own)
    assert test["von_neumann"][0] < 1.0 and drift_rejected(test, 0.01)
    # Independent jumps three times the errors are no error of the estimates: drift.
    test = drift_test(rng.normal(0.0, 0.3, (60, 2)), own)
    assert test["serial_p_value"] > 0.01 and test["p_value_doubled_errors"] < 0.01
    assert drift_rejected(test, 0.01)
    # Too few images for the serial test: it never rejects.
    assert drift_test([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.full((3, 2), 0.1))["serial_p_value"] == 1.0


def test_zero_drift_gives_zero_shifts_and_aligning_changes_nothing(still):
    measured, energies, _, _ = still
    fit = register_stack(measured, energies)
    assert fit.info["drift_detected"] is False and fit.info["drift_test"]["p_value"] > 0.01
    np.testing.assert_array_equal(fit.shifts_px, 0.0)
    out = apply_alignment(measured, fit)
    np.testing.assert_array_equal(out.transmission, measured)
    assert out.crop == (slice(0, SHAPE[0]), slice(0, SHAPE[1])) and out.common_mask.all()
    np.testing.assert_array_equal(out.variance_factor, 1.0)
    # The raw estimates are kept, and they are small.
    raw = np.array(fit.info["estimated_shifts_px"])
    assert np.abs(raw).max() < 0.25 and _rms(raw) < 0.1


def test_zero_drift_estimates_change_nothing_measurable_when_applied(still):
    """Without the drift test the estimates are applied: far below the photon noise."""
    measured, energies, _, truth_t = still
    fit = register_stack(measured, energies, significance=None)
    assert fit.info["drift_detected"] is True
    out = apply_alignment(measured, fit)
    ys, xs = out.crop
    assert (ys.stop - ys.start, xs.stop - xs.start) >= (SHAPE[0] - 2, SHAPE[1] - 2)
    noise = np.std(measured - truth_t)
    assert np.std((out.transmission - measured)[:, ys, xs]) < 0.15 * noise


def test_small_real_drift_is_detected_and_statistical_errors_are_sane():
    measured, energies, drift, _ = _drifting_stack(max_drift=0.5, seed=2)
    fit = register_stack(measured, energies)
    truth = drift - drift[fit.reference_index]
    assert fit.info["drift_detected"] is True
    assert _rms(fit.shifts_px - truth) < 0.15 < _rms(truth)
    others = np.arange(energies.size) != fit.reference_index
    z = (fit.shifts_px - truth)[others] / fit.shift_std_px[others]
    assert 0.5 < np.sqrt(np.mean(z ** 2)) < 2.5, "standard errors within a small factor of the errors"
    np.testing.assert_array_equal(fit.shift_std_px[fit.reference_index], 0.0)


def test_aligned_stack_matches_the_reference_frame(drifting):
    """The estimated shifts move the content (the noise-free images) onto the reference image.

    Noise-free, so that a filter that smooths the noise (linear interpolation) cannot pass for
    a better alignment.
    """
    measured, energies, drift, trans = drifting
    fit = register_stack(measured, energies)
    out = apply_alignment(trans, fit)
    ref = fit.reference_index
    ys, xs = out.crop
    target = np.broadcast_to(trans[ref], trans.shape)[:, ys, xs]
    before = np.sqrt(np.mean((trans[:, ys, xs] - target) ** 2, axis=(1, 2)))
    after = np.sqrt(np.mean((out.transmission[:, ys, xs] - target) ** 2, axis=(1, 2)))
    # Far from the reference energy the spectra differ; compare images near it only.
    near = np.abs(np.arange(energies.size) - ref) <= 3
    moved = near & (np.abs(drift - drift[ref]).max(axis=1) > 0.5)
    assert moved.any()
    assert np.all(after[moved] < 0.5 * before[moved])


def test_mask_restricts_the_registration_to_a_region(drifting):
    measured, energies, drift, _ = drifting
    mask = np.zeros(SHAPE, bool)
    mask[:, : SHAPE[1] * 3 // 4] = True
    fit = register_stack(measured, energies, mask=mask)
    assert _rms(fit.shifts_px - (drift - drift[fit.reference_index])) < 0.2


def test_same_input_gives_the_same_result_and_inputs_are_untouched(drifting):
    measured, energies, _, _ = drifting
    before, e_before = measured.copy(), energies.copy()
    a = register_stack(measured, energies, method="anchored")
    b = register_stack(measured, energies, method="anchored")
    np.testing.assert_array_equal(a.shifts_px, b.shifts_px)
    apply_alignment(measured, a, order=3)
    np.testing.assert_array_equal(measured, before)
    np.testing.assert_array_equal(energies, e_before)


# ---------------------------------------------------------------- sign convention


def test_sign_convention_matches_design_with_a_single_dot():
    """A feature at (y, x) in the reference is at (y + dy, x + dx) in image e."""
    stack = _dot_stack([(30.0, 40.0), (32.4, 38.7)])
    fit = register_stack(stack, [8300.0, 8400.0], reference_index=0)
    np.testing.assert_allclose(fit.shifts_px[1], [2.4, -1.3], atol=0.05)
    back = register_stack(stack, [8300.0, 8400.0], reference_index=1)
    np.testing.assert_allclose(back.shifts_px[0], [-2.4, 1.3], atol=0.05)
    # Aligning moves image 1 by -(dy, dx): its dot comes back to (30, 40).
    out = apply_alignment(stack, fit, order=3)
    peak = np.unravel_index(np.argmin(out.transmission[1]), out.transmission[1].shape)
    assert peak == (30, 40)
    assert out.crop == (slice(0, 61), slice(2, 64))  # rows y + 2.4 <= 63, columns x - 1.3 >= 0


def test_integer_shift_is_exact_and_keeps_the_noise():
    rng = np.random.default_rng(4)
    stack = rng.random((2, 20, 30)).astype(np.float32)
    out = apply_alignment(stack, [[0.0, 0.0], [2.0, -3.0]])
    np.testing.assert_array_equal(out.transmission[1, :18, 3:], stack[1, 2:, :27])
    assert out.crop == (slice(0, 18), slice(3, 30))
    np.testing.assert_array_equal(out.variance_factor, [1.0, 1.0])
    assert out.transmission.dtype == np.float32 and isinstance(out, AlignedStack)


@pytest.mark.parametrize("order", [1, 3])
def test_variance_factor_matches_the_noise_of_shifted_white_noise(order):
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((2, 256, 256))
    shifts = np.array([[0.0, 0.0], [0.3, 0.6]])
    out = apply_alignment(noise, shifts, order=order)
    ys, xs = out.crop
    measured = np.var(out.transmission[1, ys, xs][4:-4, 4:-4])
    expected = interpolation_variance(shifts, order=order)
    assert expected[0] == 1.0
    if order == 1:
        assert expected[1] == pytest.approx((0.7 ** 2 + 0.3 ** 2) * (0.4 ** 2 + 0.6 ** 2))
    assert measured == pytest.approx(expected[1], rel=0.05)


# ---------------------------------------------------------------- confidence


def test_a_blank_frame_is_flagged_and_its_shift_interpolated(drifting):
    measured, energies, _, _ = drifting
    broken = measured.copy()
    bad = 12
    broken[bad] = 1.0 + np.random.default_rng(6).normal(0.0, 0.03, SHAPE)
    fit = register_stack(broken, energies)
    assert fit.flagged[bad] and fit.flagged.sum() == 1
    assert fit.confidence[bad] < 0.5 * np.median(fit.confidence)
    np.testing.assert_allclose(fit.shifts_px[bad], 0.5 * (fit.shifts_px[bad - 1] + fit.shifts_px[bad + 1]))
    assert fit.info["confidence_threshold"] > fit.confidence[bad]


def test_choose_reference_takes_a_post_edge_image():
    e = np.array([8300.0, 8320, 8330, 8335, 8340, 8360, 8380, 8400])
    a = np.array([0.1, 0.1, 0.12, 0.5, 0.6, 0.58, 0.57, 0.57])
    assert choose_reference(a, e) == 6


# ---------------------------------------------------------------- files


def test_save_and_load_round_trip(tmp_path, drifting):
    measured, energies, _, _ = drifting
    fit = register_stack(measured, energies, method="anchored")
    path = tmp_path / "shifts.h5"
    fit.save(path)
    back = Alignment.load(path)
    np.testing.assert_array_equal(back.shifts_px, fit.shifts_px)
    np.testing.assert_array_equal(back.confidence, fit.confidence)
    np.testing.assert_array_equal(back.flagged, fit.flagged)
    np.testing.assert_array_equal(back.shift_std_px, fit.shift_std_px)
    assert (back.reference_index, back.method) == (fit.reference_index, "anchored")
    assert back.info == fit.info
    with h5py.File(path, "r") as f:
        assert f["alignment/shifts_px"].shape == (energies.size, 2)
        assert f["alignment"].attrs["reference_index"] == fit.reference_index
        assert Alignment.load(f["alignment"]).method == "anchored"
    assert fit.to_attrs()["method"] == "anchored"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_load_refuses_a_file_without_alignment(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img_xanes", data=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="no 'alignment/' group"):
        Alignment.load(path)


def test_pass_in_the_reference_frame_removes_the_pull_of_the_taper_towards_zero():
    # Noise-free drift of a dense scene: with the taper fixed on the detector every shift is
    # pulled towards zero by a share of itself; the pass on the images moved into the
    # reference frame lays the taper on the scene and removes that pull.
    _, energies, drift, trans = _drifting_stack(max_drift=4.0, seed=2)
    errs, slopes = {}, {}
    for refine in (0, 1):
        fit = register_stack(trans, energies, refine=refine, significance=None)
        truth = drift - drift[fit.reference_index]
        err = fit.shifts_px - truth
        errs[refine] = _rms(err)
        # the part of the error proportional to the shift itself (pooled over both axes)
        slopes[refine] = float(np.sum(err * truth) / np.sum(truth ** 2))
        assert fit.info["refine_passes"] == refine
    assert slopes[0] < -0.005 and abs(slopes[1]) < 0.5 * abs(slopes[0])
    assert errs[1] < 0.8 * errs[0]


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="dft"), "method must be one of"),
    (dict(features="edges"), "features must be one of"),
    (dict(upsample=0), "upsample must be an integer >= 1"),
    (dict(reference_index=5), r"reference_index must be an integer in \[0, 2\]"),
    (dict(reference_index=True), "reference_index must be an integer"),
    (dict(bin_factor=9), "bin_factor must be None"),
    (dict(sigma_px=-1.0), "sigma_px must be None"),
    (dict(min_confidence=2.0), "min_confidence must be None"),
    (dict(mask=np.ones((32, 31), bool)), "mask must be a boolean"),
    (dict(mask=np.zeros((32, 32), bool)), "mask selects 0 pixels"),
    (dict(walkoff_window=0), "walkoff_window must be a positive"),
    (dict(significance=1.5), "significance must be None"),
    (dict(drift_tolerance_px=None), "drift_tolerance_px must be a finite number"),
    (dict(refine=-1), "refine must be an integer >= 0"),
    (dict(refine=1.0), "refine must be an integer >= 0"),
])
def test_register_stack_refuses_bad_options(kwargs, match):
    stack = np.ones((3, 32, 32), np.float32)
    with pytest.raises(ValueError, match=match):
        register_stack(stack, [8300.0, 8310.0, 8320.0], **kwargs)


def test_register_stack_refuses_bad_data():
    good = np.ones((3, 32, 32), np.float32)
    e = [8300.0, 8310.0, 8320.0]
    with pytest.raises(ValueError, match="must be 3-D"):
        register_stack(good[0], e)
    with pytest.raises(ValueError, match="energies_eV has 2 values but transmission has 3 images"):
        register_stack(good, e[:2])
    with pytest.raises(ValueError, match="increase strictly"):
        register_stack(good, [8300.0, 8290.0, 8320.0])
    with pytest.raises(ValueError, match="at least 2 images"):
        register_stack(good[:1], e[:1])
    nan = good.copy()
    nan[1, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf, first at index \(1, 3, 4\)"):
        register_stack(nan, e)


def test_apply_alignment_and_alignment_refuse_bad_values():
    stack = np.ones((3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="has 2 shifts but the stack has 3 images"):
        apply_alignment(stack, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="order must be one of"):
        apply_alignment(stack, np.zeros((3, 2)), order=7)
    with pytest.raises(ValueError, match="as much as the field"):
        apply_alignment(stack, [[0, 0], [0, 0], [20.0, 0]])
    with pytest.raises(ValueError, match=r"finite \(E, 2\) array"):
        apply_alignment(stack, [[0, 0], [0, 0], [np.nan, 0]])
    with pytest.raises(ValueError, match=r"shifts_px must have shape \(E, 2\)"):
        Alignment(np.zeros((3, 3)), np.ones(3), 0, "manual")
    with pytest.raises(ValueError, match=r"confidence must have shape \(3,\)"):
        Alignment(np.zeros((3, 2)), np.ones(2), 0, "manual")
    with pytest.raises(ValueError, match=r"reference_index must be an integer in \[0, 2\]"):
        Alignment(np.zeros((3, 2)), np.ones(3), 3, "manual")
    with pytest.raises(ValueError, match="image 1 has"):
        Alignment([[0, 0], [np.inf, 0], [0, 0]], np.ones(3), 0, "manual")
